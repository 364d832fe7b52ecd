// The harness of the machine tests: hand encoders for the RISC-V base formats and a Machine
// (a fresh VmSpace with code and data pages and one hart bound to an emulated CPU). Each test
// file includes it once; everything is in an unnamed namespace, so each gets its own copy.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>

#include <vmspace/boot.hpp>
#include <vmspace/cpu.hpp>
#include <vmspace/frame_allocator.hpp>
#include <vmspace/mmu.hpp>
#include <vmspace/page_prop.hpp>
#include <vmspace/rcu.hpp>
#include <vmspace/tlb.hpp>
#include <vmspace/vm_space.hpp>

#include "machine.hpp"

using namespace teachos;
using vmspace::Paddr;
using vmspace::PageFlags;
using vmspace::Vaddr;

namespace {

// ---- encoders (the RISC-V base formats) ----

constexpr std::uint32_t r_type(std::uint32_t f7, unsigned rs2, unsigned rs1, std::uint32_t f3,
                               unsigned rd, std::uint32_t op) {
  return f7 << 25 | rs2 << 20 | rs1 << 15 | f3 << 12 | rd << 7 | op;
}
constexpr std::uint32_t i_type(std::int32_t imm, unsigned rs1, std::uint32_t f3, unsigned rd,
                               std::uint32_t op) {
  return (static_cast<std::uint32_t>(imm) & 0xfff) << 20 | rs1 << 15 | f3 << 12 | rd << 7 | op;
}
constexpr std::uint32_t s_type(std::int32_t imm, unsigned rs2, unsigned rs1, std::uint32_t f3) {
  const auto u = static_cast<std::uint32_t>(imm);
  return ((u >> 5) & 0x7f) << 25 | rs2 << 20 | rs1 << 15 | f3 << 12 | (u & 0x1f) << 7 | 0x23;
}
constexpr std::uint32_t b_type(std::int32_t imm, unsigned rs2, unsigned rs1, std::uint32_t f3) {
  const auto u = static_cast<std::uint32_t>(imm);
  return ((u >> 12) & 1) << 31 | ((u >> 5) & 0x3f) << 25 | rs2 << 20 | rs1 << 15 | f3 << 12 |
         ((u >> 1) & 0xf) << 8 | ((u >> 11) & 1) << 7 | 0x63;
}
constexpr std::uint32_t j_type(std::int32_t imm, unsigned rd) {
  const auto u = static_cast<std::uint32_t>(imm);
  return ((u >> 20) & 1) << 31 | ((u >> 1) & 0x3ff) << 21 | ((u >> 11) & 1) << 20 |
         ((u >> 12) & 0xff) << 12 | rd << 7 | 0x6f;
}

constexpr std::uint32_t lui(unsigned rd, std::uint32_t upper) {
  return (upper << 12) | rd << 7 | 0x37;
}
constexpr std::uint32_t auipc(unsigned rd, std::uint32_t upper) {
  return (upper << 12) | rd << 7 | 0x17;
}
constexpr std::uint32_t jal(unsigned rd, std::int32_t off) { return j_type(off, rd); }
constexpr std::uint32_t jalr(unsigned rd, unsigned rs1, std::int32_t off) {
  return i_type(off, rs1, 0, rd, 0x67);
}
constexpr std::uint32_t beq(unsigned a, unsigned b, std::int32_t off) {
  return b_type(off, b, a, 0);
}
constexpr std::uint32_t bne(unsigned a, unsigned b, std::int32_t off) {
  return b_type(off, b, a, 1);
}
constexpr std::uint32_t blt(unsigned a, unsigned b, std::int32_t off) {
  return b_type(off, b, a, 4);
}
constexpr std::uint32_t bge(unsigned a, unsigned b, std::int32_t off) {
  return b_type(off, b, a, 5);
}
constexpr std::uint32_t bltu(unsigned a, unsigned b, std::int32_t off) {
  return b_type(off, b, a, 6);
}
constexpr std::uint32_t bgeu(unsigned a, unsigned b, std::int32_t off) {
  return b_type(off, b, a, 7);
}
constexpr std::uint32_t load(std::uint32_t f3, unsigned rd, unsigned rs1, std::int32_t off) {
  return i_type(off, rs1, f3, rd, 0x03);
}
constexpr std::uint32_t store(std::uint32_t f3, unsigned rs2, unsigned rs1, std::int32_t off) {
  return s_type(off, rs2, rs1, f3);
}
enum LoadKind : std::uint32_t { kLb = 0, kLh = 1, kLw = 2, kLd = 3, kLbu = 4, kLhu = 5, kLwu = 6 };
enum StoreKind : std::uint32_t { kSb = 0, kSh = 1, kSw = 2, kSd = 3 };
constexpr std::uint32_t op_imm(std::uint32_t f3, unsigned rd, unsigned rs1, std::int32_t imm) {
  return i_type(imm, rs1, f3, rd, 0x13);
}
constexpr std::uint32_t addi(unsigned rd, unsigned rs1, std::int32_t imm) {
  return op_imm(0, rd, rs1, imm);
}
constexpr std::int32_t shamt(unsigned sh, unsigned top = 0) {
  return static_cast<std::int32_t>(top | sh);
}
constexpr std::uint32_t slli(unsigned rd, unsigned rs1, unsigned sh) {
  return op_imm(1, rd, rs1, shamt(sh));
}
constexpr std::uint32_t srli(unsigned rd, unsigned rs1, unsigned sh) {
  return op_imm(5, rd, rs1, shamt(sh));
}
constexpr std::uint32_t srai(unsigned rd, unsigned rs1, unsigned sh) {
  return op_imm(5, rd, rs1, shamt(sh, 0x400));
}
constexpr std::uint32_t addiw(unsigned rd, unsigned rs1, std::int32_t imm) {
  return i_type(imm, rs1, 0, rd, 0x1b);
}
constexpr std::uint32_t slliw(unsigned rd, unsigned rs1, unsigned sh) {
  return i_type(shamt(sh), rs1, 1, rd, 0x1b);
}
constexpr std::uint32_t srliw(unsigned rd, unsigned rs1, unsigned sh) {
  return i_type(shamt(sh), rs1, 5, rd, 0x1b);
}
constexpr std::uint32_t sraiw(unsigned rd, unsigned rs1, unsigned sh) {
  return i_type(shamt(sh, 0x400), rs1, 5, rd, 0x1b);
}
constexpr std::uint32_t op(std::uint32_t f7, std::uint32_t f3, unsigned rd, unsigned rs1,
                           unsigned rs2) {
  return r_type(f7, rs2, rs1, f3, rd, 0x33);
}
constexpr std::uint32_t op32(std::uint32_t f7, std::uint32_t f3, unsigned rd, unsigned rs1,
                             unsigned rs2) {
  return r_type(f7, rs2, rs1, f3, rd, 0x3b);
}
constexpr std::uint32_t add(unsigned rd, unsigned a, unsigned b) { return op(0, 0, rd, a, b); }
// M: funct7 1, funct3 0..7 = mul mulh mulhsu mulhu div divu rem remu.
constexpr std::uint32_t mop(std::uint32_t f3, unsigned rd, unsigned a, unsigned b) {
  return op(1, f3, rd, a, b);
}
constexpr std::uint32_t mop32(std::uint32_t f3, unsigned rd, unsigned a, unsigned b) {
  return op32(1, f3, rd, a, b);
}
// A: funct5, aq, rl, rs2, rs1, funct3 (2 = W, 3 = D), rd.
constexpr std::uint32_t amo(std::uint32_t f5, std::uint32_t f3, unsigned rd, unsigned addr,
                            unsigned rs2, bool aq = false, bool rl = false) {
  return r_type(f5 << 2 | (aq ? 2u : 0u) | (rl ? 1u : 0u), rs2, addr, f3, rd, 0x2f);
}
enum Amo : std::uint32_t {
  kAdd = 0x00,
  kSwap = 0x01,
  kLr = 0x02,
  kSc = 0x03,
  kXor = 0x04,
  kOr = 0x08,
  kAnd = 0x0c,
  kMin = 0x10,
  kMax = 0x14,
  kMinu = 0x18,
  kMaxu = 0x1c,
};
constexpr std::uint32_t kW = 2;
constexpr std::uint32_t kD = 3;
constexpr std::uint32_t csrrs(unsigned rd, std::uint32_t csr, unsigned rs1) {
  return csr << 20 | rs1 << 15 | 2u << 12 | rd << 7 | 0x73;
}
constexpr std::uint32_t kEcall = 0x00000073;
constexpr std::uint32_t kEbreak = 0x00100073;
constexpr std::uint32_t kFence = 0x0ff0000f;  // fence iorw, iorw
constexpr std::uint32_t kNop = addi(0, 0, 0);

// Register numbers used by the tests (t0.. and a0.. as in the ABI).
constexpr unsigned kT0 = 5, kT1 = 6, kT2 = 7, kS0 = 8, kS1 = 9;

constexpr std::uint64_t kInt64Min =
    static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::min());
