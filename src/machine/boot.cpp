// Booting the emulated machine (boot.hpp): physical memory as a memfd mapping, the MetaSlot
// array (one per 4 KiB frame, all UNUSED), per-frame generation counters, the per-CPU state,
// the built-in buddy allocator and the kernel page table; default sizes from the environment
// (VMSPACE_PHYS_MEM, VMSPACE_CPUS); and the fork handlers that give a child its own copy.
#include <vmspace/boot.hpp>

#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string_view>

#include <vmspace/frame_allocator.hpp>
#include <vmspace/log.hpp>
#include <vmspace/meta.hpp>

#include "machine/machine.hpp"

namespace vmspace {

namespace internal {
std::byte* g_phys_base = nullptr;
MetaSlot* g_meta_base = nullptr;
Paddr g_max_paddr = 0;
std::uint32_t* g_frame_generation = nullptr;
std::atomic<GlobalFrameAllocator*> g_allocator{nullptr};
#ifdef VMSPACE_HANDLE_LEDGER
std::int64_t* g_handle_ledger = nullptr;
#endif
}  // namespace internal

namespace {

constexpr std::uint64_t kMinPhysMem = BootConfig::kMinPhysMemBytes;
// The bound's reason (eager metadata initialisation) is with BootConfig::kMaxPhysMemBytes.
constexpr std::uint64_t kMaxPhysMem = BootConfig::kMaxPhysMemBytes;

std::mutex g_boot_mutex;
std::atomic<bool> g_booted{false};
// Set on the booting thread while boot builds the machine: the allocator and the page tables
// call ensure_booted(), which must not re-enter boot on that thread.
thread_local bool t_booting = false;

// The metadata of permanently reserved frames (frame 0). Never dropped.
struct ReservedMemoryMeta {
  static constexpr const char* kTypeName = "ReservedMemoryMeta";
};

Result<std::uint64_t> parse_size(std::string_view s) {
  if (s.empty()) return err(Error::InvalidArgs);
  std::uint64_t mult = 1;
  switch (s.back()) {
    case 'K':
    case 'k':
      mult = std::uint64_t{1} << 10;
      break;
    case 'M':
    case 'm':
      mult = std::uint64_t{1} << 20;
      break;
    case 'G':
    case 'g':
      mult = std::uint64_t{1} << 30;
      break;
    case 'T':
    case 't':
      mult = std::uint64_t{1} << 40;
      break;
    default:
      break;
  }
  if (mult != 1) s.remove_suffix(1);
  if (s.empty()) return err(Error::InvalidArgs);
  std::uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return err(Error::InvalidArgs);
    auto next = checked_mul(v, 10);
    if (!next) return err(Error::Overflow);
    auto sum = checked_add(*next, static_cast<std::uint64_t>(c - '0'));
    if (!sum) return err(Error::Overflow);
    v = *sum;
  }
  auto r = checked_mul(v, mult);
  if (!r) return err(Error::Overflow);
  return *r;
}

// A forked child is a separate process and must get its own machine: the metadata and every
// other structure are private copies, but physical memory is a MAP_SHARED memfd, so without this
// the child's page-table and data writes would land in the parent's machine. Remap it private
// (copy-on-write) in the child.
void remap_physical_memory_private_in_child() {
  const internal::Machine& m = internal::g_machine;
  if (m.phys == nullptr) return;
  void* p = mmap(m.phys, m.phys_bytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_FIXED | MAP_NORESERVE, m.memfd, 0);
  if (p == MAP_FAILED) std::abort();  // no logging: the child may hold a logger lock from fork
}

Result<void> validate(const BootConfig& c) {
  if (c.phys_mem_bytes < kMinPhysMem || c.phys_mem_bytes > kMaxPhysMem ||
      !is_aligned(c.phys_mem_bytes, kPageSize)) {
    logger().error(
        "boot: physical memory size {:#x} must be a multiple of 4 KiB in [{} MiB, {} GiB]",
        c.phys_mem_bytes, kMinPhysMem >> 20, kMaxPhysMem >> 30);
    return err(Error::InvalidArgs);
  }
  if (c.num_cpus == 0 || c.num_cpus > BootConfig::kMaxCpus) {
    logger().error("boot: CPU count {} must be in [1, {}]", c.num_cpus, BootConfig::kMaxCpus);
    return err(Error::InvalidArgs);
  }
  return {};
}

void* map_anonymous(std::size_t bytes) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

// Builds the machine into g_machine. On failure releases what it created.
Result<void> build_machine(const BootConfig& config) {
  internal::Machine& m = internal::g_machine;
  const std::uint64_t nframes = config.phys_mem_bytes / kPageSize;

  m.memfd = memfd_create("vmspace-physical-memory", MFD_CLOEXEC);
  if (m.memfd < 0) {
    logger().error("boot: memfd_create failed: {}", std::strerror(errno));
    return err(Error::NoMemory);
  }
  if (ftruncate(m.memfd, static_cast<off_t>(config.phys_mem_bytes)) != 0) {
    logger().error("boot: ftruncate({:#x}) failed: {}", config.phys_mem_bytes,
                   std::strerror(errno));
    close(m.memfd);
    return err(Error::NoMemory);
  }
  void* phys = mmap(nullptr, config.phys_mem_bytes, PROT_READ | PROT_WRITE,
                    MAP_SHARED | MAP_NORESERVE, m.memfd, 0);
  if (phys == MAP_FAILED) {
    logger().error("boot: mapping physical memory failed: {}", std::strerror(errno));
    close(m.memfd);
    return err(Error::NoMemory);
  }
  m.meta_bytes = nframes * sizeof(MetaSlot);
  void* meta = map_anonymous(m.meta_bytes);
  void* gens = map_anonymous(nframes * sizeof(std::uint32_t));
  if (meta == nullptr || gens == nullptr) {
    logger().error("boot: reserving frame metadata failed: {}", std::strerror(errno));
    if (meta) munmap(meta, m.meta_bytes);
    if (gens) munmap(gens, nframes * sizeof(std::uint32_t));
    munmap(phys, config.phys_mem_bytes);
    close(m.memfd);
    return err(Error::NoMemory);
  }
  m.config = config;
  m.phys = static_cast<std::byte*>(phys);
  m.phys_bytes = config.phys_mem_bytes;
  m.meta = static_cast<MetaSlot*>(meta);
  m.generations = static_cast<std::uint32_t*>(gens);
  for (std::uint64_t i = 0; i < nframes; ++i) {
    m.meta[i].ref_count = kRefCountUnused;
    m.meta[i].vtable = nullptr;
    m.meta[i].in_list = 0;
  }
  m.cpus = std::make_unique<internal::PerCpu[]>(config.num_cpus);
#ifdef VMSPACE_HANDLE_LEDGER
  internal::g_handle_ledger =
      static_cast<std::int64_t*>(map_anonymous(nframes * sizeof(std::int64_t)));
  VMS_ASSERT(internal::g_handle_ledger != nullptr, "cannot reserve the handle ledger");
#endif

  // RCU first: its prepare waits for a running reclaim batch, whose callbacks free frames and
  // so need the allocator locks that the allocator's prepare takes next.
  static const int atfork = pthread_atfork(
      [] {
        internal::rcu_fork_prepare();
        internal::allocator_fork_prepare();
      },
      [] {
        internal::allocator_fork_release();
        internal::rcu_fork_release();
      },
      [] {
        internal::allocator_fork_release();
        internal::rcu_fork_release();
        internal::rcu_fork_child();
        remap_physical_memory_private_in_child();
      });
  (void)atfork;
  internal::g_phys_base = m.phys;
  internal::g_meta_base = m.meta;
  internal::g_max_paddr = config.phys_mem_bytes;
  internal::g_frame_generation = m.generations;

  // Frame 0 is reserved forever: a zero paddr never names a live frame.
  // (Written directly: the public slot helpers would try to boot the machine again.)
  ::new (m.meta[0].meta_ptr()) ReservedMemoryMeta();
  m.meta[0].vtable = meta_vtable<ReservedMemoryMeta>();
  m.meta[0].ref_count = 1;

  // The built-in allocator always exists (so set_global_frame_allocator(nullptr) can restore it).
  m.builtin_allocator = new BuddyFrameAllocator(config.num_cpus);
  GlobalFrameAllocator* alloc =
      config.frame_allocator != nullptr ? config.frame_allocator : m.builtin_allocator;
  alloc->add_free_memory(kPageSize, config.phys_mem_bytes - kPageSize);
  internal::g_allocator.store(alloc, std::memory_order_release);
  return internal::init_kernel_page_table();
}

}  // namespace

