// VmReader / VmWriter: cursors over memory that copy data in and out (OSTD `ostd/src/mm/io.rs`,
// `VmReader`, `VmWriter`).
//
// Two kinds, chosen by a marker type:
// - Infallible: kernel memory that is always accessible — frames and segments through the
//   linear mapping, or host buffers. Accesses never fault.
// - Fallible: user memory of the VmSpace active on the calling CPU (declared here, defined
//   with VmSpace in vm_space.hpp). Accesses translate through the CPU's software TLB and page
//   table and may fault.
//
// Readers and writers are small value types (two pointers). They are not thread-safe and must
// not outlive the memory they cover. Copies between overlapping readers and writers are
// allowed only on untyped memory; the data of concurrently written memory is unspecified but
// never undefined behaviour (copies are racy by design, like OSTD's volatile copies).
//
// Errors follow OSTD: a short source or destination for a typed access is InvalidArgs;
// arguments a caller controls (skip beyond the end, misaligned once-accesses) are
// InvalidArgs instead of OSTD's panics.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <type_traits>
#include <utility>

#include <vmspace/addr.hpp>
#include <vmspace/internal/copy.hpp>
#include <vmspace/result.hpp>

namespace vmspace {

// Access-kind markers.
struct Infallible {};
struct Fallible {};

// Plain-old-data: any bit pattern is a valid value, so it may be copied from raw memory.
template <class T>
concept Pod = std::is_trivially_copyable_v<T> && std::is_trivially_default_constructible_v<T> &&
    !std::is_pointer_v<T>;

// PODs that one machine instruction can load or store without tearing.
template <class T>
concept PodOnce = Pod<T> && std::is_integral_v<T> &&
    (sizeof(T) == 1 || sizeof(T) == 2 || sizeof(T) == 4 || sizeof(T) == 8);

// A fallible copy that stopped early: why, and how many bytes were copied before it stopped.
struct CopyError {
  // Why the copy stopped (PageFault for an unresolved user fault).
  Error error;
  // Bytes copied before it stopped; both cursors advanced by this much.
  std::size_t copied;
};

// The atomic types user memory supports (OSTD's PodAtomic: u32 only).
template <class T>
concept PodAtomic = std::is_same_v<T, std::uint32_t>;

template <class F = Fallible>
class VmReader;
template <class F = Fallible>
class VmWriter;

namespace internal {

// The window [cursor, end) every reader and writer has, and the operations on it that do not
// depend on what the addresses mean. `Addr` is a host pointer (Infallible) or a 64-bit address
// (Fallible, user or kernel); `Self` is the reader or writer (limit() returns it).
template <class Self, class Addr>
class IoWindow {
 public:
  Addr cursor() const noexcept { return cursor_; }

  // Shrinks the window to at most `max` bytes (never grows it).
  Self& limit(std::size_t max) noexcept {
    if (max < left()) end_ = cursor_ + max;
    return static_cast<Self&>(*this);
  }
  // Advances by `n` bytes. Errors: InvalidArgs if n is more than the window holds (nothing
  // moves).
  Result<void> skip(std::size_t n) noexcept {
    if (n > left()) return err(Error::InvalidArgs);
    cursor_ += n;
    return {};
  }

 protected:
  IoWindow() noexcept = default;
  IoWindow(Addr cursor, Addr end) noexcept : cursor_(cursor), end_(end) {}
  std::size_t left() const noexcept { return static_cast<std::size_t>(end_ - cursor_); }

  Addr cursor_{};
  Addr end_{};
};

// A reader's window: what is left is what remains to be read.
template <class Self, class Addr>
class ReadWindow : public IoWindow<Self, Addr> {
 public:
  std::size_t remain() const noexcept { return this->left(); }
  bool has_remain() const noexcept { return this->cursor_ != this->end_; }

 protected:
  using IoWindow<Self, Addr>::IoWindow;
};

// A writer's window: what is left is the space available for writing.
template <class Self, class Addr>
class WriteWindow : public IoWindow<Self, Addr> {
 public:
  std::size_t avail() const noexcept { return this->left(); }
  bool has_avail() const noexcept { return this->cursor_ != this->end_; }
  // A second writer at the same position over the same remaining bytes. Writes through it do
  // not advance this writer (OSTD's clone_exclusive; the exclusivity is the caller's duty).
  Self clone_exclusive() const noexcept { return static_cast<const Self&>(*this); }

