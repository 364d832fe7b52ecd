// Harts and the scheduler: which thread runs where, for how long.
//
// Each hart is a host thread bound to one emulated CPU (vmspace::CpuBinding). Its loop is the
// xv6 scheduler(): take a runnable thread from the run queue, activate its process's address
// space on this CPU (the context switch: vmspace::VmSpace::activate flushes this CPU's TLB),
// run it for a time slice counted in instructions, handle whatever trap ended the slice
// (trap.cpp), and put it back in the queue if it can still run.
//
// Time slices: a thread runs at most `slice` instructions, then the hart returns a timer trap
// and the thread goes to the back of the queue — so a program that loops forever is preempted.
//
// Blocking: a system call that must wait (wait4, futex WAIT, nanosleep) marks its thread
// Sleeping and the hart moves on. There are no kernel stacks to park, so a sleeper continues in
// one of two ways: its ecall runs again when it is woken (wait4: it simply looks for a zombie
// child again), or whoever wakes it finishes the call for it (futex, nanosleep: a0 = result,
// pc += 4) before making it Runnable.
//
// Deterministic mode (--deterministic SEED): the harts take turns, one at a time, in a fixed
// order (a baton passed from hart i to hart i+1), and every slice length is drawn from a
// generator seeded with SEED; the clock is virtual (instructions executed plus idle ticks). With
// one host thread running at any moment and every choice a function of the seed, a failing
// schedule replays exactly. The default mode is truly parallel: all harts run at once.
#pragma once

#include <cstdint>
#include <optional>

#include "proc.hpp"

namespace teachos {

struct Trace {
  bool faults = false, tlb = false, sched = false, syscalls = false;
};

struct SchedOptions {
  unsigned harts = 1;
  std::optional<std::uint64_t> seed;  // deterministic mode
  Trace trace;
};

// Sets the options (before init is created: exec consults the trace flags).
void sched_configure(const SchedOptions& opts);
// Runs the harts until no process is left. Returns when every hart has stopped and
// deactivated its CPU.
void sched_run();

// Instructions hart `hart` retired (valid after sched_run returned).
std::uint64_t hart_instret(unsigned hart);

// Puts `t` at the back of the run queue.
void make_runnable(thread* t) VMS_REQUIRES(ptable_lock);
// Marks t Sleeping for `why`; the hart drops it after this system call.
void sleep_on(thread* t, WaitFor why) VMS_REQUIRES(ptable_lock);

// Nanoseconds since boot: wall time, or the virtual clock in deterministic mode.
std::uint64_t now_ns();
bool deterministic();
const Trace& trace();
unsigned nharts();

}  // namespace teachos
