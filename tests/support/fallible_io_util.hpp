// Fallible readers and writers on real user memory of an active space: OSTD's fallible io
// scenarios (`ostd/src/mm/test.rs`, module io), the success conditions of docs/spec_cases.md
// case 37, boundary tables in the style of SerenityOS's TestEFault, the page-fault handler
// protocol, rollback of typed accesses, atomics, and the ACCESSED/DIRTY bits the software MMU
// sets.
//
// Every copy test runs twice (Zircon's pre_map_copy_in / fault_copy_in): PreMapped maps the
// whole layout up front; DemandFaulted maps nothing and lets the demand pager map each page on
// its first fault. Both install the same pager as the fault handler, so faults outside the
// layout (holes) or forbidden by a page's property are refused in both, and every table row
// must give the same result in both.
//
// Shared by the fallible_io_*_test.cpp files (one executable, unit_fallible_io).
#pragma once

#include <doctest/doctest.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#include <vmspace/fault.hpp>
#include <vmspace/io.hpp>
#include <vmspace/vm_space.hpp>

#include "result_check.hpp"
#include "vm_test_util.hpp"

using namespace vmspace;
using namespace vmspace::test;

namespace {

struct PreMapped {
  static constexpr bool kDemand = false;
};
struct DemandFaulted {
  static constexpr bool kDemand = true;
};

// The standard layout, page by page from kBase:
//   P0 P1  RW (pattern)      P2  hole (no region)     P3  RW (pattern)
//   P4     R only (pattern)  P5  mapped without R     P6, P7  holes
//   P8 P9  RW (zeroes)       P10 hole
constexpr Vaddr kBase = 0x10'0000;
constexpr Vaddr P(std::size_t i) { return kBase + i * kPageSize; }
constexpr std::size_t kP = kPageSize;

// A space active on CPU 0 of the calling thread, with the demand pager as fault handler.
template <class B>
class UserMemory {
 public:
  UserMemory() : space_(new_space()), active_(space_, cpu(0)), handler_(pager_.handler()) {}

  void add(VaRange r, PageProperty prop, DemandPager::Fill fill = DemandPager::Fill::Pattern) {
    pager_.add(r, prop, fill);
    if constexpr (!B::kDemand) {
      for (Vaddr va = r.start; va < r.end; va += kPageSize) {
        map_frame_at(
            *space_, va,
            new_frame(fill == DemandPager::Fill::Pattern ? std::optional<Vaddr>(va) : std::nullopt),
            prop);
      }
    }
  }
  void add_standard_layout() {
    add({P(0), P(2)}, kUserRw);
    add({P(3), P(4)}, kUserRw);
    add({P(4), P(5)}, kUserRo);
    add({P(5), P(6)}, kUserNone);
    add({P(8), P(10)}, kUserRw, DemandPager::Fill::Zero);
  }

  const VmSpace& space() const { return *space_; }
  const std::shared_ptr<VmSpace>& shared() const { return space_; }
  DemandPager& pager() { return pager_; }
  std::uint64_t handler_calls() const { return pager_.calls.load(); }

  // The bytes of [va, va + len) as the kernel sees them through the page table (every page
  // must be mapped).
  std::vector<std::byte> kernel_view(Vaddr va, std::size_t len) const {
    std::vector<std::byte> out(len);
    for (std::size_t i = 0; i < len; ++i) {
      auto w = space_->page_table().page_walk(va + i);
      REQUIRE(w.has_value());
      out[i] = *paddr_to_vaddr(w->first);
    }
    return out;
  }

