// The registry of claimed device-memory ranges behind IoMem::acquire (io_mem.hpp): a claim
// lives as long as the last IoMem handle sharing it.
#include <vmspace/boot.hpp>
#include <vmspace/io_mem.hpp>
#include <vmspace/mutex.hpp>

#include <iterator>
#include <map>
#include <memory>

namespace vmspace {

namespace {

Mutex g_iomem_lock;
std::map<Paddr, Paddr> g_iomem_claims VMS_GUARDED_BY(g_iomem_lock);  // start -> end

}  // namespace

struct IoMem::Claim {
  PaRange range;
  ~Claim() {
    LockGuard<Mutex> g(g_iomem_lock);
    g_iomem_claims.erase(range.start);
  }
};

Result<IoMem> IoMem::acquire(PaRange range) {
  if (range.empty() || !is_aligned(range.start, kPageSize) || !is_aligned(range.end, kPageSize)) {
    return err(Error::InvalidArgs);
  }
  ensure_booted();
  if (range.start < max_paddr()) return err(Error::AccessDenied);
  {
    LockGuard<Mutex> g(g_iomem_lock);
    auto next = g_iomem_claims.lower_bound(range.end);
    if (next != g_iomem_claims.begin()) {
      auto prev = std::prev(next);
      if (prev->second > range.start) return err(Error::AccessDenied);
    }
    g_iomem_claims.emplace(range.start, range.end);
  }
  // Created in place and outside the lock: a Claim's destructor ends the claim and takes the
  // lock, so no temporary Claim may ever be destroyed (make_shared<Claim>(Claim{range}) did
  // both: it deadlocked on the lock held here).
  return IoMem(std::shared_ptr<Claim>(new Claim{range}), range);
}

}  // namespace vmspace
