// Per-thread cursor bookkeeping (internal/node_lock.hpp): a thread holds cursors on at most
// kMaxTablesWithCursors page tables at once; a further table fails with TooManyTables and
// nothing stays locked; released slots are reused; more cursors on a table already held use
// its slot.
#include <doctest/doctest.h>

#include <vector>

#include <vmspace/kernel_page_table.hpp>
#include <vmspace/page_table.hpp>

#include "result_check.hpp"

using namespace vmspace;
using vmspace::test::error_of;

namespace {

constexpr VaRange kPage{0x1000, 0x2000};
constexpr VaRange kOtherPage{0x200000, 0x201000};

std::vector<PageTable<UserPtConfig>> make_tables(std::size_t n) {
  std::vector<PageTable<UserPtConfig>> tables;
  for (std::size_t i = 0; i < n; ++i) {
    auto pt = create_user_page_table(kernel_page_table());
    REQUIRE(pt.has_value());
    tables.push_back(std::move(*pt));
  }
  return tables;
}

}  // namespace

TEST_SUITE("unit") {
  TEST_CASE("cursor_on_one_table_too_many_fails_with_too_many_tables") {
    auto tables = make_tables(vmspace::internal::kMaxTablesWithCursors + 1);
    auto guard = disable_preempt();
    std::vector<Cursor<UserPtConfig>> cursors;
    for (std::size_t i = 0; i < vmspace::internal::kMaxTablesWithCursors; ++i) {
      auto c = tables[i].cursor(guard, kPage);
      REQUIRE(c.has_value());
      cursors.push_back(std::move(*c));
    }
    auto extra = tables.back().cursor(guard, kPage);
    CHECK(error_of(extra) == PageTableError::TooManyTables);
    // A second cursor on a table already held uses that table's slot.
    {
      auto second = tables.front().cursor(guard, kOtherPage);
      CHECK(second.has_value());
    }
    // Once a slot is free, the refused table can be locked: the refusal left nothing locked
    // (a node still held by this thread would make try_cursor fail with WouldDeadlock).
    cursors.pop_back();
    auto retry = tables.back().try_cursor(guard, kPage);
    CHECK(retry.has_value());
  }

  TEST_CASE("cursor_table_slots_are_reused_after_release") {
    auto tables = make_tables(2 * vmspace::internal::kMaxTablesWithCursors);
    auto guard = disable_preempt();
    for (int round = 0; round < 2; ++round) {
      std::vector<Cursor<UserPtConfig>> cursors;
      for (std::size_t i = 0; i < vmspace::internal::kMaxTablesWithCursors; ++i) {
        auto& pt = tables[round * vmspace::internal::kMaxTablesWithCursors + i];
        auto c = pt.cursor(guard, kPage);
        REQUIRE(c.has_value());
        cursors.push_back(std::move(*c));
      }
      // Releasing one slot frees it for a table not seen before.
      cursors.erase(cursors.begin() + 3);
      auto& fresh = tables[(1 - round) * vmspace::internal::kMaxTablesWithCursors];
      auto c = fresh.cursor(guard, kPage);
      CHECK(c.has_value());
    }
    // With every cursor gone, the first table can be locked again.
    CHECK(tables.front().try_cursor(guard, kPage).has_value());
  }
}
