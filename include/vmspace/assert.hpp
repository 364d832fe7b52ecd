// Invariant checks. A failed check means the library itself (or memory corruption) broke an
// internal invariant: it logs the message at critical level through the "vmspace" logger and
// aborts. Caller-controlled input is never checked with these; it gets an Error instead.
#pragma once

#include <string_view>

#include <spdlog/fmt/fmt.h>

namespace vmspace::internal {

[[noreturn]] void panic_at(const char* file, int line, std::string_view message) noexcept;

}  // namespace vmspace::internal

// Aborts with a formatted message (fmt syntax). For states that must never happen.
#define VMS_PANIC(...) ::vmspace::internal::panic_at(__FILE__, __LINE__, ::fmt::format(__VA_ARGS__))

// Always-on check (tests and release builds alike). Use on paths that are not hot.
#define VMS_ASSERT(cond, ...)                                                            \
  do {                                                                                   \
    if (__builtin_expect(!(cond), 0)) {                                                  \
      ::vmspace::internal::panic_at(                                                     \
          __FILE__, __LINE__,                                                            \
          ::fmt::format("assertion failed: {}: {}", #cond, ::fmt::format(__VA_ARGS__))); \
    }                                                                                    \
  } while (0)

// Check compiled out of NDEBUG builds; for hot paths.
#ifdef NDEBUG
#define VMS_DEBUG_ASSERT(cond, ...) \
  do {                              \
    (void)sizeof(!(cond));          \
  } while (0)
#else
// Debug builds: the same check as VMS_ASSERT.
#define VMS_DEBUG_ASSERT(cond, ...) VMS_ASSERT(cond, __VA_ARGS__)
#endif
