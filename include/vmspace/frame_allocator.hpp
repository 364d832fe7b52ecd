// Frame allocation: FrameAllocOptions (the API kernels call), the GlobalFrameAllocator
// interface (what a teaching OS or a test can replace), and the built-in buddy allocator
// (OSTD `ostd/src/mm/frame/allocator.rs` `FrameAllocOptions`, `GlobalFrameAllocator`; OSDK's
// `osdk/deps/frame-allocator`).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>

#include <vmspace/frame.hpp>
#include <vmspace/segment.hpp>

namespace vmspace {

// Size and alignment of a physical allocation; both multiples of 4 KiB, alignment a power of
// two.
struct FrameLayout {
  // Bytes to allocate.
  std::size_t size = kPageSize;
  // Required alignment of the first byte, in bytes.
  std::size_t align = kPageSize;
};

// The allocator behind every frame allocation. Implementations must be thread-safe.
//
// Contract (OSTD's GlobalFrameAllocator): memory handed out is not in use; `dealloc` receives
// ranges that were allocated (in any sub-ranges, in any order) and never memory that is already
// free; `add_free_memory` receives boot-time ranges that never overlap each other. Memory
// passed in may hold any contents. Misuse must not corrupt anything outside the allocator's own
// state; the built-in allocator detects double frees and frees that overlap free memory and
// aborts with a message.
class GlobalFrameAllocator {
 public:
  virtual ~GlobalFrameAllocator() = default;
  // A free block of `layout.size` bytes aligned to `layout.align`, or nullopt if there is none.
  virtual std::optional<Paddr> alloc(FrameLayout layout) noexcept = 0;
  // Gives back [addr, addr + size), which was allocated by this allocator (see the contract).
  virtual void dealloc(Paddr addr, std::size_t size) noexcept = 0;
  // Adds [addr, addr + size) to the free memory (at boot, or when memory is lent to it).
  virtual void add_free_memory(Paddr addr, std::size_t size) noexcept = 0;
  // Bytes currently free (for statistics and leak checks).
  virtual std::uint64_t free_bytes() const noexcept = 0;
};

// The allocator currently installed (boots with defaults if needed).
GlobalFrameAllocator& global_frame_allocator();

// Installs `allocator` for all later allocations and frees and returns the previous one;
// nullptr reinstalls the built-in allocator. The typical use is a decorator that forwards to
// the previous allocator (e.g. one that fails on the Nth allocation), so frames allocated
// before the switch are still freed into the allocator that owns them. Not synchronised
// with concurrent allocations: call it while no other thread allocates or frees.
GlobalFrameAllocator* set_global_frame_allocator(GlobalFrameAllocator* allocator);

// Options for one allocation (OSTD's FrameAllocOptions). Frames are zeroed by default.
class FrameAllocOptions {
 public:
  FrameAllocOptions() = default;

  // When false, contents are whatever the previous owner left (faster; may leak data).
  FrameAllocOptions& zeroed(bool zeroed) noexcept {
    zeroed_ = zeroed;
    return *this;
  }

  // One untyped frame. Errors: NoMemory.
  Result<Frame<NoMeta>> alloc_frame() const noexcept { return alloc_frame_with(NoMeta{}); }

  // One frame carrying `meta`. Errors: NoMemory (nothing allocated).
  template <FrameMeta M>
  Result<Frame<M>> alloc_frame_with(M meta) const noexcept {
    auto pa = alloc_raw(FrameLayout{kPageSize, kPageSize});
    if (!pa) return err(pa.error());
    auto frame = Frame<M>::from_unused(*pa, std::move(meta));
    if (!frame) allocator_gave_used_frame(*pa, frame.error());
    return std::move(frame).value();
  }

  // `nframes` contiguous untyped frames. Errors: InvalidArgs if nframes == 0; Overflow if
  // nframes * 4 KiB wraps; NoMemory (nothing allocated).
  Result<Segment<NoMeta>> alloc_segment(std::size_t nframes) const noexcept {
    return alloc_segment_with(nframes, [](Paddr) { return NoMeta{}; });
  }

