// The concurrent cursor stress engine (library `vmspace_stress`, pkg-config `vmspace-stress`).
//
// N worker threads, each bound to its own emulated CPU, run random operations on one or several
// VmSpaces: they open Cursor/CursorMut guards over random ranges (disjoint, inside one leaf
// table, overlapping, spanning huge pages and top-level entries), map 4 KiB frames and 2 MiB
// segments, unmap, protect, query, find_next and jump inside them, activate spaces, and copy
// through fallible readers and writers while other threads unmap (faults are served by a handler
// that maps on demand inside designated regions and refuses elsewhere).
//
// What a run checks (every check can fail; the mutation tests in tests/stress prove it):
//   serializability  every cursor operation draws a ticket from one global counter while its
//                    cursor is held and records its arguments, its observed result (errors
//                    included) and the cursor position afterwards. At each quiescent point the
//                    records are replayed in ticket order on the abstract model (one
//                    check::AbstractModel per space, one check::ModelCursor per cursor); every
//                    observed result must be reproduced. Results the model does not determine
//                    (the range of an absent entry, how a detached sub-tree counts frames) are
//                    checked for consistency. Two cursors of different threads whose ranges
//                    overlap must never be open at once in ticket order, and a thread asking for
//                    a cursor overlapping one it holds must get WouldBlock or WouldDeadlock.
//   refinement       at each quiescent point the model of every space equals interpret() of its
//                    page table.
//   copies           each written 64-bit word encodes (writer thread, sequence number, word
//                    index); a word read back must be 0 (a fresh frame) or a word written to that
//                    address of that space by a write that started before the read ended and
//                    got that far. Every page a copy got through must have been accessible at
//                    some point of the copy's ticket window, and the page where a copy stopped
//                    must have been inaccessible at some point of it (a concurrent unmap or
//                    protect, or a fault the handler refused).
//   invariants       at quiescent points (all workers parked on a barrier every K operations or
//                    T ms): check_user_table for every space and check_page_table for the kernel
//                    table, check_frame_slots, check_refcount_law, check_tlb_coherence; the TLB
//                    check mode counts hits on freed frames (tlb_stale_hits() must stay 0); every
//                    unmap that removed frames handed frames to the TLB dispatcher.
//   leaks            after every space is dropped and rcu_barrier(), the allocator's free bytes
//                    are back to their value before the run.
//   deadlock         a watchdog reports the cursors every worker holds or waits for (thread,
//                    space, range, for how long) when no operation completes for a while, and
//                    fails the run.
// On a serializability mismatch the engine also searches for the shortest failing history: the
// records touching the mismatching address range, reduced by delta debugging (ddmin) on a fresh
// model whose initial mappings are part of the reduced history.
//
// Threads and CPUs: workers bind to free emulated CPUs (CpuBinding::bind_any), so the machine
// needs at least `threads` CPUs that no other thread holds; run() boots it with threads + 1 CPUs
// if it is not booted yet. Threads may outnumber host cores (node locks sleep).
//
// A run installs its own page-fault handler and TLB check mode for its duration and restores the
// previous ones afterwards. Do not run two engines at once in one process.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <vmspace/fault.hpp>
#include <vmspace/internal/mutation.hpp>
#include <vmspace/page_prop.hpp>
#include <vmspace/vm_space.hpp>

