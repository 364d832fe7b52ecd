#!/usr/bin/env bash
# One entry point for people and CI. Every command installs missing Debian packages,
# configures its build directory if needed, builds, and runs. Safe to run again.
#
#   scripts/dev.sh demo            build and run the demo (examples/vmspace-demo)
#   scripts/dev.sh test [suite..]  build (build/) and run the test suites (default: all)
#   scripts/dev.sh sanitize KIND   KIND = asan (ASan+UBSan: unit, model) | tsan (TSan: threaded + stress)
#   scripts/dev.sh mutation        mutation build (build-mut/, -Dmutations=true): the stress-mutation
#                                  suite only (the engine must detect every deliberate fault)
#   scripts/dev.sh bench [args]    release build (build-release/) and run vmspace-bench
#   scripts/dev.sh growth [args]   release build and run vmspace-growth-bench (cost at 10^3..10^7 pages)
#   scripts/dev.sh fuzz [seconds]  clang libFuzzer build (build-fuzz/) and a bounded run
#   scripts/dev.sh stress [args]   release build and run vmspace-stress
#   scripts/dev.sh docs            the API reference (Doxygen) into build/docs/api/html; fails on
#                                  any Doxygen warning, e.g. an undocumented public symbol
#   scripts/dev.sh teachos [opts] PROGRAM [args]
#                                  build teachos and its user programs (build/) and run PROGRAM
#                                  under it, e.g. scripts/dev.sh teachos --harts 4 usertests
#   scripts/dev.sh lint            clang-format check of every C++ file, clang-tidy over src/
#   scripts/dev.sh deps            only install the packages
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  meson ninja-build pkg-config cmake g++ clang-14 libclang-rt-14-dev
  # Boost >= 1.78 for boost::atomic_ref wait/notify; Debian 12's default libboost-dev is 1.74.
  libboost1.81-dev libboost-atomic1.81-dev
  doctest-dev libspdlog-dev libfmt-dev libbenchmark-dev librapidcheck-dev
  # The API reference (scripts/dev.sh docs): Doxygen, and Graphviz for its class graphs.
  doxygen graphviz
  # teachos: the RISC-V cross compiler for its user programs, qemu-riscv64 for the oracle.
  gcc-riscv64-linux-gnu qemu-user
  # scripts/dev.sh lint: the formatter and the linter (.clang-format, .clang-tidy).
  clang-format-14 clang-tidy-14
)

log() { printf '== %s\n' "$*" >&2; }

install_deps() {
  local missing=() p
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing: ${missing[*]}"
  local sudo=()
  [ "$(id -u)" -ne 0 ] && sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
}

# configure DIR [meson options...]: set up DIR once; later runs reuse it (ninja re-runs meson
# by itself when a meson.build changes).
configure() {
  local dir=$1
  shift
  if [ ! -f "$dir/build.ninja" ]; then
    rm -rf "$dir"
    log "configuring $dir $*"
    meson setup "$dir" --wrap-mode=nodownload "$@" >/dev/null
  fi
}

build() {
  log "building $1"
  ninja -C "$1" >/dev/null || ninja -C "$1"
}

# run_suites DIR SUITE...: run meson test suites and print "N passed, N failed".
# Extra `meson test` arguments may be set in the array MESON_TEST_ARGS.
MESON_TEST_ARGS=()
run_suites() {
  local dir=$1
  shift
  local args=() s status=0
  for s in "$@"; do args+=(--suite "$s"); done
  meson test -C "$dir" --print-errorlogs --num-processes 2 "${MESON_TEST_ARGS[@]}" "${args[@]}" || status=$?
  python3 - "$dir/meson-logs/testlog.json" <<'PY'
import json, sys
passed = failed = skipped = 0
for line in open(sys.argv[1]):
    r = json.loads(line)["result"]
    if r in ("OK", "EXPECTEDFAIL"):
        passed += 1
    elif r == "SKIP":
        skipped += 1
    else:
        failed += 1
print(f"{passed} passed, {failed} failed, {skipped} skipped")
PY
  return $status
}

