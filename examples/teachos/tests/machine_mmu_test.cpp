// The machine (machine.hpp) and the MMU: X/R/W permissions and ACCESSED/DIRTY, self-modifying
// code, shootdowns seen within an instruction or two, atomics across harts, the interpreter's
// speed, and a cross-check against qemu-riscv64 on a cross-compiled program.
#include "machine_harness.hpp"

namespace {

// Changes the flags of the page at `va` and dispatches the TLB flush (a shootdown).
void protect_page(const vmspace::VmSpace& space, Vaddr va, PageFlags flags) {
  auto g = vmspace::disable_preempt();
  auto c = space.cursor_mut(g, {va, va + vmspace::kPageSize});
  REQUIRE(c.has_value());
  auto r = c->protect_next(vmspace::kPageSize, [&](PageFlags& f, vmspace::CachePolicy&) {
    f = (f & (PageFlags::ACCESSED | PageFlags::DIRTY)) | flags;
  });
  REQUIRE(r.has_value());
  REQUIRE(r->has_value());
  c->flusher().issue_tlb_flush(vmspace::TlbFlushOp::for_single(va));
  c->flusher().dispatch_tlb_flush();
}

std::optional<vmspace::PageProperty> pte_of(const vmspace::VmSpace& space, Vaddr va) {
  auto w = space.page_table().page_walk(va);
  if (!w) return std::nullopt;
  return w->second;
}

// CPU seconds used by the calling thread: on a loaded machine wall time says little.
double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// CPU seconds used by the waited-for children of this process.
double children_cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_CHILDREN, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

}  // namespace

