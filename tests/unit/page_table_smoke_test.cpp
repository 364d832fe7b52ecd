#include <doctest/doctest.h>

#include <vmspace/frame_allocator.hpp>
#include <vmspace/kernel_page_table.hpp>

using namespace vmspace;

TEST_SUITE("unit") {
  TEST_CASE("smoke_user_pt_map_query_unmap") {
    auto pt = create_user_page_table(kernel_page_table());
    REQUIRE(pt.has_value());
    auto frame = FrameAllocOptions().alloc_frame();
    REQUIRE(frame.has_value());
    const Paddr fpa = frame->paddr();
    const auto prop = PageProperty::new_user(PageFlags::RW, CachePolicy::Writeback);
    {
      auto g = disable_preempt();
      auto c = pt->cursor_mut(g, {0x1000, 0x2000});
      REQUIRE(c.has_value());
      auto q = c->query();
      REQUIRE(q.has_value());
      CHECK(q->range == VaRange{0x1000, 0x2000});
      CHECK_FALSE(q->item.has_value());
      UserItem item = UserItem::tracked(UFrame(*frame), prop);
      auto m = c->map(std::move(item));
      REQUIRE(m.has_value());
      CHECK(c->virt_addr() == 0x2000);
      CHECK(frame->reference_count() == 2);
    }
    auto w = pt->page_walk(0x1234);
    REQUIRE(w.has_value());
    CHECK(w->first == fpa + 0x234);
    CHECK(w->second == prop);
    {
      auto g = disable_preempt();
      auto c = pt->cursor_mut(g, {0x1000, 0x2000});
      REQUIRE(c.has_value());
      auto q = c->query();
      REQUIRE(q->item.has_value());
      CHECK(q->item->paddr == fpa);
      CHECK(q->item->tracked);
      auto again = c->map(UserItem::tracked(UFrame(*frame), prop));
      CHECK(again.error() == PageTableError::AlreadyMapped);
      auto frag = c->take_next(0x1000);
      REQUIRE(frag.has_value());
      REQUIRE(frag->has_value());
      CHECK(std::holds_alternative<MappedFrag<UserPtConfig>>(**frag));
    }
    rcu_barrier();
    CHECK(frame->reference_count() == 1);
    CHECK_FALSE(pt->page_walk(0x1234).has_value());
    // The kernel half is shared.
    CHECK(pt->page_walk(kLinearMappingBaseVaddr + fpa).has_value());
  }

  TEST_CASE("smoke_huge_split_and_overlap") {
    auto pt = create_user_page_table(kernel_page_table());
    REQUIRE(pt.has_value());
    auto seg = FrameAllocOptions().alloc_segment_with(512, [](Paddr) { return NoMeta{}; });
    REQUIRE(seg.has_value());
    // 2 MiB alignment is not guaranteed by alloc_segment; allocate an aligned one.
    auto pa = global_frame_allocator().alloc(FrameLayout{2u << 20, 2u << 20});
    REQUIRE(pa.has_value());
    auto huge = Segment<NoMeta>::from_unused(PaRange{*pa, *pa + (2u << 20)}, [](Paddr) { return NoMeta{}; });
    REQUIRE(huge.has_value());
    const auto prop = PageProperty::new_user(PageFlags::RW, CachePolicy::Writeback);
    {
      auto g = disable_preempt();
      auto c = pt->cursor_mut(g, {2u << 20, 4u << 20});
      REQUIRE(c.has_value());
      CHECK(c->guard_level() == 2);
      REQUIRE(c->map(UserItem::tracked(USegment(*huge), prop)).has_value());
    }
    auto w = pt->page_walk((2u << 20) + 0x5123);
    REQUIRE(w.has_value());
    CHECK(w->first == *pa + 0x5123);
    {
      auto g = disable_preempt();
      auto c = pt->cursor_mut(g, {(2u << 20) + 0x5000, (2u << 20) + 0x6000});
      REQUIRE(c.has_value());
      auto frag = c->take_next(0x1000);
      REQUIRE(frag.has_value());
      REQUIRE(frag->has_value());
      auto& m = std::get<MappedFrag<UserPtConfig>>(**frag);
      CHECK(m.va == (2u << 20) + 0x5000);
      CHECK(m.level == 1);
    }
    rcu_barrier();
    CHECK_FALSE(pt->page_walk((2u << 20) + 0x5000).has_value());
    CHECK(pt->page_walk((2u << 20) + 0x4000)->first == *pa + 0x4000);
    CHECK(pt->page_walk((2u << 20) + 0x6000)->first == *pa + 0x6000);
    CHECK(huge->frame_at(5)->reference_count() == 1);
    CHECK(huge->frame_at(6)->reference_count() == 2);
  }
}
