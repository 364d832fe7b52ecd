// System calls (see syscall.hpp). Numbers and errno values are Linux's (RISC-V), so the same
// binary runs under qemu-riscv64.
#include "syscall.hpp"

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <vector>

#include <vmspace/frame_allocator.hpp>
#include <vmspace/mmu.hpp>
#include <vmspace/rcu.hpp>
#include <vmspace/tlb.hpp>

#include "sched.hpp"

namespace teachos {

namespace {

enum Sysno : std::uint64_t {
  kRead = 63,
  kWrite = 64,
  kExit = 93,
  kExitGroup = 94,
  kSetTidAddress = 96,
  kFutex = 98,
  kNanosleep = 101,
  kClockGettime = 113,
  kSchedYield = 124,
  kGetpid = 172,
  kGetppid = 173,
  kGettid = 178,
  kBrk = 214,
  kMunmap = 215,
  kClone = 220,
  kExecve = 221,
  kMmap = 222,
  kMprotect = 226,
  kWait4 = 260,
  kTeachosFreemem = 500,
  kTeachosVtop = 501,
  kTeachosShootdowns = 502,
  kTeachosNharts = 503,
};

constexpr std::int64_t kExecDone = INT64_MIN + 1;  // registers already set by exec
constexpr std::int64_t kYield = INT64_MIN + 2;
constexpr std::int64_t kExited = INT64_MIN + 3;
constexpr std::size_t kChunk = 4096;

int g_input_fd = STDIN_FILENO;

const char* sys_name(std::uint64_t nr) {
  switch (nr) {
    case kRead:
      return "read";
    case kWrite:
      return "write";
    case kExit:
      return "exit";
    case kExitGroup:
      return "exit_group";
    case kSetTidAddress:
      return "set_tid_address";
    case kFutex:
      return "futex";
    case kNanosleep:
      return "nanosleep";
    case kClockGettime:
      return "clock_gettime";
    case kSchedYield:
      return "sched_yield";
    case kGetpid:
      return "getpid";
    case kGetppid:
      return "getppid";
    case kGettid:
      return "gettid";
    case kBrk:
      return "brk";
    case kMunmap:
      return "munmap";
    case kClone:
      return "clone";
    case kExecve:
      return "execve";
    case kMmap:
      return "mmap";
    case kMprotect:
      return "mprotect";
    case kWait4:
      return "wait4";
    case kTeachosFreemem:
      return "teachos_freemem";
    case kTeachosVtop:
      return "teachos_vtop";
    case kTeachosShootdowns:
      return "teachos_shootdowns";
    case kTeachosNharts:
      return "teachos_nharts";
    default:
      return "?";
  }
}

// write(fd, buf, n): copy in page-sized pieces to the host's stdout/stderr. A fault after some
// bytes went out returns the count so far, as Linux does.
// Linux's access_ok(): the whole buffer must lie in user space before anything is copied.
bool user_range_ok(std::uint64_t addr, std::uint64_t n) {
  return addr <= kUserTop && n <= kUserTop - addr;
}

std::int64_t sys_write(thread* t, std::uint64_t fd, std::uint64_t ubuf, std::uint64_t n) {
  if (fd != 1 && fd != 2) return -EBADF;
  if (!user_range_ok(ubuf, n)) return -EFAULT;
  std::vector<std::byte> buf(kChunk);
  std::uint64_t done = 0;
  while (done < n) {
    const std::size_t len = std::min<std::uint64_t>(kChunk, n - done);
    if (copyin(t, buf.data(), ubuf + done, len) != 0)
      return done > 0 ? static_cast<std::int64_t>(done) : -EFAULT;
    for (std::size_t off = 0; off < len;) {
      ssize_t w = ::write(static_cast<int>(fd), buf.data() + off, len - off);
      if (w <= 0) return done > 0 ? static_cast<std::int64_t>(done) : -EBADF;
      off += static_cast<std::size_t>(w);
    }
    done += len;
  }
  return static_cast<std::int64_t>(done);
}

// read(0, buf, n): the scripted console (--input FILE) or teachos's own stdin.
std::int64_t sys_read(thread* t, std::uint64_t fd, std::uint64_t ubuf, std::uint64_t n) {
  if (fd != 0) return -EBADF;
  if (!user_range_ok(ubuf, n)) return -EFAULT;
  std::vector<std::byte> buf(std::min<std::uint64_t>(n, kChunk));
  if (buf.empty()) return 0;
  ssize_t r = ::read(g_input_fd, buf.data(), buf.size());
  if (r < 0) return -EBADF;
  if (copyout(t, ubuf, buf.data(), static_cast<std::size_t>(r)) != 0) return -EFAULT;
  return r;
}

std::int64_t sys_clock_gettime(thread* t, std::uint64_t clk, std::uint64_t uts) {
  if (clk != 0 && clk != 1) return -EINVAL;
  std::uint64_t ns = now_ns();
  if (clk == 0 && !deterministic()) {
    ns = static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count());
  }
  const std::int64_t ts[2] = {static_cast<std::int64_t>(ns / 1'000'000'000),
                              static_cast<std::int64_t>(ns % 1'000'000'000)};
  return copyout(t, uts, ts, sizeof ts) == 0 ? 0 : -EFAULT;
}

std::int64_t sys_vtop(std::uint64_t va) {
  auto guard = vmspace::disable_preempt();
  auto pa = vmspace::mmu_translate(guard, va, vmspace::PageFaultAccess::Read);
  return pa ? static_cast<std::int64_t>(*pa) : -EFAULT;
}

std::int64_t dispatch(thread* t, std::uint64_t nr, const std::uint64_t a[6]) {
  proc* p = t->p;
  switch (nr) {
    case kRead:
      return sys_read(t, a[0], a[1], a[2]);
    case kWrite:
      return sys_write(t, a[0], a[1], a[2]);
    case kExit:
      thread_exit(t, static_cast<int>(a[0]), ExitScope::Thread);
      return kExited;
    case kExitGroup:
      thread_exit(t, static_cast<int>(a[0]), ExitScope::Group);
      return kExited;
    case kSetTidAddress:
      t->clear_child_tid = a[0];
      return t->tid;
    case kFutex:
      return sys_futex(t, a[0], static_cast<int>(a[1]), static_cast<std::uint32_t>(a[2]), a[3]);
    case kNanosleep:
      return sys_nanosleep(t, a[0]);
    case kClockGettime:
      return sys_clock_gettime(t, a[0], a[1]);
    case kSchedYield:
      return kYield;
    case kGetpid:
      return p->pid;
    case kGetppid: {
      vmspace::LockGuard<vmspace::Mutex> g(ptable_lock);
      return p->parent ? p->parent->pid : 0;
    }
    case kGettid:
      return t->tid;
    case kBrk:
      return t->vm->brk(a[0]);
    case kMunmap:
      return t->vm->munmap(a[0], a[1]);
    case kClone:
      return sys_clone(t, a[0], a[1], a[2], a[3], a[4]);
    case kExecve: {
      std::int64_t r = sys_execve(t, a[0], a[1], a[2]);
      return r == 0 ? kExecDone : r;
    }
    case kMmap:
      return t->vm->mmap(a[0], a[1], static_cast<unsigned>(a[2]), static_cast<unsigned>(a[3]),
                         static_cast<std::int64_t>(a[4]));
    case kMprotect:
      return t->vm->mprotect(a[0], a[1], static_cast<unsigned>(a[2]));
    case kWait4:
      return sys_wait4(t, static_cast<std::int64_t>(a[0]), a[1], a[2]);
    case kTeachosFreemem:
      // Frames already unmapped but still waiting for their RCU grace period count as free:
      // wait for them, so that a program measuring memory sees its own actions and no earlier
      // frees landing late.
      vmspace::rcu_barrier();
      return static_cast<std::int64_t>(vmspace::global_frame_allocator().free_bytes());
    case kTeachosVtop:
      return sys_vtop(a[0]);
    case kTeachosShootdowns:
      return static_cast<std::int64_t>(vmspace::tlb_dispatch_stats().cpu_flushes);
    case kTeachosNharts:
      return nharts();
    default:
      return -ENOSYS;
  }
}

}  // namespace

void syscall_set_input(int fd) { g_input_fd = fd; }

int copyin(thread* t, void* dst, std::uint64_t usrc, std::size_t n) {
  if (n == 0) return 0;
  auto r = t->vm->space()->reader(usrc, n);
  if (!r) return -EFAULT;  // kernel addresses and wrapping ranges never reach memory
  auto w =
      vmspace::VmWriter<vmspace::Infallible>::from_kernel_space(static_cast<std::byte*>(dst), n);
  auto c = r->read_fallible(w);
  return c && *c == n ? 0 : -EFAULT;
}

// Makes every page of [udst, udst + n) writable before the first byte is stored, so a copy
// that would fault halfway changes nothing (qemu-user checks the whole buffer up front too, and
// a program must see the same memory after an EFAULT under both).
bool fault_in_writable(thread* t, std::uint64_t udst, std::size_t n) {
  for (std::uint64_t page = udst & ~(kPage - 1); page < udst + n; page += kPage) {
    {
      auto guard = vmspace::disable_preempt();
      if (vmspace::mmu_translate(guard, page, vmspace::PageFaultAccess::Write)) continue;
    }
    if (t->vm->fault(page, Access::Write).kind != FaultOutcome::Kind::Resolved) return false;
  }
  return true;
}

int copyout(thread* t, std::uint64_t udst, const void* src, std::size_t n) {
  if (n == 0) return 0;
  if (udst > kUserTop || n > kUserTop - udst || !fault_in_writable(t, udst, n)) return -EFAULT;
  auto w = t->vm->space()->writer(udst, n);
  if (!w) return -EFAULT;
  auto r = vmspace::VmReader<vmspace::Infallible>::from_kernel_space(
      static_cast<const std::byte*>(src), n);
  auto c = r.read_fallible(*w);
  return c && *c == n ? 0 : -EFAULT;
}

int copyout_u32(thread* t, std::uint64_t udst, std::uint32_t v) {
  return copyout(t, udst, &v, sizeof v);
}

std::optional<std::string> copyinstr(thread* t, std::uint64_t usrc, std::size_t max) {
  std::string s;
  char buf[256];
  while (s.size() <= max) {
    // Never read past the page the next byte is on: the string may end right before an
    // unmapped page, and that must not be an EFAULT.
    const std::uint64_t at = usrc + s.size();
    const std::size_t n = std::min<std::uint64_t>(sizeof buf, kChunk - at % kChunk);
    if (copyin(t, buf, at, n) != 0) return std::nullopt;
    for (std::size_t i = 0; i < n; ++i) {
      if (buf[i] == '\0') return s;
      s.push_back(buf[i]);
    }
  }
  return std::nullopt;
}

Next syscall(thread* t) {
  const std::uint64_t nr = t->tf.x[kA7];
  const std::uint64_t a[6] = {t->tf.x[kA0], t->tf.x[kA1], t->tf.x[kA2],
                              t->tf.x[kA3], t->tf.x[kA4], t->tf.x[kA5]};
  const int pid = t->p->pid, tid = t->tid;
  std::int64_t r = dispatch(t, nr, a);
  if (trace().syscalls) {
    std::fprintf(stderr, "syscall: pid %d tid %d %s(%#llx, %#llx, %#llx) = %lld\n", pid, tid,
                 sys_name(nr), static_cast<unsigned long long>(a[0]),
                 static_cast<unsigned long long>(a[1]), static_cast<unsigned long long>(a[2]),
                 static_cast<long long>(r < kExited + 1 ? 0 : r));
  }
  switch (r) {
    case kBlocked:
    case kExited:
      return Next::Gone;
    case kExecDone:
      return Next::Resume;
    case kYield:
      t->tf.x[kA0] = 0;
      t->tf.pc += 4;
      return Next::Requeue;
    default:
      t->tf.x[kA0] = static_cast<std::uint64_t>(r);
      t->tf.pc += 4;
      return Next::Resume;
  }
}

}  // namespace teachos