 protected:
  using IoWindow<Self, Addr>::IoWindow;
};

// The window of a fallible reader or writer (`Side` is ReadWindow or WriteWindow): 64-bit
// addresses that are user addresses, or kernel ones after to_fallible().
template <class Self, template <class, class> class Side>
class FallibleWindow : public Side<Self, std::uint64_t> {
 public:
  // A window over user addresses [va, va + len). Errors: AccessDenied if the range wraps or
  // ends above kMaxUserspaceVaddr. Mapping presence is not checked (faults surface on access).
  static Result<Self> from_user_space(Vaddr va, std::size_t len) noexcept {
    std::uint64_t end = 0;
    if (__builtin_add_overflow(va, len, &end) || end > kMaxUserspaceVaddr)
      return err(Error::AccessDenied);
    return make(va, end, AddressKind::User);
  }

  bool is_user() const noexcept { return kind_ == AddressKind::User; }

 protected:
  static Self make(std::uint64_t cursor, std::uint64_t end, AddressKind kind) noexcept {
    Self s;
    s.cursor_ = cursor;
    s.end_ = end;
    s.kind_ = kind;
    return s;
  }
  Endpoint at_cursor() const noexcept { return Endpoint{this->cursor_, kind_}; }

  AddressKind kind_ = AddressKind::User;
};

inline Result<std::size_t, CopyError> copy_result(CopyOutcome out) noexcept {
  if (out.faulted) return err(CopyError{Error::PageFault, out.copied});
  return out.copied;
}

}  // namespace internal

// A reader over kernel memory [cursor, end).
template <>
class VmReader<Infallible> : public internal::ReadWindow<VmReader<Infallible>, const std::byte*> {
 public:
  VmReader() noexcept = default;
  // Reads the bytes of `bytes`. The span must outlive the reader.
  explicit VmReader(std::span<const std::byte> bytes) noexcept
      : ReadWindow(bytes.data(), bytes.data() + bytes.size()) {}
  // Precondition (not checked): [ptr, ptr+len) is valid kernel memory for the reader's life.
  static VmReader from_kernel_space(const std::byte* ptr, std::size_t len) noexcept {
    return VmReader(std::span<const std::byte>(ptr, len));
  }

  // Copies min(remain(), writer.avail()) bytes into `writer`, advancing both; returns the count.
  std::size_t read(VmWriter<Infallible>& writer) noexcept;

  // Reads one T (unaligned allowed). Errors: InvalidArgs if remain() < sizeof(T).
  template <Pod T>
  Result<T> read_val() noexcept {
    if (remain() < sizeof(T)) return err(Error::InvalidArgs);
    T v{};
    internal::racy_copy(&v, cursor_, sizeof(T));
    cursor_ += sizeof(T);
    return v;
  }

  // One non-tearing load. Errors: InvalidArgs if remain() < sizeof(T) or the cursor is not
  // aligned to sizeof(T) (OSTD panics on misalignment).
  template <PodOnce T>
  Result<T> read_once() noexcept {
    if (remain() < sizeof(T)) return err(Error::InvalidArgs);
    if (reinterpret_cast<std::uintptr_t>(cursor_) % sizeof(T) != 0) return err(Error::InvalidArgs);
    auto raw = internal::load_once(cursor_, sizeof(T));
    cursor_ += sizeof(T);
    return static_cast<T>(raw);
  }

  // Copies into a fallible writer (e.g. user memory). Ok(count) when the reader or the writer
  // ran out; Err{PageFault, copied} when a user access faulted and was not resolved. Both
  // cursors advance by the bytes copied either way.
  Result<std::size_t, CopyError> read_fallible(VmWriter<Fallible>& writer) noexcept;

  // Widens to a fallible reader over the same bytes (Infallible is a subset of Fallible).
  VmReader<Fallible> to_fallible() const noexcept;
};

// A writer over kernel memory [cursor, end).
template <>
class VmWriter<Infallible> : public internal::WriteWindow<VmWriter<Infallible>, std::byte*> {
 public:
  VmWriter() noexcept = default;
  // A writer over `bytes`, which must stay valid and writable while the writer is used.
  explicit VmWriter(std::span<std::byte> bytes) noexcept
      : WriteWindow(bytes.data(), bytes.data() + bytes.size()) {}
  // Precondition (not checked): [ptr, ptr+len) is valid, writable kernel memory.
  static VmWriter from_kernel_space(std::byte* ptr, std::size_t len) noexcept {
    return VmWriter(std::span<std::byte>(ptr, len));
  }

