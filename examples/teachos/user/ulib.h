// ulib.h: the freestanding user library of teachos (no libc at all).
//
// Conventions (one rule for every system call, so tests can check errno values directly):
// every wrapper returns what the kernel put in a0. A value in [-4095, -1] is a negated errno
// (e.g. write(1, bad, 8) == -EFAULT); there is no global errno, so threads need no
// thread-local storage. Wrappers that return pointers (sbrk, mmap) are the exception and are
// documented where they are declared.
#ifndef TEACHOS_ULIB_H
#define TEACHOS_ULIB_H

typedef unsigned long size_t;
typedef long ssize_t;
typedef long intptr_t;
typedef unsigned long uintptr_t;
typedef unsigned char uint8_t;
typedef unsigned int uint32_t;
typedef unsigned long uint64_t;
typedef int int32_t;
typedef long int64_t;
typedef int pid_t;
typedef __builtin_va_list va_list;
#define va_start(ap, last) __builtin_va_start(ap, last)
#define va_arg(ap, type) __builtin_va_arg(ap, type)
#define va_end(ap) __builtin_va_end(ap)
#define NULL ((void*)0)
#define PAGE_SIZE 4096UL

// ---- system call numbers (Linux RISC-V) ----
#define SYS_read 63
#define SYS_write 64
#define SYS_exit 93
#define SYS_exit_group 94
#define SYS_set_tid_address 96
#define SYS_futex 98
#define SYS_nanosleep 101
#define SYS_clock_gettime 113
#define SYS_sched_yield 124
#define SYS_getpid 172
#define SYS_getppid 173
#define SYS_gettid 178
#define SYS_brk 214
#define SYS_munmap 215
#define SYS_clone 220
#define SYS_execve 221
#define SYS_mmap 222
#define SYS_mprotect 226
#define SYS_wait4 260
// teachos-only: qemu-riscv64 (and Linux) answer -ENOSYS.
#define SYS_teachos_freemem 500
#define SYS_teachos_vtop 501
#define SYS_teachos_shootdowns 502
#define SYS_teachos_nharts 503

// ---- errno values ----
#define EPERM 1
#define ENOENT 2
#define ESRCH 3
#define EINTR 4
#define E2BIG 7
#define ENOEXEC 8
#define EBADF 9
#define ECHILD 10
#define EAGAIN 11
#define ENOMEM 12
#define EFAULT 14
#define EINVAL 22
#define ENOSYS 38

// ---- flags ----
#define PROT_NONE 0
#define PROT_READ 1
#define PROT_WRITE 2
#define PROT_EXEC 4
#define MAP_SHARED 1
#define MAP_PRIVATE 2
#define MAP_FIXED 0x10
#define MAP_ANONYMOUS 0x20
#define MAP_FAILED ((void*)-1)
#define CLOCK_REALTIME 0
#define CLOCK_MONOTONIC 1
#define FUTEX_WAIT 0
#define FUTEX_WAKE 1
#define FUTEX_PRIVATE_FLAG 128
#define SIGILL 4
#define SIGTRAP 5
#define SIGBUS 7
#define SIGKILL 9
#define SIGSEGV 11
#define SIGCHLD 17
#define WNOHANG 1
#define CLONE_VM 0x100
#define CLONE_FS 0x200
#define CLONE_FILES 0x400
#define CLONE_SIGHAND 0x800
#define CLONE_PARENT_SETTID 0x100000
#define CLONE_THREAD 0x10000
#define CLONE_SYSVSEM 0x40000
#define CLONE_SETTLS 0x80000
#define CLONE_CHILD_CLEARTID 0x200000

// Wait status decoding, as Linux encodes it.
#define WIFEXITED(s) (((s) & 0x7f) == 0)
#define WEXITSTATUS(s) (((s) >> 8) & 0xff)
#define WIFSIGNALED(s) (((s) & 0x7f) != 0 && ((s) & 0x7f) != 0x7f)
#define WTERMSIG(s) ((s) & 0x7f)

struct timespec {
  long tv_sec;
  long tv_nsec;
};

