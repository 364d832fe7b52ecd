// Names, the verdict line and the text/JSON renderings of a StressReport.
#include <cstdio>
#include <sstream>

#include <vmspace/stress.hpp>

namespace vmspace::stress {

const char* to_string(Profile p) noexcept {
  switch (p) {
    case Profile::Disjoint:
      return "disjoint";
    case Profile::LeafContended:
      return "leaf-contended";
    case Profile::Overlapping:
      return "overlapping";
    case Profile::Mixed:
      return "mixed";
  }
  return "?";
}

std::optional<Profile> parse_profile(std::string_view name) noexcept {
  for (Profile p :
       {Profile::Disjoint, Profile::LeafContended, Profile::Overlapping, Profile::Mixed}) {
    if (name == to_string(p)) return p;
  }
  return std::nullopt;
}

const char* to_string(OpKind k) noexcept {
  switch (k) {
    case OpKind::Open:
      return "open";
    case OpKind::OpenNested:
      return "open_nested";
    case OpKind::Query:
      return "query";
    case OpKind::FindNext:
      return "find_next";
    case OpKind::Jump:
      return "jump";
    case OpKind::Map:
      return "map";
    case OpKind::MapHuge:
      return "map_2m";
    case OpKind::Unmap:
      return "unmap";
    case OpKind::Protect:
      return "protect";
    case OpKind::Read:
      return "read";
    case OpKind::Write:
      return "write";
    case OpKind::Activate:
      return "activate";
    case OpKind::Fault:
      return "fault";
    case OpKind::Custom:
      return "custom";
  }
  return "?";
}

std::uint64_t StressReport::count(OpKind k) const noexcept {
  std::uint64_t n = 0;
  for (std::uint64_t v : counts[static_cast<std::size_t>(k)]) n += v;
  return n;
}

std::uint64_t StressReport::count_ok(OpKind k) const noexcept {
  return counts[static_cast<std::size_t>(k)][0];
}

namespace {

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

const char* outcome_name(std::size_t o) noexcept {
  if (o == 0) return "ok";
  return vmspace::to_string(static_cast<Error>(o - 1)).data();
}

void json_string(std::ostringstream& os, const std::string& s) {
  os << '"';
  for (char ch : s) {
    switch (ch) {
      case '"':
        os << "\\\"";
        break;
      case '\\':
        os << "\\\\";
        break;
      case '\n':
        os << "\\n";
        break;
      case '\t':
        os << "\\t";
        break;
      default:
        if (static_cast<unsigned char>(ch) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", ch);
          os << buf;
        } else {
          os << ch;
        }
    }
  }
  os << '"';
}

void json_strings(std::ostringstream& os, const std::vector<std::string>& v) {
  os << '[';
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (i) os << ", ";
    json_string(os, v[i]);
  }
  os << ']';
}

}  // namespace

std::string StressReport::verdict() const {
  if (!setup_error.empty()) return "ERROR: " + setup_error;
  std::ostringstream os;
  os << (passed() ? "PASS: " : "FAIL: ") << total_ops << " ops (open "
     << count(OpKind::Open) + count(OpKind::OpenNested) << " map " << count(OpKind::Map)
     << " map_2m " << count(OpKind::MapHuge) << " unmap " << count(OpKind::Unmap) << " protect "
     << count(OpKind::Protect) << " query " << count(OpKind::Query) << " find_next "
     << count(OpKind::FindNext) << " jump " << count(OpKind::Jump) << " read "
     << count(OpKind::Read) << " write " << count(OpKind::Write) << " activate "
     << count(OpKind::Activate) << " faults " << count(OpKind::Fault);
  if (count(OpKind::Custom) != 0) os << " custom " << count(OpKind::Custom);
  os << ") in " << fixed(seconds, 1) << " s, " << static_cast<std::uint64_t>(ops_per_second)
     << " ops/s, " << violations_total << (violations_total == 1 ? " violation" : " violations");
  return os.str();
}

