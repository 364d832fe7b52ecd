// User page faults during fallible copies (OSTD: `PageFaultInfo` and the injected user page-fault
// handler).
//
// When a VmReader<Fallible>/VmWriter<Fallible> access finds no usable translation (not mapped,
// or mapped without the needed permission), the library calls the injected user page-fault
// handler with the faulting space, address and access kind. If the handler succeeds — it may
// open a CursorMut on the space and map a page — the access is retried; otherwise the copy
// stops and reports Error::PageFault with the number of bytes copied. Faults on addresses at or
// above kMaxUserspaceVaddr, and accesses from a thread with no active user space, are refused
// without calling the handler.
//
// The handler runs on the faulting thread outside any RCU read section, with no page-table lock
// held by the copy. It may block. It must not call back into a copy on the same reader/writer.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

#include <vmspace/addr.hpp>
#include <vmspace/cpu.hpp>
#include <vmspace/result.hpp>

namespace vmspace {

class VmSpace;

// What the faulting access wanted. Read and Write come from copies (readers/writers) and from
// mmu_translate; Execute only from mmu_translate, for an emulated CPU's instruction fetch (a
// copy never executes, so the injected handler sees Execute only if a client passes it on).
enum class PageFaultAccess : std::uint8_t { Read, Write, Execute };

// What the user page-fault handler is told about one fault. `space` keeps the faulting space alive
// for the duration of the call.
struct PageFaultInfo {
  std::shared_ptr<VmSpace> space;  // the space active on the faulting CPU
  Vaddr address;                   // the faulting address (not rounded)
  PageFaultAccess access;          // Read, Write or Execute (instruction fetch)
  // The emulated CPU the faulting thread was bound to.
  CpuId cpu;
};

// Returns success when the fault was resolved and the access should be retried.
using UserPageFaultHandler = std::function<Result<void>(const PageFaultInfo&)>;

// Installs `handler` (an empty function removes it) and returns the previous one. Unlike OSTD,
// which sets the handler once and ignores later calls, the handler can be replaced, so tests and
// teaching kernels can swap policies. Thread-safe; a fault in progress keeps using the handler
// it started with.
UserPageFaultHandler inject_user_page_fault_handler(UserPageFaultHandler handler);

// Process-wide counters of user page faults since start-up, read by fault_stats().
struct FaultStats {
  std::uint64_t handled = 0;     // faults the handler resolved
  std::uint64_t unresolved = 0;  // faults that ended a copy with PageFault
  std::uint64_t refused = 0;     // kernel addresses, unbound threads, no handler
};
// A snapshot of the fault counters. Each counter is read on its own (relaxed), so under concurrent
// faults the three values need not be from one instant; every counter only grows. Thread-safe.
FaultStats fault_stats() noexcept;

// A handler that keeps returning success without making the access possible would retry
// forever; after this many consecutive faults at one address the copy fails with PageFault.
inline constexpr unsigned kMaxFaultRetries = 16;

}  // namespace vmspace
