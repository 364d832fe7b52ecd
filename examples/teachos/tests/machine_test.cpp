// The machine (machine.hpp): every instruction group of RV64IMA, its edge cases and traps, the
// MMU path (X/R/W permissions, ACCESSED/DIRTY, shootdowns seen within an instruction or two),
// atomics across harts, and a cross-check against qemu-riscv64 on a cross-compiled program.
//
// Instructions are hand-assembled by the small encoders below; a test writes them to a code
// page of a fresh VmSpace, sets registers in a HartState, runs until the closing ecall and
// checks registers and memory.
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

// Changes the flags of the page at `va` and dispatches the TLB flush (a shootdown).
void protect_page(const vmspace::VmSpace& space, Vaddr va, PageFlags flags) {
  auto g = vmspace::disable_preempt();
  auto c = space.cursor_mut(g, {va, va + vmspace::kPageSize});
  REQUIRE(c.has_value());
  auto r = c->protect_next(vmspace::kPageSize, [&](PageFlags& f, vmspace::CachePolicy&) {
    f = (f & (PageFlags::ACCESSED | PageFlags::DIRTY)) | flags;
  });
  REQUIRE(r.has_value());
  REQUIRE(r->has_value());
  c->flusher().issue_tlb_flush(vmspace::TlbFlushOp::for_single(va));
  c->flusher().dispatch_tlb_flush();
}

std::optional<vmspace::PageProperty> pte_of(const vmspace::VmSpace& space, Vaddr va) {
  auto w = space.page_table().page_walk(va);
  if (!w) return std::nullopt;
  return w->second;
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

// CPU seconds used by the calling thread: on a loaded machine wall time says little.
double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// CPU seconds used by the waited-for children of this process.
double children_cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_CHILDREN, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

HartState regs(std::initializer_list<std::pair<unsigned, std::uint64_t>> init) {
  HartState st;
  for (auto [r, v] : init) st.x[r] = v;
  return st;
}

}  // namespace

