// Booting the emulated machine: physical memory, frame metadata, CPUs, the kernel page table.
//
// There is one machine per process, like a booted kernel. `boot()` chooses its shape once;
// the first use of any API that needs the machine boots it with defaults if `boot()` was not
// called. Defaults: 1 GiB of physical memory (reserved with MAP_NORESERVE, so untouched
// memory costs nothing) and 4 CPUs; the environment variables VMSPACE_PHYS_MEM (bytes, with
// an optional K/M/G/T suffix) and VMSPACE_CPUS override them. The machine is never torn down
// before process exit.
//
// Physical memory is a memfd mapped MAP_SHARED|MAP_NORESERVE; a physical address is an offset
// into it and `paddr_to_vaddr` is the host pointer to that offset (the "linear mapping").
// Frame metadata is a separate MAP_NORESERVE array of 64-byte MetaSlots, one per 4 KiB frame.
// Frame 0 is reserved and never allocated, so a zero physical address never names a live
// frame.
#pragma once

#include <cstddef>
#include <cstdint>

#include <vmspace/addr.hpp>
#include <vmspace/assert.hpp>
#include <vmspace/result.hpp>

namespace vmspace {

class GlobalFrameAllocator;
struct MetaSlot;

// The shape of the emulated machine, fixed at boot: memory size, CPU count, frame allocator.
struct BootConfig {
  // Bytes of emulated physical memory: a multiple of 4 KiB in [kMinPhysMemBytes,
  // kMaxPhysMemBytes], i.e. 4 MiB to 64 GiB.
  std::uint64_t phys_mem_bytes = std::uint64_t{1} << 30;
  // Number of emulated CPUs, 1..kMaxCpus.
  std::uint32_t num_cpus = 4;
  // The frame allocator to install. nullptr selects the built-in buddy allocator. A custom
  // allocator must outlive the process (it is never destroyed); boot hands it all usable
  // memory through add_free_memory().
  GlobalFrameAllocator* frame_allocator = nullptr;

  // The largest CPU count a machine may have.
  static constexpr std::uint32_t kMaxCpus = 1024;
  // The smallest emulated physical memory boot accepts: 4 MiB.
  static constexpr std::uint64_t kMinPhysMemBytes = std::uint64_t{4} << 20;
  // Boot initialises every frame's 64-byte metadata slot eagerly, which writes 1/64 of the
  // physical size: the 64 GiB maximum costs 1 GiB of metadata writes (and that much resident
  // host memory) at boot. The linear-mapping window (64 TiB) would allow far more.
  static constexpr std::uint64_t kMaxPhysMemBytes = std::uint64_t{64} << 30;

  friend bool operator==(const BootConfig&, const BootConfig&) = default;
};

// The defaults described above, with VMSPACE_PHYS_MEM / VMSPACE_CPUS applied.
// Errors: InvalidArgs if an environment variable is set but malformed.
Result<BootConfig> default_boot_config();

// Boots the machine with `config`.
// Errors: InvalidArgs if the config is out of range, or if the machine is already booted with
// a different config (booting again with an equal config succeeds and does nothing);
// NoMemory if the host refuses the memory reservations. On error nothing is booted (unless it
// already was).
// Thread-safe: concurrent calls boot once.
Result<void> boot(const BootConfig& config);

// True once the machine is booted.
bool is_booted() noexcept;

// Boots with default_boot_config() if needed. Aborts with a logged message if the
// environment holds a malformed override (there is no caller to return an error to).
void ensure_booted();

// The config the machine was booted with (boots with defaults first if needed).
const BootConfig& boot_config();

namespace internal {
// Set once by boot, read on hot paths without synchronisation beyond boot's release/acquire
// (every API entry reaches them after ensure_booted()).
extern std::byte* g_phys_base;
extern MetaSlot* g_meta_base;
extern Paddr g_max_paddr;
}  // namespace internal

// Exclusive upper bound of physical memory (= phys_mem_bytes). Requires a booted machine.
inline Paddr max_paddr() noexcept { return internal::g_max_paddr; }

// Host pointer to physical address `pa`. Precondition: the machine is booted and
// pa <= max_paddr() (one past the end is allowed, as for any pointer).
inline std::byte* paddr_to_vaddr(Paddr pa) noexcept {
  VMS_DEBUG_ASSERT(pa <= internal::g_max_paddr, "paddr {:#x} beyond physical memory", pa);
  return internal::g_phys_base + pa;
}

// The inverse of paddr_to_vaddr for pointers into physical memory.
inline Paddr vaddr_to_paddr(const std::byte* p) noexcept {
  VMS_DEBUG_ASSERT(p >= internal::g_phys_base && p <= internal::g_phys_base + internal::g_max_paddr,
                   "pointer is not in physical memory");
  return static_cast<Paddr>(p - internal::g_phys_base);
}

// The emulated kernel virtual address of `pa` in the kernel page table's linear mapping
// (what OSTD's paddr_to_vaddr returns).
constexpr Vaddr linear_mapping_vaddr(Paddr pa) noexcept { return kLinearMappingBaseVaddr + pa; }

}  // namespace vmspace
