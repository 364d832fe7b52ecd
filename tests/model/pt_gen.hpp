// RapidCheck generators of page-table operations (PtOp), biased to the edges that the boundary
// cases of docs/spec_cases.md show to matter: 2 MiB-aligned addresses near range ends, ranges that
// straddle huge pages, lengths 0 and "the rest of the range", physical pages shared between
// mappings, unencodable properties, levels just above the highest translation level.
#pragma once

#include <rapidcheck.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "pt_harness.hpp"

namespace vmspace::test::gen {

// One of `choices`, with probability proportional to its weight; shrinks toward the first.
template <class T>
rc::Gen<T> weighted(std::vector<std::pair<std::size_t, T>> choices) {
  std::size_t total = 0;
  for (const auto& c : choices) total += c.first;
  return rc::gen::map(rc::gen::inRange<std::size_t>(0, total),
                      [choices = std::move(choices)](std::size_t x) {
                        for (const auto& c : choices) {
                          if (x < c.first) return c.second;
                          x -= c.first;
                        }
                        return choices.back().second;
                      });
}

// An address near one of the interesting boundaries of the config's range: its start, the
// 1 GiB and 512 GiB boundaries after it, and its end.
inline rc::Gen<Vaddr> point(const check::ModelConfig& cfg) {
  const Vaddr end = cfg.last + 1;
  return rc::gen::exec([=] {
    const int base = *weighted<int>({{8, 0}, {3, 1}, {1, 2}, {3, 3}});
    const std::uint64_t off = *weighted<std::uint64_t>({{4, 0},
                                                        {2, kSz4K},
                                                        {2, 2 * kSz4K},
                                                        {1, 3 * kSz4K},
                                                        {2, kSz2M - kSz4K},
                                                        {3, kSz2M},
                                                        {2, kSz2M + kSz4K},
                                                        {2, 2 * kSz2M},
                                                        {1, 2 * kSz2M + 2 * kSz4K},
                                                        {1, kSz1G - kSz2M}});
    switch (base) {
      case 0:
        return cfg.first + off;
      case 1:
        return cfg.first + kSz1G + off;
      case 2:
        return cfg.first + kSz512G + off;
      default:
        return end - (off == 0 ? kSz2M : off);
    }
  });
}

inline rc::Gen<VaRange> range(const check::ModelConfig& cfg) {
  const Vaddr end = cfg.last + 1;
  return rc::gen::exec([=] {
    Vaddr start = *point(cfg);
    if (*weighted<int>({{30, 0}, {1, 1}}) == 1) start += 1;  // unaligned
    const int kind = *weighted<int>({{85, 0}, {10, 1}, {5, 2}});
    if (kind == 1) return VaRange{start, *point(cfg)};  // may be empty or reversed
    if (kind == 2) return VaRange{start, end};          // to the end of the config's range
    const std::uint64_t len = *weighted<std::uint64_t>({{2, kSz4K},
                                                        {1, 2 * kSz4K},
                                                        {1, 4 * kSz4K},
                                                        {4, kSz2M},
                                                        {2, kSz2M + kSz4K},
                                                        {4, 2 * kSz2M},
                                                        {3, 3 * kSz2M},
                                                        {1, kSz1G},
                                                        {2, kSz1G + kSz2M},
                                                        {1, kSz512G},
                                                        {1, 0},
                                                        {1, kSz4K + 1}});
    return VaRange{start, start + len};
  });
}

inline rc::Gen<LenSpec> len() {
  using B = LenSpec::Base;
  return weighted<LenSpec>(
      {{2, {B::Fixed, 0, 0}},
       {4, {B::Fixed, kSz4K, 0}},
       {2, {B::Fixed, 2 * kSz4K, 0}},
       {3, {B::Fixed, kSz2M, 0}},
       {1, {B::Fixed, kSz2M, -static_cast<std::int64_t>(kSz4K)}},
       {1, {B::Fixed, kSz2M, static_cast<std::int64_t>(kSz4K)}},
       {1, {B::Fixed, kSz1G, 0}},
       {6, {B::Rest, 0, 0}},
       {2, {B::Rest, 0, -static_cast<std::int64_t>(kSz4K)}},
       {1, {B::Rest, 0, static_cast<std::int64_t>(kSz4K)}},
       {3, {B::ToBoundary, kSz2M, 0}},
       {1, {B::ToBoundary, kSz2M, static_cast<std::int64_t>(kSz4K)}},
       {1, {B::ToBoundary, kSz1G, 0}},
       {1, {B::Fixed, kSz4K - 1, 0}},
       {1, {B::Fixed, 0, -static_cast<std::int64_t>(kSz4K)}}});  // 2^64 - 4 KiB
}

inline rc::Gen<AddrSpec> jump_target(const check::ModelConfig& cfg) {
  using B = AddrSpec::Base;
  return rc::gen::exec([=] {
    if (*weighted<int>({{12, 0}, {1, 1}}) == 1) return AddrSpec{B::Abs, *point(cfg), 0};
    return *weighted<AddrSpec>({{6, {B::Start, 0, 0}},
                                {1, {B::Start, 0, -static_cast<std::int64_t>(kSz4K)}},
                                {2, {B::Start, 0, static_cast<std::int64_t>(kSz2M + 2 * kSz4K)}},
                                {1, {B::End, 0, 0}},
                                {3, {B::End, 0, -static_cast<std::int64_t>(kSz4K)}},
                                {1, {B::End, 0, -static_cast<std::int64_t>(kSz2M)}},
                                {2, {B::Cur, 0, static_cast<std::int64_t>(kSz4K)}},
                                {1, {B::Cur, 0, -static_cast<std::int64_t>(kSz4K)}},
                                {1, {B::Cur, 0, 1}},
                                {4, {B::NextBoundary, kSz2M, 0}},
                                {1, {B::NextBoundary, kSz2M, static_cast<std::int64_t>(kSz4K)}},
                                {1, {B::NextBoundary, kSz1G, 0}},
                                {1, {B::NextBoundary, kSz512G, 0}}});
  });
}

inline rc::Gen<PageProperty> prop() {
  return rc::gen::exec([] {
    PageProperty p;
    p.flags = *weighted<PageFlags>({{8, PageFlags::RW},
                                    {3, PageFlags::R},
                                    {2, PageFlags::RWX},
                                    {1, PageFlags::RX},
                                    {1, PageFlags::None},
                                    {1, PageFlags::W},
                                    {1, PageFlags::RW | PageFlags::ACCESSED | PageFlags::DIRTY},
                                    {1, PageFlags::R | PageFlags::AVAIL2},
                                    {1, static_cast<PageFlags>(0x21)}});  // an undefined bit
    p.cache = *weighted<CachePolicy>({{10, CachePolicy::Writeback},
                                      {1, CachePolicy::Uncacheable},
                                      {1, CachePolicy::WriteCombining},
                                      {1, CachePolicy::Writethrough},
                                      {1, CachePolicy::WriteProtected}});
    p.priv_flags = *weighted<PrivilegedPageFlags>({{4, PrivilegedPageFlags::None},
                                                   {4, PrivilegedPageFlags::USER},
                                                   {1, PrivilegedPageFlags::GLOBAL},
                                                   {1, PrivilegedPageFlags::AVAIL1},
                                                   {1, PrivilegedPageFlags::SHARED}});
    return p;
  });
}

inline rc::Gen<ProtSpec> prot() {
  return rc::gen::exec([] {
    ProtSpec p;
    p.keep = *weighted<PageFlags>({{3, PageFlags::None}, {3, PageFlags::RWX}, {1, PageFlags::R}});
    p.add = *weighted<PageFlags>({{3, PageFlags::R},
                                  {2, PageFlags::RW},
                                  {1, PageFlags::RX},
                                  {1, PageFlags::None},
                                  {1, PageFlags::W}});
    p.set_cache = *weighted<bool>({{4, false}, {1, true}});
    if (p.set_cache) {
      p.cache = *rc::gen::element(CachePolicy::Uncacheable, CachePolicy::WriteCombining,
                                  CachePolicy::WriteProtected, CachePolicy::Writethrough,
                                  CachePolicy::Writeback);
    }
    p.toggle = *weighted<PrivilegedPageFlags>({{8, PrivilegedPageFlags::None},
                                               {1, PrivilegedPageFlags::USER},
                                               {1, PrivilegedPageFlags::GLOBAL},
                                               {1, PrivilegedPageFlags::AVAIL1},
                                               {1, PrivilegedPageFlags::SHARED}});
    return p;
  });
}

// A map at the model cursor: mostly at a level whose page fits there (aligned, inside the
// range, not above the guard level), sometimes at any level (one above the highest, 0).
inline rc::Gen<PtOp> map_op(const PtModel& m) {
  const check::ModelConfig cfg = m.model.config();
  std::vector<std::pair<std::size_t, PagingLevel>> fitting;
  if (m.cursor) {
    const Vaddr va = m.cur_va();
    const VaRange b = m.barrier();
    for (PagingLevel l = 1; l <= cfg.highest_level && l <= m.cursor->guard_level(); ++l) {
      const std::uint64_t size = check::model_page_size(l);
      if (va < b.end && is_aligned(va, size) && size <= b.end - va)
        fitting.emplace_back(l == 1 ? 2 : 4, l);
    }
  }
  return rc::gen::exec([=] {
    PtOp op;
    op.kind = PtOp::Kind::Map;
    std::vector<std::pair<std::size_t, PagingLevel>> levels{{8, 1}};
    for (PagingLevel l = 2; l <= cfg.highest_level; ++l) levels.emplace_back(l == 2 ? 5 : 2, l);
    levels.emplace_back(1, static_cast<PagingLevel>(cfg.highest_level + 1));  // one too high
    levels.emplace_back(1, PagingLevel{0});
    if (!fitting.empty() && *weighted<bool>({{1, false}, {3, true}})) {
      op.level = *weighted(fitting);
    } else {
      op.level = *weighted(levels);
    }
    op.pa.slot = *rc::gen::inRange<std::uint8_t>(0, 3);
    op.pa.sub = *rc::gen::inRange<std::uint8_t>(0, 3);
    op.pa.misalign = *weighted<bool>({{12, false}, {1, true}});
    op.pa.at_limit = *weighted<bool>({{20, false}, {1, true}});
    op.prop = *prop();
    return op;
  });
}

// A length, mostly one that is valid at the model cursor.
inline rc::Gen<LenSpec> len_at(const PtModel& m) {
  const Vaddr va = m.cur_va();
  const VaRange b = m.barrier();
  return rc::gen::exec([=] {
    for (int tries = 0; tries < 4; ++tries) {
      const LenSpec l = *len();
      const std::uint64_t v = l.resolve(va, b);
      if (va <= b.end && v <= b.end - va && is_aligned(v, kSz4K)) return l;
      if (*weighted<bool>({{3, false}, {1, true}})) return l;  // keep some invalid ones
    }
    return LenSpec{LenSpec::Base::Rest, 0, 0};
  });
}

// A jump target: mostly a symbolic one, sometimes into or onto a mapping in the range.
inline rc::Gen<AddrSpec> jump_at(const PtModel& m) {
  const check::ModelConfig cfg = m.model.config();
  std::vector<check::Mapping> near;
  const VaRange b = m.barrier();
  for (const auto& [va, mapping] : m.model.mappings()) {
    if (mapping.va < b.end && mapping.last() >= b.start) near.push_back(mapping);
    if (near.size() >= 64) break;
  }
  return rc::gen::exec([=] {
    if (!near.empty() && *weighted<bool>({{1, false}, {1, true}})) {
      const check::Mapping mp = *rc::gen::elementOf(near);
      const std::uint64_t off = *weighted<std::uint64_t>({{4, 0},
                                                          {2, kSz4K},
                                                          {1, 2 * kSz4K},
                                                          {1, mp.size() - kSz4K},
                                                          {1, mp.size()},
                                                          {1, mp.size() / 2}});
      return AddrSpec{AddrSpec::Base::Abs, mp.va, static_cast<std::int64_t>(off)};
    }
    return *jump_target(cfg);
  });
}

// The next op for the model state `m`.
inline rc::Gen<PtOp> op(const PtModel& m) {
  const check::ModelConfig cfg = m.model.config();
  if (!m.cursor) {
    return rc::gen::exec([=] {
      PtOp op;
      op.kind = PtOp::Kind::Open;
      op.range = *range(cfg);
      op.mut = *weighted<bool>({{5, true}, {1, false}});
      op.try_lock = *rc::gen::arbitrary<bool>();
      return op;
    });
  }
  const bool mut = m.mut;
  const VaRange barrier = m.barrier();
  const auto map_gen = map_op(m);
  const auto len_gen = len_at(m);
  const auto jump_gen = jump_at(m);
  // Weights by situation: at the range end mostly jump back; with mappings ahead, change or
  // inspect them; otherwise mostly map.
  using K = PtOp::Kind;
  const Vaddr va = m.cur_va();
  std::vector<std::pair<std::size_t, K>> kinds;
  if (va >= barrier.end) {
    kinds = {{4, K::Query}, {30, K::Jump}, {4, K::Close}, {2, K::Nested}, {2, K::FindNext}};
    if (mut)
      kinds.insert(kinds.end(),
                   {{3, K::Map}, {2, K::Unmap}, {2, K::Protect}, {1, K::ProtectRange}});
  } else if (m.model.overlaps(va, barrier.end - 1)) {
    kinds = {{8, K::Query}, {6, K::FindNext}, {8, K::Jump}, {2, K::Close}, {3, K::Nested}};
    if (mut)
      kinds.insert(kinds.end(),
                   {{15, K::Map}, {12, K::Unmap}, {12, K::Protect}, {8, K::ProtectRange}});
  } else {
    kinds = {{6, K::Query}, {4, K::FindNext}, {15, K::Jump}, {2, K::Close}, {3, K::Nested}};
    if (mut)
      kinds.insert(kinds.end(),
                   {{30, K::Map}, {4, K::Unmap}, {4, K::Protect}, {2, K::ProtectRange}});
  }
  return rc::gen::exec([=] {
    const K kind = *weighted(kinds);
    PtOp op;
    switch (kind) {
      case K::Map:
        return *map_gen;
      case K::Unmap:
      case K::FindNext:
        op.len = *len_gen;
        break;
      case K::Protect:
      case K::ProtectRange:
        op.len = *len_gen;
        op.prot = *prot();
        break;
      case K::Jump:
        op.addr = *jump_gen;
        break;
      case K::Nested: {
        // Half overlap the held cursor (must fail), half anywhere (the tree decides).
        if (*rc::gen::arbitrary<bool>()) {
          const Vaddr s = barrier.start + *rc::gen::element(std::uint64_t{0}, kSz4K, kSz2M);
          op.range = VaRange{s, s + *rc::gen::element(kSz4K, kSz2M, 2 * kSz2M)};
        } else {
          op.range = *range(cfg);
        }
        op.mut = *rc::gen::arbitrary<bool>();
        op.try_lock = *rc::gen::arbitrary<bool>();
        break;
      }
      default:
        break;
    }
    op.kind = kind;
    return op;
  });
}

}  // namespace vmspace::test::gen
