// OSTD's 33 page-table scenarios (ostd/src/mm/page_table/test.rs), ported to vmspace. Scenarios on
// OSTD's raw-item TestPtConfig run for every PTE format.
//
// Where OSTD expects a panic (`should_panic`) we return errors: each such port asserts the
// exact PageTableError and that nothing changed. OSTD's boot page table has no counterpart
// here (our tables never run before frame metadata exists), so the four boot_pt scenarios run
// on a kernel-config table made by new_kernel_page_table(), through cursors and page_walk.
// The four PTE-representation scenarios (zeroed/cast_*) are ported PTE-level, under the same
// names, in pte_test.cpp; here they run through a page table: the words the table writes into
// its nodes are checked to be exactly those representations.
#include <doctest/doctest.h>

#include <cstdint>
#include <optional>
#include <vector>

#include <vmspace/frame_allocator.hpp>
#include <vmspace/kernel_page_table.hpp>
#include <vmspace/page_table.hpp>
#include <vmspace/user_pt_config.hpp>

#include "page_properties.hpp"
#include "pt_check.hpp"
#include "result_check.hpp"
#include "test_pt_config.hpp"

using namespace vmspace;
using namespace vmspace::test;

namespace {

// A user table with one fresh frame mapped RW/WB at range.start (OSTD's
// create_user_pt_mapped_at). Errors: those of cursor creation and map.
Result<PageTable<UserPtConfig>, PageTableError> create_user_pt_mapped_at(VaRange range) {
  auto pt = PageTable<UserPtConfig>::empty();
  REQUIRE(pt.has_value());
  auto frame = FrameAllocOptions().alloc_frame();
  REQUIRE(frame.has_value());
  auto guard = disable_preempt();
  {
    auto cursor = pt->cursor_mut(guard, range);
    if (!cursor) return err(cursor.error());
    auto r = cursor->map(UserItem::tracked(UFrame(std::move(*frame)), rw_wb()));
    if (!r) return err(r.error());
  }
  return std::move(*pt);
}

UFrame alloc_uframe() {
  auto f = FrameAllocOptions().alloc_frame();
  REQUIRE(f.has_value());
  return UFrame(std::move(*f));
}

constexpr Vaddr kFirstMapAddr = k4K * 7;
constexpr Vaddr kSecondMapAddr = k4K * 512 * 512;

// OSTD's setup_page_table_with_two_frames.
struct TwoFrames {
  PageTable<UserPtConfig> pt;
  UFrame first;
  UFrame second;
};
TwoFrames setup_page_table_with_two_frames() {
  auto pt = PageTable<UserPtConfig>::empty();
  REQUIRE(pt.has_value());
  TwoFrames t{std::move(*pt), alloc_uframe(), alloc_uframe()};
  auto guard = disable_preempt();
  {
    auto c = t.pt.cursor_mut(guard, {kFirstMapAddr, kFirstMapAddr + k4K});
    REQUIRE(c.has_value());
    REQUIRE(c->map(UserItem::tracked(t.first, rw_wb())).has_value());
  }
  {
    auto c = t.pt.cursor_mut(guard, {kSecondMapAddr, kSecondMapAddr + k4K});
    REQUIRE(c.has_value());
    REQUIRE(c->map(UserItem::tracked(t.second, rw_wb())).has_value());
  }
  return t;
}

using KF = KernelPtConfig::Pte;
constexpr Vaddr kKernelVa = kKernelBaseVaddr;

// The boot page table's map_base_page / protect_base_page, on a kernel-config table.
Result<void, PageTableError> map_kernel_base_page(const PageTable<KernelPtConfig>& pt, Vaddr va, Paddr pa,
                                                  PageProperty prop) {
  auto guard = disable_preempt();
  auto c = pt.cursor_mut(guard, {va, va + k4K});
  if (!c) return err(c.error());
  return c->map(KernelItem::untracked(pa, 1, prop));
}
template <class Op>
std::optional<VaRange> protect_kernel_base_page(const PageTable<KernelPtConfig>& pt, Vaddr va, Op op) {
  auto guard = disable_preempt();
  auto c = pt.cursor_mut(guard, {va, va + k4K});
  REQUIRE(c.has_value());
  auto r = c->protect_next(k4K, op);
  REQUIRE(r.has_value());
  return *r;
}

}  // namespace

