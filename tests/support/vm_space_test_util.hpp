// VmSpace: OSTD's vmspace scenarios (`ostd/src/mm/test.rs`, module vmspace), 2 MiB user mappings
// and their splits, I/O memory, argument errors (returned where OSTD panics), activation, and what
// dropping a space releases.
//
// Shared by the vm_space_*_test.cpp files (one executable, unit_vm_space).
#pragma once

#include <doctest/doctest.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <vector>

#include <vmspace/frame_allocator.hpp>
#include <vmspace/kernel_page_table.hpp>
#include <vmspace/vm_space.hpp>

#include "frame_test_util.hpp"
#include "result_check.hpp"
#include "vm_test_util.hpp"

using namespace vmspace;
using namespace vmspace::test;

namespace {

constexpr Paddr kIoMemPaddr = 0x100'0000'0000ULL;  // far above the emulated RAM

using Queried = std::pair<VaRange, std::optional<VmQueriedItem>>;

inline Queried query_at(const VmSpace& space, Vaddr va, std::size_t len = kPageSize) {
  auto g = disable_preempt();
  auto c = space.cursor(g, {va, va + len});
  REQUIRE(c.has_value());
  auto q = c->query();
  REQUIRE(q.has_value());
  return *q;
}

// Forwards to the allocator it replaced and fails every allocation after `budget` successes.
class FailingAllocator final : public GlobalFrameAllocator {
 public:
  explicit FailingAllocator(std::size_t budget) : budget_(budget) {
    prev_ = set_global_frame_allocator(this);
  }
  FailingAllocator(const FailingAllocator&) = delete;
  FailingAllocator& operator=(const FailingAllocator&) = delete;
  ~FailingAllocator() override { set_global_frame_allocator(prev_); }

  std::optional<Paddr> alloc(FrameLayout layout) noexcept override {
    if (budget_ == 0) return std::nullopt;
    --budget_;
    return prev_->alloc(layout);
  }
  void dealloc(Paddr addr, std::size_t size) noexcept override { prev_->dealloc(addr, size); }
  void add_free_memory(Paddr addr, std::size_t size) noexcept override {
    prev_->add_free_memory(addr, size);
  }
  std::uint64_t free_bytes() const noexcept override { return prev_->free_bytes(); }

 private:
  GlobalFrameAllocator* prev_ = nullptr;
  std::size_t budget_;
};

// The kernel table's shared upper half, word by word (it must never change because of a user
// space).
inline std::vector<std::uint64_t> kernel_upper_half() {
  const auto* words =
      reinterpret_cast<const std::uint64_t*>(paddr_to_vaddr(kernel_page_table().root_paddr()));
  return std::vector<std::uint64_t>(words + 256, words + 512);
}

}  // namespace
