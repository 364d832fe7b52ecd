// The machine: an RV64IMA hart that runs user code, one instruction at a time.
//
// A real CPU runs user code until something happens that only the kernel can deal with: a
// system call, a page fault, an illegal instruction, a timer interrupt. Then it "traps": it
// saves where it was and jumps into the kernel. Our hart does the same, except that the kernel
// is the C++ code that called Hart::run(): run() returns a Trap saying what happened, with the
// user's registers in the HartState the kernel passed in (xv6 calls that the trapframe).
//
// Memory: every instruction fetch, load and store goes through the vmspace library's emulated
// MMU on the CPU the calling thread is bound to (vmspace::mmu_translate: the CPU's software
// TLB, then a page-table walk that checks R/W/X and USER and sets ACCESSED/DIRTY). A
// translation the MMU refuses becomes a page-fault trap, exactly like on hardware; the kernel
// decides whether to map something (lazy allocation, copy-on-write, stack growth) and run the
// instruction again, or to kill the process.
//
// What the hart implements (the unprivileged ISA, user mode only):
//   RV64I   every instruction including the *W forms; FENCE and FENCE.I order memory (a host
//           fence), ECALL and EBREAK trap.
//   M       multiply/divide incl. *W forms; division by zero and overflow give the ISA's
//           results (no trap).
//   A       LR/SC and every AMO, .W and .D, atomic across harts (host atomics on the memory
//           behind the translation); aq/rl are accepted (every AMO is sequentially consistent).
//   Zicsr   only the counter reads rdcycle, rdtime, rdinstret (csrrs rd, csr, x0).
// Everything else (compressed and floating-point instructions, other CSRs, privileged
// instructions) is an IllegalInstruction trap. There is no C extension, so instructions and
// jump targets are 4-byte aligned; data accesses must be naturally aligned (else a misaligned
// trap), so no access ever crosses a page.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>

#include "decode.hpp"

namespace teachos {

// Why Hart::run() returned. The numbering is ours; the comments give the RISC-V scause name.
enum class TrapCause : std::uint8_t {
  None,                    // the instruction budget ran out (a timer interrupt): preempt
  Ecall,                   // ecall from user mode; pc still points AT the ecall (the kernel adds 4)
  Breakpoint,              // ebreak; pc at the ebreak, tval = pc
  IllegalInstruction,      // tval = the instruction bits
  InstructionMisaligned,   // tval = target address (a jump/branch to pc % 4 != 0); pc at the jump
  LoadMisaligned,          // tval = address
  StoreMisaligned,         // tval = address; AMO/LR/SC report StoreMisaligned
  InstructionPageFault,    // tval = faulting address (fetch needs X and USER)
  LoadPageFault,           // tval = faulting address (loads and LR need R and USER)
  StorePageFault,          // tval = faulting address (stores, SC and AMOs need W, R and USER)
  InstructionAccessFault,  // tval = address refused outright (mmu_translate said AccessDenied:
  LoadAccessFault,         //   kernel half, device memory, no user space active on the CPU)
  StoreAccessFault,
};

// A short lower-case name for messages ("store page fault").
const char* trap_cause_name(TrapCause cause) noexcept;

// True for the six page/access faults (the ones a kernel may resolve by mapping memory).
constexpr bool is_memory_fault(TrapCause cause) noexcept {
  return cause >= TrapCause::InstructionPageFault && cause <= TrapCause::StoreAccessFault;
}

struct Trap {
  TrapCause cause = TrapCause::None;
  std::uint64_t tval = 0;
};

// ABI register numbers the kernel needs (the RISC-V calling convention).
enum Reg : unsigned {
  kZero = 0,
  kRa = 1,
  kSp = 2,
  kGp = 3,
  kTp = 4,
  kA0 = 10,
  kA1 = 11,
  kA2 = 12,
  kA3 = 13,
  kA4 = 14,
  kA5 = 15,
  kA6 = 16,
  kA7 = 17,
};

// The user-visible state of one thread; the kernel saves it in the thread (the trapframe).
// A plain value: copy it to fork, edit it to deliver a system call's result.
struct HartState {
  std::array<std::uint64_t, 32> x{};  // x[0] reads as 0 whatever is stored (the hart ignores it)
  std::uint64_t pc = 0;

