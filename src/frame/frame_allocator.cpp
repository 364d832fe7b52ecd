// The built-in buddy frame allocator (see frame_allocator.hpp for the design summary).
//
// Free-block bookkeeping lives in the MetaSlots of the blocks' first frames:
//   buddy-list block head: ref_count = UNIQUE, vtable = FreeBlock, storage = FreeBlock (list
//                          hook), in_list = kBuddyTag | owner | order
//   cached block head:     ref_count = UNIQUE, vtable = FreeBlock, in_list = kCacheTag | owner |
//   order every other free frame and every allocated frame: ref_count = UNUSED, in_list = 0
// in_list is read atomically, so other threads can ask "is this a free head of order k?"
// without racing on the storage bytes. LinkedList ids stay below kCacheTag. `owner` (bits
// 8..61) identifies the allocator instance: several instances may manage parts of the same
// physical memory, and one must never merge a block with a free buddy that another owns.
#include <vmspace/cpu.hpp>
#include <vmspace/frame_allocator.hpp>
#include <vmspace/frame_list.hpp>
#include <vmspace/log.hpp>
#include <vmspace/mutex.hpp>

#include <algorithm>
#include <atomic>
#include <bit>
#include <memory>
#include <mutex>

#include <boost/intrusive/list.hpp>

#include "machine/cpu_local.hpp"
#include "machine/machine.hpp"
#include "base/single_writer.hpp"

