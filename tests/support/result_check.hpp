// Helpers for checking Result values in doctest assertions.
//
// Result::error() aborts when the Result holds a value, so `CHECK(r.error() == ...)` would
// take the whole test executable down when the code under test wrongly succeeds. error_of()
// turns the error into an optional that doctest can compare and print instead.
#pragma once

#include <optional>
#include <string_view>

#include <doctest/doctest.h>

#include <vmspace/error.hpp>
#include <vmspace/page_table_config.hpp>
#include <vmspace/result.hpp>

namespace vmspace::test {

// The error held by `r`, or nullopt if `r` holds a value.
template <class T, class E>
std::optional<E> error_of(const Result<T, E>& r) {
  if (r.has_value()) return std::nullopt;
  return r.error();
}

}  // namespace vmspace::test

// doctest prints enums as integers unless an overload is found by argument-dependent lookup.
namespace vmspace {
inline doctest::String toString(Error e) {
  std::string_view name = to_string(e);
  return doctest::String(name.data(), static_cast<doctest::String::size_type>(name.size()));
}
inline doctest::String toString(PageTableError e) { return doctest::String(to_string(e)); }
}  // namespace vmspace

namespace doctest {

template <>
struct StringMaker<vmspace::Error> {
  static String convert(vmspace::Error e) {
    std::string_view name = vmspace::to_string(e);
    return String(name.data(), static_cast<String::size_type>(name.size()));
  }
};

template <>
struct StringMaker<std::optional<vmspace::Error>> {
  static String convert(const std::optional<vmspace::Error>& e) {
    if (!e) return String("(no error)");
    return StringMaker<vmspace::Error>::convert(*e);
  }
};

template <>
struct StringMaker<vmspace::PageTableError> {
  static String convert(vmspace::PageTableError e) { return String(vmspace::to_string(e)); }
};

template <>
struct StringMaker<std::optional<vmspace::PageTableError>> {
  static String convert(const std::optional<vmspace::PageTableError>& e) {
    if (!e) return String("(no error)");
    return StringMaker<vmspace::PageTableError>::convert(*e);
  }
};

}  // namespace doctest
