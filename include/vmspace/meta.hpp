// Per-frame metadata: the 64-byte MetaSlot, the reference-count state machine, and the
// FrameMeta concept for typed metadata (OSTD `ostd/src/mm/frame/meta.rs`, `MetaSlot`,
// `AnyFrameMeta`).
//
// Every 4 KiB frame of physical memory has one MetaSlot in a separate array. The slot holds
// the frame's typed metadata value (at most 40 bytes), its reference count, a pointer to the
// metadata type's vtable and the id of the LinkedList the frame is on. The reference count
// follows OSTD's state machine exactly:
//
//   UNUSED (2^64-1) --from_unused--> 0 (busy: writing metadata) --> 1..MAX (in use)
//   in use --last drop--> 0 (busy: on_drop, destroy metadata) --> UNUSED --> allocator
//   UNUSED --UniqueFrame::from_unused--> UNIQUE (2^64-2), sole owner; UNIQUE <-> 1 by conversion
//
// Values in [MAX, UNIQUE) are illegal; an increment that observes >= MAX aborts.
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>
#include <ostream>
#include <type_traits>
#include <utility>

#include <boost/atomic/atomic_ref.hpp>

#include <vmspace/addr.hpp>
#include <vmspace/boot.hpp>
#include <vmspace/io.hpp>

namespace vmspace {

// Reference count of a free frame (UNUSED in the state machine above).
inline constexpr std::uint64_t kRefCountUnused = ~std::uint64_t{0};
// Reference count of a frame owned by a UniqueFrame (UNIQUE).
inline constexpr std::uint64_t kRefCountUnique = ~std::uint64_t{0} - 1;
// Counts at or above this are illegal; an increment that reaches it aborts.
inline constexpr std::uint64_t kRefCountMax = std::uint64_t{INT64_MAX};
// Bytes of one MetaSlot.
inline constexpr std::size_t kMetaSlotSize = 64;
// The largest metadata type a frame can carry, in bytes.
inline constexpr std::size_t kFrameMetadataMaxSize = 40;
// Metadata alignment must divide this.
inline constexpr std::size_t kFrameMetadataMaxAlign = 64;

// Why a frame handle could not be created from a physical address.
enum class GetFrameError : std::uint8_t {
  InUse,       // from_unused: the frame is already in use
  Unused,      // from_in_use: the frame is free
  Busy,        // the frame is being built or torn down (refcount 0)
  Unique,      // the frame is owned by a UniqueFrame
  OutOfBound,  // the address is at or beyond max_paddr()
  NotAligned,  // the address is not 4 KiB-aligned
  EmptyRange,  // Segment::from_unused over an empty range (OSTD panics; we return this)
};
// Prints the enumerator's name.
std::ostream& operator<<(std::ostream& os, GetFrameError e);

// Describes one metadata type; its address is the type's identity. Built by the library for
// every FrameMeta type (meta_vtable<M>()); users never write one.
struct MetaVtable {
  // The metadata type's kTypeName, or a placeholder when it has none.
  const char* type_name;
  // Whether frames of this type may be mapped into user space (kIsUntyped).
  bool is_untyped;
  // Called with a reader over the frame's contents when the last handle drops (may be null).
  void (*on_drop)(void* meta, VmReader<Infallible>& frame_contents);
  // Runs the metadata's destructor in place.
  void (*destroy)(void* meta) noexcept;
};

// The 64-byte slot. Layout is fixed and asserted; fields shared between threads are accessed
// through boost::atomic_ref with the orders OSTD uses for them (`ostd/src/mm/frame/meta.rs`,
// `MetaSlot`): claiming a slot acquires and publishing it releases; a clone adds relaxed; a
// drop subtracts with release and fences with acquire when it reaches zero.
struct alignas(kMetaSlotSize) MetaSlot {
  // offset 0x00: the metadata value, placement-constructed while the count is 0 (busy).
  alignas(kFrameMetadataMaxAlign) std::byte storage[kFrameMetadataMaxSize];
  // offset 0x28: the reference count (state machine above).
  std::uint64_t ref_count;
  // offset 0x30: the metadata type; written while busy, published by the count's release.
  const MetaVtable* vtable;
  // offset 0x38: 0 when on no LinkedList, else that list's id. Atomic: LinkedList::contains
  // may be asked about any frame.
  std::uint64_t in_list;

