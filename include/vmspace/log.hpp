// The library's one logger.
//
// Everything the library logs goes through the spdlog logger named "vmspace". Its level is
// `warn` unless the environment variable VMSPACE_LOG names another spdlog level (trace, debug,
// info, warn, error, critical, off). Nothing is logged on hot paths: VMS_TRACE lines are
// compiled out unless SPDLOG_ACTIVE_LEVEL admits trace (debug builds of this project do).
#pragma once

#include <spdlog/spdlog.h>

namespace vmspace {

// The "vmspace" logger, created on first use and registered with spdlog. Thread-safe.
spdlog::logger& logger();

}  // namespace vmspace

// Logs at trace level through logger(); compiled out unless SPDLOG_ACTIVE_LEVEL admits trace.
#define VMS_TRACE(...) SPDLOG_LOGGER_TRACE(&::vmspace::logger(), __VA_ARGS__)
// Logs at debug level through logger(); compiled out unless SPDLOG_ACTIVE_LEVEL admits debug.
#define VMS_DEBUG(...) SPDLOG_LOGGER_DEBUG(&::vmspace::logger(), __VA_ARGS__)
