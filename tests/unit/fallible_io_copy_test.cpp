// Fallible I/O (fallible_io_util.hpp): OSTD's fallible io scenarios on user memory, rollback of
// typed accesses, atomics, and copies between two user buffers.
#include "fallible_io_util.hpp"

TEST_SUITE("unit") {
  // ---- OSTD's fallible io scenarios, on user memory ----

  TEST_CASE_TEMPLATE("fallible_read_write", B, PreMapped, DemandFaulted) {
    UserMemory<B> mem;
    const VmSpace& s = mem.space();
    mem.add_standard_layout();
    auto w = s.writer(P(0) + 8, 8);
    REQUIRE(w.has_value());
    CHECK(w->has_avail());
    REQUIRE(w->write_val<std::uint64_t>(0xaabb'ccdd'eeff'0011ULL).has_value());
    CHECK_FALSE(w->has_avail());
    auto r = s.reader(P(0) + 8, 8);
    REQUIRE(r.has_value());
    CHECK(r->has_remain());
    CHECK(r->read_val<std::uint64_t>().value() == 0xaabb'ccdd'eeff'0011ULL);
    CHECK_FALSE(r->has_remain());
    if constexpr (!B::kDemand) CHECK(mem.handler_calls() == 0);
    if constexpr (B::kDemand) CHECK(mem.pager().maps.load() == 1);
  }

  TEST_CASE_TEMPLATE("partial_read_fallible", B, PreMapped, DemandFaulted) {
    UserMemory<B> mem;
    const VmSpace& s = mem.space();
    mem.add_standard_layout();
    const std::array<std::uint8_t, 5> data = {10, 20, 30, 40, 50};
    {
      auto w = s.writer(P(3), 5);
      VmReader<Infallible> src{std::as_bytes(std::span(data))};
      REQUIRE(w->write_fallible(src).value() == 5);
    }
    auto r = s.reader(P(3), 5);
    REQUIRE(r.has_value());
    r->limit(3);
    CHECK(r->remain() == 3);
    std::array<std::uint8_t, 5> out{};
    VmWriter<Infallible> kw{std::as_writable_bytes(std::span(out))};
    VmWriter<Fallible> fw = kw.to_fallible();
    auto n = r->read_fallible(fw);
    REQUIRE(n.has_value());
    CHECK(*n == 3);
    CHECK(out == std::array<std::uint8_t, 5>{10, 20, 30, 0, 0});
    CHECK(fw.avail() == 2);
  }

  TEST_CASE_TEMPLATE("partial_write_fallible", B, PreMapped, DemandFaulted) {
    UserMemory<B> mem;
    const VmSpace& s = mem.space();
    mem.add_standard_layout();
    auto w = s.writer(P(8), 5);
    REQUIRE(w.has_value());
    w->limit(3);
    CHECK(w->avail() == 3);
    const std::array<std::uint8_t, 5> data = {10, 20, 30, 40, 50};
    VmReader<Infallible> src{std::as_bytes(std::span(data))};
    auto n = w->write_fallible(src);
    REQUIRE(n.has_value());
    CHECK(*n == 3);
    CHECK(src.remain() == 2);
    auto back = read_user(s, P(8), 5);
    CHECK(back == std::vector<std::byte>{std::byte{10}, std::byte{20}, std::byte{30}, std::byte{0},
                                         std::byte{0}});
  }

  TEST_CASE_TEMPLATE("read_write_val_fallible", B, PreMapped, DemandFaulted) {
    UserMemory<B> mem;
    const VmSpace& s = mem.space();
    mem.add_standard_layout();
    // Unaligned and across the P0/P1 page boundary.
    const Vaddr va = P(1) - 3;
    REQUIRE(write_u64(s, va, 0xaabb'ccdd'eeff'0011ULL).has_value());
    CHECK(user_u64(s, va) == 0xaabb'ccdd'eeff'0011ULL);
    struct Pod {
      std::uint32_t a;
      std::uint64_t b;
    };
    auto w = s.writer(P(3) + 100, sizeof(Pod));
    REQUIRE(w->write_val(Pod{0x1234'5678, 0xabcd'ef01'2345'6789ULL}).has_value());
    auto r = s.reader(P(3) + 100, sizeof(Pod));
    auto p = r->read_val<Pod>();
    REQUIRE(p.has_value());
    CHECK(p->a == 0x1234'5678u);
    CHECK(p->b == 0xabcd'ef01'2345'6789ULL);
  }

  TEST_CASE_TEMPLATE("atomic_load_fallible", B, PreMapped, DemandFaulted) {
    UserMemory<B> mem;
    const VmSpace& s = mem.space();
    mem.add_standard_layout();
    const std::array<std::uint8_t, 8> data = {1, 1, 1, 1, 2, 2, 2, 2};
    {
      auto w = s.writer(P(8), 8);
      VmReader<Infallible> src{std::as_bytes(std::span(data))};
      REQUIRE(w->write_fallible(src).value() == 8);
    }
    auto r = s.reader(P(8), 8);
    REQUIRE(r.has_value());
    CHECK(r->atomic_load<std::uint32_t>().value() == 0x0101'0101u);
    CHECK(r->cursor() == P(8));  // an atomic load never moves the cursor
    REQUIRE(r->skip(4).has_value());
    CHECK(r->atomic_load<std::uint32_t>().value() == 0x0202'0202u);
    REQUIRE(r->skip(4).has_value());
    CHECK(error_of(r->atomic_load<std::uint32_t>()) == Error::InvalidArgs);  // nothing left
  }

  TEST_CASE_TEMPLATE("atomic_compare_exchange_fallible", B, PreMapped, DemandFaulted) {
    UserMemory<B> mem;
    const VmSpace& s = mem.space();
    mem.add_standard_layout();
    auto rw = s.reader_writer(P(9), kPageSize);  // a zeroed page
    REQUIRE(rw.has_value());
    auto& [r, w] = *rw;
    using P32 = std::pair<std::uint32_t, bool>;
    CHECK(w.atomic_compare_exchange<std::uint32_t>(r, 0, 100).value() == P32{0, true});
    CHECK(w.atomic_compare_exchange<std::uint32_t>(r, 100, 200).value() == P32{100, true});
    CHECK(w.atomic_compare_exchange<std::uint32_t>(r, 300, 400).value() == P32{200, false});
    CHECK(w.atomic_compare_exchange<std::uint32_t>(r, 200, 300).value() == P32{200, true});
    CHECK(w.atomic_compare_exchange<std::uint32_t>(r, 200, 400).value() == P32{300, false});
    CHECK(r.atomic_load<std::uint32_t>().value() == 300u);
    CHECK(r.cursor() == P(9));
    CHECK(w.cursor() == P(9));
    CHECK(r.read_val<std::uint32_t>().value() == 300u);
  }

  TEST_CASE_TEMPLATE("fill_zeros_fallible", B, PreMapped, DemandFaulted) {
    UserMemory<B> mem;
    const VmSpace& s = mem.space();
    mem.add_standard_layout();
    {
      const std::array<std::uint8_t, 8> ones = {1, 1, 1, 1, 1, 1, 1, 1};
      auto w = s.writer(P(3), 8);
      VmReader<Infallible> src{std::as_bytes(std::span(ones))};
      REQUIRE(w->write_fallible(src).value() == 8);
    }
    auto w = s.writer(P(3), 8);
    REQUIRE(w.has_value());
    CHECK(w->fill_zeros(8).value() == 8);
    CHECK_FALSE(w->has_avail());
    CHECK(read_user(s, P(3), 8) == std::vector<std::byte>(8, std::byte{0}));
    CHECK(read_user(s, P(3) + 8, 1)[0] == std::byte{pattern_byte(P(3) + 8)});
    // More than available: clamped.
    auto w2 = s.writer(P(3) + 16, 4);
    CHECK(w2->fill_zeros(100).value() == 4);
    // Into the hole: a partial count.
    auto w3 = s.writer(P(1) + kP - 10, 20);
    auto res = w3->fill_zeros(20);
    REQUIRE_FALSE(res.has_value());
    CHECK(res.error().error == Error::PageFault);
    CHECK(res.error().copied == 10);
    CHECK(w3->avail() == 10);
    CHECK(read_user(s, P(1) + kP - 10, 10) == std::vector<std::byte>(10, std::byte{0}));
  }

  TEST_CASE_TEMPLATE("invalid_args_read_write_fallible", B, PreMapped, DemandFaulted) {
    UserMemory<B> mem;
    const VmSpace& s = mem.space();
    mem.add_standard_layout();
    auto w = s.writer(P(0), 3);
    REQUIRE(w.has_value());
    CHECK(error_of(w->write_val<std::uint32_t>(0xdeadbeef)) == Error::InvalidArgs);
    CHECK(w->avail() == 3);
    auto r = s.reader(P(0), 3);
    REQUIRE(r.has_value());
    CHECK(error_of(r->read_val<std::uint32_t>()) == Error::InvalidArgs);
    CHECK(r->remain() == 3);
    CHECK(error_of(r->skip(4)) == Error::InvalidArgs);
    CHECK(error_of(w->skip(4)) == Error::InvalidArgs);
    // Misaligned atomics and mismatched cursors are argument errors too.
    auto rw = s.reader_writer(P(0) + 2, 8);
    REQUIRE(rw.has_value());
    CHECK(error_of(rw->first.atomic_load<std::uint32_t>()) == Error::InvalidArgs);
    CHECK(error_of(rw->second.atomic_compare_exchange<std::uint32_t>(rw->first, 0, 1)) ==
          Error::InvalidArgs);
    auto r2 = s.reader(P(0) + 4, 4);
    auto w2 = s.writer(P(0), 8);
    CHECK(error_of(w2->atomic_compare_exchange<std::uint32_t>(*r2, 0, 1)) == Error::InvalidArgs);
    CHECK(mem.handler_calls() == 0);  // never got as far as touching memory
  }

  // ---- typed accesses roll back on a fault ----

  TEST_CASE_TEMPLATE("read_val_rolls_back_on_fault_and_retries_after_mapping", B, PreMapped,
                     DemandFaulted) {
    UserMemory<B> mem;
    const VmSpace& s = mem.space();
    mem.add_standard_layout();
    const Vaddr va = P(2) - 4;  // the last 4 bytes of P1, then the hole
    auto r = s.reader(va, 16);
    REQUIRE(r.has_value());
    CHECK(error_of(r->read_val<std::uint64_t>()) == Error::PageFault);
    CHECK(r->cursor() == va);
    CHECK(r->remain() == 16);
    mem.add({P(2), P(3)}, kUserRw);  // the hole becomes memory
    CHECK(r->read_val<std::uint64_t>().value() == pattern_u64(va));
    CHECK(r->cursor() == va + 8);
  }

  TEST_CASE_TEMPLATE("write_val_rolls_back_on_fault", B, PreMapped, DemandFaulted) {
    UserMemory<B> mem;
    const VmSpace& s = mem.space();
    mem.add_standard_layout();
    const Vaddr va = P(4) - 4;  // the last 4 bytes of P3, then the read-only P4
    auto w = s.writer(va, 16);
    REQUIRE(w.has_value());
    CHECK(error_of(w->write_val<std::uint64_t>(~std::uint64_t{0})) == Error::PageFault);
    CHECK(w->cursor() == va);
    CHECK(w->avail() == 16);
    CHECK(user_u64(s, P(4)) == pattern_u64(P(4)));  // the read-only page is intact
    REQUIRE(w->skip(8).has_value());
    CHECK(error_of(w->write_val<std::uint32_t>(1)) == Error::PageFault);
    CHECK(w->cursor() == va + 8);
  }

  // ---- atomics fault and resolve ----

  TEST_CASE_TEMPLATE("atomics_fault_and_resolve", B, PreMapped, DemandFaulted) {
    UserMemory<B> mem;
    const VmSpace& s = mem.space();
    mem.add_standard_layout();
    const auto calls = mem.handler_calls();
    auto r = s.reader(P(3) + 8, 4);
    CHECK(r->atomic_load<std::uint32_t>().value() ==
          static_cast<std::uint32_t>(pattern_u64(P(3) + 8)));
    if constexpr (B::kDemand) {
      CHECK(mem.handler_calls() == calls + 1);
    } else {
      CHECK(mem.handler_calls() == calls);
    }
    // A CAS on the read-only page faults (for writing) and is refused; the value stays.
    auto ro = s.reader_writer(P(4), 4);
    CHECK(error_of(ro->second.atomic_compare_exchange<std::uint32_t>(ro->first, 0, 1)) ==
          Error::PageFault);
    CHECK(ro->first.atomic_load<std::uint32_t>().value() ==
          static_cast<std::uint32_t>(pattern_u64(P(4))));
    // The hole and the R-less page fault for both.
    auto hole = s.reader_writer(P(2), 4);
    CHECK(error_of(hole->first.atomic_load<std::uint32_t>()) == Error::PageFault);
    CHECK(error_of(hole->second.atomic_compare_exchange<std::uint32_t>(hole->first, 0, 1)) ==
          Error::PageFault);
    auto none = s.reader(P(5), 4);
    CHECK(error_of(none->atomic_load<std::uint32_t>()) == Error::PageFault);
    // A CAS on a page first touched by it maps it writable and succeeds.
    auto fresh = s.reader_writer(P(8) + 12, 4);
    CHECK(fresh->second.atomic_compare_exchange<std::uint32_t>(fresh->first, 0, 7).value() ==
          std::pair<std::uint32_t, bool>{0, true});
    CHECK(user_u64(s, P(8) + 8) == std::uint64_t{7} << 32);
  }

  // ---- Fallible <-> Fallible between two user buffers ----

  TEST_CASE_TEMPLATE("user_to_user_copies", B, PreMapped, DemandFaulted) {
    UserMemory<B> mem;
    const VmSpace& s = mem.space();
    mem.add_standard_layout();
    {
      auto r = s.reader(P(0), 2 * kP);
      auto w = s.writer(P(8), 2 * kP);
      auto n = r->read_fallible(*w);
      REQUIRE(n.has_value());
      CHECK(*n == 2 * kP);
      auto copied = mem.kernel_view(P(8), 2 * kP);
      bool same = true;
      for (std::size_t i = 0; i < 2 * kP; ++i)
        same = same && copied[i] == std::byte{pattern_byte(P(0) + i)};
      CHECK(same);
    }
    {
      // The destination runs into a hole.
      auto r = s.reader(P(3), 2 * kP);
      auto w = s.writer(P(9) + 100, 2 * kP);
      auto n = w->write_fallible(*r);
      REQUIRE_FALSE(n.has_value());
      CHECK(n.error().copied == kP - 100);
      CHECK(r->cursor() == P(3) + kP - 100);
      CHECK(w->cursor() == P(10));
    }
    {
      // The source runs into the hole.
      auto r = s.reader(P(1) + 50, kP);
      auto w = s.writer(P(8), kP);
      auto n = r->read_fallible(*w);
      REQUIRE_FALSE(n.has_value());
      CHECK(n.error().copied == kP - 50);
      CHECK(user_u64(s, P(8)) == pattern_u64(P(1) + 50));
    }
  }

  TEST_CASE_TEMPLATE("overlapping_copy_memcpy_param_overlap", B, PreMapped, DemandFaulted) {
    // Regression: readers and writers over untyped memory may overlap (io.hpp), but the copy
    // engine used memcpy, which is undefined on overlapping ranges (ASan: memcpy-param-overlap).
    // Within one page the copy now behaves as memmove, in either direction.
    UserMemory<B> mem;
    const VmSpace& s = mem.space();
    mem.add_standard_layout();
    const std::uint64_t w0 = user_u64(s, P(0));
    const std::uint64_t w1 = user_u64(s, P(0) + 8);
    {
      auto r = s.reader(P(0), 64);
      auto w = s.writer(P(0) + 8, 64);  // destination above the source
      REQUIRE(r->read_fallible(*w).value() == 64);
    }
    CHECK(user_u64(s, P(0) + 8) == w0);
    CHECK(user_u64(s, P(0) + 16) == w1);
    {
      auto r = s.reader(P(0) + 8, 64);
      auto w = s.writer(P(0), 64);  // destination below the source
      REQUIRE(r->read_fallible(*w).value() == 64);
    }
    CHECK(user_u64(s, P(0)) == w0);
    CHECK(user_u64(s, P(0) + 8) == w1);
    // Kernel buffers through the infallible path, too.
    std::array<std::uint8_t, 16> buf = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    VmReader<Infallible> kr{std::as_bytes(std::span(buf)).first(12)};
    VmWriter<Infallible> kw{std::as_writable_bytes(std::span(buf)).subspan(4)};
    CHECK(kr.read(kw) == 12);
    CHECK(buf == std::array<std::uint8_t, 16>{0, 1, 2, 3, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11});
  }

  TEST_CASE_TEMPLATE("large_copy_spans_many_read_sections", B, PreMapped, DemandFaulted) {
    // 1 MiB crosses several of the copy engine's 256 KiB read sections.
    UserMemory<B> mem;
    const VmSpace& s = mem.space();
    const Vaddr base = 0x4000'0000;
    const std::size_t len = std::size_t{1} << 20;
    mem.add({base, base + len}, kUserRw);
    std::vector<std::byte> out(len);
    auto r = s.reader(base, len);
    VmWriter<Infallible> w{std::span<std::byte>(out)};
    REQUIRE(r->read_fallible(w).value() == len);
    bool same = true;
    for (std::size_t i = 0; i < len; ++i)
      same = same && out[i] == std::byte{pattern_byte(base + i)};
    CHECK(same);
    if constexpr (B::kDemand) CHECK(mem.pager().maps.load() == len / kPageSize);
  }
}
