// Shared helpers for the stress suite.
#pragma once

#include <vmspace/boot.hpp>
#include <vmspace/stress.hpp>

namespace vmspace::stress_test {

#if defined(__SANITIZE_THREAD__)
inline constexpr bool kTsan = true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
inline constexpr bool kTsan = true;
#else
inline constexpr bool kTsan = false;
#endif
#else
inline constexpr bool kTsan = false;
#endif

// Short runs: a few seconds each, shorter and with fewer threads under ThreadSanitizer (which
// slows the library down about 10x; the TSan CI job runs this suite).
inline constexpr double kSeconds = kTsan ? 1.5 : 2.5;
inline constexpr unsigned kThreads = kTsan ? 3 : 6;

// One machine for the whole test executable, with enough CPUs for every test's workers plus
// the threads the tests bind themselves.
inline void ensure_machine() {
  if (is_booted()) return;
  BootConfig cfg;
  cfg.phys_mem_bytes = std::uint64_t{1} << 30;
  cfg.num_cpus = 16;
  (void)boot(cfg);
}

inline stress::StressOptions short_run(stress::Profile p, std::uint64_t seed) {
  stress::StressOptions o;
  o.profile = p;
  o.threads = kThreads;
  o.spaces = 2;
  o.seconds = kSeconds;
  o.seed = seed;
  o.checkpoint_ms = 200;
  return o;
}

}  // namespace vmspace::stress_test