namespace vmspace::stress {

// Which ranges cursors are opened over (see stress_regions()).
//   Disjoint       every thread stays inside its own 8 MiB slot, in its own 1 GiB entry: cursors
//                  of different threads never share a page-table node below the root's child.
//   LeafContended  all threads work inside one leaf table (one 2 MiB entry), mostly on their own
//                  pages, sometimes over the whole leaf or the whole 2 MiB entry.
//   Overlapping    random ranges of every size over one shared 8 MiB region.
//   Mixed          all of the above plus a region that straddles a top-level (512 GiB) entry,
//                  nested cursor attempts and more copies and activations.
enum class Profile : std::uint8_t { Disjoint, LeafContended, Overlapping, Mixed };
// The profile's name: "disjoint", "leaf-contended", "overlapping" or "mixed".
const char* to_string(Profile p) noexcept;
// The profile called `name` (as to_string spells it), or nullopt if there is none.
std::optional<Profile> parse_profile(std::string_view name) noexcept;

// What the engine counts. Every kind but Fault draws tickets; Fault counts page-fault handler
// invocations (their maps are counted as Map).
enum class OpKind : std::uint8_t {
  Open,        // cursor creation (read-only or mutable)
  OpenNested,  // cursor creation while the thread holds a cursor in the same space
  // Cursor query.
  Query,
  // Cursor find_next.
  FindNext,
  // Cursor jump.
  Jump,
  Map,      // 4 KiB frame
  MapHuge,  // 2 MiB segment
  // Cursor unmap.
  Unmap,
  Protect,  // protect_next + TLB flush of the changed range
  Read,     // fallible copy from user memory
  Write,    // fallible copy into user memory
  // Activation or deactivation of a space on the worker's CPU.
  Activate,
  // Page-fault handler invocation (draws no ticket).
  Fault,
  Custom,  // StressOptions::custom_op invocations
};
// Number of OpKind values (the rows of StressReport::counts).
inline constexpr std::size_t kOpKinds = 14;
// The kind's name as reports print it.
const char* to_string(OpKind k) noexcept;

// Outcome columns of the counters: 0 = success, 1 + static_cast<int>(Error) otherwise.
inline constexpr std::size_t kOutcomes = 1 + 11;
// The outcome column for a result: 0 for success (nullopt), 1 + the error's value otherwise.
constexpr std::size_t outcome_index(std::optional<Error> e) noexcept {
  return e ? 1 + static_cast<std::size_t>(*e) : 0;
}

// Relative weights of what a worker does. Zero disables an action.
struct OpMix {
  // Top-level actions, chosen when the worker holds nothing.
  unsigned mut_session = 6;  // open a CursorMut and run operations in it
  unsigned ro_session = 2;   // open a Cursor and run query/find_next/jump in it
  // Fallible copy out of the active space.
  unsigned read = 1;
  // Fallible copy into the active space.
  unsigned write = 1;
  // Activate a random space (or none) on the worker's CPU.
  unsigned activate = 1;
  unsigned custom = 0;  // StressOptions::custom_op
  // Operations inside a session (read-only sessions use the first three).
  // Cursor query.
  unsigned query = 3;
  // Cursor find_next.
  unsigned find_next = 2;
  // Cursor jump inside the locked range.
  unsigned jump = 2;
  // Map a fresh 4 KiB frame.
  unsigned map = 6;
  // Map a fresh 2 MiB segment.
  unsigned map_huge = 1;
  // Unmap a random length.
  unsigned unmap = 4;
  // protect_next over a random length with a random ProtectChange.
  unsigned protect = 3;
  // Upper bound on the operations of one session (the count is drawn uniformly from 1 to this). Not
  // a weight.
  unsigned max_ops_per_session = 6;
  // Chance per session of a nested cursor attempt in the same space (must fail when it
  // overlaps), and chance per operation of deliberately bad arguments.
  double p_nested = 0.0;
  // Probability that an operation gets deliberately invalid arguments.
  double p_invalid = 0.02;
  // Chance that a session uses try_cursor/try_cursor_mut instead of blocking.
  double p_try = 0.05;
};
// The mix each profile uses unless StressOptions::mix overrides it.
OpMix default_mix(Profile p) noexcept;

// A named address range of every space that the profiles open cursors over.
struct Region {
  // Static name, e.g. "leaf" or "disjoint.3".
  const char* name;
  // The addresses, page-aligned.
  VaRange range;
};
// The address regions of every space for `threads` workers: "disjoint.<i>" slots, "leaf",
// "overlap" and "span" (straddling the first top-level entry boundary).
std::vector<Region> stress_regions(unsigned threads);
// The default fault handler's policy: an address is mapped on demand iff it lies in a region
// and in a 64 KiB chunk whose index is not 3 mod 4 (a quarter of every region refuses faults).
bool demand_mappable(Vaddr va, unsigned threads) noexcept;

// A protect_next operation the model can replay: flags = (flags & ~clear) | set, then the cache
// policy is replaced if one is given.
struct ProtectChange {
  // Flags to turn on.
  PageFlags set = PageFlags::None;
  // Flags to turn off (applied before `set`).
  PageFlags clear = PageFlags::None;
  // New cache policy, or nullopt to keep the current one.
  std::optional<CachePolicy> cache;

