// Internal: not API; may change without notice.
//
// The copy engine behind VmReader / VmWriter (io.hpp) and the VmIo of frames and segments:
//   - racy host copies (racy_copy, racy_zero, load_once, store_once; src/vm/copy.cpp) for
//     memory other threads may be writing at the same time;
//   - fallible copies and atomics (copy_fallible, zero_fallible, atomic_*_u32; src/vm/mmu.cpp)
//     that translate user addresses page by page through the calling CPU's software MMU and
//     call the page-fault handler (fault.hpp) when a translation fails.
// Upstream: OSTD `ostd/src/mm/io.rs` (the volatile / fallible memcpy helpers behind
// `VmReader::read_fallible`, `VmWriter::fill_zeros`, `VmReader::atomic_load`).
#pragma once

#include <cstddef>
#include <cstdint>

#include <vmspace/result.hpp>

namespace vmspace::internal {

// What an Endpoint's address means.
enum class AddressKind : std::uint8_t {
  User,    // a user virtual address: translated through the calling CPU's software MMU; may fault
  Kernel,  // a host address of kernel memory (linear mapping or host buffer): never faults
};

// One side of a fallible copy.
struct Endpoint {
  std::uint64_t addr;
  AddressKind kind;
};

inline Endpoint kernel_endpoint(const void* p) noexcept {
  return Endpoint{reinterpret_cast<std::uintptr_t>(p), AddressKind::Kernel};
}

struct CopyOutcome {
  std::size_t copied;  // bytes copied before the copy ended
  bool faulted;        // it ended at an unresolved fault (else: all n bytes were copied)
};

// Copies n bytes from src to dst page by page, calling the page-fault handler on faults.
CopyOutcome copy_fallible(Endpoint dst, Endpoint src, std::size_t n) noexcept;
CopyOutcome zero_fallible(Endpoint dst, std::size_t n) noexcept;
// Relaxed atomic u32 access at an aligned address. Errors: PageFault.
Result<std::uint32_t> atomic_load_u32(Endpoint at) noexcept;
// Relaxed CAS; returns the previous value. Errors: PageFault.
Result<std::uint32_t> atomic_cmpxchg_u32(Endpoint at, std::uint32_t expected,
                                         std::uint32_t desired) noexcept;

// copy_fallible from (src, src_kind) to (dst, dst_kind) that advances both addresses by the
// bytes copied (the cursors of a reader and a writer).
inline CopyOutcome copy_advancing(std::uint64_t& dst, AddressKind dst_kind, std::uint64_t& src,
                                  AddressKind src_kind, std::size_t n) noexcept {
  const CopyOutcome out = copy_fallible(Endpoint{dst, dst_kind}, Endpoint{src, src_kind}, n);
  dst += out.copied;
  src += out.copied;
  return out;
}

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

}  // namespace vmspace::internal
