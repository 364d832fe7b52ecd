// The page-table refinement harness, part 1 (pt_harness.hpp has the overview): symbolic
// arguments and the PtOp they make up, and the model side (PtModel, model_apply).
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <map>
#include <optional>
#include <ostream>
#include <set>
#include <sstream>
#include <string>
#include <variant>
#include <vector>

#include <boost/atomic/atomic_ref.hpp>

#include <vmspace/check/interpret.hpp>
#include <vmspace/check/invariants.hpp>
#include <vmspace/check/model.hpp>
#include <vmspace/kernel_page_table.hpp>
#include <vmspace/page_table.hpp>
#include <vmspace/rcu.hpp>

namespace vmspace::test {

inline constexpr std::uint64_t kSz4K = 4096;
inline constexpr std::uint64_t kSz2M = std::uint64_t{1} << 21;
inline constexpr std::uint64_t kSz1G = std::uint64_t{1} << 30;
inline constexpr std::uint64_t kSz512G = std::uint64_t{1} << 39;

// ---- symbolic arguments ----

// A length relative to the cursor: a fixed value, the rest of the locked range, or the
// distance to the next multiple of `value`; then `delta` is added (wrapping on purpose: a
// length of 2^64 - 4096 must be refused, not wrap, upstream issue #3159).
struct LenSpec {
  enum class Base : std::uint8_t { Fixed, Rest, ToBoundary };
  Base base = Base::Fixed;
  std::uint64_t value = kSz4K;
  std::int64_t delta = 0;

  std::uint64_t resolve(Vaddr va, VaRange barrier) const noexcept {
    std::uint64_t v = 0;
    switch (base) {
      case Base::Fixed:
        v = value;
        break;
      case Base::Rest:
        v = barrier.end - va;
        break;
      case Base::ToBoundary:
        v = align_down(va + value, value) - va;
        break;
    }
    return v + static_cast<std::uint64_t>(delta);
  }
};

// An address relative to the cursor: absolute, the range start or end, the current address,
// or the next multiple of `value` above the current address; then `delta` is added.
struct AddrSpec {
  enum class Base : std::uint8_t { Abs, Start, End, Cur, NextBoundary };
  Base base = Base::Cur;
  std::uint64_t value = 0;
  std::int64_t delta = 0;

  Vaddr resolve(Vaddr va, VaRange barrier) const noexcept {
    std::uint64_t v = 0;
    switch (base) {
      case Base::Abs:
        v = value;
        break;
      case Base::Start:
        v = barrier.start;
        break;
      case Base::End:
        v = barrier.end;
        break;
      case Base::Cur:
        v = va;
        break;
      case Base::NextBoundary:
        v = align_down(va + value, value);
        break;
    }
    return v + static_cast<std::uint64_t>(delta);
  }
};

// A physical address for an item of `level`: slot * 512 GiB + sub * item size (+ 4 KiB if
// misaligned), so items in one slot share physical pages; or, with at_limit, the last aligned
// address below the format's physical-address limit (+ one item size if misaligned: refused).
struct PaSpec {
  std::uint8_t slot = 0;
  std::uint8_t sub = 0;
  bool misalign = false;
  bool at_limit = false;

  Paddr resolve(PagingLevel level, Paddr limit) const noexcept {
    // Levels outside 1..4 are refused by map; give them a 4 KiB-sized address.
    const std::uint64_t size = check::model_page_size(level >= 1 && level <= 4 ? level : 1);
    if (at_limit) return limit - size + (misalign ? size : 0);
    return Paddr{slot} * kSz512G + Paddr{sub} * size + (misalign ? kSz4K : 0);
  }
};

// A property change for protect_next: flags = (flags & keep) | add; the cache policy if
// set_cache; privileged bits XOR toggle (AVAIL1 is preserved by the library whatever op does).
struct ProtSpec {
  PageFlags keep = PageFlags::None;
  PageFlags add = PageFlags::R;
  bool set_cache = false;
  CachePolicy cache = CachePolicy::Writeback;
  PrivilegedPageFlags toggle = PrivilegedPageFlags::None;