namespace vmspace {

namespace {

namespace bi = boost::intrusive;

constexpr std::uint64_t kBuddyTag = std::uint64_t{1} << 63;
constexpr std::uint64_t kCacheTag = std::uint64_t{1} << 62;
constexpr std::uint64_t kOrderMask = 0xff;
constexpr unsigned kOwnerShift = 8;
constexpr std::uint64_t kMaxOwner = std::uint64_t{1} << (62 - kOwnerShift);
// A LinkedList member's in_list (its list id) must never look like a free-block tag.
static_assert(internal::kMaxFrameListId <= kCacheTag && kCacheTag < kBuddyTag);
constexpr unsigned kMaxOrder = BuddyFrameAllocator::kMaxOrder;
constexpr unsigned kMaxCachedOrder = BuddyFrameAllocator::kMaxCachedOrder;
// Cache capacity per cached order (blocks). Refill and drain move half of it.
// Order 0 holds 256 (half a leaf table's worth moves per refill/drain), so mapping or freeing
// pages in bulk takes the buddy lock once per 128 frames.
constexpr std::array<std::size_t, kMaxCachedOrder + 1> kCacheCapacity = {256, 32, 16};

struct FreeBlock {
  static constexpr const char* kTypeName = "FreeBlock";
  bi::list_member_hook<bi::link_mode<bi::safe_link>> hook;
};
static_assert(FrameMeta<FreeBlock>);

using FreeList =
    bi::list<FreeBlock, bi::member_hook<FreeBlock, decltype(FreeBlock::hook), &FreeBlock::hook>,
             bi::constant_time_size<false>>;

constexpr std::uint64_t block_bytes(unsigned order) noexcept { return kPageSize << order; }

MetaSlot* slot_of(FreeBlock* b) noexcept {
  return reinterpret_cast<MetaSlot*>(reinterpret_cast<std::byte*>(b) - offsetof(MetaSlot, storage));
}

// The owner bits of a new allocator instance.
std::uint64_t next_owner_tag() noexcept {
  static std::atomic<std::uint64_t> next_owner{1};
  const std::uint64_t owner = next_owner.fetch_add(1, std::memory_order_relaxed);
  if (owner >= kMaxOwner) VMS_PANIC("frame allocator: too many allocator instances ({})", owner);
  return owner << kOwnerShift;
}

// The whole in_list word of the slot at `pa` (0 beyond physical memory).
std::uint64_t in_list_word(Paddr pa) noexcept {
  if (pa >= max_paddr()) return 0;
  return meta_slot(pa)->in_list_ref().load(boost::memory_order_acquire);
}

// The tag and order of a head slot (of any allocator), or 0 if `pa` is not a free-block head.
std::uint64_t head_tag(Paddr pa) noexcept {
  if (pa >= max_paddr()) return 0;
  return meta_slot(pa)->in_list_ref().load(boost::memory_order_acquire) &
         (kBuddyTag | kCacheTag | kOrderMask);
}

bool is_free_head_tag(std::uint64_t tag) noexcept { return (tag & (kBuddyTag | kCacheTag)) != 0; }

// Aborts if any frame of [pa, pa + 2^order pages) is not an allocated-and-released frame, or if
// the block lies inside a larger free block: both mean a double free or an overlapping free.
// The containment scan reads one head tag per larger order (18 scattered loads), which made it
// the largest single cost of freeing frames in bulk; the per-frame state check is one load.
enum class Containment : std::uint8_t { Check, Skip };
#ifdef NDEBUG
constexpr Containment kDrainContainment = Containment::Skip;
#else
constexpr Containment kDrainContainment = Containment::Check;
#endif

void check_block_is_not_free(Paddr pa, unsigned order, const char* what,
                             Containment containment = Containment::Check) noexcept {
  for (Paddr f = pa; f < pa + block_bytes(order); f += kPageSize) {
    const std::uint64_t rc = meta_slot(f)->ref_count_ref().load(boost::memory_order_acquire);
    if (rc != kRefCountUnused) {
      if (is_free_head_tag(head_tag(f))) {
        VMS_PANIC("{}: frame {:#x} is already free (double free or overlapping free)", what, f);
      }
      VMS_PANIC("{}: frame {:#x} is still in use (reference count {:#x})", what, f, rc);
    }
  }
  if (containment == Containment::Skip) return;
  for (unsigned k = order + 1; k <= kMaxOrder; ++k) {
    const Paddr head = align_down(pa, block_bytes(k));
    const std::uint64_t tag = head_tag(head);
    if (is_free_head_tag(tag) && (tag & kOrderMask) >= k) {
      VMS_PANIC("{}: block {:#x} (order {}) lies inside the free block {:#x} (order {})", what, pa,
                order, head, tag & kOrderMask);
    }
  }
}

// Calls emit(pa, order) for the maximal aligned power-of-two blocks tiling [start, end).
template <class F>
void for_each_aligned_block(Paddr start, Paddr end, F&& emit) {
  while (start < end) {
    // countr_zero(0) is 64, so a block at address 0 is limited by the length alone.
    const unsigned order = std::min<unsigned>(
        {static_cast<unsigned>(std::countr_zero(start >> kPageShift)),
         static_cast<unsigned>(std::bit_width((end - start) >> kPageShift) - 1), kMaxOrder});
    emit(start, order);
    start += block_bytes(order);
  }
}

struct Cache {
  SpinLock lock;
  std::array<std::array<Paddr, kCacheCapacity[0]>, kMaxCachedOrder + 1> stack
      VMS_GUARDED_BY(lock){};
  std::array<std::size_t, kMaxCachedOrder + 1> count VMS_GUARDED_BY(lock){};
  // Frames held, readable without the lock (statistics).
  std::atomic<std::uint64_t> frames{0};
};

// Every live allocator instance, so that fork() can take all their locks (see
// internal::allocator_fork_prepare).
std::mutex g_instances_lock;
std::vector<BuddyFrameAllocator::Impl*> g_instances;
}  // namespace

struct BuddyFrameAllocator::Impl {
  explicit Impl(std::uint32_t ncpus)
      : ncpus(ncpus), owner(next_owner_tag()), cpu_caches(std::make_unique<Cache[]>(ncpus)) {
    std::lock_guard<std::mutex> g(g_instances_lock);
    g_instances.push_back(this);
  }
  ~Impl() {
    {
      std::lock_guard<std::mutex> g(g_instances_lock);
      std::erase(g_instances, this);
    }
    release_free_blocks();
  }
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  // Fork support: every lock of this instance, in the order the allocator nests them (a cache
  // lock, then the buddy lock).
  void lock_all() VMS_NO_THREAD_SAFETY_ANALYSIS {
    for (std::uint32_t i = 0; i < ncpus; ++i) cpu_caches[i].lock.lock();
    shared_cache.lock.lock();
    lock.lock();
  }
  void unlock_all() VMS_NO_THREAD_SAFETY_ANALYSIS {
    lock.unlock();
    shared_cache.lock.unlock();
    for (std::uint32_t i = ncpus; i-- > 0;) cpu_caches[i].lock.unlock();
  }

  const std::uint32_t ncpus;
  // This instance's owner bits in the in_list words of its free-block heads.
  const std::uint64_t owner;
  std::unique_ptr<Cache[]> cpu_caches;
  Cache shared_cache;

  mutable Mutex lock;
  std::array<FreeList, kMaxOrder + 1> lists VMS_GUARDED_BY(lock);
  std::array<std::uint64_t, kMaxOrder + 1> list_len VMS_GUARDED_BY(lock){};
  std::atomic<std::uint64_t> buddy_free_frames{0};
  std::atomic<std::uint64_t> total_frames{0};