  // Copies min(reader.remain(), avail()) bytes from `reader`; returns the count.
  std::size_t write(VmReader<Infallible>& reader) noexcept { return reader.read(*this); }

  // Errors: InvalidArgs if avail() < sizeof(T) (nothing written).
  template <Pod T>
  Result<void> write_val(const T& v) noexcept {
    if (avail() < sizeof(T)) return err(Error::InvalidArgs);
    internal::racy_copy(cursor_, &v, sizeof(T));
    cursor_ += sizeof(T);
    return {};
  }

  // One non-tearing store. Errors: InvalidArgs if short or misaligned.
  template <PodOnce T>
  Result<void> write_once(const T& v) noexcept {
    if (avail() < sizeof(T)) return err(Error::InvalidArgs);
    if (reinterpret_cast<std::uintptr_t>(cursor_) % sizeof(T) != 0) return err(Error::InvalidArgs);
    internal::store_once(cursor_, static_cast<std::uint64_t>(v), sizeof(T));
    cursor_ += sizeof(T);
    return {};
  }

  // Zeroes min(avail(), len) bytes and returns the count.
  std::size_t fill_zeros(std::size_t len) noexcept {
    std::size_t n = len < avail() ? len : avail();
    internal::racy_zero(cursor_, n);
    cursor_ += n;
    return n;
  }

  // Copies from a fallible reader; see VmReader<Infallible>::read_fallible.
  Result<std::size_t, CopyError> write_fallible(VmReader<Fallible>& reader) noexcept;

