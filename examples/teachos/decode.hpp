// Decoding: turning a 32-bit RV64IMA instruction word into "what to do, with which registers".
//
// A RISC-V instruction keeps its fields in fixed places: the opcode in bits 0-6, rd in 7-11,
// funct3 in 12-14, rs1 in 15-19, rs2 in 20-24, funct7 in 25-31. Only the immediate moves
// around between the six formats (R, I, S, B, U, J), and its sign is always bit 31. decode()
// looks at opcode, funct3 and funct7 once and names the operation; the hart (machine.cpp)
// remembers decoded words, so a loop is decoded once and then only executed.
#pragma once

#include <cstdint>

namespace teachos {

enum class Op : std::uint8_t {
  Illegal,  // anything this hart does not implement: compressed, floating point, privileged...
  Lui,
  Auipc,
  Jal,
  Jalr,
  Beq,
  Bne,
  Blt,
  Bge,
  Bltu,
  Bgeu,
  Lb,
  Lh,
  Lw,
  Ld,
  Lbu,
  Lhu,
  Lwu,
  Sb,
  Sh,
  Sw,
  Sd,
  Addi,
  Slti,
  Sltiu,
  Xori,
  Ori,
  Andi,
  Slli,
  Srli,
  Srai,
  Addiw,
  Slliw,
  Srliw,
  Sraiw,
  Add,
  Sub,
  Sll,
  Slt,
  Sltu,
  Xor,
  Srl,
  Sra,
  Or,
  And,
  Addw,
  Subw,
  Sllw,
  Srlw,
  Sraw,
  Mul,
  Mulh,
  Mulhsu,
  Mulhu,
  Div,
  Divu,
  Rem,
  Remu,
  Mulw,
  Divw,
  Divuw,
  Remw,
  Remuw,
  AmoW,
  AmoD,  // LR, SC and the AMOs; funct5 (bits 27-31) says which, see machine.cpp
  Fence,
  FenceI,
  Ecall,
  Ebreak,
  RdCycle,
  RdTime,
  RdInstret,  // csrrs rd, cycle/time/instret, x0
};

struct Decoded {
  std::uint32_t raw = 0;  // the instruction word this was decoded from
  Op op = Op::Illegal;    // (0 decodes as Illegal: a zero-filled table is consistent)
  std::uint8_t rd = 0, rs1 = 0, rs2 = 0;
  std::uint64_t imm = 0;  // sign-extended immediate, or the shift amount
};

namespace decode_detail {

constexpr unsigned funct3(std::uint32_t i) noexcept { return (i >> 12) & 7; }
constexpr unsigned funct7(std::uint32_t i) noexcept { return i >> 25; }

// Immediates are sign-extended from instruction bit 31: shift the word as a signed value so
// the sign comes along for free.
constexpr std::uint64_t sext(std::int32_t v) noexcept {
  return static_cast<std::uint64_t>(static_cast<std::int64_t>(v));
}
constexpr std::uint64_t imm_i(std::uint32_t i) noexcept {
  return sext(static_cast<std::int32_t>(i) >> 20);
}
constexpr std::uint64_t imm_s(std::uint32_t i) noexcept {
  return sext((static_cast<std::int32_t>(i & 0xfe000000u) >> 20) |
              static_cast<std::int32_t>((i >> 7) & 0x1f));
}
constexpr std::uint64_t imm_b(std::uint32_t i) noexcept {
  return sext(
      (static_cast<std::int32_t>(i & 0x80000000u) >> 19) |
      static_cast<std::int32_t>(((i & 0x80) << 4) | ((i >> 20) & 0x7e0) | ((i >> 7) & 0x1e)));
}
constexpr std::uint64_t imm_u(std::uint32_t i) noexcept {
  return sext(static_cast<std::int32_t>(i & 0xfffff000u));
}
constexpr std::uint64_t imm_j(std::uint32_t i) noexcept {
  return sext((static_cast<std::int32_t>(i & 0x80000000u) >> 11) |
              static_cast<std::int32_t>((i & 0xff000) | ((i >> 9) & 0x800) | ((i >> 20) & 0x7fe)));
}

// The operation named by opcode/funct3/funct7, and which immediate format it uses.
enum class Imm : std::uint8_t { None, I, S, B, U, J, Shamt6, Shamt5 };
struct Named {
  Op op;
  Imm imm;
};

constexpr Named name(std::uint32_t i) noexcept {
  const unsigned f3 = funct3(i);
  const unsigned f7 = funct7(i);
  constexpr Named kIllegal{Op::Illegal, Imm::None};
  switch (i & 0x7f) {
    case 0x37:
      return {Op::Lui, Imm::U};
    case 0x17:
      return {Op::Auipc, Imm::U};
    case 0x6f:
      return {Op::Jal, Imm::J};
    case 0x67:
      return f3 == 0 ? Named{Op::Jalr, Imm::I} : kIllegal;
    case 0x63: {
      constexpr Op kBranches[8] = {Op::Beq, Op::Bne, Op::Illegal, Op::Illegal,
                                   Op::Blt, Op::Bge, Op::Bltu,    Op::Bgeu};
      return kBranches[f3] == Op::Illegal ? kIllegal : Named{kBranches[f3], Imm::B};
    }
    case 0x03: {
      constexpr Op kLoads[8] = {Op::Lb,  Op::Lh,  Op::Lw,  Op::Ld,
                                Op::Lbu, Op::Lhu, Op::Lwu, Op::Illegal};
      return kLoads[f3] == Op::Illegal ? kIllegal : Named{kLoads[f3], Imm::I};
    }
    case 0x23: {
      constexpr Op kStores[4] = {Op::Sb, Op::Sh, Op::Sw, Op::Sd};
      return f3 < 4 ? Named{kStores[f3], Imm::S} : kIllegal;
    }
    case 0x13:
      switch (f3) {
        case 0:
          return {Op::Addi, Imm::I};
        case 2:
          return {Op::Slti, Imm::I};
        case 3:
          return {Op::Sltiu, Imm::I};
        case 4:
          return {Op::Xori, Imm::I};
        case 6:
          return {Op::Ori, Imm::I};
        case 7:
          return {Op::Andi, Imm::I};
        case 1:
          return (i >> 26) == 0 ? Named{Op::Slli, Imm::Shamt6} : kIllegal;
        default:  // 5: the top six bits pick logical (0) or arithmetic (0x10) right shift
          if ((i >> 26) == 0) return {Op::Srli, Imm::Shamt6};
          if ((i >> 26) == 0x10) return {Op::Srai, Imm::Shamt6};
          return kIllegal;
      }
    case 0x1b:
      if (f3 == 0) return {Op::Addiw, Imm::I};
      if (f3 == 1 && f7 == 0) return {Op::Slliw, Imm::Shamt5};
      if (f3 == 5 && f7 == 0) return {Op::Srliw, Imm::Shamt5};
      if (f3 == 5 && f7 == 0x20) return {Op::Sraiw, Imm::Shamt5};
      return kIllegal;
    case 0x33: {
      constexpr Op kBase[8] = {Op::Add, Op::Sll, Op::Slt, Op::Sltu,
                               Op::Xor, Op::Srl, Op::Or,  Op::And};
      constexpr Op kMul[8] = {Op::Mul, Op::Mulh, Op::Mulhsu, Op::Mulhu,
                              Op::Div, Op::Divu, Op::Rem,    Op::Remu};
      if (f7 == 0) return {kBase[f3], Imm::None};
      if (f7 == 1) return {kMul[f3], Imm::None};
      if (f7 == 0x20 && f3 == 0) return {Op::Sub, Imm::None};
      if (f7 == 0x20 && f3 == 5) return {Op::Sra, Imm::None};
      return kIllegal;
    }
    case 0x3b:
      if (f7 == 0 && f3 == 0) return {Op::Addw, Imm::None};
      if (f7 == 0 && f3 == 1) return {Op::Sllw, Imm::None};
      if (f7 == 0 && f3 == 5) return {Op::Srlw, Imm::None};
      if (f7 == 0x20 && f3 == 0) return {Op::Subw, Imm::None};
      if (f7 == 0x20 && f3 == 5) return {Op::Sraw, Imm::None};
      if (f7 == 1) {
        constexpr Op kMulW[8] = {Op::Mulw, Op::Illegal, Op::Illegal, Op::Illegal,
                                 Op::Divw, Op::Divuw,   Op::Remw,    Op::Remuw};
        return kMulW[f3] == Op::Illegal ? kIllegal : Named{kMulW[f3], Imm::None};
      }
      return kIllegal;
    case 0x2f:
      if (f3 == 2) return {Op::AmoW, Imm::None};
      if (f3 == 3) return {Op::AmoD, Imm::None};
      return kIllegal;
    case 0x0f:
      if (f3 == 0) return {Op::Fence, Imm::None};
      if (f3 == 1) return {Op::FenceI, Imm::None};
      return kIllegal;
    case 0x73:
      if (i == 0x00000073) return {Op::Ecall, Imm::None};
      if (i == 0x00100073) return {Op::Ebreak, Imm::None};
      // Only csrrs rd, csr, x0 — a pure read — of the three user counters.
      if (f3 != 2 || ((i >> 15) & 31) != 0) return kIllegal;
      switch (i >> 20) {
        case 0xc00:
          return {Op::RdCycle, Imm::None};
        case 0xc01:
          return {Op::RdTime, Imm::None};
        case 0xc02:
          return {Op::RdInstret, Imm::None};
        default:
          return kIllegal;
      }
    default:
      return kIllegal;  // compressed (low bits != 11), floating point, ...
  }
}

}  // namespace decode_detail

constexpr Decoded decode(std::uint32_t insn) noexcept {
  using namespace decode_detail;
  const Named n = name(insn);
  Decoded d;
  d.raw = insn;
  d.op = n.op;
  d.rd = static_cast<std::uint8_t>((insn >> 7) & 31);
  d.rs1 = static_cast<std::uint8_t>((insn >> 15) & 31);
  d.rs2 = static_cast<std::uint8_t>((insn >> 20) & 31);
  switch (n.imm) {
    case Imm::None:
      break;
    case Imm::I:
      d.imm = imm_i(insn);
      break;
    case Imm::S:
      d.imm = imm_s(insn);
      break;
    case Imm::B:
      d.imm = imm_b(insn);
      break;
    case Imm::U:
      d.imm = imm_u(insn);
      break;
    case Imm::J:
      d.imm = imm_j(insn);
      break;
    case Imm::Shamt6:
      d.imm = (insn >> 20) & 63;
      break;
    case Imm::Shamt5:
      d.imm = (insn >> 20) & 31;
      break;
  }
  return d;
}

static_assert(decode(0).op == Op::Illegal, "a zero-filled decode table must be consistent");
static_assert(decode(0x00000073).op == Op::Ecall);
static_assert(decode(0xfff00093).imm == ~std::uint64_t{0});  // addi x1, x0, -1

}  // namespace teachos