  // `nframes` contiguous frames with metadata fn(paddr) each. Errors as alloc_segment.
  template <class Fn, class M = std::invoke_result_t<Fn&, Paddr>>
  requires FrameMeta<M> Result<Segment<M>> alloc_segment_with(std::size_t nframes, Fn&& fn)
  const noexcept {
    if (nframes == 0) return err(Error::InvalidArgs);
    auto bytes = checked_mul(nframes, kPageSize);
    if (!bytes) return err(Error::Overflow);
    auto pa = alloc_raw(FrameLayout{*bytes, kPageSize});
    if (!pa) return err(pa.error());
    auto seg = Segment<M>::from_unused(PaRange{*pa, *pa + *bytes}, fn);
    if (!seg) allocator_gave_used_frame(*pa, seg.error());
    return std::move(seg).value();
  }

 private:
  // Allocates and (if asked) zeroes. Errors: NoMemory.
  Result<Paddr> alloc_raw(FrameLayout layout) const noexcept;
  [[noreturn]] static void allocator_gave_used_frame(Paddr pa, GetFrameError e) noexcept;

  bool zeroed_ = true;
};

// The built-in allocator: a binary buddy system over frame metadata (no heap) with per-CPU
// caches of small blocks.
//
// Free blocks are threaded through the MetaSlots of their first frames: each block head is
// held as a UniqueFrame-style slot (count = UNIQUE) whose metadata is a free-list link, so no
// frame handle can be created for free memory. Blocks of 1, 2 and 4 frames are cached per CPU
// (and in one shared, locked cache for unbound threads) and reused LIFO, so a frame that was
// just freed is the next one handed out on the same CPU, as OSTD's tests expect.
class BuddyFrameAllocator final : public GlobalFrameAllocator {
 public:
  // Largest block: 2^kMaxOrder frames (4 GiB).
  static constexpr unsigned kMaxOrder = 20;
  // Blocks of order <= kMaxCachedOrder go through the per-CPU caches.
  static constexpr unsigned kMaxCachedOrder = 2;

  // Counters of the allocator's state (stats()).
  struct Stats {
    std::uint64_t total_frames = 0;   // frames ever added with add_free_memory
    std::uint64_t free_frames = 0;    // free in the buddy lists and the caches
    std::uint64_t cached_frames = 0;  // of which in per-CPU / shared caches
    std::array<std::uint64_t, kMaxOrder + 1> free_blocks{};  // buddy blocks per order
  };

  // `ncpus` per-CPU caches are created; CPUs >= ncpus use the shared cache.
  explicit BuddyFrameAllocator(std::uint32_t ncpus);
  // Every block still free in this instance (in its buddy lists or its caches) becomes ordinary
  // unused memory again, so whoever lent the memory can take it back or give it to another
  // allocator. Blocks still allocated are not tracked: free them before destruction (into this
  // instance) or later into whichever allocator then owns the range. Precondition: no other
  // thread uses this instance.
  ~BuddyFrameAllocator() override;
  BuddyFrameAllocator(const BuddyFrameAllocator&) = delete;
  BuddyFrameAllocator& operator=(const BuddyFrameAllocator&) = delete;

  // A block of the smallest power-of-two order that holds `layout.size` at `layout.align`
  // (small blocks come from the CPU's cache), split off a larger one as needed. nullopt if the
  // layout is invalid or no block is free.
  std::optional<Paddr> alloc(FrameLayout layout) noexcept override;
  // Frees the range as aligned blocks: small ones go to the CPU's cache, larger ones merge with
  // their free buddies. Aborts on an invalid range, a double free or an overlap with free memory.
  void dealloc(Paddr addr, std::size_t size) noexcept override;
  // Adds the range as the largest aligned blocks that fit.
  void add_free_memory(Paddr addr, std::size_t size) noexcept override;
  // Bytes free in the buddy lists and the caches.
  std::uint64_t free_bytes() const noexcept override;

  // A consistent snapshot (takes every lock briefly).
  Stats stats() const noexcept;
  // Returns every cached block to the buddy lists (e.g. before checking for full merges).
  void drain_caches() noexcept;

  struct Impl;  // internal (src/frame/frame_allocator.cpp); public only so fork support can name it

 private:
  Impl* impl_;
};

// The built-in allocator instance (exists once booted, even if another is installed).
BuddyFrameAllocator& builtin_frame_allocator();

}  // namespace vmspace
