// Worker: one stress thread's life (bind a CPU, act, park, exit), its random choice of actions
// and arguments per profile, and its page-fault handler. StressContext forwards to it.
#include "worker.hpp"

#include <algorithm>
#include <iterator>

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <vmspace/vm_space.hpp>

#include "engine.hpp"
#include "regions.hpp"

namespace vmspace::stress {

// ---- StressContext: forwards to the worker it runs on ----

unsigned StressContext::thread_index() const noexcept { return w_->index; }
CpuId StressContext::cpu() const noexcept { return w_->binding->cpu(); }
std::mt19937_64& StressContext::rng() noexcept { return w_->rng; }
std::size_t StressContext::num_spaces() const noexcept { return w_->engine.spaces.size(); }
VmSpace& StressContext::space(std::size_t i) const noexcept { return *w_->engine.spaces[i]; }
std::optional<std::size_t> StressContext::space_index(const VmSpace& s) const noexcept {
  const auto& sp = w_->engine.spaces;
  for (std::size_t i = 0; i < sp.size(); ++i) {
    if (sp[i].get() == &s) return i;
  }
  return std::nullopt;
}
std::optional<std::size_t> StressContext::active_space() const noexcept {
  return w_->recorder().active_space();
}
Result<void> StressContext::activate(std::optional<std::size_t> i) {
  return w_->recorder().activate(i);
}
Result<void> StressContext::with_cursor(std::size_t i, VaRange range, CursorKind kind,
                                        LockMode mode,
                                        const std::function<void(StressCursor&)>& body) {
  return w_->recorder().with_cursor(i, range, kind, mode, body);
}
Result<StressContext::CopyResult> StressContext::read(Vaddr va, std::size_t len) {
  return w_->recorder().copy(internal::CopyDirection::Read, va, len);
}
Result<StressContext::CopyResult> StressContext::write(Vaddr va, std::size_t len) {
  return w_->recorder().copy(internal::CopyDirection::Write, va, len);
}

namespace internal {

namespace {

// Workers run a little nicer than the checker thread (see thread_main).
constexpr int kWorkerNice = 5;

thread_local Worker* t_current = nullptr;

}  // namespace

Worker::Worker(Engine& e, unsigned i, std::uint64_t seed)
    : engine(e), index(i), rng(seed), recorder_(e, i, status_) {}

Worker* Worker::current() noexcept { return t_current; }

std::size_t Worker::pick_space() { return static_cast<std::size_t>(below(engine.spaces.size())); }

void Worker::thread_main() {
  t_current = this;
  // Workers run a little nicer than the checker thread, so that replaying a segment keeps up
  // with the workers producing the next one instead of stalling them at the next checkpoint.
  (void)setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), kWorkerNice);
  auto b = CpuBinding::bind_any();
  if (!b) {
    status_.set(WorkerState::Exited, engine.now_ns());
    engine.barrier().arrive(WorkerStart::NoFreeCpu);
    engine.barrier().exited();
    t_current = nullptr;
    return;
  }
  binding.emplace(std::move(*b));
  status_.cpu_id.store(static_cast<int>(binding->cpu().as_u32()), std::memory_order_relaxed);
  status_.set(WorkerState::Running, engine.now_ns());
  engine.barrier().arrive(WorkerStart::Bound);
  while (!engine.barrier().stop_requested()) {
    if (engine.barrier().pause_requested()) {
      status_.state.store(WorkerState::Parked, std::memory_order_relaxed);
      engine.barrier().park();
      status_.state.store(WorkerState::Running, std::memory_order_relaxed);
      continue;
    }
    do_action();
  }
  // Leave the CPU without a space so the spaces can be dropped.
  (void)VmSpace::deactivate_current();
  recorder_.clear_active();
  binding.reset();
  status_.set(WorkerState::Exited, engine.now_ns());
  engine.barrier().exited();
  t_current = nullptr;
}

void Worker::do_action() {
  const OpMix& m = engine.mix;
  const unsigned custom = engine.options.custom_op ? m.custom : 0;
  const unsigned weights[] = {m.mut_session, m.ro_session, m.read, m.write, m.activate, custom};
  unsigned total = 0;
  for (unsigned w : weights) total += w;
  if (total == 0) {
    session(CursorKind::Mutable);
    return;
  }
  std::uint64_t x = below(total);
  unsigned pick = 0;
  while (x >= weights[pick]) x -= weights[pick++];
  switch (pick) {
    case 0:
      session(CursorKind::Mutable);
      break;
    case 1:
      session(CursorKind::ReadOnly);
      break;
    case 2:
      copy_action(CopyDirection::Read);
      break;
    case 3:
      copy_action(CopyDirection::Write);
      break;
    case 4:
      (void)recorder_.activate(chance(0.1) ? std::nullopt
                                           : std::optional<std::size_t>(pick_space()));
      break;
    default: {
      StressContext ctx(*this);
      engine.options.custom_op(ctx);
      recorder_.count(OpKind::Custom, std::nullopt);
      break;
    }
  }
}