  // Cache::frames changes only under the cache's lock (one writer at a time).
  static void add_frames(Cache& c, std::uint64_t n) VMS_REQUIRES(c.lock) {
    internal::single_writer_add(c.frames, n);
  }
  static void sub_frames(Cache& c, std::uint64_t n) VMS_REQUIRES(c.lock) {
    internal::single_writer_add(c.frames, -n);
  }

  Cache& my_cache() noexcept {
    auto cpu = internal::bound_cpu();
    if (cpu && cpu->as_u32() < ncpus) return cpu_caches[cpu->as_u32()];
    return shared_cache;
  }

  // --- buddy lists (global lock held) ---

  void push_block(Paddr pa, unsigned order) VMS_REQUIRES(lock) {
    MetaSlot* s = meta_slot(pa);
    auto* b = ::new (s->meta_ptr()) FreeBlock();
    s->vtable = meta_vtable<FreeBlock>();
    s->ref_count_ref().store(kRefCountUnique, boost::memory_order_relaxed);
    s->in_list_ref().store(kBuddyTag | owner | order, boost::memory_order_release);
    lists[order].push_front(*b);
    ++list_len[order];
    buddy_free_frames.fetch_add(std::uint64_t{1} << order, std::memory_order_relaxed);
  }

  void unlink_block(FreeBlock& b, unsigned order) VMS_REQUIRES(lock) {
    lists[order].erase(lists[order].iterator_to(b));
    --list_len[order];
    buddy_free_frames.fetch_sub(std::uint64_t{1} << order, std::memory_order_relaxed);
    MetaSlot* s = slot_of(&b);
    b.~FreeBlock();
    s->vtable = nullptr;
    s->in_list_ref().store(0, boost::memory_order_relaxed);
    s->ref_count_ref().store(kRefCountUnused, boost::memory_order_release);
  }

  // Frees a block into the buddy lists, merging with free buddies.
  // `containment`: Skip only for blocks drained from a per-CPU cache, which were checked when
  // they were freed into it (fully in debug builds).
  void free_block(Paddr pa, unsigned order, Containment containment = Containment::Check)
      VMS_REQUIRES(lock) {
    check_block_is_not_free(pa, order, "frame allocator", containment);
    while (order < kMaxOrder) {
      const Paddr buddy = pa ^ block_bytes(order);
      // Only a buddy in this instance's lists may be merged.
      if (buddy + block_bytes(order) > max_paddr() ||
          in_list_word(buddy) != (kBuddyTag | owner | order)) {
        break;
      }
      auto* b = std::launder(static_cast<FreeBlock*>(meta_slot(buddy)->meta_ptr()));
      unlink_block(*b, order);
      pa = std::min(pa, buddy);
      ++order;
    }
    push_block(pa, order);
  }

  // Takes a block of exactly `order`, splitting a larger one if needed.
  std::optional<Paddr> take_block(unsigned order) VMS_REQUIRES(lock) {
    unsigned k = order;
    while (k <= kMaxOrder && lists[k].empty()) ++k;
    if (k > kMaxOrder) return std::nullopt;
    FreeBlock& b = lists[k].front();
    const Paddr pa = slot_paddr(slot_of(&b));
    unlink_block(b, k);
    while (k > order) {
      --k;
      push_block(pa + block_bytes(k), k);
    }
    return pa;
  }

  // --- per-CPU caches ---

  void mark_cached(Paddr pa, unsigned order) const noexcept {
    MetaSlot* s = meta_slot(pa);
    s->vtable = meta_vtable<FreeBlock>();
    s->ref_count_ref().store(kRefCountUnique, boost::memory_order_relaxed);
    s->in_list_ref().store(kCacheTag | owner | order, boost::memory_order_release);
  }
  static void unmark_cached(Paddr pa) noexcept {
    MetaSlot* s = meta_slot(pa);
    s->vtable = nullptr;
    s->in_list_ref().store(0, boost::memory_order_relaxed);
    s->ref_count_ref().store(kRefCountUnused, boost::memory_order_release);
  }

  std::optional<Paddr> cache_alloc(unsigned order) noexcept {
    Cache& c = my_cache();
    {
      LockGuard<SpinLock> g(c.lock);
      if (c.count[order] == 0) refill(c, order);
      if (c.count[order] != 0) {
        const Paddr pa = c.stack[order][--c.count[order]];
        sub_frames(c, std::uint64_t{1} << order);
        unmark_cached(pa);
        return pa;
      }
    }
    // Out of memory in the buddy lists: other caches may still hold blocks.
    drain_all();
    LockGuard<Mutex> g(lock);
    return take_block(order);
  }