namespace internal {
Machine g_machine;
bool machine_ready() noexcept { return g_booted.load(std::memory_order_relaxed) || t_booting; }
}  // namespace internal

Result<BootConfig> default_boot_config() {
  BootConfig c;
  if (const char* env = std::getenv("VMSPACE_PHYS_MEM"); env != nullptr && *env != '\0') {
    auto bytes = parse_size(env);
    if (!bytes) {
      logger().error("VMSPACE_PHYS_MEM='{}' is not a size (e.g. 1073741824, 512M, 2G)", env);
      return err(Error::InvalidArgs);
    }
    c.phys_mem_bytes = *bytes;
  }
  if (const char* env = std::getenv("VMSPACE_CPUS"); env != nullptr && *env != '\0') {
    auto n = parse_size(env);
    if (!n || *n == 0 || *n > BootConfig::kMaxCpus) {
      logger().error("VMSPACE_CPUS='{}' is not a CPU count in [1, {}]", env, BootConfig::kMaxCpus);
      return err(Error::InvalidArgs);
    }
    c.num_cpus = static_cast<std::uint32_t>(*n);
  }
  return c;
}

Result<void> boot(const BootConfig& config) {
  std::lock_guard<std::mutex> lock(g_boot_mutex);
  if (g_booted.load(std::memory_order_acquire)) {
    if (internal::g_machine.config == config) return {};
    logger().error("boot: the machine is already booted with a different configuration");
    return err(Error::InvalidArgs);
  }
  VMS_TRY_VOID(validate(config));
  t_booting = true;
  auto built = build_machine(config);
  t_booting = false;
  VMS_TRY_VOID(built);
  g_booted.store(true, std::memory_order_release);
  logger().debug("booted: {} MiB physical memory, {} CPUs", config.phys_mem_bytes >> 20,
                 config.num_cpus);
  return {};
}

bool is_booted() noexcept { return g_booted.load(std::memory_order_acquire); }

void ensure_booted() {
  if (__builtin_expect(g_booted.load(std::memory_order_acquire), 1) || t_booting) return;
  auto config = default_boot_config();
  if (!config) VMS_PANIC("cannot boot with defaults: the environment holds a malformed override");
  auto r = boot(*config);
  if (!r) VMS_PANIC("booting with defaults failed: {}", to_string(r.error()));
}

const BootConfig& boot_config() {
  ensure_booted();
  return internal::g_machine.config;
}

}  // namespace vmspace