  void operator()(PageProperty& p) const noexcept {
    p.flags = (p.flags & keep) | add;
    if (set_cache) p.cache = cache;
    p.priv_flags = p.priv_flags ^ toggle;
  }
};

struct PtOp {
  // Protect is protect_next; ProtectRange is CursorMut::protect (the whole window).
  enum class Kind : std::uint8_t {
    Open,
    Nested,
    Close,
    Query,
    FindNext,
    Jump,
    Map,
    Unmap,
    TakeNext,
    Protect,
    ProtectRange
  };
  Kind kind = Kind::Query;
  VaRange range{};        // Open, Nested
  bool mut = true;        // Open, Nested: CursorMut or read-only Cursor
  bool try_lock = false;  // Open, Nested: the try_ variant
  AddrSpec addr{};        // Jump
  LenSpec len{};          // FindNext, Unmap, TakeNext, Protect, ProtectRange
  PagingLevel level = 1;  // Map
  PaSpec pa{};            // Map
  PageProperty prop{};    // Map
  ProtSpec prot{};        // Protect, ProtectRange

  bool mutates() const noexcept {
    return kind == Kind::Map || kind == Kind::Unmap || kind == Kind::TakeNext ||
           kind == Kind::Protect || kind == Kind::ProtectRange;
  }
};

inline const char* to_string(PtOp::Kind k) noexcept {
  switch (k) {
    case PtOp::Kind::Open:
      return "open";
    case PtOp::Kind::Nested:
      return "nested_open";
    case PtOp::Kind::Close:
      return "close";
    case PtOp::Kind::Query:
      return "query";
    case PtOp::Kind::FindNext:
      return "find_next";
    case PtOp::Kind::Jump:
      return "jump";
    case PtOp::Kind::Map:
      return "map";
    case PtOp::Kind::Unmap:
      return "unmap";
    case PtOp::Kind::TakeNext:
      return "take_next";
    case PtOp::Kind::Protect:
      return "protect_next";
    case PtOp::Kind::ProtectRange:
      return "protect";
  }
  return "?";
}

namespace internal {

inline std::string hex(std::uint64_t v) {
  std::ostringstream os;
  os << "0x" << std::hex << v;
  return os.str();
}
inline std::string signed_hex(std::int64_t v) {
  if (v == 0) return "";
  return v < 0 ? " - " + hex(static_cast<std::uint64_t>(-v))
               : " + " + hex(static_cast<std::uint64_t>(v));
}

}  // namespace internal

inline std::ostream& operator<<(std::ostream& os, const LenSpec& l) {
  using test::internal::hex;
  switch (l.base) {
    case LenSpec::Base::Fixed:
      os << hex(l.value + static_cast<std::uint64_t>(l.delta));
      return os;
    case LenSpec::Base::Rest:
      os << "rest";
      break;
    case LenSpec::Base::ToBoundary:
      os << "to_boundary(" << hex(l.value) << ")";
      break;
  }
  return os << test::internal::signed_hex(l.delta);
}

inline std::ostream& operator<<(std::ostream& os, const AddrSpec& a) {
  using test::internal::hex;
  switch (a.base) {
    case AddrSpec::Base::Abs:
      os << hex(a.value + static_cast<std::uint64_t>(a.delta));
      return os;
    case AddrSpec::Base::Start:
      os << "start";
      break;
    case AddrSpec::Base::End:
      os << "end";
      break;
    case AddrSpec::Base::Cur:
      os << "cur";
      break;
    case AddrSpec::Base::NextBoundary:
      os << "next_boundary(" << hex(a.value) << ")";
      break;
  }
  return os << test::internal::signed_hex(a.delta);
}

inline std::ostream& operator<<(std::ostream& os, const PaSpec& p) {
  if (p.at_limit) return os << (p.misalign ? "limit" : "limit - size");
  os << "slot" << unsigned{p.slot} << " + " << unsigned{p.sub} << "*size";
  if (p.misalign) os << " + 0x1000";
  return os;
}

inline std::ostream& operator<<(std::ostream& os, const ProtSpec& p) {
  os << "{flags & " << p.keep << " | " << p.add;
  if (p.set_cache) os << ", cache " << p.cache;
  if (p.toggle != PrivilegedPageFlags::None) os << ", priv ^ " << p.toggle;
  return os << "}";
}

inline std::ostream& operator<<(std::ostream& os, const PtOp& op) {
  os << to_string(op.kind);
  switch (op.kind) {
    case PtOp::Kind::Open:
    case PtOp::Kind::Nested:
      os << (op.mut ? " mut " : " ro ") << (op.try_lock ? "try " : "") << op.range;
      break;
    case PtOp::Kind::Close:
    case PtOp::Kind::Query:
      break;
    case PtOp::Kind::Jump:
      os << " " << op.addr;
      break;
    case PtOp::Kind::FindNext:
    case PtOp::Kind::Unmap:
    case PtOp::Kind::TakeNext:
      os << " len " << op.len;
      break;
    case PtOp::Kind::Map:
      os << " L" << unsigned{op.level} << " pa " << op.pa << " " << op.prop;
      break;
    case PtOp::Kind::Protect:
    case PtOp::Kind::ProtectRange:
      os << " len " << op.len << " " << op.prot;
      break;
  }
  return os;
}

// ---- the model side ----

struct PtModel {
  check::AbstractModel model;
  std::optional<check::ModelCursor> cursor;
  bool mut = false;

