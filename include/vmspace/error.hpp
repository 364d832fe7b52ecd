// The library-wide error vocabulary.
#pragma once

#include <cstdint>
#include <string_view>

namespace vmspace {

// Errors a caller can cause. The first seven are OSTD's `ostd::Error` set; the rest are
// added because this library returns errors where OSTD panics (docs/design.md, "Errors versus
// aborts") and a caller
// must be able to tell "you asked for something impossible" from "try again later".
//
// Rule: every value here describes caller-controlled input or resource exhaustion, and the
// operation that returned it changed no state. Broken internal invariants never become an
// Error: they abort with a log line (see assert.hpp).
enum class Error : std::uint8_t {
  InvalidArgs,   // Misaligned, empty, reversed or out-of-bounds arguments.
  NoMemory,      // The frame allocator (or the host) ran out of memory.
  PageFault,     // A user-memory access faulted and the fault handler did not resolve it.
  AccessDenied,  // Not permitted (kernel range, inactive space, page-table errors in VmSpace).
  IoError,       // Reserved for I/O memory users; the core never returns it.
  NotEnoughResources,  // A bounded resource other than memory is exhausted.
  Overflow,            // An address or size computation would wrap around.
  // --- additions (not in OSTD) ---
  AlreadyMapped,  // Mapping over an existing mapping or page-table node (OSTD panics).
  WouldBlock,     // A try_ operation found the resource held by someone else.
  WouldDeadlock,  // The calling thread already holds what it asks for (e.g. an
                  // overlapping cursor), so blocking would never end.
  Busy,           // The resource is taken and the API does not wait (e.g. CPU binding).
};

// The enumerator's name, e.g. "NoMemory" (for logs and test output).
constexpr std::string_view to_string(Error e) noexcept {
  switch (e) {
    case Error::InvalidArgs:
      return "InvalidArgs";
    case Error::NoMemory:
      return "NoMemory";
    case Error::PageFault:
      return "PageFault";
    case Error::AccessDenied:
      return "AccessDenied";
    case Error::IoError:
      return "IoError";
    case Error::NotEnoughResources:
      return "NotEnoughResources";
    case Error::Overflow:
      return "Overflow";
    case Error::AlreadyMapped:
      return "AlreadyMapped";
    case Error::WouldBlock:
      return "WouldBlock";
    case Error::WouldDeadlock:
      return "WouldDeadlock";
    case Error::Busy:
      return "Busy";
  }
  return "UnknownError";
}

}  // namespace vmspace
