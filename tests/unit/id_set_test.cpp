// Tests for IdSet and AtomicIdSet (id_set.hpp).
//
// The first 26 cases port OSTD's id_set tests (ostd/src/util/id_set.rs) scenario by scenario,
// under the same names and with the same cardinalities. The rest cover what OSTD leaves
// untested: sets beyond the inline capacity (heap words), a cardinality known only at run
// time, value semantics, the absence of heap allocation up to 128 ids, a randomized comparison
// against std::set, and AtomicIdSet (single-threaded semantics for every memory order, and
// concurrent use; run these under ThreadSanitizer too).
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
// allocate. Global operator new/delete are replaced for this executable only.
// The malloc/free calls sit in out-of-line helpers: once gcc inlines the replaced operators
// into their callers it sees `new[]` paired with free() and warns (-Wmismatched-new-delete),
// although both halves are this file's.
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

namespace {
thread_local std::size_t tl_allocation_count = 0;

#ifndef VMS_TEST_NO_OPERATOR_NEW_REPLACEMENT
[[gnu::noinline]] void* counted_allocate(std::size_t size) {
  ++tl_allocation_count;
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
[[gnu::noinline]] void counted_release(void* p) noexcept { std::free(p); }
#endif
}  // namespace

#ifndef VMS_TEST_NO_OPERATOR_NEW_REPLACEMENT
void* operator new(std::size_t size) { return counted_allocate(size); }
void* operator new[](std::size_t size) { return counted_allocate(size); }
void operator delete(void* p) noexcept { counted_release(p); }
void operator delete[](void* p) noexcept { counted_release(p); }
void operator delete(void* p, std::size_t) noexcept { counted_release(p); }
void operator delete[](void* p, std::size_t) noexcept { counted_release(p); }
#endif

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
std::uint32_t read_runtime_cardinality() {
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
  friend std::ostream& operator<<(std::ostream& os, RuntimeId id) {
    return os << "cpu" << id.raw_;
  }

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
IdSet<MockId<7>> iter_in_fixture() {
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

TEST_SUITE("unit") {
  // ---- OSTD's 26 scenarios ----

  TEST_CASE("id_set_empty") {
    using TestId = MockId<10>;
    const auto set = IdSet<TestId>::new_empty();
    CHECK(set.is_empty());
    CHECK(set.count() == 0);
    for (std::uint32_t i = 0; i < 10; ++i) CHECK_FALSE(set.contains(TestId(i)));
  }

  TEST_CASE("id_set_full") {
    using TestId = MockId<10>;
    const auto set = IdSet<TestId>::new_full();
    CHECK_FALSE(set.is_empty());
    CHECK(set.count() == 10);
    for (std::uint32_t i = 0; i < 10; ++i) CHECK(set.contains(TestId(i)));
  }

  TEST_CASE("id_set_add_remove") {
    using TestId = MockId<64>;
    auto set = IdSet<TestId>::new_empty();
    CHECK(set.is_empty());

    set.add(TestId(0));
    CHECK(set.contains(TestId(0)));
    CHECK(set.count() == 1);
    CHECK_FALSE(set.is_empty());

    set.add(TestId(63));
    CHECK(set.contains(TestId(63)));
    CHECK(set.count() == 2);

    set.add(TestId(32));
    CHECK(set.contains(TestId(32)));
    CHECK(set.count() == 3);

    set.remove(TestId(0));
    CHECK_FALSE(set.contains(TestId(0)));
    CHECK(set.count() == 2);

    set.remove(TestId(63));
    CHECK_FALSE(set.contains(TestId(63)));
    CHECK(set.count() == 1);

    set.remove(TestId(32));
    CHECK_FALSE(set.contains(TestId(32)));
    CHECK(set.count() == 0);
    CHECK(set.is_empty());

    // Removing an absent id is fine and changes nothing.
    set.remove(TestId(1));
    CHECK(set.is_empty());
  }

  TEST_CASE("id_set_add_remove_multi_part") {
    using TestId = MockId<128>;
    auto set = IdSet<TestId>::new_empty();
    set.add(TestId(0));
    set.add(TestId(63));   // Last bit of the first word.
    set.add(TestId(64));   // First bit of the second word.
    set.add(TestId(127));  // Last bit of the second word.

    CHECK(set.count() == 4);
    CHECK(set.contains(TestId(0)));
    CHECK(set.contains(TestId(63)));
    CHECK(set.contains(TestId(64)));
    CHECK(set.contains(TestId(127)));

    set.remove(TestId(63));
    CHECK_FALSE(set.contains(TestId(63)));
    CHECK(set.count() == 3);

    set.remove(TestId(64));
    CHECK_FALSE(set.contains(TestId(64)));
    CHECK(set.count() == 2);
  }

  TEST_CASE("id_set_add_all_clear") {
    using TestId = MockId<70>;  // Two words, the second not full.
    auto set = IdSet<TestId>::new_empty();

    set.add_all();
    CHECK(set.count() == 70);
    CHECK(set.is_full());
    for (std::uint32_t i = 0; i < 70; ++i) CHECK(set.contains(TestId(i)));

    set.clear();
    CHECK(set.is_empty());
    CHECK(set.count() == 0);
    for (std::uint32_t i = 0; i < 70; ++i) CHECK_FALSE(set.contains(TestId(i)));
  }

  TEST_CASE("id_set_iter") {
    using TestId = MockId<5>;
    auto set = IdSet<TestId>::new_empty();
    set.add(TestId(2));
    set.add(TestId(0));
    set.add(TestId(4));

    CHECK(collect(set.iter()) == ids_of<TestId>({0, 2, 4}));

    set.clear();
    CHECK(collect(set.iter()).empty());
  }

  TEST_CASE("id_set_iter_full") {
    using TestId = MockId<3>;
    const auto set = IdSet<TestId>::new_full();
    CHECK(collect(set.iter()) == ids_of<TestId>({0, 1, 2}));
  }

  TEST_CASE("id_set_iter_multi_part") {
    using TestId = MockId<100>;
    auto set = IdSet<TestId>::new_empty();
    set.add(TestId(1));
    set.add(TestId(65));
    set.add(TestId(99));
    set.add(TestId(0));
    set.add(TestId(63));

    CHECK(collect(set.iter()) == ids_of<TestId>({0, 1, 63, 65, 99}));
  }

  TEST_CASE("id_set_from_id") {
    using TestId = MockId<10>;
    const TestId id(5);
    const IdSet<TestId> set(id);
    CHECK(set.count() == 1);
    CHECK(set.contains(id));
    CHECK_FALSE(set.contains(TestId(0)));
  }

  TEST_CASE("id_set_cardinality_one") {
    using TestId = MockId<1>;
    auto set = IdSet<TestId>::new_empty();
    CHECK(set.is_empty());
    CHECK(set.count() == 0);

    set.add(TestId(0));
    CHECK(set.contains(TestId(0)));
    CHECK(set.count() == 1);
    CHECK(set.is_full());

    set.remove(TestId(0));
    CHECK_FALSE(set.contains(TestId(0)));
    CHECK(set.count() == 0);
    CHECK(set.is_empty());

    const auto full_set = IdSet<TestId>::new_full();
    CHECK(full_set.contains(TestId(0)));
    CHECK(full_set.count() == 1);
  }

  TEST_CASE("id_set_exact_part_boundary") {
    using TestId = MockId<64>;  // Exactly one full word.
    auto set = IdSet<TestId>::new_empty();
    set.add(TestId(0));
    set.add(TestId(63));
    CHECK(set.count() == 2);

    const auto full_set = IdSet<TestId>::new_full();
    CHECK(full_set.is_full());
    CHECK(full_set.count() == 64);
    for (std::uint32_t i = 0; i < 64; ++i) CHECK(full_set.contains(TestId(i)));
  }

  TEST_CASE("id_set_just_over_part_boundary") {
    using TestId = MockId<65>;  // One bit into the second word.
    auto set = IdSet<TestId>::new_empty();
    set.add(TestId(0));
    set.add(TestId(63));  // End of the first word.
    set.add(TestId(64));  // Start of the second word.
    CHECK(set.count() == 3);

    const auto full_set = IdSet<TestId>::new_full();
    CHECK(full_set.is_full());
    CHECK(full_set.count() == 65);
    for (std::uint32_t i = 0; i < 65; ++i) CHECK(full_set.contains(TestId(i)));
  }

  TEST_CASE("id_set_is_full_with_less_than_full_last_part") {
    using TestId = MockId<70>;  // 64 ids in the first word, 6 in the second.
    auto set = IdSet<TestId>::new_full();
    CHECK(set.is_full());
    CHECK(set.count() == 70);

    set.remove(TestId(69));
    CHECK_FALSE(set.is_full());
    CHECK(set.count() == 69);

    set.add(TestId(69));
    CHECK(set.is_full());
    CHECK(set.count() == 70);
  }

  TEST_CASE("id_set_default") {
    using TestId = MockId<10>;
    const IdSet<TestId> set{};
    CHECK(set.is_empty());
    CHECK(set.count() == 0);
  }

  TEST_CASE("iter_in_range") {  // 1..5
    using TestId = MockId<7>;
    const auto set = iter_in_fixture();
    CHECK(collect(set.iter_in(IdRange<TestId>::half_open(TestId(1), TestId(5)))) ==
          ids_of<TestId>({1, 2}));
  }

  TEST_CASE("iter_in_range_to") {  // ..5
    using TestId = MockId<7>;
    const auto set = iter_in_fixture();
    CHECK(collect(set.iter_in(IdRange<TestId>::to(TestId(5)))) == ids_of<TestId>({0, 1, 2}));
  }

  TEST_CASE("iter_in_range_to_inclusive") {  // ..=5
    using TestId = MockId<7>;
    const auto set = iter_in_fixture();
    CHECK(collect(set.iter_in(IdRange<TestId>::to_inclusive(TestId(5)))) ==
          ids_of<TestId>({0, 1, 2, 5}));
  }

  TEST_CASE("iter_in_range_from") {  // 2..
    using TestId = MockId<7>;
    const auto set = iter_in_fixture();
    CHECK(collect(set.iter_in(IdRange<TestId>::from(TestId(2)))) == ids_of<TestId>({2, 5, 6}));
  }

  TEST_CASE("iter_in_range_full") {  // ..
    using TestId = MockId<7>;
    const auto set = iter_in_fixture();
    CHECK(collect(set.iter_in(IdRange<TestId>::full())) == ids_of<TestId>({0, 1, 2, 5, 6}));
  }

  TEST_CASE("iter_in_bound_tuple_inclusive_exclusive") {
    using TestId = MockId<7>;
    using Bound = IdBound<TestId>;
    const auto set = iter_in_fixture();
    CHECK(collect(set.iter_in({Bound::included(TestId(1)), Bound::excluded(TestId(5))})) ==
          ids_of<TestId>({1, 2}));
  }

  TEST_CASE("iter_in_bound_tuple_exclusive_inclusive") {
    using TestId = MockId<7>;
    using Bound = IdBound<TestId>;
    const auto set = iter_in_fixture();
    CHECK(collect(set.iter_in({Bound::excluded(TestId(1)), Bound::included(TestId(5))})) ==
          ids_of<TestId>({2, 5}));
  }

  TEST_CASE("iter_in_unbounded_bounds") {
    using TestId = MockId<7>;
    using Bound = IdBound<TestId>;
    const auto set = iter_in_fixture();
    CHECK(collect(set.iter_in({Bound::unbounded(), Bound::unbounded()})) ==
          ids_of<TestId>({0, 1, 2, 5, 6}));
  }

  TEST_CASE("iter_in_half_unbounded") {
    using TestId = MockId<7>;
    using Bound = IdBound<TestId>;
    const auto set = iter_in_fixture();
    CHECK(collect(set.iter_in({Bound::included(TestId(2)), Bound::unbounded()})) ==
          ids_of<TestId>({2, 5, 6}));
    CHECK(collect(set.iter_in({Bound::unbounded(), Bound::included(TestId(2))})) ==
          ids_of<TestId>({0, 1, 2}));
  }

  TEST_CASE("iter_in_range_starts_after_last") {
    using TestId = MockId<7>;
    IdSet<TestId> set;
    for (std::uint32_t raw : {0U, 1U, 2U}) set.add(TestId(raw));
    CHECK(collect(set.iter_in(IdRange<TestId>::from(TestId(3)))).empty());
  }

  TEST_CASE("iter_in_range_ends_after_last") {
    using TestId = MockId<7>;
    IdSet<TestId> set;
    for (std::uint32_t raw : {0U, 1U, 2U}) set.add(TestId(raw));
    CHECK(collect(set.iter_in(IdRange<TestId>::to(TestId(3)))) == ids_of<TestId>({0, 1, 2}));
  }

  TEST_CASE("iter_in_range_next_part") {
    using TestId = MockId<64>;
    const TestId last_id(63);
    IdSet<TestId> set;
    set.add(last_id);
    // (Excluded(63), Included(63)) is the empty interval [64, 64), at the end of the last word.
    CHECK(collect(set.iter_in({IdBound<TestId>::excluded(last_id),
                               IdBound<TestId>::included(last_id)}))
              .empty());
  }

  // ---- Beyond OSTD: IdSet ----

  TEST_CASE("id_set_heap_backed_add_remove_iter") {
    using TestId = MockId<200>;  // Four words; the last holds 8 ids.
    IdSet<TestId> set;
    CHECK(set.is_empty());
    for (std::uint32_t raw : {199U, 0U, 128U, 63U, 64U, 127U, 191U, 192U}) set.add(TestId(raw));
    CHECK(set.count() == 8);
    CHECK(collect(set) == ids_of<TestId>({0, 63, 64, 127, 128, 191, 192, 199}));
    CHECK(collect(set.iter_in(IdRange<TestId>::closed(TestId(64), TestId(191)))) ==
          ids_of<TestId>({64, 127, 128, 191}));
    CHECK(collect(set.iter_in({IdBound<TestId>::excluded(TestId(127)),
                               IdBound<TestId>::excluded(TestId(199))})) ==
          ids_of<TestId>({128, 191, 192}));

    set.remove(TestId(128));
    set.remove(TestId(129));  // Absent.
    CHECK_FALSE(set.contains(TestId(128)));
    CHECK(set.contains(TestId(199)));
    CHECK(set.count() == 7);
  }

  TEST_CASE("id_set_heap_backed_full_with_partial_last_word") {
    auto check_full = []<std::uint32_t C>(MockId<C>) {
      using TestId = MockId<C>;
      CAPTURE(C);
      auto set = IdSet<TestId>::new_full();
      CHECK(set.is_full());
      CHECK(set.count() == C);
      std::vector<TestId> expected;
      for (std::uint32_t i = 0; i < C; ++i) expected.push_back(TestId(i));
      CHECK(collect(set) == expected);

      set.remove(TestId(C - 1));
      CHECK_FALSE(set.is_full());
      set.add(TestId(C - 1));
      set.remove(TestId(0));
      CHECK_FALSE(set.is_full());
      CHECK(set.count() == C - 1);

      IdSet<TestId> rebuilt;
      for (std::uint32_t i = 0; i < C; ++i) rebuilt.add(TestId(i));
      CHECK(rebuilt.is_full());
      CHECK(rebuilt == IdSet<TestId>::new_full());
    };
    check_full(MockId<129>(0));
    check_full(MockId<192>(0));  // Exactly three words.
    check_full(MockId<200>(0));
    check_full(MockId<1000>(0));  // 15 full words and 40 bits.
  }

  TEST_CASE("id_set_runtime_cardinality") {
    const std::uint32_t n = RuntimeId::cardinality();
    CAPTURE(n);
    auto set = IdSet<RuntimeId>::new_full();
    CHECK(set.is_full());
    CHECK(set.count() == n);
    CHECK(set.contains(RuntimeId(n - 1)));
    CHECK(std::ranges::distance(set) == static_cast<std::ptrdiff_t>(n));
    CHECK(collect(set.iter_in(IdRange<RuntimeId>::from(RuntimeId(n - 1)))) ==
          std::vector<RuntimeId>{RuntimeId(n - 1)});

    set.remove(RuntimeId(n - 1));
    CHECK_FALSE(set.is_full());
    CHECK(set.count() == n - 1);
    CHECK(collect(set.iter_in(IdRange<RuntimeId>::from(RuntimeId(n - 1)))).empty());

    set.clear();
    set.add(RuntimeId(n / 2));
    CHECK(collect(set) == std::vector<RuntimeId>{RuntimeId(n / 2)});
  }

  TEST_CASE("id_set_copy_and_move_keep_value_semantics") {
    auto check = []<std::uint32_t C>(MockId<C>) {
      using TestId = MockId<C>;
      CAPTURE(C);
      IdSet<TestId> original;
      original.add(TestId(0));
      original.add(TestId(C - 1));

      IdSet<TestId> copy(original);
      CHECK(copy == original);
      copy.remove(TestId(0));
      CHECK(original.contains(TestId(0)));  // The copy is independent.
      CHECK(copy != original);

      copy = original;
      CHECK(copy == original);
      const IdSet<TestId>& same = copy;
      copy = same;  // Self-assignment keeps the value.
      CHECK(copy == original);

      IdSet<TestId> moved(std::move(copy));
      CHECK(moved == original);
      CHECK(copy.is_empty());  // A moved-from set is empty and still usable.
      CHECK(copy.count() == 0);
      CHECK_FALSE(copy.is_full());
      CHECK(collect(copy).empty());
      CHECK(copy == IdSet<TestId>::new_empty());
      copy.add(TestId(C - 1));
      CHECK(collect(copy) == ids_of<TestId>({C - 1}));

      IdSet<TestId> target = IdSet<TestId>::new_full();
      target = std::move(moved);
      CHECK(target == original);
      CHECK(moved.is_empty());
      moved = target;  // Copy into a moved-from set.
      CHECK(moved == original);

      IdSet<TestId> empty_source;
      target = empty_source;
      CHECK(target.is_empty());

      using std::swap;
      swap(target, moved);
      CHECK(target == original);
      CHECK(moved.is_empty());
    };
    check(MockId<70>(0));
    check(MockId<128>(0));
    check(MockId<1000>(0));
  }

  TEST_CASE("id_set_equality_compares_contents") {
    using TestId = MockId<300>;
    IdSet<TestId> never_touched;
    IdSet<TestId> emptied;
    emptied.add(TestId(299));
    emptied.remove(TestId(299));
    CHECK(never_touched == emptied);  // One has words, the other none; both are empty.
    emptied.add(TestId(150));
    CHECK(never_touched != emptied);
    CHECK(emptied == IdSet<TestId>(TestId(150)));
  }

  TEST_CASE("id_set_does_not_allocate_up_to_128_ids" *
            vmspace::test::skip_if(!kCountsAllocations, "id_set_does_not_allocate_up_to_128_ids",
                                   "this build cannot replace operator new to count allocations (clang ThreadSanitizer)")) {
    using TestId = MockId<128>;
    std::size_t seen = 0;
    const std::size_t before = tl_allocation_count;
    {
      auto set = IdSet<TestId>::new_full();
      set.remove(TestId(5));
      set.add(TestId(127));
      for (TestId id : set.iter_in(IdRange<TestId>::from(TestId(3)))) seen += id.as_index();
      IdSet<TestId> copy(set);
      IdSet<TestId> moved(std::move(copy));
      copy = moved;
      seen += static_cast<std::size_t>(copy == moved) + set.count();
    }
    const std::size_t allocations = tl_allocation_count - before;
    CHECK(allocations == 0);
    CHECK(seen > 0);
  }

  TEST_CASE("id_set_beyond_128_ids_allocates_on_first_add_only" *
            vmspace::test::skip_if(!kCountsAllocations, "id_set_beyond_128_ids_allocates_on_first_add_only",
                                   "this build cannot replace operator new to count allocations (clang ThreadSanitizer)")) {
    using TestId = MockId<129>;
    const std::size_t before = tl_allocation_count;
    IdSet<TestId> set;
    const std::size_t after_construct = tl_allocation_count;
    set.add(TestId(128));
    const std::size_t after_add = tl_allocation_count;
    set.clear();
    set.add(TestId(3));
    set.add_all();
    const std::size_t after_refill = tl_allocation_count;
    CHECK(after_construct - before == 0);  // An empty large set holds no words.
    CHECK(after_add - after_construct == 1);
    CHECK(after_refill - after_add == 0);  // clear() keeps the words.
    CHECK(set.is_full());
  }

  TEST_CASE("id_set_iterator_is_multi_pass") {
    using TestId = MockId<100>;
    IdSet<TestId> set;
    for (std::uint32_t raw : {3U, 64U, 99U}) set.add(TestId(raw));
    auto it = set.begin();
    const auto saved = it;
    CHECK(*it++ == TestId(3));
    CHECK(*it == TestId(64));
    CHECK(*saved == TestId(3));  // Copies advance independently.
    CHECK(saved != it);
    CHECK(std::next(saved) == it);
    ++it;
    ++it;
    CHECK(it == set.end());
    CHECK(std::ranges::distance(set.iter()) == 3);
    CHECK(set.iter_in(IdRange<TestId>::half_open(TestId(4), TestId(64))).empty());
    CHECK(std::ranges::find(set, TestId(99)) != set.end());
  }

  TEST_CASE("iter_in_inverted_or_empty_range_yields_nothing") {
    using TestId = MockId<7>;
    using Bound = IdBound<TestId>;
    const auto set = IdSet<TestId>::new_full();
    CHECK(collect(set.iter_in(IdRange<TestId>::closed(TestId(5), TestId(2)))).empty());
    CHECK(collect(set.iter_in(IdRange<TestId>::half_open(TestId(3), TestId(3)))).empty());
    CHECK(collect(set.iter_in({Bound::excluded(TestId(3)), Bound::excluded(TestId(4))})).empty());
    CHECK(collect(set.iter_in(IdRange<TestId>::to(TestId(0)))).empty());
    CHECK(collect(set.iter_in(IdRange<TestId>::closed(TestId(3), TestId(3)))) ==
          ids_of<TestId>({3}));
    CHECK(collect(set.iter_in(IdRange<TestId>::from(TestId(6)))) == ids_of<TestId>({6}));
  }

  TEST_CASE("id_bound_and_id_range_accessors") {
    using TestId = MockId<7>;
    using Bound = IdBound<TestId>;
    const auto range = IdRange<TestId>::closed(TestId(1), TestId(4));
    CHECK(range.lower().kind() == Bound::Kind::Included);
    CHECK(range.lower().id() == TestId(1));
    CHECK(range.upper() == Bound::included(TestId(4)));
    CHECK(IdRange<TestId>::full().lower().kind() == Bound::Kind::Unbounded);
    CHECK(IdRange<TestId>::to(TestId(2)).upper() == Bound::excluded(TestId(2)));
    CHECK(range.index_interval(7) == std::pair<std::size_t, std::size_t>{1, 5});
    CHECK(IdRange<TestId>::full().index_interval(7) == std::pair<std::size_t, std::size_t>{0, 7});
  }

  TEST_CASE("id_set_prints_ids") {
    using TestId = MockId<70>;
    IdSet<TestId> set;
    std::ostringstream empty_text;
    empty_text << set;
    CHECK(empty_text.str() == "{}");

    for (std::uint32_t raw : {69U, 0U, 64U}) set.add(TestId(raw));
    std::ostringstream text;
    text << set;  // MockId has no operator<<, so indices are printed.
    CHECK(text.str() == "{0, 64, 69}");

    IdSet<RuntimeId> cpus;
    cpus.add(RuntimeId(1));
    cpus.add(RuntimeId(0));
    std::ostringstream cpu_text;
    cpu_text << cpus;  // RuntimeId's own operator<< is used.
    CHECK(cpu_text.str() == "{cpu0, cpu1}");
  }

  // Random operation sequences against std::set, for cardinalities around every word edge.
  TEST_CASE("id_set_matches_std_set_model") {
    auto run = []<std::uint32_t C>(MockId<C>) {
      using TestId = MockId<C>;
      CAPTURE(C);
      std::mt19937 rng(C * 7919U + 1);
      std::uniform_int_distribution<std::uint32_t> pick_id(0, C - 1);
      std::uniform_int_distribution<int> pick_op(0, 99);
      std::uniform_int_distribution<int> pick_kind(0, 2);
      IdSet<TestId> set;
      std::set<std::uint32_t> model;

      // A random bound, and the model's own reading of it as a position between indices:
      // the interval is [lower position, upper position).
      struct ModelBound {
        IdBound<TestId> bound;
        std::size_t as_lower;
        std::size_t as_upper;
      };
      auto random_bound = [&]() -> ModelBound {
        const std::uint32_t raw = pick_id(rng);
        switch (pick_kind(rng)) {
          case 0: return {IdBound<TestId>::included(TestId(raw)), raw, raw + 1U};
          case 1: return {IdBound<TestId>::excluded(TestId(raw)), raw + 1U, raw};
          default: return {IdBound<TestId>::unbounded(), 0, C};
        }
      };

      for (int step = 0; step < 3000; ++step) {
        CAPTURE(step);
        const int op = pick_op(rng);
        const std::uint32_t raw = pick_id(rng);
        if (op < 45) {
          set.add(TestId(raw));
          model.insert(raw);
        } else if (op < 85) {
          set.remove(TestId(raw));
          model.erase(raw);
        } else if (op < 87) {
          set.add_all();
          for (std::uint32_t i = 0; i < C; ++i) model.insert(i);
        } else if (op < 89) {
          set.clear();
          model.clear();
        } else if (op < 91) {
          IdSet<TestId> moved(std::move(set));
          set = moved;
        } else {
          const ModelBound lower = random_bound();
          const ModelBound upper = random_bound();
          const IdRange<TestId> range(lower.bound, upper.bound);
          std::vector<std::uint32_t> expected;
          for (std::uint32_t i : model) {
            if (i >= lower.as_lower && i < upper.as_upper) expected.push_back(i);
          }
          std::vector<std::uint32_t> actual;
          for (TestId id : set.iter_in(range)) actual.push_back(id.as_index());
          REQUIRE(actual == expected);
        }
        REQUIRE(set.contains(TestId(raw)) == model.contains(raw));
        REQUIRE(set.count() == model.size());
        REQUIRE(set.is_empty() == model.empty());
        REQUIRE(set.is_full() == (model.size() == C));
      }
      std::vector<std::uint32_t> all;
      for (TestId id : set) all.push_back(id.as_index());
      CHECK(all == std::vector<std::uint32_t>(model.begin(), model.end()));
    };
    run(MockId<1>(0));
    run(MockId<3>(0));
    run(MockId<63>(0));
    run(MockId<64>(0));
    run(MockId<65>(0));
    run(MockId<127>(0));
    run(MockId<128>(0));
    run(MockId<129>(0));
    run(MockId<200>(0));
    run(MockId<1000>(0));
  }

  // ---- AtomicIdSet ----

  TEST_CASE("atomic_id_set_default_is_empty") {
    using TestId = MockId<70>;
    const AtomicIdSet<TestId> set;
    CHECK(set.load(std::memory_order_relaxed).is_empty());
    for (std::uint32_t i = 0; i < 70; ++i) {
      CHECK_FALSE(set.contains(TestId(i), std::memory_order_relaxed));
    }
  }

  TEST_CASE("atomic_id_set_starts_with_initial_set") {
    auto check = []<std::uint32_t C>(MockId<C>) {
      using TestId = MockId<C>;
      CAPTURE(C);
      IdSet<TestId> initial;
      initial.add(TestId(0));
      initial.add(TestId(C - 1));
      const AtomicIdSet<TestId> set(initial);
      CHECK(set.load(std::memory_order_acquire) == initial);
      CHECK(set.contains(TestId(C - 1), std::memory_order_acquire));

      const AtomicIdSet<TestId> full(IdSet<TestId>::new_full());
      CHECK(full.load(std::memory_order_relaxed).is_full());
    };
    check(MockId<1>(0));
    check(MockId<65>(0));
    check(MockId<128>(0));
    check(MockId<200>(0));
  }

  TEST_CASE("atomic_id_set_load_store_round_trip") {
    auto check = []<std::uint32_t C>(MockId<C>) {
      using TestId = MockId<C>;
      CAPTURE(C);
      IdSet<TestId> pattern;
      for (std::uint32_t i = 0; i < C; i += 3) pattern.add(TestId(i));
      pattern.add(TestId(C - 1));
      const IdSet<TestId> values[] = {pattern, IdSet<TestId>::new_full(), IdSet<TestId>()};

      AtomicIdSet<TestId> set;
      for (const auto store_order : kAllOrders) {
        for (const auto load_order : kAllOrders) {
          for (const auto& value : values) {
            CAPTURE(static_cast<int>(store_order));
            CAPTURE(static_cast<int>(load_order));
            set.store(value, store_order);
            CHECK(set.load(load_order) == value);
          }
        }
      }
    };
    check(MockId<10>(0));
    check(MockId<64>(0));
    check(MockId<70>(0));
    check(MockId<128>(0));
    check(MockId<200>(0));
    check(MockId<1000>(0));
  }

  TEST_CASE("atomic_id_set_store_of_a_moved_from_set_empties_it") {
    using TestId = MockId<300>;
    AtomicIdSet<TestId> set(IdSet<TestId>::new_full());
    IdSet<TestId> source = IdSet<TestId>::new_full();
    IdSet<TestId> taken(std::move(source));
    set.store(source, std::memory_order_release);
    CHECK(set.load(std::memory_order_acquire).is_empty());
    set.store(taken, std::memory_order_release);
    CHECK(set.load(std::memory_order_acquire).is_full());
  }

  TEST_CASE("atomic_id_set_add_remove_contains_every_order") {
    auto check = []<std::uint32_t C>(MockId<C>) {
      using TestId = MockId<C>;
      CAPTURE(C);
      AtomicIdSet<TestId> set;
      // An id that stays in the set throughout (none for a single-id type).
      IdSet<TestId> others;
      if (C >= 3) others.add(TestId(C / 2));
      set.store(others, std::memory_order_relaxed);
      std::vector<TestId> probes = {TestId(0), TestId(C - 1)};
      if (C > 64) probes.push_back(TestId(64));
      for (const TestId id : probes) {
        for (const auto order : kAllOrders) {
          CAPTURE(static_cast<int>(order));
          set.add(id, order);
          for (const auto load_order : kAllOrders) {
            CHECK(set.contains(id, load_order));
          }
          set.add(id, order);  // Adding twice is idempotent.
          set.remove(id, order);
          for (const auto load_order : kAllOrders) {
            CHECK_FALSE(set.contains(id, load_order));
          }
          set.remove(id, order);  // Removing an absent id is fine.
          CHECK_FALSE(set.contains(id, order));
          CHECK(set.load(order) == others);  // Other bits are untouched.
        }
      }
    };
    check(MockId<1>(0));
    check(MockId<64>(0));
    check(MockId<100>(0));
    check(MockId<1000>(0));
  }

  TEST_CASE("atomic_id_set_does_not_allocate_up_to_128_ids" *
            vmspace::test::skip_if(!kCountsAllocations, "atomic_id_set_does_not_allocate_up_to_128_ids",
                                   "this build cannot replace operator new to count allocations (clang ThreadSanitizer)")) {
    using TestId = MockId<128>;
    const std::size_t before = tl_allocation_count;
    bool seen = false;
    {
      AtomicIdSet<TestId> set(IdSet<TestId>::new_full());
      set.remove(TestId(127), std::memory_order_release);
      set.add(TestId(0), std::memory_order_acquire);
      const IdSet<TestId> loaded = set.load(std::memory_order_release);
      set.store(loaded, std::memory_order_seq_cst);
      seen = set.contains(TestId(126), std::memory_order_acq_rel) && loaded.count() == 127;
    }
    const std::size_t allocations = tl_allocation_count - before;
    CHECK(allocations == 0);
    CHECK(seen);
  }

  TEST_CASE("atomic_id_set_prints_a_snapshot") {
    using TestId = MockId<10>;
    AtomicIdSet<TestId> set;
    set.add(TestId(9), std::memory_order_relaxed);
    set.add(TestId(2), std::memory_order_relaxed);
    std::ostringstream text;
    text << set;
    CHECK(text.str() == "{2, 9}");
  }

  // Several threads add and remove disjoint ids that share words, concurrently; a reader loads
  // the set all the while. fetch_or/fetch_and must not lose each other's updates (a
  // read-modify-write done as separate load and store would), and ids nobody touches must
  // stay set in every load.
  TEST_CASE("atomic_id_set_concurrent_add_remove_disjoint_ids") {
    using TestId = MockId<200>;  // Four words, each shared by all writers.
    constexpr std::uint32_t kWriters = 8;
    constexpr std::uint32_t kGroups = kWriters + 1;  // Id i belongs to writer i % kGroups...
    constexpr std::uint32_t kPinnedGroup = kWriters;  // ...or is pinned if that is kWriters.
    constexpr int kRounds = 5000;

    IdSet<TestId> pinned;
    IdSet<TestId> expected;
    for (std::uint32_t i = 0; i < 200; ++i) {
      if (i % kGroups == kPinnedGroup) {
        pinned.add(TestId(i));
        expected.add(TestId(i));
      } else if ((i / kGroups) % 2 == 0) {
        expected.add(TestId(i));  // What the writers leave behind.
      }
    }

    AtomicIdSet<TestId> set(pinned);
    std::atomic<int> writer_errors{0};
    std::atomic<int> reader_errors{0};
    std::atomic<int> reader_loads{0};
    std::atomic<bool> writers_done{false};
    std::atomic<std::uint32_t> ready{0};
    // Threads start together once all exist; otherwise each would finish its share of the
    // work before the next one is even created, and nothing would overlap.
    auto wait_for_start = [&ready] {
      ready.fetch_add(1, std::memory_order_acq_rel);
      while (ready.load(std::memory_order_acquire) < kWriters + 1) std::this_thread::yield();
    };

    std::vector<std::thread> writers;
    for (std::uint32_t w = 0; w < kWriters; ++w) {
      writers.emplace_back([&, w] {
        std::vector<TestId> own;
        for (std::uint32_t i = w; i < 200; i += kGroups) own.push_back(TestId(i));
        wait_for_start();
        int errors = 0;
        for (int round = 0; round < kRounds; ++round) {
          const std::memory_order order = kAllOrders[(static_cast<std::size_t>(round) + w) % 6];
          // Half the rounds toggle each id on its own (short windows, many collisions), the
          // other half hold all own ids at once (more bits per word in flight).
          if (round % 2 == 0) {
            for (TestId id : own) {
              set.add(id, order);
              errors += set.contains(id, order) ? 0 : 1;
              set.remove(id, order);
              errors += set.contains(id, order) ? 1 : 0;
            }
          } else {
            for (TestId id : own) set.add(id, order);
            for (TestId id : own) errors += set.contains(id, order) ? 0 : 1;
            for (TestId id : own) set.remove(id, order);
            for (TestId id : own) errors += set.contains(id, order) ? 1 : 0;
          }
        }
        writer_errors.fetch_add(errors, std::memory_order_relaxed);
        for (TestId id : own) {
          if ((id.as_index() / kGroups) % 2 == 0) set.add(id, std::memory_order_release);
        }
      });
    }
    std::thread reader([&] {
      wait_for_start();
      int round = 0;
      while (!writers_done.load(std::memory_order_acquire) || round == 0) {
        const auto order = round++ % 2 == 0 ? std::memory_order_release
                                            : std::memory_order_acquire;
        const IdSet<TestId> seen = set.load(order);
        for (TestId id : pinned) {
          if (!seen.contains(id)) reader_errors.fetch_add(1, std::memory_order_relaxed);
        }
      }
      reader_loads.store(round, std::memory_order_relaxed);
    });
    for (auto& t : writers) t.join();
    writers_done.store(true, std::memory_order_release);
    reader.join();

    CHECK(writer_errors.load() == 0);
    CHECK(reader_errors.load() == 0);
    CHECK(reader_loads.load() > 0);
    CHECK(set.load(std::memory_order_acquire) == expected);
  }

  // The TLB-dispatch pattern: a thread writes data, then release-loads the set; another thread
  // later acquire-adds its id. The add must synchronize with the load, so the data read after
  // it is not a race. The relaxed flag only makes the add come after the load in real time; it
  // creates no happens-before. Under ThreadSanitizer this reports a data race on `payload`
  // if load(memory_order_release) were implemented as a plain load; without TSan it checks the
  // values only.
  TEST_CASE("atomic_id_set_release_load_synchronizes_with_later_acquire_add") {
    using TestId = MockId<100>;
    for (int iteration = 0; iteration < 50; ++iteration) {
      AtomicIdSet<TestId> set;
      int payload = 0;  // Deliberately not atomic.
      int observed = 0;
      bool dispatcher_saw_activator = true;
      std::atomic<bool> loaded{false};

      std::thread dispatcher([&] {
        payload = 42;
        const IdSet<TestId> targets = set.load(std::memory_order_release);
        dispatcher_saw_activator = targets.contains(TestId(70));
        loaded.store(true, std::memory_order_relaxed);
      });
      std::thread activator([&] {
        while (!loaded.load(std::memory_order_relaxed)) std::this_thread::yield();
        set.add(TestId(70), std::memory_order_acquire);
        observed = payload;
      });
      dispatcher.join();
      activator.join();
      CHECK_FALSE(dispatcher_saw_activator);
      CHECK(observed == 42);
      CHECK(set.contains(TestId(70), std::memory_order_relaxed));
    }
  }
}
