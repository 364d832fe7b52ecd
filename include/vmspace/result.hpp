// Result<T, E>: a small std::expected look-alike.
//
// Debian 12's toolchain (meson 1.0, clang 14) cannot build C++23, so std::expected is not
// available. This type keeps std::expected's observable interface (has_value, value, error,
// operator*, operator->, operator bool, value_or, Unexpected) so that it can later become
// `template <class T, class E = Error> using Result = std::expected<T, E>;` without touching
// callers. Differences that callers must not rely on: value() on an error aborts with a log
// line instead of throwing (the library is built without exceptions on hot paths), and
// Result<void> stores no value.
#pragma once

#include <cstdlib>
#include <new>
#include <type_traits>
#include <utility>

#include <vmspace/error.hpp>

namespace vmspace {

namespace internal {
// Defined in src/base/log.cpp; logs "what" at critical level and aborts. Out of line so that this
// header does not pull in spdlog.
[[noreturn]] void result_misuse(const char* what) noexcept;
}  // namespace internal

// The error half of a Result, as std::unexpected.
template <class E>
class Unexpected {
 public:
  // Wraps the error `e`.
  constexpr explicit Unexpected(E e) : error_(std::move(e)) {}
  // The wrapped error.
  constexpr const E& error() const& noexcept { return error_; }
  // The wrapped error, modifiable.
  constexpr E& error() & noexcept { return error_; }
  // The wrapped error, moved out.
  constexpr E&& error() && noexcept { return std::move(error_); }

 private:
  E error_;
};

template <class E>
// Deduces Unexpected<E> from `Unexpected(e)`.
Unexpected(E)->Unexpected<E>;

// Shorthand used everywhere: `return err(Error::InvalidArgs);`.
template <class E>
constexpr Unexpected<E> err(E e) {
  return Unexpected<E>(std::move(e));
}

// Either a value of type T or an error of type E (by default the library's Error), as
// std::expected. Construct it from a T for success and from err(e) for failure; test it with
// has_value() or `if (result)` before using value() or error().
template <class T, class E = Error>
class [[nodiscard]] Result {
  static_assert(!std::is_reference_v<T>, "Result<T&> is not supported");

 public:
  // The type of the success value.
  using value_type = T;
  // The type of the error.
  using error_type = E;

  // A success holding `v` (implicit, so a function can `return value;`).
  template <class U = T>
  requires std::is_constructible_v<T, U&&> &&
      (!std::is_same_v<std::remove_cvref_t<U>, Result>)constexpr Result(U&& v)
      : has_(true) {  // NOLINT(google-explicit-constructor)
    ::new (static_cast<void*>(&val_)) T(std::forward<U>(v));
  }
  // A failure holding the error of `u` (implicit, so a function can `return err(e);`).
  template <class G>
  requires std::is_constructible_v<E, G>
  constexpr Result(Unexpected<G> u) : has_(false) {  // NOLINT(google-explicit-constructor)
    ::new (static_cast<void*>(&err_)) E(std::move(u).error());
  }
  // Copies the value or the error.
  Result(const Result& o) : has_(o.has_) {
    if (has_) {
      ::new (static_cast<void*>(&val_)) T(o.val_);
    } else {
      ::new (static_cast<void*>(&err_)) E(o.err_);
    }
  }
  // Moves the value or the error out of `o` (which stays in the same state, moved-from).
  Result(Result&& o) noexcept(std::is_nothrow_move_constructible_v<T>) : has_(o.has_) {
    if (has_) {
      ::new (static_cast<void*>(&val_)) T(std::move(o.val_));
    } else {
      ::new (static_cast<void*>(&err_)) E(std::move(o.err_));
    }
  }
  // Replaces the contents with `o`'s value or error.
  Result& operator=(Result o) noexcept(std::is_nothrow_move_constructible_v<T>) {
    if (this != &o) {
      destroy();
      has_ = o.has_;
      if (has_) {
        ::new (static_cast<void*>(&val_)) T(std::move(o.val_));
      } else {
        ::new (static_cast<void*>(&err_)) E(std::move(o.err_));
      }
    }
    return *this;
  }
  // Destroys the value or the error.
  ~Result() { destroy(); }

