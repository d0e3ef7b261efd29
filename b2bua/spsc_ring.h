#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstddef>
#include <memory>
#include <new>
#include <optional>
#include <type_traits>
#include <utility>

namespace b2bua {

/// What we pad and align shared atomics to. A constant rather than
/// std::hardware_destructive_interference_size, whose value g++ warns may differ between
/// translation units built with different -mtune flags.
inline constexpr size_t kCacheLineBytes = 64;

/// A bounded single-producer single-consumer queue without locks (Seastar's
/// smp_message_queue ring, rigtorp's SPSCQueue). Exactly one thread pushes and exactly one
/// thread pops, for the ring's whole life; SizeApprox() and capacity() may be called from
/// anywhere.
///
/// Each index sits on its own cache line next to the owner's cached copy of the other
/// index: the producer reads the consumer's head only when its cached copy says the ring
/// is full, and the consumer reads the tail only when its copy says there is not enough to
/// pop, so in steady state each line moves between cores once per batch, not per item.
///
/// Items are moved in and out and never copied, so move-only types (std::unique_ptr, an
/// Envelope owning a buffer) work. Moves must not throw: nothing on the data plane does.
template <typename T>
class SpscRing {
  static_assert(std::is_nothrow_move_constructible_v<T>, "the data plane never throws");
  static_assert(std::is_nothrow_destructible_v<T>);

 public:
  /// Any thread, before the ring is shared. `capacity` is rounded up to a power of two (at
  /// least 1, at most 2^32) so an index maps to a slot with a mask.
  explicit SpscRing(size_t capacity)
      : mask_(std::bit_ceil(std::clamp<size_t>(capacity, 1, size_t{1} << 32)) - 1),
        slots_(std::make_unique<Slot[]>(mask_ + 1)) {}

  /// Any thread, once neither side uses the ring any more. Destroys the items left in it.
  ~SpscRing() {
    const size_t tail = tail_.load(std::memory_order_acquire);
    for (size_t i = head_.load(std::memory_order_acquire); i != tail; ++i) At(i)->~T();
  }

  SpscRing(const SpscRing&) = delete;
  SpscRing& operator=(const SpscRing&) = delete;

  /// Producer thread only. Moves `item` into the ring and returns true, or returns false
  /// when the ring is full and leaves `item` as it was (the caller may retry or drop it).
  bool TryPush(T&& item) {
    const size_t tail = tail_.load(std::memory_order_relaxed);  // only this thread writes it
    if (tail - head_cache_ > mask_) {
      // Acquire: the consumer has finished with (and destroyed) the items in the slots it
      // gave back, so constructing over them cannot race with it.
      head_cache_ = head_.load(std::memory_order_acquire);
      if (tail - head_cache_ > mask_) return false;
    }
    ::new (static_cast<void*>(At(tail))) T(std::move(item));
    // Release: publishes the constructed item together with the index.
    tail_.store(tail + 1, std::memory_order_release);
    return true;
  }

  /// Consumer thread only. The oldest item, or nullopt when the ring is empty.
  std::optional<T> TryPop() {
    const size_t head = head_.load(std::memory_order_relaxed);  // only this thread writes it
    if (head == tail_cache_) {
      tail_cache_ = tail_.load(std::memory_order_acquire);
      if (head == tail_cache_) return std::nullopt;
    }
    T* const item = At(head);
    std::optional<T> out(std::move(*item));
    item->~T();
    head_.store(head + 1, std::memory_order_release);
    return out;
  }

  /// Consumer thread only. Pops up to `max` items, oldest first, calling fn(T&&) on each,
  /// and returns how many. The slots go back to the producer together, after the last
  /// call, which is what makes a batch cheaper than as many TryPop() calls; `fn` must
  /// therefore not pop from this ring itself. It may push to other rings.
  template <typename Fn>
  size_t PopBatch(Fn&& fn, size_t max) {
    const size_t head = head_.load(std::memory_order_relaxed);
    size_t available = tail_cache_ - head;
    if (available < max) {
      tail_cache_ = tail_.load(std::memory_order_acquire);
      available = tail_cache_ - head;
    }
    const size_t count = std::min(available, max);
    for (size_t i = 0; i < count; ++i) {
      T* const item = At(head + i);
      fn(std::move(*item));
      item->~T();
    }
    if (count != 0) head_.store(head + count, std::memory_order_release);
    return count;
  }

  /// Safe from any thread. The number of items in the ring at some instant during the
  /// call: exact from the consumer thread with no push in flight, a gauge reading
  /// otherwise. Never more than capacity().
  size_t SizeApprox() const {
    // Head first: the consumer stored it only after seeing a tail at least as large, and
    // acquire makes that tail visible here, so the subtraction cannot go negative.
    const size_t head = head_.load(std::memory_order_acquire);
    const size_t tail = tail_.load(std::memory_order_acquire);
    return std::min(tail - head, capacity());
  }

  /// Safe from any thread.
  size_t capacity() const { return mask_ + 1; }

 private:
  // Raw storage: slots hold a T only between push and pop, and T need not be
  // default-constructible.
  struct Slot {
    alignas(T) unsigned char bytes[sizeof(T)];
  };

  T* At(size_t index) const {
    return std::launder(reinterpret_cast<T*>(slots_[index & mask_].bytes));
  }

  // Read-only after construction: shared by both sides without traffic.
  alignas(kCacheLineBytes) const size_t mask_;
  const std::unique_ptr<Slot[]> slots_;

  // The producer's line. The indices count pushes and pops since construction and only
  // ever grow; at 2^64 they would wrap, which unsigned subtraction already tolerates.
  alignas(kCacheLineBytes) std::atomic<size_t> tail_{0};  // written by the producer only
  size_t head_cache_ = 0;  // producer-private: head_ as last read, never ahead of it

  // The consumer's line.
  alignas(kCacheLineBytes) std::atomic<size_t> head_{0};  // written by the consumer only
  size_t tail_cache_ = 0;  // consumer-private: tail_ as last read, never ahead of it
};

}  // namespace b2bua
