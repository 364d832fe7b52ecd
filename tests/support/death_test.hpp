// Death tests: run a callable in a forked child and check that it aborts with a message.
//
// The library aborts (after logging at critical level) when an internal invariant breaks or a
// caller breaks a contract that cannot be reported as an Error (e.g. a double free detected
// inside a destructor). These helpers prove such checks fire.
#pragma once

#include <functional>
#include <string>

namespace vmspace::test {

// ThreadSanitizer does not support forking a multi-threaded process; death tests are skipped
// there, as where fork() fails, with `* skip_death_test(name)` (skip.hpp); they run everywhere
// else.
#if defined(__SANITIZE_THREAD__)
inline constexpr bool kUnderTsan = true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
inline constexpr bool kUnderTsan = true;
#else
inline constexpr bool kUnderTsan = false;
#endif
#else
inline constexpr bool kUnderTsan = false;
#endif

struct DeathResult {
  bool died = false;  // the child was killed by a signal (SIGABRT expected)
  int signal = 0;
  std::string output;  // everything the child wrote to stderr and stdout
};

// Empty when death tests can run in this process; otherwise why not: ThreadSanitizer (see
// kUnderTsan), or fork() does not work here (probed once by forking a child that exits at once).
const std::string& death_tests_unavailable();

// Forks; the child runs `fn` (with a 60 s alarm against hangs) and exits 0 if it returns. The
// parent waits.
DeathResult run_in_child(const std::function<void()>& fn);

// True if `fn` aborts and its output contains `needle`.
bool dies_with(const std::function<void()>& fn, const std::string& needle);

}  // namespace vmspace::test
