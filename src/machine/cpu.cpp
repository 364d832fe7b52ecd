// Emulated CPUs (cpu.hpp): CpuId, and CpuBinding, which binds the calling host thread to one
// emulated CPU (at most one thread per CPU, at most one CPU per thread).
#include <vmspace/cpu.hpp>
#include <vmspace/log.hpp>
#include <vmspace/rcu.hpp>

#include <ostream>
#include <thread>

#include "machine/cpu_local.hpp"
#include "machine/machine.hpp"

namespace vmspace {

namespace internal {
// The CPU this thread is bound to (see cpu_local.hpp).
thread_local constinit std::optional<CpuId> t_bound_cpu;
}  // namespace internal
using internal::t_bound_cpu;

std::ostream& operator<<(std::ostream& os, CpuId id) { return os << "cpu" << id.as_u32(); }

Result<CpuId> CpuId::try_from(std::uint32_t raw) {
  if (raw >= num_cpus()) return err(Error::InvalidArgs);
  return CpuId::from_raw_unchecked(raw);
}

std::uint32_t CpuId::cardinality() noexcept { return num_cpus(); }

std::uint32_t num_cpus() { return boot_config().num_cpus; }

std::optional<CpuId> current_cpu() noexcept { return t_bound_cpu; }

Result<CpuBinding> CpuBinding::bind(CpuId cpu) {
  ensure_booted();
  if (cpu.as_u32() >= num_cpus()) return err(Error::InvalidArgs);
  if (t_bound_cpu.has_value() || in_atomic_mode()) return err(Error::InvalidArgs);
  bool expected = false;
  if (!internal::per_cpu(cpu.as_u32())
           .bound.compare_exchange_strong(expected, true, std::memory_order_acquire,
                                          std::memory_order_relaxed)) {
    return err(Error::Busy);
  }
  t_bound_cpu = cpu;
  return CpuBinding(cpu);
}

Result<CpuBinding> CpuBinding::bind_any() {
  ensure_booted();
  if (t_bound_cpu.has_value() || in_atomic_mode()) return err(Error::InvalidArgs);
  for (std::uint32_t i = 0; i < num_cpus(); ++i) {
    auto b = bind(CpuId::from_raw_unchecked(i));
    if (b) return b;
  }
  return err(Error::Busy);
}

CpuBinding::CpuBinding(CpuBinding&& other) noexcept
    : cpu_(other.cpu_), active_(std::exchange(other.active_, false)) {}

CpuBinding& CpuBinding::operator=(CpuBinding&& other) noexcept {
  if (this != &other) {
    release();
    cpu_ = other.cpu_;
    active_ = std::exchange(other.active_, false);
  }
  return *this;
}

CpuBinding::~CpuBinding() { release(); }

void CpuBinding::release() noexcept {
  if (!active_) return;
  active_ = false;
  if (t_bound_cpu != cpu_) {
    VMS_PANIC("{} binding released on a thread that is not bound to it", cpu_.as_u32());
  }
  if (in_atomic_mode()) {
    VMS_PANIC("{} binding released inside atomic mode (a DisabledPreemptGuard pins the CPU)",
              cpu_.as_u32());
  }
  t_bound_cpu.reset();
  internal::per_cpu(cpu_.as_u32()).bound.store(false, std::memory_order_release);
}

}  // namespace vmspace
