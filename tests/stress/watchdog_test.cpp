// The deadlock watchdog (suite `stress`; not built under ThreadSanitizer, which cannot fork a
// threaded process). A user operation makes worker t0 hold a CursorMut and never return while
// t1 blocks on an overlapping one: no operation completes, so the watchdog must fail the run and
// name both cursors. The run happens in a forked child (run_isolated), because a deadlocked
// engine ends its process; this executable therefore never boots the machine itself.
#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <thread>

#include <vmspace/stress.hpp>

using namespace vmspace;
using namespace vmspace::stress;

TEST_SUITE("stress") {
  TEST_CASE("watchdog_reports_held_and_waiting_cursors") {
    StressOptions o;
    o.profile = Profile::Overlapping;
    o.threads = 2;
    o.spaces = 1;
    o.seconds = 30;  // the watchdog ends the run long before
    o.seed = 7;
    o.watchdog_seconds = 1;
    // No checkpoint while the deadlock builds up: t1 must be blocked on the cursor, not parked.
    o.checkpoint_ms = 1e6;
    OpMix mix;
    mix.mut_session = mix.ro_session = mix.read = mix.write = mix.activate = 0;
    mix.custom = 1;
    o.mix = mix;
    const Vaddr base = std::uint64_t{64} << 20;
    const VaRange held{base, base + 16 * kPageSize};
    o.custom_op = [held](StressContext& ctx) {
      const VaRange range =
          ctx.thread_index() == 0 ? held : VaRange{held.start + 4 * kPageSize, held.end};
      (void)ctx.with_cursor(0, range, CursorKind::Mutable, LockMode::Block, [&](StressCursor& c) {
        (void)c.map_frame(PageProperty::new_user(PageFlags::RW, CachePolicy::Writeback));
        // t0 never lets go (the child process ends when the watchdog fires).
        while (ctx.thread_index() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
      });
    };
    const StressReport r = run_isolated(o);
    INFO(r.to_text());
    REQUIRE(r.setup_error.empty());
    CHECK_FALSE(r.passed());
    REQUIRE_FALSE(r.violations.empty());
    const StressViolation& v = r.violations.back();
    CHECK(v.kind == "deadlock");
    CHECK(v.description.find("no operation completed for") != std::string::npos);
    CHECK(v.description.find("t0 (cpu") != std::string::npos);
    CHECK(v.description.find("holds cursor_mut [0x4000000, 0x4010000) of space 0") !=
          std::string::npos);
    CHECK(v.description.find("waits for cursor_mut [0x4004000, 0x4010000) of space 0") !=
          std::string::npos);
    CHECK(v.description.find("overlapping cursors held by t0") != std::string::npos);
    CHECK(r.verdict().rfind("FAIL: ", 0) == 0);
  }
}
