// VmSpace (vm_space_test_util.hpp): OSTD's vmspace scenarios (`ostd/src/mm/test.rs`, module
// vmspace).
#include "vm_space_test_util.hpp"

TEST_SUITE("unit") {
  // ---- OSTD's vmspace module ----

  TEST_CASE("vmspace_creation") {
    auto space = new_space();
    auto q = query_at(*space, 0);
    CHECK(q.first == VaRange{0, 0x1000});
    CHECK_FALSE(q.second.has_value());
    CHECK(space->active_cpus().is_empty());
  }

  TEST_CASE("vmspace_map_unmap") {
    auto space = new_space();
    const VaRange range{0x1000, 0x2000};
    UFrame frame = new_frame();
    const Paddr pa = frame.paddr();
    const PageProperty prop = PageProperty::new_user(PageFlags::R, CachePolicy::Writeback);
    {
      auto g = disable_preempt();
      auto c = space->cursor_mut(g, range);
      REQUIRE(c.has_value());
      auto q = c->query();
      REQUIRE(q.has_value());
      CHECK(q->first == range);
      CHECK_FALSE(q->second.has_value());
      REQUIRE(c->map(UFrame(frame), prop).has_value());
      CHECK(c->virt_addr() == range.end);
    }
    {
      auto g = disable_preempt();
      auto c = space->cursor(g, range);
      REQUIRE(c.has_value());
      CHECK(c->virt_addr() == range.start);
      auto q = c->query();
      REQUIRE(q.has_value());
      CHECK(q->first == range);
      REQUIRE(q->second.has_value());
      CHECK(q->second->kind == VmQueriedItem::Kind::MappedRam);
      REQUIRE(q->second->frame.has_value());
      CHECK(q->second->frame->paddr() == pa);
      CHECK(q->second->paddr == pa);
      CHECK(q->second->level == 1);
      CHECK(q->second->property() == prop);
      CHECK(frame.reference_count() == 2);  // our handle + the PTE
    }
    {
      auto g = disable_preempt();
      auto c = space->cursor_mut(g, range);
      REQUIRE(c.has_value());
      auto n = c->unmap(0x1000);
      REQUIRE(n.has_value());
      CHECK(*n == 1);
      CHECK(c->virt_addr() == range.end);
      REQUIRE(c->jump(range.start).has_value());
      auto q = c->query();
      REQUIRE(q.has_value());
      CHECK_FALSE(q->second.has_value());
    }
    rcu_barrier();
    CHECK(frame.reference_count() == 1);
  }

  TEST_CASE("vmspace_map_twice_is_already_mapped") {
    // OSTD panics ("mapping over an already mapped page"); we return AlreadyMapped, keep the
    // first mapping and hand the second frame back.
    auto space = new_space();
    const Paddr first = map_page(*space, 0x1000);
    UFrame second = new_frame();
    const Paddr second_pa = second.paddr();
    {
      auto g = disable_preempt();
      auto c = space->cursor_mut(g, {0x1000, 0x2000});
      REQUIRE(c.has_value());
      auto r = c->map(std::move(second), kUserRw);
      CHECK(error_of(r) == Error::AlreadyMapped);
      CHECK(last_page_table_error() == PageTableError::AlreadyMapped);
      CHECK(c->virt_addr() == 0x1000);
    }
    REQUIRE_FALSE(second.is_empty());
    CHECK(second.paddr() == second_pa);
    CHECK(second.reference_count() == 1);
    auto q = query_at(*space, 0x1000);
    REQUIRE(q.second.has_value());
    CHECK(q.second->paddr == first);
  }

  TEST_CASE("vmspace_unmap_twice") {
    auto space = new_space();
    map_page(*space, 0x1000);
    CHECK(unmap_range(*space, 0x1000, 0x1000) == 1);
    CHECK(unmap_range(*space, 0x1000, 0x1000) == 0);
    CHECK_FALSE(query_at(*space, 0x1000).second.has_value());
  }

  TEST_CASE("every_cpu_starts_on_the_kernel_table") {
    for (std::uint32_t i = 0; i < num_cpus(); ++i) {
      CAPTURE(i);
      BoundTo bound(cpu(i));
      CHECK(current_page_table_paddr() == kernel_page_table().root_paddr());
      CHECK(tlb_entries(cpu(i)).empty());
    }
  }

  TEST_CASE("vmspace_activate") {
    auto a = new_space();
    auto b = new_space();
    std::weak_ptr<VmSpace> weak_a = a;
    {
      BoundTo bound(cpu(0));
      REQUIRE(a->activate().has_value());
      CHECK(current_page_table_paddr() == a->root_paddr());
      CHECK(a->active_cpus() == CpuSet(cpu(0)));
      // Activating the active space again changes nothing.
      const auto flushes = tlb_stats(cpu(0)).full_flushes;
      REQUIRE(a->activate().has_value());
      CHECK(tlb_stats(cpu(0)).full_flushes == flushes);
      // The CPU keeps its active space alive.
      a.reset();
      CHECK_FALSE(weak_a.expired());
      REQUIRE(b->activate().has_value());
      CHECK(current_page_table_paddr() == b->root_paddr());
      CHECK(b->active_cpus() == CpuSet(cpu(0)));
      CHECK(weak_a.expired());  // replaced: the CPU dropped its reference
      REQUIRE(VmSpace::deactivate_current().has_value());
      CHECK(current_page_table_paddr() == kernel_page_table().root_paddr());
      CHECK(b->active_cpus().is_empty());
    }
    // Kernel context has no CPU to activate on.
    CHECK(error_of(b->activate()) == Error::AccessDenied);
    CHECK(error_of(VmSpace::deactivate_current()) == Error::AccessDenied);
    CHECK(current_page_table_paddr() == kernel_page_table().root_paddr());
  }

  TEST_CASE("vmspace_activate_on_two_cpus_tracks_both") {
    CpuCleanup cleanup;
    auto a = new_space();
    activate_on(a, cpu(1));
    activate_on(a, cpu(2));
    CHECK(a->active_cpus().count() == 2);
    CHECK(a->active_cpus().contains(cpu(1)));
    CHECK(a->active_cpus().contains(cpu(2)));
    {
      BoundTo bound(cpu(1));
      CHECK(current_page_table_paddr() == a->root_paddr());
      REQUIRE(VmSpace::deactivate_current().has_value());
    }
    CHECK(a->active_cpus() == CpuSet(cpu(2)));
  }

  TEST_CASE("cursor_mut_flusher") {
    auto space = new_space();
    ActiveOn active(space, cpu(0));
    const Paddr pa = map_page(*space, 0x1000);
    CHECK(read_user(*space, 0x1000, 16)[3] == std::byte{pattern_byte(0x1003)});
    {
      auto g = disable_preempt();
      auto c = space->cursor_mut(g, {0x1000, 0x2000});
      REQUIRE(c.has_value());
      c->flusher().issue_tlb_flush(TlbFlushOp::for_all());
      c->flusher().dispatch_tlb_flush();
      c->flusher().sync_tlb_flush();
      auto q = c->query();
      REQUIRE(q.has_value());
      REQUIRE(q->second.has_value());
      CHECK(q->second->paddr == pa);
    }
    CHECK_FALSE(tlb_caches(cpu(0), 0x1000));
    CHECK(read_user(*space, 0x1000, 16)[3] == std::byte{pattern_byte(0x1003)});
  }

  TEST_CASE("vmspace_reader_writer") {
    auto space = new_space();
    BoundTo bound(cpu(0));
    CHECK(error_of(space->reader(0x4000, 0x1000)) == Error::AccessDenied);
    CHECK(error_of(space->writer(0x4000, 0x1000)) == Error::AccessDenied);
    CHECK(error_of(space->reader_writer(0x4000, 0x1000)) == Error::AccessDenied);
    REQUIRE(space->activate().has_value());
    auto r = space->reader(0x4000, 0x1000);
    REQUIRE(r.has_value());
    CHECK(r->remain() == 0x1000);
    CHECK(r->cursor() == 0x4000);
    auto w = space->writer(0x4000, 0x1000);
    REQUIRE(w.has_value());
    CHECK(w->avail() == 0x1000);
    auto rw = space->reader_writer(0x4000, 0x1000);
    REQUIRE(rw.has_value());
    CHECK(rw->first.cursor() == rw->second.cursor());
    CHECK(error_of(space->reader(0x4000, SIZE_MAX)) == Error::AccessDenied);
    CHECK(error_of(space->writer(0x4000, SIZE_MAX)) == Error::AccessDenied);
    CHECK(error_of(space->reader_writer(0x4000, SIZE_MAX)) == Error::AccessDenied);
    // Another space is not active here even though this CPU has one.
    auto other = new_space();
    CHECK(error_of(other->reader(0x4000, 0x1000)) == Error::AccessDenied);
    REQUIRE(VmSpace::deactivate_current().has_value());
    CHECK(error_of(space->reader(0x4000, 0x1000)) == Error::AccessDenied);
  }

  TEST_CASE("reader_is_refused_on_a_cpu_where_the_space_is_not_active") {
    CpuCleanup cleanup;
    auto space = new_space();
    activate_on(space, cpu(1));
    BoundTo bound(cpu(0));
    CHECK(error_of(space->reader(0x4000, 8)) == Error::AccessDenied);
    CHECK(error_of(space->writer(0x4000, 8)) == Error::AccessDenied);
  }

  TEST_CASE("overlapping_cursors_unaligned_request_is_refused") {
    // OSTD's overlapping_cursors test fails on the alignment of the second range, not on the
    // overlap; this is that test. (Blocking on a real overlap is in the concurrency tests.)
    auto space = new_space();
    auto g = disable_preempt();
    auto c1 = space->cursor_mut(g, {0x5000, 0x6000});
    REQUIRE(c1.has_value());
    auto c2 = space->cursor_mut(g, {0x5800, 0x6800});
    CHECK(error_of(c2) == Error::AccessDenied);
    CHECK(last_page_table_error() == PageTableError::UnalignedVaddr);
  }

  TEST_CASE("overlapping_cursor_on_the_same_thread_would_deadlock") {
    auto space = new_space();
    auto g = disable_preempt();
    auto c1 = space->cursor_mut(g, {0x5000, 0x6000});
    REQUIRE(c1.has_value());
    CHECK(error_of(space->cursor(g, {0x5000, 0x6000})) == Error::WouldDeadlock);
    CHECK(error_of(space->cursor_mut(g, {0x4000, 0x7000})) == Error::WouldDeadlock);
    CHECK(error_of(space->try_cursor_mut(g, {0x5000, 0x6000})) == Error::WouldDeadlock);
    // A disjoint range elsewhere in the same table does not need c1's locks.
    auto c3 = space->cursor_mut(g, {0x4000'0000, 0x4000'1000});
    CHECK(c3.has_value());
  }

  TEST_CASE("protect_next") {
    auto space = new_space();
    map_page(*space, 0x7000, kUserRw);
    auto g = disable_preempt();
    auto c = space->cursor_mut(g, {0x7000, 0x8000});
    REQUIRE(c.has_value());
    REQUIRE(c->jump(0x7000).has_value());
    auto r = c->protect_next(0x1000, [](PageFlags& f, CachePolicy&) { f = PageFlags::R; });
    REQUIRE(r.has_value());
    REQUIRE(r->has_value());
    CHECK(**r == VaRange{0x7000, 0x8000});
    CHECK(c->virt_addr() == 0x8000);
    REQUIRE(c->jump(0x7000).has_value());
    auto q = c->query();
    REQUIRE(q.has_value());
    REQUIRE(q->second.has_value());
    CHECK(q->second->prop == kUserRo);
  }

  TEST_CASE("protect_next_over_nothing_returns_nullopt") {
    auto space = new_space();
    map_page(*space, 0x7000, kUserRw);
    auto g2 = disable_preempt();
    auto c2 = space->cursor_mut(g2, {0x10000, 0x12000});
    REQUIRE(c2.has_value());
    auto none = c2->protect_next(0x2000, [](PageFlags& f, CachePolicy&) { f = PageFlags::R; });
    REQUIRE(none.has_value());
    CHECK_FALSE(none->has_value());
    CHECK(c2->virt_addr() == 0x12000);
  }

  TEST_CASE("protect_next_cannot_touch_privileged_bits_and_refuses_write_protected") {
    auto space = new_space();
    map_page(*space, 0x7000, kUserRw);
    auto g = disable_preempt();
    auto c = space->cursor_mut(g, {0x7000, 0x8000});
    REQUIRE(c.has_value());
    auto bad = c->protect_next(0x1000, [](PageFlags& f, CachePolicy& cp) {
      f = PageFlags::R;
      cp = CachePolicy::WriteProtected;
    });
    CHECK(error_of(bad) == Error::InvalidArgs);
    CHECK(last_page_table_error() == PageTableError::InvalidItem);
    CHECK(c->virt_addr() == 0x7000);
    CHECK(pte_prop(*space, 0x7000) == kUserRw);  // unchanged
    auto ok = c->protect_next(0x1000, [](PageFlags& f, CachePolicy& cp) {
      f = PageFlags::RX;
      cp = CachePolicy::Uncacheable;
    });
    REQUIRE(ok.has_value());
    auto p = pte_prop(*space, 0x7000);
    REQUIRE(p.has_value());
    CHECK(p->flags == PageFlags::RX);
    CHECK(p->cache == CachePolicy::Uncacheable);
    CHECK(p->priv_flags == PrivilegedPageFlags::USER);
  }

  TEST_CASE("unaligned_unmap_is_invalid_args") {
    // OSTD panics (unaligned_unmap_panics).
    auto space = new_space();
    map_page(*space, 0x1000);
    auto g = disable_preempt();
    auto c = space->cursor_mut(g, {0x1000, 0x2000});
    REQUIRE(c.has_value());
    CHECK(error_of(c->unmap(0x800)) == Error::InvalidArgs);
    CHECK(last_page_table_error() == PageTableError::UnalignedLen);
    CHECK(c->virt_addr() == 0x1000);
    CHECK(error_of(c->unmap(0x2000)) == Error::InvalidArgs);
    CHECK(last_page_table_error() == PageTableError::LenOutOfRange);
    auto q = c->query();
    REQUIRE(q.has_value());
    CHECK(q->second.has_value());
  }

  TEST_CASE("protect_out_range_page_is_invalid_args") {
    // OSTD panics (protect_out_range_page).
    auto space = new_space();
    map_page(*space, 0x1000);
    auto g = disable_preempt();
    auto c = space->cursor_mut(g, {0x1000, 0x2000});
    REQUIRE(c.has_value());
    auto r = c->protect_next(0x2000, [](PageFlags& f, CachePolicy&) { f = PageFlags::R; });
    CHECK(error_of(r) == Error::InvalidArgs);
    CHECK(last_page_table_error() == PageTableError::LenOutOfRange);
    CHECK(c->virt_addr() == 0x1000);
    CHECK(pte_prop(*space, 0x1000) == kUserRw);
  }

  TEST_CASE("iomem_acquire_claim_temporary_deadlock") {
    // Regression: IoMem::acquire built its Claim as a temporary (make_shared<Claim>(Claim{r})),
    // whose destructor took the claims lock acquire still held: every acquire hung. Had it not
    // hung, that destructor would also have erased the claim just registered.
    const Paddr base = kIoMemPaddr + 0x60'0000;
    {
      auto io = IoMem::acquire({base, base + 0x2000});
      REQUIRE(io.has_value());
      CHECK(io->paddr() == base);
      CHECK(io->size() == 0x2000);
      // The claim holds: overlapping ranges are refused while a handle lives.
      CHECK(error_of(IoMem::acquire({base, base + 0x1000})) == Error::AccessDenied);
      CHECK(error_of(IoMem::acquire({base + 0x1000, base + 0x3000})) == Error::AccessDenied);
      CHECK(error_of(IoMem::acquire({base - 0x1000, base + 0x1000})) == Error::AccessDenied);
      auto next = IoMem::acquire({base + 0x2000, base + 0x3000});  // touching is fine
      CHECK(next.has_value());
      IoMem copy = *io;
      CHECK(copy == *io);
    }
    CHECK(IoMem::acquire({base, base + 0x3000}).has_value());
    CHECK(error_of(IoMem::acquire({0, 0x1000})) == Error::AccessDenied);  // RAM
    CHECK(error_of(IoMem::acquire({base, base + 0x800})) == Error::InvalidArgs);
    CHECK(error_of(IoMem::acquire({base, base})) == Error::InvalidArgs);
  }

  TEST_CASE("vmspace_map_query_iomem") {
    auto space = new_space();
    auto io = IoMem::acquire({kIoMemPaddr, kIoMemPaddr + 0x1000});
    REQUIRE(io.has_value());
    const PageProperty prop = PageProperty::new_user(PageFlags::RW, CachePolicy::Uncacheable);
    auto g = disable_preempt();
    auto c = space->cursor_mut(g, {0x1000, 0x2000});
    REQUIRE(c.has_value());
    REQUIRE(c->map_iomem(*io, prop, 0x1000, 0).has_value());
    CHECK(c->virt_addr() == 0x2000);
    REQUIRE(c->jump(0x1000).has_value());
    auto q = c->query();
    REQUIRE(q.has_value());
    REQUIRE(q->second.has_value());
    CHECK(q->second->kind == VmQueriedItem::Kind::MappedIoMem);
    CHECK_FALSE(q->second->frame.has_value());
    CHECK(q->second->paddr == kIoMemPaddr);
    CHECK(q->second->prop.flags == prop.flags);
    CHECK(q->second->prop.cache == prop.cache);
    auto found = space->find_iomem_by_paddr(kIoMemPaddr);
    REQUIRE(found.has_value());
    CHECK(found->first == *io);
    CHECK(found->second == 0);
    auto mid = space->find_iomem_by_paddr(kIoMemPaddr + 0x80);
    REQUIRE(mid.has_value());
    CHECK(mid->second == 0x80);
    CHECK_FALSE(space->find_iomem_by_paddr(kIoMemPaddr + 0x1000).has_value());
  }

  TEST_CASE("vmspace_map_iomem_with_offset") {
    auto space = new_space();
    const Paddr base = kIoMemPaddr + 0x10'0000;
    auto io = IoMem::acquire({base + 0x1000, base + 0x3000});
    REQUIRE(io.has_value());
    auto g = disable_preempt();
    auto c = space->cursor_mut(g, {0x1000, 0x2000});
    REQUIRE(c.has_value());
    REQUIRE(c->map_iomem(*io, kUserRw, 0x1000, 0x1000).has_value());
    REQUIRE(c->jump(0x1000).has_value());
    auto q = c->query();
    REQUIRE(q.has_value());
    REQUIRE(q->second.has_value());
    CHECK(q->second->paddr == base + 0x2000);
    auto found = space->find_iomem_by_paddr(base + 0x2000);
    REQUIRE(found.has_value());
    CHECK(found->first.paddr() == base + 0x1000);
    CHECK(found->first.size() == 0x2000);
    CHECK(found->second == 0x1000);
  }

  TEST_CASE("vmspace_iomem_persistence") {
    auto space = new_space();
    const Paddr base = kIoMemPaddr + 0x20'0000;
    {
      auto io = IoMem::acquire({base, base + 0x1000});
      REQUIRE(io.has_value());
      auto g = disable_preempt();
      auto c = space->cursor_mut(g, {0x1000, 0x2000});
      REQUIRE(c.has_value());
      REQUIRE(c->map_iomem(*io, kUserRw, 0x1000, 0).has_value());
      REQUIRE(c->jump(0x1000).has_value());
      auto n = c->unmap(0x1000);
      REQUIRE(n.has_value());
      CHECK(*n == 0);  // I/O pages are not tracked frames
    }
    // Our handle is gone and the page is unmapped, yet the space keeps the IoMem.
    auto found = space->find_iomem_by_paddr(base);
    REQUIRE(found.has_value());
    CHECK(found->first.paddr() == base);
    CHECK(error_of(IoMem::acquire({base, base + 0x1000})) == Error::AccessDenied);
    found.reset();
    space.reset();
    // Dropping the space ends the claim.
    CHECK(IoMem::acquire({base, base + 0x1000}).has_value());
  }

  TEST_CASE("map_iomem_argument_errors_change_nothing") {
    auto space = new_space();
    const Paddr base = kIoMemPaddr + 0x30'0000;
    auto io = IoMem::acquire({base, base + 0x3000});
    REQUIRE(io.has_value());
    map_page(*space, 0x3000);
    auto g = disable_preempt();
    auto c = space->cursor_mut(g, {0x1000, 0x4000});
    REQUIRE(c.has_value());
    CHECK(error_of(c->map_iomem(*io, kUserRw, 0x800, 0)) == Error::InvalidArgs);
    CHECK(error_of(c->map_iomem(*io, kUserRw, 0x1000, 0x10)) == Error::InvalidArgs);
    // The third page is mapped: refused before anything changes.
    CHECK(error_of(c->map_iomem(*io, kUserRw, 0x3000, 0)) == Error::AlreadyMapped);
    CHECK(c->virt_addr() == 0x1000);
    CHECK_FALSE(pte_prop(*space, 0x1000).has_value());
    CHECK_FALSE(pte_prop(*space, 0x2000).has_value());
    CHECK_FALSE(space->find_iomem_by_paddr(base).has_value());
    // Offset past the end: nothing happens.
    CHECK(c->map_iomem(*io, kUserRw, 0x1000, 0x3000).has_value());
    CHECK(c->virt_addr() == 0x1000);
    CHECK_FALSE(space->find_iomem_by_paddr(base).has_value());
    // Too long for the cursor.
    REQUIRE(c->jump(0x2000).has_value());
    CHECK(error_of(c->map_iomem(*io, kUserRw, 0x3000, 0)) == Error::InvalidArgs);
  }

  TEST_CASE("map_iomem_clips_the_length_to_the_iomem") {
    auto space = new_space();
    const Paddr base = kIoMemPaddr + 0x38'0000;
    auto io = IoMem::acquire({base, base + 0x3000});
    REQUIRE(io.has_value());
    auto g2 = disable_preempt();
    auto c2 = space->cursor_mut(g2, {0x10000, 0x20000});
    REQUIRE(c2.has_value());
    REQUIRE(c2->map_iomem(*io, kUserRw, 0x8000, 0x1000).has_value());
    CHECK(c2->virt_addr() == 0x12000);
    CHECK(space->page_table().page_walk(0x11000)->first == base + 0x2000);
    CHECK_FALSE(pte_prop(*space, 0x12000).has_value());
  }

  TEST_CASE("map_iomem_partial_failure_keeps_iomem_recorded") {
    // Regression: map_iomem recorded the IoMem only after every page was mapped, so a NoMemory
    // half-way left mapped I/O pages whose IoMem the space did not keep: the caller could drop
    // the claim and the range could be claimed again while still mapped here.
    auto space = new_space();
    const Paddr base = kIoMemPaddr + 0x40'0000;
    auto acquired = IoMem::acquire({base, base + 0x2000});
    REQUIRE(acquired.has_value());
    std::optional<IoMem> io(std::move(*acquired));
    const Vaddr va = k2M - 0x1000;  // the two pages straddle a level-1 table boundary
    {
      auto g = disable_preempt();
      auto c = space->cursor_mut(g, {va, va + 0x2000});
      REQUIRE(c.has_value());
      // One node allocation left: the first page's table; the second page's table fails.
      FailingAllocator failing(1);
      CHECK(error_of(c->map_iomem(*io, kUserRw, 0x2000, 0)) == Error::NoMemory);
    }
    REQUIRE(pte_prop(*space, va).has_value());  // the first page stays mapped (documented)
    CHECK_FALSE(pte_prop(*space, va + 0x1000).has_value());
    auto found = space->find_iomem_by_paddr(base);
    REQUIRE(found.has_value());
    CHECK(found->first == *io);
    io.reset();
    CHECK(error_of(IoMem::acquire({base, base + 0x2000})) == Error::AccessDenied);
  }
}