  // Widens to a fallible writer over the same bytes (Infallible is a subset of Fallible).
  VmWriter<Fallible> to_fallible() const noexcept;
};

// A reader over user memory of the calling CPU's active VmSpace (or, after to_fallible(), over
// kernel memory). Every access translates through the CPU's TLB and page table at the time of
// the access, like an MMU; it does not remember which space it was created for.
template <>
class VmReader<Fallible>
    : public internal::FallibleWindow<VmReader<Fallible>, internal::ReadWindow> {
 public:
  VmReader() noexcept = default;

  // Copies min(remain(), writer.avail()) bytes, stopping early at an unresolved fault.
  // Ok(count) or Err{PageFault, copied}; both cursors advance by the bytes copied.
  Result<std::size_t, CopyError> read_fallible(VmWriter<Infallible>& writer) noexcept;
  // The same, into a fallible writer: a fault on either side stops the copy.
  Result<std::size_t, CopyError> read_fallible(VmWriter<Fallible>& writer) noexcept;

  // Reads one T. Errors: InvalidArgs if remain() < sizeof(T); PageFault, with the cursor
  // rolled back to where it was (nothing is consumed).
  template <Pod T>
  Result<T> read_val() noexcept {
    if (remain() < sizeof(T)) return err(Error::InvalidArgs);
    T v{};
    auto out = internal::copy_fallible(internal::kernel_endpoint(&v), at_cursor(), sizeof(T));
    if (out.faulted) return err(Error::PageFault);
    cursor_ += sizeof(T);
    return v;
  }

  // A relaxed atomic load at the cursor; the cursor does not move.
  // Errors: InvalidArgs if remain() < sizeof(T) or misaligned; PageFault.
  template <PodAtomic T>
  Result<T> atomic_load() const noexcept {
    if (remain() < sizeof(T) || cursor_ % alignof(T) != 0) return err(Error::InvalidArgs);
    return internal::atomic_load_u32(at_cursor());
  }

 private:
  friend class VmReader<Infallible>;
  friend class VmWriter<Fallible>;
};

// A writer over user memory of the calling CPU's active VmSpace (or kernel memory after
// to_fallible()). See VmReader<Fallible>.
template <>
class VmWriter<Fallible>
    : public internal::FallibleWindow<VmWriter<Fallible>, internal::WriteWindow> {
 public:
  VmWriter() noexcept = default;

  // Copies from `reader` into this writer: reader.read_fallible(*this), with the same results; a
  // fault on this side stops the copy.
  Result<std::size_t, CopyError> write_fallible(VmReader<Infallible>& reader) noexcept {
    return reader.read_fallible(*this);
  }
  // The same from a fallible reader: a fault on either side stops the copy.
  Result<std::size_t, CopyError> write_fallible(VmReader<Fallible>& reader) noexcept {
    return reader.read_fallible(*this);
  }

  // Writes one T. Errors: InvalidArgs if avail() < sizeof(T); PageFault, with the cursor rolled
  // back (bytes before the fault may have been written, as with a hardware fault mid-store).
  template <Pod T>
  Result<void> write_val(const T& v) noexcept {
    if (avail() < sizeof(T)) return err(Error::InvalidArgs);
    auto out = internal::copy_fallible(at_cursor(), internal::kernel_endpoint(&v), sizeof(T));
    if (out.faulted) return err(Error::PageFault);
    cursor_ += sizeof(T);
    return {};
  }

  // Zeroes min(avail(), len) bytes. Ok(count) or Err{PageFault, zeroed}; advances by zeroed.
  Result<std::size_t, CopyError> fill_zeros(std::size_t len) noexcept {
    const std::size_t n = len < avail() ? len : avail();
    auto out = internal::zero_fallible(at_cursor(), n);
    cursor_ += out.copied;
    return internal::copy_result(out);
  }

  // Relaxed compare-and-exchange at the shared cursor of this writer and `reader` (OSTD needs
  // both to prove read and write access). Returns (previous value, previous == expected).
  // Cursors do not move. Errors: InvalidArgs if the cursors differ, either side is shorter than
  // sizeof(T), or the address is misaligned; PageFault.
  template <PodAtomic T>
  Result<std::pair<T, bool>> atomic_compare_exchange(const VmReader<Fallible>& reader, T expected,
                                                     T desired) const noexcept {
    if (reader.cursor_ != cursor_ || reader.kind_ != kind_ || avail() < sizeof(T) ||
        reader.remain() < sizeof(T) || cursor_ % alignof(T) != 0) {
      return err(Error::InvalidArgs);
    }
    auto prev = internal::atomic_cmpxchg_u32(at_cursor(), expected, desired);
    if (!prev) return err(prev.error());
    return std::pair<T, bool>(*prev, *prev == expected);
  }

 private:
  friend class VmReader<Fallible>;
  friend class VmReader<Infallible>;
  friend class VmWriter<Infallible>;
};

inline Result<std::size_t, CopyError> VmReader<Fallible>::read_fallible(
    VmWriter<Infallible>& writer) noexcept {
  const std::size_t n = remain() < writer.avail() ? remain() : writer.avail();
  std::uint64_t dst = reinterpret_cast<std::uintptr_t>(writer.cursor());
  const std::uint64_t start = dst;
  const auto out = internal::copy_advancing(dst, internal::AddressKind::Kernel, cursor_, kind_, n);
  (void)writer.skip(static_cast<std::size_t>(dst - start));
  return internal::copy_result(out);
}

inline Result<std::size_t, CopyError> VmReader<Fallible>::read_fallible(
    VmWriter<Fallible>& writer) noexcept {
  const std::size_t n = remain() < writer.avail() ? remain() : writer.avail();
  return internal::copy_result(
      internal::copy_advancing(writer.cursor_, writer.kind_, cursor_, kind_, n));
}

inline Result<std::size_t, CopyError> VmReader<Infallible>::read_fallible(
    VmWriter<Fallible>& writer) noexcept {
  const std::size_t n = remain() < writer.avail() ? remain() : writer.avail();
  std::uint64_t src = reinterpret_cast<std::uintptr_t>(cursor_);
  const std::uint64_t start = src;
  const auto out =
      internal::copy_advancing(writer.cursor_, writer.kind_, src, internal::AddressKind::Kernel, n);
  cursor_ += (src - start);
  return internal::copy_result(out);
}

inline Result<std::size_t, CopyError> VmWriter<Infallible>::write_fallible(
    VmReader<Fallible>& reader) noexcept {
  return reader.read_fallible(*this);
}

inline VmReader<Fallible> VmReader<Infallible>::to_fallible() const noexcept {
  return VmReader<Fallible>::make(reinterpret_cast<std::uintptr_t>(cursor_),
                                  reinterpret_cast<std::uintptr_t>(end_),
                                  internal::AddressKind::Kernel);
}

inline VmWriter<Fallible> VmWriter<Infallible>::to_fallible() const noexcept {
  return VmWriter<Fallible>::make(reinterpret_cast<std::uintptr_t>(cursor_),
                                  reinterpret_cast<std::uintptr_t>(end_),
                                  internal::AddressKind::Kernel);
}

inline std::size_t VmReader<Infallible>::read(VmWriter<Infallible>& writer) noexcept {
  std::size_t n = remain() < writer.avail() ? remain() : writer.avail();
  internal::racy_copy(writer.cursor(), cursor_, n);
  cursor_ += n;
  (void)writer.skip(n);
  return n;
}

}  // namespace vmspace
