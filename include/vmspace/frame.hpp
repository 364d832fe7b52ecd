// Frame handles: Frame<M> (shared, reference-counted), FrameRef<M> (borrowed) and the
// type-erased forms DynFrame = Frame<AnyFrameMeta> and UFrame = Frame<AnyUFrameMeta>
// (OSTD `ostd/src/mm/frame/mod.rs` `Frame`, `ostd/src/mm/frame/frame_ref.rs` `FrameRef`).
//
// A Frame<M> is one pointer to the frame's MetaSlot and owns one reference. Copying adds a
// reference, destruction removes one; the last one runs the metadata's on_drop with a reader
// over the page, destroys the metadata, marks the slot unused and gives the frame back to the
// global frame allocator. A moved-from Frame is empty: only destruction and assignment are
// allowed on it.
//
// Thread-safety: handles to one frame may be copied and dropped concurrently from any threads.
// A single handle object is not synchronised (like std::shared_ptr).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <ostream>
#include <span>
#include <type_traits>
#include <utility>
#include <variant>

#include <vmspace/addr.hpp>
#include <vmspace/io.hpp>
#include <vmspace/meta.hpp>

namespace vmspace {

template <HandleMeta M>
class Frame;
template <HandleMeta M>
class FrameRef;
template <FrameMeta M>
class UniqueFrame;

// A frame with any metadata type (OSTD's Frame<dyn AnyFrameMeta>).
using DynFrame = Frame<AnyFrameMeta>;
// A frame with any untyped metadata type: one that can be mapped into user space.
using UFrame = Frame<AnyUFrameMeta>;

// A fill_zeros that failed: why, and how many bytes were zeroed before it stopped.
struct FillError {
  // Why the fill stopped.
  Error error;
  // Bytes zeroed before it stopped, from the start of the range.
  std::size_t filled;
};

namespace internal {
struct AdoptTag {};
inline constexpr AdoptTag kAdopt{};

// Shared VmIo implementation over the linear mapping of [base, base + size).
// Errors (OSTD blanket VmIo): Overflow if offset + len wraps; InvalidArgs if beyond size.
Result<void> io_read_bytes(Paddr base, std::size_t size, std::size_t offset,
                           std::span<std::byte> out) noexcept;
Result<void> io_write_bytes(Paddr base, std::size_t size, std::size_t offset,
                            std::span<const std::byte> in) noexcept;
// Zeroes [offset, offset+len). Errors: InvalidArgs (nothing written) if offset > size, or
// (InvalidArgs, bytes zeroed) if the range exceeds size — OSTD reports the short count;
// Overflow if offset + len wraps.
Result<void, FillError> io_fill_zeros(Paddr base, std::size_t size, std::size_t offset,
                                      std::size_t len) noexcept;
}  // namespace internal

// Byte-level I/O on untyped frames and segments (OSTD's VmIo / VmIoFill blanket impls).
// `Derived` provides paddr() and size().
template <class Derived>
class VmIoOps {
 public:
  // Reads exactly out.size() bytes at `offset`. Errors: Overflow, InvalidArgs; nothing is
  // read on error (no short reads).
  Result<void> read_bytes(std::size_t offset, std::span<std::byte> out) const noexcept {
    return internal::io_read_bytes(self().paddr(), self().size(), offset, out);
  }
  // Writes all of `in` at `offset`. Errors: Overflow, InvalidArgs; nothing written on error.
  Result<void> write_bytes(std::size_t offset, std::span<const std::byte> in) const noexcept {
    return internal::io_write_bytes(self().paddr(), self().size(), offset, in);
  }
  // Typed forms of read_bytes / write_bytes, with the same errors. OSTD's read_val/write_val
  // report InvalidArgs when offset + sizeof(T) wraps; we report Overflow, as every other
  // VmIo method does.
  template <Pod T>
  Result<T> read_val(std::size_t offset) const noexcept {
    T v{};
    auto r = read_bytes(offset, std::as_writable_bytes(std::span<T, 1>(&v, 1)));
    if (!r) return err(r.error());
    return v;
  }
  // Writes `v` at `offset`.
  template <Pod T>
  Result<void> write_val(std::size_t offset, const T& v) const noexcept {
    return write_bytes(offset, std::as_bytes(std::span<const T, 1>(&v, 1)));
  }
  // Reads out.size() values of T at `offset`.
  template <Pod T>
  Result<void> read_slice(std::size_t offset, std::span<T> out) const noexcept {
    return read_bytes(offset, std::as_writable_bytes(out));
  }
  // Writes every value of `in` at `offset`.
  template <Pod T>
  Result<void> write_slice(std::size_t offset, std::span<const T> in) const noexcept {
    return write_bytes(offset, std::as_bytes(in));
  }
  // Zeroes [offset, offset+len). Errors (with the bytes zeroed): InvalidArgs, nothing zeroed,
  // if offset > size(); InvalidArgs after zeroing up to size() if the range goes past it (OSTD
  // reports the short count); Overflow, nothing zeroed, if offset + len wraps.
  Result<void, FillError> fill_zeros(std::size_t offset, std::size_t len) const noexcept {
    return internal::io_fill_zeros(self().paddr(), self().size(), offset, len);
  }
  // One non-tearing access at `offset`. Errors: InvalidArgs if out of range or misaligned.
  template <PodOnce T>
  Result<T> read_once(std::size_t offset) const noexcept {
    auto r = reader();
    VMS_TRY_VOID(r.skip(offset));
    return r.template read_once<T>();
  }
  // One non-tearing store of `v` at `offset`. Errors: InvalidArgs if out of range or misaligned.
  template <PodOnce T>
  Result<void> write_once(std::size_t offset, const T& v) const noexcept {
    auto w = writer();
    VMS_TRY_VOID(w.skip(offset));
    return w.template write_once<T>(v);
  }
  // Readers and writers over the whole memory object, through the linear mapping.
  VmReader<Infallible> reader() const noexcept {
    return VmReader<Infallible>::from_kernel_space(paddr_to_vaddr(self().paddr()), self().size());
  }
  // A writer over the whole memory object (see reader()).
  VmWriter<Infallible> writer() const noexcept {
    return VmWriter<Infallible>::from_kernel_space(paddr_to_vaddr(self().paddr()), self().size());
  }

