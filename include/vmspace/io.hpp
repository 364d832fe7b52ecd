// VmReader / VmWriter: cursors over memory that copy data in and out (OSTD §2.16).
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
  Error error;
  std::size_t copied;
};

// The atomic types user memory supports (OSTD's PodAtomic: u32 only).
template <class T>
concept PodAtomic = std::is_same_v<T, std::uint32_t>;

namespace detail {
// One side of a fallible copy: a user virtual address (translated through the calling CPU's
// software MMU, may fault) or a kernel host address (never faults).
struct Endpoint {
  std::uint64_t addr;
  bool user;
};
struct CopyOutcome {
  std::size_t copied;
  bool faulted;
};
// Copies n bytes from src to dst page by page, calling the page-fault handler on faults.
CopyOutcome copy_fallible(Endpoint dst, Endpoint src, std::size_t n) noexcept;
CopyOutcome zero_fallible(Endpoint dst, std::size_t n) noexcept;
// Relaxed atomic u32 access at an aligned address. Errors: PageFault.
Result<std::uint32_t> atomic_load_u32(Endpoint at) noexcept;
// Relaxed CAS; returns the previous value. Errors: PageFault.
Result<std::uint32_t> atomic_cmpxchg_u32(Endpoint at, std::uint32_t expected,
                                         std::uint32_t desired) noexcept;

// Copies `n` bytes between host memory regions that may be written concurrently by other
// threads (racy by design) and may overlap (copied as by memmove). When the ranges do not
// overlap, an 8-byte word at an 8-byte-aligned source address whose destination is 8-byte
// aligned too is never torn: a racing reader sees it wholly old or wholly new (other bytes may
// tear), even when the copying thread is interrupted mid-copy. Under ThreadSanitizer the races
// are defined (relaxed atomic accesses) and unreported.
void racy_copy(void* dst, const void* src, std::size_t n) noexcept;
// Zeroes `n` bytes with the same guarantee: an aligned word is wholly old or wholly zero.
void racy_zero(void* dst, std::size_t n) noexcept;
// Single non-tearing load/store of 1, 2, 4 or 8 bytes at a naturally aligned address.
std::uint64_t load_once(const void* p, std::size_t size) noexcept;
void store_once(void* p, std::uint64_t v, std::size_t size) noexcept;
}  // namespace detail

template <class F = Fallible>
class VmReader;
template <class F = Fallible>
class VmWriter;

// A reader over kernel memory [cursor, end).
template <>
class VmReader<Infallible> {
 public:
  VmReader() noexcept = default;
  // Reads the bytes of `bytes`. The span must outlive the reader.
  explicit VmReader(std::span<const std::byte> bytes) noexcept
      : cursor_(bytes.data()), end_(bytes.data() + bytes.size()) {}
  // Precondition (not checked): [ptr, ptr+len) is valid kernel memory for the reader's life.
  static VmReader from_kernel_space(const std::byte* ptr, std::size_t len) noexcept {
    return VmReader(std::span<const std::byte>(ptr, len));
  }

  std::size_t remain() const noexcept { return static_cast<std::size_t>(end_ - cursor_); }
  bool has_remain() const noexcept { return cursor_ != end_; }
  const std::byte* cursor() const noexcept { return cursor_; }

  // Shrinks the readable length to at most `max` bytes (never grows it).
  VmReader& limit(std::size_t max) noexcept {
    if (max < remain()) end_ = cursor_ + max;
    return *this;
  }
  // Advances by `n` bytes. Errors: InvalidArgs if n > remain() (nothing moves).
  Result<void> skip(std::size_t n) noexcept {
    if (n > remain()) return err(Error::InvalidArgs);
    cursor_ += n;
    return {};
  }

  // Copies min(remain(), writer.avail()) bytes into `writer`, advancing both; returns the count.
  std::size_t read(VmWriter<Infallible>& writer) noexcept;

  // Reads one T (unaligned allowed). Errors: InvalidArgs if remain() < sizeof(T).
  template <Pod T>
  Result<T> read_val() noexcept {
    if (remain() < sizeof(T)) return err(Error::InvalidArgs);
    T v{};
    detail::racy_copy(&v, cursor_, sizeof(T));
    cursor_ += sizeof(T);
    return v;
  }

  // One non-tearing load. Errors: InvalidArgs if remain() < sizeof(T) or the cursor is not
  // aligned to sizeof(T) (OSTD panics on misalignment).
  template <PodOnce T>
  Result<T> read_once() noexcept {
    if (remain() < sizeof(T)) return err(Error::InvalidArgs);
    if (reinterpret_cast<std::uintptr_t>(cursor_) % sizeof(T) != 0) return err(Error::InvalidArgs);
    auto raw = detail::load_once(cursor_, sizeof(T));
    cursor_ += sizeof(T);
    return static_cast<T>(raw);
  }