# build_suites DIR SUITE...: builds only the test programs those suites run (and what they
# link), so a sanitizer job does not compile tests it never runs.
build_suites() {
  local dir=$1
  shift
  local targets
  ninja -C "$dir" build.ninja >/dev/null  # re-runs meson if a meson.build changed
  mapfile -t targets < <(python3 -c '
import json, os, subprocess, sys
root, want = os.path.abspath(sys.argv[1]), set(sys.argv[2:])
def introspect(what):
    return json.loads(subprocess.check_output(["meson", "introspect", what, root]))
files = {t["id"]: t["filename"] for t in introspect("--targets")}
for t in introspect("--tests"):
    if not want & {s.split(":")[-1] for s in t["suite"]}:
        continue
    # The test program, and the targets it depends on (the cross-compiled programs a test
    # loads, teachos for its scripts); a script in the source tree is not a build target.
    paths = [t["cmd"][0]] + [f for d in t.get("depends", []) for f in files.get(d, [])]
    for path in paths:
        rel = os.path.relpath(path, root)
        if not rel.startswith(".."):
            print(rel)' "$dir" "$@" | sort -u)
  log "building ${#targets[@]} test programs in $dir for: $*"
  ninja -C "$dir" "${targets[@]}" >/dev/null || ninja -C "$dir" "${targets[@]}"
}

# build_teachos DIR: builds teachos and its user programs in DIR (its test scripts name them
# as arguments, so build_suites cannot see them).
build_teachos() {
  local dir=$1 targets
  ninja -C "$dir" build.ninja >/dev/null
  mapfile -t targets < <(cd "$dir" && ninja -t targets all |
    grep -oE '^examples/teachos/(teachos|user/[a-z0-9_]+)(:| )' | tr -d ': ' | sort -u)
  [ ${#targets[@]} -gt 0 ] || return 0
  ninja -C "$dir" "${targets[@]}" >/dev/null || ninja -C "$dir" "${targets[@]}"
}

# The suites registered in build directory $1, one per line.
available_suites() {
  meson introspect --tests "$1" | python3 -c '
import json, sys
suites = {s.split(":")[-1] for t in json.load(sys.stdin) for s in t["suite"]}
print("\n".join(sorted(suites)))'
}

cmd=${1:-test}
shift || true
install_deps
case "$cmd" in
  deps) ;;
  demo)
    configure build
    build build
    ./build/examples/vmspace-demo "$@"
    ;;
  test)
    configure build
    build build
    if [ $# -gt 0 ]; then
      run_suites build "$@"
    else
      mapfile -t suites < <(available_suites build)
      run_suites build "${suites[@]}"
    fi
    ;;
  sanitize)
    kind=${1:-asan}
    case "$kind" in
      asan)
        # clang: it compiles the template-heavy tests under ASan about three times faster than
        # gcc (gcc took 6 minutes for page_table_spec_test.cpp alone, before it was split by
        # topic), which keeps CI in budget.
        CXX=clang++ configure build-asan -Db_sanitize=address,undefined -Db_lundef=false \
          -Dbenchmarks=disabled -Dexamples=disabled
        mapfile -t suites < <(available_suites build-asan | grep -E '^(unit|model)$')
        build_suites build-asan "${suites[@]}"
        MESON_TEST_ARGS=(--no-rebuild)
        ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
          run_suites build-asan "${suites[@]}"
        ;;
      tsan)
        # The threaded and stress suites, and teachos on several harts (suite teachos-mt; the
        # examples are configured for it, but only the test programs and teachos are built).
        CXX=clang++ configure build-tsan -Db_sanitize=thread -Db_lundef=false -Dbenchmarks=disabled \
          -Dmodel_tests=disabled
        mapfile -t suites < <(available_suites build-tsan | grep -E '^(threaded|stress|teachos-mt)$')
        build_suites build-tsan "${suites[@]}"
        build_teachos build-tsan
        MESON_TEST_ARGS=(--no-rebuild)
        TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" run_suites build-tsan "${suites[@]}"
        ;;
      *) echo "unknown sanitizer '$kind' (asan|tsan)" >&2; exit 2 ;;
    esac
    ;;
  mutation)
    # Only what the mutation tests need: the library, the stress library and one test program.
    # Release (NDEBUG): without the library's debug assertions the test requires the engine's
    # own checks to find every mutation (tests/stress/mutation_test.cpp).
    configure build-mut --buildtype=release -Dmutations=true -Dbenchmarks=disabled \
      -Dexamples=disabled -Dmodel_tests=disabled
    log "building build-mut (stress_mutations only)"
    ninja -C build-mut tests/stress/stress_mutations >/dev/null || ninja -C build-mut tests/stress/stress_mutations
    MESON_TEST_ARGS=(--no-rebuild)
    run_suites build-mut stress-mutation
    ;;
  bench)
    configure build-release --buildtype=release -Dtests=disabled
    build build-release
    ./build-release/tests/bench/vmspace-bench "$@"
    ;;
  growth)
    configure build-release --buildtype=release -Dtests=disabled
    build build-release
    ./build-release/tests/bench/vmspace-growth-bench "$@"
    ;;
  stress)
    configure build-release --buildtype=release -Dtests=disabled
    build build-release
    ./build-release/examples/vmspace-stress "$@"
    ;;
  docs)
    configure build
    log "building the API reference (build/docs/api/html)"
    ninja -C build docs
    echo "1 passed, 0 failed"
    ;;
  teachos)
    configure build
    log "building teachos and its user programs"
    build_teachos build
    exec ./build/examples/teachos/teachos "$@"
    ;;
  lint)
    # Formatting (.clang-format) of every tracked C++ file, then clang-tidy (.clang-tidy: naming
    # and a few bug checks) over the library's sources with a clang build's compile commands.
    log "clang-format: checking every tracked C++ file"
    git ls-files '*.cpp' '*.hpp' | grep -v '^subprojects/' | xargs clang-format-14 --dry-run --Werror
    CXX=clang++ configure build-lint -Dtests=disabled -Dbenchmarks=disabled -Dexamples=disabled \
      -Dmodel_tests=disabled
    log "clang-tidy: src/"
    git ls-files "src/*.cpp" | xargs -P 2 -n 1 clang-tidy-14 -p build-lint --quiet
    echo "1 passed, 0 failed"
    ;;
  fuzz)
    # Only the library and the fuzz target (no test suites): cheap enough for CI. The cheap
    # per-operation checks are compiled in too. New inputs go to build-fuzz/corpus;
    # tests/fuzz/corpus is the committed seed corpus (read-only here).
    secs=${1:-60}
    CXX=clang++ configure build-fuzz -Dfuzzer=true -Dtests=disabled -Db_sanitize=address,undefined \
      -Db_lundef=false -Dbenchmarks=disabled -Dexamples=disabled -Dcheck_after_ops=true
    build build-fuzz
    mkdir -p build-fuzz/corpus
    fuzz_status=0
    ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
      ./build-fuzz/tests/fuzz/vmspace-fuzz -max_total_time="$secs" -print_final_stats=1 \
      build-fuzz/corpus tests/fuzz/corpus || fuzz_status=$?
    # One "test" for the CI summary: the bounded run found nothing (libFuzzer exits 0).
    if [ "$fuzz_status" -eq 0 ]; then
      echo "1 passed, 0 failed, 0 skipped"
    else
      echo "0 passed, 1 failed, 0 skipped"
    fi
    exit "$fuzz_status"
    ;;
  *)
    echo "usage: scripts/dev.sh demo|test|sanitize|mutation|bench|growth|fuzz|stress|docs|teachos|lint|deps" >&2
    exit 2
    ;;
esac
