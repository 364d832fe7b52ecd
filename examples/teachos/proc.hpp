// Processes and threads: the process table, fork/clone, exec, exit, wait, kill and futexes.
//
// As in Linux, a *process* (struct proc) is an address space plus bookkeeping (pid, parent,
// exit status), and a *thread* (struct thread) is something a hart can run: a trapframe and a
// scheduling state. fork makes a new proc with one thread; clone(CLONE_VM) adds a thread to the
// caller's proc. Every live thread and every zombie proc takes one of the kNproc slots.
//
// Locking: one kernel lock, ptable_lock, guards the table, every proc's and thread's
// bookkeeping fields and the run queue (sched.hpp) — xv6's wait_lock and ptable lock folded
// into one, which is simple to reason about and fast enough for 64 threads. A thread's
// trapframe belongs to whoever runs it: the hart while it runs, and otherwise (asleep) the
// kernel code holding ptable_lock (a futex wake writes the sleeper's a0).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <vmspace/mutex.hpp>

#include "machine.hpp"
#include "vm.hpp"

namespace teachos {

inline constexpr int kNproc = 64;

// Linux's signal numbers, used in wait statuses.
enum : int { kSigIll = 4, kSigTrap = 5, kSigBus = 7, kSigKill = 9, kSigSegv = 11, kSigChld = 17 };

extern vmspace::Mutex ptable_lock;

struct proc;

enum class ThreadState : std::uint8_t { Runnable, Running, Sleeping };
// What a sleeping thread waits for, and how it continues (see sched.hpp, "Blocking").
enum class WaitFor : std::uint8_t {
  Child,  // wait4: woken when a child exits, then the ecall runs again
  Futex,  // futex WAIT: finished by the waker (a0 = 0), by its timeout (-ETIMEDOUT) or by kill
  Timer,  // nanosleep: finished by the scheduler once wake_at has passed
};

struct thread {
  int tid = 0;
  proc* p = nullptr;
  // The address space this thread runs in: p->vm, except that a thread zapped by another
  // thread's execve keeps the old one until it ends. The thread's own hart reads it without a
  // lock, which is why it is a per-thread copy and not p->vm itself.
  std::shared_ptr<Vm> vm;
  HartState tf;  // the trapframe: user registers while not running
  ThreadState state = ThreadState::Runnable;
  WaitFor wait_for = WaitFor::Child;
  std::uint64_t futex_addr = 0;       // WaitFor::Futex: the word, in p->vm
  std::uint64_t wake_at = 0;          // Timer, or Futex with a timeout (else 0): in now_ns() time
  std::uint64_t clear_child_tid = 0;  // CLONE_CHILD_CLEARTID / set_tid_address
  std::atomic<bool> zapped{false};    // another thread exec'd: this one ends at its next trap
};

struct proc {
  int pid = 0;
  proc* parent = nullptr;  // nullptr: the kernel reaps it (init, or an orphan after init died)
  std::string name;
  std::shared_ptr<Vm> vm;  // guarded by ptable_lock; threads use their own copy (thread::vm)
  int live_threads = 0;
  std::atomic<bool> killed{
      false};           // exit_group or a fatal signal: every thread stops at its next trap
  int exit_status = 0;  // the wait status (Linux encoding) once killed/exiting
  bool zombie = false;  // exited, waiting for wait4
};

// Creates init (pid 1) running `path` with `argv` (envp empty). Returns -errno on failure
// (ENOENT, ENOEXEC, EINVAL, ENOMEM) after printing why.
int proc_start_init(const std::string& path, const std::vector<std::string>& argv);

// Resolves a program name: no '/' means a built user program, else a host path.
std::string resolve_program(const std::string& name);

// The system calls implemented here (called by syscall.cpp; they return the value for a0, or
// kBlocked when the thread went to sleep).
inline constexpr std::int64_t kBlocked = INT64_MIN;
std::int64_t sys_clone(thread* t, std::uint64_t flags, std::uint64_t newsp, std::uint64_t ptid,
                       std::uint64_t tls, std::uint64_t ctid);
std::int64_t sys_execve(thread* t, std::uint64_t path, std::uint64_t argv, std::uint64_t envp);
std::int64_t sys_wait4(thread* t, std::int64_t pid, std::uint64_t status, std::uint64_t options);
std::int64_t sys_futex(thread* t, std::uint64_t addr, int op, std::uint32_t val,
                       std::uint64_t timeout);
std::int64_t sys_nanosleep(thread* t, std::uint64_t req);

// Ends the calling thread (exit) or its whole process (exit_group). The thread is gone when
// this returns: the hart must not touch it again.
enum class ExitScope : std::uint8_t { Thread, Group };
void thread_exit(thread* t, int code, ExitScope scope);
// Called by the hart for a thread of a killed process (or a thread zapped by another thread's
// execve): the thread ends without running again.
void thread_exit_killed(thread* t);

// Kills t's process with `signal` (a fatal fault): prints the reason to stderr, the process
// ends with WIFSIGNALED(status) and WTERMSIG = signal.
void proc_kill(thread* t, int signal, const std::string& why);

// The scheduler's view of sleepers: wake every deadline that is due (nanosleep, futex
// timeouts; finishing their calls), and the earliest pending deadline (UINT64_MAX if none).
void wake_timers_locked(std::uint64_t now) VMS_REQUIRES(ptable_lock);
std::uint64_t earliest_timer_locked() VMS_REQUIRES(ptable_lock);

// Counts for the statistics and the shutdown decision.
int nproc_live();
int nproc_live_locked() VMS_REQUIRES(ptable_lock);
int init_exit_status();

// The thread running on the calling hart (the page-fault handler needs it).
thread*& current_thread();

}  // namespace teachos
