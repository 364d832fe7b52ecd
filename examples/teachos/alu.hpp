// The arithmetic the instructions compute, apart from fetch and decode: the *W forms' sign
// extension, the M extension's corner cases and the A extension's atomic read-modify-writes.
// Split from machine.cpp so that file stays the story of one instruction's journey (fetch,
// translate, execute); this one is the ISA manual's tables turned into code.
#pragma once

#include <cstdint>
#include <limits>
#include <type_traits>

namespace teachos::alu {

// The *W instructions compute on 32 bits and sign-extend the result to 64.
constexpr std::uint64_t sext32(std::uint64_t v) noexcept {
  return static_cast<std::uint64_t>(static_cast<std::int64_t>(static_cast<std::int32_t>(v)));
}
constexpr std::int64_t as_signed(std::uint64_t v) noexcept { return static_cast<std::int64_t>(v); }
constexpr std::uint32_t lo32(std::uint64_t v) noexcept { return static_cast<std::uint32_t>(v); }

// ---- the M extension's corner cases: RISC-V never traps on division ----
// x / 0 = all ones and x % 0 = x (so that x == (x / y) * y + x % y still holds); the one
// signed overflow, INT_MIN / -1, gives INT_MIN with remainder 0.

template <class S, class U>
U div_signed(U a, U b) noexcept {
  const auto sa = static_cast<S>(a);
  const auto sb = static_cast<S>(b);
  if (sb == 0) return static_cast<U>(-1);
  if (sa == std::numeric_limits<S>::min() && sb == -1) return a;
  return static_cast<U>(sa / sb);
}
template <class S, class U>
U rem_signed(U a, U b) noexcept {
  const auto sa = static_cast<S>(a);
  const auto sb = static_cast<S>(b);
  if (sb == 0) return a;
  if (sa == std::numeric_limits<S>::min() && sb == -1) return 0;
  return static_cast<U>(sa % sb);
}
template <class U>
U div_unsigned(U a, U b) noexcept {
  return b == 0 ? static_cast<U>(-1) : static_cast<U>(a / b);
}
template <class U>
U rem_unsigned(U a, U b) noexcept {
  return b == 0 ? a : static_cast<U>(a % b);
}

// The upper 64 bits of the 128-bit product, for the three signedness combinations. gcc and
// clang's 128-bit integers are an extension (__extension__ keeps -Wpedantic quiet).
__extension__ typedef __int128 I128;
__extension__ typedef unsigned __int128 U128;

inline std::uint64_t mulh(std::uint64_t a, std::uint64_t b) noexcept {
  const I128 p = static_cast<I128>(as_signed(a)) * static_cast<I128>(as_signed(b));
  return static_cast<std::uint64_t>(static_cast<U128>(p) >> 64);
}
inline std::uint64_t mulhsu(std::uint64_t a, std::uint64_t b) noexcept {
  // |a| <= 2^63 and b < 2^64, so the product fits a signed 128-bit value.
  const I128 p = static_cast<I128>(as_signed(a)) * static_cast<I128>(b);
  return static_cast<std::uint64_t>(static_cast<U128>(p) >> 64);
}
inline std::uint64_t mulhu(std::uint64_t a, std::uint64_t b) noexcept {
  const U128 p = static_cast<U128>(a) * b;
  return static_cast<std::uint64_t>(p >> 64);
}

// ---- the A extension on host memory ----
//
// Why host atomics on the host pointer, and not the library's user-memory atomics
// (VmReader::atomic_load / VmWriter::atomic_compare_exchange, io.hpp)? Those are u32-only,
// each call enters its own read section and translates again (correct, but several times the
// cost of the instruction it emulates), they lack the 64-bit and read-modify-write forms, and
// on a miss they call the injected page-fault handler themselves, while a hart must hand the
// fault to its kernel as a trap. The hart already holds a read section and a translation made by
// mmu_translate for Write (so the PTE is writable and DIRTY), which keeps the frame alive;
// a __atomic builtin on that pointer is then exactly an AMO on the emulated physical memory,
// atomic against every other hart, because all harts share the one host mapping of physical
// memory. Every AMO is sequentially consistent, which satisfies any aq/rl combination.

enum AmoOp : unsigned {  // funct5
  kAmoAdd = 0x00,
  kAmoSwap = 0x01,
  kLr = 0x02,
  kSc = 0x03,
  kAmoXor = 0x04,
  kAmoOr = 0x08,
  kAmoAnd = 0x0c,
  kAmoMin = 0x10,
  kAmoMax = 0x14,
  kAmoMinu = 0x18,
  kAmoMaxu = 0x1c,
};

constexpr bool is_amo(unsigned op) noexcept {
  switch (op) {
    case kAmoAdd:
    case kAmoSwap:
    case kAmoXor:
    case kAmoOr:
    case kAmoAnd:
    case kAmoMin:
    case kAmoMax:
    case kAmoMinu:
    case kAmoMaxu:
      return true;
    default:
      return false;
  }
}

// Performs AMO `op` (is_amo(op)) on *p with operand v; returns the old value.
template <class U>
U amo(U* p, unsigned op, U v) noexcept {
  using S = std::make_signed_t<U>;
  switch (op) {
    case kAmoAdd:
      return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
    case kAmoSwap:
      return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST);
    case kAmoXor:
      return __atomic_fetch_xor(p, v, __ATOMIC_SEQ_CST);
    case kAmoOr:
      return __atomic_fetch_or(p, v, __ATOMIC_SEQ_CST);
    case kAmoAnd:
      return __atomic_fetch_and(p, v, __ATOMIC_SEQ_CST);
    case kAmoMin:
    case kAmoMax:
    case kAmoMinu:
    case kAmoMaxu: {
      // No host instruction for these: a compare-and-swap loop is still one atomic step.
      U old = __atomic_load_n(p, __ATOMIC_RELAXED);
      for (;;) {
        U next;
        switch (op) {
          case kAmoMin:
            next = static_cast<S>(v) < static_cast<S>(old) ? v : old;
            break;
          case kAmoMax:
            next = static_cast<S>(v) > static_cast<S>(old) ? v : old;
            break;
          case kAmoMinu:
            next = v < old ? v : old;
            break;
          default:
            next = v > old ? v : old;
            break;
        }
        if (__atomic_compare_exchange_n(p, &old, next, false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) {
          return old;
        }
      }
    }
    default:
      return 0;  // not reached: the caller checked is_amo(op)
  }
}

}  // namespace teachos::alu
