// Traps: what the kernel does when a hart stops running user code.
//
// Hart::run returns a Trap: the slice ran out, the program made a system call, or an
// instruction faulted. A page fault goes to the process's page-fault routine (Vm::fault); if
// it maps the page, the instruction runs again as if nothing happened. Any other fault is fatal
// to the process only: it is killed with the signal Linux would send (SIGSEGV for memory,
// SIGILL, SIGBUS, SIGTRAP; SIGKILL when physical memory is exhausted), a message goes to
// stderr, and every other process goes on.
#pragma once

#include "machine.hpp"

namespace teachos {

struct thread;

// What the hart does with the thread after a trap.
enum class Next : std::uint8_t {
  Resume,   // keep running it (what is left of its slice)
  Requeue,  // its slice is over (or it yielded): back of the run queue
  Gone,     // it exited or went to sleep: the hart must not touch it again
};

Next trap_handle(thread* t, const Trap& trap);

// Installs the library's user page-fault handler: a fault inside a system call's copy is served
// by the same routine as a fault the hart reports.
void trap_init();

}  // namespace teachos
