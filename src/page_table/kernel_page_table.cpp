// The kernel page table: building it (the shared upper half and the linear mapping of all
// physical memory), user tables that share its upper half, and PageTableError's names.
#include <vmspace/kernel_page_table.hpp>
#include <vmspace/log.hpp>

#include "machine/machine.hpp"

namespace vmspace {

namespace {
using K = ConstsOf<KernelPtConfig>;
PageTable<KernelPtConfig>* g_kernel_pt = nullptr;  // built at boot, never destroyed
}  // namespace

Result<PageTable<KernelPtConfig>, PageTableError> new_kernel_page_table() noexcept {
  auto pt = PageTable<KernelPtConfig>::empty();
  if (!pt) return err(pt.error());
  // The root is not published yet, so no lock is needed to fill it.
  const internal::NodeView<KernelPtConfig> root{pt->root_paddr()};
  for (std::size_t i = KernelPtConfig::kTopLevelIndexStart; i < KernelPtConfig::kTopLevelIndexEnd;
       ++i) {
    auto child = internal::publish_new_child(root, K::kNrLevels, i, internal::NewNode::Unlocked);
    if (!child) return err(child.error());  // `pt` drops the nodes made so far
  }
  return pt;
}

Result<PageTable<UserPtConfig>, PageTableError> create_user_page_table(
    const PageTable<KernelPtConfig>& kernel) noexcept {
  static_assert(std::is_same_v<UserPtConfig::Pte, KernelPtConfig::Pte>,
                "user and kernel tables must share one PTE format to share nodes");
  static_assert(UserPtConfig::kTopLevelIndexEnd <= KernelPtConfig::kTopLevelIndexStart);
  static_assert(!KernelPtConfig::kTopLevelCanUnmap, "shared kernel nodes must never be detached");
  auto user = PageTable<UserPtConfig>::empty();
  if (!user) return err(user.error());
  const internal::NodeView<KernelPtConfig> kroot{kernel.root_paddr()};
  const internal::NodeView<UserPtConfig> uroot{user->root_paddr()};
  for (std::size_t i = KernelPtConfig::kTopLevelIndexStart; i < KernelPtConfig::kTopLevelIndexEnd;
       ++i) {
    const std::uint64_t raw = kroot.load_acquire(i);
    VMS_ASSERT(internal::is_pt_entry<KernelPtConfig>(raw, K::kNrLevels),
               "the kernel page table does not hold a shared node at root index {}", i);
    // Borrowed: no reference and no nr_children count (the user root's on_drop only walks
    // its own 0..256 slice).
    uroot.store(i, raw);
  }
  return user;
}

Result<void, PageTableError> map_untracked_largest(CursorMut<KernelPtConfig>& cursor, Paddr pa,
                                                   std::uint64_t len, PageProperty prop) noexcept {
  std::uint64_t done = 0;
  while (done < len) {
    const Vaddr va = cursor.virt_addr();
    PagingLevel level = KernelPtConfig::kHighestTranslationLevel;
    while (level > 1 &&
           (!is_aligned(va, page_size<K>(level)) || !is_aligned(pa + done, page_size<K>(level)) ||
            page_size<K>(level) > len - done)) {
      --level;
    }
    auto r = cursor.map(KernelItem::untracked(pa + done, level, prop));
    if (!r) return r;
    done += page_size<K>(level);
  }
  return {};
}

namespace internal {

Result<void> init_kernel_page_table() {
  auto pt = new_kernel_page_table();
  if (!pt) return err(Error::NoMemory);
  {
    auto guard = disable_preempt();
    const VaRange linear{kLinearMappingBaseVaddr, kLinearMappingBaseVaddr + max_paddr()};
    auto cursor = pt->cursor_mut(guard, linear);
    if (!cursor) return err(to_vm_error(cursor.error()));
    const PageProperty prop =
        PageProperty::new_with(PageFlags::RW, CachePolicy::Writeback, PrivilegedPageFlags::GLOBAL);
    if (auto r = map_untracked_largest(*cursor, 0, max_paddr(), prop); !r) {
      logger().error("boot: building the linear mapping failed: {}", to_string(r.error()));
      return err(to_vm_error(r.error()));
    }
  }
  g_kernel_pt = new PageTable<KernelPtConfig>(std::move(*pt));
  // Every CPU starts on the kernel table (OSTD's activate_kernel_page_table at CPU bring-up).
  Machine& m = machine();
  for (std::uint32_t i = 0; i < m.config.num_cpus; ++i) {
    m.cpus[i].current_root.store(g_kernel_pt->root_paddr(), std::memory_order_release);
  }
  return {};
}

}  // namespace internal

const PageTable<KernelPtConfig>& kernel_page_table() {
  ensure_booted();
  return *g_kernel_pt;
}

}  // namespace vmspace
