#include <doctest/doctest.h>

#include <vmspace/boot.hpp>
#include <vmspace/frame_allocator.hpp>

#include "death_test.hpp"
#include "skip.hpp"

using namespace vmspace;

TEST_SUITE("unit") {
  TEST_CASE("boot_again_with_the_same_config_is_fine_and_another_is_refused") {
    const BootConfig current = boot_config();
    CHECK(boot(current).has_value());
    BootConfig other = current;
    other.num_cpus = current.num_cpus + 1;
    CHECK(boot(other).error() == Error::InvalidArgs);
    CHECK(boot_config() == current);
  }

  TEST_CASE("physical_memory_is_memfd_backed_and_linear") {
    auto frame = FrameAllocOptions().alloc_frame().value();
    std::byte* p = paddr_to_vaddr(frame.paddr());
    CHECK(vaddr_to_paddr(p) == frame.paddr());
    CHECK(frame.paddr() < max_paddr());
    CHECK(max_paddr() == boot_config().phys_mem_bytes);
    CHECK(linear_mapping_vaddr(0x1000) == kLinearMappingBaseVaddr + 0x1000);
  }

  // Regression: physical memory is a MAP_SHARED memfd while frame metadata is private, so a
  // forked child (death tests fork) wrote into the parent's emulated RAM, and a child that
  // changed page tables corrupted the parent's machine. The child now remaps it private.
  TEST_CASE("fork_child_does_not_share_physical_memory" *
            vmspace::test::skip_death_test("fork_child_does_not_share_physical_memory")) {
    auto frame = FrameAllocOptions().alloc_frame().value();
    REQUIRE(frame.write_val<std::uint64_t>(0, 0xaaaa).has_value());
    auto r = vmspace::test::run_in_child([&] {
      (void)frame.write_val<std::uint64_t>(0, 0xbbbb);
      if (frame.read_val<std::uint64_t>(0).value() != 0xbbbb) std::abort();
    });
    CHECK_FALSE(r.died);
    CHECK(frame.read_val<std::uint64_t>(0).value() == 0xaaaa);
  }
}
