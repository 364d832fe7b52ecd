// Harts and the scheduler (see sched.hpp).
#include "sched.hpp"

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include <vmspace/cpu.hpp>
#include <vmspace/vm_space.hpp>

#include "trap.hpp"

namespace teachos {

namespace {

constexpr std::uint64_t kSlice = 20'000;  // instructions per time slice (parallel mode)
constexpr std::uint64_t kMinSlice = 200, kMaxSlice = 20'000;  // deterministic mode draws from here
constexpr std::uint64_t kIdleTickNs = 100'000;  // virtual time an idle deterministic hart lets pass

struct Scheduler {
  SchedOptions opts;
  std::deque<thread*> runq VMS_GUARDED_BY(ptable_lock);
  std::condition_variable_any wakeup;  // runq gained a thread, or shutdown
  bool shutdown VMS_GUARDED_BY(ptable_lock) = false;
  std::chrono::steady_clock::time_point boot = std::chrono::steady_clock::now();
  // Deterministic mode: the baton and the seeded slice generator (used only by the baton
  // holder, so it needs no lock of its own).
  std::mutex baton_lock;
  std::vector<std::condition_variable> baton_cv;  // one per hart: passing wakes only the next
  unsigned turn = 0;
  std::mt19937_64 rng;
  std::atomic<std::uint64_t> vclock{0};
  std::vector<std::uint64_t> instret;  // per hart, written by each hart as it stops
};

Scheduler g_sched;
// The root a hart's CPU translates through when no user space is active there (the kernel
// table), recorded when the hart starts.
thread_local vmspace::Paddr t_kernel_root = 0;
thread_local unsigned t_hart = 0;
unsigned nharts_index() { return t_hart; }

void take_baton(unsigned id) {
  std::unique_lock<std::mutex> l(g_sched.baton_lock);
  g_sched.baton_cv[id].wait(l, [&] { return g_sched.turn == id; });
}

void pass_baton(unsigned id) {
  const unsigned next = (id + 1) % g_sched.opts.harts;
  {
    std::lock_guard<std::mutex> l(g_sched.baton_lock);
    g_sched.turn = next;
  }
  g_sched.baton_cv[next].notify_one();
}

// Picks the next thread for hart `id`, or nullptr when there is none right now. Sets `stop`
// when the machine is shutting down.
thread* pick(unsigned id, bool& stop) VMS_NO_THREAD_SAFETY_ANALYSIS {
  std::unique_lock<vmspace::Mutex> l(ptable_lock);
  for (;;) {
    wake_timers_locked(now_ns());
    if (g_sched.shutdown || nproc_live_locked() == 0) {
      g_sched.shutdown = true;
      g_sched.wakeup.notify_all();
      stop = true;
      return nullptr;
    }
    if (!g_sched.runq.empty()) break;
    if (deterministic()) {
      // Nobody to run, and (one hart at a time) nobody running: every thread sleeps. Let
      // virtual time jump to the next deadline, or at least one tick, and hand on the baton.
      const std::uint64_t now = g_sched.vclock.load(std::memory_order_relaxed);
      const std::uint64_t next = earliest_timer_locked();
      g_sched.vclock.store(next != UINT64_MAX && next > now ? next : now + kIdleTickNs,
                           std::memory_order_relaxed);
      return nullptr;
    }
    if (vmspace::current_page_table_paddr() != t_kernel_root) {
      // About to sleep: drop the last space this CPU ran first. A thread that ran here may
      // have exited on another hart since; while this CPU keeps its space active, the
      // process's memory cannot be freed, and a program measuring free memory (cowtest,
      // lazytest) sees those frames come back at a random later moment
      // (regression_idle_hart_pins_exited_space).
      l.unlock();
      (void)vmspace::VmSpace::deactivate_current();
      l.lock();
      continue;
    }
    g_sched.wakeup.wait_for(l, std::chrono::milliseconds(1));
  }
  thread* t = g_sched.runq.front();
  g_sched.runq.pop_front();
  t->state = ThreadState::Running;
  if (trace().sched)
    std::fprintf(stderr, "sched: hart %u runs pid %d tid %d\n", id, t->p->pid, t->tid);
  return t;
}

// Runs `t` for one time slice on this hart, handling the traps inside it.
void run_slice(Hart& hart, thread* t) {
  current_thread() = t;
  if (t->p->killed || t->zapped) {
    thread_exit_killed(t);
    current_thread() = nullptr;
    return;
  }
  t->tf.clear_reservation();
  std::uint64_t budget = kSlice;
  if (deterministic())
    budget = std::uniform_int_distribution<std::uint64_t>(kMinSlice, kMaxSlice)(g_sched.rng);
  Next next = Next::Resume;
  while (next == Next::Resume) {
    // The context switch: this CPU now translates through t's address space (again after an
    // execve replaced it; activating the active space is free).
    const vmspace::Paddr before_root = vmspace::current_page_table_paddr();
    (void)t->vm->space()->activate();
    if (trace().tlb && before_root != vmspace::current_page_table_paddr()) {
      std::fprintf(stderr, "tlb: hart %u switches to pid %d: whole TLB flushed\n", nharts_index(),
                   t->p->pid);
    }
    const std::uint64_t before = hart.counters().instret;
    Trap trap = hart.run(t->tf, budget);
    const std::uint64_t ran = hart.counters().instret - before;
    // 10 ns per instruction: the virtual clock runs at about the speed of the interpreter.
    if (deterministic()) g_sched.vclock.fetch_add(10 * ran, std::memory_order_relaxed);
    budget -= std::min(budget, ran);
    next = trap_handle(t, trap);
    if (next == Next::Resume && (budget == 0 || t->p->killed || t->zapped)) next = Next::Requeue;
  }
  if (next == Next::Requeue) {
    vmspace::LockGuard<vmspace::Mutex> g(ptable_lock);
    make_runnable(t);
  }
  current_thread() = nullptr;
}

void hart_main(unsigned id) {
  t_hart = id;
  auto binding = vmspace::CpuBinding::bind(vmspace::CpuId::from_raw_unchecked(id + 1));
  if (!binding) {
    std::fprintf(stderr, "teachos: hart %u cannot bind to CPU %u\n", id, id + 1);
    std::abort();
  }
  Hart hart([] { return now_ns() / 100; });  // rdtime ticks at 10 MHz, as on QEMU's virt board
  t_kernel_root = vmspace::current_page_table_paddr();  // nothing active yet
  for (;;) {
    if (deterministic()) take_baton(id);
    bool stop = false;
    thread* t = pick(id, stop);
    if (t) {
      run_slice(hart, t);
    } else if (vmspace::current_page_table_paddr() != t_kernel_root) {
      // Idle: drop the last space this CPU ran, so an exited process's memory is freed now
      // rather than when this hart next has work.
      (void)vmspace::VmSpace::deactivate_current();
    }
    if (deterministic()) pass_baton(id);
    if (stop) break;
  }
  // Leave nothing active on this CPU, so the last address spaces can be freed.
  (void)vmspace::VmSpace::deactivate_current();
  g_sched.instret[id] = hart.counters().instret;
}

}  // namespace

void make_runnable(thread* t) {
  t->state = ThreadState::Runnable;
  g_sched.runq.push_back(t);
  g_sched.wakeup.notify_one();
}

void sleep_on(thread* t, WaitFor why) {
  t->state = ThreadState::Sleeping;
  t->wait_for = why;
}

std::uint64_t now_ns() {
  if (deterministic()) return g_sched.vclock.load(std::memory_order_relaxed);
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::steady_clock::now() - g_sched.boot)
                                        .count());
}

bool deterministic() { return g_sched.opts.seed.has_value(); }
const Trace& trace() { return g_sched.opts.trace; }
unsigned nharts() { return g_sched.opts.harts; }

void sched_configure(const SchedOptions& opts) {
  g_sched.opts = opts;
  g_sched.baton_cv = std::vector<std::condition_variable>(opts.harts);
  if (opts.seed) g_sched.rng.seed(*opts.seed);
}

std::uint64_t hart_instret(unsigned hart) {
  return hart < g_sched.instret.size() ? g_sched.instret[hart] : 0;
}

void sched_run() {
  g_sched.instret.assign(g_sched.opts.harts, 0);
  std::vector<std::thread> harts;
  for (unsigned i = 0; i < g_sched.opts.harts; ++i) harts.emplace_back(hart_main, i);
  for (auto& h : harts) h.join();
}

}  // namespace teachos