  // Copies into a fallible writer (e.g. user memory). Ok(count) when the reader or the writer
  // ran out; Err{PageFault, copied} when a user access faulted and was not resolved. Both
  // cursors advance by the bytes copied either way.
  Result<std::size_t, struct CopyError> read_fallible(VmWriter<Fallible>& writer) noexcept;

  // Widens to a fallible reader over the same bytes (Infallible is a subset of Fallible).
  VmReader<Fallible> to_fallible() const noexcept;

 private:
  const std::byte* cursor_ = nullptr;
  const std::byte* end_ = nullptr;
};

// A writer over kernel memory [cursor, end).
template <>
class VmWriter<Infallible> {
 public:
  VmWriter() noexcept = default;
  explicit VmWriter(std::span<std::byte> bytes) noexcept
      : cursor_(bytes.data()), end_(bytes.data() + bytes.size()) {}
  // Precondition (not checked): [ptr, ptr+len) is valid, writable kernel memory.
  static VmWriter from_kernel_space(std::byte* ptr, std::size_t len) noexcept {
    return VmWriter(std::span<std::byte>(ptr, len));
  }

  std::size_t avail() const noexcept { return static_cast<std::size_t>(end_ - cursor_); }
  bool has_avail() const noexcept { return cursor_ != end_; }
  std::byte* cursor() const noexcept { return cursor_; }

  VmWriter& limit(std::size_t max) noexcept {
    if (max < avail()) end_ = cursor_ + max;
    return *this;
  }
  // Errors: InvalidArgs if n > avail() (nothing moves).
  Result<void> skip(std::size_t n) noexcept {
    if (n > avail()) return err(Error::InvalidArgs);
    cursor_ += n;
    return {};
  }

  // Copies min(reader.remain(), avail()) bytes from `reader`; returns the count.
  std::size_t write(VmReader<Infallible>& reader) noexcept { return reader.read(*this); }

  // Errors: InvalidArgs if avail() < sizeof(T) (nothing written).
  template <Pod T>
  Result<void> write_val(const T& v) noexcept {
    if (avail() < sizeof(T)) return err(Error::InvalidArgs);
    detail::racy_copy(cursor_, &v, sizeof(T));
    cursor_ += sizeof(T);
    return {};
  }

  // One non-tearing store. Errors: InvalidArgs if short or misaligned.
  template <PodOnce T>
  Result<void> write_once(const T& v) noexcept {
    if (avail() < sizeof(T)) return err(Error::InvalidArgs);
    if (reinterpret_cast<std::uintptr_t>(cursor_) % sizeof(T) != 0) return err(Error::InvalidArgs);
    detail::store_once(cursor_, static_cast<std::uint64_t>(v), sizeof(T));
    cursor_ += sizeof(T);
    return {};
  }

  // Zeroes min(avail(), len) bytes and returns the count.
  std::size_t fill_zeros(std::size_t len) noexcept {
    std::size_t n = len < avail() ? len : avail();
    detail::racy_zero(cursor_, n);
    cursor_ += n;
    return n;
  }

  // A second writer at the same position over the same remaining bytes. Writes through it do
  // not advance this writer (OSTD's clone_exclusive; the exclusivity is the caller's duty).
  VmWriter clone_exclusive() const noexcept { return *this; }

  // Copies from a fallible reader; see VmReader<Infallible>::read_fallible.
  Result<std::size_t, struct CopyError> write_fallible(VmReader<Fallible>& reader) noexcept;

  VmWriter<Fallible> to_fallible() const noexcept;

 private:
  std::byte* cursor_ = nullptr;
  std::byte* end_ = nullptr;
};

// A reader over user memory of the calling CPU's active VmSpace (or, after to_fallible(), over
// kernel memory). Every access translates through the CPU's TLB and page table at the time of
// the access, like an MMU; it does not remember which space it was created for.
template <>
class VmReader<Fallible> {
 public:
  VmReader() noexcept = default;
  // A reader over user addresses [va, va + len). Errors: AccessDenied if the range wraps or
  // ends above kMaxUserspaceVaddr. Mapping presence is not checked (faults surface on access).
  static Result<VmReader> from_user_space(Vaddr va, std::size_t len) noexcept {
    std::uint64_t end = 0;
    if (__builtin_add_overflow(va, len, &end) || end > kMaxUserspaceVaddr) {
      return err(Error::AccessDenied);
    }
    return VmReader(va, end, true);
  }

