// The model side of the VmSpace refinement test (vm_model_test.cpp has the overview): the ops,
// the model state (VmModel) and what each op does to it (model_apply).
#pragma once

#include <doctest/doctest.h>

#include <rapidcheck.h>
#include <rapidcheck/state.h>

#include <array>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include <vmspace/check/interpret.hpp>
#include <vmspace/check/invariants.hpp>
#include <vmspace/check/model.hpp>
#include <vmspace/cpu.hpp>
#include <vmspace/fault.hpp>
#include <vmspace/frame_allocator.hpp>
#include <vmspace/kernel_page_table.hpp>
#include <vmspace/tlb.hpp>
#include <vmspace/vm_space.hpp>

#include "pt_gen.hpp"
#include "rc_support.hpp"

using namespace vmspace;
using namespace vmspace::test;
using check::Mapping;

namespace {

constexpr int kSpaces = 2;
constexpr int kCpus = 2;
constexpr std::size_t kMaxHandles = 24;
constexpr std::uint64_t kUserEnd = std::uint64_t{1} << 47;  // the user config's range end

using Page = std::array<std::uint8_t, kPageSize>;

// ---- ops ----

struct VmOp {
  enum class Kind : std::uint8_t {
    AllocFrame,
    AllocHuge,
    Clone,
    Drop,
    Slice,
    Split,
    Next,
    CreateSpace,
    DropSpace,
    Activate,
    Deactivate,
    Map,
    Unmap,
    Protect,
    Query,
    Write,
    Read,
  };
  Kind kind = Kind::AllocFrame;
  std::size_t handle = 0;
  int space = 0;
  int cpu = 0;
  Vaddr va = 0;
  std::uint64_t len = 0;
  std::uint64_t a = 0, b = 0;  // Slice: byte range; Split: offset
  bool wide = false;           // Map / Unmap / Protect: the cursor covers more than the op
  PageFlags flags = PageFlags::RW;
  CachePolicy cache = CachePolicy::Writeback;
  ProtSpec prot{};
  std::uint8_t seed = 0;  // Write: the byte pattern
};

const char* to_string(VmOp::Kind k) {
  static const char* names[] = {
      "alloc_frame", "alloc_huge",   "clone",      "drop",     "slice",      "split",
      "next",        "create_space", "drop_space", "activate", "deactivate", "map",
      "unmap",       "protect",      "query",      "write",    "read"};
  return names[static_cast<int>(k)];
}

std::ostream& operator<<(std::ostream& os, const VmOp& op) {
  using test::internal::hex;
  using K = VmOp::Kind;
  os << to_string(op.kind);
  switch (op.kind) {
    case K::AllocFrame:
    case K::AllocHuge:
      break;
    case K::Clone:
    case K::Drop:
    case K::Next:
      os << " h" << op.handle;
      break;
    case K::Slice:
      os << " h" << op.handle << " [" << hex(op.a) << ", " << hex(op.b) << ")";
      break;
    case K::Split:
      os << " h" << op.handle << " at " << hex(op.a);
      break;
    case K::CreateSpace:
    case K::DropSpace:
      os << " s" << op.space;
      break;
    case K::Activate:
      os << " s" << op.space << " on cpu" << op.cpu;
      break;
    case K::Deactivate:
      os << " cpu" << op.cpu;
      break;
    case K::Map:
      os << " h" << op.handle << " in s" << op.space << " at " << hex(op.va)
         << (op.wide ? " (wide cursor) " : " ") << op.flags << " " << op.cache;
      break;
    case K::Unmap:
      os << " s" << op.space << " " << hex(op.va) << " len " << hex(op.len)
         << (op.wide ? " (wide cursor)" : "");
      break;
    case K::Protect:
      os << " s" << op.space << " " << hex(op.va) << " len " << hex(op.len) << " " << op.prot
         << (op.wide ? " (wide cursor)" : "");
      break;
    case K::Query:
      os << " s" << op.space << " " << hex(op.va);
      break;
    case K::Write:
      os << " s" << op.space << " " << hex(op.va) << " len " << hex(op.len) << " seed "
         << unsigned{op.seed};
      break;
    case K::Read:
      os << " s" << op.space << " " << hex(op.va) << " len " << hex(op.len) << " on cpu" << op.cpu;
      break;
  }
  return os;
}

// The cursor range an op opens (wide: the surrounding 2 MiB-aligned 4 MiB when that contains
// the op's range).
VaRange cursor_range(const VmOp& op, std::uint64_t len) {
  const VaRange exact{op.va, op.va + len};
  if (!op.wide) return exact;
  const Vaddr s = align_down(op.va, kSz2M);
  const VaRange w{s, s + 2 * kSz2M};
  if (exact.start >= w.start && exact.end <= w.end && exact.start < exact.end) return w;
  return exact;
}

std::uint8_t pattern(std::uint8_t seed, std::uint64_t i) {
  return static_cast<std::uint8_t>(seed + i * 31u + (i >> 8));
}

// ---- the model ----

struct Handle {
  bool segment = false;
  PaRange range{};  // symbolic
};

struct VmModel {
  std::vector<Handle> handles;
  std::array<std::optional<check::AbstractModel>, kSpaces> spaces;
  std::array<int, kCpus> active{-1, -1};
  std::map<Paddr, std::shared_ptr<const Page>> memory;  // written frames, by symbolic address
  Paddr next_sym = kSz2M;                               // next free symbolic address
  std::size_t huge_allocs = 0;