 private:
  const Derived& self() const noexcept { return static_cast<const Derived&>(*this); }
};

// Empty base that adds VmIo to handles of untyped frames only.
template <class Derived, class M>
using FrameIoBase = std::conditional_t<UntypedFrameMeta<M> || std::is_same_v<M, AnyUFrameMeta>,
                                       VmIoOps<Derived>, std::monostate>;

// A counted handle to one frame in use, with metadata of type M (a FrameMeta type, or the
// erased AnyFrameMeta / AnyUFrameMeta). Copying adds a reference, destruction drops one, and
// the last drop runs the metadata's on_drop and returns the frame to the allocator. Handles of
// untyped frames can read and write the frame's bytes (VmIoOps).
template <HandleMeta M>
class Frame : public FrameIoBase<Frame<M>, M> {
 public:
  // Takes the unused frame at `pa` into use with metadata `meta`; reference count 1. Does not
  // call the allocator (the caller owns the frame's allocation).
  // Errors: NotAligned, OutOfBound, Unique, Busy, InUse. On error the slot is untouched.
  static Result<Frame, GetFrameError> from_unused(Paddr pa, M meta) noexcept requires FrameMeta<M> {
    auto slot = internal::slot_from_unused<M>(pa, std::move(meta), /*as_unique=*/false);
    if (!slot) return err(slot.error());
    VMS_LEDGER(*slot, 1);
    return Frame(internal::kAdopt, *slot);
  }

