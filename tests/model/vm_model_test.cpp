// Refinement of VmSpace with real frames against the abstract model, as a RapidCheck state
// machine (suite `model`).
//
// Model: the frame handles the test holds (4 KiB frames and segments, by *symbolic* physical
// address: the model cannot know what the allocator returns, so every allocation gets a fresh
// symbolic range and the system records where it really landed), up to two address spaces
// (one AbstractModel each, over symbolic addresses), which space each of the two CPUs has
// active, and the expected contents of every frame written through a mapping.
// System: the real handles, VmSpaces, CPU 0 bound to the test thread (CPU 1 is driven from
// short-lived helper threads, so TLB shootdowns have a remote target).
// Commands: frame alloc/clone/drop, 2 MiB segment alloc, segment slice/split/next, VmSpace
// create/drop/activate/deactivate, map of frames and segments (4 KiB and 2 MiB), unmap (with
// TLB dispatch), protect_next (then a flush, as a kernel must), query, and user-memory copies
// through VmSpace::reader/writer on CPU 0 and reads on CPU 1.
// After every command: results equal the model's; each space's table equals its model (with
// symbolic addresses translated); check_user_table / check_page_table (kernel) /
// check_frame_slots; check_refcount_law after an RCU barrier (exact in handle_ledger builds);
// the exact count of every frame the test holds or maps equals handles + mapping PTEs (the
// vostd law computed from the model); frames the model says are free are free; the bytes of
// every written frame; check_tlb_coherence; no stale-TLB hit on a freed frame.
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
    AllocFrame, AllocHuge, Clone, Drop, Slice, Split, Next,
    CreateSpace, DropSpace, Activate, Deactivate,
    Map, Unmap, Protect, Query, Write, Read,
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
  std::uint8_t seed = 0;       // Write: the byte pattern
};

const char* to_string(VmOp::Kind k) {
  static const char* names[] = {"alloc_frame", "alloc_huge", "clone", "drop", "slice", "split", "next",
                                "create_space", "drop_space", "activate", "deactivate", "map", "unmap",
                                "protect", "query", "write", "read"};
  return names[static_cast<int>(k)];
}

