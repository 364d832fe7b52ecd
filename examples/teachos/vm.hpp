// A process's memory: the regions it may use, brk, mmap, the stack, fork and page faults.
//
// Two levels, as in every Unix since 4.4BSD's vm_map: the *regions* say what the process is
// allowed to touch (start, end, permissions, shared or private), and the *page table* (a
// vmspace::VmSpace) says what is backed by a frame right now. Most pages start in a region but
// not in the page table; the first touch faults and Vm::fault decides: fill a zero page (lazy
// allocation), copy or reuse a frame shared after fork (copy-on-write), grow the stack, or
// kill the process.
//
// Locking: one mutex per Vm, held across a whole operation (region change + page-table
// change), so a fault never sees a region whose pages are half unmapped. Lock order: the
// kernel's ptable_lock (proc.hpp) before a Vm's lock, never the other way.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>

#include <vmspace/mutex.hpp>
#include <vmspace/vm_space.hpp>

#include "elf.hpp"

namespace teachos {

inline constexpr std::uint64_t kPage = 4096;
inline constexpr std::uint64_t kStackTop = 0x3f'ffff'f000ULL;
inline constexpr std::uint64_t kStackMax = 8ULL << 20;    // the stack may grow to 8 MiB
inline constexpr std::uint64_t kStackGuard = 1ULL << 20;  // nothing is placed in the MiB below it
inline constexpr std::uint64_t kMmapTop = kStackTop - kStackMax - kStackGuard;

// Linux's PROT_* and MAP_* values.
enum : unsigned { kProtRead = 1, kProtWrite = 2, kProtExec = 4 };
enum : unsigned { kMapShared = 0x01, kMapPrivate = 0x02, kMapFixed = 0x10, kMapAnonymous = 0x20 };

enum class Access : std::uint8_t { Read, Write, Execute };
const char* access_name(Access a);

struct Region {
  std::uint64_t start = 0, end = 0;
  unsigned prot = 0;
  bool shared = false;  // MAP_SHARED: fork shares the frames instead of copy-on-write
  enum class Kind : std::uint8_t { Image, Heap, Stack, Mmap } kind = Kind::Mmap;
};

// Page-fault counters of one address space (reported at process exit).
struct VmStats {
  std::atomic<std::uint64_t> demand_zero{0}, cow_copy{0}, cow_reuse{0}, stack_growth{0}, fatal{0};
};

// What Vm::fault decided.
struct FaultOutcome {
  enum class Kind : std::uint8_t { Resolved, Fatal, OutOfMemory } kind = Kind::Resolved;
  const char* why = "";  // for Fatal: "not mapped", "write to read-only memory", ...
};

class Vm {
 public:
  // An empty address space. nullptr when no memory is left for its page table.
  static std::shared_ptr<Vm> create();

  const std::shared_ptr<vmspace::VmSpace>& space() const { return space_; }
  VmStats& stats() { return stats_; }

  // The page-fault routine, for faults the hart reports (trap.cpp) and faults in system-call
  // copies (the library's injected handler): resolves the fault or says why it cannot.
  // Precondition: not in atomic mode (it may wait for an RCU grace period when memory is
  // short).
  FaultOutcome fault(std::uint64_t va, Access access);

  // exec: maps the image's segments (file pages now, bss lazily), sets brk after them and the
  // stack region, and writes the initial stack. Returns 0 or -errno (ENOMEM).
  int load(const ElfImage& image, std::span<const std::byte> file, const InitialStack& stack);

  // fork: a new space with the same regions; private pages shared copy-on-write, MAP_SHARED
  // pages shared for real. nullptr when memory runs out.
  std::shared_ptr<Vm> fork();

  // The system calls (return values as the syscall returns them: >= 0 or -errno).
  std::int64_t brk(std::uint64_t new_brk);
  std::int64_t mmap(std::uint64_t addr, std::uint64_t len, unsigned prot, unsigned flags,
                    std::int64_t fd);
  std::int64_t munmap(std::uint64_t addr, std::uint64_t len);
  std::int64_t mprotect(std::uint64_t addr, std::uint64_t len, unsigned prot);

  // Frames mapped in this space right now (for statistics).
  std::uint64_t frames_mapped() const;

 private:
  explicit Vm(std::shared_ptr<vmspace::VmSpace> space) : space_(std::move(space)) {}
  FaultOutcome fault_once(std::uint64_t va, Access access);
  Region* find_locked(std::uint64_t va) VMS_REQUIRES(lock_);
  void split_at_locked(std::uint64_t va) VMS_REQUIRES(lock_);
  // Removes regions and pages in [start, end).
  void unmap_locked(std::uint64_t start, std::uint64_t end) VMS_REQUIRES(lock_);
  bool is_free_locked(std::uint64_t start, std::uint64_t end) const VMS_REQUIRES(lock_);
  std::uint64_t find_gap_locked(std::uint64_t len) const VMS_REQUIRES(lock_);
  int populate_locked(const Region& r) VMS_REQUIRES(lock_);

  std::shared_ptr<vmspace::VmSpace> space_;
  mutable vmspace::Mutex lock_;
  std::map<std::uint64_t, Region> regions_ VMS_GUARDED_BY(lock_);  // by start
  std::uint64_t brk_start_ VMS_GUARDED_BY(lock_) = 0;
  std::uint64_t brk_ VMS_GUARDED_BY(lock_) = 0;
  std::uint64_t stack_low_ VMS_GUARDED_BY(lock_) = kStackTop;  // lowest stack page ever mapped
  VmStats stats_;
};

// The page flags a region's protection maps to: the MMU needs R for any access, so W and X
// bring R along (PROT_NONE maps nothing readable at all).
vmspace::PageFlags flags_for(unsigned prot);

}  // namespace teachos
