// The RV64IMA interpreter: fetch, decode (decode.hpp), execute, one instruction at a time.
//
// Read Hart::run() first (the read sections and the budget), then Exec::step() (one
// instruction), then the memory helpers (how a virtual address becomes a host pointer).
// alu.hpp holds the arithmetic the instructions compute (M and A extensions).
#include "machine.hpp"

#include "alu.hpp"

#include <vmspace/boot.hpp>
#include <vmspace/mmu.hpp>
#include <vmspace/rcu.hpp>

#include <algorithm>
#include <atomic>
#include <type_traits>
#include <utility>

// ThreadSanitizer does not model fences, and gcc refuses them under -fsanitize=thread.
#if defined(__SANITIZE_THREAD__)
#define TEACHOS_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TEACHOS_TSAN 1
#endif
#endif

namespace teachos {

namespace {

using namespace alu;
using vmspace::PageFaultAccess;

constexpr std::uint64_t kPageMask = vmspace::kPageSize - 1;

// Counter shared by every unbound Hart::run(): nothing ever flushes it, and mmu_translate
// refuses every access anyway (no CPU), so the hart traps with an access fault at once.
const std::atomic<std::uint64_t> g_no_cpu_flushes{0};

}  // namespace

const char* trap_cause_name(TrapCause cause) noexcept {
  switch (cause) {
    case TrapCause::None:
      return "preempted";
    case TrapCause::Ecall:
      return "ecall";
    case TrapCause::Breakpoint:
      return "breakpoint";
    case TrapCause::IllegalInstruction:
      return "illegal instruction";
    case TrapCause::InstructionMisaligned:
      return "misaligned instruction address";
    case TrapCause::LoadMisaligned:
      return "misaligned load";
    case TrapCause::StoreMisaligned:
      return "misaligned store";
    case TrapCause::InstructionPageFault:
      return "instruction page fault";
    case TrapCause::LoadPageFault:
      return "load page fault";
    case TrapCause::StorePageFault:
      return "store page fault";
    case TrapCause::InstructionAccessFault:
      return "instruction access fault";
    case TrapCause::LoadAccessFault:
      return "load access fault";
    case TrapCause::StoreAccessFault:
      return "store access fault";
  }
  return "unknown trap";
}

Hart::Hart(Clock time) : time_(std::move(time)) { drop_cache(); }

void Hart::drop_cache() noexcept {
  code_ = PageEntry{kNoPage, nullptr, false};
  data_.fill(PageEntry{kNoPage, nullptr, false});
}

// One read section's worth of execution. Everything here runs with `guard` held.
struct Hart::Exec {
  Hart& hart;
  HartState& st;
  const vmspace::DisabledPreemptGuard& guard;
  const std::atomic<std::uint64_t>& tlb_flushes;
  std::uint64_t retired = 0;  // in this section (kept in a local while running, see run())
  Trap trap{};

  // ---- memory: virtual address -> host pointer, through the hart's cache and the MMU ----
  //
  // Why the cache is safe. A cached host pointer is a translation the CPU's TLB made, kept
  // outside it; it must go stale exactly when the TLB entry would:
  //  * another hart (or the kernel) changing the mapping must dispatch a TLB flush to this CPU
  //    (this CPU is in the space's CPU set while the space is active here). The flush bumps
  //    the CPU's invalidation counter before it removes any TLB entry, and revalidate()
  //    compares the counter with the value seen when the cache was filled before EVERY
  //    instruction (run() calls it ahead of step()); on a difference the whole cache goes.
  //    So after a shootdown returns, the next instruction here translates again, the same
  //    promptness as the TLB itself. An instruction that read the counter just before the
  //    bump is "in flight", as on hardware. (Stores it made may still sit in the host's store
  //    buffer and become visible a moment after the dispatch returned; a real shootdown's IPI
  //    would wait for them. Frames stay safe: leaving the read section publishes them before
  //    any grace period can end.)
  //  * the frame behind a stale pointer stays alive until a grace period after the flush, and
  //    a grace period cannot end while this read section lasts. The cache is dropped whenever
  //    a read section begins, so no pointer is ever used outside the section that made it.

  // Drops the cache if the CPU's TLB was invalidated since it was filled.
  void revalidate() noexcept {
    const std::uint64_t seq = tlb_flushes.load(std::memory_order_acquire);
    if (seq != hart.cache_seq_) [[unlikely]] {
      hart.drop_cache();
      hart.cache_seq_ = seq;
      ++hart.counters_.cache_drops;
    }
  }