std::ostream& operator<<(std::ostream& os, const VmOp& op) {
  using harness_detail::hex;
  using K = VmOp::Kind;
  os << to_string(op.kind);
  switch (op.kind) {
    case K::AllocFrame:
    case K::AllocHuge: break;
    case K::Clone:
    case K::Drop:
    case K::Next: os << " h" << op.handle; break;
    case K::Slice: os << " h" << op.handle << " [" << hex(op.a) << ", " << hex(op.b) << ")"; break;
    case K::Split: os << " h" << op.handle << " at " << hex(op.a); break;
    case K::CreateSpace:
    case K::DropSpace: os << " s" << op.space; break;
    case K::Activate: os << " s" << op.space << " on cpu" << op.cpu; break;
    case K::Deactivate: os << " cpu" << op.cpu; break;
    case K::Map:
      os << " h" << op.handle << " in s" << op.space << " at " << hex(op.va) << (op.wide ? " (wide cursor) " : " ")
         << op.flags << " " << op.cache;
      break;
    case K::Unmap:
      os << " s" << op.space << " " << hex(op.va) << " len " << hex(op.len) << (op.wide ? " (wide cursor)" : "");
      break;
    case K::Protect:
      os << " s" << op.space << " " << hex(op.va) << " len " << hex(op.len) << " " << op.prot
         << (op.wide ? " (wide cursor)" : "");
      break;
    case K::Query: os << " s" << op.space << " " << hex(op.va); break;
    case K::Write:
      os << " s" << op.space << " " << hex(op.va) << " len " << hex(op.len) << " seed " << unsigned{op.seed};
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

std::uint8_t pattern(std::uint8_t seed, std::uint64_t i) { return static_cast<std::uint8_t>(seed + i * 31u + (i >> 8)); }

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
    for (auto it = memory.begin(); it != memory.end();) it = live.count(it->first) ? std::next(it) : memory.erase(it);
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
  std::size_t copied = 0;            // Write, Read
  std::vector<std::uint8_t> bytes;   // Read: the copied prefix
  std::vector<Mapping> removed;      // Unmap (model) ; count (system)
  std::size_t count = 0;             // Unmap (system)
  std::optional<VaRange> range;      // Protect
  std::optional<Mapping> queried;    // Query (system: with the real address)
  VaRange query_range{};             // Query (system)
};

bool applicable(const VmModel& m, const VmOp& op) {
  using K = VmOp::Kind;
  const bool space_ok = op.space >= 0 && op.space < kSpaces && m.spaces[op.space].has_value();
  const bool handle_ok = op.handle < m.handles.size();
  switch (op.kind) {
    case K::AllocFrame: return m.handles.size() < kMaxHandles;
    case K::AllocHuge: return m.handles.size() < kMaxHandles && m.huge_allocs < 8;
    case K::Clone: return handle_ok && m.handles.size() < kMaxHandles;
    case K::Drop: return handle_ok;
    case K::Slice:
    case K::Split:
    case K::Next: return handle_ok && m.handles[op.handle].segment && m.handles.size() < kMaxHandles;
    case K::CreateSpace: return op.space >= 0 && op.space < kSpaces && !m.spaces[op.space];
    case K::DropSpace: return space_ok && m.active[0] != op.space && m.active[1] != op.space;
    case K::Activate: return space_ok && op.cpu >= 0 && op.cpu < kCpus;
    case K::Deactivate: return op.cpu >= 0 && op.cpu < kCpus;
    case K::Map: return space_ok && handle_ok;
    case K::Unmap:
    case K::Protect:
    case K::Query:
    case K::Write: return space_ok;
    case K::Read: return space_ok && op.cpu >= 0 && op.cpu < kCpus;
  }
  return false;
}

// A model cursor as VmSpace::cursor_mut opens it (argument errors fold into AccessDenied).
std::optional<check::ModelCursor> open_model_cursor(check::AbstractModel& m, VaRange r, VmOutcome& out) {
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
    if (!mp || !has(mp->prop.flags, PageFlags::R) || (write && !has(mp->prop.flags, PageFlags::W))) break;
    const std::size_t chunk = std::min<std::uint64_t>(op.len - done, kPageSize - (addr & (kPageSize - 1)));
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
    case K::Clone: m.handles.push_back(m.handles[op.handle]); break;
    case K::Drop:
      m.handles.erase(m.handles.begin() + static_cast<std::ptrdiff_t>(op.handle));
      m.forget_dead();
      break;
    case K::Slice: {
      const Handle h = m.handles[op.handle];
      if (!is_aligned(op.a, kPageSize) || !is_aligned(op.b, kPageSize) || op.a > op.b || op.b > h.range.size()) {
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
    case K::CreateSpace: m.spaces[op.space].emplace(VmModel::config()); break;
    case K::DropSpace:
      m.spaces[op.space].reset();
      m.forget_dead();
      break;
    case K::Activate: m.active[op.cpu] = op.space; break;
    case K::Deactivate: m.active[op.cpu] = -1; break;
    case K::Map: {
      const Handle h = m.handles[op.handle];
      const std::uint64_t size = h.range.size();
      const bool mappable = size == kPageSize || (h.segment && size == kSz2M);
      auto mc = open_model_cursor(*m.spaces[op.space], cursor_range(op, mappable ? size : kPageSize), out);
      if (!mc) break;
      if (!mappable) {
        out.error = Error::InvalidArgs;
        break;
      }
      if (auto r = mc->jump(op.va); !r) {
        out.error = to_vm_error(r.error());
        break;
      }
      auto r = mc->map(h.range.start, size == kPageSize ? 1 : 2, PageProperty::new_user(op.flags, op.cache));
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
    case K::Write: simulate_copy(m, op, true, out); break;
    case K::Read: simulate_copy(m, op, false, out); break;
  }
  return out;
}

// ---- the system ----

struct Alloc {
  Paddr sym;
  Paddr real;
  std::uint64_t size;
};

// Runs `fn` on a helper thread bound to CPU 1 (the CPU keeps its active space and TLB after the
// thread unbinds, like a core across tasks).
template <class Fn>
bool on_cpu1(Fn&& fn) {
  bool bound = false;
  std::thread t([&] {
    auto b = CpuBinding::bind(CpuId::try_from(1).value());
    if (!b) return;
    bound = true;
    fn();
  });
  t.join();
  return bound;
}

struct VmSystem {
  std::vector<std::variant<UFrame, USegment>> handles;
  std::array<std::shared_ptr<VmSpace>, kSpaces> spaces;
  std::vector<Alloc> allocs;
  std::optional<CpuBinding> cpu0;

  VmSystem() { cpu0.emplace(CpuBinding::bind(CpuId::bsp()).value()); }
  VmSystem(const VmSystem&) = delete;
  VmSystem& operator=(const VmSystem&) = delete;
  ~VmSystem() {
    (void)VmSpace::deactivate_current();
    on_cpu1([] { (void)VmSpace::deactivate_current(); });
    for (auto& s : spaces) s.reset();
    handles.clear();
    cpu0.reset();
  }

  std::optional<Paddr> real(Paddr sym) const {
    for (const Alloc& a : allocs) {
      if (sym >= a.sym && sym - a.sym < a.size) return a.real + (sym - a.sym);
    }
    return std::nullopt;
  }

  static PaRange range_of(const std::variant<UFrame, USegment>& h) {
    if (auto* f = std::get_if<UFrame>(&h)) return f->is_empty() ? PaRange{} : PaRange{f->paddr(), f->paddr() + kPageSize};
    const auto& s = std::get<USegment>(h);
    return s.paddr_range();
  }
};

VmOutcome system_run(VmSystem& s, const VmModel& after, const VmOp& op, std::string& problems) {
  using K = VmOp::Kind;
  VmOutcome out;
  auto fail = [&](Error e) { out.error = e; };
  // A mutable cursor over `len` bytes of op's window, moved to op.va; nullopt with out.error
  // set if either step fails.
  auto cursor_at = [&](const DisabledPreemptGuard& g, std::uint64_t len) -> std::optional<VmSpace::CursorMut> {
    auto c = s.spaces[op.space]->cursor_mut(g, cursor_range(op, len));
    if (!c) {
      fail(c.error());
      return std::nullopt;
    }
    if (auto r = c->jump(op.va); !r) {
      fail(r.error());
      return std::nullopt;
    }
    return std::move(*c);
  };
  switch (op.kind) {
    case K::AllocFrame: {
      auto f = FrameAllocOptions().alloc_frame();
      if (!f) {
        problems += "alloc_frame failed\n";
        break;
      }
      s.allocs.push_back({after.handles.back().range.start, f->paddr(), kPageSize});
      s.handles.emplace_back(UFrame(std::move(*f)));
      break;
    }
    case K::AllocHuge: {
      auto pa = global_frame_allocator().alloc(FrameLayout{kSz2M, kSz2M});
      if (!pa) {
        problems += "2 MiB allocation failed\n";
        break;
      }
      auto seg = Segment<NoMeta>::from_unused(PaRange{*pa, *pa + kSz2M}, [](Paddr) { return NoMeta{}; });
      if (!seg) {
        problems += "from_unused failed\n";
        break;
      }
      (void)seg->fill_zeros(0, kSz2M);
      s.allocs.push_back({after.handles.back().range.start, *pa, kSz2M});
      s.handles.emplace_back(USegment(std::move(*seg)));
      break;
    }
    case K::Clone: s.handles.push_back(s.handles[op.handle]); break;
    case K::Drop: s.handles.erase(s.handles.begin() + static_cast<std::ptrdiff_t>(op.handle)); break;
    case K::Slice: {
      auto r = std::get<USegment>(s.handles[op.handle]).slice(op.a, op.b);
      if (!r) {
        fail(r.error());
        break;
      }
      s.handles.emplace_back(std::move(*r));
      break;
    }
    case K::Split: {
      auto& seg = std::get<USegment>(s.handles[op.handle]);
      auto r = std::move(seg).split(op.a);
      if (!r) {
        fail(r.error());
        break;
      }
      seg = std::move(r->first);
      s.handles.emplace_back(std::move(r->second));
      break;
    }
    case K::Next: {
      auto f = std::get<USegment>(s.handles[op.handle]).next();
      if (f) s.handles.emplace_back(std::move(*f));
      break;
    }
    case K::CreateSpace: {
      auto sp = VmSpace::create();
      if (!sp) {
        fail(sp.error());
        break;
      }
      s.spaces[op.space] = std::move(*sp);
      break;
    }
    case K::DropSpace: s.spaces[op.space].reset(); break;
    case K::Activate:
      if (op.cpu == 0) {
        if (auto r = s.spaces[op.space]->activate(); !r) fail(r.error());
      } else {
        std::optional<Error> e;
        if (!on_cpu1([&] {
              if (auto r = s.spaces[op.space]->activate(); !r) e = r.error();
            })) {
          problems += "cannot bind CPU 1\n";
        }
        out.error = e;
      }
      break;
    case K::Deactivate:
      if (op.cpu == 0) {
        if (auto r = VmSpace::deactivate_current(); !r) fail(r.error());
      } else {
        std::optional<Error> e;
        on_cpu1([&] {
          if (auto r = VmSpace::deactivate_current(); !r) e = r.error();
        });
        out.error = e;
      }
      break;
    case K::Map: {
      auto& h = s.handles[op.handle];
      const PaRange before = VmSystem::range_of(h);
      const std::uint64_t size = before.size();
      const bool mappable = size == kPageSize || (std::holds_alternative<USegment>(h) && size == kSz2M);
      auto g = disable_preempt();
      auto c = cursor_at(g, mappable ? size : kPageSize);
      if (!c) break;
      const PageProperty prop{op.flags, op.cache, static_cast<PrivilegedPageFlags>(op.seed & 0xc3)};
      Result<void> r = std::holds_alternative<UFrame>(h) ? c->map(std::move(std::get<UFrame>(h)), prop)
                                                          : c->map_segment(std::move(std::get<USegment>(h)), prop);
      if (!r) {
        fail(r.error());
        if (VmSystem::range_of(h) != before) problems += "a failed map did not give the frames back\n";
        break;
      }
      s.handles.erase(s.handles.begin() + static_cast<std::ptrdiff_t>(op.handle));
      break;
    }
    case K::Unmap: {
      auto g = disable_preempt();
      auto c = cursor_at(g, op.len);
      if (!c) break;
      auto r = c->unmap(op.len);
      if (!r) {
        fail(r.error());
        break;
      }
      out.count = *r;
      if (c->virt_addr() != op.va + op.len) problems += "unmap did not advance the cursor by len\n";
      break;
    }
    case K::Protect: {
      auto g = disable_preempt();
      auto c = cursor_at(g, op.len);
      if (!c) break;
      const ProtSpec prot = op.prot;
      auto r = c->protect_next(op.len, [prot](PageFlags& f, CachePolicy& cache) {
        PageProperty p{f, cache, PrivilegedPageFlags::None};
        prot(p);
        f = p.flags;
        cache = p.cache;
      });
      if (!r) {
        fail(r.error());
        break;
      }
      out.range = *r;
      if (*r) {
        // A kernel must flush before relying on the new permissions (OSTD: protect does not).
        c->flusher().issue_tlb_flush(TlbFlushOp::for_range(**r).value());
        c->flusher().dispatch_tlb_flush();
      }
      break;
    }
    case K::Query: {
      auto g = disable_preempt();
      auto c = s.spaces[op.space]->cursor(g, VaRange{op.va, op.va + kPageSize});
      if (!c) {
        fail(c.error());
        break;
      }
      auto r = c->query();
      if (!r) {
        fail(r.error());
        break;
      }
      out.query_range = r->first;
      if (r->second) {
        const VmQueriedItem& q = *r->second;
        if (q.kind != VmQueriedItem::Kind::MappedRam || !q.frame || q.frame->paddr() != q.paddr) {
          problems += "query of a tracked mapping did not return its frame\n";
        }
        out.queried = Mapping{r->first.start, q.level, q.paddr, q.prop};
      }
      break;
    }
    case K::Write: {
      auto w = s.spaces[op.space]->writer(op.va, op.len);
      if (!w) {
        fail(w.error());
        break;
      }
      std::vector<std::byte> buf(op.len);
      for (std::size_t i = 0; i < op.len; ++i) buf[i] = static_cast<std::byte>(pattern(op.seed, i));
      VmReader<Infallible> src{std::span<const std::byte>(buf)};
      auto r = src.read_fallible(*w);
      if (r) {
        out.copied = *r;
      } else {
        out.error = r.error().error;
        out.copied = r.error().copied;
      }
      break;
    }
    case K::Read: {
      auto body = [&] {
        auto rd = s.spaces[op.space]->reader(op.va, op.len);
        if (!rd) {
          fail(rd.error());
          return;
        }
        std::vector<std::byte> buf(op.len);
        VmWriter<Infallible> dst{std::span<std::byte>(buf)};
        auto r = rd->read_fallible(dst);
        if (r) {
          out.copied = *r;
        } else {
          out.error = r.error().error;
          out.copied = r.error().copied;
        }
        for (std::size_t i = 0; i < out.copied && i < buf.size(); ++i) out.bytes.push_back(std::to_integer<std::uint8_t>(buf[i]));
      };
      if (op.cpu == 0) {
        body();
      } else {
        on_cpu1(body);
      }
      break;
    }
  }
  return out;
}

std::string describe(const std::optional<Error>& e) { return e ? std::string(to_string(*e)) : "ok"; }

std::string compare(const VmModel& after, const VmSystem& s, const VmOp& op, const VmOutcome& want,
                    const VmOutcome& got) {
  using K = VmOp::Kind;
  std::ostringstream os;
  if (want.error != got.error) os << "error: model " << describe(want.error) << ", library " << describe(got.error) << "\n";
  switch (op.kind) {
    case K::Write:
    case K::Read:
      if (want.copied != got.copied) os << "copied: model " << want.copied << ", library " << got.copied << "\n";
      if (op.kind == K::Read && want.bytes != got.bytes) {
        std::size_t i = 0;
        while (i < want.bytes.size() && i < got.bytes.size() && want.bytes[i] == got.bytes[i]) ++i;
        os << "read data differs at byte " << i << "\n";
      }
      break;
    case K::Unmap: {
      if (want.error) break;
      // Every mapping here is a tracked frame: 4 KiB pieces count 1 each and a 2 MiB leaf its
      // 512 frames, whether taken alone or inside a detached sub-tree (num_frames counts the
      // base pages of huge leaves too — our departure from OSTD, which counts level-1 entries).
      std::size_t l1 = 0, l2 = 0;
      for (const Mapping& m : want.removed) (m.level == 1 ? l1 : l2) += 1;
      if (got.count != l1 + 512 * l2) {
        os << "unmap returned " << got.count << " frames for " << l1 << " 4 KiB and " << l2 << " 2 MiB mappings\n";
      }
      break;
    }
    case K::Protect:
      if (want.range != got.range) {
        os << "protected: model " << (want.range ? harness_detail::show(*want.range) : "nothing") << ", library "
           << (got.range ? harness_detail::show(*got.range) : "nothing") << "\n";
      }
      break;
    case K::Query: {
      if (want.error) break;
      if (want.queried.has_value() != got.queried.has_value()) {
        os << "query: model " << (want.queried ? harness_detail::show(*want.queried) : "nothing") << ", library "
           << (got.queried ? harness_detail::show(*got.queried) : "nothing") << "\n";
        break;
      }
      if (want.queried) {
        Mapping w = *want.queried;
        const auto real = s.real(w.pa);
        if (!real || *real != got.queried->pa || w.level != got.queried->level ||
            check::without_access_bits(w.prop) != check::without_access_bits(got.queried->prop) ||
            got.query_range != VaRange{w.va, w.va + w.size()}) {
          os << "query: model " << w << " (real 0x" << std::hex << real.value_or(0) << std::dec << "), library "
             << *got.queried << " range " << got.query_range << "\n";
        }
      } else if (!got.query_range.contains(op.va)) {
        os << "query: absent entry range " << got.query_range << " does not contain the address\n";
      }
      break;
    }
    default: break;
  }
  (void)after;
  return os.str();
}

// Everything the model says about the system, and every invariant.
std::string check_all(const VmModel& m, const VmSystem& s) {
  std::ostringstream os;
  // Each table equals its model, with symbolic addresses made real.
  for (int i = 0; i < kSpaces; ++i) {
    if (m.spaces[i].has_value() != (s.spaces[i] != nullptr)) {
      os << "space " << i << " exists in one side only\n";
      continue;
    }
    if (!m.spaces[i]) continue;
    check::AbstractModel real(VmModel::config());
    for (const auto& [va, mp] : m.spaces[i]->mappings()) {
      Mapping r = mp;
      auto pa = s.real(mp.pa);
      if (!pa) {
        os << "no real frame for symbolic 0x" << std::hex << mp.pa << std::dec << "\n";
        continue;
      }
      r.pa = *pa;
      (void)real.map(r);
    }
    for (const std::string& d : real.diff(check::interpret(s.spaces[i]->page_table()))) {
      os << "space " << i << " model vs table: " << d << "\n";
    }
  }
  // Invariants, at a quiescent point.
  rcu_barrier();
  check::CheckReport report;
  check::RawRefs refs;
  for (const auto& sp : s.spaces) {
    if (sp) check::check_user_table(sp->page_table(), report, &refs);
  }
  check::check_page_table(kernel_page_table(), report, &refs);
  check::check_frame_slots(report);
  check::check_refcount_law(refs, report);
  check::check_tlb_coherence(report);
  if (!report.ok()) os << report.to_string();
  if (tlb_stale_hits() != 0) os << "a TLB hit translated to a freed frame\n";
  // Exact counts from the model, live frames' contents, and freed frames.
  const auto counts = m.counts();
  std::set<Paddr> live_real;
  for (const auto& [sym, c] : counts) {
    auto real = s.real(sym);
    if (!real) {
      os << "no real frame for symbolic 0x" << std::hex << sym << std::dec << "\n";
      continue;
    }
    live_real.insert(*real);
    const std::uint64_t rc = meta_slot(*real)->ref_count_ref().load(boost::memory_order_acquire);
    if (rc != c.first + c.second) {
      os << "frame 0x" << std::hex << *real << std::dec << ": count " << rc << ", model " << c.first << " handles + "
         << c.second << " PTEs\n";
    }
    if (check::ledger_enabled() && check::ledger_handles(*real) != static_cast<std::int64_t>(c.first)) {
      os << "frame 0x" << std::hex << *real << std::dec << ": ledger " << check::ledger_handles(*real)
         << " handles, model " << c.first << "\n";
    }
  }
  for (const Alloc& a : s.allocs) {
    for (Paddr f = a.real; f < a.real + a.size; f += kPageSize) {
      if (live_real.count(f)) continue;
      MetaSlot* slot = meta_slot(f);
      const std::uint64_t rc = slot->ref_count_ref().load(boost::memory_order_acquire);
      if (rc != kRefCountUnused && (slot->vtable == nullptr || slot->vtable->is_untyped)) {
        os << "frame 0x" << std::hex << f << std::dec << " should be free but has count " << rc << "\n";
      }
    }
  }
  for (const auto& [sym, page] : m.memory) {
    auto real = s.real(sym);
    if (!real || std::memcmp(paddr_to_vaddr(*real), page->data(), kPageSize) != 0) {
      os << "contents of frame 0x" << std::hex << real.value_or(0) << std::dec << " differ from the model\n";
    }
  }
  return os.str();
}

struct VmCommand final : rc::state::Command<VmModel, VmSystem> {
  VmOp op;
  explicit VmCommand(const VmOp& o) : op(o) {}
  void checkPreconditions(const VmModel& m) const override { RC_PRE(applicable(m, op)); }
  void apply(VmModel& m) const override { (void)model_apply(m, op); }
  void run(const VmModel& m0, VmSystem& s) const override {
    VmModel m = m0;
    const VmOutcome want = model_apply(m, op);
    std::string problems;
    const VmOutcome got = system_run(s, m, op, problems);
    ++op_stats()[std::string(to_string(op.kind)) + " " + describe(got.error)];
    const std::string d = problems + compare(m, s, op, want, got);
    if (!d.empty() && std::getenv("VMSPACE_MODEL_DEBUG")) std::cerr << "FAIL " << op << ": " << d << std::endl;
    if (!d.empty()) RC_FAIL("results differ after " + harness_detail::show(op) + ":\n" + d);
    const std::string c = check_all(m, s);
    if (!c.empty() && std::getenv("VMSPACE_MODEL_DEBUG")) std::cerr << "FAIL " << op << ": " << c << std::endl;
    if (!c.empty()) RC_FAIL("state differs after " + harness_detail::show(op) + ":\n" + c);
  }
  void show(std::ostream& os) const override { os << op; }
};

// ---- generators ----

// An address near an interesting user-space boundary, or near a mapping of `space`.
rc::Gen<Vaddr> user_va(const VmModel& m, int space) {
  std::vector<Vaddr> near;
  if (space >= 0 && space < kSpaces && m.spaces[space]) {
    for (const auto& [va, mp] : m.spaces[space]->mappings()) {
      near.push_back(va);
      if (mp.level > 1) near.push_back(va + kSz2M / 2);
      if (near.size() >= 32) break;
    }
  }
  return rc::gen::exec([=] {
    if (!near.empty() && *gen::weighted<bool>({{1, false}, {3, true}})) {
      const std::int64_t d = *gen::weighted<std::int64_t>(
          {{6, 0}, {2, 4096}, {2, -4096}, {1, 8192}, {1, -8}, {1, 4092}});
      return *rc::gen::elementOf(near) + static_cast<std::uint64_t>(d);
    }
    const Vaddr base = *gen::weighted<Vaddr>({{10, 0}, {2, kSz1G}, {2, kMaxUserspaceVaddr}, {1, kUserEnd}});
    const std::uint64_t off = *gen::weighted<std::uint64_t>(
        {{3, 0}, {3, kSz4K}, {2, 2 * kSz4K}, {2, kSz2M - kSz4K}, {4, kSz2M}, {2, kSz2M + kSz4K}, {2, 2 * kSz2M}});
    if (base == 0 || base == kSz1G) return base + off;
    return base - (off == 0 ? kSz4K : off);
  });
}

rc::Gen<VmOp> vm_op(const VmModel& m) {
  const VmModel model = m;
  std::vector<int> spaces, missing;
  for (int i = 0; i < kSpaces; ++i) (m.spaces[i] ? spaces : missing).push_back(i);
  std::vector<std::size_t> segments, mappable;
  for (std::size_t i = 0; i < m.handles.size(); ++i) {
    if (m.handles[i].segment) segments.push_back(i);
    const std::uint64_t sz = m.handles[i].range.size();
    if (sz == kPageSize || (m.handles[i].segment && sz == kSz2M)) mappable.push_back(i);
  }
  using K = VmOp::Kind;
  const bool few = m.handles.size() < 4;
  std::vector<std::pair<std::size_t, K>> kinds{{few ? 10u : 2u, K::AllocFrame}, {few ? 3u : 1u, K::AllocHuge}};
  if (!m.handles.empty()) kinds.insert(kinds.end(), {{2, K::Clone}, {3, K::Drop}});
  if (!segments.empty()) kinds.insert(kinds.end(), {{2, K::Slice}, {2, K::Split}, {2, K::Next}});
  if (!missing.empty()) kinds.push_back({spaces.empty() ? 20u : 1u, K::CreateSpace});
  if (!spaces.empty()) {
    const bool active0 = m.active[0] >= 0;
    kinds.insert(kinds.end(), {{1, K::DropSpace}, {active0 ? 2u : 8u, K::Activate}, {1, K::Deactivate},
                               {8, K::Unmap}, {5, K::Protect}, {4, K::Query}, {10, K::Write}, {10, K::Read}});
    if (!mappable.empty()) kinds.push_back({30, K::Map});
  }
  return rc::gen::exec([=] {
    VmOp op;
    op.kind = *gen::weighted(kinds);
    if (!model.handles.empty()) op.handle = *rc::gen::inRange<std::size_t>(0, model.handles.size());
    if (!spaces.empty()) op.space = *rc::gen::elementOf(spaces);
    switch (op.kind) {
      case K::Slice:
      case K::Split:
      case K::Next: {
        op.handle = *rc::gen::elementOf(segments);
        const std::uint64_t pages = model.handles[op.handle].range.size() / kPageSize;
        op.a = *rc::gen::inRange<std::uint64_t>(0, pages + 2) * kPageSize;
        op.b = *rc::gen::inRange<std::uint64_t>(0, pages + 2) * kPageSize;
        if (*gen::weighted<bool>({{12, false}, {1, true}})) op.a += 1;
        break;
      }
      case K::CreateSpace: op.space = *rc::gen::elementOf(missing); break;
      case K::Activate:
      case K::Deactivate: op.cpu = *gen::weighted<int>({{3, 0}, {1, 1}}); break;
      case K::Map: {
        if (!mappable.empty() && *gen::weighted<bool>({{1, false}, {6, true}})) op.handle = *rc::gen::elementOf(mappable);
        op.va = *user_va(model, op.space);
        if (model.handles[op.handle].range.size() == kSz2M && *gen::weighted<bool>({{1, false}, {4, true}})) {
          op.va = align_down(op.va, kSz2M);
        }
        op.wide = *gen::weighted<bool>({{2, false}, {1, true}});
        op.flags = *gen::weighted<PageFlags>({{6, PageFlags::RW}, {2, PageFlags::R}, {1, PageFlags::RWX}, {1, PageFlags::None}});
        op.cache = *gen::weighted<CachePolicy>({{12, CachePolicy::Writeback}, {1, CachePolicy::Uncacheable},
                                                {1, CachePolicy::WriteProtected}});
        op.seed = *rc::gen::arbitrary<std::uint8_t>();  // privileged bits the library must ignore
        break;
      }
      case K::Unmap:
      case K::Protect:
        op.va = *user_va(model, op.space);
        op.len = *gen::weighted<std::uint64_t>({{4, kSz4K}, {2, 2 * kSz4K}, {3, kSz2M}, {1, kSz2M + kSz4K},
                                                {2, 2 * kSz2M}, {1, 0}, {1, 3}});
        op.wide = *gen::weighted<bool>({{2, false}, {1, true}});
        op.prot = *gen::prot();
        break;
      case K::Query: op.va = align_down(*user_va(model, op.space), kPageSize); break;
      case K::Write:
      case K::Read:
        op.cpu = op.kind == K::Read ? *gen::weighted<int>({{3, 0}, {1, 1}}) : 0;
        if (model.active[op.cpu] >= 0 && *gen::weighted<bool>({{1, false}, {4, true}})) op.space = model.active[op.cpu];
        op.va = *user_va(model, op.space);
        op.len = *gen::weighted<std::uint64_t>({{1, 0}, {2, 1}, {4, 8}, {2, 100}, {3, kPageSize},
                                                {2, kPageSize + 8}, {1, 3 * kPageSize + 5}, {1, kSz2M / 4}});
        op.seed = *rc::gen::arbitrary<std::uint8_t>();
        break;
      default: break;
    }
    return op;
  });
}

}  // namespace

TEST_SUITE("model") {
  TEST_CASE("vm_space_model") {
    boot_for_models();
    (void)inject_user_page_fault_handler({});
    set_tlb_check_mode(TlbCheckMode::Count);
    op_stats().clear();
    const bool ok = rc_check("VmSpace with real frames", 100, [] {
      rcu_barrier();
      const std::uint64_t free_before = global_frame_allocator().free_bytes();
      {
        VmSystem sut;
        rc::state::check(VmModel{}, sut, [](const VmModel& m) {
          return rc::gen::map(vm_op(m), [](const VmOp& op) {
            return std::shared_ptr<const rc::state::Command<VmModel, VmSystem>>(std::make_shared<VmCommand>(op));
          });
        });
      }
      rcu_barrier();
      RC_ASSERT(global_frame_allocator().free_bytes() == free_before);
    });
    if (std::getenv("VMSPACE_MODEL_STATS") != nullptr) std::cerr << "outcomes:\n" << format_op_stats();
    CHECK(ok);
  }
}