  // True for a success.
  constexpr bool has_value() const noexcept { return has_; }
  // True for a success.
  constexpr explicit operator bool() const noexcept { return has_; }

  // The value. Aborts with a log line if this is an error (std::expected would throw).
  T& value() & {
    if (!has_) internal::result_misuse("Result::value() called on an error");
    return val_;
  }
  // The value. Aborts with a log line if this is an error.
  const T& value() const& {
    if (!has_) internal::result_misuse("Result::value() called on an error");
    return val_;
  }
  // The value, moved out. Aborts with a log line if this is an error.
  T&& value() && {
    if (!has_) internal::result_misuse("Result::value() called on an error");
    return std::move(val_);
  }
  // The error. Aborts with a log line if this is a success.
  const E& error() const& {
    if (has_) internal::result_misuse("Result::error() called on a value");
    return err_;
  }
  // The error, moved out. Aborts with a log line if this is a success.
  E&& error() && {
    if (has_) internal::result_misuse("Result::error() called on a value");
    return std::move(err_);
  }
  // The value, as value().
  T& operator*() & { return value(); }
  // The value, as value().
  const T& operator*() const& { return value(); }
  // The value moved out, as value().
  T&& operator*() && { return std::move(*this).value(); }
  // Member access to the value, as value().
  T* operator->() { return &value(); }
  // Member access to the value, as value().
  const T* operator->() const { return &value(); }

  // The value if this is a success, else `fallback` converted to T.
  template <class U>
  T value_or(U&& fallback) const& {
    return has_ ? val_ : static_cast<T>(std::forward<U>(fallback));
  }

 private:
  void destroy() noexcept {
    if (has_) {
      val_.~T();
    } else {
      err_.~E();
    }
  }

  bool has_;
  union {
    T val_;
    E err_;
  };
};

// Result of an operation that returns nothing on success: either success or an error of type E.
template <class E>
class [[nodiscard]] Result<void, E> {
 public:
  // No success value.
  using value_type = void;
  // The type of the error.
  using error_type = E;

  // A success.
  constexpr Result() noexcept : has_(true), err_() {}
  // A failure holding the error of `u` (implicit, so a function can `return err(e);`).
  template <class G>
  requires std::is_constructible_v<E, G>
  constexpr Result(Unexpected<G> u) : has_(false), err_(std::move(u).error()) {}  // NOLINT

  // True for a success.
  constexpr bool has_value() const noexcept { return has_; }
  // True for a success.
  constexpr explicit operator bool() const noexcept { return has_; }
  // Does nothing on success; aborts with a log line if this is an error.
  void value() const {
    if (!has_) internal::result_misuse("Result<void>::value() called on an error");
  }
  // The error. Aborts with a log line if this is a success.
  const E& error() const {
    if (has_) internal::result_misuse("Result<void>::error() called on a value");
    return err_;
  }

 private:
  bool has_;
  E err_;
};

// Success value for Result<void>.
inline constexpr Result<void> ok() { return {}; }

}  // namespace vmspace

// Propagates an error: `auto frame = VMS_TRY(alloc_frame());`. A GNU statement expression
// (gcc and clang; __extension__ keeps -Wpedantic quiet), as SerenityOS's TRY and frigg's
// FRG_TRY.
#define VMS_TRY(expr)                                                                            \
  __extension__({                                                                                \
    auto vms_try_result_ = (expr);                                                               \
    if (!vms_try_result_.has_value()) return ::vmspace::err(std::move(vms_try_result_).error()); \
    std::move(vms_try_result_).value();                                                          \
  })

// As VMS_TRY for Result<void>.
#define VMS_TRY_VOID(expr)                                                            \
  do {                                                                                \
    auto vms_try_result_ = (expr);                                                    \
    if (!vms_try_result_.has_value()) return ::vmspace::err(vms_try_result_.error()); \
  } while (0)
