// IdSet (id_set_util.hpp): what OSTD leaves untested.
#include "id_set_util.hpp"

TEST_SUITE("unit") {
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
    CHECK(collect(set.iter_in(
              {IdBound<TestId>::excluded(TestId(127)), IdBound<TestId>::excluded(TestId(199))})) ==
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
                                   kNoAllocationCounting)) {
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
            vmspace::test::skip_if(!kCountsAllocations,
                                   "id_set_beyond_128_ids_allocates_on_first_add_only",
                                   kNoAllocationCounting)) {
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
          case 0:
            return {IdBound<TestId>::included(TestId(raw)), raw, raw + 1U};
          case 1:
            return {IdBound<TestId>::excluded(TestId(raw)), raw + 1U, raw};
          default:
            return {IdBound<TestId>::unbounded(), 0, C};
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
}
