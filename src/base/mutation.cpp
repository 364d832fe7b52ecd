// The deliberate-fault switches of internal/mutation.hpp: their names, and in builds with
// -Dmutations=true the process-wide switch that the stress engine's mutation tests set.
#include <vmspace/internal/mutation.hpp>

#include <atomic>

namespace vmspace::internal {

const char* to_string(Mutation m) noexcept {
  switch (m) {
    case Mutation::None:
      return "none";
    case Mutation::SkipPhase2Locks:
      return "skip-phase2-locks";
    case Mutation::ReleaseFrameBeforeDispatch:
      return "release-frame-before-dispatch";
    case Mutation::SkipStrayCheck:
      return "skip-stray-check";
    case Mutation::UnlockWrongOrder:
      return "unlock-wrong-order";
  }
  return "?";
}

#ifdef VMSPACE_MUTATIONS
namespace {
std::atomic<Mutation> g_mutation{Mutation::None};
}
void set_mutation(Mutation m) noexcept { g_mutation.store(m, std::memory_order_seq_cst); }
Mutation mutation() noexcept { return g_mutation.load(std::memory_order_relaxed); }
#endif

}  // namespace vmspace::internal