TEST_SUITE("teachos") {
  TEST_CASE("machine_base_integer_arithmetic_and_x0") {
    Machine m;
    auto st =
        m.ok({addi(kT0, 0, -5), addi(0, 0, 7), add(kT1, kT0, kT0), lui(kT2, 0xfffff), auipc(kS0, 1),
              op(0x20, 0, kS1, kT1, kT0), op(0, 2, kA0, kT0, 0), op(0, 3, kA1, kT0, 0),
              op_imm(2, kA2, kT0, -4), op_imm(3, kA3, kT0, -4), op_imm(4, kA4, kT0, 0x0ff),
              op_imm(6, kA5, 0, 0x0f0), op_imm(7, kA6, kT0, 0x0ff)});
    CHECK(st.x[0] == 0);  // the write to x0 was ignored
    CHECK(st.x[kT0] == static_cast<std::uint64_t>(-5));
    CHECK(st.x[kT1] == static_cast<std::uint64_t>(-10));
    CHECK(st.x[kT2] == 0xfffffffffffff000);  // LUI sign-extends bit 31
    CHECK(st.x[kS0] == kCode + 16 + 0x1000);
    CHECK(st.x[kS1] == static_cast<std::uint64_t>(-5));  // sub
    CHECK(st.x[kA0] == 1);                               // slt -5 < 0
    CHECK(st.x[kA1] == 0);                               // sltu: huge < 0 is false
    CHECK(st.x[kA2] == 1);                               // slti -5 < -4
    CHECK(st.x[kA3] == 1);                               // sltiu -5 < -4 (unsigned) is true
    CHECK(st.x[kA4] == (static_cast<std::uint64_t>(-5) ^ 0xff));
    CHECK(st.x[kA5] == 0xf0);
    CHECK(st.x[kA6] == (static_cast<std::uint64_t>(-5) & 0xff));
  }

  TEST_CASE("machine_shifts_and_word_forms_sign_extend") {
    Machine m;
    auto st = m.ok(
        {slli(kT1, kT0, 63), srli(kT2, kT0, 63), srai(kS0, kT1, 63), slliw(kS1, kT0, 31),
         srliw(kA0, kA7, 31), sraiw(kA1, kA7, 31), addiw(kA2, kA6, 1), op32(0, 1, kA3, kT0, kA5),
         op32(0x20, 5, kA4, kA7, kA5), op32(0x20, 0, kA5, 0, kT0), op(0, 1, kA6, kT0, kA6)},
        regs({{kT0, 0x8000000000000001}, {kA7, 0x80000000}, {kA6, 0x7fffffff}, {kA5, 31 + 32}}));
    CHECK(st.x[kT1] == 0x8000000000000000);
    CHECK(st.x[kT2] == 1);
    CHECK(st.x[kS0] == kAllOnes);            // srai by 63
    CHECK(st.x[kS1] == 0xffffffff80000000);  // slliw 1 << 31 sign-extends
    CHECK(st.x[kA0] == 1);
    CHECK(st.x[kA1] == kAllOnes);            // sraiw of 0x80000000 by 31
    CHECK(st.x[kA2] == 0xffffffff80000000);  // addiw overflow wraps in 32 bits and sign-extends
    CHECK(st.x[kA3] ==
          0xffffffff80000000);     // sllw uses only the low 5 bits of the amount (63 -> 31)
    CHECK(st.x[kA4] == kAllOnes);  // sraw 0x80000000 by 31
    CHECK(st.x[kA5] == 0xffffffffffffffff);  // subw 0 - 1
    CHECK(st.x[kA6] == 0x8000000000000000);  // sll uses the low 6 bits: 0x7fffffff & 63 = 63
  }

  TEST_CASE("machine_loads_sign_and_zero_extend_stores_write_widths") {
    Machine m;
    m.at(m.data_pa, 0) = 0x8081828384858687;
    auto st = m.ok({load(kLb, kT0, kA0, 0), load(kLbu, kT1, kA0, 0), load(kLh, kT2, kA0, 0),
                    load(kLhu, kS0, kA0, 0), load(kLw, kS1, kA0, 4), load(kLwu, kA1, kA0, 4),
                    load(kLd, kA2, kA0, 0), store(kSb, kA3, kA0, 8), store(kSh, kA3, kA0, 10),
                    store(kSw, kA3, kA0, 12), store(kSd, kA3, kA0, 16), load(kLd, kA4, kA0, 8)},
                   regs({{kA0, kData}, {kA3, 0x1122334455667788}}));
    CHECK(st.x[kT0] == 0xffffffffffffff87);
    CHECK(st.x[kT1] == 0x87);
    CHECK(st.x[kT2] == 0xffffffffffff8687);
    CHECK(st.x[kS0] == 0x8687);
    CHECK(st.x[kS1] == 0xffffffff80818283);
    CHECK(st.x[kA1] == 0x80818283);
    CHECK(st.x[kA2] == 0x8081828384858687);
    CHECK(st.x[kA4] == 0x5566778877880088);  // sw at 12, sh at 10, sb at 8 (byte 9 untouched: 0)
    CHECK(m.at(m.data_pa, 16) == 0x1122334455667788);
  }

  TEST_CASE("machine_branches_and_jumps") {
    Machine m;
    // Each taken branch skips an addi that would set a marker bit in s0.
    auto st = m.ok({beq(kT0, kT0, 8),    addi(kS0, kS0, 1),  bne(kT0, kT1, 8),
                    addi(kS0, kS0, 2),   blt(kT1, kT0, 8),   addi(kS0, kS0, 4),  // -1 < 1 signed
                    bltu(kT0, kT1, 8),   addi(kS0, kS0, 8),   // 1 < 0xff..ff unsigned
                    bge(kT0, kT1, 8),    addi(kS0, kS0, 16),  // 1 >= -1
                    bgeu(kT1, kT0, 8),   addi(kS0, kS0, 32), beq(kT0, kT1, 8),
                    addi(kS1, kS1, 1),  // not taken: s1 = 1
                    jal(kA0, 8),         addi(kS0, kS0, 64), auipc(kA1, 0),
                    jalr(kA2, kA1, 13),  // target a1+13 -> bit 0 cleared = +12
                    addi(kS0, kS0, 128), addi(kS0, kS0, 256)},
                   regs({{kT0, 1}, {kT1, kAllOnes}}));
    CHECK(st.x[kS0] == 256);  // every taken jump skipped its addi; only the jalr target ran
    CHECK(st.x[kS1] == 1);
    CHECK(st.x[kA0] == kCode + 14 * 4 + 4);
    CHECK(st.x[kA2] == kCode + 17 * 4 + 4);
  }

  TEST_CASE("machine_jump_to_a_misaligned_target_traps_at_the_jump") {
    Machine m;
    HartState st = regs({{kT0, kCode + 2}});
    Trap t = m.exec({jalr(kA0, kT0, 0)}, st);
    CHECK(t.cause == TrapCause::InstructionMisaligned);
    CHECK(t.tval == kCode + 2);
    CHECK(st.pc == kCode);
    CHECK(st.x[kA0] == 0);  // rd not written
    st = {};
    t = m.exec({jal(kA0, 6)}, st);
    CHECK(t.cause == TrapCause::InstructionMisaligned);
    CHECK(t.tval == kCode + 6);
    st = regs({{kT0, 1}});
    t = m.exec({beq(kT0, kT0, 6)}, st);
    CHECK(t.cause == TrapCause::InstructionMisaligned);
    CHECK(t.tval == kCode + 6);
    // A not-taken branch to a misaligned target is fine.
    st = regs({{kT0, 1}});
    t = m.exec({bne(kT0, kT0, 6)}, st);
    CHECK(t.cause == TrapCause::Ecall);
  }

  TEST_CASE("machine_multiply_high_parts") {
    Machine m;
    auto st = m.ok(
        {mop(0, kT0, kA0, kA1), mop(1, kT1, kA0, kA1), mop(2, kT2, kA0, kA1), mop(3, kS0, kA0, kA1),
         mop(1, kS1, kA2, kA2), mop(2, kA3, kA2, kA2), mop32(0, kA4, kA0, kA1)},
        regs({{kA0, kAllOnes}, {kA1, 3}, {kA2, kInt64Min}}));
    CHECK(st.x[kT0] == static_cast<std::uint64_t>(-3));
    CHECK(st.x[kT1] == kAllOnes);                        // mulh(-1, 3) = high of -3
    CHECK(st.x[kT2] == kAllOnes);                        // mulhsu(-1, 3) = high of -3
    CHECK(st.x[kS0] == 2);                               // mulhu(2^64-1, 3) = 2
    CHECK(st.x[kS1] == 0x4000000000000000);              // (-2^63)^2 = 2^126
    CHECK(st.x[kA3] == 0xc000000000000000);              // -2^63 * 2^63 (unsigned) = -2^126
    CHECK(st.x[kA4] == static_cast<std::uint64_t>(-3));  // mulw sign-extends
  }

  TEST_CASE("machine_division_by_zero_and_overflow_follow_the_isa") {
    Machine m;
    auto st = m.ok(
        {mop(4, kT0, kA0, 0), mop(5, kT1, kA0, 0), mop(6, kT2, kA0, 0), mop(7, kS0, kA0, 0),
         mop(4, kS1, kA1, kA2), mop(6, kA3, kA1, kA2), mop(4, kA4, kA0, kA5),
         mop(6, kA5, kA0, kA5)},
        regs({{kA0, static_cast<std::uint64_t>(-7)}, {kA1, kInt64Min}, {kA2, kAllOnes}, {kA5, 2}}));
    CHECK(st.x[kT0] == kAllOnes);                        // div by 0
    CHECK(st.x[kT1] == kAllOnes);                        // divu by 0
    CHECK(st.x[kT2] == static_cast<std::uint64_t>(-7));  // rem by 0 = dividend
    CHECK(st.x[kS0] == static_cast<std::uint64_t>(-7));  // remu by 0 = dividend
    CHECK(st.x[kS1] == kInt64Min);                       // INT64_MIN / -1
    CHECK(st.x[kA3] == 0);                               // INT64_MIN % -1
    CHECK(st.x[kA4] == static_cast<std::uint64_t>(-3));  // -7 / 2 rounds toward zero
    CHECK(st.x[kA5] == static_cast<std::uint64_t>(-1));  // -7 % 2 has the dividend's sign
    st = m.ok(
        {mop32(4, kT0, kA0, 0), mop32(5, kT1, kA0, 0), mop32(6, kT2, kA0, 0), mop32(7, kS0, kA0, 0),
         mop32(4, kS1, kA1, kA2), mop32(6, kA3, kA1, kA2), mop32(5, kA4, kA2, kA5)},
        regs({{kA0, 0x00000000fffffff9}, {kA1, 0x80000000}, {kA2, kAllOnes}, {kA5, 2}}));
    CHECK(st.x[kT0] == kAllOnes);                        // divw by 0
    CHECK(st.x[kT1] == kAllOnes);                        // divuw by 0: 0xffffffff sign-extended
    CHECK(st.x[kT2] == static_cast<std::uint64_t>(-7));  // remw by 0: sext(low word)
    CHECK(st.x[kS0] == static_cast<std::uint64_t>(-7));  // remuw by 0: sext(low word)
    CHECK(st.x[kS1] == 0xffffffff80000000);              // INT32_MIN / -1 = INT32_MIN
    CHECK(st.x[kA3] == 0);                               // INT32_MIN % -1
    CHECK(st.x[kA4] == 0x7fffffff);                      // divuw 0xffffffff / 2
  }

  TEST_CASE("machine_amos_return_the_old_value_and_respect_signedness") {
    Machine m;
    m.at(m.data_pa, 0) = 5;
    m.at<std::uint32_t>(m.data_pa, 8) = 0xfffffffe;  // -2 as a word
    m.at(m.data_pa, 16) = 0xf0;
    auto st =
        m.ok({amo(kAdd, kD, kT0, kA0, kA1, true, true), amo(kSwap, kD, kT1, kA0, kA1),
              amo(kMin, kW, kT2, kA2, kA3),   // min(-2, 3) signed = -2: memory stays
              amo(kMinu, kW, kS0, kA2, kA3),  // minu(0xfffffffe, 3) = 3
              amo(kMax, kW, kS1, kA2, kA4),   // max(3, -1) signed = 3
              amo(kMaxu, kW, kA5, kA2, kA4),  // maxu(3, 0xffffffff) = 0xffffffff
              amo(kXor, kD, 0, kA6, kA1), amo(kOr, kD, 0, kA6, kA1), amo(kAnd, kD, kA7, kA6, kA3)},
             regs({{kA0, kData},
                   {kA1, 0x0f},
                   {kA2, kData + 8},
                   {kA3, 3},
                   {kA4, kAllOnes},
                   {kA6, kData + 16}}));
    CHECK(st.x[kT0] == 5);
    CHECK(st.x[kT1] == 20);
    CHECK(m.at(m.data_pa, 0) == 0x0f);
    CHECK(st.x[kT2] == 0xfffffffffffffffe);  // the old word, sign-extended
    CHECK(st.x[kS0] == 0xfffffffffffffffe);
    CHECK(st.x[kS1] == 3);
    CHECK(st.x[kA5] == 3);
    CHECK(m.at<std::uint32_t>(m.data_pa, 8) == 0xffffffff);
    CHECK(m.at<std::uint32_t>(m.data_pa, 12) == 0);  // a .W AMO touches 4 bytes only
    CHECK(st.x[kA7] == 0xff);                        // (0xf0 ^ 0xf | 0xf) before the and
    CHECK(m.at(m.data_pa, 16) == 3);
  }

  TEST_CASE("machine_lr_sc_succeeds_once_and_fails_without_a_matching_reservation") {
    Machine m;
    m.at(m.data_pa, 0) = 41;
    auto st = m.ok({amo(kLr, kD, kT0, kA0, 0), addi(kT0, kT0, 1), amo(kSc, kD, kT1, kA0, kT0),
                    amo(kSc, kD, kT2, kA0, kT0),  // no reservation left: fails
                    amo(kLr, kW, kS0, kA0, 0), amo(kSc, kD, kS1, kA0, kA1),  // width differs: fails
                    amo(kLr, kD, kA2, kA0, 0), amo(kSc, kD, kA3, kA4, kA1)},  // address differs
                   regs({{kA0, kData}, {kA1, 7}, {kA4, kData + 8}}));
    CHECK(st.x[kT1] == 0);
    CHECK(st.x[kT2] == 1);
    CHECK(st.x[kS0] == 42);
    CHECK(st.x[kS1] == 1);
    CHECK(st.x[kA3] == 1);
    CHECK(m.at(m.data_pa, 0) == 42);
    CHECK(m.at(m.data_pa, 8) == 0);
    CHECK_FALSE(st.reservation_valid);
    // A change of the word between LR and SC (here by the "other hart" that is the test)
    // makes the SC fail; clear_reservation() (a context switch) does too.
    HartState s2 = regs({{kA0, kData}, {kA1, 9}});
    REQUIRE(m.exec({amo(kLr, kD, kT0, kA0, 0), kEbreak, amo(kSc, kD, kT1, kA0, kA1)}, s2).cause ==
            TrapCause::Breakpoint);
    CHECK_FALSE(s2.reservation_valid);  // every trap ends the reservation
    s2.reservation_valid = true;        // pretend it survived, then change the word under it
    m.at(m.data_pa, 0) = 100;
    s2.pc += 4;
    CHECK(m.hart.run(s2, 10).cause == TrapCause::Ecall);
    CHECK(s2.x[kT1] == 1);
    CHECK(m.at(m.data_pa, 0) == 100);
  }

  TEST_CASE("machine_misaligned_accesses_trap_with_the_address") {
    Machine m;
    struct Case {
      std::uint32_t insn;
      TrapCause cause;
      Vaddr tval;
    };
    // a0 = kData + 8, a1 = kData + 2 (misaligned for every width above a byte).
    const Case cases[] = {
        {load(kLh, kT0, kA0, 1), TrapCause::LoadMisaligned, kData + 9},
        {load(kLw, kT0, kA0, 2), TrapCause::LoadMisaligned, kData + 10},
        {load(kLd, kT0, kA0, 4), TrapCause::LoadMisaligned, kData + 12},
        {load(kLwu, kT0, kA1, 0), TrapCause::LoadMisaligned, kData + 2},
        {store(kSh, kT0, kA0, 1), TrapCause::StoreMisaligned, kData + 9},
        {store(kSd, kT0, kA0, 4), TrapCause::StoreMisaligned, kData + 12},
        {amo(kAdd, kW, kT0, kA1, kT0), TrapCause::StoreMisaligned, kData + 2},
        {amo(kSwap, kD, kT0, kA0 /* 8-aligned */, kT0), TrapCause::Ecall, 0},
        {amo(kSwap, kD, kT0, kA2 /* 4-aligned */, kT0), TrapCause::StoreMisaligned, kData + 4},
        {amo(kLr, kD, kT0, kA1, 0), TrapCause::StoreMisaligned, kData + 2},
        {amo(kSc, kD, kT0, kA1, kT0), TrapCause::StoreMisaligned, kData + 2},
    };
    for (const Case& c : cases) {
      HartState st = regs({{kA0, kData + 8}, {kA1, kData + 2}, {kA2, kData + 4}, {kT0, 77}});
      const Trap t = m.exec({c.insn}, st);
      CHECK(t.cause == c.cause);
      if (c.cause == TrapCause::Ecall) continue;
      CHECK(t.tval == c.tval);
      CHECK(st.pc == kCode);
      CHECK(st.x[kT0] == 77);
    }
  }

  TEST_CASE("machine_illegal_instructions_trap_with_their_bits") {
    Machine m;
    const std::uint32_t bad[] = {
        0x00000000,                    // all zeros (the canonical illegal instruction)
        0x0001,                        // a compressed instruction (c.nop)
        0x00052007,                    // flw: floating point
        csrrs(kT0, 0x300, 0),          // mstatus: not a user counter
        csrrs(kT0, 0xc00, kT1),        // rdcycle that would also set bits
        0x30200073,                    // mret
        0x10500073,                    // wfi
        amo(0x05, kD, kT0, kA0, kT1),  // an unused AMO funct5
        amo(kLr, kD, kT0, kA0, kT1),   // LR with rs2 != 0
        op(0x02, 0, kT0, kT0, kT0),    // an unused funct7
        i_type(0, kT0, 1, kT0, 0x67),  // jalr with funct3 1
    };
    for (std::uint32_t insn : bad) {
      HartState st = regs({{kA0, kData}, {kT0, 5}});
      const Trap t = m.exec({insn}, st);
      CHECK_MESSAGE(t.cause == TrapCause::IllegalInstruction, std::hex << insn);
      CHECK(t.tval == insn);
      CHECK(st.pc == kCode);
      CHECK(st.x[kT0] == 5);
    }
    CHECK(m.at(m.data_pa, 0) == 0);  // the bad AMO touched nothing
  }

  TEST_CASE("machine_ecall_ebreak_fence_and_counters") {
    Machine m;
    HartState st;
    Trap t = m.exec({kNop}, st);
    CHECK(t.cause == TrapCause::Ecall);
    CHECK(st.pc == kCode + 4);  // AT the ecall: the kernel adds 4
    st = {};
    t = m.exec({kFence, 0x0000100f /* fence.i */, kEbreak}, st);
    CHECK(t.cause == TrapCause::Breakpoint);
    CHECK(st.pc == kCode + 8);
    CHECK(t.tval == kCode + 8);
    const std::uint64_t before = m.hart.counters().instret;
    m.clock = 5000;
    st = m.ok({csrrs(kT0, 0xc02, 0), csrrs(kT1, 0xc00, 0), csrrs(kT2, 0xc01, 0),
               csrrs(kS0, 0xc01, 0), csrrs(kS1, 0xc02, 0)});
    CHECK(st.x[kT0] == before);
    CHECK(st.x[kT1] == before + 1);
    CHECK(st.x[kT2] == 5000);
    CHECK(st.x[kS0] == 5001);
    CHECK(st.x[kS1] == before + 4);
    CHECK(m.hart.counters().instret == before + 5);  // the trapping ecall did not retire
  }

  TEST_CASE("machine_budget_preempts_with_pc_at_the_next_instruction") {
    Machine m;
    // An endless loop: t0 += 1; j back. Budget 7: four adds and three jumps.
    HartState st;
    m.write_code({addi(kT0, kT0, 1), jal(0, -4)});
    st.pc = kCode;
    Trap t = m.hart.run(st, 7);
    CHECK(t.cause == TrapCause::None);
    CHECK(st.x[kT0] == 4);
    CHECK(st.pc == kCode + 4);
    CHECK(m.hart.run(st, 0).cause == TrapCause::None);
    // Longer than a read section: the hart re-enters sections and keeps going.
    t = m.hart.run(st, 3 * Hart::kInstructionsPerSection + 1);
    CHECK(t.cause == TrapCause::None);
    // Starting at the jal, the odd count is one more jal than addi.
    CHECK(st.x[kT0] == 4 + (3 * Hart::kInstructionsPerSection + 1) / 2);
  }

  TEST_CASE("machine_page_faults_and_accessed_dirty") {
    Machine m;
    // Fetch from a page without X.
    m.at<std::uint32_t>(m.nox_pa, 0) = kEcall;
    HartState st = regs({{kT0, kNoX}});
    Trap t = m.exec({jalr(0, kT0, 0)}, st);
    CHECK(t.cause == TrapCause::InstructionPageFault);
    CHECK(t.tval == kNoX);
    CHECK(st.pc == kNoX);  // the jump retired; the fetch at the target faulted
    // Store to a read-only page: StorePageFault with the address, nothing written.
    st = regs({{kA0, kRo + 0x18}, {kT0, 0xabc}});
    t = m.exec({store(kSd, kT0, kA0, 8)}, st);
    CHECK(t.cause == TrapCause::StorePageFault);
    CHECK(t.tval == kRo + 0x20);
    CHECK(st.pc == kCode);
    CHECK(m.at(m.ro_pa, 0x20) == 0);
    // An AMO on a read-only page needs W.
    st = regs({{kA0, kRo}});
    CHECK(m.exec({amo(kAdd, kW, kT0, kA0, kA0)}, st).cause == TrapCause::StorePageFault);
    // Loads from an unmapped page, and from the kernel half (an access fault).
    st = regs({{kA0, 0x50000}});
    t = m.exec({load(kLd, kT0, kA0, 0)}, st);
    CHECK(t.cause == TrapCause::LoadPageFault);
    CHECK(t.tval == 0x50000);
    st = regs({{kA0, 0xffff800000000000}});
    t = m.exec({load(kLd, kT0, kA0, 0)}, st);
    CHECK(t.cause == TrapCause::LoadAccessFault);
    // A fetch from an unmapped page.
    st = {};
    st.pc = 0x60000;
    CHECK(m.hart.run(st, 10).cause == TrapCause::InstructionPageFault);
    // ACCESSED after a load, DIRTY only after a store.
    const Vaddr fresh = kData + vmspace::kPageSize;
    CHECK_FALSE(vmspace::has(pte_of(*m.space, fresh)->flags, PageFlags::ACCESSED));
    st = regs({{kA0, fresh}});
    m.ok({load(kLd, kT0, kA0, 0)}, st);
    CHECK(vmspace::has(pte_of(*m.space, fresh)->flags, PageFlags::ACCESSED));
    CHECK_FALSE(vmspace::has(pte_of(*m.space, fresh)->flags, PageFlags::DIRTY));
    m.ok({store(kSw, kA0, kA0, 4)}, st);
    CHECK(vmspace::has(pte_of(*m.space, fresh)->flags, PageFlags::DIRTY));
    CHECK(vmspace::has(pte_of(*m.space, kCode)->flags, PageFlags::ACCESSED));
    CHECK_FALSE(vmspace::has(pte_of(*m.space, kCode)->flags, PageFlags::DIRTY));
  }

  TEST_CASE("machine_self_modifying_code_runs_the_new_instruction") {
    // The hart remembers decoded words; a store into its own (RWX) code page must still take
    // effect, including when the old word at the same pc was decoded before.
    Machine m;
    constexpr Vaddr kRwx = 0x70000;
    const Paddr rwx = map_frame(*m.space, kRwx, PageFlags::RWX);
    const std::uint32_t code[] = {store(kSw, kT1, kA0, 12), 0x0000100f /* fence.i */, jal(0, 4),
                                  addi(kA1, 0, 1), kEcall};
    std::memcpy(vmspace::paddr_to_vaddr(rwx), code, sizeof code);
    for (const std::int32_t value : {1, 42, -7}) {
      HartState st = regs({{kA0, kRwx}, {kT1, addi(kA1, 0, value)}});
      st.pc = kRwx;
      CHECK(m.hart.run(st, 100).cause == TrapCause::Ecall);
      CHECK(st.x[kA1] == static_cast<std::uint64_t>(static_cast<std::int64_t>(value)));
    }
  }

  TEST_CASE("machine_not_bound_to_a_cpu_is_an_instruction_access_fault") {
    Hart hart{nullptr};
    HartState st;
    st.pc = kCode;
    const Trap t = hart.run(st, 10);
    CHECK(t.cause == TrapCause::InstructionAccessFault);
    CHECK(t.tval == kCode);
  }

  TEST_CASE("machine_sees_a_shootdown_within_the_instructions_in_flight") {
    // A hart on CPU 1 stores an ever-growing counter to a data page in a loop. The test thread
    // removes W from that page and dispatches the flush (the shootdown reaches CPU 1's TLB),
    // then reads the counter. The hart checks the CPU's invalidation counter before every
    // instruction, so after the dispatch only stores already executed can still land — and
    // there can be a few dozen of those: the host CPU running the hart retires stores into its
    // store buffer and may check the counter for the next instructions before those stores
    // are visible to the test thread (a real IPI would wait for them; the emulated shootdown
    // does not ask the target). A hart that kept using its cached host pointer until the end
    // of its read section would land up to 2048 more (half its instructions are stores).
    // Then the same for X on the code page.
    if (vmspace::num_cpus() < 2) {
      MESSAGE("skipped: needs 2 emulated CPUs");
      return;
    }
    auto space = new_space();
    const Paddr code = map_frame(*space, kCode, PageFlags::RX);
    const Paddr data = map_frame(*space, kData, PageFlags::RW);
    const std::uint32_t loop[] = {
        addi(kT0, kT0, 1), store(kSd, kT0, kA0, 0), addi(kT0, kT0, 1), store(kSd, kT0, kA0, 0),
        addi(kT0, kT0, 1), store(kSd, kT0, kA0, 0), jal(0, -24)};
    std::memcpy(vmspace::paddr_to_vaddr(code), loop, sizeof loop);
    auto& counter = *reinterpret_cast<std::uint64_t*>(vmspace::paddr_to_vaddr(data));
    for (const bool remove_x : {false, true}) {
      std::atomic<bool> started{false};
      __atomic_store_n(&counter, 0, __ATOMIC_RELAXED);
      Trap trap;
      HartState st = regs({{kA0, kData}});
      st.pc = kCode;
      std::thread hart_thread([&] {
        OnCpu on(space, 1);
        Hart hart{nullptr};
        started.store(true);
        trap = hart.run(st, std::uint64_t{1} << 40);
      });
      while (!started.load() || __atomic_load_n(&counter, __ATOMIC_RELAXED) < 1000)
        std::this_thread::yield();
      protect_page(*space, remove_x ? kCode : kData, PageFlags::R);  // remove X, or W
      const std::uint64_t seen = __atomic_load_n(&counter, __ATOMIC_RELAXED);
      hart_thread.join();
      const std::uint64_t final_value = __atomic_load_n(&counter, __ATOMIC_RELAXED);
      CHECK(trap.cause == (remove_x ? TrapCause::InstructionPageFault : TrapCause::StorePageFault));
      // Stores land in order, so the counter grew by one per store that landed after `seen`.
      CHECK_MESSAGE(final_value - seen <= 128,
                    "stores after the shootdown: " << final_value - seen);
      protect_page(*space, kCode, PageFlags::RX);
      protect_page(*space, kData, PageFlags::RW);
    }
  }

  TEST_CASE("machine_amo_and_lr_sc_increments_from_many_harts_sum_exactly") {
    const std::uint32_t harts = std::min<std::uint32_t>(vmspace::num_cpus(), 4);
    if (harts < 2) {
      MESSAGE("skipped: needs 2 emulated CPUs");
      return;
    }
    constexpr std::uint64_t kIters = 100000;
    auto space = new_space();
    const Paddr code = map_frame(*space, kCode, PageFlags::RX);
    const Paddr data = map_frame(*space, kData, PageFlags::RW);
    // a0 = &amo_word, a2 = &lrsc_word, a1 = iterations.
    const std::uint32_t program[] = {
        addi(kT1, 0, 1),
        amo(kAdd, kW, 0, kA0, kT1, true, true),  // loop: amoadd.w.aqrl x0, t1, (a0)
        amo(kLr, kW, kT0, kA2, 0, true, false),  // retry: lr.w.aq t0, (a2)
        addi(kT0, kT0, 1),
        amo(kSc, kW, kT2, kA2, kT0, false, true),  // sc.w.rl t2, t0, (a2)
        bne(kT2, 0, -12),                          // to retry
        addi(kA1, kA1, -1),
        bne(kA1, 0, -24),  // to loop
        kEcall,
    };
    std::memcpy(vmspace::paddr_to_vaddr(code), program, sizeof program);
    std::vector<std::thread> threads;
    std::vector<Trap> traps(harts);
    for (std::uint32_t h = 0; h < harts; ++h) {
      threads.emplace_back([&, h] {
        OnCpu on(space, h);
        Hart hart{nullptr};
        HartState st = regs({{kA0, kData}, {kA1, kIters}, {kA2, kData + 64}});
        st.pc = kCode;
        // Small budgets so harts also preempt (and lose reservations) in the middle.
        do {
          traps[h] = hart.run(st, 977);
          st.clear_reservation();
        } while (traps[h].cause == TrapCause::None);
      });
    }
    for (auto& t : threads) t.join();
    for (const Trap& t : traps) CHECK(t.cause == TrapCause::Ecall);
    const auto* words = reinterpret_cast<const std::uint32_t*>(vmspace::paddr_to_vaddr(data));
    CHECK(words[0] == harts * kIters);
    CHECK(words[16] == harts * kIters);
  }

  TEST_CASE("machine_mips_on_a_compute_loop") {
    // Informational: a loop of adds, xors, shifts, a multiply, a load and a store per round.
    Machine m;
    HartState st = regs({{kA0, kData}, {kA1, 2'000'000}, {kT0, 0x12345}});
    m.write_code({op(0, 4, kT1, kT0, kA1),  // loop: t1 = t0 ^ a1
                  slli(kT2, kT1, 3), add(kT0, kT0, kT2), mop(0, kS0, kT0, kT1), srli(kS0, kS0, 7),
                  load(kLd, kS1, kA0, 0), add(kS1, kS1, kS0), store(kSd, kS1, kA0, 0),
                  addi(kA1, kA1, -1), bne(kA1, 0, -36), kEcall});
    st.pc = kCode;
    const auto t0 = std::chrono::steady_clock::now();
    const double cpu0 = thread_cpu_seconds();
    const std::uint64_t before = m.hart.counters().instret;
    const Trap t = m.hart.run(st, std::uint64_t{1} << 40);
    const double cpu = thread_cpu_seconds() - cpu0;
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    CHECK(t.cause == TrapCause::Ecall);
    const std::uint64_t n = m.hart.counters().instret - before;
    CHECK(n == 2'000'000 * 10);
    MESSAGE("compute loop: " << n << " instructions in " << secs << " s wall, " << cpu
                             << " s CPU = " << n / cpu / 1e6 << " MIPS (per CPU second)");
  }
}

