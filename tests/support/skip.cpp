#include "skip.hpp"

#include "death_test.hpp"

#include <cstdio>
#include <mutex>
#include <set>
#include <utility>

namespace vmspace::test {

doctest::skip skip_if(bool missing, const char* test_case, const std::string& reason) {
  if (missing) {
    // Registration runs before main, possibly from several translation units of one executable.
    static std::mutex mu;
    static std::set<std::pair<std::string, std::string>> printed;
    const std::lock_guard lock(mu);
    if (printed.emplace(test_case, reason).second) {
      std::fprintf(stderr, "SKIP: %s: %s\n", test_case, reason.c_str());
      std::fflush(stderr);
    }
  }
  return doctest::skip(missing);
}

doctest::skip skip_death_test(const char* test_case) {
  const std::string& reason = death_tests_unavailable();
  return skip_if(!reason.empty(), test_case, reason);
}

}  // namespace vmspace::test
