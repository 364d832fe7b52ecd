// Internal: statistics counters with one writer at a time (the owning thread, or whoever holds
// the lock that guards the counted state) and readers anywhere.
#pragma once

#include <atomic>
#include <cstdint>

namespace vmspace::internal {

// Adds `n` (modulo 2^64, so a negated count subtracts) with a relaxed load and store instead of
// a locked read-modify-write: on the hot paths that count (every TLB lookup, every cached frame
// allocation, every RCU retire) the locked instruction cost as much as the rest of the work.
// Precondition: no other thread writes `counter` concurrently. Readers see a recent value.
inline void single_writer_add(std::atomic<std::uint64_t>& counter, std::uint64_t n) noexcept {
  counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

}  // namespace vmspace::internal