constexpr std::uint64_t kAllOnes = ~std::uint64_t{0};

// ---- the machine under test: a space with a code page, data pages, and one hart ----

constexpr Vaddr kCode = 0x10000;  // RX
constexpr Vaddr kData = 0x20000;  // RW, 2 pages
constexpr Vaddr kRo = 0x30000;    // R only
constexpr Vaddr kNoX = 0x40000;   // RW (a jump here is a fetch from a page without X)

vmspace::PageProperty user_prop(PageFlags flags) {
  return vmspace::PageProperty::new_user(flags, vmspace::CachePolicy::Writeback);
}

std::shared_ptr<vmspace::VmSpace> new_space() {
  auto s = vmspace::VmSpace::create();
  REQUIRE(s.has_value());
  return std::move(*s);
}

// Maps a fresh zeroed frame at `va`; returns its physical address.
Paddr map_frame(const vmspace::VmSpace& space, Vaddr va, PageFlags flags) {
  auto f = vmspace::FrameAllocOptions().alloc_frame();
  REQUIRE(f.has_value());
  const Paddr pa = f->paddr();
  auto g = vmspace::disable_preempt();
  auto c = space.cursor_mut(g, {va, va + vmspace::kPageSize});
  REQUIRE(c.has_value());
  REQUIRE(c->map(vmspace::UFrame(std::move(*f)), user_prop(flags)).has_value());
  return pa;
}