TEST_SUITE("teachos") {
  TEST_CASE("machine_page_faults_and_accessed_dirty") {
    Machine m;
    // Fetch from a page without X.
    m.at<std::uint32_t>(m.nox_pa, 0) = kEcall;
    HartState st = regs({{kT0, kNoX}});
    Trap t = m.exec({jalr(0, kT0, 0)}, st);
    CHECK(t.cause == TrapCause::InstructionPageFault);
    CHECK(t.tval == kNoX);
    CHECK(st.pc == kNoX);  // the jump retired; the fetch at the target faulted
    // Store to a read-only page: StorePageFault with the address, nothing written.
    st = regs({{kA0, kRo + 0x18}, {kT0, 0xabc}});
    t = m.exec({store(kSd, kT0, kA0, 8)}, st);
    CHECK(t.cause == TrapCause::StorePageFault);
    CHECK(t.tval == kRo + 0x20);
    CHECK(st.pc == kCode);
    CHECK(m.at(m.ro_pa, 0x20) == 0);
    // An AMO on a read-only page needs W.
    st = regs({{kA0, kRo}});
    CHECK(m.exec({amo(kAdd, kW, kT0, kA0, kA0)}, st).cause == TrapCause::StorePageFault);
    // Loads from an unmapped page, and from the kernel half (an access fault).
    st = regs({{kA0, 0x50000}});
    t = m.exec({load(kLd, kT0, kA0, 0)}, st);
    CHECK(t.cause == TrapCause::LoadPageFault);
    CHECK(t.tval == 0x50000);
    st = regs({{kA0, 0xffff800000000000}});
    t = m.exec({load(kLd, kT0, kA0, 0)}, st);
    CHECK(t.cause == TrapCause::LoadAccessFault);
    // A fetch from an unmapped page.
    st = {};
    st.pc = 0x60000;
    CHECK(m.hart.run(st, 10).cause == TrapCause::InstructionPageFault);
    // ACCESSED after a load, DIRTY only after a store.
    const Vaddr fresh = kData + vmspace::kPageSize;
    CHECK_FALSE(vmspace::has(pte_of(*m.space, fresh)->flags, PageFlags::ACCESSED));
    st = regs({{kA0, fresh}});
    m.ok({load(kLd, kT0, kA0, 0)}, st);
    CHECK(vmspace::has(pte_of(*m.space, fresh)->flags, PageFlags::ACCESSED));
    CHECK_FALSE(vmspace::has(pte_of(*m.space, fresh)->flags, PageFlags::DIRTY));
    m.ok({store(kSw, kA0, kA0, 4)}, st);
    CHECK(vmspace::has(pte_of(*m.space, fresh)->flags, PageFlags::DIRTY));
    CHECK(vmspace::has(pte_of(*m.space, kCode)->flags, PageFlags::ACCESSED));
    CHECK_FALSE(vmspace::has(pte_of(*m.space, kCode)->flags, PageFlags::DIRTY));
  }

  TEST_CASE("machine_self_modifying_code_runs_the_new_instruction") {
    // The hart remembers decoded words; a store into its own (RWX) code page must still take
    // effect, including when the old word at the same pc was decoded before.
    Machine m;
    constexpr Vaddr kRwx = 0x70000;
    const Paddr rwx = map_frame(*m.space, kRwx, PageFlags::RWX);
    const std::uint32_t code[] = {store(kSw, kT1, kA0, 12), 0x0000100f /* fence.i */, jal(0, 4),
                                  addi(kA1, 0, 1), kEcall};
    std::memcpy(vmspace::paddr_to_vaddr(rwx), code, sizeof code);
    for (const std::int32_t value : {1, 42, -7}) {
      HartState st = regs({{kA0, kRwx}, {kT1, addi(kA1, 0, value)}});
      st.pc = kRwx;
      CHECK(m.hart.run(st, 100).cause == TrapCause::Ecall);
      CHECK(st.x[kA1] == static_cast<std::uint64_t>(static_cast<std::int64_t>(value)));
    }
  }

  TEST_CASE("machine_not_bound_to_a_cpu_is_an_instruction_access_fault") {
    Hart hart{nullptr};
    HartState st;
    st.pc = kCode;
    const Trap t = hart.run(st, 10);
    CHECK(t.cause == TrapCause::InstructionAccessFault);
    CHECK(t.tval == kCode);
  }

  TEST_CASE("machine_sees_a_shootdown_within_the_instructions_in_flight") {
    // A hart on CPU 1 stores an ever-growing counter to a data page in a loop. The test thread
    // removes W from that page and dispatches the flush (the shootdown reaches CPU 1's TLB),
    // then reads the counter. The hart checks the CPU's invalidation counter before every
    // instruction, so after the dispatch only stores already executed can still land — and
    // there can be a few dozen of those: the host CPU running the hart retires stores into its
    // store buffer and may check the counter for the next instructions before those stores
    // are visible to the test thread (a real IPI would wait for them; the emulated shootdown
    // does not ask the target). A hart that kept using its cached host pointer until the end
    // of its read section would land up to 2048 more (half its instructions are stores).
    // Then the same for X on the code page.
    if (vmspace::num_cpus() < 2) {
      MESSAGE("skipped: needs 2 emulated CPUs");
      return;
    }
    auto space = new_space();
    const Paddr code = map_frame(*space, kCode, PageFlags::RX);
    const Paddr data = map_frame(*space, kData, PageFlags::RW);
    const std::uint32_t loop[] = {
        addi(kT0, kT0, 1), store(kSd, kT0, kA0, 0), addi(kT0, kT0, 1), store(kSd, kT0, kA0, 0),
        addi(kT0, kT0, 1), store(kSd, kT0, kA0, 0), jal(0, -24)};
    std::memcpy(vmspace::paddr_to_vaddr(code), loop, sizeof loop);
    auto& counter = *reinterpret_cast<std::uint64_t*>(vmspace::paddr_to_vaddr(data));
    for (const bool remove_x : {false, true}) {
      std::atomic<bool> started{false};
      __atomic_store_n(&counter, 0, __ATOMIC_RELAXED);
      Trap trap;
      HartState st = regs({{kA0, kData}});
      st.pc = kCode;
      std::thread hart_thread([&] {
        OnCpu on(space, 1);
        Hart hart{nullptr};
        started.store(true);
        trap = hart.run(st, std::uint64_t{1} << 40);
      });
      while (!started.load() || __atomic_load_n(&counter, __ATOMIC_RELAXED) < 1000)
        std::this_thread::yield();
      protect_page(*space, remove_x ? kCode : kData, PageFlags::R);  // remove X, or W
      const std::uint64_t seen = __atomic_load_n(&counter, __ATOMIC_RELAXED);
      hart_thread.join();
      const std::uint64_t final_value = __atomic_load_n(&counter, __ATOMIC_RELAXED);
      CHECK(trap.cause == (remove_x ? TrapCause::InstructionPageFault : TrapCause::StorePageFault));
      // Stores land in order, so the counter grew by one per store that landed after `seen`.
      CHECK_MESSAGE(final_value - seen <= 128,
                    "stores after the shootdown: " << final_value - seen);
      protect_page(*space, kCode, PageFlags::RX);
      protect_page(*space, kData, PageFlags::RW);
    }
  }

  TEST_CASE("machine_amo_and_lr_sc_increments_from_many_harts_sum_exactly") {
    const std::uint32_t harts = std::min<std::uint32_t>(vmspace::num_cpus(), 4);
    if (harts < 2) {
      MESSAGE("skipped: needs 2 emulated CPUs");
      return;
    }
    constexpr std::uint64_t kIters = 100000;
    auto space = new_space();
    const Paddr code = map_frame(*space, kCode, PageFlags::RX);
    const Paddr data = map_frame(*space, kData, PageFlags::RW);
    // a0 = &amo_word, a2 = &lrsc_word, a1 = iterations.
    const std::uint32_t program[] = {
        addi(kT1, 0, 1),
        amo(kAdd, kW, 0, kA0, kT1, true, true),  // loop: amoadd.w.aqrl x0, t1, (a0)
        amo(kLr, kW, kT0, kA2, 0, true, false),  // retry: lr.w.aq t0, (a2)
        addi(kT0, kT0, 1),
        amo(kSc, kW, kT2, kA2, kT0, false, true),  // sc.w.rl t2, t0, (a2)
        bne(kT2, 0, -12),                          // to retry
        addi(kA1, kA1, -1),
        bne(kA1, 0, -24),  // to loop
        kEcall,
    };
    std::memcpy(vmspace::paddr_to_vaddr(code), program, sizeof program);
    std::vector<std::thread> threads;
    std::vector<Trap> traps(harts);
    for (std::uint32_t h = 0; h < harts; ++h) {
      threads.emplace_back([&, h] {
        OnCpu on(space, h);
        Hart hart{nullptr};
        HartState st = regs({{kA0, kData}, {kA1, kIters}, {kA2, kData + 64}});
        st.pc = kCode;
        // Small budgets so harts also preempt (and lose reservations) in the middle.
        do {
          traps[h] = hart.run(st, 977);
          st.clear_reservation();
        } while (traps[h].cause == TrapCause::None);
      });
    }
    for (auto& t : threads) t.join();
    for (const Trap& t : traps) CHECK(t.cause == TrapCause::Ecall);
    const auto* words = reinterpret_cast<const std::uint32_t*>(vmspace::paddr_to_vaddr(data));
    CHECK(words[0] == harts * kIters);
    CHECK(words[16] == harts * kIters);
  }

  TEST_CASE("machine_mips_on_a_compute_loop") {
    // Informational: a loop of adds, xors, shifts, a multiply, a load and a store per round.
    Machine m;
    HartState st = regs({{kA0, kData}, {kA1, 2'000'000}, {kT0, 0x12345}});
    m.write_code({op(0, 4, kT1, kT0, kA1),  // loop: t1 = t0 ^ a1
                  slli(kT2, kT1, 3), add(kT0, kT0, kT2), mop(0, kS0, kT0, kT1), srli(kS0, kS0, 7),
                  load(kLd, kS1, kA0, 0), add(kS1, kS1, kS0), store(kSd, kS1, kA0, 0),
                  addi(kA1, kA1, -1), bne(kA1, 0, -36), kEcall});
    st.pc = kCode;
    const auto t0 = std::chrono::steady_clock::now();
    const double cpu0 = thread_cpu_seconds();
    const std::uint64_t before = m.hart.counters().instret;
    const Trap t = m.hart.run(st, std::uint64_t{1} << 40);
    const double cpu = thread_cpu_seconds() - cpu0;
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    CHECK(t.cause == TrapCause::Ecall);
    const std::uint64_t n = m.hart.counters().instret - before;
    CHECK(n == 2'000'000 * 10);
    MESSAGE("compute loop: " << n << " instructions in " << secs << " s wall, " << cpu
                             << " s CPU = " << n / cpu / 1e6 << " MIPS (per CPU second)");
  }
}