Region Worker::pick_region() {
  const Region own = engine.regions[3 + index];
  switch (engine.options.profile) {
    case Profile::Disjoint:
      return own;
    case Profile::LeafContended:
      return engine.leaf;
    case Profile::Overlapping:
      return engine.overlap_region;
    case Profile::Mixed: {
      const auto x = below(100);
      if (x < 20) return own;
      if (x < 40) return engine.leaf;
      if (x < 80) return engine.overlap_region;
      return engine.span;
    }
  }
  return own;
}

VaRange Worker::pick_range(const Region& reg) {
  const VaRange r = reg.range;
  const std::uint64_t pages = (r.end - r.start) / kPageSize;
  if (r.start == engine.leaf.range.start && engine.options.profile == Profile::LeafContended) {
    const auto x = below(100);
    if (x < 75) {
      // Mostly this thread's own pages of the shared leaf table.
      const std::uint64_t threads = engine.options.threads;
      const std::uint64_t slice = std::max<std::uint64_t>(1, pages / threads);
      const std::uint64_t first = (index * slice) % pages;
      const std::uint64_t last = std::min(pages, first + slice);
      const std::uint64_t s = first + below(last - first);
      const std::uint64_t len = 1 + below(std::min<std::uint64_t>(8, last - s));
      return VaRange{r.start + s * kPageSize, r.start + (s + len) * kPageSize};
    }
    if (x < 85) return r;  // exactly the 2 MiB entry: the cursor may map a huge page there
  }
  if (r.start == engine.regions[3 + index].range.start &&
      engine.options.profile != Profile::LeafContended && chance(0.03)) {
    // The thread's whole 1 GiB entry: unmapping all of it detaches a level-2 node (huge leaves
    // included) as one stray sub-tree.
    const Vaddr g = align_down(r.start, k1G);
    return VaRange{g, g + k1G};
  }
  const auto x = below(100);
  if (x < 45 || pages < 2) {
    const std::uint64_t len = 1 + below(std::min<std::uint64_t>(16, pages));
    const std::uint64_t s = below(pages - len + 1);
    return VaRange{r.start + s * kPageSize, r.start + (s + len) * kPageSize};
  }
  if (x < 70) {
    const std::uint64_t len = 1 + below(pages);
    const std::uint64_t s = below(pages - len + 1);
    return VaRange{r.start + s * kPageSize, r.start + (s + len) * kPageSize};
  }
  const Vaddr first2m = align_up_sat(r.start, k2M);
  const std::uint64_t entries = r.end > first2m ? (r.end - first2m) / k2M : 0;
  if (x < 82 && entries > 0) {
    const Vaddr s = first2m + below(entries) * k2M;
    return VaRange{s, s + k2M};
  }
  if (x < 92 && entries > 1) {
    const std::uint64_t n = 2 + below(std::min<std::uint64_t>(3, entries - 1));
    const Vaddr s = first2m + below(entries - n + 1) * k2M;
    return VaRange{s, s + n * k2M};
  }
  return r;
}

VaRange Worker::bad_range() {
  switch (below(5)) {
    case 0:
      return VaRange{0x5000, 0x5000};  // empty
    case 1:
      return VaRange{0x9000, 0x5000};  // reversed
    case 2:
      return VaRange{kLeafRegion.start + 0x123, kLeafRegion.start + 0x2000};  // unaligned
    case 3:
      return VaRange{k512G * 256 - 0x2000, k512G * 256 + 0x2000};  // past user space
    default:
      return VaRange{kLeafRegion.start, kLeafRegion.start + 0x1800};  // unaligned end
  }
}

std::uint64_t Worker::random_len(Vaddr from, VaRange r) {
  const std::uint64_t rem = from < r.end ? (r.end - from) / kPageSize : 0;
  const auto x = below(100);
  if (x < 35) return std::min<std::uint64_t>(rem, 1 + below(16)) * kPageSize;
  if (x < 70) return below(rem + 1) * kPageSize;
  return rem * kPageSize;
}