  void refill(Cache& c, unsigned order) VMS_REQUIRES(c.lock) {
    LockGuard<Mutex> g(lock);
    const std::size_t want = kCacheCapacity[order] / 2;
    while (c.count[order] < want) {
      auto pa = take_block(order);
      if (!pa) break;
      mark_cached(*pa, order);
      c.stack[order][c.count[order]++] = *pa;
      add_frames(c, std::uint64_t{1} << order);
    }
  }

  void cache_free(Paddr pa, unsigned order) noexcept {
    // The cheap double-free check: a cached or buddy head is UNIQUE, a live frame is in use.
    const std::uint64_t rc = meta_slot(pa)->ref_count_ref().load(boost::memory_order_acquire);
    if (rc != kRefCountUnused) check_block_is_not_free(pa, order, "frame allocator");
#ifndef NDEBUG
    {
      LockGuard<Mutex> g(lock);
      check_block_is_not_free(pa, order, "frame allocator");
    }
#endif
    Cache& c = my_cache();
    LockGuard<SpinLock> g(c.lock);
    if (c.count[order] == kCacheCapacity[order]) drain(c, order, kCacheCapacity[order] / 2);
    mark_cached(pa, order);
    c.stack[order][c.count[order]++] = pa;
    add_frames(c, std::uint64_t{1} << order);
  }

  // Moves the `n` oldest (bottom) blocks of one cache order back to the buddy lists.
  void drain(Cache& c, unsigned order, std::size_t n) VMS_REQUIRES(c.lock) {
    n = std::min(n, c.count[order]);
    if (n == 0) return;
    LockGuard<Mutex> g(lock);
    for (std::size_t i = 0; i < n; ++i) {
      const Paddr pa = c.stack[order][i];
      unmark_cached(pa);
      free_block(pa, order, kDrainContainment);
    }
    std::copy(c.stack[order].begin() + static_cast<std::ptrdiff_t>(n),
              c.stack[order].begin() + static_cast<std::ptrdiff_t>(c.count[order]),
              c.stack[order].begin());
    c.count[order] -= n;
    sub_frames(c, n << order);
  }

  void drain_cache(Cache& c) noexcept {
    LockGuard<SpinLock> g(c.lock);
    for (unsigned o = 0; o <= kMaxCachedOrder; ++o) drain(c, o, c.count[o]);
  }

  void drain_all() noexcept {
    for (std::uint32_t i = 0; i < ncpus; ++i) drain_cache(cpu_caches[i]);
    drain_cache(shared_cache);
  }

  // Returns every free block's head slot to the unused state, so that the memory can be given
  // to another allocator (or back to the one it came from) after this instance is gone.
  // Without this the heads stayed UNIQUE and tagged free, and freeing that memory anywhere
  // else aborted as a double free.
  void release_free_blocks() noexcept {
    drain_all();
    LockGuard<Mutex> g(lock);
    for (unsigned order = 0; order <= kMaxOrder; ++order) {
      while (!lists[order].empty()) unlink_block(lists[order].front(), order);
    }
  }

