// LinkedList<M> and Link<M> (OSTD `ostd/src/mm/frame/linked_list.rs`; scenarios of its
// `ostd/src/mm/frame/test.rs`).
#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <vmspace/frame_allocator.hpp>
#include <vmspace/frame_list.hpp>
#include <vmspace/unique_frame.hpp>

#include "death_test.hpp"
#include "frame_test_util.hpp"
#include "skip.hpp"

using namespace vmspace;
using vmspace::test::FreeBytesUnchanged;
using vmspace::test::MockFrameMeta;
using vmspace::test::MockUFrameMeta;

namespace {

using ULink = Link<MockUFrameMeta>;
using UList = LinkedList<MockUFrameMeta>;

// A fresh frame with Link metadata, owned uniquely (ready to be pushed).
UniqueFrame<ULink> new_member(std::uint32_t value) {
  auto frame = FrameAllocOptions().alloc_frame_with(ULink(MockUFrameMeta{value}));
  REQUIRE(frame.has_value());
  auto unique = UniqueFrame<ULink>::try_from(*frame);
  REQUIRE(unique.has_value());
  return std::move(*unique);
}

// The values of a list, front to back, read through a cursor that ends at the ghost.
std::vector<std::uint32_t> values(UList& list) {
  std::vector<std::uint32_t> out;
  auto cursor = list.cursor_front_mut();
  while (MockUFrameMeta* m = cursor.current_meta()) {
    out.push_back(m->value);
    cursor.move_next();
  }
  return out;
}

std::uint64_t in_list_of(Paddr pa) {
  return meta_slot(pa)->in_list_ref().load(boost::memory_order_relaxed);
}

// Metadata whose on_drop counts how often it ran and remembers the last value it saw.
struct DropCounting {
  static constexpr bool kIsUntyped = true;
  static inline int drops = 0;
  static inline std::uint32_t last_value = 0;
  std::uint32_t value = 0;
  void on_drop(VmReader<Infallible>&) {
    ++drops;
    last_value = value;
  }
};

// The largest metadata that still fits next to the hook.
struct Biggest {
  std::uint64_t words[3];
};

}  // namespace

static_assert(FrameMeta<ULink>);
static_assert(UntypedFrameMeta<ULink>, "Link forwards kIsUntyped");
static_assert(FrameMeta<Link<MockFrameMeta>> && !UntypedFrameMeta<Link<MockFrameMeta>>);
static_assert(FrameMeta<Link<Biggest>> && sizeof(Link<Biggest>) == kFrameMetadataMaxSize);
static_assert(vmspace::internal::HasOnDrop<Link<DropCounting>> &&
                  !vmspace::internal::HasOnDrop<ULink>,
              "Link has on_drop exactly when M has");
static_assert(std::is_same_v<UList::Member, UniqueFrame<ULink>>);

