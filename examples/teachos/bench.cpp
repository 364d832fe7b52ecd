// teachos-bench (Google Benchmark): whole programs under teachos against their baselines.
//
//   BM_Teachos_Compute       `teachos --harts 1 compute 30`: the interpreter on the vmspace MMU
//   BM_Baseline_QemuCompute  `qemu-riscv64 compute 30`: the same binary under QEMU's JIT
// Both rows report MIPS, using the instruction count teachos measured for that binary (the
// program is deterministic, so QEMU retires the same user instructions). Each iteration is a
// whole run — boot, exec, compute, exit, leak check — so the rows include startup costs.
//
//   BM_Teachos_Fork64M / BM_Baseline_LinuxFork64M            fork + exit + wait of a process
//   BM_Teachos_ForkCowAll64M / BM_Baseline_LinuxForkCowAll64M  with 64 MiB of touched heap
//     (CowAll: the child writes every page first). teachos: bench_user measures inside the guest
//     (manual time per fork); Linux: this process forks itself with a 64 MiB touched buffer.
//   BM_Teachos_Procs/harts:1 and /harts:4  four compute processes at once (wall time).
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

extern char** environ;

namespace {

const std::string kTeachos = TEACHOS_EXE;
const std::string kUserDir = TEACHOS_USER_DIR;
const std::string kQemu = TEACHOS_QEMU;
const char* const kWork = "30";
const std::string kBenchUser = TEACHOS_BENCH_USER;

std::string slurp(const char* path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs argv with stderr captured into `err` and stdout into `out`; returns the exit status.
int run(const std::vector<std::string>& args, std::string* err = nullptr,
        std::string* out = nullptr) {
  char tmpl[] = "/tmp/teachos-bench-XXXXXX";
  char otmpl[] = "/tmp/teachos-bench-XXXXXX";
  const int errfd = mkstemp(tmpl);
  const int outfd = mkstemp(otmpl);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, outfd, 1);
  posix_spawn_file_actions_adddup2(&fa, errfd, 2);
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = -1;
  int status = -1;
  if (posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ) == 0) waitpid(pid, &status, 0);
  posix_spawn_file_actions_destroy(&fa);
  if (err) *err = slurp(tmpl);
  if (out) *out = slurp(otmpl);
  close(errfd);
  close(outfd);
  unlink(tmpl);
  unlink(otmpl);
  return status;
}

// User instructions of `compute kWork`, from teachos's statistics ("hart 0: N instructions").
double compute_instructions() {
  static double n = [] {
    std::string err;
    run({kTeachos, "--harts", "1", kUserDir + "/compute", kWork}, &err);
    auto at = err.find("hart 0: ");
    return at == std::string::npos ? 0.0 : std::strtod(err.c_str() + at + 8, nullptr);
  }();
  return n;
}

void report_mips(benchmark::State& state) {
  state.counters["MIPS"] =
      benchmark::Counter(compute_instructions() / 1e6 * static_cast<double>(state.iterations()),
                         benchmark::Counter::kIsRate);
}

void BM_Teachos_Compute(benchmark::State& state) {
  if (compute_instructions() == 0) {
    state.SkipWithError("teachos did not report an instruction count (compute not built?)");
    return;
  }
  for (auto _ : state) {
    if (run({kTeachos, "--harts", "1", kUserDir + "/compute", kWork}) != 0)
      state.SkipWithError("teachos failed");
  }
  report_mips(state);
}
BENCHMARK(BM_Teachos_Compute)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_Baseline_QemuCompute(benchmark::State& state) {
  if (kQemu.empty() || compute_instructions() == 0) {
    state.SkipWithError("qemu-riscv64 not found or compute not built");
    return;
  }
  for (auto _ : state) {
    if (run({kQemu, kUserDir + "/compute", kWork}) != 0) state.SkipWithError("qemu-riscv64 failed");
  }
  report_mips(state);
}
BENCHMARK(BM_Baseline_QemuCompute)->Unit(benchmark::kMillisecond)->UseRealTime();

// teachos: bench_user prints ns per fork, measured in the guest.
void teachos_fork(benchmark::State& state, const char* mode) {
  for (auto _ : state) {
    std::string out;
    if (run({kTeachos, "--harts", "1", "--mem", "512M", kBenchUser, mode, "64", "4"}, nullptr,
            &out) != 0) {
      state.SkipWithError("teachos bench_user failed");
      return;
    }
    state.SetIterationTime(std::strtod(out.c_str(), nullptr) / 1e9);
  }
}
void BM_Teachos_Fork64M(benchmark::State& state) { teachos_fork(state, "fork"); }
void BM_Teachos_ForkCowAll64M(benchmark::State& state) { teachos_fork(state, "cowall"); }
BENCHMARK(BM_Teachos_Fork64M)->Unit(benchmark::kMillisecond)->UseManualTime()->Iterations(3);
BENCHMARK(BM_Teachos_ForkCowAll64M)->Unit(benchmark::kMillisecond)->UseManualTime()->Iterations(3);

void linux_fork(benchmark::State& state, bool write_all) {
  constexpr std::size_t kBytes = 64 << 20;
  std::vector<char> heap(kBytes, 1);  // touched: every page is resident
  for (auto _ : state) {
    const pid_t pid = fork();
    if (pid == 0) {
      if (write_all) {
        for (std::size_t off = 0; off < kBytes; off += 4096) heap[off] = 2;
      }
      _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
  }
  benchmark::DoNotOptimize(heap.data());
}
void BM_Baseline_LinuxFork64M(benchmark::State& state) { linux_fork(state, false); }
void BM_Baseline_LinuxForkCowAll64M(benchmark::State& state) { linux_fork(state, true); }
BENCHMARK(BM_Baseline_LinuxFork64M)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Baseline_LinuxForkCowAll64M)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_Teachos_Procs(benchmark::State& state) {
  const std::string harts = std::to_string(state.range(0));
  for (auto _ : state) {
    std::string out;
    if (run({kTeachos, "--harts", harts, kBenchUser, "procs", kUserDir + "/compute", "10"}, nullptr,
            &out) != 0) {
      state.SkipWithError("teachos bench_user procs failed");
      return;
    }
  }
}
BENCHMARK(BM_Teachos_Procs)
    ->ArgName("harts")
    ->Arg(1)
    ->Arg(4)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