// Binds the calling thread to `cpu`, activates `space` there; undone by the destructor.
class OnCpu {
 public:
  OnCpu(const std::shared_ptr<vmspace::VmSpace>& space, std::uint32_t cpu) {
    auto id = vmspace::CpuId::try_from(cpu);
    REQUIRE(id.has_value());
    auto b = vmspace::CpuBinding::bind(*id);
    REQUIRE(b.has_value());
    binding_.emplace(std::move(*b));
    REQUIRE(space->activate().has_value());
  }
  OnCpu(const OnCpu&) = delete;
  OnCpu& operator=(const OnCpu&) = delete;
  ~OnCpu() { (void)vmspace::VmSpace::deactivate_current(); }

 private:
  std::optional<vmspace::CpuBinding> binding_;
};

struct Machine {
  std::shared_ptr<vmspace::VmSpace> space = new_space();
  Paddr code_pa = map_frame(*space, kCode, PageFlags::RX);
  Paddr data_pa = map_frame(*space, kData, PageFlags::RW);
  Paddr data2_pa = map_frame(*space, kData + vmspace::kPageSize, PageFlags::RW);
  Paddr ro_pa = map_frame(*space, kRo, PageFlags::R);
  Paddr nox_pa = map_frame(*space, kNoX, PageFlags::RW);
  OnCpu on{space, 0};
  std::uint64_t clock = 1000;
  Hart hart{[this] { return clock++; }};

  // Host views of the emulated memory, for setting up and checking.
  template <class T = std::uint64_t>
  T& at(Paddr page, std::size_t offset) {
    return *reinterpret_cast<T*>(vmspace::paddr_to_vaddr(page) + offset);
  }
  void write_code(std::initializer_list<std::uint32_t> code, std::size_t offset = 0) {
    std::size_t i = offset;
    for (std::uint32_t insn : code) {
      at<std::uint32_t>(code_pa, i) = insn;
      i += 4;
    }
  }
  // Writes `code` + ecall at kCode and runs `st` from there until a trap.
  Trap exec(std::initializer_list<std::uint32_t> code, HartState& st,
            std::uint64_t budget = 1'000'000) {
    write_code(code);
    at<std::uint32_t>(code_pa, 4 * code.size()) = kEcall;
    st.pc = kCode;
    return hart.run(st, budget);
  }
  // Runs `code` and expects it to reach the closing ecall.
  HartState ok(std::initializer_list<std::uint32_t> code, HartState st = {}) {
    const Trap t = exec(code, st);
    CHECK_MESSAGE(t.cause == TrapCause::Ecall, trap_cause_name(t.cause) << " tval " << t.tval);
    CHECK(st.pc == kCode + 4 * code.size());
    return st;
  }
};

HartState regs(std::initializer_list<std::pair<unsigned, std::uint64_t>> init) {
  HartState st;
  for (auto [r, v] : init) st.x[r] = v;
  return st;
}

}  // namespace
