// AtomicIdSet (id_set_util.hpp).
#include "id_set_util.hpp"

TEST_SUITE("unit") {
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
            vmspace::test::skip_if(!kCountsAllocations,
                                   "atomic_id_set_does_not_allocate_up_to_128_ids",
                                   kNoAllocationCounting)) {
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
    constexpr std::uint32_t kGroups = kWriters + 1;   // Id i belongs to writer i % kGroups...
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
        const auto order = round++ % 2 == 0 ? std::memory_order_release : std::memory_order_acquire;
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