std::string StressReport::to_text() const {
  std::ostringstream os;
  os << "vmspace-stress: profile " << to_string(profile) << ", " << threads << " threads, "
     << spaces << " spaces, seed " << seed;
  if (mutation != vmspace::internal::Mutation::None)
    os << ", mutation " << vmspace::internal::to_string(mutation);
  os << "\n";
  if (setup_error.empty()) {
    os << "operations (ok, then errors by kind):\n";
    for (std::size_t k = 0; k < kOpKinds; ++k) {
      std::uint64_t all = 0;
      for (std::uint64_t v : counts[k]) all += v;
      if (all == 0) continue;
      char head[64];
      std::snprintf(head, sizeof head, "  %-12s %12llu ok", to_string(static_cast<OpKind>(k)),
                    static_cast<unsigned long long>(counts[k][0]));
      os << head;
      for (std::size_t o = 1; o < kOutcomes; ++o) {
        if (counts[k][o] != 0) os << ", " << counts[k][o] << " " << outcome_name(o);
      }
      os << "\n";
    }
    os << "checked: " << checkpoints << " quiescent checkpoints (" << fixed(check_seconds, 1)
       << " s), " << records_replayed << " records replayed, " << copies_checked
       << " copies; TLB dispatches " << tlb_dispatches << ", stale TLB hits " << tlb_stale_hits
       << "; faults handled " << faults_handled << ", unresolved or refused " << faults_refused
       << "; leaked bytes " << leaked_bytes << "\n";
    if (violations_total == 0) {
      os << "violations: none\n";
    } else {
      os << "violations (" << violations_total << ", first " << violations.size() << " shown):\n";
      for (const StressViolation& v : violations)
        os << "  [" << v.kind << "] " << v.description << "\n";
    }
    if (history) {
      os << "shortest failing history found (" << history->initial.size() + history->records.size()
         << " of " << history->candidates << " candidate records"
         << (history->minimal ? ", 1-minimal" : ", not reduced to a minimum") << "):\n";
      for (const std::string& s : history->initial) os << "  initially " << s << "\n";
      for (const std::string& s : history->records) os << "  " << s << "\n";
      os << "  => " << history->violation << "\n";
    }
  }
  os << verdict();
  return os.str();
}

std::string StressReport::to_json() const {
  std::ostringstream os;
  os << "{\n  \"profile\": \"" << to_string(profile) << "\", \"threads\": " << threads
     << ", \"spaces\": " << spaces << ", \"seed\": " << seed << ", \"mutation\": \""
     << vmspace::internal::to_string(mutation) << "\",\n";
  os << "  \"passed\": " << (passed() ? "true" : "false") << ", \"setup_error\": ";
  json_string(os, setup_error);
  os << ",\n  \"total_ops\": " << total_ops << ", \"seconds\": " << fixed(seconds, 3)
     << ", \"ops_per_second\": " << fixed(ops_per_second, 1) << ",\n  \"counts\": {";
  bool first = true;
  for (std::size_t k = 0; k < kOpKinds; ++k) {
    os << (first ? "" : ",") << "\n    \"" << to_string(static_cast<OpKind>(k)) << "\": {";
    first = false;
    bool f2 = true;
    for (std::size_t o = 0; o < kOutcomes; ++o) {
      if (counts[k][o] == 0 && o != 0) continue;
      os << (f2 ? "" : ", ") << "\"" << outcome_name(o) << "\": " << counts[k][o];
      f2 = false;
    }
    os << "}";
  }
  os << "\n  },\n  \"checkpoints\": " << checkpoints
     << ", \"check_seconds\": " << fixed(check_seconds, 3)
     << ", \"records_replayed\": " << records_replayed << ", \"copies_checked\": " << copies_checked
     << ", \"tlb_dispatches\": " << tlb_dispatches << ", \"tlb_stale_hits\": " << tlb_stale_hits
     << ", \"faults_handled\": " << faults_handled << ", \"faults_refused\": " << faults_refused
     << ", \"leaked_bytes\": " << leaked_bytes << ",\n  \"violations_total\": " << violations_total
     << ",\n  \"violations\": [";
  for (std::size_t i = 0; i < violations.size(); ++i) {
    os << (i ? "," : "") << "\n    {\"kind\": ";
    json_string(os, violations[i].kind);
    os << ", \"description\": ";
    json_string(os, violations[i].description);
    os << "}";
  }
  os << "\n  ],\n  \"history\": ";
  if (history) {
    os << "{\"violation\": ";
    json_string(os, history->violation);
    os << ", \"candidates\": " << history->candidates
       << ", \"minimal\": " << (history->minimal ? "true" : "false") << ", \"initial\": ";
    json_strings(os, history->initial);
    os << ", \"records\": ";
    json_strings(os, history->records);
    os << "}";
  } else {
    os << "null";
  }
  os << ",\n  \"verdict\": ";
  json_string(os, verdict());
  os << "\n}";
  return os.str();
}

StressReport StressReport::configured(const StressOptions& options) {
  StressReport report;
  report.profile = options.profile;
  report.threads = options.threads;
  report.spaces = options.spaces;
  report.seed = options.seed;
  report.mutation = options.mutation;
  return report;
}

}  // namespace vmspace::stress
