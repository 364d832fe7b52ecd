// Internal: not API; may change without notice.
//
// Deliberate faults for proving that the stress engine finds bugs (docs/stress.md). Compiled in
// only with the meson option `mutations` (VMSPACE_MUTATIONS); in every other build
// set_mutation() does not exist and the checks below compile to nothing.
//
// Each mutation breaks one rule the library relies on:
//   SkipPhase2Locks            cursors lock only their sub-tree root, not the child nodes in
//                              their range (breaks mutual exclusion of overlapping cursors)
//   ReleaseFrameBeforeDispatch unmapped frames are handed to RCU at issue time instead of after
//                              the TLB dispatch (a CPU may keep using a freed frame)
//   SkipStrayCheck             a cursor may lock a node that was detached meanwhile (its
//                              operations land in a dead sub-tree)
//   UnlockWrongOrder           a cursor releases its sub-tree root before the nodes below it,
//                              walking the tree after others may have changed it
#pragma once

#include <cstdint>

namespace vmspace::internal {

enum class Mutation : std::uint8_t {
  None,
  SkipPhase2Locks,
  ReleaseFrameBeforeDispatch,
  SkipStrayCheck,
  UnlockWrongOrder,
};

const char* to_string(Mutation m) noexcept;

#ifdef VMSPACE_MUTATIONS
// Process-wide switch. Set it before starting the threads that should see it.
void set_mutation(Mutation m) noexcept;
Mutation mutation() noexcept;
inline bool mutated(Mutation m) noexcept { return mutation() == m; }
#else
constexpr bool mutated(Mutation) noexcept { return false; }
#endif

}  // namespace vmspace::internal