  // A new handle to the in-use frame at `pa` (+1). Only for DynFrame, as in OSTD; narrow it
  // with try_from afterwards. Errors: NotAligned, OutOfBound, Unused, Unique, Busy. Aborts if
  // the count would reach REF_COUNT_MAX.
  static Result<Frame, GetFrameError> from_in_use(
      Paddr pa) noexcept requires std::is_same_v<M, AnyFrameMeta> {
    auto slot_or = get_slot(pa);
    if (!slot_or) return err(slot_or.error());
    MetaSlot* slot = *slot_or;
    auto rc = slot->ref_count_ref();
    std::uint64_t cur = rc.load(boost::memory_order_relaxed);
    for (;;) {
      if (cur == kRefCountUnused) return err(GetFrameError::Unused);
      if (cur == kRefCountUnique) return err(GetFrameError::Unique);
      if (cur == 0) return err(GetFrameError::Busy);
      if (cur >= kRefCountMax) internal::refcount_overflow(pa);
      if (rc.compare_exchange_weak(cur, cur + 1, boost::memory_order_acquire,
                                   boost::memory_order_relaxed)) {
        break;
      }
    }
    VMS_LEDGER(slot, 1);
    return Frame(internal::kAdopt, slot);
  }

  // Re-creates the handle whose reference was leaked with into_raw(). Precondition: `pa` came
  // from into_raw() of a handle convertible to this type, and that reference is consumed now.
  static Frame from_raw(Paddr pa) noexcept {
    VMS_LEDGER(meta_slot(pa), 1);
    return Frame(internal::kAdopt, meta_slot(pa));
  }

  // Another handle to the same frame (+1).
  Frame(const Frame& o) noexcept : slot_(o.slot_) {
    if (slot_) {
      internal::inc_ref(slot_);
      VMS_LEDGER(slot_, 1);
    }
  }
  // Takes over `o`'s reference; `o` becomes empty.
  Frame(Frame&& o) noexcept : slot_(std::exchange(o.slot_, nullptr)) {}
  // Widening conversions: typed -> erased, untyped -> UFrame.
  template <HandleMeta M2>
  requires(!std::is_same_v<M2, M> && MetaConvertibleTo<M2, M>) Frame(Frame<M2>&& o)
  noexcept : slot_(std::exchange(o.slot_, nullptr)) {}  // NOLINT
  template <HandleMeta M2>
  requires(!std::is_same_v<M2, M> && MetaConvertibleTo<M2, M>) Frame(const Frame<M2>& o)
  noexcept : slot_(o.slot_) {  // NOLINT
    if (slot_) {
      internal::inc_ref(slot_);
      VMS_LEDGER(slot_, 1);
    }
  }
  // Drops this handle's reference and takes `o`'s.
  Frame& operator=(Frame o) noexcept {
    std::swap(slot_, o.slot_);
    return *this;
  }
  ~Frame() {
    if (slot_) {
      VMS_LEDGER(slot_, -1);
      internal::dec_ref(slot_);
    }
  }

  // Narrowing conversion from an erased handle. On success `from` is left empty; on failure
  // (the frame's metadata is not M, or not untyped for UFrame) `from` is unchanged.
  template <HandleMeta M2>
  static std::optional<Frame> try_from(Frame<M2>& from) noexcept {
    if (!from.slot_) return std::nullopt;
    const MetaVtable* vt = from.slot_->vtable;
    bool ok;
    if constexpr (std::is_same_v<M, AnyFrameMeta>) {
      ok = true;
    } else if constexpr (std::is_same_v<M, AnyUFrameMeta>) {
      ok = vt->is_untyped;
    } else {
      ok = vt == meta_vtable<M>();
    }
    if (!ok) return std::nullopt;
    return Frame(internal::kAdopt, std::exchange(from.slot_, nullptr));
  }

  // Leaks the reference: the caller becomes responsible for it (from_raw gives it back).
  Paddr into_raw() && noexcept {
    VMS_LEDGER(slot_, -1);
    return slot_paddr(std::exchange(slot_, nullptr));
  }

