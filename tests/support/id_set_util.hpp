// Tests for IdSet and AtomicIdSet (id_set.hpp).
//
// The first 26 cases port OSTD's id_set tests (ostd/src/util/id_set.rs) scenario by scenario,
// under the same names and with the same cardinalities. The rest cover what OSTD leaves
// untested: sets beyond the inline capacity (heap words), a cardinality known only at run
// time, value semantics, the absence of heap allocation up to 128 ids, a randomized comparison
// against std::set, and AtomicIdSet (single-threaded semantics for every memory order, and
// concurrent use; run these under ThreadSanitizer too).
//
// Shared by the id_set_*_test.cpp files (one executable, unit_id_set).
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <iterator>
#include <new>
#include <ostream>
#include <random>
#include <ranges>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <vmspace/id_set.hpp>

#include "skip.hpp"

// Heap allocations made by the calling thread, so tests can prove that small sets never
// allocate. Global operator new/delete are replaced for this executable only, in
// id_set_alloc_count.cpp (one definition for all of unit_id_set's sources).
//
// clang's ThreadSanitizer runtime defines the global operators itself (statically linked), so
// they cannot be replaced there: that build skips the allocation-counting tests.
#if defined(__has_feature)
#if __has_feature(thread_sanitizer) && !defined(__SANITIZE_THREAD__)
#define VMS_TEST_NO_OPERATOR_NEW_REPLACEMENT 1
#endif
#endif
#ifdef VMS_TEST_NO_OPERATOR_NEW_REPLACEMENT
constexpr bool kCountsAllocations = false;
#else
constexpr bool kCountsAllocations = true;
#endif

inline constexpr const char* kNoAllocationCounting =
    "this build cannot replace operator new to count allocations (clang ThreadSanitizer)";

// Incremented by the replaced operator new on the allocating thread.
extern thread_local std::size_t tl_allocation_count;

namespace {

using vmspace::AtomicIdSet;
using vmspace::IdBound;
using vmspace::IdRange;
using vmspace::IdSet;

// An id type with a compile-time cardinality C, like OSTD's `MockId<C>`. Constructing an id
// >= C aborts, as OSTD's `Id::new` panics.
template <std::uint32_t C>
class MockId {
 public:
  explicit MockId(std::uint32_t raw) : raw_(raw) {
    VMS_ASSERT(raw < C, "MockId<{}>({}) is out of range", C, raw);
  }

  static std::uint32_t cardinality() noexcept { return C; }
  std::uint32_t as_index() const noexcept { return raw_; }
  static MockId from_index(std::uint32_t i) noexcept { return MockId(i); }

  friend bool operator==(MockId, MockId) = default;

 private:
  std::uint32_t raw_;
};

template <std::uint32_t C>
std::ostream& operator<<(std::ostream& os, const std::vector<MockId<C>>& ids) {
  os << '[';
  for (std::size_t i = 0; i < ids.size(); ++i) os << (i == 0 ? "" : ", ") << ids[i].as_index();
  return os << ']';
}

// An id type whose cardinality is only known at run time, like CpuId (fixed at boot). It is
// read once from VMSPACE_TEST_RUNTIME_IDS (default 130: heap words, partial last word), so the
// tests below must not assume any particular value.
inline std::uint32_t read_runtime_cardinality() {
  const char* text = std::getenv("VMSPACE_TEST_RUNTIME_IDS");
  const unsigned long value = text != nullptr ? std::strtoul(text, nullptr, 10) : 130;
  VMS_ASSERT(value > 0 && value <= 100000, "bad VMSPACE_TEST_RUNTIME_IDS {}", value);
  return static_cast<std::uint32_t>(value);
}

class RuntimeId {
 public:
  explicit RuntimeId(std::uint32_t raw) : raw_(raw) {
    VMS_ASSERT(raw < cardinality(), "RuntimeId({}) is out of range", raw);
  }

  static std::uint32_t cardinality() noexcept {
    static const std::uint32_t num_ids = read_runtime_cardinality();
    return num_ids;
  }
  std::uint32_t as_index() const noexcept { return raw_; }
  static RuntimeId from_index(std::uint32_t i) noexcept { return RuntimeId(i); }

  friend bool operator==(RuntimeId, RuntimeId) = default;
  friend std::ostream& operator<<(std::ostream& os, RuntimeId id) { return os << "cpu" << id.raw_; }

 private:
  std::uint32_t raw_;
};

static_assert(vmspace::IdType<MockId<1>>);
static_assert(vmspace::IdType<RuntimeId>);
static_assert(!vmspace::IdType<int>);
static_assert(std::forward_iterator<IdSet<MockId<10>>::Iterator>);
static_assert(std::ranges::forward_range<IdSet<MockId<10>>>);
static_assert(std::ranges::view<IdSet<MockId<10>>::View>);
static_assert(std::ranges::forward_range<IdSet<MockId<1000>>::View>);
static_assert(sizeof(IdSet<MockId<128>>) == 24, "two inline words plus two 32-bit counts");

template <std::ranges::input_range R>
auto collect(R&& range) {
  std::vector<std::ranges::range_value_t<R>> out;
  for (auto id : range) out.push_back(id);
  return out;
}

template <class Id>
std::vector<Id> ids_of(std::initializer_list<std::uint32_t> raws) {
  std::vector<Id> out;
  for (std::uint32_t raw : raws) out.push_back(Id(raw));
  return out;
}

// The set {0, 1, 2, 5, 6} over cardinality 7 that the iter_in tests share.
inline IdSet<MockId<7>> iter_in_fixture() {
  using TestId = MockId<7>;
  IdSet<TestId> set;
  for (std::uint32_t raw : {0U, 1U, 2U, 5U, 6U}) set.add(TestId(raw));
  return set;
}

constexpr std::memory_order kAllOrders[] = {
    std::memory_order_relaxed, std::memory_order_consume, std::memory_order_acquire,
    std::memory_order_release, std::memory_order_acq_rel, std::memory_order_seq_cst,
};

}  // namespace
