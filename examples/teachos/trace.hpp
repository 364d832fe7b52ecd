// Tracing: one line per kernel event (a page fault, a context switch, an eviction, ...), for
// students who want to watch the kernel work and for tools that read the JSON form.
//
//   teachos --trace faults,swap --trace-format json PROGRAM
//
// A trace site looks like
//
//   if (tracing(TraceKind::Faults))
//     TraceEvent(TraceKind::Faults, "fault").num("pid", pid).hex("va", va).str("access", "write");
//
// and costs one relaxed load and a predicted branch when tracing is off: the event is built only
// behind the test. Building teachos with -DTEACHOS_TRACING=0 removes even that (the benchmark
// compares the two builds).
//
// Output goes to stderr, one whole line per event, written with one call so that lines from
// different harts never interleave.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

#ifndef TEACHOS_TRACING
#define TEACHOS_TRACING 1
#endif

namespace teachos {

// The categories of --trace. The names are what the option and the output use.
enum class TraceKind : std::uint8_t { Faults, Tlb, Sched, Syscalls, Swap };
inline constexpr unsigned kTraceKinds = 5;
const char* trace_kind_name(TraceKind k);

enum class TraceFormat : std::uint8_t { Text, Json };

namespace trace_internal {
extern std::atomic<unsigned> enabled_mask;  // bit k set: TraceKind k is traced
}

inline bool tracing(TraceKind k) {
#if TEACHOS_TRACING
  return (trace_internal::enabled_mask.load(std::memory_order_relaxed) &
          (1U << static_cast<unsigned>(k))) != 0;
#else
  (void)k;
  return false;
#endif
}

// Parses a comma-separated list of category names ("faults,tlb,sched,syscalls,swap", or "all")
// into a mask. Returns false, and leaves *mask alone, on an empty item or an unknown name.
bool trace_parse_kinds(std::string_view list, unsigned* mask);

// Sets what is traced and how. Call before the harts start (the mask is read racily by design:
// a change while they run is seen eventually).
void trace_configure(unsigned mask, TraceFormat format);

// One event: fields are added in order and the line is written when the object dies.
//   text: `faults: fault pid=3 va=0x1000 access=write`
//   json: `{"kind":"faults","event":"fault","pid":3,"va":"0x1000","access":"write"}`
// Hex values are strings in JSON, since JSON numbers lose precision past 2^53.
class TraceEvent {
 public:
  TraceEvent(TraceKind kind, std::string_view event);
  ~TraceEvent();
  TraceEvent(const TraceEvent&) = delete;
  TraceEvent& operator=(const TraceEvent&) = delete;

  TraceEvent& num(std::string_view key, std::int64_t value);
  TraceEvent& hex(std::string_view key, std::uint64_t value);
  TraceEvent& str(std::string_view key, std::string_view value);

 private:
  void key(std::string_view k);
  std::string line_;
};

}  // namespace teachos
