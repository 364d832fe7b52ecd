// Fallible I/O (fallible_io_util.hpp): boundary tables and the reader/writer success conditions
// (docs/spec_cases.md case 37).
#include "fallible_io_util.hpp"

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
        {kMaxUserspaceVaddr, 1},                  // the reserved top page
        {UINT64_MAX - 10, 20},                    // wraps
        {UINT64_MAX, 1},                          // wraps to 0
        {0x1000, std::size_t{0x7fff'ffff'e001}},  // one byte over (spec case 37)
        {kKernelBaseVaddr, 8},                    // kernel half
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
}
