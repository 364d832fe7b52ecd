// Segment<M>: a physically contiguous run of frames of one metadata type, holding one
// reference per frame (OSTD `frame/segment.rs`). USegment = Segment<AnyUFrameMeta> is any
// untyped segment; a 2 MiB-aligned USegment of 512 frames can be mapped as one huge user
// mapping.
//
// An empty segment (no frames) is valid: slices may be empty, and moved-from segments are
// empty. Copying a segment adds one reference to every frame; destruction drops them.
//
// Argument errors return Error::InvalidArgs where OSTD panics (slice, split).
#pragma once

#include <cstddef>
#include <iterator>
#include <optional>
#include <utility>

#include <vmspace/frame.hpp>

namespace vmspace {

template <HandleMeta M>
class Segment;

// A segment of untyped frames: what user space can map.
using USegment = Segment<AnyUFrameMeta>;
// A segment of frames with any metadata type (e.g. what the TLB flusher keeps alive).
using DynSegment = Segment<AnyFrameMeta>;

// A physically contiguous run of frames in use, all with metadata of type M, holding one
// reference to each (see the file comment). Copying adds a reference to every frame.
template <HandleMeta M>
class Segment : public FrameIoBase<Segment<M>, M> {
 public:
  // An empty segment (no frames).
  Segment() noexcept = default;

  // Takes every unused frame of `range` into use, with metadata metadata_fn(paddr) each.
  // Errors: EmptyRange; NotAligned if an end is not 4 KiB-aligned; OutOfBound if range.end >
  // max_paddr(); otherwise the first per-frame error (InUse, Busy, Unique). On error the frames
  // taken so far are dropped, which returns them to the global allocator (as in OSTD).
  template <class Fn>
  requires FrameMeta<M> && std::is_invocable_r_v<M, Fn&, Paddr>
  static Result<Segment, GetFrameError> from_unused(PaRange range, Fn&& metadata_fn) noexcept {
    if (range.start >= range.end) return err(GetFrameError::EmptyRange);
    if (!is_aligned(range.start, kPageSize) || !is_aligned(range.end, kPageSize)) {
      return err(GetFrameError::NotAligned);
    }
    ensure_booted();
    if (range.end > max_paddr()) return err(GetFrameError::OutOfBound);
    Segment seg;
    seg.start_ = seg.end_ = range.start;
    for (Paddr pa = range.start; pa < range.end; pa += kPageSize) {
      auto slot = internal::slot_from_unused<M>(pa, metadata_fn(pa), /*as_unique=*/false);
      if (!slot) return err(slot.error());  // `seg` drops the frames taken so far
      VMS_LEDGER(*slot, 1);
      seg.end_ = pa + kPageSize;
    }
    return seg;
  }

  // A one-frame segment that takes over `frame`'s reference.
  explicit Segment(Frame<M>&& frame) noexcept {
    start_ = std::move(frame).into_raw();
    end_ = start_ + kPageSize;
    VMS_LEDGER(meta_slot(start_), 1);  // the frame's handle became a segment share
  }

  // Another segment over the same frames (+1 on each).
  Segment(const Segment& o) noexcept : start_(o.start_), end_(o.end_) { inc_all(); }
  // Takes over `o`'s references; `o` becomes empty.
  Segment(Segment&& o) noexcept
      : start_(std::exchange(o.start_, 0)), end_(std::exchange(o.end_, 0)) {}
  template <HandleMeta M2>
  requires(!std::is_same_v<M2, M> && MetaConvertibleTo<M2, M>) Segment(Segment<M2>&& o)
  noexcept  // NOLINT(google-explicit-constructor)
      : start_(std::exchange(o.start_, 0)), end_(std::exchange(o.end_, 0)) {}
  template <HandleMeta M2>
  requires(!std::is_same_v<M2, M> && MetaConvertibleTo<M2, M>) Segment(const Segment<M2>& o)
  noexcept  // NOLINT(google-explicit-constructor)
      : start_(o.start_), end_(o.end_) {
    inc_all();
  }
  // Drops this segment's references and takes `o`'s.
  Segment& operator=(Segment o) noexcept {
    std::swap(start_, o.start_);
    std::swap(end_, o.end_);
    return *this;
  }
  ~Segment() { dec_all(); }

  // Narrowing conversion from an erased segment; checks the first frame's metadata type (the
  // rest are checked in debug builds). On success `from` is left empty.
  template <HandleMeta M2>
  static std::optional<Segment> try_from(Segment<M2>& from) noexcept {
    if (from.start_ == from.end_) return Segment();
    if (!vtable_ok(meta_slot(from.start_)->vtable)) return std::nullopt;
#ifndef NDEBUG
    for (Paddr pa = from.start_; pa < from.end_; pa += kPageSize) {
      VMS_ASSERT(vtable_ok(meta_slot(pa)->vtable), "segment with mixed metadata at {:#x}", pa);
    }
#endif
    Segment s;
    s.start_ = std::exchange(from.start_, 0);
    s.end_ = std::exchange(from.end_, 0);
    return s;
  }

  // Re-creates a segment from into_raw()'s range. Precondition: the range came from
  // into_raw() of a segment convertible to this type; its references are consumed.
  static Segment from_raw(PaRange range) noexcept {
    Segment s;
    s.start_ = range.start;
    s.end_ = range.end;
    s.ledger_all(1);
    return s;
  }
  // Leaks one reference per frame to the caller.
  PaRange into_raw() && noexcept {
    ledger_all(-1);
    return PaRange{std::exchange(start_, 0), std::exchange(end_, 0)};
  }

