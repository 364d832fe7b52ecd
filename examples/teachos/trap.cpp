// Traps (see trap.hpp).
#include "trap.hpp"

#include <cinttypes>
#include <cstdio>
#include <string>

#include <vmspace/fault.hpp>

#include "proc.hpp"
#include "sched.hpp"
#include "syscall.hpp"

namespace teachos {

namespace {

// Set by the page-fault handler when a system call's copy ran out of physical memory; the
// system call then fails with EFAULT and the process is killed like a faulting instruction.
thread_local bool t_out_of_memory = false;

std::string hex(std::uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%" PRIx64, v);  // "0x0", not "0" as %#x would print
  return buf;
}

Next kill(thread* t, int signal, const std::string& why) {
  proc_kill(t, signal, why);
  thread_exit_killed(t);
  return Next::Gone;
}

Next memory_fault(thread* t, const Trap& trap) {
  Access access = Access::Read;
  if (trap.cause == TrapCause::StorePageFault || trap.cause == TrapCause::StoreAccessFault)
    access = Access::Write;
  if (trap.cause == TrapCause::InstructionPageFault ||
      trap.cause == TrapCause::InstructionAccessFault) {
    access = Access::Execute;
  }
  const std::string what = std::string(trap_cause_name(trap.cause)) + " at " + hex(trap.tval);
  const bool access_fault = trap.cause >= TrapCause::InstructionAccessFault;
  if (access_fault) {
    // The MMU refused outright: a kernel address (or nothing active). No mapping can fix it.
    t->vm->stats().fatal.fetch_add(1, std::memory_order_relaxed);
    return kill(t, kSigSegv, what + ": kernel address");
  }
  FaultOutcome out = t->vm->fault(trap.tval, access);
  if (trace().faults) {
    std::fprintf(stderr, "fault: pid %d %s -> %s\n", t->p->pid, what.c_str(),
                 out.kind == FaultOutcome::Kind::Resolved ? "resolved" : out.why);
  }
  switch (out.kind) {
    case FaultOutcome::Kind::Resolved:
      return Next::Resume;
    case FaultOutcome::Kind::OutOfMemory:
      return kill(t, kSigKill, what + ": " + out.why);
    case FaultOutcome::Kind::Fatal:
      t->vm->stats().fatal.fetch_add(1, std::memory_order_relaxed);
      return kill(t, kSigSegv, what + ": " + out.why);
  }
  return Next::Gone;
}

}  // namespace

void trap_init() {
  vmspace::inject_user_page_fault_handler(
      [](const vmspace::PageFaultInfo& info) -> vmspace::Result<void> {
        thread* t = current_thread();
        if (t == nullptr || t->vm == nullptr || t->vm->space() != info.space) {
          return vmspace::err(vmspace::Error::PageFault);
        }
        const Access access =
            info.access == vmspace::PageFaultAccess::Write ? Access::Write : Access::Read;
        FaultOutcome out = t->vm->fault(info.address, access);
        if (trace().faults) {
          std::fprintf(stderr, "fault: pid %d syscall %s at %s -> %s\n", t->p->pid,
                       access_name(access), hex(info.address).c_str(),
                       out.kind == FaultOutcome::Kind::Resolved ? "resolved" : out.why);
        }
        if (out.kind == FaultOutcome::Kind::Resolved) return {};
        if (out.kind == FaultOutcome::Kind::OutOfMemory) t_out_of_memory = true;
        return vmspace::err(vmspace::Error::PageFault);
      });
}

Next trap_handle(thread* t, const Trap& trap) {
  switch (trap.cause) {
    case TrapCause::None:
      return Next::Requeue;
    case TrapCause::Ecall: {
      t_out_of_memory = false;
      Next n = syscall(t);
      if (t_out_of_memory && n != Next::Gone)
        return kill(t, kSigKill, "out of physical memory in a system call");
      return n;
    }
    case TrapCause::Breakpoint:
      return kill(t, kSigTrap, "breakpoint at " + hex(t->tf.pc));
    case TrapCause::IllegalInstruction:
      return kill(t, kSigIll, "illegal instruction " + hex(trap.tval) + " at " + hex(t->tf.pc));
    case TrapCause::InstructionMisaligned:
    case TrapCause::LoadMisaligned:
    case TrapCause::StoreMisaligned:
      return kill(t, kSigBus, std::string(trap_cause_name(trap.cause)) + " at " + hex(trap.tval));
    default:
      return memory_fault(t, trap);
  }
}

}  // namespace teachos