TEST_SUITE("unit") {
  TEST_CASE("linked_list_push_pop") {
    FreeBytesUnchanged no_leak;
    UList list;
    CHECK(list.is_empty());
    list.push_front(new_member(1));  // 1
    list.push_front(new_member(2));  // 2 1
    list.push_back(new_member(3));   // 2 1 3
    CHECK(list.size() == 3);
    CHECK_FALSE(list.is_empty());

    auto cursor = list.cursor_front_mut();
    REQUIRE(cursor.current_meta() != nullptr);
    CHECK(cursor.current_meta()->value == 2);
    cursor.move_next();
    REQUIRE(cursor.current_meta() != nullptr);
    CHECK(cursor.current_meta()->value == 1);
    cursor.move_next();
    REQUIRE(cursor.current_meta() != nullptr);
    CHECK(cursor.current_meta()->value == 3);
    cursor.move_next();
    CHECK(cursor.current_meta() == nullptr);  // ghost
    CHECK(cursor.as_list().size() == 3);

    auto f2 = list.pop_front();
    REQUIRE(f2.has_value());
    CHECK(f2->meta()->value == 2);
    CHECK(list.size() == 2);
    auto f3 = list.pop_back();
    REQUIRE(f3.has_value());
    CHECK(f3->meta()->value == 3);
    CHECK(list.size() == 1);
    auto f1 = list.pop_front();
    REQUIRE(f1.has_value());
    CHECK(f1->meta()->value == 1);
    CHECK(list.size() == 0);
    CHECK(list.is_empty());
    CHECK_FALSE(list.pop_front().has_value());
    CHECK_FALSE(list.pop_back().has_value());
  }

  TEST_CASE("linked_list_cursor_at") {
    FreeBytesUnchanged no_leak;
    auto f1 = new_member(1);
    auto f2 = new_member(2);
    auto f3 = new_member(3);
    const Paddr pa1 = f1.paddr(), pa2 = f2.paddr(), pa3 = f3.paddr();
    auto outside = new_member(4);

    UList list;
    list.push_front(std::move(f1));
    list.push_front(std::move(f2));
    list.push_front(std::move(f3));

    CHECK_FALSE(list.contains(outside.paddr()));
    CHECK_FALSE(list.cursor_mut_at(outside.paddr()).has_value());

    CHECK(list.contains(pa1));
    CHECK(list.contains(pa2));
    CHECK(list.contains(pa3));

    auto c1 = list.cursor_mut_at(pa1);
    REQUIRE(c1.has_value());
    REQUIRE(c1->current_meta() != nullptr);
    CHECK(c1->current_meta()->value == 1);
    auto c2 = list.cursor_mut_at(pa2);
    REQUIRE(c2.has_value());
    REQUIRE(c2->current_meta() != nullptr);
    CHECK(c2->current_meta()->value == 2);
    auto c3 = list.cursor_mut_at(pa3);
    REQUIRE(c3.has_value());
    REQUIRE(c3->current_meta() != nullptr);
    CHECK(c3->current_meta()->value == 3);
  }

  TEST_CASE("linked_list_cursor_ops") {
    FreeBytesUnchanged no_leak;
    UList list;
    CHECK(list.is_empty());
    list.push_front(new_member(1));
    list.push_front(new_member(2));  // 2 1
    CHECK(list.size() == 2);

    {
      auto cursor = list.cursor_front_mut();  // *2 1
      CHECK(cursor.current_meta()->value == 2);
      cursor.move_next();  // 2 *1
      CHECK(cursor.current_meta()->value == 1);
      cursor.insert_before(new_member(3));  // 2 3 *1
      CHECK(cursor.current_meta()->value == 1);
      cursor.insert_before(new_member(4));  // 2 3 4 *1
      CHECK(cursor.current_meta()->value == 1);
      cursor.move_next();  // 2 3 4 1 *()
      CHECK(cursor.current_meta() == nullptr);
      cursor.insert_before(new_member(5));  // 2 3 4 1 5 *()
      CHECK(cursor.current_meta() == nullptr);
      CHECK(cursor.as_list().size() == 5);
    }
    CHECK(values(list) == std::vector<std::uint32_t>{2, 3, 4, 1, 5});

    auto cursor = list.cursor_front_mut();
    for (int i = 0; i < 5; ++i) cursor.move_next();
    CHECK(cursor.current_meta() == nullptr);  // 2 3 4 1 5 *()
    cursor.move_prev();                       // 2 3 4 1 *5
    CHECK(cursor.current_meta()->value == 5);
    cursor.move_prev();  // 2 3 4 *1 5
    CHECK(cursor.current_meta()->value == 1);

    auto taken1 = cursor.take_current();  // 2 3 4 *5
    REQUIRE(taken1.has_value());
    CHECK(taken1->meta()->value == 1);
    CHECK(cursor.current_meta()->value == 5);
    cursor.move_next();  // 2 3 4 5 *()
    CHECK(cursor.current_meta() == nullptr);
    cursor.move_prev();  // 2 3 4 *5
    CHECK(cursor.current_meta()->value == 5);
    cursor.move_prev();
    CHECK(cursor.current_meta()->value == 4);
    cursor.move_prev();
    CHECK(cursor.current_meta()->value == 3);
    cursor.move_prev();  // *2 3 4 5
    CHECK(cursor.current_meta()->value == 2);

    auto taken2 = cursor.take_current();  // *3 4 5
    REQUIRE(taken2.has_value());
    CHECK(taken2->meta()->value == 2);
    CHECK(cursor.current_meta()->value == 3);
    cursor.move_next();
    CHECK(cursor.current_meta()->value == 4);
    cursor.move_next();  // 3 4 *5
    CHECK(cursor.current_meta()->value == 5);
    auto taken5 = cursor.take_current();  // 3 4 *()
    REQUIRE(taken5.has_value());
    CHECK(taken5->meta()->value == 5);
    CHECK(cursor.current_meta() == nullptr);
    CHECK_FALSE(cursor.take_current().has_value());  // nothing to take at the ghost
    CHECK(cursor.as_list().size() == 2);
    CHECK(values(list) == std::vector<std::uint32_t>{3, 4});
  }

  TEST_CASE("linked_list_move_prev_from_front_reaches_ghost_then_back") {
    FreeBytesUnchanged no_leak;
    UList list;
    list.push_back(new_member(1));
    list.push_back(new_member(2));
    auto cursor = list.cursor_front_mut();
    cursor.move_prev();
    CHECK(cursor.current_meta() == nullptr);
    cursor.move_prev();
    REQUIRE(cursor.current_meta() != nullptr);
    CHECK(cursor.current_meta()->value == 2);
    auto back = list.cursor_back_mut();
    REQUIRE(back.current_meta() != nullptr);
    CHECK(back.current_meta()->value == 2);
    auto taken = back.take_current();  // the back element: the cursor moves to the ghost
    REQUIRE(taken.has_value());
    CHECK(back.current_meta() == nullptr);
    back.move_next();  // ghost -> front
    REQUIRE(back.current_meta() != nullptr);
    CHECK(back.current_meta()->value == 1);
  }

  TEST_CASE("linked_list_empty_cursors_stay_at_the_ghost") {
    FreeBytesUnchanged no_leak;
    UList list;
    auto front = list.cursor_front_mut();
    CHECK(front.current_meta() == nullptr);
    front.move_next();
    CHECK(front.current_meta() == nullptr);
    front.move_prev();
    CHECK(front.current_meta() == nullptr);
    CHECK_FALSE(front.take_current().has_value());
    auto back = list.cursor_back_mut();
    CHECK(back.current_meta() == nullptr);

    front.insert_before(new_member(7));  // at the ghost: becomes the back (and front)
    CHECK(list.size() == 1);
    CHECK(front.current_meta() == nullptr);
    front.move_next();
    REQUIRE(front.current_meta() != nullptr);
    CHECK(front.current_meta()->value == 7);
  }

  TEST_CASE("linked_list_contains_is_false_for_bogus_paddrs") {
    FreeBytesUnchanged no_leak;
    UList list;
    auto member = new_member(1);
    const Paddr pa = member.paddr();
    CHECK_FALSE(list.contains(pa));  // no id yet: nothing is a member
    list.push_back(std::move(member));
    REQUIRE(list.contains(pa));

    const Paddr bogus[] = {
        pa + 1,              // misaligned, inside a member
        pa + kPageSize / 2,  // misaligned
        0,                   // the reserved frame
        max_paddr(),         // one past the end
        max_paddr() + kPageSize,
        max_paddr() - kPageSize + 1,
        ~Paddr{0},
        ~Paddr{0} & ~Paddr{kPageSize - 1},  // aligned, far out of range
    };
    for (Paddr p : bogus) {
      CAPTURE(p);
      CHECK_FALSE(list.contains(p));
      CHECK_FALSE(list.cursor_mut_at(p).has_value());
    }
    // The last frame of physical memory is a valid address that is not a member.
    CHECK_FALSE(list.contains(max_paddr() - kPageSize));
  }

  TEST_CASE("linked_list_contains_tells_lists_apart") {
    FreeBytesUnchanged no_leak;
    UList a, b;
    auto fa = new_member(1);
    auto fb = new_member(2);
    const Paddr pa = fa.paddr(), pb = fb.paddr();
    a.push_back(std::move(fa));
    b.push_back(std::move(fb));
    CHECK(a.id() != 0);
    CHECK(b.id() != 0);
    CHECK(a.id() != b.id());
    CHECK(a.contains(pa));
    CHECK_FALSE(a.contains(pb));
    CHECK(b.contains(pb));
    CHECK_FALSE(b.contains(pa));
    CHECK_FALSE(a.cursor_mut_at(pb).has_value());
  }

  TEST_CASE("linked_list_in_list_is_the_list_id_while_a_member_and_zero_after_removal") {
    FreeBytesUnchanged no_leak;
    UList list;
    CHECK(list.id() == 0);  // drawn lazily
    auto f1 = new_member(1);
    auto f2 = new_member(2);
    auto f3 = new_member(3);
    const Paddr pa1 = f1.paddr(), pa2 = f2.paddr(), pa3 = f3.paddr();
    CHECK(in_list_of(pa1) == 0);
    list.push_back(std::move(f1));
    list.push_back(std::move(f2));
    list.push_back(std::move(f3));
    const std::uint64_t id = list.id();
    CHECK(id != 0);
    CHECK(id < vmspace::internal::kMaxFrameListId);
    CHECK(in_list_of(pa1) == id);
    CHECK(in_list_of(pa2) == id);
    CHECK(in_list_of(pa3) == id);
    // Members stay uniquely owned: no Frame handle can be made for them.
    CHECK(DynFrame::from_in_use(pa2).error() == GetFrameError::Unique);

    auto back = list.pop_back();
    REQUIRE(back.has_value());
    CHECK(back->paddr() == pa3);
    CHECK(in_list_of(pa3) == 0);
    auto cursor = list.cursor_mut_at(pa2);
    REQUIRE(cursor.has_value());
    auto middle = cursor->take_current();
    REQUIRE(middle.has_value());
    CHECK(in_list_of(pa2) == 0);
    CHECK_FALSE(list.contains(pa2));
    auto front = list.pop_front();
    REQUIRE(front.has_value());
    CHECK(in_list_of(pa1) == 0);
    CHECK(list.id() == id);  // a list keeps its id when it becomes empty

    // A removed frame can join another list, and takes that list's id.
    UList other;
    other.push_front(std::move(*middle));
    CHECK(in_list_of(pa2) == other.id());
    CHECK(other.id() != id);
    CHECK_FALSE(list.contains(pa2));
  }

  TEST_CASE("linked_list_members_keep_metadata_changes") {
    FreeBytesUnchanged no_leak;
    UList list;
    auto f = new_member(10);
    const Paddr pa = f.paddr();
    list.push_back(std::move(f));
    auto cursor = list.cursor_mut_at(pa);
    REQUIRE(cursor.has_value());
    cursor->current_meta()->value = 11;
    auto back = list.pop_back();
    REQUIRE(back.has_value());
    CHECK(back->meta()->value == 11);
    back->meta_mut()->value = 12;
    CHECK(back->meta().get().value == 12);
    CHECK((*back->meta()).value == 12);
  }

  TEST_CASE("linked_list_drop_drops_every_member") {
    FreeBytesUnchanged no_leak;
    DropCounting::drops = 0;
    std::vector<Paddr> pas;
    {
      LinkedList<DropCounting> list;
      for (std::uint32_t v = 1; v <= 4; ++v) {
        auto f = FrameAllocOptions().alloc_frame_with(Link<DropCounting>(DropCounting{v}));
        REQUIRE(f.has_value());
        pas.push_back(f->paddr());
        auto u = UniqueFrame<Link<DropCounting>>::try_from(*f);
        REQUIRE(u.has_value());
        list.push_back(std::move(*u));
      }
      CHECK(DropCounting::drops == 0);
    }
    CHECK(DropCounting::drops == 4);       // on_drop is forwarded through Link
    CHECK(DropCounting::last_value == 4);  // dropped front to back
    for (Paddr pa : pas) CHECK_FALSE(DynFrame::from_in_use(pa).has_value());  // all freed
  }

  TEST_CASE("linked_list_clear_empties_and_the_list_stays_usable") {
    FreeBytesUnchanged no_leak;
    UList list;
    list.push_back(new_member(1));
    list.push_back(new_member(2));
    const std::uint64_t id = list.id();
    list.clear();
    CHECK(list.is_empty());
    list.push_back(new_member(3));
    CHECK(list.size() == 1);
    CHECK(list.id() == id);
  }

  TEST_CASE("linked_list_move_transfers_members_and_id") {
    FreeBytesUnchanged no_leak;
    UList a;
    auto f = new_member(1);
    const Paddr pa = f.paddr();
    a.push_back(std::move(f));
    a.push_back(new_member(2));
    const std::uint64_t id = a.id();

    UList b(std::move(a));
    CHECK(b.size() == 2);
    CHECK(b.id() == id);
    CHECK(b.contains(pa));
    CHECK(a.is_empty());  // NOLINT(bugprone-use-after-move): documented state
    CHECK(a.id() == 0);   // NOLINT(bugprone-use-after-move)
    CHECK_FALSE(a.contains(pa));

    UList c;
    c.push_back(new_member(3));  // dropped by the assignment
    c = std::move(b);
    CHECK(c.size() == 2);
    CHECK(c.contains(pa));
    CHECK(values(c) == std::vector<std::uint32_t>{1, 2});
    CHECK(b.is_empty());  // NOLINT(bugprone-use-after-move)
  }

  TEST_CASE("link_frames_keep_their_metadata_type") {
    FreeBytesUnchanged no_leak;
    auto f = FrameAllocOptions().alloc_frame_with(ULink(MockUFrameMeta{5}));
    REQUIRE(f.has_value());
    CHECK(std::string(f->dyn_meta().type_name()) == "MockUFrameMeta");  // kTypeName forwarded
    CHECK(f->dyn_meta().is_untyped());
    UFrame u = *f;  // an untyped Link<M> frame is a UFrame
    CHECK(u.paddr() == f->paddr());
    CHECK(f->meta()->value == 5);

    auto typed = FrameAllocOptions().alloc_frame_with(Link<MockFrameMeta>(std::in_place, 6u));
    REQUIRE(typed.has_value());
    CHECK_FALSE(typed->dyn_meta().is_untyped());
    CHECK(typed->meta()->value == 6);
  }

  TEST_CASE("linked_list_id_exhaustion_aborts" *
            vmspace::test::skip_death_test("linked_list_id_exhaustion_aborts")) {
    CHECK(vmspace::test::dies_with(
        [] {
          vmspace::internal::g_next_frame_list_id.store(vmspace::internal::kMaxFrameListId - 1);
          UList last_valid;
          last_valid.push_back(new_member(1));  // gets 2^62 - 1: fine
          if (last_valid.id() != vmspace::internal::kMaxFrameListId - 1)
            return;  // would fail the test
          UList too_many;
          too_many.push_back(new_member(2));  // must abort
        },
        "frame list ids are exhausted"));
  }
}
