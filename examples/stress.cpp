// vmspace-stress: the concurrent cursor stress engine as a command-line tool.
//
//   vmspace-stress [--threads N] [--spaces N] [--seconds S | --ops N] [--seed N]
//                  [--profile disjoint|leaf-contended|overlapping|mixed] [--format text|json]
//                  [--checkpoint-ms MS] [--checkpoint-ops N] [--watchdog S] [--keep-going]
//                  [--mutation NAME]   (builds configured with -Dmutations=true)
//                  [--trials N]        N runs in forked children with seeds seed..seed+N-1,
//                                      e.g. to measure how often a mutation is detected
//
// Exit status 0 only when every check passed. The last line of the output is a one-line verdict
// (with --format json the JSON document goes to stdout and the verdict line to stderr, after it).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include <vmspace/stress.hpp>

using namespace vmspace;
using namespace vmspace::stress;

namespace {

void usage(std::FILE* to) {
  std::fputs(
      "usage: vmspace-stress [options]\n"
      "  --threads N         worker threads, each bound to its own emulated CPU (default 4)\n"
      "  --spaces N          address spaces (default 2)\n"
      "  --seconds S         run time (default 5)\n"
      "  --ops N             stop after about N operations instead\n"
      "  --seed N            random seed (default 1)\n"
      "  --profile P         disjoint | leaf-contended | overlapping | mixed (default mixed)\n"
      "  --format F          text | json (default text)\n"
      "  --checkpoint-ms MS  quiescent check every MS milliseconds (default 250)\n"
      "  --checkpoint-ops N  ... or every N operations (default 200000)\n"
      "  --watchdog S        fail as deadlocked after S seconds without progress (default 10)\n"
      "  --keep-going        do not stop at the first checkpoint with violations\n"
      "  --mutation NAME     none | skip-phase2-locks | release-frame-before-dispatch |\n"
      "                      skip-stray-check | unlock-wrong-order (mutation builds only)\n"
      "  --trials N          N isolated runs (forked) with seeds seed..seed+N-1; prints one line\n"
      "                      per run and the detection (or pass) rate; exit 0 if every run\n"
      "                      passed (no mutation) or every run failed (a mutation)\n",
      to);
}

std::optional<vmspace::internal::Mutation> parse_mutation(std::string_view s) {
  for (auto m : {vmspace::internal::Mutation::None, vmspace::internal::Mutation::SkipPhase2Locks,
                 vmspace::internal::Mutation::ReleaseFrameBeforeDispatch,
                 vmspace::internal::Mutation::SkipStrayCheck,
                 vmspace::internal::Mutation::UnlockWrongOrder}) {
    if (s == vmspace::internal::to_string(m)) return m;
  }
  return std::nullopt;
}

bool parse_u64(const char* s, std::uint64_t& out) {
  char* end = nullptr;
  out = std::strtoull(s, &end, 0);
  return end != s && *end == '\0';
}

bool parse_double(const char* s, double& out) {
  char* end = nullptr;
  out = std::strtod(s, &end);
  return end != s && *end == '\0' && out >= 0;
}

// Runs `trials` isolated runs and prints a detection-rate summary.
int run_trials(StressOptions o, std::uint64_t trials) {
  const bool mutated = o.mutation != vmspace::internal::Mutation::None;
  const std::uint64_t first_seed = o.seed;
  std::uint64_t failed = 0;
  double seconds = 0;
  for (std::uint64_t t = 0; t < trials; ++t) {
    o.seed = first_seed + t;
    const auto t0 = std::chrono::steady_clock::now();
    const StressReport r = run_isolated(o);
    const double took =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    seconds += took;
    if (!r.setup_error.empty()) {
      std::printf("seed %llu: ERROR: %s\n", static_cast<unsigned long long>(o.seed),
                  r.setup_error.c_str());
      return 2;
    }
    if (!r.passed()) ++failed;
    std::string first = r.violations.empty() ? std::string("-") : r.violations.front().kind;
    std::string what = r.violations.empty() ? std::string() : r.violations.front().description;
    if (what.size() > 150) what = what.substr(0, 150) + "...";
    for (char& ch : what) {
      if (ch == '\n') ch = ' ';
    }
    std::printf("seed %llu: %s in %.1f s (first check: %s) %s\n",
                static_cast<unsigned long long>(o.seed), r.passed() ? "passed" : "FAILED", took,
                first.c_str(), what.c_str());
    std::fflush(stdout);
  }
  std::printf("%s: %llu of %llu runs %s (%.0f%%), %.1f s per run on average\n",
              mutated ? vmspace::internal::to_string(o.mutation) : "no mutation",
              static_cast<unsigned long long>(failed), static_cast<unsigned long long>(trials),
              mutated ? "detected the mutation" : "failed",
              100.0 * static_cast<double>(failed) / static_cast<double>(trials),
              seconds / static_cast<double>(trials));
  return (mutated ? failed == trials : failed == 0) ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  StressOptions o;
  OutputFormat format = OutputFormat::Text;
  std::uint64_t trials = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--help" || a == "-h") {
      usage(stdout);
      return 0;
    }
    if (a == "--keep-going") {
      o.stop_on_violation = false;
      continue;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "vmspace-stress: %s needs a value\n", argv[i]);
      usage(stderr);
      return 2;
    }
    const char* v = argv[++i];
    std::uint64_t n = 0;
    double d = 0;
    bool ok = true;
    if (a == "--threads") {
      ok = parse_u64(v, n) && n >= 1 && n <= 255;
      o.threads = static_cast<unsigned>(n);
    } else if (a == "--spaces") {
      ok = parse_u64(v, n) && n >= 1 && n <= 64;
      o.spaces = static_cast<unsigned>(n);
    } else if (a == "--seconds") {
      ok = parse_double(v, d) && d > 0;
      o.seconds = d;
    } else if (a == "--ops") {
      ok = parse_u64(v, n) && n > 0;
      o.ops = n;
    } else if (a == "--seed") {
      ok = parse_u64(v, n);
      o.seed = n;
    } else if (a == "--profile") {
      auto p = parse_profile(v);
      ok = p.has_value();
      if (p) o.profile = *p;
    } else if (a == "--format") {
      ok = std::string_view(v) == "text" || std::string_view(v) == "json";
      format = std::string_view(v) == "json" ? OutputFormat::Json : OutputFormat::Text;
    } else if (a == "--checkpoint-ms") {
      ok = parse_double(v, d) && d > 0;
      o.checkpoint_ms = d;
    } else if (a == "--checkpoint-ops") {
      ok = parse_u64(v, n) && n > 0;
      o.checkpoint_ops = n;
    } else if (a == "--watchdog") {
      ok = parse_double(v, d) && d > 0;
      o.watchdog_seconds = d;
    } else if (a == "--trials") {
      ok = parse_u64(v, n) && n > 0;
      trials = n;
    } else if (a == "--mutation") {
      auto m = parse_mutation(v);
      ok = m.has_value();
      if (m) o.mutation = *m;
    } else {
      std::fprintf(stderr, "vmspace-stress: unknown option %s\n", argv[i - 1]);
      usage(stderr);
      return 2;
    }
    if (!ok) {
      std::fprintf(stderr, "vmspace-stress: bad value '%s' for %s\n", v, argv[i - 1]);
      return 2;
    }
  }
  if (trials > 0) return run_trials(o, trials);
  o.on_deadlock = [format](const StressReport& r) {
    if (format == OutputFormat::Json) {
      std::printf("%s\n", r.to_json().c_str());
      std::fflush(stdout);
      std::fprintf(stderr, "%s\n", r.verdict().c_str());
    } else {
      std::printf("%s\n", r.to_text().c_str());
    }
  };
  const StressReport r = run(o);
  if (format == OutputFormat::Json) {
    std::printf("%s\n", r.to_json().c_str());
    std::fflush(stdout);
    std::fprintf(stderr, "%s\n", r.verdict().c_str());
  } else {
    std::printf("%s\n", r.to_text().c_str());
  }
  if (!r.setup_error.empty()) return 2;
  return r.passed() ? 0 : 1;
}
