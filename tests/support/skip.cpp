#include "skip.hpp"

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

}  // namespace vmspace::test
