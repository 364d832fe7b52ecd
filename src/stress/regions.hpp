// Internal: the address regions every space offers the workers (leaf, overlap, span and one
// disjoint slot per thread), as constants the workers and the fault policy share.
#pragma once

#include <cstdint>

#include <vmspace/addr.hpp>

namespace vmspace::stress::internal {

inline constexpr std::uint64_t k2M = std::uint64_t{2} << 20;
inline constexpr std::uint64_t k1G = std::uint64_t{1} << 30;
inline constexpr std::uint64_t k512G = std::uint64_t{512} << 30;

// One leaf table (a 2 MiB entry) that LeafContended threads share.
inline constexpr VaRange kLeafRegion{16u << 20, (16u << 20) + k2M};
// 8 MiB over four leaf tables that Overlapping threads share.
inline constexpr VaRange kOverlapRegion{64u << 20, 72u << 20};
// Straddles the boundary between the first two top-level (512 GiB) entries.
inline constexpr VaRange kSpanRegion{k512G - (4u << 20), k512G + (4u << 20)};
inline constexpr std::uint64_t kSlotSize = 8u << 20;

// Thread i's own slot: the start of its own 1 GiB entry, so that Disjoint cursors of different
// threads never share a page-table node below the root's child.
constexpr VaRange disjoint_slot(unsigned i) noexcept {
  return VaRange{(std::uint64_t{i} + 1) * k1G, (std::uint64_t{i} + 1) * k1G + kSlotSize};
}

}  // namespace vmspace::stress::internal
