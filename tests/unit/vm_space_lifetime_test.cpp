// VmSpace (vm_space_test_util.hpp): frames shared between mappings and spaces, and what dropping
// a space releases.
#include "vm_space_test_util.hpp"

TEST_SUITE("unit") {
  // ---- shared frames (docs/spec_cases.md case 49) ----

  TEST_CASE("one_frame_at_two_addresses_counts_both_ptes") {
    auto space = new_space();
    UFrame frame = new_frame();
    const Paddr pa = frame.paddr();
    map_frame_at(*space, 0x1000, frame);
    map_frame_at(*space, 0x9000, frame);
    CHECK(frame.reference_count() == 3);  // our handle + two PTEs
    {
      ActiveOn active(space, cpu(0));
      REQUIRE(write_u64(*space, 0x1008, 0xfeed).has_value());
      CHECK(read_u64(*space, 0x9008).value() == 0xfeed);
    }
    const std::uint32_t gen = frame_generation(pa);
    CHECK(unmap_range(*space, 0x1000, 0x1000) == 1);
    rcu_barrier();
    CHECK(frame.reference_count() == 2);
    CHECK(frame_generation(pa) == gen);  // never freed
    CHECK(space->page_table().page_walk(0x9008)->first == pa + 8);
  }

  TEST_CASE("one_frame_at_the_same_address_in_two_spaces_counts_both_ptes") {
    auto a = new_space();
    auto b = new_space();
    UFrame frame = new_frame();
    map_frame_at(*a, 0x1000, frame);
    map_frame_at(*b, 0x1000, frame);
    CHECK(frame.reference_count() == 3);
    a.reset();
    CHECK(frame.reference_count() == 2);
    CHECK(b->page_table().page_walk(0x1000)->first == frame.paddr());
  }

  TEST_CASE("a_view_ending_where_a_mapping_starts_leaves_it_alone") {
    // docs/spec_cases.md case 71: a reader/writer over [v, v + l) must neither touch nor lose the
    // mapping that starts at v + l.
    auto space = new_space();
    ActiveOn active(space, cpu(0));
    const Vaddr v = 0x20000;
    map_page(*space, v);
    map_page(*space, v + 0x1000);
    std::vector<std::byte> buf(0x1000);
    {
      auto r = space->reader(v, 0x1000);
      REQUIRE(r.has_value());
      VmWriter<Infallible> w{std::span<std::byte>(buf)};
      CHECK(r->read_fallible(w).value() == 0x1000);
      auto wr = space->writer(v, 0x1000);
      VmReader<Infallible> src{std::span<const std::byte>(buf)};
      CHECK(wr->write_fallible(src).value() == 0x1000);
    }
    auto next = pte_prop(*space, v + 0x1000);
    REQUIRE(next.has_value());
    CHECK_FALSE(has(next->flags, PageFlags::ACCESSED));
    CHECK(has(pte_prop(*space, v)->flags, PageFlags::DIRTY));
    CHECK(unmap_range(*space, v, 0x1000) == 1);
    CHECK(pte_prop(*space, v + 0x1000).has_value());
  }

  // ---- dropping a space ----

  TEST_CASE("dropping_a_space_releases_every_frame_and_node") {
    rcu_barrier();
    FreeBytesUnchanged leak_check;
    const auto kernel_before = kernel_upper_half();
    auto survivor = new_space();
    std::optional<UFrame> kept(new_frame());
    const Paddr kept_pa = kept->paddr();
    {
      auto space = new_space();
      map_frame_at(*space, 0x1000, *kept);
      map_page(*space, 0x4000'0000);
      map_page(*space, 0x7fff'ffff'e000);  // last user root entry
      map_page(*space, (Vaddr{1} << 47) - 0x1000);
      {
        auto g = disable_preempt();
        auto c = space->cursor_mut(g, {0x80'0000'0000, 0x80'0000'0000 + k2M});
        REQUIRE(c.has_value());
        REQUIRE(c->map_segment(new_huge_segment(), kUserRw).has_value());
      }
      auto io = IoMem::acquire({kIoMemPaddr + 0x50'0000, kIoMemPaddr + 0x50'1000});
      REQUIRE(io.has_value());
      {
        auto g = disable_preempt();
        auto c = space->cursor_mut(g, {0x5000, 0x6000});
        REQUIRE(c.has_value());
        REQUIRE(c->map_iomem(*io, kUserRw, 0x1000, 0).has_value());
      }
      // Activated and deactivated: no CPU keeps it.
      { ActiveOn active(space, cpu(0)); }
      CHECK(kept->reference_count() == 2);
    }
    CHECK(kept->reference_count() == 1);  // released at once, not after a grace period
    CHECK(kernel_upper_half() == kernel_before);
    CHECK(kernel_page_table().page_walk(linear_mapping_vaddr(kept_pa))->first == kept_pa);
    CHECK(survivor->page_table().page_walk(linear_mapping_vaddr(kept_pa))->first == kept_pa);
    CHECK(IoMem::acquire({kIoMemPaddr + 0x50'0000, kIoMemPaddr + 0x50'1000}).has_value());
    kept.reset();
    survivor.reset();
    rcu_barrier();
  }

  TEST_CASE("deactivating_the_last_cpu_frees_the_space") {
    rcu_barrier();
    FreeBytesUnchanged leak_check;
    std::weak_ptr<VmSpace> weak;
    {
      auto space = new_space();
      weak = space;
      map_page(*space, 0x1000);
      activate_on(space, cpu(3));
    }
    CHECK_FALSE(weak.expired());
    {
      BoundTo bound(cpu(3));
      REQUIRE(VmSpace::deactivate_current().has_value());
    }
    CHECK(weak.expired());
    rcu_barrier();
  }
}