PageProperty Worker::random_prop(ArgValidity validity) {
  static constexpr PageFlags kFlags[] = {
      PageFlags::RW, PageFlags::RW,  PageFlags::RW,   PageFlags::R,
      PageFlags::RX, PageFlags::RWX, PageFlags::None, PageFlags::RW | PageFlags::AVAIL2};
  static constexpr CachePolicy kCaches[] = {CachePolicy::Writeback,      CachePolicy::Writeback,
                                            CachePolicy::Writeback,      CachePolicy::Uncacheable,
                                            CachePolicy::WriteCombining, CachePolicy::Writethrough};
  PageProperty p =
      PageProperty::new_user(kFlags[below(std::size(kFlags))], kCaches[below(std::size(kCaches))]);
  if (validity == ArgValidity::Invalid)
    p.cache = CachePolicy::WriteProtected;  // x86 leaf PTEs cannot encode it
  return p;
}

ProtectChange Worker::random_change(ArgValidity validity) {
  ProtectChange c;
  switch (below(6)) {
    case 0:
      c.clear = PageFlags::W;
      break;
    case 1:
      c.set = PageFlags::RW;
      break;
    case 2:
      c.set = PageFlags::RX;
      c.clear = PageFlags::W;
      break;
    case 3:
      c.clear = PageFlags::RWX;
      break;
    case 4:
      c.set = PageFlags::AVAIL2;
      break;
    default:
      c.set = PageFlags::R;
      c.cache = CachePolicy::Uncacheable;
      break;
  }
  if (validity == ArgValidity::Invalid) c.cache = CachePolicy::WriteProtected;
  return c;
}

void Worker::session(CursorKind kind) {
  const OpMix& m = engine.mix;
  const std::size_t space = pick_space();
  const bool invalid = chance(m.p_invalid / 4);
  const VaRange range = invalid ? bad_range() : pick_range(pick_region());
  const LockMode mode = chance(m.p_try) ? LockMode::Try : LockMode::Block;
  (void)recorder_.with_cursor(space, range, kind, mode, [&](StressCursor& c) {
    const std::uint64_t n = 1 + below(std::max(1u, m.max_ops_per_session));
    const std::uint64_t nested_at = chance(m.p_nested) ? below(n) : n;
    for (std::uint64_t i = 0; i < n; ++i) {
      if (i == nested_at) maybe_nested(c);
      session_op(c, kind);
    }
  });
}

void Worker::maybe_nested(StressCursor& c) {
  const VaRange outer = c.range();
  const auto x = below(100);
  std::size_t space = c.space();
  VaRange range;
  if (x < 60) {
    // Overlapping the cursor this thread holds: must fail (WouldDeadlock or WouldBlock).
    const Vaddr s = random_page(outer);
    range =
        VaRange{s, std::min(s + (1 + below(16)) * kPageSize, std::max(outer.end, s + kPageSize))};
  } else if (x < 85 || engine.spaces.size() < 2 || space + 1 >= engine.spaces.size()) {
    // Anywhere in the same space: may be granted if it is disjoint, never blocks.
    range = pick_range(pick_region());
  } else {
    // A higher-numbered space: blocking is fine there (spaces are locked in index order).
    space = space + 1 + below(engine.spaces.size() - space - 1);
    range = pick_range(pick_region());
  }
  const CursorKind kind = c.is_mut() && chance(0.7) ? CursorKind::Mutable : CursorKind::ReadOnly;
  (void)recorder_.with_cursor(space, range, kind, LockMode::Block, [&](StressCursor& inner) {
    const std::uint64_t n = 1 + below(3);
    for (std::uint64_t i = 0; i < n; ++i) session_op(inner, kind);
  });
}

