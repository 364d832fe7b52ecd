// boot() at its documented bounds (BootConfig::kMaxPhysMemBytes). A process boots one machine,
// so this executable boots nothing else: its single test case first proves that one frame over
// the limit is refused and leaves the process unbooted, then boots at exactly the limit.
#include <doctest/doctest.h>

#include <sys/mman.h>

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>

#include <vmspace/boot.hpp>
#include <vmspace/frame.hpp>
#include <vmspace/frame_allocator.hpp>

#include "death_test.hpp"
#include "skip.hpp"

using namespace vmspace;

namespace {

constexpr std::uint64_t kLimit = BootConfig::kMaxPhysMemBytes;
constexpr std::uint64_t kFrames = kLimit / kPageSize;
// Boot writes every frame's metadata slot and reserves a generation counter per frame; leave
// headroom for the rest of the process.
constexpr std::uint64_t kBootTouches = kFrames * (64 + sizeof(std::uint32_t));
constexpr std::uint64_t kHeadroom = std::uint64_t{512} << 20;

std::uint64_t mem_available_bytes() {
  std::ifstream in("/proc/meminfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string key;
    std::uint64_t kib = 0;
    if (fields >> key >> kib && key == "MemAvailable:") return kib * 1024;
  }
  return 0;
}

// Empty when the host can hold a machine at the limit; otherwise what it lacks.
std::string limit_boot_missing() {
  void* p = mmap(nullptr, kLimit, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    return "the host refuses a 64 GiB MAP_NORESERVE reservation (overcommit policy or "
           "address-space limit)";
  }
  munmap(p, kLimit);
  const std::uint64_t available = mem_available_bytes();
  if (available < kBootTouches + kHeadroom) {
    return "booting at the 64 GiB limit writes " + std::to_string(kBootTouches >> 20) +
           " MiB of frame metadata; MemAvailable is " + std::to_string(available >> 20) + " MiB";
  }
  return {};
}

const std::string g_missing = limit_boot_missing();

}  // namespace

TEST_SUITE("unit") {
  TEST_CASE("boot_accepts_the_maximum_physical_memory_and_refuses_one_frame_more" *
            vmspace::test::skip_if(
                !g_missing.empty(),
                "boot_accepts_the_maximum_physical_memory_and_refuses_one_frame_more", g_missing)) {
    REQUIRE_FALSE(is_booted());
    BootConfig over;
    over.phys_mem_bytes = kLimit + kPageSize;
    CHECK(boot(over).error() == Error::InvalidArgs);
    CHECK_FALSE(is_booted());
    // The logged reason names the same bound the header documents.
    if (vmspace::test::death_tests_unavailable().empty()) {
      const auto child = vmspace::test::run_in_child([&] { (void)boot(over); });
      CHECK_FALSE(child.died);
      CHECK(child.output.find("must be a multiple of 4 KiB in [4 MiB, 64 GiB]") !=
            std::string::npos);
    }

    BootConfig at_limit;
    at_limit.phys_mem_bytes = kLimit;
    REQUIRE(boot(at_limit).has_value());
    CHECK(boot_config() == at_limit);
    CHECK(max_paddr() == kLimit);
    // The last frame is backed host memory (fresh, so zero), linearly mapped.
    std::byte* last = paddr_to_vaddr(kLimit - kPageSize);
    CHECK(*reinterpret_cast<volatile std::uint64_t*>(last) == 0);
    CHECK(vaddr_to_paddr(last) == kLimit - kPageSize);
    auto frame = FrameAllocOptions().alloc_frame();
    CHECK(frame.has_value());
  }
}
