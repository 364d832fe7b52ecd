// Processes and threads (see proc.hpp).
#include "proc.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>

#include "sched.hpp"
#include "syscall.hpp"

#ifndef TEACHOS_USER_DIR
#define TEACHOS_USER_DIR "."
#endif

namespace teachos {

vmspace::Mutex ptable_lock;

namespace {

// The process table. unique_ptr: procs and threads stay at one address while others come and
// go, so the run queue and parent pointers can hold raw pointers.
std::vector<std::unique_ptr<proc>> g_procs VMS_GUARDED_BY(ptable_lock);
std::vector<std::unique_ptr<thread>> g_threads VMS_GUARDED_BY(ptable_lock);
int g_next_pid VMS_GUARDED_BY(ptable_lock) = 1;
int g_init_status VMS_GUARDED_BY(ptable_lock) = 0;
thread_local thread* t_current = nullptr;

constexpr std::uint64_t kCloneVm = 0x100, kCloneThread = 0x10000, kCloneSettls = 0x80000,
                        kCloneParentSettid = 0x100000, kCloneChildCleartid = 0x200000;
constexpr int kFutexWait = 0, kFutexWake = 1, kFutexPrivate = 128;
constexpr std::size_t kMaxArgBytes = 128 * 1024;
constexpr std::size_t kMaxExecFile = 64 << 20;

// A slot per live thread and per zombie (a zombie holds its pid until wait4).
int slots_used_locked() VMS_REQUIRES(ptable_lock) {
  int zombies = 0;
  for (const auto& p : g_procs) zombies += p->zombie ? 1 : 0;
  return static_cast<int>(g_threads.size()) + zombies;
}

void wake_killed_locked(proc* p) VMS_REQUIRES(ptable_lock) {
  for (const auto& t : g_threads) {
    if (t->p == p && t->state == ThreadState::Sleeping) make_runnable(t.get());
  }
}

void kill_locked(proc* p, int status) VMS_REQUIRES(ptable_lock) {
  if (p->killed) return;
  p->killed = true;
  p->exit_status = status;
  wake_killed_locked(p);
}

proc* find_proc_locked(int pid) VMS_REQUIRES(ptable_lock) {
  for (const auto& p : g_procs) {
    if (p->pid == pid) return p.get();
  }
  return nullptr;
}

void free_proc_locked(proc* p) VMS_REQUIRES(ptable_lock) {
  std::erase_if(g_procs, [p](const std::unique_ptr<proc>& q) { return q.get() == p; });
}

void print_exit_stats(proc* p) {
  VmStats& s = p->vm->stats();
  const int st = p->exit_status;
  char how[48];
  if ((st & 0x7f) == 0) {
    std::snprintf(how, sizeof how, "exited %d", (st >> 8) & 0xff);
  } else {
    std::snprintf(how, sizeof how, "killed by signal %d", st & 0x7f);
  }
  std::fprintf(stderr,
               "teachos: pid %d (%s) %s: faults %llu demand-zero, %llu cow-copy, %llu cow-reuse, "
               "%llu stack, %llu fatal; %llu frames in use\n",
               p->pid, p->name.c_str(), how, static_cast<unsigned long long>(s.demand_zero.load()),
               static_cast<unsigned long long>(s.cow_copy.load()),
               static_cast<unsigned long long>(s.cow_reuse.load()),
               static_cast<unsigned long long>(s.stack_growth.load()),
               static_cast<unsigned long long>(s.fatal.load()),
               static_cast<unsigned long long>(p->vm->frames_mapped()));
}

// Whether the hart that finishes a process was running its last thread (then it still
// translates through the process's space).
enum class OnThisHart : std::uint8_t { No, Yes };

// The last thread of p is gone: p becomes a zombie for its parent (or is reaped by the kernel).
void proc_finish_locked(proc* p, OnThisHart last_thread_here) VMS_REQUIRES(ptable_lock) {
  print_exit_stats(p);
  p->zombie = true;
  // The exiting thread's hart still translates through p's space: leave it now, so the memory
  // is freed here and not whenever this hart next runs something (a parent woken below may
  // need those frames at once).
  if (last_thread_here == OnThisHart::Yes) (void)vmspace::VmSpace::deactivate_current();
  p->vm.reset();  // frees the address space once no CPU has it active any more
  proc* init = find_proc_locked(1);
  if (init == p || (init && init->zombie)) init = nullptr;
  for (const auto& c : g_procs) {
    if (c->parent == p) c->parent = init;  // orphans go to init, as in Unix
  }
  std::erase_if(g_procs, [](const std::unique_ptr<proc>& c) {
    return c->zombie && c->parent == nullptr && c->pid != 1;
  });
  if (p->parent) {
    for (const auto& t : g_threads) {
      if (t->p == p->parent && t->state == ThreadState::Sleeping && t->wait_for == WaitFor::Child) {
        make_runnable(t.get());
      }
    }
    return;
  }
  if (p->pid == 1) {
    // init is gone: the machine shuts down, taking everybody else with it.
    g_init_status = p->exit_status;
    for (const auto& q : g_procs) kill_locked(q.get(), kSigKill);
    free_proc_locked(p);
    return;
  }
  free_proc_locked(p);
}

void remove_thread_locked(thread* t) VMS_REQUIRES(ptable_lock) {
  proc* p = t->p;
  // `t` is freed below. If this hart runs it, forget it first: reading current_thread() after
  // the erase was a use after free (regression_exit_reads_the_freed_current_thread, found by
  // ThreadSanitizer in suite teachos-mt).
  const OnThisHart here = current_thread() == t ? OnThisHart::Yes : OnThisHart::No;
  if (here == OnThisHart::Yes) current_thread() = nullptr;
  std::erase_if(g_threads, [t](const std::unique_ptr<thread>& u) { return u.get() == t; });
  if (--p->live_threads == 0) proc_finish_locked(p, here);
}

std::int64_t futex_wake_locked(const Vm* vm, std::uint64_t addr, std::uint32_t n)
    VMS_REQUIRES(ptable_lock) {
  std::int64_t woken = 0;
  for (const auto& w : g_threads) {
    if (woken >= n) break;
    if (w->state != ThreadState::Sleeping || w->wait_for != WaitFor::Futex) continue;
    if (w->futex_addr != addr || w->vm.get() != vm) continue;
    w->tf.x[kA0] = 0;  // the sleeper's futex(WAIT) returns 0
    w->tf.pc += 4;
    make_runnable(w.get());
    ++woken;
  }
  return woken;
}

std::string base_name(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// Reads an executable from the host: a regular file no bigger than kMaxExecFile.
int read_host_file(const std::string& path, std::vector<std::byte>& out) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT || errno == ENOTDIR ? -ENOENT : -EACCES;
  struct stat st {};
  int e = 0;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    e = -EACCES;  // a directory or device is no executable (Linux: EACCES)
  } else if (static_cast<std::uint64_t>(st.st_size) > kMaxExecFile) {
    e = -ENOEXEC;
  } else {
    out.resize(static_cast<std::size_t>(st.st_size));
    std::size_t done = 0;
    while (done < out.size()) {
      const ssize_t n = ::read(fd, out.data() + done, out.size() - done);
      if (n <= 0) break;
      done += static_cast<std::size_t>(n);
    }
    out.resize(done);
  }
  ::close(fd);
  return e;
}

// Builds a new image for `p` from `path`; on success installs it and sets t's registers.
// On failure nothing about p changes (exec's all-or-nothing rule).
int exec_into(proc* p, thread* t, const std::string& name, const std::vector<std::string>& argv,
              const std::vector<std::string>& envp) {
  const std::string path = resolve_program(name);
  std::vector<std::byte> raw;
  if (int e = read_host_file(path, raw); e != 0) return e;
  std::span<const std::byte> file(raw);
  ElfResult elf = elf_parse(file);
  if (elf.error != 0) {
    if (trace().syscalls || p->live_threads == 0)
      std::fprintf(stderr, "teachos: exec %s: %s\n", path.c_str(), elf.why.c_str());
    return -elf.error;
  }
  InitialStack stack =
      build_initial_stack(kStackTop, argv, envp, elf.image,
                          0x7eac0 + static_cast<std::uint64_t>(p->pid), kMaxArgBytes + 4096);
  if (stack.sp == 0) return -E2BIG;
  auto vm = Vm::create();
  if (!vm) return -ENOMEM;
  if (int e = vm->load(elf.image, file, stack); e != 0) return e;
  vmspace::LockGuard<vmspace::Mutex> g(ptable_lock);
  // The new image has one thread, the caller (Linux's de_thread): the others end at their
  // next trap, or now if they sleep.
  for (const auto& o : g_threads) {
    if (o->p != p || o.get() == t) continue;
    o->zapped = true;
    if (o->state == ThreadState::Sleeping) make_runnable(o.get());
  }
  p->vm = vm;
  t->vm = std::move(vm);
  p->name = base_name(path);
  t->tf = HartState{};
  t->tf.pc = elf.image.entry;
  t->tf.x[kSp] = stack.sp;
  return 0;
}

}  // namespace