  // Atomic access to the reference count.
  boost::atomic_ref<std::uint64_t> ref_count_ref() noexcept {
    return boost::atomic_ref<std::uint64_t>(ref_count);
  }
  // Atomic access to the list id.
  boost::atomic_ref<std::uint64_t> in_list_ref() noexcept {
    return boost::atomic_ref<std::uint64_t>(in_list);
  }
  // Where the metadata value lives.
  void* meta_ptr() noexcept { return static_cast<void*>(storage); }
};
static_assert(sizeof(MetaSlot) == kMetaSlotSize);
static_assert(offsetof(MetaSlot, storage) == 0x00);
static_assert(offsetof(MetaSlot, ref_count) == 0x28);
static_assert(offsetof(MetaSlot, vtable) == 0x30);
static_assert(offsetof(MetaSlot, in_list) == 0x38);
static_assert(std::is_trivial_v<MetaSlot> && std::is_standard_layout_v<MetaSlot>);
static_assert(boost::atomic_ref<std::uint64_t>::is_always_lock_free);

// A metadata type a frame can carry. At most 40 bytes; its alignment divides 64; destruction
// cannot throw. Optional members:
//   static constexpr bool kIsUntyped = true;   frames may be mapped into user space
//   void on_drop(VmReader<Infallible>& r);     runs with a reader over the page when the last
//                                             handle drops, before the destructor
//   static constexpr const char* kTypeName;    for messages
template <class M>
concept FrameMeta =
    std::is_object_v<M> && !std::is_const_v<M> && sizeof(M) <= kFrameMetadataMaxSize &&
    (kFrameMetadataMaxAlign % alignof(M) == 0) && std::is_nothrow_destructible_v<M>;

// Whether metadata type M declares itself untyped (`static constexpr bool kIsUntyped = true`).
template <class M>
constexpr bool is_untyped_meta() noexcept {
  if constexpr (requires { M::kIsUntyped; }) {
    return M::kIsUntyped;
  } else {
    return false;
  }
}

// Metadata of frames that may be mapped into user space (OSTD's AnyUFrameMeta).
template <class M>
concept UntypedFrameMeta = FrameMeta<M> && is_untyped_meta<M>();

// The unit metadata: plain untyped frames (OSTD's `()`); what alloc_frame() returns.
struct NoMeta {
  // Plain frames may be mapped into user space.
  static constexpr bool kIsUntyped = true;
  // The name in messages.
  static constexpr const char* kTypeName = "NoMeta";
};

// Type-erasure tags: Frame<AnyFrameMeta> holds a frame of any metadata type, and
// Frame<AnyUFrameMeta> (UFrame) a frame of any untyped metadata type.
struct AnyFrameMeta;
struct AnyUFrameMeta;

template <class M>
concept ErasedMeta = std::is_same_v<M, AnyFrameMeta> || std::is_same_v<M, AnyUFrameMeta>;

// Anything a frame handle can be parameterised with.
template <class M>
concept HandleMeta = FrameMeta<M> || ErasedMeta<M>;

// True when a handle with metadata M may be converted to one with metadata To.
template <class M, class To>
concept MetaConvertibleTo = std::is_same_v<M, To> || std::is_same_v<To, AnyFrameMeta> ||
    (std::is_same_v<To, AnyUFrameMeta> &&
     (UntypedFrameMeta<M> || std::is_same_v<M, AnyUFrameMeta>));

namespace internal {

template <FrameMeta M>
struct MetaVtableHolder {
  static void on_drop(void* meta, VmReader<Infallible>& r) {
    if constexpr (requires(M & m) { m.on_drop(r); }) static_cast<M*>(meta)->on_drop(r);
  }
  static void destroy(void* meta) noexcept { static_cast<M*>(meta)->~M(); }
  static constexpr const char* name() noexcept {
    if constexpr (requires { M::kTypeName; }) {
      return M::kTypeName;
    } else {
      return "frame metadata";
    }
  }
  static constexpr bool kHasOnDrop = requires(M & m, VmReader<Infallible>& r) { m.on_drop(r); };
  static constexpr MetaVtable kVtable{name(), is_untyped_meta<M>(), kHasOnDrop ? &on_drop : nullptr,
                                      &destroy};
};

// Aborts: the count was about to reach REF_COUNT_MAX (OSTD aborts too).
[[noreturn]] void refcount_overflow(Paddr pa) noexcept;
// The last handle dropped (count 1 -> 0): run on_drop, destroy the metadata, mark the slot
// unused and return the frame to the allocator.
void drop_last(MetaSlot* slot) noexcept;
// Per-frame incarnation counters, incremented each time a frame becomes unused. The TLB
// checker compares them to detect use of a freed frame.
extern std::uint32_t* g_frame_generation;

}  // namespace internal

template <FrameMeta M>
constexpr const MetaVtable* meta_vtable() noexcept {
  return &internal::MetaVtableHolder<M>::kVtable;
}

// Slot of the frame at `pa`. Precondition: aligned and < max_paddr().
inline MetaSlot* meta_slot(Paddr pa) noexcept {
  VMS_DEBUG_ASSERT(is_aligned(pa, kPageSize) && pa < max_paddr(), "bad frame paddr {:#x}", pa);
  return internal::g_meta_base + (pa >> kPageShift);
}
// The physical address of the frame `slot` describes. Precondition: `slot` is in the metadata
// array.
inline Paddr slot_paddr(const MetaSlot* slot) noexcept {
  return static_cast<Paddr>(slot - internal::g_meta_base) << kPageShift;
}
// Checked lookup. Errors: NotAligned, OutOfBound.
inline Result<MetaSlot*, GetFrameError> get_slot(Paddr pa) noexcept {
  if (!is_aligned(pa, kPageSize)) return err(GetFrameError::NotAligned);
  ensure_booted();
  if (pa >= max_paddr()) return err(GetFrameError::OutOfBound);
  return meta_slot(pa);
}

// The incarnation number of the frame at `pa` (see internal::g_frame_generation).
inline std::uint32_t frame_generation(Paddr pa) noexcept {
  return boost::atomic_ref<std::uint32_t>(internal::g_frame_generation[pa >> kPageShift])
      .load(boost::memory_order_acquire);
}

namespace internal {
// Starts a new incarnation of the frame at `pa`. Called whenever a frame becomes unused, before
// the UNUSED store that lets it be reused.
inline void bump_frame_generation(Paddr pa) noexcept {
  boost::atomic_ref<std::uint32_t>(g_frame_generation[pa >> kPageShift])
      .fetch_add(1, boost::memory_order_release);
}
}  // namespace internal

// A borrowed view of a frame's metadata whose type is only known at run time.
class DynMeta {
 public:
  // A view of the metadata at `meta`, whose type `vtable` describes.
  DynMeta(void* meta, const MetaVtable* vtable) noexcept : meta_(meta), vtable_(vtable) {}
  // Whether the frame may be mapped into user space.
  bool is_untyped() const noexcept { return vtable_->is_untyped; }
  // The metadata type's name.
  const char* type_name() const noexcept { return vtable_->type_name; }
  // The metadata type's identity.
  const MetaVtable* vtable() const noexcept { return vtable_; }
  // True when the metadata has type M.
  template <FrameMeta M>
  bool is() const noexcept {
    return vtable_ == meta_vtable<M>();
  }
  // The metadata as M, or nullptr if it has another type.
  template <FrameMeta M>
  const M* downcast() const noexcept {
    return is<M>() ? static_cast<const M*>(meta_) : nullptr;
  }

