// A process's memory without a machine: regions, lazy faults, COW after fork, mmap/munmap/
// mprotect bookkeeping, brk, stack growth. Vm::fault works from kernel context (no CPU bound),
// so these tests drive it directly, as the hart's trap handler would.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <cerrno>
#include <cstring>

#include <vmspace/boot.hpp>
#include <vmspace/rcu.hpp>

#include "vm.hpp"

using namespace teachos;
using K = FaultOutcome::Kind;

namespace {

std::shared_ptr<Vm> new_vm() {
  auto vm = Vm::create();
  REQUIRE(vm != nullptr);
  return vm;
}

std::uint64_t must_mmap(Vm& vm, std::uint64_t len, unsigned prot,
                        unsigned flags = kMapPrivate | kMapAnonymous, std::uint64_t addr = 0) {
  std::int64_t r = vm.mmap(addr, len, prot, flags, -1);
  REQUIRE(r > 0);
  return static_cast<std::uint64_t>(r);
}

}  // namespace

TEST_CASE("anonymous memory is allocated on first touch, top-down below the stack") {
  auto vm = new_vm();
  const std::uint64_t a = must_mmap(*vm, 4 * kPage, kProtRead | kProtWrite);
  const std::uint64_t b = must_mmap(*vm, kPage, kProtRead | kProtWrite);
  CHECK(a + 4 * kPage <= kMmapTop);
  CHECK(b + kPage <= a);  // below the previous one, not overlapping
  CHECK(vm->frames_mapped() == 0);
  CHECK(vm->fault(a + 5, Access::Write).kind == K::Resolved);
  CHECK(vm->frames_mapped() == 1);
  CHECK(vm->stats().demand_zero == 1);
}

TEST_CASE("munmap and mprotect of part of a region split it") {
  auto vm = new_vm();
  const std::uint64_t a = must_mmap(*vm, 4 * kPage, kProtRead | kProtWrite);
  for (int i = 0; i < 4; ++i) REQUIRE(vm->fault(a + i * kPage, Access::Write).kind == K::Resolved);
  CHECK(vm->munmap(a + kPage, kPage) == 0);
  CHECK(vm->frames_mapped() == 3);
  FaultOutcome gone = vm->fault(a + kPage, Access::Read);
  CHECK(gone.kind == K::Fatal);
  CHECK(std::strcmp(gone.why, "not mapped") == 0);
  CHECK(vm->mprotect(a + 2 * kPage, kPage, kProtRead) == 0);
  CHECK(vm->fault(a + 2 * kPage, Access::Write).kind == K::Fatal);
  CHECK(vm->fault(a + 3 * kPage, Access::Write).kind == K::Resolved);
  CHECK(vm->mprotect(a + 3 * kPage, kPage, 0) == 0);
  CHECK(std::strcmp(vm->fault(a + 3 * kPage, Access::Read).why, "PROT_NONE memory") == 0);
  CHECK(vm->mprotect(a + kPage, kPage, kProtRead) == -ENOMEM);  // the hole is not mapped
  CHECK(vm->munmap(a + 1, kPage) == -EINVAL);
}

TEST_CASE("mmap arguments are checked") {
  auto vm = new_vm();
  CHECK(vm->mmap(0, 0, kProtRead, kMapPrivate | kMapAnonymous, -1) == -EINVAL);
  CHECK(vm->mmap(0, kPage, kProtRead, kMapAnonymous, -1) == -EINVAL);  // neither shared nor private
  CHECK(vm->mmap(0, kPage, kProtRead, kMapPrivate, 3) == -EBADF);      // no files
  CHECK(vm->mmap(0x1001, kPage, kProtRead, kMapPrivate | kMapAnonymous | kMapFixed, -1) == -EINVAL);
  CHECK(vm->mmap(0, 1ULL << 62, kProtRead, kMapPrivate | kMapAnonymous, -1) == -ENOMEM);
  // MAP_FIXED replaces what was there.
  const std::uint64_t a = must_mmap(*vm, 2 * kPage, kProtRead | kProtWrite);
  REQUIRE(vm->fault(a, Access::Write).kind == K::Resolved);
  CHECK(must_mmap(*vm, kPage, kProtRead, kMapPrivate | kMapAnonymous | kMapFixed, a) == a);
  CHECK(vm->frames_mapped() == 0);
  CHECK(vm->fault(a, Access::Write).kind == K::Fatal);
}

TEST_CASE("fork shares private pages copy-on-write and shared pages for real") {
  auto parent = new_vm();
  const std::uint64_t priv = must_mmap(*parent, kPage, kProtRead | kProtWrite);
  const std::uint64_t shared =
      must_mmap(*parent, kPage, kProtRead | kProtWrite, kMapShared | kMapAnonymous);
  REQUIRE(parent->fault(priv, Access::Write).kind == K::Resolved);
  CHECK(parent->frames_mapped() == 2);  // shared memory is populated at mmap
  auto child = parent->fork();
  REQUIRE(child != nullptr);
  CHECK(child->frames_mapped() == 2);
  // The shared page is writable in both without a fault; the private one faults and copies.
  CHECK(child->fault(priv, Access::Write).kind == K::Resolved);
  CHECK(child->stats().cow_copy == 1);
  // The child has its own copy now (its reference to the old frame is dropped after a grace
  // period), so the parent is the frame's last sharer: it reuses it instead of copying.
  vmspace::rcu_barrier();
  CHECK(parent->fault(priv, Access::Write).kind == K::Resolved);
  CHECK(parent->stats().cow_reuse == 1);
  CHECK(parent->stats().cow_copy == 0);
  CHECK(child->stats().cow_reuse == 0);
  (void)shared;
}

TEST_CASE("the stack grows on demand down to its limit, then the guard gap kills") {
  auto vm = new_vm();
  ElfImage img;
  img.segments.push_back(ElfSegment{0x10000, 0x1000, 0, 0, kProtRead | kProtExec});
  img.entry = 0x10000;
  img.highest = 0x11000;
  InitialStack st = build_initial_stack(kStackTop, {"t"}, {}, img, 1, 8192);
  REQUIRE(st.sp != 0);
  REQUIRE(vm->load(img, {}, st) == 0);
  CHECK(vm->fault(kStackTop - 3 * kPage, Access::Write).kind == K::Resolved);
  CHECK(vm->stats().stack_growth == 1);
  CHECK(vm->fault(kStackTop - kStackMax, Access::Write).kind == K::Resolved);
  FaultOutcome guard = vm->fault(kStackTop - kStackMax - 8, Access::Write);
  CHECK(guard.kind == K::Fatal);
  CHECK(std::strstr(guard.why, "guard") != nullptr);
  // Text is never writable; brk memory comes lazily and goes away when the break shrinks.
  CHECK(vm->fault(0x10000, Access::Write).kind == K::Fatal);
  CHECK(vm->brk(0) == 0x11000);
  CHECK(vm->brk(0x11000 + 3 * kPage) == 0x11000 + 3 * kPage);
  CHECK(vm->fault(0x12000, Access::Write).kind == K::Resolved);
  CHECK(vm->brk(0x11000) == 0x11000);
  CHECK(vm->fault(0x12000, Access::Write).kind == K::Fatal);
}
