// Proof that the stress engine finds bugs (suite `stress-mutation`, builds configured with
// -Dmutations=true). Each deliberate fault of internal/mutation.hpp must be reported by a
// bounded run: every trial runs the engine in a forked child (run_isolated: a mutation corrupts
// the machine, and some mutations make the library abort in debug builds) and must fail. A
// control run of the same configuration without the mutation must pass, so that what the trials
// detect is the mutation and not the configuration.
//
// The configurations (profile, threads, duration, watchdog) were chosen by measuring detection
// rates with `vmspace-stress --mutation NAME --trials 50` (see README.md, "Stress testing").
// The parent process never boots the machine: each child boots its own.
#include <doctest/doctest.h>

#include <cstdio>
#include <string>

#include <vmspace/stress.hpp>

using namespace vmspace;
using namespace vmspace::stress;
using vmspace::internal::Mutation;

namespace {

struct MutationCase {
  Mutation mutation;
  Profile profile;
  unsigned threads;
  double seconds;
  double watchdog_seconds;
};

// Trials per mutation in the test (every one must detect the mutation).
constexpr unsigned kTrials = 5;

// With the library's debug assertions compiled in, a mutation may first trip one of them (the
// child aborts: a "crash" finding). Without them (NDEBUG: CI's mutation job builds release),
// the engine's own checks — mutual exclusion, replay, TLB accounting, the watchdog — must be
// what reports every trial.
#ifdef NDEBUG
constexpr bool kEngineChecksOnly = true;
#else
constexpr bool kEngineChecksOnly = false;
#endif

StressOptions options_for(const MutationCase& c, std::uint64_t seed) {
  StressOptions o;
  o.mutation = c.mutation;
  o.profile = c.profile;
  o.threads = c.threads;
  o.spaces = 2;
  o.seconds = c.seconds;
  o.seed = seed;
  o.watchdog_seconds = c.watchdog_seconds;
  o.checkpoint_ms = 100;
  o.minimize_seconds = 2;
  o.stop_on_violation = true;
  return o;
}

void check_detected(const MutationCase& c) {
  unsigned detected = 0;
  for (unsigned t = 0; t < kTrials; ++t) {
    const StressReport r = run_isolated(options_for(c, 1000 + t));
    INFO(r.to_text());
    REQUIRE(r.setup_error.empty());
    CHECK_FALSE(r.passed());
    if (!r.passed()) ++detected;
    const std::string by = r.violations.empty() ? "?" : r.violations.front().kind;
    if (kEngineChecksOnly)
      CHECK_MESSAGE(by != "crash", "the child crashed before an engine check fired");
    std::printf("%s trial %u: %s (first report: %s)\n", vmspace::internal::to_string(c.mutation), t,
                r.passed() ? "NOT detected" : "detected", by.c_str());
  }
  CHECK(detected == kTrials);
  // The control: the same configuration without the mutation passes.
  MutationCase control = c;
  control.mutation = Mutation::None;
  const StressReport ok = run_isolated(options_for(control, 1000));
  INFO(ok.to_text());
  CHECK(ok.setup_error.empty());
  CHECK(ok.passed());
}

}  // namespace

TEST_SUITE("stress-mutation") {
  // Cursors lock only their sub-tree root: overlapping cursors of two threads run at once (the
  // online and replayed mutual-exclusion checks), nodes a cursor created stay locked (the
  // watchdog reports the deadlock), and unlocking nodes nobody locked aborts in debug builds.
  TEST_CASE("skip_phase2_locks_is_detected") {
    check_detected({Mutation::SkipPhase2Locks, Profile::Overlapping, 4, 10, 3});
  }

  // Unmapped frames go to RCU at issue time instead of with the TLB dispatch. Through VmSpace
  // the issue and the dispatch happen inside one RCU read section, so no frame can actually be
  // freed early; what the engine sees is that unmaps which removed frames handed none to the
  // dispatcher (the frames-kept accounting check).
  TEST_CASE("release_frame_before_dispatch_is_detected") {
    check_detected({Mutation::ReleaseFrameBeforeDispatch, Profile::Mixed, 4, 10, 3});
  }

  // A cursor may lock a node that was detached meanwhile: its operations land in a dead
  // sub-tree while another thread's cursor over the same range runs in the live tree
  // (mutual exclusion, serializability and refinement checks).
  TEST_CASE("skip_stray_check_is_detected") {
    check_detected({Mutation::SkipStrayCheck, Profile::Overlapping, 4, 10, 3});
  }

  // Cursors unlock the root before the nodes below it, then walk a tree others may be changing:
  // they unlock nodes other threads hold (an abort in debug builds, broken mutual exclusion
  // otherwise).
  TEST_CASE("unlock_wrong_order_is_detected") {
    check_detected({Mutation::UnlockWrongOrder, Profile::Overlapping, 4, 10, 3});
  }
}
