// teachos-bench (Google Benchmark): whole programs under teachos against their baselines.
//
//   BM_Teachos_Compute       `teachos --harts 1 compute 30`: the interpreter on the vmspace MMU
//   BM_Baseline_QemuCompute  `qemu-riscv64 compute 30`: the same binary under QEMU's JIT
// Both rows report MIPS, using the instruction count teachos measured for that binary (the
// program is deterministic, so QEMU retires the same user instructions). Each iteration is a
// whole run — boot, exec, compute, exit, leak check — so the rows include startup costs.
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

// Runs argv with stdout discarded and stderr captured into `err`; returns the exit status.
int run(const std::vector<std::string>& args, std::string* err = nullptr) {
  char tmpl[] = "/tmp/teachos-bench-XXXXXX";
  const int errfd = mkstemp(tmpl);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, errfd, 2);
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = -1;
  int status = -1;
  if (posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ) == 0) waitpid(pid, &status, 0);
  posix_spawn_file_actions_destroy(&fa);
  if (err) {
    std::ifstream in(tmpl);
    std::stringstream ss;
    ss << in.rdbuf();
    *err = ss.str();
  }
  close(errfd);
  unlink(tmpl);
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
  state.counters["MIPS"] = benchmark::Counter(compute_instructions() / 1e6 * static_cast<double>(state.iterations()),
                                              benchmark::Counter::kIsRate);
}

void BM_Teachos_Compute(benchmark::State& state) {
  if (compute_instructions() == 0) {
    state.SkipWithError("teachos did not report an instruction count (compute not built?)");
    return;
  }
  for (auto _ : state) {
    if (run({kTeachos, "--harts", "1", kUserDir + "/compute", kWork}) != 0) state.SkipWithError("teachos failed");
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

}  // namespace

BENCHMARK_MAIN();