  bool fail(TrapCause cause, std::uint64_t tval) noexcept {
    trap = Trap{cause, tval};
    return false;
  }

  // Translates the page of `va` for `access`; on failure records the trap.
  std::byte* translate(std::uint64_t va, PageFaultAccess access) noexcept {
    ++hart.counters_.translations;
    auto pa = vmspace::mmu_translate(guard, va & ~kPageMask, access);
    if (pa) return vmspace::paddr_to_vaddr(*pa);
    const bool refused = pa.error() == vmspace::Error::AccessDenied;
    switch (access) {
      case PageFaultAccess::Execute:
        fail(refused ? TrapCause::InstructionAccessFault : TrapCause::InstructionPageFault, va);
        break;
      case PageFaultAccess::Read:
        fail(refused ? TrapCause::LoadAccessFault : TrapCause::LoadPageFault, va);
        break;
      case PageFaultAccess::Write:
        fail(refused ? TrapCause::StoreAccessFault : TrapCause::StorePageFault, va);
        break;
    }
    return nullptr;
  }

  // Host pointer to the byte at `va` for a read (Write: for a write), or nullptr with the trap
  // recorded. The caller has checked alignment, so the access stays within the page.
  // The hit path is inlined into every load and store; a miss calls fill().
  [[gnu::always_inline]] inline std::byte* data_ptr(std::uint64_t va,
                                                    PageFaultAccess access) noexcept {
    const PageEntry& e = hart.data_[(va >> vmspace::kPageShift) % kDataCacheEntries];
    const bool write = access == PageFaultAccess::Write;
    if (e.page != (va & ~kPageMask) || (write && !e.writable)) [[unlikely]]
      return fill(va, access);
    return e.host + (va & kPageMask);
  }

  [[gnu::noinline]] std::byte* fill(std::uint64_t va, PageFaultAccess access) noexcept {
    std::byte* host = translate(va, access);
    if (host == nullptr) return nullptr;
    PageEntry& e = hart.data_[(va >> vmspace::kPageShift) % kDataCacheEntries];
    e = PageEntry{va & ~kPageMask, host, access == PageFaultAccess::Write};
    return host + (va & kPageMask);
  }

  // Loads: plain accesses on the host, but atomic (relaxed) ones, so that racing harts are a
  // defined data race with RISC-V's per-location coherence instead of C++ undefined behaviour.
  // T's signedness says how the value is extended to 64 bits.
  template <class T>
  bool load(std::uint64_t va, std::uint64_t& out) noexcept {
    using U = std::make_unsigned_t<T>;
    if ((va & (sizeof(T) - 1)) != 0) return fail(TrapCause::LoadMisaligned, va);
    std::byte* p = data_ptr(va, PageFaultAccess::Read);
    if (p == nullptr) return false;
    const U v = __atomic_load_n(reinterpret_cast<U*>(p), __ATOMIC_RELAXED);
    out = static_cast<std::uint64_t>(static_cast<std::int64_t>(static_cast<T>(v)));
    return true;
  }

  template <class T>
  bool store(std::uint64_t va, T value) noexcept {
    if ((va & (sizeof(T) - 1)) != 0) return fail(TrapCause::StoreMisaligned, va);
    std::byte* p = data_ptr(va, PageFaultAccess::Write);
    if (p == nullptr) return false;
    __atomic_store_n(reinterpret_cast<T*>(p), value, __ATOMIC_RELAXED);
    return true;
  }

  // Fetches and decodes the instruction at `pc` (4-byte aligned), or records the trap.
  const Decoded* fetch(std::uint64_t pc) noexcept {
    if ((pc & ~kPageMask) != hart.code_.page) [[unlikely]] {
      if ((pc & 3) != 0) {
        fail(TrapCause::InstructionMisaligned, pc);
        return nullptr;
      }
      std::byte* host = translate(pc, PageFaultAccess::Execute);
      if (host == nullptr) return nullptr;
      hart.code_ = PageEntry{pc & ~kPageMask, host, false};
    }
    // The word is read from memory every time (atomically, so that code another hart is
    // writing is a defined race); the decode table only remembers what a word means. It is
    // indexed by pc, and an entry is used only if it was decoded from this very word, so it
    // never needs invalidating: self-modifying code and remapped pages just miss.
    const std::uint32_t insn =
        __atomic_load_n(reinterpret_cast<const std::uint32_t*>(hart.code_.host + (pc & kPageMask)),
                        __ATOMIC_RELAXED);
    Decoded& d = hart.decoded_[(pc >> 2) % kDecodeEntries];
    if (d.raw != insn) [[unlikely]]
      d = decode(insn);
    return &d;
  }

