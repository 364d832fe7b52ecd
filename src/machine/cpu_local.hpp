// Internal: the calling thread's CPU binding, read directly by the library's hot paths (every
// user access, guard, cursor and per-CPU frame cache) instead of through the exported
// current_cpu(). constinit tells other translation units that no dynamic initialisation is
// needed, so an access is one TLS load rather than a call to a TLS wrapper.
#pragma once

#include <optional>

#include <vmspace/cpu.hpp>

namespace vmspace::internal {

// Set by CpuBinding (cpu.cpp) only.
extern thread_local constinit std::optional<CpuId> t_bound_cpu;

inline std::optional<CpuId> bound_cpu() noexcept { return t_bound_cpu; }

}  // namespace vmspace::internal