 private:
  void* meta_;
  const MetaVtable* vtable_;
};

namespace internal {

// The raw slot operations shared by Frame, UniqueFrame and Segment.

// UNUSED -> 0 -> (1 or UNIQUE) with `meta` written. Errors as GetFrameError.
template <FrameMeta M>
Result<MetaSlot*, GetFrameError> slot_from_unused(Paddr pa, M&& meta, bool as_unique) noexcept {
  auto slot_or = get_slot(pa);
  if (!slot_or) return err(slot_or.error());
  MetaSlot* slot = *slot_or;
  std::uint64_t expected = kRefCountUnused;
  if (!slot->ref_count_ref().compare_exchange_strong(expected, 0, boost::memory_order_acquire,
                                                     boost::memory_order_relaxed)) {
    if (expected == kRefCountUnique) return err(GetFrameError::Unique);
    if (expected == 0) return err(GetFrameError::Busy);
    return err(GetFrameError::InUse);
  }
  ::new (slot->meta_ptr()) M(std::forward<M>(meta));
  slot->vtable = meta_vtable<M>();
  if (as_unique) {
    slot->ref_count_ref().store(kRefCountUnique, boost::memory_order_release);
  } else {
    slot->ref_count_ref().store(1, boost::memory_order_release);
  }
  return slot;
}

inline void inc_ref(MetaSlot* slot) noexcept {
  std::uint64_t prev = slot->ref_count_ref().fetch_add(1, boost::memory_order_relaxed);
  if (__builtin_expect(prev >= kRefCountMax, 0)) refcount_overflow(slot_paddr(slot));
}

inline void dec_ref(MetaSlot* slot) noexcept {
  // acq_rel rather than OSTD's release + acquire fence: same instruction on x86, and
  // ThreadSanitizer does not model standalone fences.
  std::uint64_t prev = slot->ref_count_ref().fetch_sub(1, boost::memory_order_acq_rel);
  VMS_DEBUG_ASSERT(prev > 0 && prev <= kRefCountMax, "dropping a frame with refcount {}", prev);
  if (prev == 1) drop_last(slot);
}

}  // namespace internal

// The handle ledger (checking builds, meson option handle_ledger): a per-frame count of live
// Frame / Segment references, so that check_refcount_law can verify
// count = handles + owning PTEs exactly. Raw references leaked with into_raw() are not handles.
#ifdef VMSPACE_HANDLE_LEDGER
namespace internal {
extern std::int64_t* g_handle_ledger;
inline void ledger_add(const MetaSlot* slot, std::int64_t delta) noexcept {
  boost::atomic_ref<std::int64_t>(g_handle_ledger[slot - g_meta_base])
      .fetch_add(delta, boost::memory_order_relaxed);
}
}  // namespace internal
#define VMS_LEDGER(slot, delta) ::vmspace::internal::ledger_add((slot), (delta))
#else
#define VMS_LEDGER(slot, delta) ((void)0)
#endif

// Increments the reference count of the in-use frame at `pa` without creating a handle (the
// caller leaks the reference into a raw owner, e.g. a PTE). Precondition: the frame is in use.
inline void inc_frame_ref_count(Paddr pa) noexcept { internal::inc_ref(meta_slot(pa)); }

}  // namespace vmspace