 private:
  std::shared_ptr<VmSpace> space_;
  DemandPager pager_;
  ActiveOn active_;
  FaultHandlerScope handler_;
};

struct Row {
  const char* what;
  Vaddr va;
  std::size_t len;
  bool ok;            // Ok(count) rather than Err{PageFault, count}
  std::size_t count;  // bytes copied
};

inline std::byte source_byte(std::size_t i) {
  return std::byte{static_cast<std::uint8_t>(0x5a ^ (i * 13u))};
}

// The pages a copy of `count` bytes from `va` touched successfully (each mapped on demand once).
inline std::uint64_t pages_touched(Vaddr va, std::size_t count) {
  if (count == 0) return 0;
  return (align_down(va + count - 1, kPageSize) - align_down(va, kPageSize)) / kPageSize + 1;
}

template <class B>
void check_read_row(const Row& row) {
  CAPTURE(row.what);
  UserMemory<B> mem;
  const VmSpace& s = mem.space();
  mem.add_standard_layout();
  constexpr std::byte kUntouched{0xee};
  std::vector<std::byte> out(row.len, kUntouched);
  auto r = s.reader(row.va, row.len);
  REQUIRE(r.has_value());
  VmWriter<Infallible> w{std::span<std::byte>(out)};
  auto res = r->read_fallible(w);
  if (row.ok) {
    REQUIRE(res.has_value());
    CHECK(*res == row.count);
    if constexpr (!B::kDemand) CHECK(mem.handler_calls() == 0);
  } else {
    REQUIRE_FALSE(res.has_value());
    CHECK(res.error().error == Error::PageFault);
    CHECK(res.error().copied == row.count);
    CHECK(mem.handler_calls() >= 1);  // the refused fault
  }
  if constexpr (B::kDemand) CHECK(mem.pager().maps.load() == pages_touched(row.va, row.count));
  CHECK(r->remain() == row.len - row.count);
  CHECK(r->cursor() == row.va + row.count);
  CHECK(w.avail() == row.len - row.count);
  bool data_ok = true;
  for (std::size_t i = 0; i < row.len; ++i) {
    const std::byte want = i < row.count ? std::byte{pattern_byte(row.va + i)} : kUntouched;
    if (out[i] != want) data_ok = false;
  }
  CHECK(data_ok);
}

template <class B>
void check_write_row(const Row& row) {
  CAPTURE(row.what);
  UserMemory<B> mem;
  const VmSpace& s = mem.space();
  mem.add_standard_layout();
  std::vector<std::byte> src(row.len);
  for (std::size_t i = 0; i < row.len; ++i) src[i] = source_byte(i);
  auto w = s.writer(row.va, row.len);
  REQUIRE(w.has_value());
  VmReader<Infallible> r{std::span<const std::byte>(src)};
  auto res = w->write_fallible(r);
  if (row.ok) {
    REQUIRE(res.has_value());
    CHECK(*res == row.count);
    if constexpr (!B::kDemand) CHECK(mem.handler_calls() == 0);
  } else {
    REQUIRE_FALSE(res.has_value());
    CHECK(res.error().error == Error::PageFault);
    CHECK(res.error().copied == row.count);
  }
  if constexpr (B::kDemand) CHECK(mem.pager().maps.load() == pages_touched(row.va, row.count));
  CHECK(w->avail() == row.len - row.count);
  CHECK(r.remain() == row.len - row.count);
  if (row.count > 0) {
    auto written = mem.kernel_view(row.va, row.count);
    CHECK(std::equal(written.begin(), written.end(), src.begin()));
  }
  // The byte after the copied ones is unchanged wherever it is mapped.
  const Vaddr next = row.va + row.count;
  if (s.page_table().page_walk(next)) {
    CHECK(mem.kernel_view(next, 1)[0] == std::byte{pattern_byte(next)});
  }
}

// Reads 8 user bytes at va (REQUIREs success).
inline std::uint64_t user_u64(const VmSpace& space, Vaddr va) {
  auto v = read_u64(space, va);
  REQUIRE_MESSAGE(v.has_value(), "read at " << va << ": " << error_of(v));
  return *v;
}

inline std::uint64_t pattern_u64(Vaddr va) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < 8; ++i) v |= std::uint64_t{pattern_byte(va + i)} << (8 * i);
  return v;
}

}  // namespace