void Worker::session_op(StressCursor& c, CursorKind kind) {
  const OpMix& m = engine.mix;
  const bool mut = kind == CursorKind::Mutable;
  const unsigned weights[] = {m.query,
                              m.find_next,
                              m.jump,
                              mut ? m.map : 0u,
                              mut ? m.map_huge : 0u,
                              mut ? m.unmap : 0u,
                              mut ? m.protect : 0u};
  unsigned total = 0;
  for (unsigned w : weights) total += w;
  if (total == 0) return;
  std::uint64_t x = below(total);
  unsigned op = 0;
  while (x >= weights[op]) x -= weights[op++];
  const VaRange r = c.range();
  const ArgValidity validity = chance(m.p_invalid) ? ArgValidity::Invalid : ArgValidity::Valid;
  const bool invalid = validity == ArgValidity::Invalid;
  auto bad_len = [&] {
    const Vaddr va = c.virt_addr();
    if (below(2) == 0) return random_len(va, r) + 1 + below(kPageSize - 1);  // unaligned
    return (va < r.end ? r.end - va : 0) + (1 + below(4)) * kPageSize;       // past the end
  };
  switch (op) {
    case 0:
      if (c.virt_addr() >= r.end || chance(0.6)) (void)c.jump(random_page(r));
      (void)c.query();
      break;
    case 1:
      if (chance(0.3)) (void)c.jump(random_page(r));
      (void)c.find_next(invalid ? bad_len() : random_len(c.virt_addr(), r));
      break;
    case 2: {
      Vaddr target = random_page(r);
      if (invalid) {
        switch (below(3)) {
          case 0:
            target += 1 + below(kPageSize - 1);
            break;
          case 1:
            target = r.end;
            break;
          default:
            target = r.start >= kPageSize ? r.start - kPageSize : r.end + kPageSize;
            break;
        }
      }
      (void)c.jump(target);
      break;
    }
    case 3:
      if (c.virt_addr() >= r.end || chance(0.5)) (void)c.jump(random_page(r));
      (void)c.map_frame(random_prop(validity));
      break;
    case 4: {
      const Vaddr first = align_up_sat(r.start, k2M);
      if (first < r.end && r.end - first >= k2M) {
        const Vaddr slot = first + below((r.end - first) / k2M) * k2M;
        (void)c.jump(invalid ? slot + kPageSize * (1 + below(511)) : slot);
      } else if (!invalid && !chance(0.1)) {
        // No 2 MiB slot in this range: a huge map could only fail, so usually map a frame.
        if (c.virt_addr() >= r.end || chance(0.5)) (void)c.jump(random_page(r));
        (void)c.map_frame(random_prop(ArgValidity::Valid));
        break;
      }
      (void)c.map_huge(random_prop(ArgValidity::Valid));
      break;
    }
    case 5:
      if (chance(0.4)) (void)c.jump(random_page(r));
      (void)c.unmap(invalid ? bad_len() : random_len(c.virt_addr(), r));
      break;
    default:
      if (chance(0.4)) (void)c.jump(random_page(r));
      (void)c.protect_next(
          invalid ? bad_len() : random_len(c.virt_addr(), r),
          random_change(invalid && chance(0.5) ? ArgValidity::Invalid : ArgValidity::Valid));
      break;
  }
}

void Worker::copy_action(CopyDirection direction) {
  if (!recorder_.active_space()) {
    if (!recorder_.activate(pick_space())) return;
  }
  const VaRange r = pick_region().range;
  const std::uint64_t words = (r.end - r.start) / 8;
  const Vaddr va = r.start + 8 * below(words - 1);
  const std::uint64_t max_words = std::min<std::uint64_t>((r.end - va) / 8, 16 * 1024 / 8);
  const std::uint64_t len = 8 * (1 + below(max_words));
  (void)recorder_.copy(direction, va, len);
}

Result<void> Worker::handle_fault(const PageFaultInfo& info) {
  const WorkerState prev = status_.state.load(std::memory_order_relaxed);
  status_.set(WorkerState::Faulting, engine.now_ns());
  StressContext ctx(*this);
  Result<void> r =
      engine.options.fault_hook ? engine.options.fault_hook(ctx, info) : default_fault(ctx, info);
  status_.set(prev, engine.now_ns());
  recorder_.count(OpKind::Fault, r ? std::nullopt : std::optional<Error>(r.error()));
  return r;
}

Result<void> Worker::default_fault(StressContext& ctx, const PageFaultInfo& info) {
  auto idx = ctx.space_index(*info.space);
  const Vaddr page = align_down(info.address, kPageSize);
  if (!idx || !demand_mappable(page, engine.options.threads)) return err(Error::PageFault);
  const bool write = info.access == PageFaultAccess::Write;
  Result<void> out = err(Error::PageFault);
  auto opened = ctx.with_cursor(
      *idx, VaRange{page, page + kPageSize}, CursorKind::Mutable, LockMode::Block,
      [&](StressCursor& c) {
        auto q = c.query();
        if (!q) return;
        if (q->second) {
          // Someone mapped it meanwhile: retry if the access can succeed now.
          const PageFlags f = q->second->prop.flags;
          if (has(f, PageFlags::R) && (!write || has(f, PageFlags::W))) out = {};
          return;
        }
        if (c.map_frame(PageProperty::new_user(PageFlags::RW, CachePolicy::Writeback))) out = {};
      });
  if (!opened) return err(Error::PageFault);
  return out;
}

}  // namespace internal

}  // namespace vmspace::stress