  // Applies the change to one property; both the real protect_next and the model's replay use it.
  void apply(PageFlags& flags, CachePolicy& cache_policy) const noexcept {
    flags = (flags & ~clear) | set;
    if (cache) cache_policy = *cache;
  }
};

namespace internal {
class Recorder;
class Worker;
}  // namespace internal

// A recorded cursor, valid inside StressContext::with_cursor's body. Every operation draws a
// ticket while the cursor is held and is replayed on the model at the next quiescent point.
class StressCursor {
 public:
  // Whether this is a CursorMut (map, unmap and protect are allowed).
  bool is_mut() const noexcept { return mut_ != nullptr; }
  // Index of the space the cursor is in.
  std::size_t space() const noexcept { return space_; }
  // The cursor's current address (not recorded).
  Vaddr virt_addr() const noexcept;
  // The locked range the cursor was opened over.
  VaRange range() const noexcept;

  // Recorded VmSpace::Cursor::query, with the same results and errors.
  Result<std::pair<VaRange, std::optional<VmQueriedItem>>> query();
  // Recorded VmSpace::Cursor::find_next, with the same results and errors.
  Result<std::optional<Vaddr>> find_next(std::size_t len);
  // Recorded VmSpace::Cursor::jump, with the same results and errors.
  Result<void> jump(Vaddr va);
  // Allocate a zeroed 4 KiB frame / 2 MiB segment and map it at virt_addr(). The frame goes
  // back to the allocator on error. Errors as VmSpace::CursorMut::map; NoMemory if the
  // allocation fails (not recorded); InvalidArgs on a read-only cursor (not recorded).
  Result<void> map_frame(PageProperty prop);
  // The 2 MiB form of map_frame (VmSpace::CursorMut::map_segment of a fresh zeroed segment), with
  // the same error rules.
  Result<void> map_huge(PageProperty prop);
  // Recorded VmSpace::CursorMut::unmap, with the same results and errors; InvalidArgs on a
  // read-only cursor (not recorded).
  Result<std::size_t> unmap(std::size_t len);
  // protect_next, then a TLB flush of the changed range dispatched before returning (so the
  // new permissions hold on every CPU once the operation is recorded).
  Result<std::optional<VaRange>> protect_next(std::size_t len, const ProtectChange& change);

 private:
  friend class internal::Recorder;
  StressCursor(internal::Recorder& rec, std::size_t space, std::uint64_t id, VmSpace::Cursor* ro,
               VmSpace::CursorMut* mut) noexcept
      : rec_(&rec), space_(space), id_(id), ro_(ro), mut_(mut) {}

  internal::Recorder* rec_;
  std::size_t space_;
  std::uint64_t id_;
  VmSpace::Cursor* ro_;
  VmSpace::CursorMut* mut_;
};

// Which cursor StressContext::with_cursor opens.
enum class CursorKind : std::uint8_t { ReadOnly, Mutable };
// Whether StressContext::with_cursor waits for the range lock (Block) or uses
// try_cursor/try_cursor_mut (Try).
enum class LockMode : std::uint8_t { Block, Try };

// What a worker (or a hook running on it) uses to act on the spaces with recording.
class StressContext {
 public:
  // The worker's index, 0 .. threads - 1.
  unsigned thread_index() const noexcept;
  // The emulated CPU the worker is bound to.
  CpuId cpu() const noexcept;
  // The worker's random generator, seeded from StressOptions::seed and the worker index.
  std::mt19937_64& rng() noexcept;
  // Number of spaces in the run.
  std::size_t num_spaces() const noexcept;
  // Space `i` of the run; precondition i < num_spaces(). Acting on it directly bypasses the
  // recording, so the replay will not know about it.
  VmSpace& space(std::size_t i) const noexcept;
  // The index of `s` among the run's spaces.
  std::optional<std::size_t> space_index(const VmSpace& s) const noexcept;
  // The space active on this worker's CPU.
  std::optional<std::size_t> active_space() const noexcept;
  // Activates space `i` on this CPU, or deactivates the current one (nullopt). Counted.
  Result<void> activate(std::optional<std::size_t> i);