thread*& current_thread() { return t_current; }

std::string resolve_program(const std::string& name) {
  if (name.find('/') != std::string::npos) return name;
  return std::string(TEACHOS_USER_DIR) + "/" + name;
}

int proc_start_init(const std::string& path, const std::vector<std::string>& argv) {
  auto p = std::make_unique<proc>();
  auto t = std::make_unique<thread>();
  t->p = p.get();
  p->pid = t->tid = 1;
  int e = exec_into(p.get(), t.get(), path, argv, {});
  if (e != 0) return e;
  vmspace::LockGuard<vmspace::Mutex> g(ptable_lock);
  g_next_pid = 2;
  p->live_threads = 1;
  thread* tp = t.get();
  g_procs.push_back(std::move(p));
  g_threads.push_back(std::move(t));
  make_runnable(tp);
  return 0;
}

int nproc_live() {
  vmspace::LockGuard<vmspace::Mutex> g(ptable_lock);
  return static_cast<int>(g_procs.size());
}

int nproc_live_locked() { return static_cast<int>(g_procs.size()); }

int init_exit_status() {
  vmspace::LockGuard<vmspace::Mutex> g(ptable_lock);
  return g_init_status;
}

void proc_kill(thread* t, int signal, const std::string& why) {
  std::fprintf(stderr, "teachos: pid %d (%s) killed: %s\n", t->p->pid, t->p->name.c_str(),
               why.c_str());
  vmspace::LockGuard<vmspace::Mutex> g(ptable_lock);
  kill_locked(t->p, signal);
}

