// Short stress runs of every profile, the engine's hooks, and the stress-level versions of the
// blocking and self-overlap tests (suites `stress` and `threaded`: the TSan job runs them).
// Worker threads never use doctest assertions: they count, and the test checks the counts.
#include <doctest/doctest.h>

#include <atomic>
#include <string>

#include <vmspace/frame_allocator.hpp>
#include <vmspace/stress.hpp>

#include "stress_support.hpp"

using namespace vmspace;
using namespace vmspace::stress;
using vmspace::stress_test::ensure_machine;
using vmspace::stress_test::short_run;

namespace {

void check_passed(const StressReport& r, std::uint64_t min_checkpoints = 2) {
  INFO(r.to_text());
  CHECK(r.setup_error.empty());
  CHECK(r.passed());
  CHECK(r.violations_total == 0);
  CHECK(r.total_ops > 1000);
  CHECK(r.checkpoints >= min_checkpoints);
  CHECK(r.records_replayed > 0);
  CHECK(r.tlb_stale_hits == 0);
  CHECK(r.leaked_bytes == 0);
}

}  // namespace

TEST_SUITE("stress") {
  TEST_CASE("profile_disjoint") {
    ensure_machine();
    const StressReport r = run(short_run(Profile::Disjoint, 101));
    check_passed(r);
    CHECK(r.count_ok(OpKind::Map) > 0);
    CHECK(r.count_ok(OpKind::Unmap) > 0);
    // Disjoint slots never contend: no try-lock may fail for another thread's cursor... except
    // try_cursor over a node a phase-1 walk of another thread briefly locks to create a child.
    CHECK(r.count_ok(OpKind::Open) > 0);
  }

  TEST_CASE("profile_leaf_contended") {
    ensure_machine();
    const StressReport r = run(short_run(Profile::LeafContended, 102));
    check_passed(r);
    CHECK(r.count_ok(OpKind::Map) > 0);
    CHECK(r.count_ok(OpKind::Protect) > 0);
    CHECK(r.count(OpKind::Read) + r.count(OpKind::Write) > 0);
  }

  TEST_CASE("profile_overlapping") {
    ensure_machine();
    const StressReport r = run(short_run(Profile::Overlapping, 103));
    check_passed(r);
    CHECK(r.count_ok(OpKind::MapHuge) > 0);
    CHECK(r.count_ok(OpKind::Unmap) > 0);
  }

  TEST_CASE("profile_mixed") {
    ensure_machine();
    const StressReport r = run(short_run(Profile::Mixed, 104));
    check_passed(r);
    CHECK(r.count_ok(OpKind::Read) > 0);
    CHECK(r.count_ok(OpKind::Write) > 0);
    CHECK(r.count(OpKind::Fault) > 0);
    CHECK(r.count_ok(OpKind::Activate) > 0);
    // Nested attempts overlapping the thread's own cursor happened and were refused.
    const auto deadlock = outcome_index(Error::WouldDeadlock);
    CHECK(r.counts[static_cast<std::size_t>(OpKind::OpenNested)][deadlock] > 0);
  }

  TEST_CASE("ops_mode_and_json_report") {
    ensure_machine();
    StressOptions o = short_run(Profile::Overlapping, 105);
    o.ops = 20000;
    o.seconds = 0;
    const StressReport r = run(o);
    check_passed(r, 1);
    CHECK(r.total_ops >= 20000);
    const std::string json = r.to_json();
    CHECK(json.find("\"passed\": true") != std::string::npos);
    CHECK(r.verdict().rfind("PASS: ", 0) == 0);
    CHECK(r.to_text().find(r.verdict()) != std::string::npos);
  }

  TEST_CASE("bad_options_are_setup_errors") {
    ensure_machine();
    StressOptions o = short_run(Profile::Mixed, 1);
    o.threads = 0;
    CHECK_FALSE(run(o).setup_error.empty());
    o.threads = 64;  // the machine has 16 CPUs
    const StressReport r = run(o);
    CHECK_FALSE(r.setup_error.empty());
    CHECK_FALSE(r.passed());
    CHECK(r.verdict().rfind("ERROR: ", 0) == 0);
#ifndef VMSPACE_MUTATIONS
    o.threads = 2;
    o.mutation = vmspace::internal::Mutation::SkipStrayCheck;
    CHECK_FALSE(run(o).setup_error.empty());
#endif
  }

  // The hooks: a user operation set and a user page-fault handler, recorded and checked like the
  // engine's own operations.
  TEST_CASE("user_hooks_are_recorded_and_checked") {
    ensure_machine();
    StressOptions o = short_run(Profile::Overlapping, 106);
    OpMix mix = default_mix(Profile::Overlapping);
    mix.custom = 4;
    o.mix = mix;
    const VaRange region{std::uint64_t{3} << 30, (std::uint64_t{3} << 30) + (1u << 20)};
    std::atomic<std::uint64_t> custom_ops{0};
    std::atomic<std::uint64_t> hook_calls{0};
    o.custom_op = [&](StressContext& ctx) {
      custom_ops.fetch_add(1, std::memory_order_relaxed);
      // Map or unmap a random page of our own region, then copy through it.
      const Vaddr page = region.start + (ctx.rng()() % 256) * kPageSize;
      const std::size_t space = ctx.rng()() % ctx.num_spaces();
      (void)ctx.with_cursor(
          space, {page, page + 2 * kPageSize}, CursorKind::Mutable, LockMode::Block,
          [&](StressCursor& c) {
            if (ctx.rng()() % 2 == 0) {
              (void)c.map_frame(PageProperty::new_user(PageFlags::RW, CachePolicy::Writeback));
            } else {
              (void)c.unmap(2 * kPageSize);
            }
          });
      if (!ctx.active_space()) (void)ctx.activate(space);
      (void)ctx.write(page, 64);
      (void)ctx.read(page, 64);
    };
    o.fault_hook = [&](StressContext& ctx, const PageFaultInfo& info) -> Result<void> {
      hook_calls.fetch_add(1, std::memory_order_relaxed);
      auto idx = ctx.space_index(*info.space);
      const Vaddr page = align_down(info.address, kPageSize);
      if (!idx || page < region.start || page >= region.end) return err(Error::PageFault);
      Result<void> out = err(Error::PageFault);
      (void)ctx.with_cursor(
          *idx, {page, page + kPageSize}, CursorKind::Mutable, LockMode::Block,
          [&](StressCursor& c) {
            auto q = c.query();
            if (q && q->second) {
              if (has(q->second->prop.flags, PageFlags::R)) out = {};
            } else if (c.map_frame(PageProperty::new_user(PageFlags::RW, CachePolicy::Writeback))) {
              out = {};
            }
          });
      return out;
    };
    const StressReport r = run(o);
    check_passed(r);
    CHECK(custom_ops.load() > 0);
    CHECK(r.count(OpKind::Custom) == custom_ops.load());
    CHECK(hook_calls.load() > 0);
    CHECK(r.count(OpKind::Fault) == hook_calls.load());
  }

  // Stress-level self-overlap: every worker repeatedly holds a cursor and asks for an overlapping
  // one in the same space. It must be refused (WouldDeadlock, or WouldBlock when another thread
  // holds a node it needs) without ever blocking; the replay also checks that no such request was
  // granted.
  TEST_CASE("stress_self_overlap_is_refused") {
    ensure_machine();
    StressOptions o = short_run(Profile::Overlapping, 107);
    OpMix mix;
    mix.mut_session = 0;
    mix.ro_session = 0;
    mix.read = mix.write = mix.activate = 0;
    mix.custom = 1;
    o.mix = mix;
    std::atomic<std::uint64_t> refused{0};
    std::atomic<std::uint64_t> granted{0};
    std::atomic<std::uint64_t> other{0};
    o.custom_op = [&](StressContext& ctx) {
      const Vaddr base = (std::uint64_t{64} << 20) + (ctx.rng()() % 1024) * kPageSize;
      (void)ctx.with_cursor(
          0, {base, base + 16 * kPageSize}, CursorKind::Mutable, LockMode::Block,
          [&](StressCursor& outer) {
            (void)outer.map_frame(PageProperty::new_user(PageFlags::RW, CachePolicy::Writeback));
            const Vaddr s = base + (ctx.rng()() % 16) * kPageSize;
            auto inner = ctx.with_cursor(0, {s, s + 4 * kPageSize}, CursorKind::ReadOnly,
                                         LockMode::Block, [&](StressCursor&) {});
            if (inner) {
              granted.fetch_add(1, std::memory_order_relaxed);
            } else if (inner.error() == Error::WouldDeadlock ||
                       inner.error() == Error::WouldBlock) {
              refused.fetch_add(1, std::memory_order_relaxed);
            } else {
              other.fetch_add(1, std::memory_order_relaxed);
            }
          });
    };
    const StressReport r = run(o);
    check_passed(r);
    CHECK(refused.load() > 0);
    CHECK(granted.load() == 0);
    CHECK(other.load() == 0);
  }

  // Stress-level blocking: all workers fight for cursors over one small range (blocking), map and
  // unmap inside it; the online and replayed mutual-exclusion checks must see no overlap.
  TEST_CASE("stress_overlapping_cursors_block") {
    ensure_machine();
    StressOptions o = short_run(Profile::Overlapping, 108);
    OpMix mix;
    mix.mut_session = 0;
    mix.ro_session = 0;
    mix.read = mix.write = mix.activate = 0;
    mix.custom = 1;
    mix.p_try = 0;
    o.mix = mix;
    std::atomic<std::uint64_t> sessions{0};
    o.custom_op = [&](StressContext& ctx) {
      const Vaddr base = std::uint64_t{64} << 20;
      const Vaddr s = base + (ctx.rng()() % 8) * kPageSize;
      auto opened = ctx.with_cursor(
          1 % ctx.num_spaces(), {s, s + 8 * kPageSize}, CursorKind::Mutable, LockMode::Block,
          [&](StressCursor& c) {
            (void)c.map_frame(PageProperty::new_user(PageFlags::RW, CachePolicy::Writeback));
            (void)c.jump(s);
            (void)c.unmap(4 * kPageSize);
          });
      if (opened) sessions.fetch_add(1, std::memory_order_relaxed);
    };
    const StressReport r = run(o);
    check_passed(r);
    CHECK(sessions.load() > 100);
    CHECK(r.count(OpKind::Custom) == r.count_ok(OpKind::Custom));
  }
}
