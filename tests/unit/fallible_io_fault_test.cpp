// Fallible I/O (fallible_io_util.hpp): the page-fault handler protocol and the ACCESSED/DIRTY
// bits the software MMU sets.
#include "fallible_io_util.hpp"

TEST_SUITE("unit") {
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
    CHECK(error_of(rw->second.atomic_compare_exchange<std::uint32_t>(rw->first, 0, 1)) ==
          Error::PageFault);
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

  TEST_CASE_TEMPLATE("accessed_and_dirty_bits_follow_reads_and_writes", B, PreMapped,
                     DemandFaulted) {
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
      auto r = c->protect_next(kP, [](PageFlags& f, CachePolicy&) {
        f = f & ~(PageFlags::ACCESSED | PageFlags::DIRTY);
      });
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