void thread_exit(thread* t, int code, ExitScope scope) {
  if (t->clear_child_tid != 0) (void)copyout_u32(t, t->clear_child_tid, 0);
  vmspace::LockGuard<vmspace::Mutex> g(ptable_lock);
  proc* p = t->p;
  if (scope == ExitScope::Group) {
    kill_locked(p, (code & 0xff) << 8);
  } else if (p->live_threads == 1 && !p->killed) {
    p->exit_status = (code & 0xff) << 8;
  }
  if (t->clear_child_tid != 0) futex_wake_locked(t->vm.get(), t->clear_child_tid, 1);
  remove_thread_locked(t);
}

void thread_exit_killed(thread* t) {
  vmspace::LockGuard<vmspace::Mutex> g(ptable_lock);
  remove_thread_locked(t);
}

std::int64_t sys_clone(thread* t, std::uint64_t flags, std::uint64_t newsp, std::uint64_t ptid,
                       std::uint64_t tls, std::uint64_t ctid) {
  proc* p = t->p;
  if ((flags & kCloneVm) && !(flags & kCloneThread))
    return -EINVAL;  // vfork-style sharing: not supported
  std::shared_ptr<Vm> child_vm;
  if (!(flags & kCloneVm)) {
    {
      vmspace::LockGuard<vmspace::Mutex> g(ptable_lock);
      if (slots_used_locked() >= kNproc) return -EAGAIN;  // before the costly copy
    }
    child_vm = t->vm->fork();
    if (!child_vm) return -ENOMEM;
  }
  auto nt = std::make_unique<thread>();
  nt->tf = t->tf;
  nt->tf.pc += 4;     // the child continues after the ecall...
  nt->tf.x[kA0] = 0;  // ...seeing 0
  if (newsp != 0) nt->tf.x[kSp] = newsp;
  if (flags & kCloneSettls) nt->tf.x[kTp] = tls;
  if (flags & kCloneChildCleartid) nt->clear_child_tid = ctid;
  vmspace::LockGuard<vmspace::Mutex> g(ptable_lock);
  if (slots_used_locked() >= kNproc) return -EAGAIN;
  const int id = g_next_pid++;
  nt->tid = id;
  nt->vm = (flags & kCloneVm) ? t->vm : child_vm;
  if (flags & kCloneVm) {
    nt->p = p;
    ++p->live_threads;
  } else {
    auto np = std::make_unique<proc>();
    np->pid = id;
    np->parent = p;
    np->name = p->name;
    np->vm = std::move(child_vm);
    np->live_threads = 1;
    nt->p = np.get();
    g_procs.push_back(std::move(np));
  }
  // Written before the child can run, as Linux does; a bad pointer there is ignored likewise.
  if (flags & kCloneParentSettid) (void)copyout_u32(t, ptid, static_cast<std::uint32_t>(id));
  thread* tp = nt.get();
  g_threads.push_back(std::move(nt));
  make_runnable(tp);
  return id;
}

std::int64_t sys_execve(thread* t, std::uint64_t upath, std::uint64_t uargv, std::uint64_t uenvp) {
  auto path = copyinstr(t, upath, 4096);
  if (!path) return -EFAULT;
  std::vector<std::string> args[2];
  const std::uint64_t arrays[2] = {uargv, uenvp};
  std::size_t total = 0;
  for (int k = 0; k < 2; ++k) {
    for (std::uint64_t i = 0; arrays[k] != 0; ++i) {
      std::uint64_t ptr = 0;
      if (copyin(t, &ptr, arrays[k] + 8 * i, 8) != 0) return -EFAULT;
      if (ptr == 0) break;
      auto s = copyinstr(t, ptr, kMaxArgBytes);
      if (!s) return -EFAULT;
      total += s->size() + 9;
      if (total > kMaxArgBytes) return -E2BIG;
      args[k].push_back(std::move(*s));
    }
  }
  return exec_into(t->p, t, *path, args[0], args[1]);
}

