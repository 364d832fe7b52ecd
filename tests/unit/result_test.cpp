#include <doctest/doctest.h>

#include <memory>
#include <string>

#include <vmspace/result.hpp>

using vmspace::err;
using vmspace::Error;
using vmspace::Result;

namespace {

Result<int> parse_positive(int x) {
  if (x <= 0) return err(Error::InvalidArgs);
  return x;
}

Result<int> doubled(int x) {
  int v = VMS_TRY(parse_positive(x));
  return v * 2;
}

Result<void> check(bool good) {
  if (!good) return err(Error::AccessDenied);
  return vmspace::ok();
}

Result<void> check_twice(bool a, bool b) {
  VMS_TRY_VOID(check(a));
  VMS_TRY_VOID(check(b));
  return {};
}

}  // namespace

TEST_SUITE("unit") {
  TEST_CASE("result_value_and_error") {
    Result<int> good = 7;
    CHECK(good.has_value());
    CHECK(static_cast<bool>(good));
    CHECK(*good == 7);
    CHECK(good.value() == 7);

    Result<int> bad = err(Error::NoMemory);
    CHECK_FALSE(bad.has_value());
    CHECK(bad.error() == Error::NoMemory);
    CHECK(bad.value_or(3) == 3);
  }

  TEST_CASE("result_try_propagates_first_error") {
    CHECK(doubled(4).value() == 8);
    CHECK(doubled(-1).error() == Error::InvalidArgs);
    CHECK(check_twice(true, true).has_value());
    CHECK(check_twice(true, false).error() == Error::AccessDenied);
    CHECK(check_twice(false, false).error() == Error::AccessDenied);
  }

  TEST_CASE("result_holds_move_only_values") {
    Result<std::unique_ptr<int>> r = std::make_unique<int>(5);
    REQUIRE(r.has_value());
    std::unique_ptr<int> p = std::move(r).value();
    CHECK(*p == 5);
    Result<std::string> s = std::string("abc");
    Result<std::string> copy = s;
    CHECK(*copy == "abc");
    CHECK(copy->size() == 3);
    copy = err(Error::Overflow);
    CHECK(copy.error() == Error::Overflow);
  }

  TEST_CASE("error_names") {
    CHECK(vmspace::to_string(Error::WouldDeadlock) == "WouldDeadlock");
    CHECK(vmspace::to_string(Error::PageFault) == "PageFault");
  }
}