// ---- cross-check with qemu-riscv64 on a cross-compiled program ----

namespace {

// A minimal ELF64 loader: maps every PT_LOAD page with the union of its segments' flags
// (R=4, W=2, X=1 in p_flags) and copies the file bytes. The kernel's elf.cpp is the real one.
struct LoadedElf {
  std::uint64_t entry = 0;
  bool ok = false;
  std::string why;
};

LoadedElf load_elf(const vmspace::VmSpace& space, const std::vector<char>& file) {
  LoadedElf out;
  auto rd = [&](std::size_t off, auto& v) {
    if (off + sizeof v > file.size()) return false;
    std::memcpy(&v, file.data() + off, sizeof v);
    return true;
  };
  std::uint16_t machine = 0, phnum = 0, phentsize = 0;
  std::uint64_t phoff = 0;
  if (file.size() < 64 || std::memcmp(file.data(),
                                      "\x7f"
                                      "ELF\x02\x01",
                                      6) != 0) {
    out.why = "not an ELF64 little-endian file";
    return out;
  }
  rd(18, machine);
  rd(24, out.entry);
  rd(32, phoff);
  rd(54, phentsize);
  rd(56, phnum);
  if (machine != 243) {
    out.why = "not RISC-V";
    return out;
  }
  std::map<Vaddr, PageFlags> pages;
  struct Seg {
    std::uint64_t off, va, filesz;
  };
  std::vector<Seg> segs;
  for (std::uint16_t i = 0; i < phnum; ++i) {
    const std::size_t ph = phoff + std::size_t{i} * phentsize;
    std::uint32_t type = 0, flags = 0;
    std::uint64_t off = 0, va = 0, filesz = 0, memsz = 0;
    if (!rd(ph, type) || !rd(ph + 4, flags) || !rd(ph + 8, off) || !rd(ph + 16, va) ||
        !rd(ph + 32, filesz) || !rd(ph + 40, memsz)) {
      out.why = "truncated program header";
      return out;
    }
    if (type != 1 || memsz == 0) continue;
    PageFlags f = PageFlags::None;
    if (flags & 4) f = f | PageFlags::R;
    if (flags & 2) f = f | PageFlags::W;
    if (flags & 1) f = f | PageFlags::X;
    for (Vaddr p = vmspace::align_down(va, vmspace::kPageSize); p < va + memsz;
         p += vmspace::kPageSize) {
      pages[p] = pages.count(p) ? pages[p] | f : f;
    }
    segs.push_back({off, va, filesz});
  }
  std::map<Vaddr, Paddr> frames;
  for (auto [va, f] : pages) frames[va] = map_frame(space, va, f);
  for (const Seg& s : segs) {
    for (std::uint64_t i = 0; i < s.filesz; ++i) {
      const Vaddr va = s.va + i;
      *(vmspace::paddr_to_vaddr(frames[vmspace::align_down(va, vmspace::kPageSize)]) +
        (va & (vmspace::kPageSize - 1))) = static_cast<std::byte>(file.at(s.off + i));
    }
  }
  out.ok = true;
  return out;
}

// Runs `cmd`, returns its stdout and exit status (or nullopt if it could not be run).
std::optional<std::pair<std::string, int>> run_host(const std::string& cmd) {
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return std::nullopt;
  std::string out;
  char buf[256];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int status = pclose(p);
  if (status == -1 || !WIFEXITED(status)) return std::nullopt;
  return std::make_pair(out, WEXITSTATUS(status));
}

}  // namespace