std::int64_t sys_wait4(thread* t, std::int64_t pid, std::uint64_t ustatus, std::uint64_t options) {
  constexpr std::uint64_t kWnohang = 1;
  vmspace::LockGuard<vmspace::Mutex> g(ptable_lock);
  bool have_kids = false;
  for (const auto& c : g_procs) {
    if (c->parent != t->p || (pid > 0 && c->pid != pid)) continue;
    have_kids = true;
    if (!c->zombie) continue;
    if (ustatus != 0 && copyout_u32(t, ustatus, static_cast<std::uint32_t>(c->exit_status)) != 0)
      return -EFAULT;
    const int cpid = c->pid;
    free_proc_locked(c.get());
    return cpid;
  }
  if (!have_kids) return -ECHILD;
  if (options & kWnohang) return 0;
  sleep_on(t, WaitFor::Child);  // the ecall runs again when a child exits
  return kBlocked;
}

std::int64_t sys_futex(thread* t, std::uint64_t addr, int op, std::uint32_t val,
                       std::uint64_t utimeout) {
  op &= ~kFutexPrivate;
  if (addr % 4 != 0) return -EINVAL;
  std::uint64_t timeout_ns = 0;  // 0: wait until woken
  if (op == kFutexWait && utimeout != 0) {
    std::int64_t ts[2];
    if (copyin(t, ts, utimeout, sizeof ts) != 0) return -EFAULT;
    if (ts[0] < 0 || ts[1] < 0 || ts[1] >= 1'000'000'000) return -EINVAL;
    timeout_ns =
        static_cast<std::uint64_t>(ts[0]) * 1'000'000'000ULL + static_cast<std::uint64_t>(ts[1]);
    if (timeout_ns == 0) timeout_ns = 1;
  }
  vmspace::LockGuard<vmspace::Mutex> g(ptable_lock);
  if (op == kFutexWake) return futex_wake_locked(t->vm.get(), addr, val);
  if (op != kFutexWait) return -ENOSYS;
  // Compare and sleep under the lock every waker takes: a WAKE after our read cannot be lost.
  std::uint32_t cur = 0;
  if (copyin(t, &cur, addr, 4) != 0) return -EFAULT;
  if (cur != val) return -EAGAIN;
  t->futex_addr = addr;
  t->wake_at = timeout_ns != 0 ? now_ns() + timeout_ns : 0;
  sleep_on(t, WaitFor::Futex);
  return kBlocked;
}

std::int64_t sys_nanosleep(thread* t, std::uint64_t ureq) {
  std::int64_t ts[2];
  if (copyin(t, ts, ureq, sizeof ts) != 0) return -EFAULT;
  if (ts[0] < 0 || ts[1] < 0 || ts[1] >= 1'000'000'000) return -EINVAL;
  const std::uint64_t ns =
      static_cast<std::uint64_t>(ts[0]) * 1'000'000'000ULL + static_cast<std::uint64_t>(ts[1]);
  if (ns == 0) return 0;
  vmspace::LockGuard<vmspace::Mutex> g(ptable_lock);
  t->wake_at = now_ns() + ns;
  sleep_on(t, WaitFor::Timer);
  return kBlocked;
}

// A sleeper with a deadline: nanosleep, or a futex WAIT with a timeout.
bool has_deadline(const thread& t) {
  return t.state == ThreadState::Sleeping &&
         (t.wait_for == WaitFor::Timer || (t.wait_for == WaitFor::Futex && t.wake_at != 0));
}

void wake_timers_locked(std::uint64_t now) {
  constexpr std::int64_t kEtimedout = 110;
  for (const auto& t : g_threads) {
    if (!has_deadline(*t) || t->wake_at > now) continue;
    // nanosleep returns 0; a futex wait that nobody woke returns -ETIMEDOUT.
    t->tf.x[kA0] = t->wait_for == WaitFor::Timer ? 0 : static_cast<std::uint64_t>(-kEtimedout);
    t->tf.pc += 4;
    make_runnable(t.get());
  }
}

std::uint64_t earliest_timer_locked() {
  std::uint64_t best = UINT64_MAX;
  for (const auto& t : g_threads) {
    if (has_deadline(*t)) best = std::min(best, t->wake_at);
  }
  return best;
}

}  // namespace teachos
