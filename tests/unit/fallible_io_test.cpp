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
        map_frame_at(*space_, va, new_frame(fill == DemandPager::Fill::Pattern ? std::optional<Vaddr>(va) : std::nullopt),
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

std::byte source_byte(std::size_t i) { return std::byte{static_cast<std::uint8_t>(0x5a ^ (i * 13u))}; }

// The pages a copy of `count` bytes from `va` touched successfully (each mapped on demand once).
std::uint64_t pages_touched(Vaddr va, std::size_t count) {
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
std::uint64_t user_u64(const VmSpace& space, Vaddr va) {
  auto v = read_u64(space, va);
  REQUIRE_MESSAGE(v.has_value(), "read at " << va << ": " << error_of(v));
  return *v;
}

std::uint64_t pattern_u64(Vaddr va) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < 8; ++i) v |= std::uint64_t{pattern_byte(va + i)} << (8 * i);
  return v;
}

}  // namespace

TEST_SUITE("unit") {
  // ---- boundary tables (SerenityOS TestEFault style) ----

  TEST_CASE_TEMPLATE("read_boundary_table", B, PreMapped, DemandFaulted) {
    const std::array<Row, 14> rows = {{
        {"exact fit: two pages", P(0), 2 * kP, true, 2 * kP},
        {"one byte under", P(0), 2 * kP - 1, true, 2 * kP - 1},
        {"one byte over, into the hole", P(0), 2 * kP + 1, false, 2 * kP},
        {"one byte before the region", P(0) - 1, 2, false, 0},
        {"one page, exact fit", P(1), kP, true, kP},
        {"straddling the hole", P(1) + 100, kP, false, kP - 100},
        {"inside the hole", P(2) + 10, 10, false, 0},
        {"from the hole into a mapped page", P(3) - 1, 2, false, 0},
        {"RW then R-only pages", P(3) + 5, 2 * kP - 5, true, 2 * kP - 5},
        {"R-only page", P(4), kP, true, kP},
        {"into the page without R", P(4) + 4000, 200, false, 96},
        {"page without R", P(5), 1, false, 0},
        {"last byte before the R-less page", P(5) - 1, 1, true, 1},
        {"one byte", P(3) + 4095, 1, true, 1},
    }};
    for (const Row& row : rows) check_read_row<B>(row);
  }

  TEST_CASE_TEMPLATE("write_boundary_table", B, PreMapped, DemandFaulted) {
    const std::array<Row, 10> rows = {{
        {"exact fit: two pages", P(0), 2 * kP, true, 2 * kP},
        {"one byte under", P(0), 2 * kP - 1, true, 2 * kP - 1},
        {"one byte over, into the hole", P(0), 2 * kP + 1, false, 2 * kP},
        {"one byte before the region", P(0) - 1, 2, false, 0},
        {"straddling the hole", P(1) + 100, kP, false, kP - 100},
        {"from the hole into a mapped page", P(3) - 1, 2, false, 0},
        {"into the read-only page", P(3) + 4090, 10, false, 6},
        {"read-only page", P(4), 1, false, 0},
        {"page without R", P(5), 8, false, 0},
        {"one page, exact fit", P(3), kP, true, kP},
    }};
    for (const Row& row : rows) check_write_row<B>(row);
  }

  TEST_CASE_TEMPLATE("top_of_user_space_boundary_table", B, PreMapped, DemandFaulted) {
    UserMemory<B> mem;
    const VmSpace& s = mem.space();
    const Vaddr top_page = kMaxUserspaceVaddr - kPageSize;  // the last usable page
    mem.add({top_page, kMaxUserspaceVaddr}, kUserRw);
    // Exact fit at the top: copies.
    auto all = read_user(s, top_page, kPageSize);
    CHECK(all.back() == std::byte{pattern_byte(kMaxUserspaceVaddr - 1)});
    REQUIRE(write_u64(s, kMaxUserspaceVaddr - 8, 0x1122'3344'5566'7788ULL).has_value());
    CHECK(user_u64(s, kMaxUserspaceVaddr - 8) == 0x1122'3344'5566'7788ULL);
    // One byte over, wrap-around, and the reserved top page are refused at creation.
    struct Bad {
      Vaddr va;
      std::size_t len;
    };
    const std::array<Bad, 7> refused = {{
        {top_page, kPageSize + 1},
        {kMaxUserspaceVaddr - 1, 2},
        {kMaxUserspaceVaddr, 1},                 // the reserved top page
        {UINT64_MAX - 10, 20},                   // wraps
        {UINT64_MAX, 1},                         // wraps to 0
        {0x1000, std::size_t{0x7fff'ffff'e001}}, // one byte over (spec case 37)
        {kKernelBaseVaddr, 8},                   // kernel half
    }};
    const auto calls = mem.handler_calls();
    for (const Bad& b : refused) {
      CAPTURE(b.va);
      CAPTURE(b.len);
      CHECK(error_of(s.reader(b.va, b.len)) == Error::AccessDenied);
      CHECK(error_of(s.writer(b.va, b.len)) == Error::AccessDenied);
      CHECK(error_of(s.reader_writer(b.va, b.len)) == Error::AccessDenied);
    }
    CHECK(mem.handler_calls() == calls);
    // Ends exactly at MAX_USERSPACE_VADDR: accepted (nothing below the top page is mapped, so a
    // copy from the start faults at once).
    auto big = s.reader(0x1000, std::size_t{0x7fff'ffff'e000});
    REQUIRE(big.has_value());
    CHECK(big->remain() == std::size_t{0x7fff'ffff'e000});
    std::array<std::byte, 16> buf{};
    VmWriter<Infallible> w{std::span<std::byte>(buf)};
    auto res = big->read_fallible(w);
    REQUIRE_FALSE(res.has_value());
    CHECK(res.error().copied == 0);
    CHECK(s.reader(kMaxUserspaceVaddr - 1, 1).has_value());
  }

  // ---- docs/spec_cases.md case 37 and our documented decisions ----

  TEST_CASE("reader_writer_success_conditions") {
    auto space = new_space();
    const std::size_t to_top = 0x7fff'ffff'e000;
    {
      BoundTo bound(cpu(0));
      // Inactive space: refused even for a perfect range.
      CHECK(error_of(space->reader(0x1000, to_top)) == Error::AccessDenied);
      CHECK(error_of(space->writer(0x1000, to_top)) == Error::AccessDenied);
    }
    ActiveOn active(space, cpu(0));
    CHECK(space->reader(0x1000, to_top).has_value());
    CHECK(space->writer(0x1000, to_top).has_value());
    CHECK(error_of(space->reader(0x1000, to_top + 1)) == Error::AccessDenied);
    CHECK(error_of(space->writer(0x1000, to_top + 1)) == Error::AccessDenied);
    CHECK(error_of(space->reader(UINT64_MAX - 10, 20)) == Error::AccessDenied);
    CHECK(error_of(space->writer(UINT64_MAX - 10, 20)) == Error::AccessDenied);
    // Decided (vm_space.hpp): vaddr == 0 is an ordinary address, len == 0 an empty reader.
    CHECK(space->reader(0, 4096).has_value());
    CHECK(space->writer(0, 4096).has_value());
    CHECK(space->reader(0x1000, 0).has_value());
    CHECK(space->writer(0x1000, 0).has_value());
    CHECK(space->reader(kMaxUserspaceVaddr, 0).has_value());
    // An empty range must still lie in user space.
    CHECK(error_of(space->reader(kKernelBaseVaddr, 0)) == Error::AccessDenied);
    CHECK(error_of(space->reader(UINT64_MAX, 0)) == Error::AccessDenied);
  }

  TEST_CASE_TEMPLATE("zero_length_copies_never_touch_memory", B, PreMapped, DemandFaulted) {
    UserMemory<B> mem;
    const VmSpace& s = mem.space();
    mem.add_standard_layout();
    const auto stats = fault_stats();
    std::array<std::byte, 8> buf{};
    for (Vaddr va : {P(2), P(5), Vaddr{0}, P(0)}) {
      CAPTURE(va);
      auto r = s.reader(va, 0);
      REQUIRE(r.has_value());
      CHECK_FALSE(r->has_remain());
      VmWriter<Infallible> w{std::span<std::byte>(buf)};
      CHECK(r->read_fallible(w).value() == 0);
      auto wr = s.writer(va, 0);
      REQUIRE(wr.has_value());
      CHECK(wr->fill_zeros(8).value() == 0);
      VmReader<Infallible> src{std::span<const std::byte>(buf)};
      CHECK(wr->write_fallible(src).value() == 0);
      CHECK(error_of(r->read_val<std::uint8_t>()) == Error::InvalidArgs);
    }
    CHECK(mem.handler_calls() == 0);
    CHECK(fault_stats().refused == stats.refused);
    if constexpr (B::kDemand) CHECK_FALSE(s.page_table().page_walk(P(0)).has_value());
  }

  // ---- OSTD's fallible io scenarios, on user memory ----

  TEST_CASE_TEMPLATE("fallible_read_write", B, PreMapped, DemandFaulted) {
    UserMemory<B> mem;
    const VmSpace& s = mem.space();
    mem.add_standard_layout();
    auto w = s.writer(P(0) + 8, 8);
    REQUIRE(w.has_value());
    CHECK(w->has_avail());
    REQUIRE(w->write_val<std::uint64_t>(0xaabb'ccdd'eeff'0011ULL).has_value());
    CHECK_FALSE(w->has_avail());
    auto r = s.reader(P(0) + 8, 8);
    REQUIRE(r.has_value());
    CHECK(r->has_remain());
    CHECK(r->read_val<std::uint64_t>().value() == 0xaabb'ccdd'eeff'0011ULL);
    CHECK_FALSE(r->has_remain());
    if constexpr (!B::kDemand) CHECK(mem.handler_calls() == 0);
    if constexpr (B::kDemand) CHECK(mem.pager().maps.load() == 1);
  }

  TEST_CASE_TEMPLATE("partial_read_fallible", B, PreMapped, DemandFaulted) {
    UserMemory<B> mem;
    const VmSpace& s = mem.space();
    mem.add_standard_layout();
    const std::array<std::uint8_t, 5> data = {10, 20, 30, 40, 50};
    {
      auto w = s.writer(P(3), 5);
      VmReader<Infallible> src{std::as_bytes(std::span(data))};
      REQUIRE(w->write_fallible(src).value() == 5);
    }
    auto r = s.reader(P(3), 5);
    REQUIRE(r.has_value());
    r->limit(3);
    CHECK(r->remain() == 3);
    std::array<std::uint8_t, 5> out{};
    VmWriter<Infallible> kw{std::as_writable_bytes(std::span(out))};
    VmWriter<Fallible> fw = kw.to_fallible();
    auto n = r->read_fallible(fw);
    REQUIRE(n.has_value());
    CHECK(*n == 3);
    CHECK(out == std::array<std::uint8_t, 5>{10, 20, 30, 0, 0});
    CHECK(fw.avail() == 2);
  }

  TEST_CASE_TEMPLATE("partial_write_fallible", B, PreMapped, DemandFaulted) {
    UserMemory<B> mem;
    const VmSpace& s = mem.space();
    mem.add_standard_layout();
    auto w = s.writer(P(8), 5);
    REQUIRE(w.has_value());
    w->limit(3);
    CHECK(w->avail() == 3);
    const std::array<std::uint8_t, 5> data = {10, 20, 30, 40, 50};
    VmReader<Infallible> src{std::as_bytes(std::span(data))};
    auto n = w->write_fallible(src);
    REQUIRE(n.has_value());
    CHECK(*n == 3);
    CHECK(src.remain() == 2);
    auto back = read_user(s, P(8), 5);
    CHECK(back == std::vector<std::byte>{std::byte{10}, std::byte{20}, std::byte{30}, std::byte{0}, std::byte{0}});
  }

  TEST_CASE_TEMPLATE("read_write_val_fallible", B, PreMapped, DemandFaulted) {
    UserMemory<B> mem;
    const VmSpace& s = mem.space();
    mem.add_standard_layout();
    // Unaligned and across the P0/P1 page boundary.
    const Vaddr va = P(1) - 3;
    REQUIRE(write_u64(s, va, 0xaabb'ccdd'eeff'0011ULL).has_value());
    CHECK(user_u64(s, va) == 0xaabb'ccdd'eeff'0011ULL);
    struct Pod {
      std::uint32_t a;
      std::uint64_t b;
    };
    auto w = s.writer(P(3) + 100, sizeof(Pod));
    REQUIRE(w->write_val(Pod{0x1234'5678, 0xabcd'ef01'2345'6789ULL}).has_value());
    auto r = s.reader(P(3) + 100, sizeof(Pod));
    auto p = r->read_val<Pod>();
    REQUIRE(p.has_value());
    CHECK(p->a == 0x1234'5678u);
    CHECK(p->b == 0xabcd'ef01'2345'6789ULL);
  }

  TEST_CASE_TEMPLATE("atomic_load_fallible", B, PreMapped, DemandFaulted) {
    UserMemory<B> mem;
    const VmSpace& s = mem.space();
    mem.add_standard_layout();
    const std::array<std::uint8_t, 8> data = {1, 1, 1, 1, 2, 2, 2, 2};
    {
      auto w = s.writer(P(8), 8);
      VmReader<Infallible> src{std::as_bytes(std::span(data))};
      REQUIRE(w->write_fallible(src).value() == 8);
    }
    auto r = s.reader(P(8), 8);
    REQUIRE(r.has_value());
    CHECK(r->atomic_load<std::uint32_t>().value() == 0x0101'0101u);
    CHECK(r->cursor() == P(8));  // an atomic load never moves the cursor
    REQUIRE(r->skip(4).has_value());
    CHECK(r->atomic_load<std::uint32_t>().value() == 0x0202'0202u);
    REQUIRE(r->skip(4).has_value());
    CHECK(error_of(r->atomic_load<std::uint32_t>()) == Error::InvalidArgs);  // nothing left
  }

  TEST_CASE_TEMPLATE("atomic_compare_exchange_fallible", B, PreMapped, DemandFaulted) {
    UserMemory<B> mem;
    const VmSpace& s = mem.space();
    mem.add_standard_layout();
    auto rw = s.reader_writer(P(9), kPageSize);  // a zeroed page
    REQUIRE(rw.has_value());
    auto& [r, w] = *rw;
    using P32 = std::pair<std::uint32_t, bool>;
    CHECK(w.atomic_compare_exchange<std::uint32_t>(r, 0, 100).value() == P32{0, true});
    CHECK(w.atomic_compare_exchange<std::uint32_t>(r, 100, 200).value() == P32{100, true});
    CHECK(w.atomic_compare_exchange<std::uint32_t>(r, 300, 400).value() == P32{200, false});
    CHECK(w.atomic_compare_exchange<std::uint32_t>(r, 200, 300).value() == P32{200, true});
    CHECK(w.atomic_compare_exchange<std::uint32_t>(r, 200, 400).value() == P32{300, false});
    CHECK(r.atomic_load<std::uint32_t>().value() == 300u);
    CHECK(r.cursor() == P(9));
    CHECK(w.cursor() == P(9));
    CHECK(r.read_val<std::uint32_t>().value() == 300u);
  }

  TEST_CASE_TEMPLATE("fill_zeros_fallible", B, PreMapped, DemandFaulted) {
    UserMemory<B> mem;
    const VmSpace& s = mem.space();
    mem.add_standard_layout();
    {
      const std::array<std::uint8_t, 8> ones = {1, 1, 1, 1, 1, 1, 1, 1};
      auto w = s.writer(P(3), 8);
      VmReader<Infallible> src{std::as_bytes(std::span(ones))};
      REQUIRE(w->write_fallible(src).value() == 8);
    }
    auto w = s.writer(P(3), 8);
    REQUIRE(w.has_value());
    CHECK(w->fill_zeros(8).value() == 8);
    CHECK_FALSE(w->has_avail());
    CHECK(read_user(s, P(3), 8) == std::vector<std::byte>(8, std::byte{0}));
    CHECK(read_user(s, P(3) + 8, 1)[0] == std::byte{pattern_byte(P(3) + 8)});
    // More than available: clamped.
    auto w2 = s.writer(P(3) + 16, 4);
    CHECK(w2->fill_zeros(100).value() == 4);
    // Into the hole: a partial count.
    auto w3 = s.writer(P(1) + kP - 10, 20);
    auto res = w3->fill_zeros(20);
    REQUIRE_FALSE(res.has_value());
    CHECK(res.error().error == Error::PageFault);
    CHECK(res.error().copied == 10);
    CHECK(w3->avail() == 10);
    CHECK(read_user(s, P(1) + kP - 10, 10) == std::vector<std::byte>(10, std::byte{0}));
  }

  TEST_CASE_TEMPLATE("invalid_args_read_write_fallible", B, PreMapped, DemandFaulted) {
    UserMemory<B> mem;
    const VmSpace& s = mem.space();
    mem.add_standard_layout();
    auto w = s.writer(P(0), 3);
    REQUIRE(w.has_value());
    CHECK(error_of(w->write_val<std::uint32_t>(0xdeadbeef)) == Error::InvalidArgs);
    CHECK(w->avail() == 3);
    auto r = s.reader(P(0), 3);
    REQUIRE(r.has_value());
    CHECK(error_of(r->read_val<std::uint32_t>()) == Error::InvalidArgs);
    CHECK(r->remain() == 3);
    CHECK(error_of(r->skip(4)) == Error::InvalidArgs);
    CHECK(error_of(w->skip(4)) == Error::InvalidArgs);
    // Misaligned atomics and mismatched cursors are argument errors too.
    auto rw = s.reader_writer(P(0) + 2, 8);
    REQUIRE(rw.has_value());
    CHECK(error_of(rw->first.atomic_load<std::uint32_t>()) == Error::InvalidArgs);
    CHECK(error_of(rw->second.atomic_compare_exchange<std::uint32_t>(rw->first, 0, 1)) == Error::InvalidArgs);
    auto r2 = s.reader(P(0) + 4, 4);
    auto w2 = s.writer(P(0), 8);
    CHECK(error_of(w2->atomic_compare_exchange<std::uint32_t>(*r2, 0, 1)) == Error::InvalidArgs);
    CHECK(mem.handler_calls() == 0);  // never got as far as touching memory
  }

  // ---- typed accesses roll back on a fault ----

  TEST_CASE_TEMPLATE("read_val_rolls_back_on_fault_and_retries_after_mapping", B, PreMapped, DemandFaulted) {
    UserMemory<B> mem;
    const VmSpace& s = mem.space();
    mem.add_standard_layout();
    const Vaddr va = P(2) - 4;  // the last 4 bytes of P1, then the hole
    auto r = s.reader(va, 16);
    REQUIRE(r.has_value());
    CHECK(error_of(r->read_val<std::uint64_t>()) == Error::PageFault);
    CHECK(r->cursor() == va);
    CHECK(r->remain() == 16);
    mem.add({P(2), P(3)}, kUserRw);  // the hole becomes memory
    CHECK(r->read_val<std::uint64_t>().value() == pattern_u64(va));
    CHECK(r->cursor() == va + 8);
  }

  TEST_CASE_TEMPLATE("write_val_rolls_back_on_fault", B, PreMapped, DemandFaulted) {
    UserMemory<B> mem;
    const VmSpace& s = mem.space();
    mem.add_standard_layout();
    const Vaddr va = P(4) - 4;  // the last 4 bytes of P3, then the read-only P4
    auto w = s.writer(va, 16);
    REQUIRE(w.has_value());
    CHECK(error_of(w->write_val<std::uint64_t>(~std::uint64_t{0})) == Error::PageFault);
    CHECK(w->cursor() == va);
    CHECK(w->avail() == 16);
    CHECK(user_u64(s, P(4)) == pattern_u64(P(4)));  // the read-only page is intact
    REQUIRE(w->skip(8).has_value());
    CHECK(error_of(w->write_val<std::uint32_t>(1)) == Error::PageFault);
    CHECK(w->cursor() == va + 8);
  }

  // ---- atomics fault and resolve ----

  TEST_CASE_TEMPLATE("atomics_fault_and_resolve", B, PreMapped, DemandFaulted) {
    UserMemory<B> mem;
    const VmSpace& s = mem.space();
    mem.add_standard_layout();
    const auto calls = mem.handler_calls();
    auto r = s.reader(P(3) + 8, 4);
    CHECK(r->atomic_load<std::uint32_t>().value() == static_cast<std::uint32_t>(pattern_u64(P(3) + 8)));
    if constexpr (B::kDemand) {
      CHECK(mem.handler_calls() == calls + 1);
    } else {
      CHECK(mem.handler_calls() == calls);
    }
    // A CAS on the read-only page faults (for writing) and is refused; the value stays.
    auto ro = s.reader_writer(P(4), 4);
    CHECK(error_of(ro->second.atomic_compare_exchange<std::uint32_t>(ro->first, 0, 1)) == Error::PageFault);
    CHECK(ro->first.atomic_load<std::uint32_t>().value() == static_cast<std::uint32_t>(pattern_u64(P(4))));
    // The hole and the R-less page fault for both.
    auto hole = s.reader_writer(P(2), 4);
    CHECK(error_of(hole->first.atomic_load<std::uint32_t>()) == Error::PageFault);
    CHECK(error_of(hole->second.atomic_compare_exchange<std::uint32_t>(hole->first, 0, 1)) == Error::PageFault);
    auto none = s.reader(P(5), 4);
    CHECK(error_of(none->atomic_load<std::uint32_t>()) == Error::PageFault);
    // A CAS on a page first touched by it maps it writable and succeeds.
    auto fresh = s.reader_writer(P(8) + 12, 4);
    CHECK(fresh->second.atomic_compare_exchange<std::uint32_t>(fresh->first, 0, 7).value() ==
          std::pair<std::uint32_t, bool>{0, true});
    CHECK(user_u64(s, P(8) + 8) == std::uint64_t{7} << 32);
  }

  // ---- Fallible <-> Fallible between two user buffers ----

  TEST_CASE_TEMPLATE("user_to_user_copies", B, PreMapped, DemandFaulted) {
    UserMemory<B> mem;
    const VmSpace& s = mem.space();
    mem.add_standard_layout();
    {
      auto r = s.reader(P(0), 2 * kP);
      auto w = s.writer(P(8), 2 * kP);
      auto n = r->read_fallible(*w);
      REQUIRE(n.has_value());
      CHECK(*n == 2 * kP);
      auto copied = mem.kernel_view(P(8), 2 * kP);
      bool same = true;
      for (std::size_t i = 0; i < 2 * kP; ++i) same = same && copied[i] == std::byte{pattern_byte(P(0) + i)};
      CHECK(same);
    }
    {
      // The destination runs into a hole.
      auto r = s.reader(P(3), 2 * kP);
      auto w = s.writer(P(9) + 100, 2 * kP);
      auto n = w->write_fallible(*r);
      REQUIRE_FALSE(n.has_value());
      CHECK(n.error().copied == kP - 100);
      CHECK(r->cursor() == P(3) + kP - 100);
      CHECK(w->cursor() == P(10));
    }
    {
      // The source runs into the hole.
      auto r = s.reader(P(1) + 50, kP);
      auto w = s.writer(P(8), kP);
      auto n = r->read_fallible(*w);
      REQUIRE_FALSE(n.has_value());
      CHECK(n.error().copied == kP - 50);
      CHECK(user_u64(s, P(8)) == pattern_u64(P(1) + 50));
    }
  }

  TEST_CASE_TEMPLATE("overlapping_copy_memcpy_param_overlap", B, PreMapped, DemandFaulted) {
    // Regression: readers and writers over untyped memory may overlap (io.hpp), but the copy
    // engine used memcpy, which is undefined on overlapping ranges (ASan: memcpy-param-overlap).
    // Within one page the copy now behaves as memmove, in either direction.
    UserMemory<B> mem;
    const VmSpace& s = mem.space();
    mem.add_standard_layout();
    const std::uint64_t w0 = user_u64(s, P(0));
    const std::uint64_t w1 = user_u64(s, P(0) + 8);
    {
      auto r = s.reader(P(0), 64);
      auto w = s.writer(P(0) + 8, 64);  // destination above the source
      REQUIRE(r->read_fallible(*w).value() == 64);
    }
    CHECK(user_u64(s, P(0) + 8) == w0);
    CHECK(user_u64(s, P(0) + 16) == w1);
    {
      auto r = s.reader(P(0) + 8, 64);
      auto w = s.writer(P(0), 64);  // destination below the source
      REQUIRE(r->read_fallible(*w).value() == 64);
    }
    CHECK(user_u64(s, P(0)) == w0);
    CHECK(user_u64(s, P(0) + 8) == w1);
    // Kernel buffers through the infallible path, too.
    std::array<std::uint8_t, 16> buf = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    VmReader<Infallible> kr{std::as_bytes(std::span(buf)).first(12)};
    VmWriter<Infallible> kw{std::as_writable_bytes(std::span(buf)).subspan(4)};
    CHECK(kr.read(kw) == 12);
    CHECK(buf == std::array<std::uint8_t, 16>{0, 1, 2, 3, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11});
  }

  TEST_CASE_TEMPLATE("large_copy_spans_many_read_sections", B, PreMapped, DemandFaulted) {
    // 1 MiB crosses several of the copy engine's 256 KiB read sections.
    UserMemory<B> mem;
    const VmSpace& s = mem.space();
    const Vaddr base = 0x4000'0000;
    const std::size_t len = std::size_t{1} << 20;
    mem.add({base, base + len}, kUserRw);
    std::vector<std::byte> out(len);
    auto r = s.reader(base, len);
    VmWriter<Infallible> w{std::span<std::byte>(out)};
    REQUIRE(r->read_fallible(w).value() == len);
    bool same = true;
    for (std::size_t i = 0; i < len; ++i) same = same && out[i] == std::byte{pattern_byte(base + i)};
    CHECK(same);
    if constexpr (B::kDemand) CHECK(mem.pager().maps.load() == len / kPageSize);
  }

  // ---- the page-fault handler protocol ----

  TEST_CASE("fault_handler_sees_the_faulting_space_address_and_access") {
    auto space = new_space();
    ActiveOn active(space, cpu(2));
    std::vector<PageFaultInfo> seen;
    FaultHandlerScope h([&](const PageFaultInfo& info) -> Result<void> {
      seen.push_back(info);
      return err(Error::PageFault);
    });
    std::array<std::byte, 4> buf{};
    auto r = space->reader(0x12345, 4);
    VmWriter<Infallible> kw{std::span<std::byte>(buf)};
    CHECK_FALSE(r->read_fallible(kw).has_value());
    auto w = space->writer(0x23456, 4);
    VmReader<Infallible> kr{std::span<const std::byte>(buf)};
    CHECK_FALSE(w->write_fallible(kr).has_value());
    REQUIRE(seen.size() == 2);
    CHECK(seen[0].space == space);
    CHECK(seen[0].address == 0x12345);  // not rounded
    CHECK(seen[0].access == PageFaultAccess::Read);
    CHECK(seen[0].cpu == cpu(2));
    CHECK(seen[1].address == 0x23456);
    CHECK(seen[1].access == PageFaultAccess::Write);
  }

  TEST_CASE("refusing_handler_ends_the_copy_with_page_fault") {
    auto space = new_space();
    ActiveOn active(space, cpu(0));
    map_page(*space, 0x10000);
    int calls = 0;
    FaultHandlerScope h([&](const PageFaultInfo&) -> Result<void> {
      ++calls;
      return err(Error::PageFault);
    });
    const auto before = fault_stats();
    std::vector<std::byte> buf(2 * kP);
    auto r = space->reader(0x10000, 2 * kP);
    VmWriter<Infallible> w{std::span<std::byte>(buf)};
    auto res = r->read_fallible(w);
    REQUIRE_FALSE(res.has_value());
    CHECK(res.error().copied == kP);
    CHECK(calls == 1);
    CHECK(fault_stats().unresolved == before.unresolved + 1);
    CHECK(fault_stats().handled == before.handled);
  }

  TEST_CASE("lying_handler_gives_page_fault_after_the_retry_cap") {
    // A handler that claims success without mapping: the access is retried kMaxFaultRetries
    // times, then fails.
    auto space = new_space();
    ActiveOn active(space, cpu(0));
    map_page(*space, 0x10000);
    unsigned calls = 0;
    FaultHandlerScope h([&](const PageFaultInfo&) -> Result<void> {
      ++calls;
      return {};
    });
    const auto before = fault_stats();
    std::vector<std::byte> buf(2 * kP);
    auto r = space->reader(0x10000, 2 * kP);
    VmWriter<Infallible> w{std::span<std::byte>(buf)};
    auto res = r->read_fallible(w);
    REQUIRE_FALSE(res.has_value());
    CHECK(res.error().error == Error::PageFault);
    CHECK(res.error().copied == kP);
    CHECK(calls == kMaxFaultRetries);
    CHECK(fault_stats().handled == before.handled + kMaxFaultRetries);
    CHECK(fault_stats().unresolved == before.unresolved + 1);
    // A write to a read-only page that the handler "resolves" by doing nothing: same.
    map_page(*space, 0x20000, kUserRo);
    calls = 0;
    CHECK(error_of(write_u64(*space, 0x20000, 1)) == Error::PageFault);
    CHECK(calls == kMaxFaultRetries);
  }

  TEST_CASE("atomic_retry_cap_counts_unresolved_fault") {
    // Regression: an atomic access that gave up after kMaxFaultRetries "successful" handler
    // calls returned PageFault without counting it in FaultStats::unresolved (copies did).
    auto space = new_space();
    ActiveOn active(space, cpu(0));
    unsigned calls = 0;
    FaultHandlerScope h([&](const PageFaultInfo&) -> Result<void> {
      ++calls;
      return {};
    });
    const auto before = fault_stats();
    auto rw = space->reader_writer(0x30000, 4);
    CHECK(error_of(rw->first.atomic_load<std::uint32_t>()) == Error::PageFault);
    CHECK(calls == kMaxFaultRetries);
    CHECK(fault_stats().unresolved == before.unresolved + 1);
    calls = 0;
    CHECK(error_of(rw->second.atomic_compare_exchange<std::uint32_t>(rw->first, 0, 1)) == Error::PageFault);
    CHECK(calls == kMaxFaultRetries);
    CHECK(fault_stats().unresolved == before.unresolved + 2);
    CHECK(fault_stats().handled == before.handled + 2 * kMaxFaultRetries);
  }

  TEST_CASE("no_handler_means_page_fault_and_a_refusal") {
    auto space = new_space();
    ActiveOn active(space, cpu(0));
    FaultHandlerScope none{UserPageFaultHandler()};
    const auto before = fault_stats();
    CHECK(error_of(read_u64(*space, 0x10000)) == Error::PageFault);
    CHECK(fault_stats().refused == before.refused + 1);
  }

  TEST_CASE("device_memory_and_kernel_addresses_are_refused_without_calling_the_handler") {
    auto space = new_space();
    ActiveOn active(space, cpu(0));
    unsigned calls = 0;
    FaultHandlerScope h([&](const PageFaultInfo&) -> Result<void> {
      ++calls;
      return {};
    });
    const auto before = fault_stats();
    // Kernel addresses never get a user reader or writer.
    CHECK(error_of(space->reader(kLinearMappingBaseVaddr, 8)) == Error::AccessDenied);
    CHECK(error_of(space->writer(kKernelEndVaddr - 8, 8)) == Error::AccessDenied);
    // Mapped device memory has nothing behind it: the fault is refused, not handled.
    const Paddr dev = 0x100'0070'0000ULL;
    auto io = IoMem::acquire({dev, dev + kPageSize});
    REQUIRE(io.has_value());
    {
      auto g = disable_preempt();
      auto c = space->cursor_mut(g, {0x40000, 0x41000});
      REQUIRE(c->map_iomem(*io, kUserRw, kPageSize, 0).has_value());
    }
    CHECK(error_of(read_u64(*space, 0x40000)) == Error::PageFault);
    CHECK(error_of(write_u64(*space, 0x40000, 1)) == Error::PageFault);
    CHECK(calls == 0);
    CHECK(fault_stats().refused == before.refused + 2);
    CHECK(fault_stats().handled == before.handled);
  }

  TEST_CASE("unbound_threads_get_page_fault") {
    auto space = new_space();
    ActiveOn active(space, cpu(0));
    map_page(*space, 0x10000);
    unsigned calls = 0;
    FaultHandlerScope h([&](const PageFaultInfo&) -> Result<void> {
      ++calls;
      return {};
    });
    // Readers are values: one made on CPU 0, used from a thread bound to no CPU.
    auto r = space->reader(0x10000, 8);
    auto w = space->writer(0x10000, 8);
    REQUIRE(r.has_value());
    const auto before = fault_stats();
    std::optional<Error> read_error, write_error, reader_error;
    std::thread t([&] {
      auto rr = *r;
      read_error = error_of(rr.read_val<std::uint64_t>());
      auto ww = *w;
      write_error = error_of(ww.write_val<std::uint64_t>(1));
      reader_error = error_of(space->reader(0x10000, 8));
    });
    t.join();
    CHECK(read_error == Error::PageFault);
    CHECK(write_error == Error::PageFault);
    CHECK(reader_error == Error::AccessDenied);
    CHECK(calls == 0);
    CHECK(fault_stats().refused == before.refused + 2);
    CHECK(user_u64(*space, 0x10000) == pattern_u64(0x10000));
  }

  // ---- ACCESSED and DIRTY ----

  TEST_CASE_TEMPLATE("accessed_and_dirty_bits_follow_reads_and_writes", B, PreMapped, DemandFaulted) {
    UserMemory<B> mem;
    const VmSpace& s = mem.space();
    mem.add_standard_layout();
    auto flags_at = [&](Vaddr va) {
      auto p = pte_prop(s, va);
      REQUIRE(p.has_value());
      return p->flags;
    };
    if constexpr (!B::kDemand) {
      CHECK_FALSE(has(flags_at(P(0)), PageFlags::ACCESSED));
      CHECK_FALSE(has(flags_at(P(0)), PageFlags::DIRTY));
    }
    (void)user_u64(s, P(0));
    CHECK(has(flags_at(P(0)), PageFlags::ACCESSED));
    CHECK_FALSE(has(flags_at(P(0)), PageFlags::DIRTY));
    // A write after a read (whose TLB entry was not writable) walks again and sets DIRTY.
    REQUIRE(write_u64(s, P(0) + 8, 5).has_value());
    CHECK(has(flags_at(P(0)), PageFlags::DIRTY));
    // A write first sets both.
    REQUIRE(write_u64(s, P(3), 5).has_value());
    CHECK(has(flags_at(P(3)), PageFlags::ACCESSED));
    CHECK(has(flags_at(P(3)), PageFlags::DIRTY));
    // A failed write sets nothing.
    CHECK(error_of(write_u64(s, P(4), 1)) == Error::PageFault);
    if constexpr (!B::kDemand) CHECK_FALSE(has(flags_at(P(4)), PageFlags::ACCESSED));
    // Page aging: clear A/D, flush, and the next read sets ACCESSED again (but not DIRTY).
    {
      auto g = disable_preempt();
      auto c = s.cursor_mut(g, {P(0), P(1)});
      auto r = c->protect_next(kP, [](PageFlags& f, CachePolicy&) { f = f & ~(PageFlags::ACCESSED | PageFlags::DIRTY); });
      REQUIRE(r.has_value());
      CHECK_FALSE(has(flags_at(P(0)), PageFlags::ACCESSED));
      // Without a flush the cached entry hides the access (as on hardware).
      (void)user_u64(s, P(0));
      CHECK_FALSE(has(flags_at(P(0)), PageFlags::ACCESSED));
      c->flusher().issue_tlb_flush(TlbFlushOp::for_single(P(0)));
      c->flusher().dispatch_tlb_flush();
    }
    (void)user_u64(s, P(0));
    CHECK(has(flags_at(P(0)), PageFlags::ACCESSED));
    CHECK_FALSE(has(flags_at(P(0)), PageFlags::DIRTY));
    CHECK(has(flags_at(P(0)), PageFlags::W));
  }

  TEST_CASE_TEMPLATE("overlapping_readers_and_writers_are_allowed", B, PreMapped, DemandFaulted) {
    // docs/spec_cases.md case 48: vostd's registry refuses touching or overlapping writers and a
    // reader inside a writer's range. Like OSTD's code, VmSpace keeps no registry: such views
    // coexist, and writes through one are visible through the others.
    UserMemory<B> mem;
    const VmSpace& s = mem.space();
    mem.add_standard_layout();
    auto w1 = s.writer(P(8), kP);
    auto w2 = s.writer(P(8) + kP, kP);  // touching
    auto w3 = s.writer(P(8) + 8, 16);   // inside w1
    auto r = s.reader(P(8), 2 * kP);
    REQUIRE((w1 && w2 && w3 && r));
    REQUIRE(w1->write_val<std::uint64_t>(1).has_value());
    REQUIRE(w3->write_val<std::uint64_t>(3).has_value());
    REQUIRE(w2->write_val<std::uint64_t>(2).has_value());
    CHECK(r->read_val<std::uint64_t>().value() == 1);
    CHECK(r->read_val<std::uint64_t>().value() == 3);
    REQUIRE(r->skip(kP - 16).has_value());
    CHECK(r->read_val<std::uint64_t>().value() == 2);
  }
}