  std::size_t remain() const noexcept { return static_cast<std::size_t>(end_ - cursor_); }
  bool has_remain() const noexcept { return cursor_ != end_; }
  std::uint64_t cursor() const noexcept { return cursor_; }
  bool is_user() const noexcept { return user_; }
  VmReader& limit(std::size_t max) noexcept {
    if (max < remain()) end_ = cursor_ + max;
    return *this;
  }
  Result<void> skip(std::size_t n) noexcept {
    if (n > remain()) return err(Error::InvalidArgs);
    cursor_ += n;
    return {};
  }

  // Copies min(remain(), writer.avail()) bytes, stopping early at an unresolved fault.
  // Ok(count) or Err{PageFault, copied}; both cursors advance by the bytes copied.
  Result<std::size_t, CopyError> read_fallible(VmWriter<Infallible>& writer) noexcept;
  Result<std::size_t, CopyError> read_fallible(VmWriter<Fallible>& writer) noexcept;

  // Reads one T. Errors: InvalidArgs if remain() < sizeof(T); PageFault, with the cursor
  // rolled back to where it was (nothing is consumed).
  template <Pod T>
  Result<T> read_val() noexcept {
    if (remain() < sizeof(T)) return err(Error::InvalidArgs);
    T v{};
    auto out = detail::copy_fallible(detail::Endpoint{reinterpret_cast<std::uintptr_t>(&v), false},
                                     detail::Endpoint{cursor_, user_}, sizeof(T));
    if (out.faulted) return err(Error::PageFault);
    cursor_ += sizeof(T);
    return v;
  }

  // A relaxed atomic load at the cursor; the cursor does not move.
  // Errors: InvalidArgs if remain() < sizeof(T) or misaligned; PageFault.
  template <PodAtomic T>
  Result<T> atomic_load() const noexcept {
    if (remain() < sizeof(T) || cursor_ % alignof(T) != 0) return err(Error::InvalidArgs);
    return detail::atomic_load_u32(detail::Endpoint{cursor_, user_});
  }

 private:
  friend class VmReader<Infallible>;
  friend class VmWriter<Fallible>;
  friend class VmWriter<Infallible>;
  VmReader(std::uint64_t cursor, std::uint64_t end, bool user) noexcept
      : cursor_(cursor), end_(end), user_(user) {}

  std::uint64_t cursor_ = 0;
  std::uint64_t end_ = 0;
  bool user_ = true;
};

// A writer over user memory of the calling CPU's active VmSpace (or kernel memory after
// to_fallible()). See VmReader<Fallible>.
template <>
class VmWriter<Fallible> {
 public:
  VmWriter() noexcept = default;
  // Errors: AccessDenied if [va, va + len) wraps or ends above kMaxUserspaceVaddr.
  static Result<VmWriter> from_user_space(Vaddr va, std::size_t len) noexcept {
    std::uint64_t end = 0;
    if (__builtin_add_overflow(va, len, &end) || end > kMaxUserspaceVaddr) {
      return err(Error::AccessDenied);
    }
    return VmWriter(va, end, true);
  }

  std::size_t avail() const noexcept { return static_cast<std::size_t>(end_ - cursor_); }
  bool has_avail() const noexcept { return cursor_ != end_; }
  std::uint64_t cursor() const noexcept { return cursor_; }
  bool is_user() const noexcept { return user_; }
  VmWriter& limit(std::size_t max) noexcept {
    if (max < avail()) end_ = cursor_ + max;
    return *this;
  }
  Result<void> skip(std::size_t n) noexcept {
    if (n > avail()) return err(Error::InvalidArgs);
    cursor_ += n;
    return {};
  }
  // A second writer at the same position; writes through it do not advance this one.
  VmWriter clone_exclusive() const noexcept { return *this; }

  Result<std::size_t, CopyError> write_fallible(VmReader<Infallible>& reader) noexcept {
    return reader.read_fallible(*this);
  }
  Result<std::size_t, CopyError> write_fallible(VmReader<Fallible>& reader) noexcept {
    return reader.read_fallible(*this);
  }

  // Writes one T. Errors: InvalidArgs if avail() < sizeof(T); PageFault, with the cursor rolled
  // back (bytes before the fault may have been written, as with a hardware fault mid-store).
  template <Pod T>
  Result<void> write_val(const T& v) noexcept {
    if (avail() < sizeof(T)) return err(Error::InvalidArgs);
    auto out = detail::copy_fallible(detail::Endpoint{cursor_, user_},
                                     detail::Endpoint{reinterpret_cast<std::uintptr_t>(&v), false},
                                     sizeof(T));
    if (out.faulted) return err(Error::PageFault);
    cursor_ += sizeof(T);
    return {};
  }

