// The machine (machine.hpp), one instruction group at a time: RV64IMA arithmetic, loads and
// stores, branches, the M and A extensions, misaligned and illegal instructions, ecall/ebreak
// and the budget. Memory-management behaviour is in machine_mmu_test.cpp.
//
// Instructions are hand-assembled by the encoders in machine_harness.hpp; a test writes them to
// a code page of a fresh VmSpace, sets registers in a HartState, runs until the closing ecall
// and checks registers and memory.
#include "machine_harness.hpp"

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
}