  std::uint64_t cached_frames() const noexcept {
    std::uint64_t n = shared_cache.frames.load(std::memory_order_relaxed);
    for (std::uint32_t i = 0; i < ncpus; ++i)
      n += cpu_caches[i].frames.load(std::memory_order_relaxed);
    return n;
  }
};

BuddyFrameAllocator::BuddyFrameAllocator(std::uint32_t ncpus) : impl_(new Impl(ncpus)) {}

BuddyFrameAllocator::~BuddyFrameAllocator() { delete impl_; }

std::optional<Paddr> BuddyFrameAllocator::alloc(FrameLayout layout) noexcept {
  if (layout.size == 0 || !is_aligned(layout.size, kPageSize) || layout.align < kPageSize ||
      (layout.align & (layout.align - 1)) != 0) {  // not a power of two (has_single_bit calls
                                                   // libgcc's popcount on baseline x86-64)
    return std::nullopt;
  }
  const std::uint64_t nframes = layout.size >> kPageShift;
  unsigned order = static_cast<unsigned>(std::bit_width(nframes - 1));
  order = std::max(order, static_cast<unsigned>(std::countr_zero(layout.align >> kPageShift)));
  if (order > kMaxOrder) return std::nullopt;
  if (order <= kMaxCachedOrder && nframes == (std::uint64_t{1} << order)) {
    return impl_->cache_alloc(order);
  }
  auto take = [&]() -> std::optional<Paddr> {
    LockGuard<Mutex> g(impl_->lock);
    auto pa = impl_->take_block(order);
    if (!pa) return std::nullopt;
    // Give back the unused tail of the power-of-two block.
    for_each_aligned_block(*pa + layout.size, *pa + block_bytes(order),
                           [&](Paddr p, unsigned o)
                               VMS_NO_THREAD_SAFETY_ANALYSIS { impl_->push_block(p, o); });
    return pa;
  };
  if (auto pa = take()) return pa;
  // Frames waiting in per-CPU caches keep their blocks from merging: drain them and retry, as
  // cache_alloc does for the small orders.
  impl_->drain_all();
  return take();
}

void BuddyFrameAllocator::dealloc(Paddr addr, std::size_t size) noexcept {
  if (size == 0 || !is_aligned(addr, kPageSize) || !is_aligned(size, kPageSize) ||
      addr < kPageSize || addr > max_paddr() || size > max_paddr() - addr) {
    VMS_PANIC("frame allocator: dealloc of an invalid range [{:#x}, +{:#x})", addr, size);
  }
  if (size == kPageSize) {
    impl_->cache_free(addr, 0);
    return;
  }
  for_each_aligned_block(addr, addr + size, [&](Paddr p, unsigned o) {
    if (o <= kMaxCachedOrder) {
      impl_->cache_free(p, o);
    } else {
      LockGuard<Mutex> g(impl_->lock);
      impl_->free_block(p, o);
    }
  });
}

void BuddyFrameAllocator::add_free_memory(Paddr addr, std::size_t size) noexcept {
  if (size == 0) return;
  if (!is_aligned(addr, kPageSize) || !is_aligned(size, kPageSize) || addr > max_paddr() ||
      size > max_paddr() - addr) {
    VMS_PANIC("frame allocator: add_free_memory of an invalid range [{:#x}, +{:#x})", addr, size);
  }
  LockGuard<Mutex> g(impl_->lock);
  for_each_aligned_block(addr, addr + size, [&](Paddr p, unsigned o) VMS_NO_THREAD_SAFETY_ANALYSIS {
    impl_->free_block(p, o);
  });
  impl_->total_frames.fetch_add(size >> kPageShift, std::memory_order_relaxed);
}

std::uint64_t BuddyFrameAllocator::free_bytes() const noexcept {
  return (impl_->buddy_free_frames.load(std::memory_order_relaxed) + impl_->cached_frames())
         << kPageShift;
}

BuddyFrameAllocator::Stats BuddyFrameAllocator::stats() const noexcept {
  Stats s;
  LockGuard<Mutex> g(impl_->lock);
  s.total_frames = impl_->total_frames.load(std::memory_order_relaxed);
  s.cached_frames = impl_->cached_frames();
  s.free_frames = impl_->buddy_free_frames.load(std::memory_order_relaxed) + s.cached_frames;
  for (unsigned o = 0; o <= kMaxOrder; ++o) s.free_blocks[o] = impl_->list_len[o];
  return s;
}

void BuddyFrameAllocator::drain_caches() noexcept { impl_->drain_all(); }

namespace internal {

// fork() copies memory but only the calling thread: a lock another thread held at that moment
// stays held in the child forever. Taking every allocator lock around fork() gives the child
// unlocked, consistent allocators (boot.cpp registers these with pthread_atfork).
void allocator_fork_prepare() VMS_NO_THREAD_SAFETY_ANALYSIS {
  g_instances_lock.lock();
  for (BuddyFrameAllocator::Impl* impl : g_instances) impl->lock_all();
}
void allocator_fork_release() VMS_NO_THREAD_SAFETY_ANALYSIS {
  for (auto it = g_instances.rbegin(); it != g_instances.rend(); ++it) (*it)->unlock_all();
  g_instances_lock.unlock();
}

}  // namespace internal

// The replaceable global allocator (frame_allocator.hpp); frames reach it through g_allocator.
GlobalFrameAllocator& global_frame_allocator() {
  ensure_booted();
  return *internal::g_allocator.load(std::memory_order_acquire);
}

GlobalFrameAllocator* set_global_frame_allocator(GlobalFrameAllocator* allocator) {
  ensure_booted();
  GlobalFrameAllocator* next =
      allocator != nullptr ? allocator : internal::machine().builtin_allocator;
  return internal::g_allocator.exchange(next, std::memory_order_acq_rel);
}

BuddyFrameAllocator& builtin_frame_allocator() {
  ensure_booted();
  return *internal::machine().builtin_allocator;
}

}  // namespace vmspace
