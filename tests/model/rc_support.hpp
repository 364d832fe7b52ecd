// Running RapidCheck properties inside doctest test cases (suite `model`).
//
// Seed and iteration count, first match wins:
//   iterations  VMSPACE_MODEL_ITERATIONS, RC_PARAMS="max_success=N", VMSPACE_MODEL_CI_ITERATIONS
//               (set by meson for CI), the test's own default
//   seed        VMSPACE_MODEL_SEED, RC_PARAMS="seed=N", VMSPACE_MODEL_CI_SEED (meson), random
// So `VMSPACE_MODEL_ITERATIONS=20000 meson test -C build --suite model` runs long with the
// CI seed, and `RC_PARAMS="seed=42 max_success=5000" build/tests/model/model_pt` runs a
// chosen seed. A failure prints the shrunk counterexample (the command sequence and the first
// difference found) and RapidCheck's reproduce string; the doctest case then fails.
#pragma once

#include <rapidcheck.h>

#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <string>

#include <vmspace/boot.hpp>

namespace vmspace::test {

namespace internal {

inline const char* env(const char* name) {
  const char* v = std::getenv(name);
  return (v != nullptr && *v != '\0') ? v : nullptr;
}

inline bool rc_params_set(const char* key) {
  const char* p = env("RC_PARAMS");
  return p != nullptr && std::string(p).find(std::string(key) + "=") != std::string::npos;
}

}  // namespace internal

// The machine the model tests run on: small physical memory (frame-slot walks after every
// step stay cheap), two CPUs (the test thread binds CPU 0, helper threads CPU 1). The first
// call in a process chooses the size.
inline void boot_for_models(std::uint64_t phys_mem_bytes = std::uint64_t{64} << 20) {
  BootConfig config;
  config.phys_mem_bytes = phys_mem_bytes;
  config.num_cpus = 2;
  if (!is_booted()) (void)boot(config);
}

// Checks `property` with the parameters described above; returns true on success.
template <class Testable>
bool rc_check(const std::string& name, int default_iterations, Testable&& property) {
  using namespace rc::detail;
  boot_for_models();
  TestParams params = configuration().testParams;
  if (const char* n = test::internal::env("VMSPACE_MODEL_ITERATIONS")) {
    params.maxSuccess = std::atoi(n);
  } else if (!test::internal::rc_params_set("max_success")) {
    const char* ci = test::internal::env("VMSPACE_MODEL_CI_ITERATIONS");
    params.maxSuccess = ci ? std::atoi(ci) : default_iterations;
  }
  if (const char* s = test::internal::env("VMSPACE_MODEL_SEED")) {
    params.seed = std::strtoull(s, nullptr, 0);
  } else if (!test::internal::rc_params_set("seed")) {
    if (const char* ci = test::internal::env("VMSPACE_MODEL_CI_SEED"))
      params.seed = std::strtoull(ci, nullptr, 0);
  }
  std::cerr << "- " << name << " (seed=" << params.seed << " max_success=" << params.maxSuccess
            << " max_size=" << params.maxSize << ")" << std::endl;
  TestMetadata metadata;
  metadata.id = name;
  metadata.description = name;
  const TestResult result =
      checkProperty(toProperty(std::forward<Testable>(property)), metadata, params);
  printResultMessage(result, std::cerr);
  std::cerr << std::endl;
  return result.template is<SuccessResult>();
}

}  // namespace vmspace::test
