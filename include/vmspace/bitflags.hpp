// Bitwise operators for flag enums: `VMS_BITFLAGS(PageFlags)` after the enum definition makes
// `a | b`, `a & b`, `a ^ b`, `~a` and the compound forms work, and `has(a, b)` test bits.
#pragma once

#include <type_traits>

// Defines |, &, ^, ~, the compound assignments, has() (all bits set) and has_any() for the
// flag enum `E`. Use it at namespace scope, right after the enum.
#define VMS_BITFLAGS(E)                                                           \
  constexpr E operator|(E a, E b) noexcept {                                      \
    using U = std::underlying_type_t<E>;                                          \
    return static_cast<E>(static_cast<U>(static_cast<U>(a) | static_cast<U>(b))); \
  }                                                                               \
  constexpr E operator&(E a, E b) noexcept {                                      \
    using U = std::underlying_type_t<E>;                                          \
    return static_cast<E>(static_cast<U>(static_cast<U>(a) & static_cast<U>(b))); \
  }                                                                               \
  constexpr E operator^(E a, E b) noexcept {                                      \
    using U = std::underlying_type_t<E>;                                          \
    return static_cast<E>(static_cast<U>(static_cast<U>(a) ^ static_cast<U>(b))); \
  }                                                                               \
  constexpr E operator~(E a) noexcept {                                           \
    using U = std::underlying_type_t<E>;                                          \
    return static_cast<E>(static_cast<U>(~static_cast<U>(a)));                    \
  }                                                                               \
  constexpr E& operator|=(E& a, E b) noexcept { return a = a | b; }               \
  constexpr E& operator&=(E& a, E b) noexcept { return a = a & b; }               \
  constexpr E& operator^=(E& a, E b) noexcept { return a = a ^ b; }               \
  /* True when every bit of `bits` is set in `flags`. */                          \
  constexpr bool has(E flags, E bits) noexcept { return (flags & bits) == bits; } \
  /* True when any bit of `bits` is set in `flags`. */                            \
  constexpr bool has_any(E flags, E bits) noexcept {                              \
    return static_cast<std::underlying_type_t<E>>(flags & bits) != 0;             \
  }