// ---- syscall.c: raw wrappers (results as described at the top) ----
long syscall6(long n, long a0, long a1, long a2, long a3, long a4, long a5);
ssize_t read(int fd, void* buf, size_t n);
ssize_t write(int fd, const void* buf, size_t n);
__attribute__((noreturn)) void exit(int code);         // exit_group: the whole process
__attribute__((noreturn)) void thread_exit(int code);  // exit: only the calling thread
long set_tid_address(int* tidptr);
long futex(int* uaddr, int op, int val, const struct timespec* timeout);
long nanosleep(const struct timespec* req, struct timespec* rem);
long clock_gettime(int clock, struct timespec* ts);
long sched_yield(void);
pid_t getpid(void);
pid_t getppid(void);
pid_t gettid(void);
long brk(void* addr);  // returns the new break (Linux semantics: the old one on failure)
long munmap(void* addr, size_t len);
long clone(unsigned long flags, void* newsp, int* parent_tid, void* tls, int* child_tid);
long execve(const char* path, char* const argv[], char* const envp[]);
// mmap returns the kernel's answer cast to a pointer: check with mmap_failed(p), which is true
// for every negated errno; mmap_errno(p) gives the errno.
void* mmap(void* addr, size_t len, int prot, int flags, int fd, long off);
#define mmap_failed(p) ((unsigned long)(p) >= (unsigned long)-4095)
#define mmap_errno(p) (-(long)(p))
long mprotect(void* addr, size_t len, int prot);
pid_t wait4(pid_t pid, int* status, int options, void* rusage);
pid_t fork(void);
pid_t waitpid(pid_t pid, int* status, int options);
// sbrk moves the break by `incr` bytes and returns the old break, or (void*)-1 when the kernel
// refused (no memory): brk() itself does not return an errno.
void* sbrk(long incr);
long teachos_freemem(void);
long teachos_vtop(const void* vaddr);
long teachos_shootdowns(void);
long teachos_nharts(void);
// Sleeps `ms` milliseconds (nanosleep).
void msleep(long ms);
// Monotonic time in nanoseconds.
long now_ns(void);

// ---- string.c ----
void* memcpy(void* dst, const void* src, size_t n);
void* memmove(void* dst, const void* src, size_t n);
void* memset(void* dst, int c, size_t n);
int memcmp(const void* a, const void* b, size_t n);
size_t strlen(const char* s);
int strcmp(const char* a, const char* b);
int strncmp(const char* a, const char* b, size_t n);
char* strcpy(char* dst, const char* src);
char* strncpy(char* dst, const char* src, size_t n);
char* strchr(const char* s, int c);
char* strcat(char* dst, const char* src);
long atol(const char* s);
int atoi(const char* s);

// ---- printf.c: output goes straight to write() (no buffering, so fork never duplicates
// pending output). printf formats into a buffer and issues one write per call. ----
int printf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
int fprintf(int fd, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
int snprintf(char* buf, size_t size, const char* fmt, ...) __attribute__((format(printf, 3, 4)));
int vsnprintf(char* buf, size_t size, const char* fmt, va_list ap);
int puts(const char* s);
// Prints "prog: FAIL: <message>" on stdout and exits 1.
__attribute__((noreturn)) void fail(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
extern const char* ulib_progname;  // set by _start from argv[0]
// Prints how a wait status ended: "exited 3" or "killed by signal 11 (SIGSEGV)".
void describe_status(char* buf, size_t size, int status);

// ---- malloc.c ----
void* malloc(size_t n);
void free(void* p);
void* calloc(size_t n, size_t size);
void* realloc(void* p, size_t n);

// ---- rand.c: xorshift64*, deterministic for a given seed ----
void srand64(uint64_t seed);
uint64_t rand64(void);
uint64_t rand_range(uint64_t n);  // uniform-ish in [0, n)

// ---- thread.c ----
typedef struct Thread Thread;
typedef long (*ThreadFn)(void* arg);
// Starts fn(arg) in a new thread of this process, with its own mmap'd stack. Returns NULL on
// failure (*err gets the negated errno when err is not NULL).
Thread* thread_create(ThreadFn fn, void* arg, long* err);
// Waits for the thread to finish (CLONE_CHILD_CLEARTID + futex), frees its stack and returns
// fn's result.
long thread_join(Thread* t);
typedef struct {
  int state;  // 0 unlocked, 1 locked, 2 locked with waiters
} Mutex;
#define MUTEX_INIT \
  { 0 }
void mutex_lock(Mutex* m);
void mutex_unlock(Mutex* m);

// Atomics: GCC builtins compile to RV64 A instructions (amoadd.d, lr.d/sc.d, ...).
#define atomic_add(p, v) __atomic_fetch_add((p), (v), __ATOMIC_SEQ_CST)
#define atomic_load(p) __atomic_load_n((p), __ATOMIC_SEQ_CST)
#define atomic_store(p, v) __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)
#define atomic_xchg(p, v) __atomic_exchange_n((p), (v), __ATOMIC_SEQ_CST)
#define atomic_cas(p, expected_ptr, desired) \
  __atomic_compare_exchange_n((p), (expected_ptr), (desired), 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)

// ---- testlib.c: for the test programs ----
// Forks; the child runs fn(arg) and exits 0; returns the child's wait status.
int run_in_child(void (*fn)(void*), void* arg);
// Prints "<what>: child killed by signal N (NAME)" or fails the test.
void expect_killed(const char* what, int status, int sig);
// Fails the test unless the child exited with status 0.
void expect_exit0(const char* what, int status);
// True when the teachos-only system calls answer (false under qemu-riscv64 or Linux).
int on_teachos(void);

#endif
