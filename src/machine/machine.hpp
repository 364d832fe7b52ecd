// Internal: the process-wide emulated machine created by boot().
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

#include <vmspace/assert.hpp>
#include <vmspace/boot.hpp>
#include <vmspace/frame_allocator.hpp>

#include "vm/tlb_impl.hpp"

namespace vmspace {
class VmSpace;
}

namespace vmspace::internal {

// State that belongs to one emulated CPU. Owned by the machine; accessed by the thread bound
// to the CPU, except where a field says otherwise.
struct PerCpu {
  // Set while a thread is bound to this CPU (acquire on bind, release on unbind, so the next
  // thread to bind sees everything the previous one did to the per-CPU state).
  std::atomic<bool> bound{false};
  // The user space activated on this CPU (null: only the kernel table). Bound thread only.
  std::shared_ptr<VmSpace> active;
  // The root the CPU translates through ("CR3"): the active space's root or the kernel root.
  // Written by the bound thread, readable by anyone.
  std::atomic<Paddr> current_root{0};
  // The software TLB (see tlb_impl.hpp for who may touch what).
  Tlb tlb;
};

struct Machine {
  BootConfig config;
  int memfd = -1;
  std::byte* phys = nullptr;
  std::uint64_t phys_bytes = 0;
  MetaSlot* meta = nullptr;
  std::size_t meta_bytes = 0;
  std::uint32_t* generations = nullptr;
  std::unique_ptr<PerCpu[]> cpus;
  BuddyFrameAllocator* builtin_allocator = nullptr;  // never destroyed
};

// The machine; defined in boot.cpp. Use machine().
extern Machine g_machine;
// Whether boot() has built the machine (or is building it on this thread).
bool machine_ready() noexcept;

// The booted machine. Precondition: is_booted(). Inline: every user access reaches its CPU
// through it.
inline Machine& machine() noexcept {
  VMS_DEBUG_ASSERT(machine_ready(), "machine not booted");
  return g_machine;
}

// The installed allocator (hot path: one relaxed load).
extern std::atomic<GlobalFrameAllocator*> g_allocator;

// Builds the kernel page table (boot, after the allocator is installed).
Result<void> init_kernel_page_table();

inline PerCpu& per_cpu(std::uint32_t cpu) noexcept { return machine().cpus[cpu]; }

// Fork support (registered with pthread_atfork at boot): prepare takes the locks a background
// thread could hold, so the child starts with none held; release drops them (parent and child).
void rcu_fork_prepare();
void rcu_fork_release();
void rcu_fork_child();  // after rcu_fork_release, in the child
void allocator_fork_prepare();
void allocator_fork_release();

}  // namespace vmspace::internal