  // Opens a recorded cursor over `range` of space `i` and runs `body` with it; the cursor is
  // dropped when `body` returns. Returns the creation error if the cursor could not be opened
  // (recorded too). A call made while this thread holds a cursor of the same space is a nested
  // attempt: it never blocks (see page_table.hpp) and must fail if the ranges overlap.
  Result<void> with_cursor(std::size_t i, VaRange range, CursorKind kind, LockMode mode,
                           const std::function<void(StressCursor&)>& body);

  // What a recorded copy achieved.
  struct CopyResult {
    // Bytes copied before the copy finished or stopped.
    std::size_t copied = 0;
    bool faulted = false;  // stopped early at an unresolved fault
  };
  // Recorded copies through the active space's fallible reader / writer. `va` and `len` must be
  // multiples of 8 and len at most 64 KiB. Errors: InvalidArgs (alignment, length), AccessDenied
  // (no active space, or the range leaves user space).
  Result<CopyResult> read(Vaddr va, std::size_t len);
  // The writing counterpart of read, with the same rules; it writes the checkable word pattern.
  Result<CopyResult> write(Vaddr va, std::size_t len);

 private:
  friend class internal::Worker;
  explicit StressContext(internal::Worker& w) noexcept : w_(&w) {}
  internal::Worker* w_;
};

// A page-fault hook: called on the faulting worker (no cursor held). Return success when the
// access should be retried. Map through ctx.with_cursor so the maps are recorded.
using FaultHook = std::function<Result<void>(StressContext& ctx, const PageFaultInfo& info)>;
// A user operation, chosen with weight OpMix::custom when the worker holds nothing.
using CustomOp = std::function<void(StressContext& ctx)>;

// How a report is printed: StressReport::to_text or StressReport::to_json.
enum class OutputFormat : std::uint8_t { Text, Json };

struct StressReport;

// What run() and run_forked() do. Out-of-range values are reported in StressReport::setup_error,
// and nothing runs then.
struct StressOptions {
  unsigned threads = 4;   // 1..255
  unsigned spaces = 2;    // 1..64
  double seconds = 5.0;   // run time, unless `ops` is set
  std::uint64_t ops = 0;  // stop after about this many operations instead (0: use seconds)
  // Seed of the workers' random generators.
  std::uint64_t seed = 1;
  // Which address ranges the workers use.
  Profile profile = Profile::Mixed;
  std::optional<OpMix> mix;  // default: default_mix(profile)

  // Quiescent checkpoints: every `checkpoint_ops` operations or `checkpoint_ms`, whichever
  // comes first, and once at the end.
  std::uint64_t checkpoint_ops = 200'000;
  // Milliseconds between checkpoints (see checkpoint_ops).
  double checkpoint_ms = 250;
  // Deadlock watchdog: no operation completing for this long fails the run.
  double watchdog_seconds = 10;
  // End the run at the first checkpoint that finds a violation.
  bool stop_on_violation = true;
  std::size_t max_violations = 20;  // descriptions kept (all are counted)
  double minimize_seconds = 10;     // time budget for the shortest-history search

  FaultHook fault_hook;  // empty: the default demand-paging handler
  // Chosen with weight OpMix::custom; empty disables it.
  CustomOp custom_op;

