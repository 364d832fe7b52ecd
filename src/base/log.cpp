// The library's logger and its abort path: the spdlog logger `vmspace` (level from the
// VMSPACE_LOG environment variable, default `warn`) and panic_at(), which every VMS_PANIC and
// failed VMS_ASSERT ends in (log.hpp, assert.hpp).
#include <vmspace/assert.hpp>
#include <vmspace/log.hpp>
#include <vmspace/result.hpp>

#include <cstdlib>
#include <memory>

#include <spdlog/sinks/stdout_color_sinks.h>

namespace vmspace {

namespace {

std::shared_ptr<spdlog::logger> make_logger() {
  auto existing = spdlog::get("vmspace");
  if (existing) return existing;
  auto log = spdlog::stderr_color_mt("vmspace");
  log->set_level(spdlog::level::warn);
  if (const char* env = std::getenv("VMSPACE_LOG"); env != nullptr && *env != '\0') {
    auto level = spdlog::level::from_str(env);
    // from_str maps unknown names to `off`; only accept "off" when it was asked for.
    if (level != spdlog::level::off || std::string_view(env) == "off") {
      log->set_level(level);
    } else {
      log->warn("VMSPACE_LOG={} is not an spdlog level; keeping 'warn'", env);
    }
  }
  // Critical messages precede an abort: make sure they reach the terminal.
  log->flush_on(spdlog::level::err);
  return log;
}

}  // namespace

spdlog::logger& logger() {
  static std::shared_ptr<spdlog::logger> instance = make_logger();
  return *instance;
}

namespace internal {

void panic_at(const char* file, int line, std::string_view message) noexcept {
  logger().critical("{}:{}: {}", file, line, message);
  logger().flush();
  std::abort();
}

void result_misuse(const char* what) noexcept { panic_at(__FILE__, __LINE__, what); }

}  // namespace internal
}  // namespace vmspace
