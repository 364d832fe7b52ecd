// The system side of the VmSpace refinement test (vm_model_test.cpp has the overview): the real
// handles and spaces (VmSystem), how each op runs on them (system_run), and the comparison of
// results and states with the model (compare, check_all).
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
#include "vm_model_ops.hpp"

using namespace vmspace;
using namespace vmspace::test;
using check::Mapping;

namespace {

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
    if (auto* f = std::get_if<UFrame>(&h))
      return f->is_empty() ? PaRange{} : PaRange{f->paddr(), f->paddr() + kPageSize};
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
  auto cursor_at = [&](const DisabledPreemptGuard& g,
                       std::uint64_t len) -> std::optional<VmSpace::CursorMut> {
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
      auto seg =
          Segment<NoMeta>::from_unused(PaRange{*pa, *pa + kSz2M}, [](Paddr) { return NoMeta{}; });
      if (!seg) {
        problems += "from_unused failed\n";
        break;
      }
      (void)seg->fill_zeros(0, kSz2M);
      s.allocs.push_back({after.handles.back().range.start, *pa, kSz2M});
      s.handles.emplace_back(USegment(std::move(*seg)));
      break;
    }
    case K::Clone:
      s.handles.push_back(s.handles[op.handle]);
      break;
    case K::Drop:
      s.handles.erase(s.handles.begin() + static_cast<std::ptrdiff_t>(op.handle));
      break;
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
    case K::DropSpace:
      s.spaces[op.space].reset();
      break;
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
      const bool mappable =
          size == kPageSize || (std::holds_alternative<USegment>(h) && size == kSz2M);
      auto g = disable_preempt();
      auto c = cursor_at(g, mappable ? size : kPageSize);
      if (!c) break;
      const PageProperty prop{op.flags, op.cache, static_cast<PrivilegedPageFlags>(op.seed & 0xc3)};
      Result<void> r = std::holds_alternative<UFrame>(h)
                           ? c->map(std::move(std::get<UFrame>(h)), prop)
                           : c->map_segment(std::move(std::get<USegment>(h)), prop);
      if (!r) {
        fail(r.error());
        if (VmSystem::range_of(h) != before)
          problems += "a failed map did not give the frames back\n";
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
        for (std::size_t i = 0; i < out.copied && i < buf.size(); ++i)
          out.bytes.push_back(std::to_integer<std::uint8_t>(buf[i]));
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

std::string describe(const std::optional<Error>& e) {
  return e ? std::string(to_string(*e)) : "ok";
}

std::string compare(const VmModel& after, const VmSystem& s, const VmOp& op, const VmOutcome& want,
                    const VmOutcome& got) {
  using K = VmOp::Kind;
  std::ostringstream os;
  if (want.error != got.error)
    os << "error: model " << describe(want.error) << ", library " << describe(got.error) << "\n";
  switch (op.kind) {
    case K::Write:
    case K::Read:
      if (want.copied != got.copied)
        os << "copied: model " << want.copied << ", library " << got.copied << "\n";
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
        os << "unmap returned " << got.count << " frames for " << l1 << " 4 KiB and " << l2
           << " 2 MiB mappings\n";
      }
      break;
    }
    case K::Protect:
      if (want.range != got.range) {
        os << "protected: model " << (want.range ? test::internal::show(*want.range) : "nothing")
           << ", library " << (got.range ? test::internal::show(*got.range) : "nothing") << "\n";
      }
      break;
    case K::Query: {
      if (want.error) break;
      if (want.queried.has_value() != got.queried.has_value()) {
        os << "query: model " << (want.queried ? test::internal::show(*want.queried) : "nothing")
           << ", library " << (got.queried ? test::internal::show(*got.queried) : "nothing")
           << "\n";
        break;
      }
      if (want.queried) {
        Mapping w = *want.queried;
        const auto real = s.real(w.pa);
        if (!real || *real != got.queried->pa || w.level != got.queried->level ||
            check::without_access_bits(w.prop) != check::without_access_bits(got.queried->prop) ||
            got.query_range != VaRange{w.va, w.va + w.size()}) {
          os << "query: model " << w << " (real 0x" << std::hex << real.value_or(0) << std::dec
             << "), library " << *got.queried << " range " << got.query_range << "\n";
        }
      } else if (!got.query_range.contains(op.va)) {
        os << "query: absent entry range " << got.query_range << " does not contain the address\n";
      }
      break;
    }
    default:
      break;
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
      os << "frame 0x" << std::hex << *real << std::dec << ": count " << rc << ", model " << c.first
         << " handles + " << c.second << " PTEs\n";
    }
    if (check::ledger_enabled() &&
        check::ledger_handles(*real) != static_cast<std::int64_t>(c.first)) {
      os << "frame 0x" << std::hex << *real << std::dec << ": ledger "
         << check::ledger_handles(*real) << " handles, model " << c.first << "\n";
    }
  }
  for (const Alloc& a : s.allocs) {
    for (Paddr f = a.real; f < a.real + a.size; f += kPageSize) {
      if (live_real.count(f)) continue;
      MetaSlot* slot = meta_slot(f);
      const std::uint64_t rc = slot->ref_count_ref().load(boost::memory_order_acquire);
      if (rc != kRefCountUnused && (slot->vtable == nullptr || slot->vtable->is_untyped)) {
        os << "frame 0x" << std::hex << f << std::dec << " should be free but has count " << rc
           << "\n";
      }
    }
  }
  for (const auto& [sym, page] : m.memory) {
    auto real = s.real(sym);
    if (!real || std::memcmp(paddr_to_vaddr(*real), page->data(), kPageSize) != 0) {
      os << "contents of frame 0x" << std::hex << real.value_or(0) << std::dec
         << " differ from the model\n";
    }
  }
  return os.str();
}

}  // namespace
