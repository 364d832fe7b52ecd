// Refinement of VmSpace with real frames against the abstract model, as a RapidCheck state
// machine (suite `model`).
//
// Model: the frame handles the test holds (4 KiB frames and segments, by *symbolic* physical
// address: the model cannot know what the allocator returns, so every allocation gets a fresh
// symbolic range and the system records where it really landed), up to two address spaces
// (one AbstractModel each, over symbolic addresses), which space each of the two CPUs has
// active, and the expected contents of every frame written through a mapping.
// System: the real handles, VmSpaces, CPU 0 bound to the test thread (CPU 1 is driven from
// short-lived helper threads, so TLB shootdowns have a remote target).
// Commands: frame alloc/clone/drop, 2 MiB segment alloc, segment slice/split/next, VmSpace
// create/drop/activate/deactivate, map of frames and segments (4 KiB and 2 MiB), unmap (with
// TLB dispatch), protect_next (then a flush, as a kernel must), query, and user-memory copies
// through VmSpace::reader/writer on CPU 0 and reads on CPU 1.
// After every command: results equal the model's; each space's table equals its model (with
// symbolic addresses translated); check_user_table / check_page_table (kernel) /
// check_frame_slots; check_refcount_law after an RCU barrier (exact in handle_ledger builds);
// the exact count of every frame the test holds or maps equals handles + mapping PTEs (the
// vostd law computed from the model); frames the model says are free are free; the bytes of
// every written frame; check_tlb_coherence; no stale-TLB hit on a freed frame.
#include <doctest/doctest.h>

#include <rapidcheck.h>
#include <rapidcheck/state.h>

#include <array>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include <vmspace/check/interpret.hpp>
#include <vmspace/check/invariants.hpp>
#include <vmspace/check/model.hpp>
#include <vmspace/cpu.hpp>
#include <vmspace/fault.hpp>
#include <vmspace/frame_allocator.hpp>
#include <vmspace/kernel_page_table.hpp>
#include <vmspace/tlb.hpp>
#include <vmspace/vm_space.hpp>

#include "pt_gen.hpp"
#include "rc_support.hpp"
#include "vm_model_ops.hpp"
#include "vm_model_system.hpp"

using namespace vmspace;
using namespace vmspace::test;
using check::Mapping;