TEST_SUITE("teachos") {
  TEST_CASE("machine_agrees_with_qemu_on_a_cross_compiled_program") {
    const std::string elf_path = TEACHOS_CHECKSUM_ELF;
    if (elf_path.empty()) {
      MESSAGE("skipped: riscv64-linux-gnu-gcc was not found when the build was configured");
      return;
    }
    const std::string qemu = TEACHOS_QEMU;
    auto probe = qemu.empty() ? std::nullopt : run_host(qemu + " --version 2>/dev/null");
    if (!probe || probe->second != 0) {
      MESSAGE("skipped: qemu-riscv64 is missing or does not run");
      return;
    }
    std::ifstream in(elf_path, std::ios::binary);
    REQUIRE_MESSAGE(in.good(), "cannot open " << elf_path);
    const std::vector<char> file((std::istreambuf_iterator<char>(in)),
                                 std::istreambuf_iterator<char>());

    const double q0 = children_cpu_seconds();
    auto reference = run_host(qemu + " " + elf_path);
    const double qemu_cpu = children_cpu_seconds() - q0;
    REQUIRE(reference.has_value());

    auto space = new_space();
    const LoadedElf elf = load_elf(*space, file);
    REQUIRE_MESSAGE(elf.ok, elf.why);
    constexpr Vaddr kStackTop = 0x3ffffff000;
    for (Vaddr p = kStackTop - 4 * vmspace::kPageSize; p < kStackTop; p += vmspace::kPageSize) {
      map_frame(*space, p, PageFlags::RW);
    }
    OnCpu on(space, 0);
    Hart hart{[] { return std::uint64_t{0}; }};
    HartState st;
    st.pc = elf.entry;
    st.x[kSp] = kStackTop - 64;  // argc = 0 (zeroed frame), argv/envp empty
    std::string out;
    int status = -1;
    const double cpu0 = thread_cpu_seconds();
    for (;;) {
      const Trap t = hart.run(st, 100'000);
      if (t.cause == TrapCause::None) continue;
      REQUIRE_MESSAGE(t.cause == TrapCause::Ecall, trap_cause_name(t.cause)
                                                       << " at pc " << std::hex << st.pc << " tval "
                                                       << t.tval);
      const std::uint64_t nr = st.x[kA7];
      if (nr == 64) {  // write(fd, buf, len): the buffer is on the stack page we mapped
        auto g = vmspace::disable_preempt();
        for (std::uint64_t i = 0; i < st.x[kA2]; ++i) {
          const Vaddr va = st.x[kA1] + i;
          auto pa = vmspace::mmu_translate(g, va, vmspace::PageFaultAccess::Read);
          REQUIRE(pa.has_value());
          out.push_back(static_cast<char>(*vmspace::paddr_to_vaddr(*pa)));
        }
        st.x[kA0] = st.x[kA2];
      } else if (nr == 93 || nr == 94) {
        status = static_cast<int>(st.x[kA0] & 0xff);
        break;
      } else {
        st.x[kA0] = static_cast<std::uint64_t>(-38);  // ENOSYS
      }
      st.pc += 4;
    }
    const double cpu = thread_cpu_seconds() - cpu0;
    CHECK(out == reference->first);
    CHECK(status == reference->second);
    const std::uint64_t n = hart.counters().instret;
    MESSAGE("checksum program: " << n << " instructions in " << cpu << " s CPU = " << n / cpu / 1e6
                                 << " MIPS; qemu-riscv64 (including its start-up) " << qemu_cpu
                                 << " s CPU; ratio " << cpu / qemu_cpu);
  }
}
