// teachos: boots the emulated machine, runs one program as init, and reports.
//
//   teachos [--harts N] [--mem SIZE] [--deterministic SEED] [--trace faults,tlb,sched,syscalls]
//           [--input FILE] PROGRAM [ARGS...]
//
// At the end it prints statistics to stderr (per-hart TLB hit rates, shootdowns) and checks
// that every physical frame came back: after the last address space is dropped and RCU has
// run every deferred free, the allocator must hold exactly as many free bytes as before init
// started. A leak is a bug in the kernel (or the library), so it fails the run.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <vmspace/boot.hpp>
#include <vmspace/frame_allocator.hpp>
#include <vmspace/rcu.hpp>
#include <vmspace/tlb.hpp>

#include "proc.hpp"
#include "sched.hpp"
#include "syscall.hpp"
#include "trap.hpp"

namespace {

using namespace teachos;

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "teachos: %s\nusage: teachos [--harts N] [--mem SIZE] [--deterministic SEED] "
               "[--trace faults,tlb,sched,syscalls] [--input FILE] PROGRAM [ARGS...]\n",
               why);
  std::exit(2);
}

// A whole decimal or 0x number; anything else (trailing letters, a sign, a value past 64 bits)
// is a usage error naming `what`.
std::uint64_t parse_number(const std::string& s, const char* what) {
  char* end = nullptr;
  errno = 0;
  const std::uint64_t v = std::strtoull(s.c_str(), &end, 0);
  if (s.empty() || s[0] == '-' || end == s.c_str() || *end != '\0' || errno == ERANGE) {
    usage((std::string("bad ") + what + ": " + s).c_str());
  }
  return v;
}

// A byte count with an optional K, M or G suffix; a value that would not fit in 64 bits is a
// usage error rather than a silently wrapped size.
std::uint64_t parse_size(const std::string& s) {
  unsigned shift = 0;
  std::string digits = s;
  if (!digits.empty()) {
    switch (digits.back()) {
      case 'K':
      case 'k':
        shift = 10;
        break;
      case 'M':
      case 'm':
        shift = 20;
        break;
      case 'G':
      case 'g':
        shift = 30;
        break;
      default:
        break;
    }
    if (shift != 0) digits.pop_back();
  }
  const std::uint64_t v = parse_number(digits, "size");
  if (shift != 0 && v > (~std::uint64_t{0} >> shift)) usage(("bad size: " + s).c_str());
  return v << shift;
}

void print_stats(unsigned harts) {
  for (unsigned i = 0; i < harts; ++i) {
    const auto s = vmspace::tlb_stats(vmspace::CpuId::from_raw_unchecked(i + 1));
    const double total = static_cast<double>(s.hits + s.misses);
    std::fprintf(stderr,
                 "teachos: hart %u: %llu instructions; TLB %llu hits, %llu misses (%.1f%% hit "
                 "rate), %llu full "
                 "flushes, %llu page flushes\n",
                 i, static_cast<unsigned long long>(hart_instret(i)),
                 static_cast<unsigned long long>(s.hits), static_cast<unsigned long long>(s.misses),
                 total > 0 ? 100.0 * static_cast<double>(s.hits) / total : 0.0,
                 static_cast<unsigned long long>(s.full_flushes),
                 static_cast<unsigned long long>(s.single_flushes));
  }
  const auto d = vmspace::tlb_dispatch_stats();
  std::fprintf(stderr, "teachos: TLB shootdowns: %llu dispatches reaching %llu CPUs\n",
               static_cast<unsigned long long>(d.dispatches),
               static_cast<unsigned long long>(d.cpu_flushes));
}

}  // namespace

int main(int argc, char** argv) {
  SchedOptions opts;
  std::uint64_t mem = 256ULL << 20;
  int i = 1;
  for (; i < argc && argv[i][0] == '-'; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(("missing value for " + a).c_str());
      return argv[++i];
    };
    if (a == "--harts") {
      const std::uint64_t harts = parse_number(value(), "--harts");
      if (harts == 0 || harts > 64) usage("--harts must be 1..64");
      opts.harts = static_cast<unsigned>(harts);
    } else if (a == "--mem") {
      mem = parse_size(value());
    } else if (a == "--deterministic") {
      opts.seed = parse_number(value(), "--deterministic seed");
    } else if (a == "--trace") {
      const std::string v = value();
      opts.trace.faults = v.find("faults") != std::string::npos;
      opts.trace.tlb = v.find("tlb") != std::string::npos;
      opts.trace.sched = v.find("sched") != std::string::npos;
      opts.trace.syscalls = v.find("syscalls") != std::string::npos;
    } else if (a == "--input") {
      const std::string f = value();
      int fd = ::open(f.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) usage(("cannot open input " + f).c_str());
      syscall_set_input(fd);
    } else {
      usage(("unknown option " + a).c_str());
    }
  }
  if (i >= argc) usage("no program");
  std::vector<std::string> args(argv + i, argv + argc);

  // One emulated CPU per hart, plus CPU 0 for the boot thread (which loads init, unbound).
  vmspace::BootConfig cfg;
  cfg.phys_mem_bytes = mem;
  cfg.num_cpus = opts.harts + 1;
  if (auto r = vmspace::boot(cfg); !r) usage("cannot boot the machine with that memory size");
  const std::uint64_t free_at_boot = vmspace::global_frame_allocator().free_bytes();

  trap_init();
  sched_configure(opts);
  if (int e = proc_start_init(args[0], args); e != 0) {
    std::fprintf(stderr, "teachos: cannot run %s: %s\n", args[0].c_str(), std::strerror(-e));
    return 127;
  }
  sched_run();

  const int status = init_exit_status();
  print_stats(opts.harts);
  // Every process is gone and every CPU deactivated; RCU still holds frames unmapped in the
  // last grace periods. Once they are freed the allocator must be back where it started.
  vmspace::rcu_barrier();
  const std::uint64_t free_now = vmspace::global_frame_allocator().free_bytes();
  if (free_now != free_at_boot) {
    std::fprintf(stderr, "teachos: LEAK: %lld bytes of physical memory did not come back\n",
                 static_cast<long long>(free_at_boot) - static_cast<long long>(free_now));
    return 99;
  }
  std::fprintf(stderr, "teachos: all %llu frames came back\n",
               static_cast<unsigned long long>(free_now / 4096));
  if ((status & 0x7f) != 0) return 128 + (status & 0x7f);
  return (status >> 8) & 0xff;
}
