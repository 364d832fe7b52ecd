// Tracing (trace.hpp): formats one event as a text or JSON line and writes it whole.
#include "trace.hpp"

#include <unistd.h>

#include <cinttypes>
#include <cstdio>

namespace teachos {

namespace trace_internal {
std::atomic<unsigned> enabled_mask{0};
}

namespace {

// Written once before the harts start, read by every event.
TraceFormat g_format = TraceFormat::Text;

constexpr const char* kNames[kTraceKinds] = {"faults", "tlb", "sched", "syscalls", "swap"};

// JSON strings need their quotes, backslashes and control characters escaped; the other
// values we print (names, numbers) never contain them, but a program name might.
void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  for (const char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
      out += buf;
    } else {
      out += c;
    }
  }
  out += '"';
}

}  // namespace

const char* trace_kind_name(TraceKind k) { return kNames[static_cast<unsigned>(k)]; }

bool trace_parse_kinds(std::string_view list, unsigned* mask) {
  if (list == "all") {
    *mask = (1U << kTraceKinds) - 1;
    return true;
  }
  unsigned m = 0;
  while (true) {
    const std::size_t comma = list.find(',');
    const std::string_view item = list.substr(0, comma);
    bool known = false;
    for (unsigned k = 0; k < kTraceKinds; ++k) {
      if (item == kNames[k]) {
        m |= 1U << k;
        known = true;
      }
    }
    if (!known) return false;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  *mask = m;
  return true;
}

void trace_configure(unsigned mask, TraceFormat format) {
  g_format = format;
  trace_internal::enabled_mask.store(mask, std::memory_order_relaxed);
}

TraceEvent::TraceEvent(TraceKind kind, std::string_view event) {
  if (g_format == TraceFormat::Json) {
    line_ = "{\"kind\":\"";
    line_ += trace_kind_name(kind);
    line_ += "\",\"event\":";
    append_json_string(line_, event);
  } else {
    line_ = trace_kind_name(kind);
    line_ += ": ";
    line_ += event;
  }
}

TraceEvent::~TraceEvent() {
  line_ += g_format == TraceFormat::Json ? "}\n" : "\n";
  // One write(2) per line: stdio would be atomic per call too, but write keeps the line whole
  // even when another hart's line is being formatted into the same stream buffer.
  const char* p = line_.data();
  std::size_t left = line_.size();
  while (left > 0) {
    const ssize_t n = ::write(STDERR_FILENO, p, left);
    if (n <= 0) return;  // stderr closed: a trace is best effort, never a reason to stop
    p += n;
    left -= static_cast<std::size_t>(n);
  }
}

void TraceEvent::key(std::string_view k) {
  if (g_format == TraceFormat::Json) {
    line_ += ',';
    append_json_string(line_, k);
    line_ += ':';
  } else {
    line_ += ' ';
    line_ += k;
    line_ += '=';
  }
}

TraceEvent& TraceEvent::num(std::string_view k, std::int64_t value) {
  key(k);
  line_ += std::to_string(value);
  return *this;
}

TraceEvent& TraceEvent::hex(std::string_view k, std::uint64_t value) {
  key(k);
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%" PRIx64, value);
  if (g_format == TraceFormat::Json) {
    append_json_string(line_, buf);
  } else {
    line_ += buf;
  }
  return *this;
}

TraceEvent& TraceEvent::str(std::string_view k, std::string_view value) {
  key(k);
  if (g_format == TraceFormat::Json) {
    append_json_string(line_, value);
  } else {
    line_ += value;
  }
  return *this;
}

}  // namespace teachos