  // Deliberate faults (mutation builds only; run() refuses anything else in other builds).
  vmspace::internal::Mutation mutation = vmspace::internal::Mutation::None;
  // Physical memory when run() boots the machine itself.
  std::uint64_t phys_mem_bytes = std::uint64_t{1} << 30;
  // Called (from the watchdog thread) with the report of a deadlocked run; the process then
  // exits with status 3, because the workers are stuck inside the library. Default: print the
  // text report to stderr.
  std::function<void(const StressReport&)> on_deadlock;
};

// One failed check.
struct StressViolation {
  std::string kind;         // e.g. "serializability", "refinement", "copy", "invariant"
  std::string description;  // readable, with tickets, addresses and both results
};

// The shortest failing history found for the first serializability violation.
struct FailingHistory {
  std::string violation;             // what the last record got wrong
  std::vector<std::string> initial;  // mappings the replay starts with (fresh model)
  std::vector<std::string> records;  // the records, in ticket order; the last one fails
  std::size_t candidates = 0;        // records touching the range before reduction
  bool minimal = false;              // ddmin finished (1-minimal) within the time budget
};

// Everything a run measured and found; passed() is the verdict.
struct StressReport {
  // A report with no results yet that describes the run `options` configure (profile,
  // threads, spaces, seed, mutation): what run() and run_isolated() fill in.
  static StressReport configured(const StressOptions& options);

  // The configuration that ran.
  // The profile.
  Profile profile = Profile::Mixed;
  // Number of worker threads.
  unsigned threads = 0;
  // Number of spaces.
  unsigned spaces = 0;
  // The seed.
  std::uint64_t seed = 0;
  // The deliberate fault the run was built with (None normally).
  vmspace::internal::Mutation mutation = vmspace::internal::Mutation::None;

  // counts[kind][outcome_index(error)]
  std::array<std::array<std::uint64_t, kOutcomes>, kOpKinds> counts{};
  std::uint64_t total_ops = 0;  // sum of counts except Fault
  // Wall time of the run, in seconds.
  double seconds = 0;
  // total_ops / seconds.
  double ops_per_second = 0;
  // Quiescent checkpoints done (including the final one).
  std::uint64_t checkpoints = 0;
  double check_seconds = 0;  // time the workers spent parked for checkpoints (part of `seconds`)
  // Cursor records replayed on the model.
  std::uint64_t records_replayed = 0;
  // Copies whose data and stopping point were checked.
  std::uint64_t copies_checked = 0;
  // TLB hits on freed frames seen by the TLB check mode (must be 0).
  std::uint64_t tlb_stale_hits = 0;
  // TLB flush dispatches during the run (tlb_dispatch_stats() difference).
  std::uint64_t tlb_dispatches = 0;
  // Page faults the handler resolved.
  std::uint64_t faults_handled = 0;
  std::uint64_t faults_refused = 0;  // unresolved + refused by the library
  std::int64_t leaked_bytes = 0;     // free bytes before the run minus after

  std::vector<StressViolation> violations;  // the first max_violations
  // Violations found, including those not kept in `violations`.
  std::uint64_t violations_total = 0;
  // The shortest failing history, when a serializability violation was found and the search ran.
  std::optional<FailingHistory> history;
  // Set when the run could not start (bad options, machine too small); no checks ran.
  std::string setup_error;

  // The verdict: the run started and no check failed.
  bool passed() const noexcept { return setup_error.empty() && violations_total == 0; }
  std::uint64_t count(OpKind k) const noexcept;     // all outcomes
  std::uint64_t count_ok(OpKind k) const noexcept;  // successes
  // "PASS: 1234567 ops (map 123 unmap …) in 30.0 s, 41152 ops/s, 0 violations" (or FAIL/ERROR).
  std::string verdict() const;
  std::string to_text() const;  // ends with verdict()
  std::string to_json() const;  // one JSON object
};

// Runs the engine in this process and returns its report (the run's verdict is passed()).
// Boots the machine with threads + 1 CPUs if needed.
StressReport run(const StressOptions& options);

// Runs the engine in a forked child and returns its report; if the child dies (an abort in the
// library, a deadlock exit, a signal) the report carries a violation of kind "crash" with the
// tail of the child's output. Use it for runs that may corrupt the machine (mutations).
// Precondition: the machine is not booted in this process (the child must boot its own; emulated
// memory is a shared mapping), which is checked: otherwise setup_error is set. Not available
// under ThreadSanitizer (which cannot fork a threaded process): setup_error is set.
StressReport run_isolated(const StressOptions& options);

}  // namespace vmspace::stress
