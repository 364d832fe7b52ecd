// Enumerations of page properties for tests (OSTD's `SubsetIter` and `all_page_properties`,
// ostd/src/mm/page_table/test.rs).
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include <vmspace/page_prop.hpp>

namespace vmspace::test {

// Every subset of `mask`, in descending numeric order (OSTD's SubsetIter): 0b1011 gives
// 1011, 1010, 1001, 1000, 0011, 0010, 0001, 0000.
inline std::vector<std::uint8_t> subsets(std::uint8_t mask) {
  std::vector<std::uint8_t> out;
  std::uint8_t s = mask;
  while (true) {
    out.push_back(s);
    if (s == 0) break;
    s = static_cast<std::uint8_t>((s - 1) & mask);
  }
  return out;
}

inline constexpr std::uint8_t kAllPageFlagBits = 0x01 | 0x02 | 0x04 | 0x08 | 0x10 | 0x80;
inline constexpr std::uint8_t kAllPrivFlagBits = 0x01 | 0x02 | 0x40 | 0x80;
inline constexpr std::uint8_t kAllPageTableFlagBits = 0x40 | 0x80;

inline constexpr std::array<CachePolicy, 5> kAllCachePolicies = {
    CachePolicy::Uncacheable, CachePolicy::WriteCombining, CachePolicy::WriteProtected,
    CachePolicy::Writethrough, CachePolicy::Writeback};

// All PageFlags subsets × all PrivilegedPageFlags subsets × each of `caches`.
template <std::size_t N>
std::vector<PageProperty> page_properties_with(const std::array<CachePolicy, N>& caches) {
  std::vector<PageProperty> out;
  for (std::uint8_t f : subsets(kAllPageFlagBits)) {
    for (std::uint8_t p : subsets(kAllPrivFlagBits)) {
      for (CachePolicy c : caches) {
        out.push_back(
            PageProperty{static_cast<PageFlags>(f), c, static_cast<PrivilegedPageFlags>(p)});
      }
    }
  }
  return out;
}

// OSTD's all_page_properties(): every flag combination with Writeback and Uncacheable.
inline std::vector<PageProperty> all_page_properties() {
  return page_properties_with(
      std::array<CachePolicy, 2>{CachePolicy::Writeback, CachePolicy::Uncacheable});
}

// all_page_properties() extended to every CachePolicy.
inline std::vector<PageProperty> all_page_properties_all_caches() {
  return page_properties_with(kAllCachePolicies);
}

inline std::vector<PageTableFlags> all_page_table_flags() {
  std::vector<PageTableFlags> out;
  for (std::uint8_t f : subsets(kAllPageTableFlagBits))
    out.push_back(static_cast<PageTableFlags>(f));
  return out;
}

}  // namespace vmspace::test
