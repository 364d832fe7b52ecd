// The non-template invariant checks of check/invariants.hpp (frame slots, the refcount law,
// TLB coherence, the user table's borrowed kernel half), their report formatting, and the
// handle-ledger queries of check/ledger.hpp.
#include <vmspace/check/invariants.hpp>
#include <vmspace/check/ledger.hpp>
#include <vmspace/internal/pt_walk.hpp>

#include <sstream>

#include "machine/machine.hpp"

namespace vmspace::check {

bool ledger_enabled() noexcept {
#ifdef VMSPACE_HANDLE_LEDGER
  return true;
#else
  return false;
#endif
}

std::int64_t ledger_handles([[maybe_unused]] Paddr pa) noexcept {
#ifdef VMSPACE_HANDLE_LEDGER
  return boost::atomic_ref<std::int64_t>(vmspace::internal::g_handle_ledger[pa >> kPageShift])
      .load(boost::memory_order_relaxed);
#else
  return 0;
#endif
}

std::string CheckReport::to_string() const {
  std::ostringstream os;
  for (const Violation& v : violations_) os << "violation [" << v.rule << "] " << v.detail << "\n";
  for (const Violation& v : warnings_) os << "warning [" << v.rule << "] " << v.detail << "\n";
  return os.str();
}

namespace internal {

std::string hex(std::uint64_t v) {
  std::ostringstream os;
  os << "0x" << std::hex << v;
  return os.str();
}

void check_tracked_frame(Paddr pa, CheckReport& report) {
  MetaSlot* slot = meta_slot(pa);
  const std::uint64_t rc = slot->ref_count_ref().load(boost::memory_order_acquire);
  if (rc == kRefCountUnused || rc == kRefCountUnique || rc == 0 || rc >= kRefCountMax) {
    report.add("mapped_frame_state", "mapped frame " + hex(pa) + " has reference count " + hex(rc));
    return;
  }
  if (slot->vtable == nullptr || !slot->vtable->is_untyped) {
    report.add("mapped_frame_type", "mapped frame " + hex(pa) + " does not carry untyped metadata");
  }
}

}  // namespace internal

void check_user_table(const PageTable<UserPtConfig>& pt, CheckReport& report, RawRefs* refs,
                      const TableCheckOptions& options) {
  check_page_table(pt, report, refs, options);
  using Pte = UserPtConfig::Pte;
  const vmspace::internal::NodeView<UserPtConfig> user{pt.root_paddr()};
  const vmspace::internal::NodeView<KernelPtConfig> kernel{kernel_page_table().root_paddr()};
  for (std::size_t i = KernelPtConfig::kTopLevelIndexStart; i < KernelPtConfig::kTopLevelIndexEnd;
       ++i) {
    if (user.load_acquire(i) != kernel.load_acquire(i)) {
      report.add("borrowed_kernel_half",
                 "user root entry " + std::to_string(i) + " differs from the kernel's");
    }
  }
  (void)sizeof(Pte);
}

void check_frame_slots(CheckReport& report) {
  ensure_booted();
  const std::uint64_t nframes = max_paddr() / kPageSize;
  for (std::uint64_t i = 0; i < nframes; ++i) {
    MetaSlot* slot = vmspace::internal::g_meta_base + i;
    const std::uint64_t rc = slot->ref_count_ref().load(boost::memory_order_acquire);
    const Paddr pa = i * kPageSize;
    if (rc > kRefCountMax && rc != kRefCountUnique && rc != kRefCountUnused) {
      report.add("refcount_state",
                 "frame " + internal::hex(pa) + " has illegal count " + internal::hex(rc));
    } else if (rc == 0) {
      report.add("refcount_state",
                 "frame " + internal::hex(pa) + " is busy (count 0) at a quiescent point");
    } else if (rc == kRefCountUnused) {
      if (slot->vtable != nullptr) {
        report.add("unused_slot",
                   "unused frame " + internal::hex(pa) + " still has a metadata type");
      }
      if (slot->in_list_ref().load(boost::memory_order_relaxed) != 0) {
        report.add("unused_slot", "unused frame " + internal::hex(pa) + " is still on a list");
      }
    } else if (slot->vtable == nullptr) {
      report.add("used_slot", "frame " + internal::hex(pa) + " is in use without a metadata type");
    }
  }
}

void check_refcount_law(const RawRefs& refs, CheckReport& report) {
  ensure_booted();
  const std::uint64_t nframes = max_paddr() / kPageSize;
  const bool exact = ledger_enabled();
  for (std::uint64_t i = 1; i < nframes; ++i) {  // frame 0 is reserved: no handle, no PTE
    MetaSlot* slot = vmspace::internal::g_meta_base + i;
    const std::uint64_t rc = slot->ref_count_ref().load(boost::memory_order_acquire);
    const Paddr pa = i * kPageSize;
    auto it = refs.find(pa);
    const std::uint64_t owned = it == refs.end() ? 0 : it->second;
    if (rc == kRefCountUnused || rc == kRefCountUnique) {
      if (owned != 0) {
        report.add("refcount_law", "frame " + internal::hex(pa) + " is referenced by " +
                                       std::to_string(owned) +
                                       " page-table entries but not in use");
      }
      continue;
    }
    if (exact) {
      const std::int64_t handles = ledger_handles(pa);
      if (handles < 0 || rc != static_cast<std::uint64_t>(handles) + owned) {
        report.add("refcount_law", "frame " + internal::hex(pa) + ": count " + std::to_string(rc) +
                                       " != " + std::to_string(handles) + " handles + " +
                                       std::to_string(owned) + " PTEs");
      }
    } else if (rc < owned) {
      report.add("refcount_law", "frame " + internal::hex(pa) + ": count " + std::to_string(rc) +
                                     " < " + std::to_string(owned) + " owning PTEs");
    }
  }
}

void check_tlb_coherence(CheckReport& report) {
  ensure_booted();
  using Pte = UserPtConfig::Pte;
  using K = Pte::Consts;
  vmspace::internal::Machine& m = vmspace::internal::machine();
  for (std::uint32_t c = 0; c < m.config.num_cpus; ++c) {
    const Paddr root = m.cpus[c].current_root.load(std::memory_order_acquire);
    m.cpus[c].tlb.for_each_entry([&](Vaddr va, Paddr pa) {
      const vmspace::internal::PteAt e = vmspace::internal::descend<UserPtConfig>(root, va);
      if (!Pte::is_present(e.raw, e.level) || !Pte::is_leaf(e.raw, e.level)) {
        report.add("tlb_coherence", "cpu" + std::to_string(c) + " caches " + internal::hex(va) +
                                        " -> " + internal::hex(pa) +
                                        " but the table does not map it");
        return;
      }
      const PteScalar s = Pte::decode(e.raw, e.level);
      const Paddr expected = s.paddr + (va & (page_size<K>(e.level) - 1));
      if (expected == pa && (has(s.prop.flags, PageFlags::R) || has(s.prop.flags, PageFlags::X)))
        return;
      report.add("tlb_coherence", "cpu" + std::to_string(c) + " caches " + internal::hex(va) +
                                      " -> " + internal::hex(pa) + " but the table maps it to " +
                                      internal::hex(expected));
    });
  }
}

}  // namespace vmspace::check