  // The LR/SC reservation: set by LR, consumed by SC. The kernel must call clear_reservation()
  // on every context switch (and run() clears it itself when it returns a fault, ecall or
  // breakpoint): an SC is allowed to fail spuriously, but it must not succeed on a reservation
  // that another thread's LR made.
  bool reservation_valid = false;
  std::uint8_t reservation_bytes = 0;   // 4 (LR.W) or 8 (LR.D)
  std::uint64_t reservation_addr = 0;   // the virtual address LR read
  std::uint64_t reservation_value = 0;  // what LR read (SC compares against it, see machine.cpp)

  void clear_reservation() noexcept { reservation_valid = false; }
};

// What one hart has done since it was created (statistics; rdcycle/rdinstret read them).
struct HartCounters {
  std::uint64_t instret = 0;       // instructions retired (a trapping instruction does not retire)
  std::uint64_t cycles = 0;        // = instret: the model charges one cycle per instruction
  std::uint64_t translations = 0;  // calls to mmu_translate (misses in the hart's page cache)
  std::uint64_t cache_drops = 0;   // times the hart's page cache was dropped by a TLB flush
  std::uint64_t traps = 0;         // run() returns other than TrapCause::None
  std::uint64_t sections = 0;      // RCU read sections entered (one per kInstructionsPerSection)
};

// One emulated hart. Belongs to one host thread (the one bound to an emulated CPU that calls
// run()); not thread-safe. Many HartStates (threads) can run on one Hart over time.
class Hart {
 public:
  // rdtime's clock (the kernel passes a deterministic clock in deterministic mode). Called only
  // when user code executes rdtime.
  using Clock = std::function<std::uint64_t()>;

  // How many instructions run inside one RCU read section (vmspace::disable_preempt) before the
  // hart leaves it for a moment, so grace periods — and with them the freeing of unmapped
  // frames — keep advancing while user code computes.
  static constexpr std::uint64_t kInstructionsPerSection = 4096;

  explicit Hart(Clock time);

  // Runs user code from `state` on the calling thread until a trap or until `budget`
  // instructions have retired (then it returns TrapCause::None with pc at the next
  // instruction). budget == 0 returns None at once.
  //
  // Preconditions: the calling thread is bound to an emulated CPU (vmspace::CpuBinding), the
  // process's VmSpace is active on it, and the thread is not in atomic mode. Holds an RCU read
  // section (disable_preempt) only while executing, never across the return, so the kernel's
  // fault handling can open cursors and block. (An unbound thread, or a CPU with no space
  // active, gets an InstructionAccessFault at once: the MMU refuses every access.)
  //
  // On a trap, `state` is exactly as before the trapping instruction (pc at it, no register
  // written, no memory changed), except that the LR/SC reservation is cleared.
  Trap run(HartState& state, std::uint64_t budget);

  const HartCounters& counters() const noexcept { return counters_; }

 private:
  // A tiny cache of translations in front of the CPU's TLB (the hart's "L0 TLB"): the host
  // pointer of the current code page, and a direct-mapped table of data pages. It is dropped
  // whenever the CPU's TLB sees any invalidation (a shootdown by another hart included) and at
  // the start of every read section; see machine.cpp for why that keeps it correct.
  static constexpr std::size_t kDataCacheEntries = 64;
  static constexpr std::uint64_t kNoPage = ~std::uint64_t{0};  // never a page address
  struct PageEntry {     // emptied by drop_cache(), which the constructor calls
    std::uint64_t page;  // user virtual page address, kNoPage when empty
    std::byte* host;     // host pointer to the start of the physical page
    bool writable;       // translated for Write (W and DIRTY set in the PTE)
  };

  struct Exec;  // the interpreter loop (machine.cpp)
  friend struct Exec;

  void drop_cache() noexcept;

  Clock time_;
  HartCounters counters_;
  // The bound CPU's TLB invalidation count (vmspace::mmu_tlb_invalidations) when the cache was
  // last known valid.
  std::uint64_t cache_seq_ = 0;
  PageEntry code_;
  std::array<PageEntry, kDataCacheEntries> data_;
  // What recently executed instruction words mean, indexed by pc (fetch() in machine.cpp).
  // Each entry carries the word it was decoded from, so it is never stale, only missed.
  static constexpr std::size_t kDecodeEntries = 1024;
  std::array<Decoded, kDecodeEntries> decoded_{};
};

}  // namespace teachos
