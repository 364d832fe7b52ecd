// Refinement of the page-table cursors against the abstract model, as a RapidCheck state
// machine, for every PTE format (suite `model`).
//
// State: a PtModel (mapping set + model cursor). System: a real PageTable<RawPtConfig<...>> and
// its cursor. Commands: open (read-only or mutable, blocking or try), nested open (WouldDeadlock
// cases), close, query, find_next, jump, map (every level the config allows and one above),
// unmap, protect_next, protect (the whole window). After every command: the library's results
// equal the model's (tests/support/pt_harness.hpp), interpret(table) equals the model,
// check_page_table holds, and with no cursor open (a quiescent point, after an RCU barrier)
// check_frame_slots and the refcount law hold (the latter exact in handle_ledger builds).
// After every test case the table's nodes are all freed.
#include <doctest/doctest.h>

#include <rapidcheck.h>
#include <rapidcheck/state.h>

#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>

#include <vmspace/frame_allocator.hpp>

#include "pt_gen.hpp"
#include "pt_harness.hpp"
#include "raw_pt_config.hpp"
#include "rc_support.hpp"

using namespace vmspace;
using namespace vmspace::test;

namespace {

template <PageTableConfig C>
struct PtCommand final : rc::state::Command<PtModel, PtSystem<C>> {
  PtOp op;
  explicit PtCommand(const PtOp& o) : op(o) {}

  void checkPreconditions(const PtModel& m) const override { RC_PRE(m.applicable(op)); }
  void apply(PtModel& m) const override { (void)model_apply(m, op); }
  void run(const PtModel& m0, PtSystem<C>& s) const override {
    PtModel m = m0;
    const std::string d = step(m, s, op);
    if (!d.empty()) RC_FAIL("results differ after " + test::internal::show(op) + ":\n" + d);
    const std::string c = check_state(m, s);
    if (!c.empty()) RC_FAIL("state differs after " + test::internal::show(op) + ":\n" + c);
  }
  void show(std::ostream& os) const override { os << op; }
};

template <PageTableConfig C>
bool run_machine(const std::string& name, int iterations) {
  op_stats().clear();
  const bool ok = rc_check(name, iterations, [] {
    const PtModel initial(check::model_config<C>());
    rcu_barrier();
    const std::uint64_t free_before = global_frame_allocator().free_bytes();
    {
      auto sut = PtSystem<C>::create();
      rc::state::check(initial, sut, [](const PtModel& m) {
        return rc::gen::map(gen::op(m), [](const PtOp& op) {
          return std::shared_ptr<const rc::state::Command<PtModel, PtSystem<C>>>(
              std::make_shared<PtCommand<C>>(op));
        });
      });
    }
    rcu_barrier();
    RC_ASSERT(global_frame_allocator().free_bytes() == free_before);
  });
  if (std::getenv("VMSPACE_MODEL_STATS") != nullptr)
    std::cerr << "outcomes:\n" << format_op_stats();
  return ok;
}

}  // namespace

TEST_SUITE("model") {
  TEST_CASE("pt_model_x86_64") {
    CHECK(run_machine<RawPtConfig<X86_64Pte, 3>>("x86-64, leaves up to 1 GiB", 100));
  }
  TEST_CASE("pt_model_x86_64_kernel_style") {
    CHECK(run_machine<RawPtConfig<X86_64Pte, 2, false>>(
        "x86-64, leaves up to 2 MiB, top level pinned", 100));
  }
  TEST_CASE("pt_model_riscv_sv48") {
    CHECK(run_machine<RawPtConfig<RiscvSv48Pte, 4>>("riscv-sv48, leaves up to 512 GiB", 100));
  }
  TEST_CASE("pt_model_riscv_sv39") {
    CHECK(run_machine<RawPtConfig<RiscvSv39Pte, 3>>("riscv-sv39, leaves up to 1 GiB (root level)",
                                                    100));
  }
  TEST_CASE("pt_model_aarch64") {
    CHECK(run_machine<RawPtConfig<Aarch64Pte, 3>>("aarch64, leaves up to 1 GiB", 100));
  }
}
