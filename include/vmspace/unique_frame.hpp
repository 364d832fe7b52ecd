// UniqueFrame<M>: the sole owner of a frame (OSTD `frame/unique.rs`).
//
// The frame's reference count holds the UNIQUE sentinel, so no Frame handle can be created
// for it (from_unused and from_in_use both fail with GetFrameError::Unique) and its metadata
// may be mutated freely. Dropping it runs on_drop, destroys the metadata and returns the
// frame to the global allocator, like the last Frame.
#pragma once

#include <optional>
#include <utility>

#include <vmspace/frame.hpp>

namespace vmspace {

// The sole owner of one frame with metadata of type M: the reference count holds UNIQUE, so no
// counted handle can exist, and the metadata may be changed in place (meta_mut, repurpose).
// Destruction returns the frame to the allocator; into_frame() turns it into a shared Frame.
template <FrameMeta M>
class UniqueFrame : public FrameIoBase<UniqueFrame<M>, M> {
 public:
  // Takes the unused frame at `pa` into sole ownership with metadata `meta`.
  // Errors: NotAligned, OutOfBound, Unique, Busy, InUse. On error the slot is untouched.
  static Result<UniqueFrame, GetFrameError> from_unused(Paddr pa, M meta) noexcept {
    auto slot = internal::slot_from_unused<M>(pa, std::move(meta), /*as_unique=*/true);
    if (!slot) return err(slot.error());
    return UniqueFrame(*slot);
  }

  // Converts a Frame whose count is exactly 1 (no other handle, no PTE). On success `frame` is
  // left empty; otherwise it is unchanged and nullopt is returned.
  static std::optional<UniqueFrame> try_from(Frame<M>& frame) noexcept {
    if (frame.is_empty()) return std::nullopt;
    std::uint64_t one = 1;
    if (!frame.slot()->ref_count_ref().compare_exchange_strong(
            one, kRefCountUnique, boost::memory_order_acquire, boost::memory_order_relaxed)) {
      return std::nullopt;
    }
    VMS_LEDGER(frame.slot(), -1);
    return UniqueFrame(std::exchange(frame.slot_, nullptr));
  }

  // Restores ownership leaked with into_raw(). Precondition: `pa` came from into_raw() of a
  // UniqueFrame<M> and is consumed now.
  static UniqueFrame from_raw(Paddr pa) noexcept { return UniqueFrame(meta_slot(pa)); }

  // Takes over `o`'s ownership; `o` becomes empty.
  UniqueFrame(UniqueFrame&& o) noexcept : slot_(std::exchange(o.slot_, nullptr)) {}
  // Frees the frame owned so far (if any) and takes over `o`'s.
  UniqueFrame& operator=(UniqueFrame&& o) noexcept {
    UniqueFrame tmp(std::move(o));
    std::swap(slot_, tmp.slot_);
    return *this;
  }
  UniqueFrame(const UniqueFrame&) = delete;
  UniqueFrame& operator=(const UniqueFrame&) = delete;
  ~UniqueFrame() {
    if (slot_) release_to_allocator();
  }

  // Shares the frame: the count becomes 1 and a Frame takes over.
  Frame<M> into_frame() && noexcept {
    MetaSlot* slot = std::exchange(slot_, nullptr);
    slot->ref_count_ref().store(1, boost::memory_order_release);
    VMS_LEDGER(slot, 1);
    return Frame<M>(internal::kAdopt, slot);
  }

  // Replaces the metadata in place: the old value's on_drop runs and it is destroyed, then
  // `meta` is constructed. The frame never leaves sole ownership.
  template <FrameMeta M1>
  UniqueFrame<M1> repurpose(M1 meta) && noexcept {
    MetaSlot* slot = std::exchange(slot_, nullptr);
    drop_meta(slot);
    ::new (slot->meta_ptr()) M1(std::move(meta));
    slot->vtable = meta_vtable<M1>();
    return UniqueFrame<M1>(slot);
  }

  // Runs on_drop, destroys the metadata and marks the frame unused WITHOUT returning it to the
  // allocator (for allocators and tests that own the memory themselves). The slot ends as after
  // a last drop: UNUSED, no vtable, a new generation.
  void reset_as_unused() && noexcept {
    MetaSlot* slot = std::exchange(slot_, nullptr);
    slot->ref_count_ref().store(0, boost::memory_order_relaxed);
    drop_meta(slot);
    slot->vtable = nullptr;
    internal::bump_frame_generation(slot_paddr(slot));
    slot->ref_count_ref().store(kRefCountUnused, boost::memory_order_release);
  }

  // Leaks sole ownership; from_raw() restores it.
  Paddr into_raw() && noexcept { return slot_paddr(std::exchange(slot_, nullptr)); }

  // The frame's physical address. Precondition: not moved from.
  Paddr paddr() const noexcept { return slot_paddr(slot_); }
  // Always 4 KiB.
  static constexpr std::size_t size() noexcept { return kPageSize; }
  // Always 1 (a base page).
  static constexpr PagingLevel level() noexcept { return 1; }
  // The metadata.
  const M& meta() const noexcept { return *std::launder(static_cast<const M*>(slot_->meta_ptr())); }
  // The metadata, changeable: nobody else can see it.
  M& meta_mut() noexcept { return *std::launder(static_cast<M*>(slot_->meta_ptr())); }
  // The metadata, of whatever type it is.
  DynMeta dyn_meta() const noexcept { return DynMeta(slot_->meta_ptr(), slot_->vtable); }
  // The raw count: kRefCountUnique while owned.
  std::uint64_t reference_count() const noexcept {
    return slot_->ref_count_ref().load(boost::memory_order_relaxed);
  }
  // The frame's metadata slot.
  MetaSlot* slot() const noexcept { return slot_; }

 private:
  template <FrameMeta>
  friend class UniqueFrame;

  explicit UniqueFrame(MetaSlot* slot) noexcept : slot_(slot) {}

  static void drop_meta(MetaSlot* slot) noexcept {
    if (slot->vtable->on_drop != nullptr) {
      auto reader =
          VmReader<Infallible>::from_kernel_space(paddr_to_vaddr(slot_paddr(slot)), kPageSize);
      slot->vtable->on_drop(slot->meta_ptr(), reader);
    }
    slot->vtable->destroy(slot->meta_ptr());
  }

  void release_to_allocator() noexcept {
    // UNIQUE -> 0 (busy), then the common last-drop path.
    slot_->ref_count_ref().store(0, boost::memory_order_relaxed);
    internal::drop_last(slot_);
    slot_ = nullptr;
  }

  MetaSlot* slot_;
};

}  // namespace vmspace
