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

namespace detail {
// Copies `n` bytes between host memory regions that may be written concurrently by other
// threads (racy by design). In ThreadSanitizer builds it copies with relaxed atomic accesses so
// the race is defined and not reported; otherwise it is memcpy.
void racy_copy(void* dst, const void* src, std::size_t n) noexcept;
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

  // Widens to a fallible reader over the same bytes (defined with the fallible reader).
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

  VmWriter<Fallible> to_fallible() const noexcept;

 private:
  std::byte* cursor_ = nullptr;
  std::byte* end_ = nullptr;
};

inline std::size_t VmReader<Infallible>::read(VmWriter<Infallible>& writer) noexcept {
  std::size_t n = remain() < writer.avail() ? remain() : writer.avail();
  detail::racy_copy(writer.cursor(), cursor_, n);
  cursor_ += n;
  (void)writer.skip(n);
  return n;
}

}  // namespace vmspace
