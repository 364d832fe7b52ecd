// VmSpace (vm_space_test_util.hpp): argument errors, returned where OSTD panics.
#include "vm_space_test_util.hpp"

TEST_SUITE("unit") {
  // ---- argument errors ----

  TEST_CASE("map_past_the_range_end_is_access_denied") {
    auto space = new_space();
    auto g = disable_preempt();
    auto c = space->cursor_mut(g, {0x1000, 0x2000});
    REQUIRE(c.has_value());
    REQUIRE(c->map(new_frame(), kUserRw).has_value());
    UFrame f = new_frame();
    CHECK(error_of(c->map(std::move(f), kUserRw)) == Error::AccessDenied);
    CHECK(last_page_table_error() == PageTableError::InvalidVaddr);
    CHECK_FALSE(f.is_empty());
    CHECK(f.reference_count() == 1);
    // query of the exhausted cursor, too.
    CHECK(error_of(c->query()) == Error::AccessDenied);
    CHECK(last_page_table_error() == PageTableError::InvalidVaddr);
  }

  TEST_CASE("write_protected_cache_policy_is_invalid_args") {
    // OSTD panics: x86 leaf PTEs cannot encode WriteProtected.
    auto space = new_space();
    auto g = disable_preempt();
    auto c = space->cursor_mut(g, {0x1000, 0x2000});
    REQUIRE(c.has_value());
    UFrame f = new_frame();
    const Paddr pa = f.paddr();
    auto r =
        c->map(std::move(f), PageProperty::new_user(PageFlags::RW, CachePolicy::WriteProtected));
    CHECK(error_of(r) == Error::InvalidArgs);
    CHECK(last_page_table_error() == PageTableError::InvalidItem);
    REQUIRE_FALSE(f.is_empty());
    CHECK(f.paddr() == pa);
    CHECK(f.reference_count() == 1);
    CHECK(c->virt_addr() == 0x1000);
    auto q = c->query();
    REQUIRE(q.has_value());
    CHECK_FALSE(q->second.has_value());
  }

  TEST_CASE("bad_cursor_ranges_are_access_denied_with_the_finer_cause") {
    auto space = new_space();
    struct Row {
      VaRange range;
      std::optional<PageTableError> cause;  // nullopt: accepted
    };
    const Vaddr top = Vaddr{1} << 47;
    const std::array<Row, 11> rows = {{
        {{0x1000, 0x1000}, PageTableError::InvalidVaddrRange},  // empty
        {{0, 0}, PageTableError::InvalidVaddrRange},            // empty at 0 (no end - 1 underflow)
        {{0x1000, 0}, PageTableError::InvalidVaddrRange},       // end 0
        {{0x2000, 0x1000}, PageTableError::InvalidVaddrRange},  // reversed
        {{0x1001, 0x1000}, PageTableError::InvalidVaddrRange},  // reversed beats unaligned
        {{0x1001, 0x2000}, PageTableError::UnalignedVaddr},
        {{0x1000, 0x2001}, PageTableError::UnalignedVaddr},
        {{0, top + 0x1000}, PageTableError::InvalidVaddrRange},  // past user space
        {{kKernelBaseVaddr, kKernelBaseVaddr + 0x1000}, PageTableError::InvalidVaddrRange},
        {{top - 0x1000, top}, std::nullopt},  // the last user page
        {{0, top}, std::nullopt},             // all of user space
    }};
    for (const Row& row : rows) {
      CAPTURE(row.range);
      auto g = disable_preempt();
      auto c = space->cursor(g, row.range);
      auto cm = space->try_cursor_mut(g, row.range);
      if (row.cause) {
        CHECK(error_of(c) == Error::AccessDenied);
        CHECK(last_page_table_error() == row.cause);
        CHECK(error_of(cm) == Error::AccessDenied);
        CHECK(last_page_table_error() == row.cause);
      } else {
        CHECK(c.has_value());
        CHECK(error_of(cm) == Error::WouldDeadlock);  // c holds it
      }
    }
  }

  TEST_CASE("jump_find_next_and_zero_lengths") {
    auto space = new_space();
    map_page(*space, 0x3000);
    auto g = disable_preempt();
    auto c = space->cursor_mut(g, {0x1000, 0x5000});
    REQUIRE(c.has_value());
    CHECK(error_of(c->jump(0x1800)) == Error::InvalidArgs);
    CHECK(error_of(c->jump(0x5000)) == Error::AccessDenied);  // the range end is outside
    CHECK(last_page_table_error() == PageTableError::InvalidVaddr);
    CHECK(error_of(c->jump(0)) == Error::AccessDenied);
    CHECK(c->virt_addr() == 0x1000);
    // Zero lengths change nothing (docs/spec_cases.md case 50).
    auto none = c->find_next(0);
    REQUIRE(none.has_value());
    CHECK_FALSE(none->has_value());
    CHECK(c->virt_addr() == 0x1000);
    auto zero = c->unmap(0);
    REQUIRE(zero.has_value());
    CHECK(*zero == 0);
    CHECK(c->virt_addr() == 0x1000);
    CHECK(error_of(c->find_next(0x800)) == Error::InvalidArgs);
    CHECK(error_of(c->find_next(0x5000)) == Error::InvalidArgs);
    auto next = c->find_next(0x4000);
    REQUIRE(next.has_value());
    CHECK(*next == std::optional<Vaddr>(0x3000));
    CHECK(c->virt_addr() == 0x3000);
    REQUIRE(c->jump(0x4000).has_value());
    auto after = c->find_next(0x1000);
    REQUIRE(after.has_value());
    CHECK_FALSE(after->has_value());
    CHECK(c->virt_addr() == 0x5000);
    CHECK(pte_prop(*space, 0x3000).has_value());
  }

  TEST_CASE("page_zero_is_an_ordinary_user_page") {
    // Our decision for vaddr == 0 (vm_space.hpp): mappable, readable, writable.
    auto space = new_space();
    ActiveOn active(space, cpu(0));
    map_page(*space, 0);
    REQUIRE(write_u64(*space, 0, 42).has_value());
    CHECK(read_u64(*space, 0).value() == 42);
  }
}