  // True for a moved-from handle, which refers to no frame.
  bool is_empty() const noexcept { return slot_ == nullptr; }
  // The frame's physical address. Precondition: not empty.
  Paddr paddr() const noexcept { return slot_paddr(slot_); }
  // Always 4 KiB.
  static constexpr std::size_t size() noexcept { return kPageSize; }
  // Always 1: tracked frames are base pages (huge user mappings are segments).
  static constexpr PagingLevel map_level() noexcept { return 1; }

  // The metadata (typed handles only). Shared: use interior mutability (atomics) to change it.
  const M& meta() const noexcept requires FrameMeta<M> {
    return *std::launder(static_cast<const M*>(slot_->meta_ptr()));
  }
  // The metadata, of whatever type it is.
  DynMeta dyn_meta() const noexcept { return DynMeta(slot_->meta_ptr(), slot_->vtable); }

  // The current count: handles + page-table entries + segment shares. Racy by nature.
  std::uint64_t reference_count() const noexcept {
    return slot_->ref_count_ref().load(boost::memory_order_relaxed);
  }

  // A non-owning view of the frame, valid while this handle lives.
  FrameRef<M> borrow() const noexcept { return FrameRef<M>(slot_); }
  // The frame's metadata slot (nullptr when empty).
  MetaSlot* slot() const noexcept { return slot_; }

  friend bool operator==(const Frame& a, const Frame& b) noexcept { return a.slot_ == b.slot_; }
  friend std::ostream& operator<<(std::ostream& os, const Frame& f) {
    auto flags = os.flags();
    os << "Frame(0x" << std::hex << (f.slot_ ? f.paddr() : 0) << ")";
    os.flags(flags);
    return os;
  }

 private:
  template <HandleMeta>
  friend class Frame;
  template <HandleMeta>
  friend class FrameRef;
  template <FrameMeta>
  friend class UniqueFrame;

  Frame(internal::AdoptTag, MetaSlot* slot) noexcept : slot_(slot) {}

  MetaSlot* slot_;
};

// A borrowed frame: behaves like a `const Frame<M>&` without owning a reference. The caller
// guarantees the frame stays in use while the FrameRef lives (e.g. a page-table lock or an
// RCU read section keeps the PTE that owns it).
template <HandleMeta M>
class FrameRef {
 public:
  // Another view of the same frame (no reference taken).
  FrameRef(const FrameRef& o) noexcept {
    ::new (&frame_) Frame<M>(internal::kAdopt, o.frame_.slot_);
  }
  // Views `o`'s frame instead (no reference taken or dropped).
  FrameRef& operator=(const FrameRef& o) noexcept {
    frame_.slot_ = o.frame_.slot_;
    return *this;
  }
  ~FrameRef() {}  // never drops the reference it does not own

  // Precondition: the frame at `pa` is in use and stays so while the FrameRef lives, and its
  // metadata matches M.
  static FrameRef borrow_paddr(Paddr pa) noexcept { return FrameRef(meta_slot(pa)); }

  // The frame as a const Frame<M>&, valid while this FrameRef lives.
  const Frame<M>& operator*() const noexcept { return frame_; }
  // Member access to the frame, as operator*.
  const Frame<M>* operator->() const noexcept { return &frame_; }
  // An owning handle (+1).
  Frame<M> to_owned() const noexcept { return frame_; }
  // The frame's physical address.
  Paddr paddr() const noexcept { return frame_.paddr(); }

  // Same frame. (A friend of FrameRef is no friend of Frame: use the public slot().)
  friend bool operator==(const FrameRef& a, const FrameRef& b) noexcept {
    return a.frame_.slot() == b.frame_.slot();
  }

 private:
  template <HandleMeta>
  friend class Frame;
  explicit FrameRef(MetaSlot* slot) noexcept { ::new (&frame_) Frame<M>(internal::kAdopt, slot); }

  union {
    Frame<M> frame_;
  };
};

}  // namespace vmspace
