// syscall.c: system-call wrappers. Every call is one `ecall` with the number in a7 and the
// arguments in a0..a5; the kernel answers in a0 (a negated errno on failure, see ulib.h).
#include "ulib.h"

long syscall6(long n, long a0, long a1, long a2, long a3, long a4, long a5) {
  register long r_a0 __asm__("a0") = a0;
  register long r_a1 __asm__("a1") = a1;
  register long r_a2 __asm__("a2") = a2;
  register long r_a3 __asm__("a3") = a3;
  register long r_a4 __asm__("a4") = a4;
  register long r_a5 __asm__("a5") = a5;
  register long r_a7 __asm__("a7") = n;
  // "memory": the kernel may read or write any user memory we passed a pointer to.
  __asm__ volatile("ecall"
                   : "+r"(r_a0)
                   : "r"(r_a1), "r"(r_a2), "r"(r_a3), "r"(r_a4), "r"(r_a5), "r"(r_a7)
                   : "memory");
  return r_a0;
}

#define SC0(n) syscall6((n), 0, 0, 0, 0, 0, 0)
#define SC1(n, a) syscall6((n), (long)(a), 0, 0, 0, 0, 0)
#define SC2(n, a, b) syscall6((n), (long)(a), (long)(b), 0, 0, 0, 0)
#define SC3(n, a, b, c) syscall6((n), (long)(a), (long)(b), (long)(c), 0, 0, 0)
#define SC4(n, a, b, c, d) syscall6((n), (long)(a), (long)(b), (long)(c), (long)(d), 0, 0)
#define SC5(n, a, b, c, d, e) \
  syscall6((n), (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), 0)

ssize_t read(int fd, void* buf, size_t n) { return SC3(SYS_read, fd, buf, n); }
ssize_t write(int fd, const void* buf, size_t n) { return SC3(SYS_write, fd, buf, n); }

void exit(int code) {
  for (;;) SC1(SYS_exit_group, code);
}

void thread_exit(int code) {
  for (;;) SC1(SYS_exit, code);
}

long set_tid_address(int* tidptr) { return SC1(SYS_set_tid_address, tidptr); }
long futex(int* uaddr, int op, int val, const struct timespec* timeout) {
  return SC4(SYS_futex, uaddr, op, val, timeout);
}
long nanosleep(const struct timespec* req, struct timespec* rem) {
  return SC2(SYS_nanosleep, req, rem);
}
long clock_gettime(int clock, struct timespec* ts) { return SC2(SYS_clock_gettime, clock, ts); }
long sched_yield(void) { return SC0(SYS_sched_yield); }
pid_t getpid(void) { return (pid_t)SC0(SYS_getpid); }
pid_t getppid(void) { return (pid_t)SC0(SYS_getppid); }
pid_t gettid(void) { return (pid_t)SC0(SYS_gettid); }
long brk(void* addr) { return SC1(SYS_brk, addr); }
long munmap(void* addr, size_t len) { return SC2(SYS_munmap, addr, len); }
long clone(unsigned long flags, void* newsp, int* parent_tid, void* tls, int* child_tid) {
  return SC5(SYS_clone, flags, newsp, parent_tid, tls, child_tid);
}
long execve(const char* path, char* const argv[], char* const envp[]) {
  return SC3(SYS_execve, path, argv, envp);
}
void* mmap(void* addr, size_t len, int prot, int flags, int fd, long off) {
  return (void*)syscall6(SYS_mmap, (long)addr, (long)len, prot, flags, fd, off);
}
long mprotect(void* addr, size_t len, int prot) { return SC3(SYS_mprotect, addr, len, prot); }
pid_t wait4(pid_t pid, int* status, int options, void* rusage) {
  return (pid_t)SC4(SYS_wait4, pid, status, options, rusage);
}

// fork is clone with only the exit signal: a copy of the whole process.
pid_t fork(void) { return (pid_t)clone(SIGCHLD, 0, 0, 0, 0); }

// wait4 can be interrupted (EINTR) on some kernels; retrying keeps callers simple.
pid_t waitpid(pid_t pid, int* status, int options) {
  for (;;) {
    pid_t r = wait4(pid, status, options, 0);
    if (r != -EINTR) return r;
  }
}

// The break is kept here: brk(0) asks the kernel for the current one once.
static char* cur_brk;

void* sbrk(long incr) {
  if (!cur_brk) cur_brk = (char*)brk(0);
  char* old = cur_brk;
  if (incr == 0) return old;
  char* want = old + incr;
  // Linux's brk returns the new break on success and the old one on failure.
  char* got = (char*)brk(want);
  if (got != want) return (void*)-1;
  cur_brk = got;
  return old;
}

long teachos_freemem(void) { return SC0(SYS_teachos_freemem); }
long teachos_vtop(const void* vaddr) { return SC1(SYS_teachos_vtop, vaddr); }
long teachos_shootdowns(void) { return SC0(SYS_teachos_shootdowns); }
long teachos_nharts(void) { return SC0(SYS_teachos_nharts); }

void msleep(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
  while (nanosleep(&ts, &ts) == -EINTR) {
  }
}

long now_ns(void) {
  struct timespec ts;
  if (clock_gettime(CLOCK_MONOTONIC, &ts) < 0) return 0;
  return ts.tv_sec * 1000000000L + ts.tv_nsec;
}
