// AtomicIdSet: a set of dense ids as a bitmap of atomic words (OSTD's `AtomicIdSet<I>`), which
// becomes AtomicCpuSet with CpuId. id_set.hpp describes the id types and the storage; this
// header holds the concurrent set, which any number of threads may use at once.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

#include <vmspace/assert.hpp>
#include <vmspace/id_set.hpp>

namespace vmspace {

// A set of ids whose bits may be changed and read by many threads at once: one
// std::atomic<uint64_t> per 64 ids, inline for up to kIdSetInlineIds ids.
//
// Atomicity: add(), remove() and contains() are single atomic operations on the word that
// holds the id, with the given memory order. load() and store() work word by word: each
// word is accessed atomically with the given order, but a set spanning several words is NOT
// read or written as a whole. A load racing with a store (or with several adds/removes) may
// return a mix of old and new words. Callers that need a consistent multi-word snapshot must
// synchronize by other means.
//
// Memory orders: any std::memory_order is accepted by every operation.
//   - add() is fetch_or and remove() is fetch_and, so every order is valid for them.
//   - load() / contains() with memory_order_release or memory_order_acq_rel perform
//     fetch_or(0, order) on each word instead of a load (see load()).
//   - store() with memory_order_acquire, memory_order_consume or memory_order_acq_rel
//     performs exchange(value, order) on each word instead of a store.
// An AtomicIdSet is neither copyable nor movable (it is shared by address, like std::atomic).
template <IdType Id>
class AtomicIdSet {
 public:
  // An empty set.
  AtomicIdSet() : AtomicIdSet(IdSet<Id>()) {}
  // A set initially holding the ids of `initial`. Not thread-safe (nothing else can see the
  // object yet). Allocates only beyond kIdSetInlineIds ids.
  explicit AtomicIdSet(const IdSet<Id>& initial)
      : num_ids_(initial.num_ids_), num_words_(internal::id_set_words_for(initial.num_ids_)) {
    if (num_words_ > internal::kIdSetInlineWords) {
      heap_words_ = std::make_unique<std::atomic<std::uint64_t>[]>(num_words_);
      words_ = heap_words_.get();
    } else {
      words_ = inline_words_;
    }
    for (std::uint32_t i = 0; i < num_words_; ++i) {
      const std::uint64_t word = i < initial.num_words_ ? initial.words()[i] : 0;
      words_[i].store(word, std::memory_order_relaxed);
    }
  }
  AtomicIdSet(const AtomicIdSet&) = delete;
  AtomicIdSet& operator=(const AtomicIdSet&) = delete;
  ~AtomicIdSet() = default;

  // Reads the set word by word, each word with `order` (not atomic as a whole; see above).
  //
  // memory_order_release is valid here and performs fetch_or(0, release) on each word, as
  // OSTD does. A plain load can never be a release operation: nothing can read from it, so
  // nothing can synchronize with it. A read-modify-write that stores the value it read can.
  // The TLB flusher relies on this: the dispatcher changes page-table entries, then
  // release-loads the set of CPUs that have the VmSpace active and flushes those. A CPU that
  // activates the VmSpace concurrently adds itself with an acquire fetch_or on the same word.
  // Both are RMWs on one word, so one comes first in that word's modification order:
  //   - the CPU's add first: the dispatcher's load sees its bit and flushes that CPU;
  //   - the dispatcher's fetch_or first: the CPU's acquire RMW reads the value written by
  //     the dispatcher's release RMW, synchronizes with it, and so sees the new page-table
  //     entries; it needs no flush.
  // With a plain load neither case would be guaranteed: the load may miss the CPU's bit while
  // the CPU still misses the page-table writes.
  //
  // Allocates the result's words for sets beyond kIdSetInlineIds ids.
  IdSet<Id> load(std::memory_order order) const {
    IdSet<Id> result;
    result.ensure_storage();
    std::uint64_t* out = result.words();
    for (std::uint32_t i = 0; i < num_words_; ++i) out[i] = load_word(words_[i], order);
    return result;
  }
  // Writes `value` word by word, each word with `order` (not atomic as a whole; see above).
  void store(const IdSet<Id>& value, std::memory_order order) noexcept {
    VMS_DEBUG_ASSERT(value.num_ids_ == num_ids_, "IdSet cardinality {} != AtomicIdSet's {}",
                     value.num_ids_, num_ids_);
    for (std::uint32_t i = 0; i < num_words_; ++i) {
      const std::uint64_t word = i < value.num_words_ ? value.words()[i] : 0;
      store_word(words_[i], word, order);
    }
  }
  // Atomically adds `id`: fetch_or on its word with `order`.
  void add(const Id& id, std::memory_order order) noexcept {
    const std::size_t index = checked_index(id);
    words_[index / internal::kIdSetWordBits].fetch_or(internal::id_set_bit(index), order);
  }
  // Atomically removes `id` (no effect if absent): fetch_and on its word with `order`.
  void remove(const Id& id, std::memory_order order) noexcept {
    const std::size_t index = checked_index(id);
    words_[index / internal::kIdSetWordBits].fetch_and(~internal::id_set_bit(index), order);
  }
  // Atomically tests `id`: one read of its word with `order` (a release or acq_rel order is a
  // fetch_or(0, order), as in load()).
  bool contains(const Id& id, std::memory_order order) const noexcept {
    const std::size_t index = checked_index(id);
    return (load_word(words_[index / internal::kIdSetWordBits], order) &
            internal::id_set_bit(index)) != 0;
  }

  // Prints a relaxed load of the set; for debugging.
  friend std::ostream& operator<<(std::ostream& os, const AtomicIdSet& set) {
    return os << set.load(std::memory_order_relaxed);
  }

 private:
  static std::uint64_t load_word(std::atomic<std::uint64_t>& word,
                                 std::memory_order order) noexcept {
    switch (order) {
      case std::memory_order_release:
      case std::memory_order_acq_rel:
        // A load cannot release; an RMW that leaves the value unchanged can (see load()).
        return word.fetch_or(0, order);
      default:
        return word.load(order);
    }
  }
  static void store_word(std::atomic<std::uint64_t>& word, std::uint64_t value,
                         std::memory_order order) noexcept {
    switch (order) {
      case std::memory_order_consume:
      case std::memory_order_acquire:
      case std::memory_order_acq_rel:
        // A store cannot acquire; an exchange can.
        word.exchange(value, order);
        return;
      default:
        word.store(value, order);
        return;
    }
  }
  std::size_t checked_index(const Id& id) const noexcept {
    const std::uint32_t index = internal::id_index(id);
    VMS_DEBUG_ASSERT(index < num_ids_, "id index {} out of range for cardinality {}", index,
                     num_ids_);
    return index;
  }

  std::uint32_t num_ids_;    // Id::cardinality() at construction.
  std::uint32_t num_words_;  // id_set_words_for(num_ids_), fixed.
  // The words; all of them are shared between threads, hence atomic. Bits past num_ids_ stay 0.
  std::atomic<std::uint64_t> inline_words_[internal::kIdSetInlineWords] = {};
  std::unique_ptr<std::atomic<std::uint64_t>[]> heap_words_;  // Beyond kIdSetInlineIds ids.
  // inline_words_ or heap_words_.get(); the object never moves, so this stays valid. The
  // pointer itself is written only by the constructor. const member functions may still
  // perform RMWs through it (a release load), which never change the value.
  std::atomic<std::uint64_t>* words_ = nullptr;
};

}  // namespace vmspace