  // Zeroes min(avail(), len) bytes. Ok(count) or Err{PageFault, zeroed}; advances by zeroed.
  Result<std::size_t, CopyError> fill_zeros(std::size_t len) noexcept {
    const std::size_t n = len < avail() ? len : avail();
    auto out = detail::zero_fallible(detail::Endpoint{cursor_, user_}, n);
    cursor_ += out.copied;
    if (out.faulted) return err(CopyError{Error::PageFault, out.copied});
    return out.copied;
  }

  // Relaxed compare-and-exchange at the shared cursor of this writer and `reader` (OSTD needs
  // both to prove read and write access). Returns (previous value, previous == expected).
  // Cursors do not move. Errors: InvalidArgs if the cursors differ, either side is shorter than
  // sizeof(T), or the address is misaligned; PageFault.
  template <PodAtomic T>
  Result<std::pair<T, bool>> atomic_compare_exchange(const VmReader<Fallible>& reader, T expected,
                                                     T desired) const noexcept {
    if (reader.cursor_ != cursor_ || reader.user_ != user_ || avail() < sizeof(T) ||
        reader.remain() < sizeof(T) || cursor_ % alignof(T) != 0) {
      return err(Error::InvalidArgs);
    }
    auto prev = detail::atomic_cmpxchg_u32(detail::Endpoint{cursor_, user_}, expected, desired);
    if (!prev) return err(prev.error());
    return std::pair<T, bool>(*prev, *prev == expected);
  }

 private:
  friend class VmReader<Fallible>;
  friend class VmReader<Infallible>;
  friend class VmWriter<Infallible>;
  VmWriter(std::uint64_t cursor, std::uint64_t end, bool user) noexcept
      : cursor_(cursor), end_(end), user_(user) {}

  std::uint64_t cursor_ = 0;
  std::uint64_t end_ = 0;
  bool user_ = true;
};

namespace detail {
// Runs one fallible copy between two cursors and advances both by the bytes copied.
inline Result<std::size_t, CopyError> advance_copy(std::uint64_t& dst, bool dst_user, std::uint64_t& src,
                                                   bool src_user, std::size_t n) noexcept {
  auto out = copy_fallible(Endpoint{dst, dst_user}, Endpoint{src, src_user}, n);
  dst += out.copied;
  src += out.copied;
  if (out.faulted) return err(CopyError{Error::PageFault, out.copied});
  return out.copied;
}
}  // namespace detail

inline Result<std::size_t, CopyError> VmReader<Fallible>::read_fallible(VmWriter<Infallible>& writer) noexcept {
  const std::size_t n = remain() < writer.avail() ? remain() : writer.avail();
  std::uint64_t dst = reinterpret_cast<std::uintptr_t>(writer.cursor());
  const std::uint64_t start = dst;
  auto r = detail::advance_copy(dst, false, cursor_, user_, n);
  (void)writer.skip(static_cast<std::size_t>(dst - start));
  return r;
}

inline Result<std::size_t, CopyError> VmReader<Fallible>::read_fallible(VmWriter<Fallible>& writer) noexcept {
  const std::size_t n = remain() < writer.avail() ? remain() : writer.avail();
  return detail::advance_copy(writer.cursor_, writer.user_, cursor_, user_, n);
}

inline Result<std::size_t, CopyError> VmReader<Infallible>::read_fallible(VmWriter<Fallible>& writer) noexcept {
  const std::size_t n = remain() < writer.avail() ? remain() : writer.avail();
  std::uint64_t src = reinterpret_cast<std::uintptr_t>(cursor_);
  const std::uint64_t start = src;
  auto r = detail::advance_copy(writer.cursor_, writer.user_, src, false, n);
  cursor_ += (src - start);
  return r;
}

inline Result<std::size_t, CopyError> VmWriter<Infallible>::write_fallible(VmReader<Fallible>& reader) noexcept {
  return reader.read_fallible(*this);
}

inline VmReader<Fallible> VmReader<Infallible>::to_fallible() const noexcept {
  return VmReader<Fallible>(reinterpret_cast<std::uintptr_t>(cursor_), reinterpret_cast<std::uintptr_t>(end_),
                            false);
}

inline VmWriter<Fallible> VmWriter<Infallible>::to_fallible() const noexcept {
  return VmWriter<Fallible>(reinterpret_cast<std::uintptr_t>(cursor_), reinterpret_cast<std::uintptr_t>(end_),
                            false);
}

inline std::size_t VmReader<Infallible>::read(VmWriter<Infallible>& writer) noexcept {
  std::size_t n = remain() < writer.avail() ? remain() : writer.avail();
  detail::racy_copy(writer.cursor(), cursor_, n);
  cursor_ += n;
  (void)writer.skip(n);
  return n;
}

}  // namespace vmspace
