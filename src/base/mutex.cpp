// SpinLock's slow path (mutex.hpp): spin with a CPU pause hint, then yield to the host
// scheduler, so a spinning thread does not starve the holder when threads outnumber cores.
#include <vmspace/mutex.hpp>

#include <sched.h>

#include "base/cpu_relax.hpp"

namespace vmspace {

void SpinLock::lock() {
  for (unsigned spins = 0;; ++spins) {
    if (!locked_.exchange(true, std::memory_order_acquire)) return;
    while (locked_.load(std::memory_order_relaxed)) {
      if (++spins > 128) {
        sched_yield();
        spins = 0;
      } else {
        internal::cpu_relax();
      }
    }
  }
}

}  // namespace vmspace