TEST_SUITE("unit") {
  // ---- test_utils ----

  TEST_CASE("test_subset_iter") {
    CHECK(subsets(0b1011) == std::vector<std::uint8_t>{0b1011, 0b1010, 0b1001, 0b1000, 0b0011,
                                                       0b0010, 0b0001, 0b0000});
  }

  // ---- create_page_table ----

  TEST_CASE("create_user_page_table") {
    auto kernel = new_kernel_page_table();
    REQUIRE(kernel.has_value());
    const detail::NodeView<KernelPtConfig> kroot{kernel->root_paddr()};
    {
      auto user = create_user_page_table(*kernel);
      REQUIRE(user.has_value());
      const detail::NodeView<UserPtConfig> uroot{user->root_paddr()};
      for (std::size_t i = 256; i < 512; ++i) {
        const PteScalar k = KF::decode(kroot.load_acquire(i), 4);
        const PteScalar u = KF::decode(uroot.load_acquire(i), 4);
        REQUIRE(k.is_page_table());
        REQUIRE(u.is_page_table());
        CHECK(detail::NodeView<KernelPtConfig>{k.paddr}.meta().level == 3);
        CHECK(u.paddr == k.paddr);
      }
      for (std::size_t i = 0; i < 256; ++i) CHECK(uroot.load_acquire(i) == 0);
      // Borrowed entries are neither counted nor referenced.
      CHECK(uroot.meta().nr_children == 0);
      VMS_CHECK_PT_INVARIANTS(*user);
    }
    // Dropping the user table leaves the shared nodes alone.
    for (std::size_t i = 256; i < 512; ++i) {
      const Paddr shared = KF::paddr(kroot.load_acquire(i), 4);
      CHECK(meta_slot(shared)->ref_count_ref().load() == 1);
    }
    VMS_CHECK_PT_INVARIANTS(*kernel);
  }

  TEST_CASE("new_kernel_page_table") {
    auto kernel = new_kernel_page_table();
    REQUIRE(kernel.has_value());
    const detail::NodeView<KernelPtConfig> root{kernel->root_paddr()};
    for (std::size_t i = 0; i < 512; ++i) {
      const PteScalar s = KF::decode(root.load_acquire(i), 4);
      if (i < 256) {
        CHECK(s.is_absent());
      } else {
        REQUIRE(s.is_page_table());
        CHECK(detail::NodeView<KernelPtConfig>{s.paddr}.meta().level == 3);
        CHECK(detail::NodeView<KernelPtConfig>{s.paddr}.meta().nr_children == 0);
      }
    }
    CHECK(root.meta().nr_children == 256);
    const auto c = census(*kernel);
    CHECK(c.violations.empty());
    CHECK(c.nodes == 257);
  }

  // ---- range_checks ----

  TEST_CASE("range_check") {
    auto pt = PageTable<UserPtConfig>::empty();
    REQUIRE(pt.has_value());
    auto guard = disable_preempt();
    CHECK(pt->cursor_mut(guard, {0, k4K}).has_value());
    CHECK(error_of(pt->cursor_mut(guard, {0, k4K + 1})) == PageTableError::UnalignedVaddr);
    CHECK(error_of(pt->cursor_mut(guard, {0, 0})) == PageTableError::InvalidVaddrRange);
    CHECK(error_of(pt->cursor_mut(guard, {k4K, 0})) == PageTableError::InvalidVaddrRange);
    CHECK(error_of(pt->cursor_mut(guard, {kLinearMappingBaseVaddr, kLinearMappingBaseVaddr + k4K})) ==
          PageTableError::InvalidVaddrRange);
  }

  TEST_CASE("boundary_conditions") {
    auto pt = PageTable<UserPtConfig>::empty();
    REQUIRE(pt.has_value());
    auto guard = disable_preempt();
    CHECK(error_of(pt->cursor_mut(guard, {0, 0})) == PageTableError::InvalidVaddrRange);
    CHECK(error_of(pt->cursor_mut(guard, {0xffff'8000'0000'0000, 0xffff'8000'0001'0000})) ==
          PageTableError::InvalidVaddrRange);
    CHECK(error_of(pt->cursor_mut(guard, {1, k4K + 1})) == PageTableError::UnalignedVaddr);
    // None of the refused requests created a node.
    CHECK(census(*pt).nodes == 1);
  }

  TEST_CASE("start_boundary_mapping") {
    auto pt = create_user_pt_mapped_at({0, k4K});
    REQUIRE(pt.has_value());
    CHECK(pt->page_walk(0).has_value());
    CHECK(pt->page_walk(k4K - 1).has_value());
    CHECK_FALSE(pt->page_walk(k4K).has_value());
    VMS_CHECK_PT_INVARIANTS(*pt);
  }

  TEST_CASE("end_boundary_mapping") {
    auto pt = create_user_pt_mapped_at({kMaxUserspaceVaddr - k4K, kMaxUserspaceVaddr});
    REQUIRE(pt.has_value());
    CHECK(pt->page_walk(kMaxUserspaceVaddr - k4K).has_value());
    CHECK(pt->page_walk(kMaxUserspaceVaddr - 1).has_value());
    CHECK_FALSE(pt->page_walk(kMaxUserspaceVaddr - k4K - 1).has_value());
    VMS_CHECK_PT_INVARIANTS(*pt);
  }

  TEST_CASE("overflow_boundary_mapping") {
    // OSTD: should_panic "failed to create the cursor". Here cursor creation fails.
    const VaRange range{kMaxUserspaceVaddr - k4K / 2, kMaxUserspaceVaddr + k4K / 2};
    CHECK(error_of(create_user_pt_mapped_at(range)) == PageTableError::UnalignedVaddr);
  }

  // ---- page_properties ----

  TEST_CASE("map_preserves_page_property") {
    for (const PageProperty& prop : all_page_properties()) {
      CAPTURE(prop);
      auto pt = PageTable<UserPtConfig>::empty();
      REQUIRE(pt.has_value());
      {
        auto guard = disable_preempt();
        auto c = pt->cursor_mut(guard, {k4K, 2 * k4K});
        REQUIRE(c.has_value());
        REQUIRE(c->map(UserItem::tracked(alloc_uframe(), prop)).has_value());
      }
      auto walked = pt->page_walk(k4K + 100);
      REQUIRE(walked.has_value());
      // A tracked user item never carries AVAIL1, whatever the caller passed.
      PageProperty expected = prop;
      expected.priv_flags &= ~PrivilegedPageFlags::AVAIL1;
      CHECK(walked->second == expected);
    }
  }

  // ---- arch_pte_impls, through a page table ----

  TEST_CASE_TEMPLATE("zeroed_pte_is_absent_pte", P, VMS_ALL_PTE_FORMATS) {
    using C = HugeTestPtConfig<P>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    auto guard = disable_preempt();
    // Creating the cursor allocates one node per level down to the leaf table.
    auto c = pt->cursor(guard, {k4K, 2 * k4K});
    REQUIRE(c.has_value());
    for (PagingLevel level = kNrLevelsOf<C>; level >= 1; --level) {
      const Paddr node = node_at(*pt, k4K, level);
      REQUIRE(node != 0);
      const detail::NodeView<C> view{node};
      for (std::size_t i = 0; i < 512; ++i) {
        const std::uint64_t raw = view.load_acquire(i);
        if (level > 1 && i == pte_index<ConstsOf<C>>(k4K, level)) continue;  // the path
        CHECK(raw == 0);
        for (PagingLevel l = 1; l <= kNrLevelsOf<C>; ++l) CHECK(P::decode(raw, l).is_absent());
      }
    }
    auto q = c->query();
    REQUIRE(q.has_value());
    CHECK_FALSE(q->item.has_value());
  }

  TEST_CASE_TEMPLATE("cast_frame_pte_preserves_repr", P, VMS_ALL_PTE_FORMATS) {
    using C = HugeTestPtConfig<P>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    const Paddr pa = 0xff'c000'0000;  // OSTD's address, aligned for every level up to 1 GiB
    for (PagingLevel level = 1; level <= C::kHighestTranslationLevel; ++level) {
      const Vaddr va = psize<C>(level) * 3;
      for (const PageProperty& prop : all_page_properties()) {
        if (!has(prop.flags, PageFlags::R) || !P::can_encode(prop)) continue;
        CAPTURE(level);
        CAPTURE(prop);
        const RawItem item{pa, level, prop};
        auto guard = disable_preempt();
        auto c = pt->cursor_mut(guard, {va, va + psize<C>(level)});
        REQUIRE(c.has_value());
        REQUIRE(c->map(RawItem(item)).has_value());
        // The word in the node is exactly the format's encoding of the item.
        const Paddr node = node_at(*pt, va, level);
        REQUIRE(node != 0);
        const std::uint64_t raw = detail::NodeView<C>{node}.load_acquire(pte_index<ConstsOf<C>>(va, level));
        CHECK(raw == P::encode(PteScalar::mapped(pa, prop), level));
        CHECK(P::decode(raw, level) == PteScalar::mapped(pa, prop));
        REQUIRE(c->jump(va).has_value());
        auto q = c->query();
        REQUIRE(q.has_value());
        REQUIRE(q->item.has_value());
        CHECK(*q->item == item);
        auto f = c->take_next(psize<C>(level));
        REQUIRE(f.has_value());
        const auto* m = as_mapped<C>(*f);
        REQUIRE(m != nullptr);
        CHECK(*m->item == item);
      }
    }
  }

  TEST_CASE_TEMPLATE("cast_pt_pte_preserves_repr", P, VMS_ALL_PTE_FORMATS) {
    using C = HugeTestPtConfig<P>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    REQUIRE(map_one(*pt, k4K, RawItem{0x5000, 1, rw_wb()}).has_value());
    // Every intermediate entry on the path is PageTable(child, None) and the child's level
    // is one less.
    for (PagingLevel level = kNrLevelsOf<C>; level >= 2; --level) {
      const Paddr node = node_at(*pt, k4K, level);
      const Paddr child = node_at(*pt, k4K, static_cast<PagingLevel>(level - 1));
      REQUIRE(node != 0);
      REQUIRE(child != 0);
      const std::uint64_t raw = detail::NodeView<C>{node}.load_acquire(pte_index<ConstsOf<C>>(k4K, level));
      CHECK(P::decode(raw, level) == PteScalar::page_table(child, PageTableFlags::None));
      CHECK(raw == P::encode(PteScalar::page_table(child, PageTableFlags::None), level));
      CHECK(detail::NodeView<C>{child}.meta().level == level - 1);
    }
    VMS_CHECK_PT_INVARIANTS(*pt);
  }

  TEST_CASE_TEMPLATE("cast_absent_pte_preserves_repr", P, VMS_ALL_PTE_FORMATS) {
    using C = HugeTestPtConfig<P>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    REQUIRE(map_one(*pt, k2M, RawItem{k2M * 9, 2, rw_wb()}).has_value());
    REQUIRE(map_one(*pt, k4K, RawItem{0x5000, 1, rw_wb()}).has_value());
    CHECK(take_all(*pt, {k4K, 2 * k4K}).size() == 1);
    CHECK(take_all(*pt, {k2M, 2 * k2M}).size() == 1);
    // Removed leaves leave all-zero words, which decode as Absent at every level.
    const Paddr leaf_table = node_at(*pt, k4K, 1);
    const Paddr level2 = node_at(*pt, k2M, 2);
    REQUIRE(leaf_table != 0);
    REQUIRE(level2 != 0);
    const std::uint64_t w1 = detail::NodeView<C>{leaf_table}.load_acquire(1);
    const std::uint64_t w2 = detail::NodeView<C>{level2}.load_acquire(1);
    CHECK(w1 == 0);
    CHECK(w2 == 0);
    CHECK(P::encode(PteScalar::absent(), 1) == 0);
    for (PagingLevel l = 1; l <= kNrLevelsOf<C>; ++l) {
      CHECK(P::decode(w1, l).is_absent());
      CHECK(P::decode(w2, l).is_absent());
    }
    VMS_CHECK_PT_INVARIANTS(*pt);
  }

  // ---- overlapping_mappings ----

  TEST_CASE_TEMPLATE("overlapping_mappings", P, VMS_ALL_PTE_FORMATS) {
    // OSTD: should_panic "mapping over an already mapped page". Here: AlreadyMapped, and the
    // first mapping stays.
    using C = HugeTestPtConfig<P>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    const RawItem first{k4K * 100, 1, rw_wb()};
    REQUIRE(map_one(*pt, k4K, first).has_value());
    {
      auto guard = disable_preempt();
      auto c = pt->cursor_mut(guard, {k4K, k4K * 3});
      REQUIRE(c.has_value());
      CHECK(error_of(c->map(RawItem{k4K * 200, 1, rw_wb()})) == PageTableError::AlreadyMapped);
      CHECK(c->virt_addr() == k4K);
      auto q = c->query();
      REQUIRE(q.has_value());
      REQUIRE(q->item.has_value());
      CHECK(*q->item == first);
    }
    auto walked = pt->page_walk(k4K + 10);
    REQUIRE(walked.has_value());
    CHECK(walked->first == k4K * 100 + 10);
    CHECK_FALSE(pt->page_walk(2 * k4K).has_value());
    VMS_CHECK_PT_INVARIANTS(*pt);
  }

  TEST_CASE_TEMPLATE("unaligned_map", P, VMS_ALL_PTE_FORMATS) {
    // OSTD: should_panic "cursor virtual address not aligned for mapping" (a level-2 item at
    // 4 KiB). Here: InvalidItem, nothing mapped, the cursor still usable.
    using C = HugeTestPtConfig<P>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    auto guard = disable_preempt();
    {
      auto c = pt->cursor_mut(guard, {k4K, k2M + k4K});
      REQUIRE(c.has_value());
      CHECK(c->guard_level() == 2);
      CHECK(error_of(c->map(RawItem{0, 2, rw_wb()})) == PageTableError::InvalidItem);
      CHECK(c->virt_addr() == k4K);
      CHECK_FALSE(pt->page_walk(k4K).has_value());
      REQUIRE(c->map(RawItem{k4K * 100, 1, rw_wb()}).has_value());
    }
    CHECK(pt->page_walk(k4K)->first == k4K * 100);
    // OSTD's older variant: an unaligned cursor range never gets that far.
    CHECK(error_of(pt->cursor_mut(guard, {k4K + 512, 2 * k4K + 512})) == PageTableError::UnalignedVaddr);
  }

  // ---- navigation ----

  TEST_CASE("jump") {
    auto t = setup_page_table_with_two_frames();
    auto guard = disable_preempt();
    auto c = t.pt.cursor_mut(guard, {0, kSecondMapAddr + k4K});
    REQUIRE(c.has_value());
    CHECK(c->virt_addr() == 0);
    REQUIRE(c->query().has_value());
    CHECK_FALSE(c->query()->item.has_value());

    REQUIRE(c->jump(kFirstMapAddr).has_value());
    CHECK(c->virt_addr() == kFirstMapAddr);
    auto q = c->query();
    REQUIRE(q.has_value());
    CHECK(q->range == VaRange{kFirstMapAddr, kFirstMapAddr + k4K});
    REQUIRE(q->item.has_value());
    CHECK(q->item->tracked);
    CHECK(q->item->paddr == t.first.paddr());
    CHECK(q->item->level == 1);
    CHECK(q->item->prop == rw_wb());
  }

  TEST_CASE_TEMPLATE("jump_from_end_and_query_huge_middle", P, VMS_ALL_PTE_FORMATS) {
    using C = HugeTestPtConfig<P>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    const VaRange range{0, 2 * k2M};  // locks at level 2
    auto guard = disable_preempt();
    auto c = pt->cursor_mut(guard, range);
    REQUIRE(c.has_value());
    CHECK(c->guard_level() == 2);
    REQUIRE(c->jump(range.end - k2M).has_value());
    REQUIRE(c->map(RawItem{0, 2, rw_wb()}).has_value());
    // The cursor is at the end of its range.
    CHECK(c->virt_addr() == range.end);
    CHECK(error_of(c->query()) == PageTableError::InvalidVaddr);
    // Jump from the end.
    REQUIRE(c->jump(range.start).has_value());
    REQUIRE(c->query().has_value());
    CHECK_FALSE(c->query()->item.has_value());
    // Query in the middle of the huge page.
    REQUIRE(c->jump(range.end - k2M / 2).has_value());
    auto q = c->query();
    REQUIRE(q.has_value());
    CHECK(q->range == VaRange{range.end - k2M, range.end});
    REQUIRE(q->item.has_value());
    CHECK(*q->item == RawItem{0, 2, rw_wb()});
  }

  TEST_CASE_TEMPLATE("jump_from_guard_level_end", P, VMS_ALL_PTE_FORMATS) {
    using C = HugeTestPtConfig<P>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    const VaRange range{k2M - k4K, k2M};
    auto guard = disable_preempt();
    auto c = pt->cursor_mut(guard, range);
    REQUIRE(c.has_value());
    CHECK(c->guard_level() == 1);
    REQUIRE(c->map(RawItem{0, 1, rw_wb()}).has_value());
    CHECK(c->virt_addr() == range.end);
    REQUIRE(c->jump(range.start).has_value());
    CHECK(c->virt_addr() == range.start);
    auto q = c->query();
    REQUIRE(q.has_value());
    REQUIRE(q->item.has_value());
    CHECK(q->item->paddr == 0);
  }

  TEST_CASE("jump_near_address_space_end") {
    auto kernel = new_kernel_page_table();
    REQUIRE(kernel.has_value());
    const Vaddr start = 0 - k2M;  // [-2 MiB, -4 KiB): the very top of the address space
    const VaRange range{start, 0 - k4K};
    const auto prop = PageProperty::new_with(PageFlags::RW, CachePolicy::Writeback, PrivilegedPageFlags::GLOBAL);
    auto guard = disable_preempt();
    auto c = kernel->cursor_mut(guard, range);
    REQUIRE(c.has_value());
    REQUIRE(c->map(KernelItem::untracked(0x7000, 1, prop)).has_value());
    CHECK(c->virt_addr() == start + k4K);
    REQUIRE(c->jump(0 - 0x100000).has_value());
    CHECK(c->virt_addr() == 0 - 0x100000);
    REQUIRE(c->jump(0 - 2 * k4K).has_value());
    CHECK(c->virt_addr() == 0 - 2 * k4K);
    REQUIRE(c->query().has_value());
    CHECK_FALSE(c->query()->item.has_value());
    CHECK(error_of(c->jump(0 - k4K)) == PageTableError::InvalidVaddr);
    REQUIRE(c->jump(start).has_value());
    auto q = c->query();
    REQUIRE(q.has_value());
    REQUIRE(q->item.has_value());
    CHECK(q->item->paddr == 0x7000);
    CHECK(q->range == VaRange{start, start + k4K});
  }

  TEST_CASE("find_next") {
    auto t = setup_page_table_with_two_frames();
    auto guard = disable_preempt();
    auto c = t.pt.cursor_mut(guard, {0, kSecondMapAddr + k4K});
    REQUIRE(c.has_value());
    CHECK(c->virt_addr() == 0);
    auto found = c->find_next(kFirstMapAddr + k4K);
    REQUIRE(found.has_value());
    CHECK(*found == std::optional<Vaddr>(kFirstMapAddr));
    CHECK(c->virt_addr() == kFirstMapAddr);

    REQUIRE(c->jump(kFirstMapAddr + k4K).has_value());
    found = c->find_next(kSecondMapAddr - kFirstMapAddr);
    REQUIRE(found.has_value());
    CHECK(*found == std::optional<Vaddr>(kSecondMapAddr));
    CHECK(c->virt_addr() == kSecondMapAddr);
  }

  TEST_CASE_TEMPLATE("find_next_keeps_va_around_barrier", P, VMS_ALL_PTE_FORMATS) {
    using C = HugeTestPtConfig<P>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    // A mapping outside the cursor's range, in the same level-2 node.
    REQUIRE(map_one(*pt, 2 * k2M, RawItem{k4K * 9, 1, rw_wb()}).has_value());
    auto guard = disable_preempt();
    auto c = pt->cursor(guard, {k2M - k4K, k2M + k4K});
    REQUIRE(c.has_value());
    auto found = c->find_next(2 * k4K);
    REQUIRE(found.has_value());
    CHECK_FALSE(found->has_value());
    // Clamped to the range end, although the absent entry there spans up to 4 MiB.
    CHECK(c->virt_addr() == k2M + k4K);
  }

  TEST_CASE("find_next_rejects_overflowing_len") {
    // OSTD: should_panic "len exceeds remaining cursor range". Here: LenOutOfRange, and the
    // cursor does not move.
    auto t = setup_page_table_with_two_frames();
    auto guard = disable_preempt();
    auto c = t.pt.cursor_mut(guard, {0, kSecondMapAddr + k4K});
    REQUIRE(c.has_value());
    REQUIRE(c->jump(kSecondMapAddr).has_value());
    CHECK(error_of(c->find_next(0 - kSecondMapAddr)) == PageTableError::LenOutOfRange);
    CHECK(c->virt_addr() == kSecondMapAddr);
    auto found = c->find_next(k4K);
    REQUIRE(found.has_value());
    CHECK(*found == std::optional<Vaddr>(kSecondMapAddr));
  }

  // ---- unmap ----

  TEST_CASE_TEMPLATE("take_next_takes_something", P, VMS_ALL_PTE_FORMATS) {
    using C = HugeTestPtConfig<P>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    const VaRange range{k4K, 2 * k4K};
    const RawItem item{k4K * 100, 1, rw_wb()};
    REQUIRE(map_one(*pt, range.start, item).has_value());
    auto guard = disable_preempt();
    auto c = pt->cursor_mut(guard, range);
    REQUIRE(c.has_value());
    auto f = c->take_next(range.size());
    REQUIRE(f.has_value());
    const auto* m = as_mapped<C>(*f);
    REQUIRE(m != nullptr);
    CHECK(m->va == range.start);
    CHECK(m->level == 1);
    CHECK(*m->item == item);
    CHECK(c->virt_addr() == range.end);
    CHECK_FALSE(pt->page_walk(range.start).has_value());
  }

  TEST_CASE_TEMPLATE("take_large_takes_subtree", P, VMS_ALL_PTE_FORMATS) {
    using C = HugeTestPtConfig<P>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    REQUIRE(map_one(*pt, k4K * 513, RawItem{k4K, 1, rw_wb()}).has_value());
    auto guard = disable_preempt();
    SUBCASE("ostd_range_detaches_the_level_2_node") {
      // OSTD expects StrayPageTable{va = 2M, len = 2M, num_frames = 1} for the cursor
      // [0, 1G): its cursor (issue #3731) roots [0, 1G) one level too low, at the level-2
      // node. Ours roots it at the level-3 node, so the fully covered level-2 node itself is
      // the first thing to detach.
      auto c = pt->cursor_mut(guard, {0, k1G});
      REQUIRE(c.has_value());
      CHECK(c->guard_level() == 3);
      auto f = c->take_next(k1G);
      REQUIRE(f.has_value());
      const auto* s = as_stray<C>(*f);
      REQUIRE(s != nullptr);
      CHECK(s->va == 0);
      CHECK(s->len == k1G);
      CHECK(s->num_frames == 1);
      CHECK(c->virt_addr() == k1G);
    }
    SUBCASE("range_rooted_at_level_2_detaches_the_leaf_table") {
      // OSTD's numbers, with a range that roots the cursor at the level-2 node.
      auto c = pt->cursor_mut(guard, {0, 3 * k2M});
      REQUIRE(c.has_value());
      CHECK(c->guard_level() == 2);
      auto f = c->take_next(3 * k2M);
      REQUIRE(f.has_value());
      const auto* s = as_stray<C>(*f);
      REQUIRE(s != nullptr);
      CHECK(s->va == k2M);
      CHECK(s->len == k2M);
      CHECK(s->num_frames == 1);
    }
    CHECK_FALSE(pt->page_walk(k4K * 513).has_value());
  }

  // ---- mapping ----

  TEST_CASE_TEMPLATE("mixed_granularity_map_unmap", P, VMS_ALL_PTE_FORMATS) {
    using C = HugeTestPtConfig<P>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    const std::uint64_t from_ppn_start = 13245, from_ppn_end = 512 * 512 + 23456;
    const std::uint64_t to_ppn_start = from_ppn_start - 11010;
    const VaRange va{k4K * from_ppn_start, k4K * from_ppn_end};
    const PaRange pa{k4K * to_ppn_start, k4K * to_ppn_start + va.size()};
    map_untracked<C>(*pt, va.start, pa, rw_wb());

    for (std::uint64_t i = 0; i < 100; ++i) {
      const std::uint64_t offset = i * (k4K + 1000);  // a stride larger than a page
      auto walked = pt->page_walk(va.start + offset);
      REQUIRE(walked.has_value());
      CHECK(walked->first == pa.start + offset);
    }

    const Vaddr unmap_va = k4K * 13456;
    {
      auto guard = disable_preempt();
      auto c = pt->cursor_mut(guard, {unmap_va, unmap_va + k4K});
      REQUIRE(c.has_value());
      CHECK(c->virt_addr() == unmap_va);
      auto f = c->take_next(k4K);
      REQUIRE(f.has_value());
      const auto* m = as_mapped<C>(*f);
      REQUIRE(m != nullptr);
      CHECK(m->va == unmap_va);
      CHECK(*m->item == RawItem{pa.start + k4K * (13456 - from_ppn_start), 1, rw_wb()});
    }
    CHECK_FALSE(pt->page_walk(unmap_va).has_value());
    CHECK_FALSE(pt->page_walk(unmap_va + k4K - 1).has_value());
    CHECK(pt->page_walk(unmap_va - k4K)->first == pa.start + (unmap_va - k4K - va.start));
    CHECK(pt->page_walk(unmap_va + k4K)->first == pa.start + (unmap_va + k4K - va.start));
    VMS_CHECK_PT_INVARIANTS(*pt);
  }

  TEST_CASE_TEMPLATE("mixed_granularity_protect_query", P, VMS_ALL_PTE_FORMATS) {
    using C = HugeTestPtConfig<P>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    const std::uint64_t two_mb_ppn = 512, one_gb_ppn = 512 * 512;
    const std::uint64_t from_ppn_start = one_gb_ppn - two_mb_ppn;
    const std::uint64_t from_ppn_end = 2 * one_gb_ppn + two_mb_ppn + 2;
    const VaRange from{k4K * from_ppn_start, k4K * from_ppn_end};
    const std::uint64_t shift = k2M;  // pa = va - 2 MiB: 2 MiB- but never 1 GiB-aligned
    auto pa_of = [&](Vaddr v) { return v - shift; };
    map_untracked<C>(*pt, from.start, PaRange{from.start - shift, from.end - shift}, rw_wb());

    // 2 MiB granularity (512 + 2 pages), then two 4 KiB pages.
    const std::uint64_t huge_count = 512 + 2;
    {
      auto guard = disable_preempt();
      auto c = pt->cursor(guard, from);
      REQUIRE(c.has_value());
      std::uint64_t i = 0;
      for (;; ++i) {
        auto q = c->query();
        REQUIRE(q.has_value());
        REQUIRE(q->item.has_value());
        CHECK(q->item->paddr == pa_of(q->range.start));
        CHECK(q->item->prop.flags == PageFlags::RW);
        CHECK(q->item->prop.cache == CachePolicy::Writeback);
        if (i < huge_count) {
          CHECK(q->item->level == 2);
          CHECK(q->range == VaRange{from.start + i * k2M, from.start + (i + 1) * k2M});
        } else {
          CHECK(q->item->level == 1);
          const Vaddr s = from.start + huge_count * k2M + (i - huge_count) * k4K;
          CHECK(q->range == VaRange{s, s + k4K});
        }
        if (q->range.end >= from.end) break;
        REQUIRE(c->jump(q->range.end).has_value());
      }
      CHECK(i + 1 == huge_count + 2);
    }

    const VaRange protect{k4K * (from_ppn_start + 18), k4K * (from_ppn_start + 20)};
    protect_range(*pt, protect, [](PageProperty& p) { p.flags &= ~PageFlags::W; });

    auto low = pt->page_walk(protect.start - k4K);
    REQUIRE(low.has_value());
    CHECK(low->first == pa_of(protect.start - k4K));
    CHECK(low->second == rw_wb());
    {
      auto guard = disable_preempt();
      auto c = pt->cursor(guard, protect);
      REQUIRE(c.has_value());
      for (Vaddr v = protect.start; v < protect.end; v += k4K) {
        REQUIRE(c->jump(v).has_value());
        auto q = c->query();
        REQUIRE(q.has_value());
        REQUIRE(q->item.has_value());
        CHECK(q->item->paddr == pa_of(v));
        CHECK(q->item->level == 1);
        CHECK(q->item->prop.flags == PageFlags::R);
        CHECK(q->item->prop.cache == CachePolicy::Writeback);
      }
    }
    auto high = pt->page_walk(protect.end);
    REQUIRE(high.has_value());
    CHECK(high->first == pa_of(protect.end));
    CHECK(high->second == rw_wb());
    VMS_CHECK_PT_INVARIANTS(*pt);
  }

  // ---- protection_and_query ----

  TEST_CASE_TEMPLATE("base_protect_query", P, VMS_ALL_PTE_FORMATS) {
    using C = HugeTestPtConfig<P>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    const VaRange range{k4K * 1, k4K * 1000};
    map_untracked<C>(*pt, range.start, PaRange{0, k4K * 999}, rw_wb());
    for (Vaddr v = range.start; v < range.end; v += k4K) {
      auto w = pt->page_walk(v);
      REQUIRE(w.has_value());
      CHECK(w->second.flags == PageFlags::RW);
      CHECK(w->second.cache == CachePolicy::Writeback);
    }
    protect_range(*pt, {k4K * 18, k4K * 20}, [](PageProperty& p) { p.flags &= ~PageFlags::W; });
    for (std::uint64_t i = 18; i < 20; ++i) {
      auto w = pt->page_walk(k4K * i);
      REQUIRE(w.has_value());
      CHECK(w->second.flags == PageFlags::R);
      CHECK(w->second.cache == CachePolicy::Writeback);
    }
    CHECK(pt->page_walk(k4K * 17)->second.flags == PageFlags::RW);
    CHECK(pt->page_walk(k4K * 20)->second.flags == PageFlags::RW);
  }

  TEST_CASE_TEMPLATE("protect_next_empty_entry", P, VMS_ALL_PTE_FORMATS) {
    using C = HugeTestPtConfig<P>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    const VaRange range{0x1000, 0x2000};
    auto guard = disable_preempt();
    auto c = pt->cursor_mut(guard, range);
    REQUIRE(c.has_value());
    auto r = c->protect_next(range.size(), [](PageProperty& p) { p.flags = PageFlags::R; });
    REQUIRE(r.has_value());
    CHECK_FALSE(r->has_value());
    CHECK(c->virt_addr() == range.end);
  }

  TEST_CASE_TEMPLATE("protect_next_touches_empty_range", P, VMS_ALL_PTE_FORMATS) {
    using C = HugeTestPtConfig<P>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    const VaRange range{0x1000, 0x3000};
    const VaRange sub{0x1000, 0x2000};
    REQUIRE(map_one(*pt, sub.start, RawItem{0x2000, 1, rw_wb()}).has_value());
    auto guard = disable_preempt();
    {
      auto c = pt->cursor_mut(guard, range);
      REQUIRE(c.has_value());
      auto r = c->protect_next(range.size(), [](PageProperty& p) { p.flags = PageFlags::R; });
      REQUIRE(r.has_value());
      CHECK(*r == std::optional<VaRange>(sub));
      CHECK(c->virt_addr() == sub.end);
      auto rest = c->protect_next(range.end - c->virt_addr(), [](PageProperty& p) { p.flags = PageFlags::R; });
      REQUIRE(rest.has_value());
      CHECK_FALSE(rest->has_value());
    }
    CHECK(pt->page_walk(0x1000)->second.flags == PageFlags::R);
  }

  // ---- boot_pt, on a kernel-config table ----

  TEST_CASE("map_base_page") {
    auto kernel = new_kernel_page_table();
    REQUIRE(kernel.has_value());
    const Vaddr from = kKernelVa + 0x1000;
    REQUIRE(map_kernel_base_page(*kernel, from, 0x2000, rw_wb()).has_value());
    auto w = kernel->page_walk(from + 1);
    REQUIRE(w.has_value());
    CHECK(w->first == 0x2001);
    CHECK(w->second == rw_wb());
  }

  TEST_CASE("map_base_page_already_mapped") {
    // OSTD: should_panic "mapping an already mapped page in the boot page table".
    auto kernel = new_kernel_page_table();
    REQUIRE(kernel.has_value());
    const Vaddr from = kKernelVa + 0x1000;
    REQUIRE(map_kernel_base_page(*kernel, from, 0x2000, rw_wb()).has_value());
    CHECK(error_of(map_kernel_base_page(*kernel, from, 0x3000, rw_wb())) == PageTableError::AlreadyMapped);
    CHECK(kernel->page_walk(from)->first == 0x2000);
    VMS_CHECK_PT_INVARIANTS(*kernel);
  }

  TEST_CASE("protect_base_page_unmapped") {
    // OSTD: should_panic "protecting an unmapped page in the boot page table". Here there is
    // nothing to protect: protect_next reports None and maps nothing.
    auto kernel = new_kernel_page_table();
    REQUIRE(kernel.has_value());
    const Vaddr va = kKernelVa + 0x2000;
    auto r = protect_kernel_base_page(*kernel, va, [](PageProperty& p) { p.flags = PageFlags::R; });
    CHECK(r == std::nullopt);
    CHECK_FALSE(kernel->page_walk(va).has_value());
  }

  TEST_CASE("map_protect") {
    auto kernel = new_kernel_page_table();
    REQUIRE(kernel.has_value());
    const Vaddr from1 = kKernelVa + 0x2000;
    const auto prop1 = rw_wb();
    REQUIRE(map_kernel_base_page(*kernel, from1, 0x2000, prop1).has_value());
    CHECK(kernel->page_walk(from1 + 1) == std::optional(std::pair{Paddr{0x2001}, prop1}));
    auto r1 = protect_kernel_base_page(*kernel, from1, [](PageProperty& p) { p.flags = PageFlags::RX; });
    CHECK(r1 == std::optional(VaRange{from1, from1 + k4K}));
    CHECK(kernel->page_walk(from1 + 1) ==
          std::optional(std::pair{Paddr{0x2001}, PageProperty::new_user(PageFlags::RX, CachePolicy::Writeback)}));

    const Vaddr from2 = kKernelVa + 0x3000;
    const auto prop2 = PageProperty::new_user(PageFlags::RX, CachePolicy::Uncacheable);
    REQUIRE(map_kernel_base_page(*kernel, from2, 0x3000, prop2).has_value());
    CHECK(kernel->page_walk(from2 + 2) == std::optional(std::pair{Paddr{0x3002}, prop2}));
    auto r2 = protect_kernel_base_page(*kernel, from2, [](PageProperty& p) { p.flags = PageFlags::RW; });
    CHECK(r2 == std::optional(VaRange{from2, from2 + k4K}));
    // The cache policy is preserved.
    CHECK(kernel->page_walk(from2 + 2) ==
          std::optional(std::pair{Paddr{0x3002}, PageProperty::new_user(PageFlags::RW, CachePolicy::Uncacheable)}));
    VMS_CHECK_PT_INVARIANTS(*kernel);
  }
}