  // A jump or taken branch to `target`: no C extension, so the target must be 4-byte aligned.
  // The trap is raised by the jump itself (pc stays on it, rd is not written).
  bool jump_ok(std::uint64_t target) noexcept {
    if ((target & 3) != 0) return fail(TrapCause::InstructionMisaligned, target);
    return true;
  }

  bool illegal(std::uint32_t insn) noexcept { return fail(TrapCause::IllegalInstruction, insn); }

  // ---- the A extension ----
  template <class U>
  bool atomic_op(const Decoded& d, std::uint64_t& result) noexcept {
    std::uint64_t* x = st.x.data();
    const unsigned op = d.raw >> 27;  // funct5
    const std::uint64_t va = x[d.rs1];
    if (op != kLr && op != kSc && !is_amo(op)) return illegal(d.raw);
    if (op == kLr && d.rs2 != 0) return illegal(d.raw);
    if ((va & (sizeof(U) - 1)) != 0) return fail(TrapCause::StoreMisaligned, va);
    const auto widen = [](U v) -> std::uint64_t {
      return sizeof(U) == 4 ? sext32(v) : static_cast<std::uint64_t>(v);
    };
    if (op == kLr) {
      std::byte* p = data_ptr(va, PageFaultAccess::Read);
      if (p == nullptr) return false;
      const U v = __atomic_load_n(reinterpret_cast<U*>(p), __ATOMIC_SEQ_CST);
      st.reservation_valid = true;
      st.reservation_bytes = sizeof(U);
      st.reservation_addr = va;
      st.reservation_value = v;
      result = widen(v);
      return true;
    }
    if (op == kSc) {
      // SC is a compare-and-swap against the value LR loaded. That detects every change of the
      // word between LR and SC except an ABA one: if other harts store B and then A again, the
      // CAS succeeds where the ISA requires failure ("no store from another hart to the
      // reservation set can be observed to have occurred between the LR and the SC"). Nothing
      // can tell the difference when no other memory access lies between LR and SC — the
      // constrained LR/SC loops that compilers and libraries emit — because the execution is
      // then equivalent to one in which the LR read the second A. A program that reads other
      // memory in between (say, a lock-free stack popping through the loaded pointer) can see
      // the difference: for it this hart is not a faithful RISC-V implementation.
      const bool matches =
          st.reservation_valid && st.reservation_addr == va && st.reservation_bytes == sizeof(U);
      st.reservation_valid = false;  // SC always ends the reservation, success or not
      if (!matches) {
        result = 1;
        return true;
      }
      std::byte* p = data_ptr(va, PageFaultAccess::Write);
      if (p == nullptr) return false;
      U expected = static_cast<U>(st.reservation_value);
      const bool ok =
          __atomic_compare_exchange_n(reinterpret_cast<U*>(p), &expected, static_cast<U>(x[d.rs2]),
                                      false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
      result = ok ? 0 : 1;
      return true;
    }
    std::byte* p = data_ptr(va, PageFaultAccess::Write);  // AMOs need W: they store
    if (p == nullptr) return false;
    result = widen(amo<U>(reinterpret_cast<U*>(p), op, static_cast<U>(x[d.rs2])));
    return true;
  }

  // Executes the instruction at `pc_ref` and advances it; `done` instructions have retired in
  // this section before it. Returns false (with `trap` set) if it trapped, in which case
  // nothing was changed. Inlined into run(), with pc in a local: a call per instruction, or a
  // pc that goes through memory, would cost more than most instructions.
  [[gnu::always_inline]] inline bool step(std::uint64_t& pc_ref, std::uint64_t done) noexcept {
    std::uint64_t* x = st.x.data();
    const std::uint64_t pc = pc_ref;
    const Decoded* dp = fetch(pc);
    if (dp == nullptr) return false;
    const Decoded& d = *dp;
    const std::uint64_t a = x[d.rs1];
    const std::uint64_t b = x[d.rs2];
    const std::uint64_t imm = d.imm;
    std::uint64_t next_pc = pc + 4;
    std::uint64_t r = 0;  // the value for rd
    // Branches, stores and fences have no rd: they return early.
    const auto branch = [&](bool taken) {
      if (taken) {
        if (!jump_ok(pc + imm)) return false;
        pc_ref = pc + imm;
      } else {
        pc_ref = next_pc;
      }
      return true;
    };
    const auto stored = [&](bool ok) {
      if (ok) pc_ref = next_pc;
      return ok;
    };
    switch (d.op) {
      case Op::Illegal:
        return illegal(d.raw);
      case Op::Lui:
        r = imm;
        break;
      case Op::Auipc:
        r = pc + imm;
        break;
      case Op::Jal:
        if (!jump_ok(pc + imm)) return false;
        r = pc + 4;
        next_pc = pc + imm;
        break;
      case Op::Jalr: {  // the target's bit 0 is cleared (the ISA's rule), then checked
        const std::uint64_t target = (a + imm) & ~std::uint64_t{1};
        if (!jump_ok(target)) return false;
        r = pc + 4;
        next_pc = target;
        break;
      }
      case Op::Beq:
        return branch(a == b);
      case Op::Bne:
        return branch(a != b);
      case Op::Blt:
        return branch(as_signed(a) < as_signed(b));
      case Op::Bge:
        return branch(as_signed(a) >= as_signed(b));
      case Op::Bltu:
        return branch(a < b);
      case Op::Bgeu:
        return branch(a >= b);
      // Loads: the signed forms sign-extend the value, the U forms zero-extend it.
      case Op::Lb:
        if (!load<std::int8_t>(a + imm, r)) return false;
        break;
      case Op::Lh:
        if (!load<std::int16_t>(a + imm, r)) return false;
        break;
      case Op::Lw:
        if (!load<std::int32_t>(a + imm, r)) return false;
        break;
      case Op::Ld:
        if (!load<std::uint64_t>(a + imm, r)) return false;
        break;
      case Op::Lbu:
        if (!load<std::uint8_t>(a + imm, r)) return false;
        break;
      case Op::Lhu:
        if (!load<std::uint16_t>(a + imm, r)) return false;
        break;
      case Op::Lwu:
        if (!load<std::uint32_t>(a + imm, r)) return false;
        break;
      case Op::Sb:
        return stored(store(a + imm, static_cast<std::uint8_t>(b)));
      case Op::Sh:
        return stored(store(a + imm, static_cast<std::uint16_t>(b)));
      case Op::Sw:
        return stored(store(a + imm, static_cast<std::uint32_t>(b)));
      case Op::Sd:
        return stored(store(a + imm, b));
      case Op::Addi:
        r = a + imm;
        break;
      case Op::Slti:
        r = as_signed(a) < as_signed(imm) ? 1 : 0;
        break;
      case Op::Sltiu:
        r = a < imm ? 1 : 0;
        break;
      case Op::Xori:
        r = a ^ imm;
        break;
      case Op::Ori:
        r = a | imm;
        break;
      case Op::Andi:
        r = a & imm;
        break;
      case Op::Slli:
        r = a << imm;
        break;
      case Op::Srli:
        r = a >> imm;
        break;
      case Op::Srai:
        r = static_cast<std::uint64_t>(as_signed(a) >> imm);
        break;
      case Op::Addiw:
        r = sext32(a + imm);
        break;
      case Op::Slliw:
        r = sext32(static_cast<std::uint32_t>(a) << imm);
        break;
      case Op::Srliw:
        r = sext32(static_cast<std::uint32_t>(a) >> imm);
        break;
      case Op::Sraiw:
        r = sext32(static_cast<std::uint32_t>(static_cast<std::int32_t>(a) >> imm));
        break;
      // Register shifts use only the low 6 (or, for *W, 5) bits of the amount.
      case Op::Add:
        r = a + b;
        break;
      case Op::Sub:
        r = a - b;
        break;
      case Op::Sll:
        r = a << (b & 63);
        break;
      case Op::Slt:
        r = as_signed(a) < as_signed(b) ? 1 : 0;
        break;
      case Op::Sltu:
        r = a < b ? 1 : 0;
        break;
      case Op::Xor:
        r = a ^ b;
        break;
      case Op::Srl:
        r = a >> (b & 63);
        break;
      case Op::Sra:
        r = static_cast<std::uint64_t>(as_signed(a) >> (b & 63));
        break;
      case Op::Or:
        r = a | b;
        break;
      case Op::And:
        r = a & b;
        break;
      case Op::Addw:
        r = sext32(a + b);
        break;
      case Op::Subw:
        r = sext32(a - b);
        break;
      case Op::Sllw:
        r = sext32(static_cast<std::uint32_t>(a) << (b & 31));
        break;
      case Op::Srlw:
        r = sext32(static_cast<std::uint32_t>(a) >> (b & 31));
        break;
      case Op::Sraw:
        r = sext32(static_cast<std::uint32_t>(static_cast<std::int32_t>(a) >> (b & 31)));
        break;
      case Op::Mul:
        r = a * b;
        break;
      case Op::Mulh:
        r = mulh(a, b);
        break;
      case Op::Mulhsu:
        r = mulhsu(a, b);
        break;
      case Op::Mulhu:
        r = mulhu(a, b);
        break;
      case Op::Div:
        r = div_signed<std::int64_t>(a, b);
        break;
      case Op::Divu:
        r = div_unsigned(a, b);
        break;
      case Op::Rem:
        r = rem_signed<std::int64_t>(a, b);
        break;
      case Op::Remu:
        r = rem_unsigned(a, b);
        break;
      case Op::Mulw:
        r = sext32(a * b);
        break;
      case Op::Divw:
        r = sext32(div_signed<std::int32_t>(lo32(a), lo32(b)));
        break;
      case Op::Divuw:
        r = sext32(div_unsigned(lo32(a), lo32(b)));
        break;
      case Op::Remw:
        r = sext32(rem_signed<std::int32_t>(lo32(a), lo32(b)));
        break;
      case Op::Remuw:
        r = sext32(rem_unsigned(lo32(a), lo32(b)));
        break;
      case Op::AmoW:
      case Op::AmoD: {
        std::uint64_t old = 0;  // a separate variable: taking r's address would keep r in memory
        if (!(d.op == Op::AmoW ? atomic_op<std::uint32_t>(d, old)
                               : atomic_op<std::uint64_t>(d, old))) {
          return false;
        }
        r = old;
        break;
      }
      case Op::Fence:
        // FENCE orders this hart's accesses as seen by other harts. Host loads and stores are
        // relaxed atomics, so the host needs a real fence (x86 would otherwise reorder a store
        // with a later load, which FENCE rw,rw forbids). Under TSan the seq_cst AMOs still
        // order, and plain FENCE-based hand-off is not exercised by the tests.
#ifndef TEACHOS_TSAN
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
#endif
        pc_ref = next_pc;
        return true;
      case Op::FenceI:
        // Nothing to do: every fetch reads memory afresh, and the decode table checks the word.
        pc_ref = next_pc;
        return true;
      case Op::Ecall:
        return fail(TrapCause::Ecall, 0);
      case Op::Ebreak:
        return fail(TrapCause::Breakpoint, pc);
      case Op::RdCycle:
        r = hart.counters_.cycles + done;
        break;
      case Op::RdTime:
        r = hart.time_ ? hart.time_() : 0;
        break;
      case Op::RdInstret:
        r = hart.counters_.instret + done;
        break;
    }
    if (d.rd != 0) x[d.rd] = r;
    pc_ref = next_pc;
    return true;
  }

  // Runs up to `n` instructions; stops early at a trap.
  void run(std::uint64_t n) noexcept {
    std::uint64_t pc = st.pc;
    std::uint64_t done = 0;
    while (done < n) {
      revalidate();
      if (!step(pc, done)) break;
      ++done;
    }
    st.pc = pc;
    retired = done;
  }
};

Trap Hart::run(HartState& state, std::uint64_t budget) {
  Trap trap{};
  std::uint64_t done = 0;
  state.x[0] = 0;  // whatever the kernel stored there, x0 reads as zero
  while (done < budget) {
    // One read section per slice: it keeps every frame we hold a pointer to alive, and ending
    // it every kInstructionsPerSection instructions lets grace periods advance.
    auto guard = vmspace::disable_preempt();
    ++counters_.sections;
    const std::atomic<std::uint64_t>* flushes = vmspace::mmu_tlb_invalidations(guard);
    if (flushes == nullptr) flushes = &g_no_cpu_flushes;
    drop_cache();  // pointers made in an earlier section may point at freed frames
    cache_seq_ = flushes->load(std::memory_order_acquire);
    Exec exec{*this, state, guard, *flushes};
    exec.run(std::min(budget - done, kInstructionsPerSection));
    done += exec.retired;
    counters_.instret += exec.retired;
    counters_.cycles += exec.retired;
    trap = exec.trap;
    if (trap.cause != TrapCause::None) break;
  }
  drop_cache();
  if (trap.cause != TrapCause::None) {
    state.clear_reservation();
    ++counters_.traps;
  }
  return trap;
}

}  // namespace teachos
