// IdSet (id_set_util.hpp): OSTD's 26 scenarios.
#include "id_set_util.hpp"

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
    CHECK(collect(
              set.iter_in({IdBound<TestId>::excluded(last_id), IdBound<TestId>::included(last_id)}))
              .empty());
  }
}
