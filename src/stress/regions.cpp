// The public region and profile helpers of stress.hpp: stress_regions, demand_mappable and
// default_mix.
#include "regions.hpp"

#include <string>
#include <vector>

#include <vmspace/stress.hpp>

namespace vmspace::stress {

using internal::disjoint_slot;
using internal::k1G;
using internal::kLeafRegion;
using internal::kOverlapRegion;
using internal::kSpanRegion;

std::vector<Region> stress_regions(unsigned threads) {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    for (unsigned i = 0; i < 256; ++i) n.push_back("disjoint." + std::to_string(i));
    return n;
  }();
  std::vector<Region> out{
      {"leaf", kLeafRegion}, {"overlap", kOverlapRegion}, {"span", kSpanRegion}};
  for (unsigned i = 0; i < threads && i < 256; ++i)
    out.push_back(Region{names[i].c_str(), disjoint_slot(i)});
  return out;
}

bool demand_mappable(Vaddr va, unsigned threads) noexcept {
  if (((va >> 16) & 3) == 3) return false;
  auto in = [va](VaRange r) { return r.start <= va && va < r.end; };
  if (in(kLeafRegion) || in(kOverlapRegion) || in(kSpanRegion)) return true;
  if (va < k1G) return false;
  const std::uint64_t slot = va / k1G - 1;
  return slot < threads && in(disjoint_slot(static_cast<unsigned>(slot)));
}

OpMix default_mix(Profile p) noexcept {
  OpMix m;
  switch (p) {
    case Profile::Disjoint:
      break;
    case Profile::LeafContended:
      m.map = 8;
      m.unmap = 5;
      break;
    case Profile::Overlapping:
      m.max_ops_per_session = 8;
      break;
    case Profile::Mixed:
      m.read = 2;
      m.write = 2;
      m.p_nested = 0.05;
      break;
  }
  return m;
}

}  // namespace vmspace::stress