  explicit PtModel(check::ModelConfig config) : model(std::move(config)) {}
  PtModel(const PtModel& o) : model(o.model), cursor(o.cursor), mut(o.mut) {
    if (cursor) cursor->rebind(model);
  }
  PtModel& operator=(const PtModel& o) {
    if (this != &o) {
      model = o.model;
      cursor = o.cursor;
      mut = o.mut;
      if (cursor) cursor->rebind(model);
    }
    return *this;
  }

  // Whether `op` can be applied: open needs no cursor; everything else a cursor; changes a
  // mutable one.
  bool applicable(const PtOp& op) const noexcept {
    if (op.kind == PtOp::Kind::Open) return !cursor.has_value();
    if (!cursor) return false;
    return !op.mutates() || mut;
  }

  Vaddr cur_va() const noexcept { return cursor ? cursor->virt_addr() : 0; }
  VaRange barrier() const noexcept { return cursor ? cursor->range() : VaRange{}; }
};

// What the model predicts for one op.
struct ModelOutcome {
  std::optional<PageTableError> error;
  std::optional<Vaddr> found;             // FindNext
  std::optional<VaRange> range;           // Protect
  std::size_t changed = 0;                // ProtectRange
  std::optional<check::Mapping> mapping;  // Query
  std::vector<check::Mapping> removed;    // Unmap
  PagingLevel guard_level = 0;            // Open
};

// Applies `op` to the model alone (the RapidCheck model transition). Precondition:
// m.applicable(op) and op.kind != TakeNext (a single take_next's effect depends on the tree;
// step() derives it from what the library detached). Nested opens change nothing.
inline ModelOutcome model_apply(PtModel& m, const PtOp& op) {
  ModelOutcome out;
  const Vaddr va = m.cur_va();
  const VaRange barrier = m.barrier();
  auto take_error = [&](auto&& r) {
    if (!r) out.error = r.error();
    return r.has_value();
  };
  switch (op.kind) {
    case PtOp::Kind::Open: {
      if (auto e = check::model_check_cursor_range(m.model.config(), op.range)) {
        out.error = *e;
        break;
      }
      m.cursor.emplace(m.model, op.range);
      m.mut = op.mut;
      out.guard_level = m.cursor->guard_level();
      break;
    }
    case PtOp::Kind::Nested:
      break;
    case PtOp::Kind::Close:
      m.cursor.reset();
      break;
    case PtOp::Kind::Query: {
      auto r = m.cursor->query();
      if (take_error(r)) out.mapping = *r;
      break;
    }
    case PtOp::Kind::FindNext: {
      auto r = m.cursor->find_next(op.len.resolve(va, barrier));
      if (take_error(r)) out.found = *r;
      break;
    }
    case PtOp::Kind::Jump:
      take_error(m.cursor->jump(op.addr.resolve(va, barrier)));
      break;
    case PtOp::Kind::Map:
      take_error(
          m.cursor->map(op.pa.resolve(op.level, m.model.config().paddr_limit), op.level, op.prop));
      break;
    case PtOp::Kind::Unmap: {
      auto r = m.cursor->unmap(op.len.resolve(va, barrier));
      if (take_error(r)) out.removed = std::move(*r);
      break;
    }
    case PtOp::Kind::TakeNext:
      break;  // see step()
    case PtOp::Kind::Protect: {
      auto r = m.cursor->protect_next(op.len.resolve(va, barrier), op.prot);
      if (take_error(r)) out.range = *r;
      break;
    }
    case PtOp::Kind::ProtectRange: {
      auto r = m.cursor->protect(op.len.resolve(va, barrier), op.prot);
      if (take_error(r)) out.changed = *r;
      break;
    }
  }
  return out;
}

}  // namespace vmspace::test
