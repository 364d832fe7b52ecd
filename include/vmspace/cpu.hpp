// Emulated CPUs: ids, the CPU count, and binding a host thread to a CPU.
//
// The machine has a fixed number of CPUs, chosen at boot (boot.hpp). A host thread becomes
// "CPU n" by holding a CpuBinding; at most one thread is bound to a CPU at a time, and a
// thread is bound to at most one CPU. Per-CPU state (the software TLB, the active VmSpace,
// the allocator's frame cache) belongs to the CPU, not to the thread: it survives when one
// thread unbinds and another binds, exactly like a core that keeps its TLB across tasks.
//
// Unbound threads run in "kernel context": they may create cursors and allocate frames, but
// they may not activate a VmSpace or read/write user memory.
#pragma once

#include <cstdint>
#include <optional>
#include <ostream>

#include <vmspace/assert.hpp>
#include <vmspace/id_set.hpp>
#include <vmspace/result.hpp>

namespace vmspace {

// The id of an emulated CPU, always < num_cpus() (OSTD's CpuId).
class CpuId {
 public:
  // The bootstrap processor, CPU 0. Every machine has it.
  static constexpr CpuId bsp() noexcept { return CpuId(0); }
  // Checked conversion. Errors: InvalidArgs if raw >= num_cpus(). Boots with defaults if the
  // machine is not booted yet.
  static Result<CpuId> try_from(std::uint32_t raw);
  // Unchecked construction for callers that already validated `raw` (e.g. iterating
  // 0..num_cpus()). Debug builds assert the bound.
  static CpuId from_raw_unchecked(std::uint32_t raw) noexcept;

  // The CPU's number, 0..num_cpus().
  constexpr std::uint32_t as_u32() const noexcept { return raw_; }
  // IdSet support (id_set.hpp): the number of distinct ids and the dense index.
  static std::uint32_t cardinality() noexcept;
  // The dense index of this id (its number).
  constexpr std::uint32_t as_index() const noexcept { return raw_; }
  // The id with dense index `i`. Precondition: i < cardinality().
  static CpuId from_index(std::uint32_t i) noexcept { return CpuId(i); }

  friend constexpr bool operator==(CpuId, CpuId) = default;
  friend constexpr auto operator<=>(CpuId, CpuId) = default;

 private:
  constexpr explicit CpuId(std::uint32_t raw) noexcept : raw_(raw) {}
  std::uint32_t raw_;
};

// Prints `cpu<N>`.
std::ostream& operator<<(std::ostream& os, CpuId id);

// The number of emulated CPUs (fixed after boot; boots with defaults on first use).
std::uint32_t num_cpus();

inline CpuId CpuId::from_raw_unchecked(std::uint32_t raw) noexcept {
  VMS_DEBUG_ASSERT(raw < num_cpus(), "CpuId {} out of range ({} CPUs)", raw, num_cpus());
  return CpuId(raw);
}

// The CPU the calling thread is bound to, or nullopt in kernel context (unbound).
std::optional<CpuId> current_cpu() noexcept;

// RAII binding of the calling thread to an emulated CPU.
//
// Not copyable; movable only within the binding thread (moving it to another thread and
// destroying it there is a contract violation that aborts). The destructor unbinds. A
// binding may not end while the thread is in atomic mode (a DisabledPreemptGuard pins the
// CPU): that aborts, as it would be a "migration" inside an RCU read section.
class [[nodiscard]] CpuBinding {
 public:
  // Binds the calling thread to `cpu`.
  // Errors: Busy if another thread is bound to `cpu`; InvalidArgs if the calling thread is
  // already bound to a CPU (including `cpu` itself) or is in atomic mode (a guard taken while
  // unbound would otherwise pin a CPU it never saw). Nothing changes on error.
  static Result<CpuBinding> bind(CpuId cpu);
  // Binds to the lowest-numbered free CPU. Errors: Busy if every CPU is taken;
  // InvalidArgs if the calling thread is already bound or in atomic mode.
  static Result<CpuBinding> bind_any();

  // Takes over the binding; `other` no longer unbinds. Only on the bound thread.
  CpuBinding(CpuBinding&& other) noexcept;
  // Ends this binding (if any) and takes over `other`'s. Only on the bound thread.
  CpuBinding& operator=(CpuBinding&& other) noexcept;
  CpuBinding(const CpuBinding&) = delete;
  CpuBinding& operator=(const CpuBinding&) = delete;
  ~CpuBinding();

  // The CPU this binding holds.
  CpuId cpu() const noexcept { return cpu_; }

 private:
  explicit CpuBinding(CpuId cpu) noexcept : cpu_(cpu), active_(true) {}
  void release() noexcept;

  CpuId cpu_;
  bool active_;
};

// Sets of CPUs (OSTD's CpuSet / AtomicCpuSet; id_set.hpp).
// A set of CPUs (a plain bitmap; not thread-safe).
using CpuSet = IdSet<CpuId>;
// A set of CPUs that threads may change concurrently, e.g. a space's active CPUs.
using AtomicCpuSet = AtomicIdSet<CpuId>;

}  // namespace vmspace