// ---- cross-check with qemu-riscv64 on a cross-compiled program ----

namespace {

// A minimal ELF64 loader: maps every PT_LOAD page with the union of its segments' flags
// (R=4, W=2, X=1 in p_flags) and copies the file bytes. The kernel's elf.cpp is the real one.
struct LoadedElf {
  std::uint64_t entry = 0;
  bool ok = false;
  std::string why;
};

LoadedElf load_elf(const vmspace::VmSpace& space, const std::vector<char>& file) {
  LoadedElf out;
  auto rd = [&](std::size_t off, auto& v) {
    if (off + sizeof v > file.size()) return false;
    std::memcpy(&v, file.data() + off, sizeof v);
    return true;
  };
  std::uint16_t machine = 0, phnum = 0, phentsize = 0;
  std::uint64_t phoff = 0;
  if (file.size() < 64 || std::memcmp(file.data(),
                                      "\x7f"
                                      "ELF\x02\x01",
                                      6) != 0) {
    out.why = "not an ELF64 little-endian file";
    return out;
  }
  rd(18, machine);
  rd(24, out.entry);
  rd(32, phoff);
  rd(54, phentsize);
  rd(56, phnum);
  if (machine != 243) {
    out.why = "not RISC-V";
    return out;
  }
  std::map<Vaddr, PageFlags> pages;
  struct Seg {
    std::uint64_t off, va, filesz;
  };
  std::vector<Seg> segs;
  for (std::uint16_t i = 0; i < phnum; ++i) {
    const std::size_t ph = phoff + std::size_t{i} * phentsize;
    std::uint32_t type = 0, flags = 0;
    std::uint64_t off = 0, va = 0, filesz = 0, memsz = 0;
    if (!rd(ph, type) || !rd(ph + 4, flags) || !rd(ph + 8, off) || !rd(ph + 16, va) ||
        !rd(ph + 32, filesz) || !rd(ph + 40, memsz)) {
      out.why = "truncated program header";
      return out;
    }
    if (type != 1 || memsz == 0) continue;
    PageFlags f = PageFlags::None;
    if (flags & 4) f = f | PageFlags::R;
    if (flags & 2) f = f | PageFlags::W;
    if (flags & 1) f = f | PageFlags::X;
    for (Vaddr p = vmspace::align_down(va, vmspace::kPageSize); p < va + memsz;
         p += vmspace::kPageSize) {
      pages[p] = pages.count(p) ? pages[p] | f : f;
    }
    segs.push_back({off, va, filesz});
  }
  std::map<Vaddr, Paddr> frames;
  for (auto [va, f] : pages) frames[va] = map_frame(space, va, f);
  for (const Seg& s : segs) {
    for (std::uint64_t i = 0; i < s.filesz; ++i) {
      const Vaddr va = s.va + i;
      *(vmspace::paddr_to_vaddr(frames[vmspace::align_down(va, vmspace::kPageSize)]) +
        (va & (vmspace::kPageSize - 1))) = static_cast<std::byte>(file.at(s.off + i));
    }
  }
  out.ok = true;
  return out;
}

// Runs `cmd`, returns its stdout and exit status (or nullopt if it could not be run).
std::optional<std::pair<std::string, int>> run_host(const std::string& cmd) {
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return std::nullopt;
  std::string out;
  char buf[256];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int status = pclose(p);
  if (status == -1 || !WIFEXITED(status)) return std::nullopt;
  return std::make_pair(out, WEXITSTATUS(status));
}

}  // namespace