  // The physical address of the first frame.
  Paddr paddr() const noexcept { return start_; }
  // The physical address just past the last frame.
  Paddr end_paddr() const noexcept { return end_; }
  // [paddr(), end_paddr()).
  PaRange paddr_range() const noexcept { return {start_, end_}; }
  // Bytes covered: nframes() * 4 KiB.
  std::size_t size() const noexcept { return static_cast<std::size_t>(end_ - start_); }
  // The number of frames.
  std::size_t nframes() const noexcept { return size() / kPageSize; }
  // True when the segment holds no frame.
  bool empty() const noexcept { return start_ == end_; }

  // The byte range [start, end) of this segment as a new segment (+1 per frame covered).
  // Errors: InvalidArgs unless start and end are 4 KiB-aligned and start <= end <= size().
  Result<Segment> slice(std::size_t start, std::size_t end) const noexcept {
    if (!is_aligned(start, kPageSize) || !is_aligned(end, kPageSize) || start > end ||
        end > size()) {
      return err(Error::InvalidArgs);
    }
    Segment s;
    s.start_ = start_ + start;
    s.end_ = start_ + end;
    s.inc_all();
    return s;
  }

  // Splits at byte `offset` into [0, offset) and [offset, size()), moving the references.
  // Errors: InvalidArgs unless offset is 4 KiB-aligned and 0 < offset < size(); on error this
  // segment is unchanged (it is only consumed on success).
  Result<std::pair<Segment, Segment>> split(std::size_t offset) && noexcept {
    if (!is_aligned(offset, kPageSize) || offset == 0 || offset >= size()) {
      return err(Error::InvalidArgs);
    }
    Segment left, right;
    left.start_ = start_;
    left.end_ = start_ + offset;
    right.start_ = start_ + offset;
    right.end_ = end_;
    start_ = end_ = 0;
    return std::pair<Segment, Segment>(std::move(left), std::move(right));
  }

  // Removes the first frame and returns it with its reference (OSTD's Iterator::next).
  std::optional<Frame<M>> next() noexcept {
    if (start_ == end_) return std::nullopt;
    Paddr pa = start_;
    start_ += kPageSize;
    VMS_LEDGER(meta_slot(pa), -1);  // the share becomes the Frame's handle (from_raw adds it)
    return Frame<M>::from_raw(pa);
  }

  // Borrowed view of the i-th frame. Precondition: i < nframes().
  FrameRef<M> frame_at(std::size_t i) const noexcept {
    VMS_DEBUG_ASSERT(i < nframes(), "frame index {} out of {}", i, nframes());
    return FrameRef<M>::borrow_paddr(start_ + i * kPageSize);
  }

  // Non-consuming iteration over borrowed frames: `for (FrameRef<M> f : segment)`.
  class Iterator {
   public:
    // A forward iterator.
    using iterator_category = std::forward_iterator_tag;
    // Iteration yields borrowed frames.
    using value_type = FrameRef<M>;
    // Distance between two iterators, in frames.
    using difference_type = std::ptrdiff_t;
    Iterator() = default;
    // An iterator at the frame at `pa`.
    explicit Iterator(Paddr pa) noexcept : pa_(pa) {}
    // The current frame, borrowed from the segment.
    FrameRef<M> operator*() const noexcept { return FrameRef<M>::borrow_paddr(pa_); }
    // Moves to the next frame.
    Iterator& operator++() noexcept {
      pa_ += kPageSize;
      return *this;
    }
    // Moves to the next frame and returns the old position.
    Iterator operator++(int) noexcept {
      Iterator t = *this;
      pa_ += kPageSize;
      return t;
    }
    friend bool operator==(Iterator, Iterator) = default;

   private:
    Paddr pa_ = 0;
  };
  // The first frame.
  Iterator begin() const noexcept { return Iterator(start_); }
  // Past the last frame.
  Iterator end() const noexcept { return Iterator(end_); }

 private:
  template <HandleMeta>
  friend class Segment;

  static bool vtable_ok(const MetaVtable* vt) noexcept {
    if constexpr (std::is_same_v<M, AnyFrameMeta>) {
      return true;
    } else if constexpr (std::is_same_v<M, AnyUFrameMeta>) {
      return vt->is_untyped;
    } else {
      return vt == meta_vtable<M>();
    }
  }
  void inc_all() noexcept {
    for (Paddr pa = start_; pa < end_; pa += kPageSize) {
      internal::inc_ref(meta_slot(pa));
      VMS_LEDGER(meta_slot(pa), 1);
    }
  }
  void dec_all() noexcept {
    for (Paddr pa = start_; pa < end_; pa += kPageSize) {
      VMS_LEDGER(meta_slot(pa), -1);
      internal::dec_ref(meta_slot(pa));
    }
  }
  void ledger_all([[maybe_unused]] std::int64_t delta) noexcept {
#ifdef VMSPACE_HANDLE_LEDGER
    for (Paddr pa = start_; pa < end_; pa += kPageSize) VMS_LEDGER(meta_slot(pa), delta);
#endif
  }

  Paddr start_ = 0;
  Paddr end_ = 0;
};

}  // namespace vmspace
