// IoMem: a claimed range of device (I/O) physical memory that can be mapped into user space
// untracked (OSTD `ostd/src/io/io_mem/mod.rs`, `IoMem`: the subset VmSpace::map_iomem uses).
//
// Emulated RAM is [0, max_paddr()); device memory lives above it. An IoMem handle is shared
// (copies refer to the same claim); the claim ends when the last handle is dropped, after which
// the range may be acquired again. Accesses to device memory through fallible user readers and
// writers fault (there is no device behind the addresses): mapping it exercises the page-table
// and lifetime rules, not device emulation.
#pragma once

#include <cstddef>
#include <memory>

#include <vmspace/addr.hpp>
#include <vmspace/result.hpp>

namespace vmspace {

// A shared claim on a range of device physical memory, for VmSpace::map_iomem. Copies share one
// claim; the range is released when the last copy is dropped.
class IoMem {
 public:
  // Claims `range`. Errors: InvalidArgs if it is empty or not 4 KiB-aligned at both ends;
  // AccessDenied if it overlaps emulated RAM or a range claimed by a live IoMem.
  static Result<IoMem> acquire(PaRange range);

  // First physical address of the claimed range.
  Paddr paddr() const noexcept { return range_.start; }
  // Length of the claimed range in bytes (a multiple of 4 KiB).
  std::size_t size() const noexcept { return static_cast<std::size_t>(range_.end - range_.start); }
  // The claimed range [paddr(), paddr() + size()).
  PaRange paddr_range() const noexcept { return range_; }

  // Same claim (not merely the same addresses).
  friend bool operator==(const IoMem& a, const IoMem& b) noexcept { return a.claim_ == b.claim_; }

 private:
  struct Claim;
  IoMem(std::shared_ptr<Claim> claim, PaRange range) noexcept
      : claim_(std::move(claim)), range_(range) {}

  std::shared_ptr<Claim> claim_;
  PaRange range_;
};

}  // namespace vmspace