TEST_SUITE("teachos") {
  TEST_CASE("machine_agrees_with_qemu_on_a_cross_compiled_program") {
    const std::string elf_path = TEACHOS_CHECKSUM_ELF;
    if (elf_path.empty()) {
      MESSAGE("skipped: riscv64-linux-gnu-gcc was not found when the build was configured");
      return;
    }
    const std::string qemu = TEACHOS_QEMU;
    auto probe = qemu.empty() ? std::nullopt : run_host(qemu + " --version 2>/dev/null");
    if (!probe || probe->second != 0) {
      MESSAGE("skipped: qemu-riscv64 is missing or does not run");
      return;
    }
    std::ifstream in(elf_path, std::ios::binary);
    REQUIRE_MESSAGE(in.good(), "cannot open " << elf_path);
    const std::vector<char> file((std::istreambuf_iterator<char>(in)),
                                 std::istreambuf_iterator<char>());

    const double q0 = children_cpu_seconds();
    auto reference = run_host(qemu + " " + elf_path);
    const double qemu_cpu = children_cpu_seconds() - q0;
    REQUIRE(reference.has_value());

    auto space = new_space();
    const LoadedElf elf = load_elf(*space, file);
    REQUIRE_MESSAGE(elf.ok, elf.why);
    constexpr Vaddr kStackTop = 0x3ffffff000;
    for (Vaddr p = kStackTop - 4 * vmspace::kPageSize; p < kStackTop; p += vmspace::kPageSize) {
      map_frame(*space, p, PageFlags::RW);
    }
    OnCpu on(space, 0);
    Hart hart{[] { return std::uint64_t{0}; }};
    HartState st;
    st.pc = elf.entry;
    st.x[kSp] = kStackTop - 64;  // argc = 0 (zeroed frame), argv/envp empty
    std::string out;
    int status = -1;
    const double cpu0 = thread_cpu_seconds();
    for (;;) {
      const Trap t = hart.run(st, 100'000);
      if (t.cause == TrapCause::None) continue;
      REQUIRE_MESSAGE(t.cause == TrapCause::Ecall, trap_cause_name(t.cause)
                                                       << " at pc " << std::hex << st.pc << " tval "
                                                       << t.tval);
      const std::uint64_t nr = st.x[kA7];
      if (nr == 64) {  // write(fd, buf, len): the buffer is on the stack page we mapped
        auto g = vmspace::disable_preempt();
        for (std::uint64_t i = 0; i < st.x[kA2]; ++i) {
          const Vaddr va = st.x[kA1] + i;
          auto pa = vmspace::mmu_translate(g, va, vmspace::PageFaultAccess::Read);
          REQUIRE(pa.has_value());
          out.push_back(static_cast<char>(*vmspace::paddr_to_vaddr(*pa)));
        }
        st.x[kA0] = st.x[kA2];
      } else if (nr == 93 || nr == 94) {
        status = static_cast<int>(st.x[kA0] & 0xff);
        break;
      } else {
        st.x[kA0] = static_cast<std::uint64_t>(-38);  // ENOSYS
      }
      st.pc += 4;
    }
    const double cpu = thread_cpu_seconds() - cpu0;
    CHECK(out == reference->first);
    CHECK(status == reference->second);
    const std::uint64_t n = hart.counters().instret;
    MESSAGE("checksum program: " << n << " instructions in " << cpu << " s CPU = " << n / cpu / 1e6
                                 << " MIPS; qemu-riscv64 (including its start-up) " << qemu_cpu
                                 << " s CPU; ratio " << cpu / qemu_cpu);
  }
}
