// The out-of-line parts of frame handles (frame.hpp): dropping a frame's last reference
// (metadata on_drop, generation bump, return to the allocator), the untyped I/O helpers used
// by Frame/Segment readers and writers, and the global allocator switch behind
// FrameAllocOptions.
#include <vmspace/frame.hpp>
#include <vmspace/frame_allocator.hpp>
#include <vmspace/log.hpp>

#include <atomic>
#include <cstring>
#include <sstream>

#include "machine/machine.hpp"

namespace vmspace {

std::ostream& operator<<(std::ostream& os, GetFrameError e) {
  switch (e) {
    case GetFrameError::InUse:
      return os << "InUse";
    case GetFrameError::Unused:
      return os << "Unused";
    case GetFrameError::Busy:
      return os << "Busy";
    case GetFrameError::Unique:
      return os << "Unique";
    case GetFrameError::OutOfBound:
      return os << "OutOfBound";
    case GetFrameError::NotAligned:
      return os << "NotAligned";
    case GetFrameError::EmptyRange:
      return os << "EmptyRange";
  }
  return os << "?";
}

namespace internal {

void refcount_overflow(Paddr pa) noexcept {
  VMS_PANIC("frame {:#x}: reference count would reach REF_COUNT_MAX", pa);
}

void drop_last(MetaSlot* slot) noexcept {
  const Paddr pa = slot_paddr(slot);
  if (slot->vtable->on_drop != nullptr) {
    auto reader = VmReader<Infallible>::from_kernel_space(paddr_to_vaddr(pa), kPageSize);
    slot->vtable->on_drop(slot->meta_ptr(), reader);
  }
  slot->vtable->destroy(slot->meta_ptr());
  slot->vtable = nullptr;
  // A new incarnation starts when the frame is next taken into use; bump the counter before
  // the frame can be reallocated so that stale users can tell.
  bump_frame_generation(pa);
  slot->ref_count_ref().store(kRefCountUnused, boost::memory_order_release);
  g_allocator.load(std::memory_order_acquire)->dealloc(pa, kPageSize);
}

namespace {

// Validates [offset, offset+len) against `size`. Overflow first, then bounds.
Result<void> check_io_range(std::size_t size, std::size_t offset, std::size_t len) {
  auto end = checked_add(offset, len);
  if (!end) return err(Error::Overflow);
  if (*end > size) return err(Error::InvalidArgs);
  return {};
}

}  // namespace

Result<void> io_read_bytes(Paddr base, std::size_t size, std::size_t offset,
                           std::span<std::byte> out) noexcept {
  VMS_TRY_VOID(check_io_range(size, offset, out.size()));
  racy_copy(out.data(), paddr_to_vaddr(base) + offset, out.size());
  return {};
}

Result<void> io_write_bytes(Paddr base, std::size_t size, std::size_t offset,
                            std::span<const std::byte> in) noexcept {
  VMS_TRY_VOID(check_io_range(size, offset, in.size()));
  racy_copy(paddr_to_vaddr(base) + offset, in.data(), in.size());
  return {};
}

Result<void, FillError> io_fill_zeros(Paddr base, std::size_t size, std::size_t offset,
                                      std::size_t len) noexcept {
  if (offset > size) return err(FillError{Error::InvalidArgs, 0});
  auto end = checked_add(offset, len);
  if (!end) return err(FillError{Error::Overflow, 0});
  std::size_t n = *end > size ? size - offset : len;
  racy_zero(paddr_to_vaddr(base) + offset, n);
  if (n < len) return err(FillError{Error::InvalidArgs, n});
  return {};
}

}  // namespace internal

Result<Paddr> FrameAllocOptions::alloc_raw(FrameLayout layout) const noexcept {
  ensure_booted();
  auto pa = internal::g_allocator.load(std::memory_order_acquire)->alloc(layout);
  if (!pa) return err(Error::NoMemory);
  if (zeroed_) std::memset(paddr_to_vaddr(*pa), 0, layout.size);
  return *pa;
}

void FrameAllocOptions::allocator_gave_used_frame(Paddr pa, GetFrameError e) noexcept {
  std::ostringstream os;
  os << e;
  VMS_PANIC("the frame allocator handed out a frame that is not unused (at {:#x}: {})", pa,
            os.str());
}

}  // namespace vmspace