  static check::ModelConfig config() { return check::model_config<UserPtConfig>(); }

  // Handles (and segment shares) and mapping PTEs per symbolic frame: the exact reference
  // count of each (vostd's accounting law, docs/spec_cases.md invariant 12).
  std::map<Paddr, std::pair<std::uint64_t, std::uint64_t>> counts() const {
    std::map<Paddr, std::pair<std::uint64_t, std::uint64_t>> out;
    for (const Handle& h : handles) {
      for (Paddr f = h.range.start; f < h.range.end; f += kPageSize) ++out[f].first;
    }
    for (const auto& s : spaces) {
      if (!s) continue;
      for (const auto& [va, m] : s->mappings()) {
        for (Paddr f = m.pa; f < m.pa + m.size(); f += kPageSize) ++out[f].second;
      }
    }
    return out;
  }

  // Forgets the contents of frames nobody references any more: they are freed, and whatever
  // reuses them is zeroed by its allocation.
  void forget_dead() {
    const auto live = counts();
    for (auto it = memory.begin(); it != memory.end();)
      it = live.count(it->first) ? std::next(it) : memory.erase(it);
  }

  std::uint8_t byte_at(Paddr sym) const {
    auto it = memory.find(align_down(sym, kPageSize));
    return it == memory.end() ? 0 : (*it->second)[sym & (kPageSize - 1)];
  }
  void set_byte(Paddr sym, std::uint8_t v) {
    auto& p = memory[align_down(sym, kPageSize)];
    auto page = p ? std::make_shared<Page>(*p) : std::make_shared<Page>(Page{});
    (*page)[sym & (kPageSize - 1)] = v;
    p = std::move(page);
  }
};

struct VmOutcome {
  std::optional<Error> error;
  std::size_t copied = 0;           // Write, Read
  std::vector<std::uint8_t> bytes;  // Read: the copied prefix
  std::vector<Mapping> removed;     // Unmap (model) ; count (system)
  std::size_t count = 0;            // Unmap (system)
  std::optional<VaRange> range;     // Protect
  std::optional<Mapping> queried;   // Query (system: with the real address)
  VaRange query_range{};            // Query (system)
};

bool applicable(const VmModel& m, const VmOp& op) {
  using K = VmOp::Kind;
  const bool space_ok = op.space >= 0 && op.space < kSpaces && m.spaces[op.space].has_value();
  const bool handle_ok = op.handle < m.handles.size();
  switch (op.kind) {
    case K::AllocFrame:
      return m.handles.size() < kMaxHandles;
    case K::AllocHuge:
      return m.handles.size() < kMaxHandles && m.huge_allocs < 8;
    case K::Clone:
      return handle_ok && m.handles.size() < kMaxHandles;
    case K::Drop:
      return handle_ok;
    case K::Slice:
    case K::Split:
    case K::Next:
      return handle_ok && m.handles[op.handle].segment && m.handles.size() < kMaxHandles;
    case K::CreateSpace:
      return op.space >= 0 && op.space < kSpaces && !m.spaces[op.space];
    case K::DropSpace:
      return space_ok && m.active[0] != op.space && m.active[1] != op.space;
    case K::Activate:
      return space_ok && op.cpu >= 0 && op.cpu < kCpus;
    case K::Deactivate:
      return op.cpu >= 0 && op.cpu < kCpus;
    case K::Map:
      return space_ok && handle_ok;
    case K::Unmap:
    case K::Protect:
    case K::Query:
    case K::Write:
      return space_ok;
    case K::Read:
      return space_ok && op.cpu >= 0 && op.cpu < kCpus;
  }
  return false;
}

// A model cursor as VmSpace::cursor_mut opens it (argument errors fold into AccessDenied).
std::optional<check::ModelCursor> open_model_cursor(check::AbstractModel& m, VaRange r,
                                                    VmOutcome& out) {
  if (auto e = check::model_check_cursor_range(m.config(), r)) {
    out.error = to_vm_error(*e);
    return std::nullopt;
  }
  return check::ModelCursor(m, r);
}

void simulate_copy(VmModel& m, const VmOp& op, bool write, VmOutcome& out) {
  const int cpu = write ? 0 : op.cpu;
  auto end = checked_add(op.va, op.len);
  if (m.active[cpu] != op.space || !end || *end > kMaxUserspaceVaddr) {
    out.error = Error::AccessDenied;
    return;
  }
  const check::AbstractModel& space = *m.spaces[op.space];
  std::size_t done = 0;
  while (done < op.len) {
    const Vaddr addr = op.va + done;
    auto mp = space.find(addr);
    if (!mp || !has(mp->prop.flags, PageFlags::R) || (write && !has(mp->prop.flags, PageFlags::W)))
      break;
    const std::size_t chunk =
        std::min<std::uint64_t>(op.len - done, kPageSize - (addr & (kPageSize - 1)));
    for (std::size_t i = 0; i < chunk; ++i) {
      const Paddr sym = mp->pa + (addr + i - mp->va);
      if (write) {
        m.set_byte(sym, pattern(op.seed, done + i));
      } else {
        out.bytes.push_back(m.byte_at(sym));
      }
    }
    done += chunk;
  }
  out.copied = done;
  if (done < op.len) out.error = Error::PageFault;
}

VmOutcome model_apply(VmModel& m, const VmOp& op) {
  using K = VmOp::Kind;
  VmOutcome out;
  switch (op.kind) {
    case K::AllocFrame:
      m.handles.push_back({false, {m.next_sym, m.next_sym + kPageSize}});
      m.next_sym += kPageSize;
      break;
    case K::AllocHuge: {
      const Paddr sym = *checked_align_up(m.next_sym, kSz2M);
      m.handles.push_back({true, {sym, sym + kSz2M}});
      m.next_sym = sym + kSz2M;
      ++m.huge_allocs;
      break;
    }
    case K::Clone:
      m.handles.push_back(m.handles[op.handle]);
      break;
    case K::Drop:
      m.handles.erase(m.handles.begin() + static_cast<std::ptrdiff_t>(op.handle));
      m.forget_dead();
      break;
    case K::Slice: {
      const Handle h = m.handles[op.handle];
      if (!is_aligned(op.a, kPageSize) || !is_aligned(op.b, kPageSize) || op.a > op.b ||
          op.b > h.range.size()) {
        out.error = Error::InvalidArgs;
        break;
      }
      m.handles.push_back({true, {h.range.start + op.a, h.range.start + op.b}});
      break;
    }
    case K::Split: {
      Handle& h = m.handles[op.handle];
      if (!is_aligned(op.a, kPageSize) || op.a == 0 || op.a >= h.range.size()) {
        out.error = Error::InvalidArgs;
        break;
      }
      const Handle right{true, {h.range.start + op.a, h.range.end}};
      h.range.end = h.range.start + op.a;
      m.handles.push_back(right);
      break;
    }
    case K::Next: {
      Handle& h = m.handles[op.handle];
      if (h.range.empty()) break;
      const Handle f{false, {h.range.start, h.range.start + kPageSize}};
      h.range.start += kPageSize;
      m.handles.push_back(f);
      break;
    }
    case K::CreateSpace:
      m.spaces[op.space].emplace(VmModel::config());
      break;
    case K::DropSpace:
      m.spaces[op.space].reset();
      m.forget_dead();
      break;
    case K::Activate:
      m.active[op.cpu] = op.space;
      break;
    case K::Deactivate:
      m.active[op.cpu] = -1;
      break;
    case K::Map: {
      const Handle h = m.handles[op.handle];
      const std::uint64_t size = h.range.size();
      const bool mappable = size == kPageSize || (h.segment && size == kSz2M);
      auto mc = open_model_cursor(*m.spaces[op.space],
                                  cursor_range(op, mappable ? size : kPageSize), out);
      if (!mc) break;
      if (!mappable) {
        out.error = Error::InvalidArgs;
        break;
      }
      if (auto r = mc->jump(op.va); !r) {
        out.error = to_vm_error(r.error());
        break;
      }
      auto r = mc->map(h.range.start, size == kPageSize ? 1 : 2,
                       PageProperty::new_user(op.flags, op.cache));
      if (!r) {
        out.error = to_vm_error(r.error());
        break;
      }
      m.handles.erase(m.handles.begin() + static_cast<std::ptrdiff_t>(op.handle));
      break;
    }
    case K::Unmap: {
      auto mc = open_model_cursor(*m.spaces[op.space], cursor_range(op, op.len), out);
      if (!mc) break;
      if (auto r = mc->jump(op.va); !r) {
        out.error = to_vm_error(r.error());
        break;
      }
      auto r = mc->unmap(op.len);
      if (!r) {
        out.error = to_vm_error(r.error());
        break;
      }
      out.removed = std::move(*r);
      m.forget_dead();
      break;
    }
    case K::Protect: {
      auto mc = open_model_cursor(*m.spaces[op.space], cursor_range(op, op.len), out);
      if (!mc) break;
      if (auto r = mc->jump(op.va); !r) {
        out.error = to_vm_error(r.error());
        break;
      }
      const ProtSpec prot = op.prot;
      auto r = mc->protect_next(op.len, [prot](PageProperty& p) {
        PageProperty q = p;
        prot(q);
        p.flags = q.flags;
        p.cache = q.cache;
      });
      if (!r) {
        out.error = to_vm_error(r.error());
        break;
      }
      out.range = *r;
      break;
    }
    case K::Query: {
      auto mc = open_model_cursor(*m.spaces[op.space], VaRange{op.va, op.va + kPageSize}, out);
      if (!mc) break;
      auto r = mc->query();
      if (!r) {
        out.error = to_vm_error(r.error());
        break;
      }
      out.queried = *r;
      break;
    }
    case K::Write:
      simulate_copy(m, op, true, out);
      break;
    case K::Read:
      simulate_copy(m, op, false, out);
      break;
  }
  return out;
}

}  // namespace
