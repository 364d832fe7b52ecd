// Skipping a test case with a printed reason.
//
// A test that needs something the host or the build may lack (a working hardware breakpoint,
// fork under ThreadSanitizer, enough memory, a debug build) probes for it and is skipped when
// it is missing. doctest's `skip` decorator alone counts the case as skipped without saying
// why, so every skip in this project goes through `skip_if`, which also prints
//
//     SKIP: <test case>: <reason>
//
// to stderr. `meson test` records stderr in meson-logs/testlog.txt, and `meson test -v` shows
// it live, so a skip is never silent. The decision is taken when the test case is registered
// (before main), so a probe runs once per executable whether or not the case is selected.
#pragma once

#include <doctest/doctest.h>

#include <string>

namespace vmspace::test {

// Prints the SKIP line when `missing` holds (once per distinct test/reason pair) and returns
// the doctest decorator: `TEST_CASE("name" * skip_if(cond, "name", "what is missing"))`.
doctest::skip skip_if(bool missing, const char* test_case, const std::string& reason);

// skip_if for a death test (death_test.hpp): skipped, with the reason, where
// death_tests_unavailable() says death tests cannot run.
doctest::skip skip_death_test(const char* test_case);

}  // namespace vmspace::test