namespace {

struct VmCommand final : rc::state::Command<VmModel, VmSystem> {
  VmOp op;
  explicit VmCommand(const VmOp& o) : op(o) {}
  void checkPreconditions(const VmModel& m) const override { RC_PRE(applicable(m, op)); }
  void apply(VmModel& m) const override { (void)model_apply(m, op); }
  void run(const VmModel& m0, VmSystem& s) const override {
    VmModel m = m0;
    const VmOutcome want = model_apply(m, op);
    std::string problems;
    const VmOutcome got = system_run(s, m, op, problems);
    ++op_stats()[std::string(to_string(op.kind)) + " " + describe(got.error)];
    const std::string d = problems + compare(m, s, op, want, got);
    if (!d.empty() && std::getenv("VMSPACE_MODEL_DEBUG"))
      std::cerr << "FAIL " << op << ": " << d << std::endl;
    if (!d.empty()) RC_FAIL("results differ after " + test::internal::show(op) + ":\n" + d);
    const std::string c = check_all(m, s);
    if (!c.empty() && std::getenv("VMSPACE_MODEL_DEBUG"))
      std::cerr << "FAIL " << op << ": " << c << std::endl;
    if (!c.empty()) RC_FAIL("state differs after " + test::internal::show(op) + ":\n" + c);
  }
  void show(std::ostream& os) const override { os << op; }
};

// ---- generators ----

// An address near an interesting user-space boundary, or near a mapping of `space`.
rc::Gen<Vaddr> user_va(const VmModel& m, int space) {
  std::vector<Vaddr> near;
  if (space >= 0 && space < kSpaces && m.spaces[space]) {
    for (const auto& [va, mp] : m.spaces[space]->mappings()) {
      near.push_back(va);
      if (mp.level > 1) near.push_back(va + kSz2M / 2);
      if (near.size() >= 32) break;
    }
  }
  return rc::gen::exec([=] {
    if (!near.empty() && *gen::weighted<bool>({{1, false}, {3, true}})) {
      const std::int64_t d = *gen::weighted<std::int64_t>(
          {{6, 0}, {2, 4096}, {2, -4096}, {1, 8192}, {1, -8}, {1, 4092}});
      return *rc::gen::elementOf(near) + static_cast<std::uint64_t>(d);
    }
    const Vaddr base =
        *gen::weighted<Vaddr>({{10, 0}, {2, kSz1G}, {2, kMaxUserspaceVaddr}, {1, kUserEnd}});
    const std::uint64_t off = *gen::weighted<std::uint64_t>({{3, 0},
                                                             {3, kSz4K},
                                                             {2, 2 * kSz4K},
                                                             {2, kSz2M - kSz4K},
                                                             {4, kSz2M},
                                                             {2, kSz2M + kSz4K},
                                                             {2, 2 * kSz2M}});
    if (base == 0 || base == kSz1G) return base + off;
    return base - (off == 0 ? kSz4K : off);
  });
}

rc::Gen<VmOp> vm_op(const VmModel& m) {
  const VmModel model = m;
  std::vector<int> spaces, missing;
  for (int i = 0; i < kSpaces; ++i) (m.spaces[i] ? spaces : missing).push_back(i);
  std::vector<std::size_t> segments, mappable;
  for (std::size_t i = 0; i < m.handles.size(); ++i) {
    if (m.handles[i].segment) segments.push_back(i);
    const std::uint64_t sz = m.handles[i].range.size();
    if (sz == kPageSize || (m.handles[i].segment && sz == kSz2M)) mappable.push_back(i);
  }
  using K = VmOp::Kind;
  const bool few = m.handles.size() < 4;
  std::vector<std::pair<std::size_t, K>> kinds{{few ? 10u : 2u, K::AllocFrame},
                                               {few ? 3u : 1u, K::AllocHuge}};
  if (!m.handles.empty()) kinds.insert(kinds.end(), {{2, K::Clone}, {3, K::Drop}});
  if (!segments.empty()) kinds.insert(kinds.end(), {{2, K::Slice}, {2, K::Split}, {2, K::Next}});
  if (!missing.empty()) kinds.push_back({spaces.empty() ? 20u : 1u, K::CreateSpace});
  if (!spaces.empty()) {
    const bool active0 = m.active[0] >= 0;
    kinds.insert(kinds.end(), {{1, K::DropSpace},
                               {active0 ? 2u : 8u, K::Activate},
                               {1, K::Deactivate},
                               {8, K::Unmap},
                               {5, K::Protect},
                               {4, K::Query},
                               {10, K::Write},
                               {10, K::Read}});
    if (!mappable.empty()) kinds.push_back({30, K::Map});
  }
  return rc::gen::exec([=] {
    VmOp op;
    op.kind = *gen::weighted(kinds);
    if (!model.handles.empty()) op.handle = *rc::gen::inRange<std::size_t>(0, model.handles.size());
    if (!spaces.empty()) op.space = *rc::gen::elementOf(spaces);
    switch (op.kind) {
      case K::Slice:
      case K::Split:
      case K::Next: {
        op.handle = *rc::gen::elementOf(segments);
        const std::uint64_t pages = model.handles[op.handle].range.size() / kPageSize;
        op.a = *rc::gen::inRange<std::uint64_t>(0, pages + 2) * kPageSize;
        op.b = *rc::gen::inRange<std::uint64_t>(0, pages + 2) * kPageSize;
        if (*gen::weighted<bool>({{12, false}, {1, true}})) op.a += 1;
        break;
      }
      case K::CreateSpace:
        op.space = *rc::gen::elementOf(missing);
        break;
      case K::Activate:
      case K::Deactivate:
        op.cpu = *gen::weighted<int>({{3, 0}, {1, 1}});
        break;
      case K::Map: {
        if (!mappable.empty() && *gen::weighted<bool>({{1, false}, {6, true}}))
          op.handle = *rc::gen::elementOf(mappable);
        op.va = *user_va(model, op.space);
        if (model.handles[op.handle].range.size() == kSz2M &&
            *gen::weighted<bool>({{1, false}, {4, true}})) {
          op.va = align_down(op.va, kSz2M);
        }
        op.wide = *gen::weighted<bool>({{2, false}, {1, true}});
        op.flags = *gen::weighted<PageFlags>(
            {{6, PageFlags::RW}, {2, PageFlags::R}, {1, PageFlags::RWX}, {1, PageFlags::None}});
        op.cache = *gen::weighted<CachePolicy>({{12, CachePolicy::Writeback},
                                                {1, CachePolicy::Uncacheable},
                                                {1, CachePolicy::WriteProtected}});
        op.seed = *rc::gen::arbitrary<std::uint8_t>();  // privileged bits the library must ignore
        break;
      }
      case K::Unmap:
      case K::Protect:
        op.va = *user_va(model, op.space);
        op.len = *gen::weighted<std::uint64_t>({{4, kSz4K},
                                                {2, 2 * kSz4K},
                                                {3, kSz2M},
                                                {1, kSz2M + kSz4K},
                                                {2, 2 * kSz2M},
                                                {1, 0},
                                                {1, 3}});
        op.wide = *gen::weighted<bool>({{2, false}, {1, true}});
        op.prot = *gen::prot();
        break;
      case K::Query:
        op.va = align_down(*user_va(model, op.space), kPageSize);
        break;
      case K::Write:
      case K::Read:
        op.cpu = op.kind == K::Read ? *gen::weighted<int>({{3, 0}, {1, 1}}) : 0;
        if (model.active[op.cpu] >= 0 && *gen::weighted<bool>({{1, false}, {4, true}}))
          op.space = model.active[op.cpu];
        op.va = *user_va(model, op.space);
        op.len = *gen::weighted<std::uint64_t>({{1, 0},
                                                {2, 1},
                                                {4, 8},
                                                {2, 100},
                                                {3, kPageSize},
                                                {2, kPageSize + 8},
                                                {1, 3 * kPageSize + 5},
                                                {1, kSz2M / 4}});
        op.seed = *rc::gen::arbitrary<std::uint8_t>();
        break;
      default:
        break;
    }
    return op;
  });
}

}  // namespace

TEST_SUITE("model") {
  TEST_CASE("vm_space_model") {
    boot_for_models();
    (void)inject_user_page_fault_handler({});
    set_tlb_check_mode(TlbCheckMode::Count);
    op_stats().clear();
    const bool ok = rc_check("VmSpace with real frames", 100, [] {
      rcu_barrier();
      const std::uint64_t free_before = global_frame_allocator().free_bytes();
      {
        VmSystem sut;
        rc::state::check(VmModel{}, sut, [](const VmModel& m) {
          return rc::gen::map(vm_op(m), [](const VmOp& op) {
            return std::shared_ptr<const rc::state::Command<VmModel, VmSystem>>(
                std::make_shared<VmCommand>(op));
          });
        });
      }
      rcu_barrier();
      RC_ASSERT(global_frame_allocator().free_bytes() == free_before);
    });
    if (std::getenv("VMSPACE_MODEL_STATS") != nullptr)
      std::cerr << "outcomes:\n" << format_op_stats();
    CHECK(ok);
  }
}
