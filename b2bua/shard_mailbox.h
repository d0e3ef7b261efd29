#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <utility>
#include <vector>

#include "b2bua/spsc_ring.h"

namespace b2bua {

/// Cross-shard handoff for N shards: one SpscRing per (from, to) pair, so every ring has
/// exactly one producer (shard `from`'s thread) and one consumer (shard `to`'s thread), and
/// no two shards ever contend on a ring (Seastar's smp_message_queue).
///
/// The mailbox does not wake anyone. Post() tells the producer whether it must wake the
/// owner of `to` (by asio::post to that shard's io_context); the owner's wake-up handler
/// calls Drain(). A per-destination wake-pending flag keeps that to one wake-up per batch
/// of posts instead of one per item, without ever losing one:
///
///   producer (Post, then ClaimWakeUp):
///                         push the item(s); then exchange(wake_pending, true); if the old
///                         value was false, the caller posts a wake-up.
///   owner (Drain):        exchange(wake_pending, false) first; then pop every ring.
///
/// Invariant: every item in a ring of shard `to` is either popped by a Drain(to) already
/// running, or a wake-up for `to` is posted and its Drain(to) has not yet cleared the flag.
/// See wake_pending below for why the two exchanges guarantee it.
///
/// Typical owner loop, run by the wake-up handler:
///
///   mailbox.Drain(me, handle_envelope, kBatch);
///   if (mailbox.DepthApprox(me) > 0) asio::post(io, drain_again);  // kBatch cut it short
template <typename T>
class ShardMailbox {
 public:
  /// Any thread, before the mailbox is shared. Every ring gets `ring_capacity` (rounded up
  /// to a power of two). The diagonal rings (from == to) exist too, so a shard may post to
  /// itself through the same path.
  ShardMailbox(size_t shard_count, size_t ring_capacity)
      : shard_count_(shard_count), inboxes_(std::make_unique<Inbox[]>(shard_count)) {
    rings_.reserve(shard_count * shard_count);
    for (size_t i = 0; i < shard_count * shard_count; ++i) {
      rings_.push_back(std::make_unique<SpscRing<T>>(ring_capacity));
    }
  }

  ShardMailbox(const ShardMailbox&) = delete;
  ShardMailbox& operator=(const ShardMailbox&) = delete;

  /// Shard `from`'s thread only (the single producer of ring (from, to)). Moves `item` into
  /// the ring towards `to`. Returns false when that ring is full or a shard index is out of
  /// range: `item` is left as it was (count a DropReason::kQueueFull, or retry later).
  ///
  /// With `wake_owner`, also claims the wake-up (ClaimWakeUp) and sets `*wake_owner` to
  /// whether the caller must now post one to shard `to` (false when nothing was queued).
  /// Without it the caller either calls ClaimWakeUp(to) itself after its batch of posts,
  /// which costs one atomic exchange per batch instead of per item, or wakes the owner by
  /// its own means after every successful post.
  bool Post(size_t from, size_t to, T&& item, bool* wake_owner = nullptr) {
    if (wake_owner != nullptr) *wake_owner = false;
    if (from >= shard_count_ || to >= shard_count_) return false;
    if (!Ring(from, to).TryPush(std::move(item))) return false;
    if (wake_owner != nullptr) *wake_owner = ClaimWakeUp(to);
    return true;
  }

  /// Safe from any thread that has just posted to `to`; call it after the post(s), never
  /// before. Returns true when the caller must now post a wake-up to shard `to`: the first
  /// claim since the owner's last Drain() began. Returns false while a wake-up is already
  /// on its way, whose Drain() will see everything posted before this call. A producer
  /// that finds a ring full must claim for what it already posted before it waits for
  /// room: the owner drains only when woken.
  bool ClaimWakeUp(size_t to) {
    if (to >= shard_count_) return false;
    // After the pushes, never before: an exchange that the owner's clear follows carries
    // them with it (release), and one that follows the clear reads false and wakes.
    return !inboxes_[to].wake_pending.exchange(true, std::memory_order_acq_rel);
  }

  /// Shard `to`'s thread only. Clears `to`'s wake-pending flag, then pops up to
  /// `max_per_ring` items from each ring towards `to`, calling fn(T&&) on each (FIFO per
  /// sending shard), and returns how many. With `max_per_ring` at least the ring capacity
  /// it empties every ring of what was pushed before the clear; with less, items may stay
  /// behind and the owner must come back without waiting for a wake-up (see the class
  /// comment). `fn` may Post() but must not Drain(to).
  template <typename Fn>
  size_t Drain(size_t to, Fn&& fn, size_t max_per_ring) {
    if (to >= shard_count_) return 0;
    // An exchange, not a store, so that it reads from (and synchronizes with) the last
    // producer exchange before it; a plain store would break the invariant.
    inboxes_[to].wake_pending.exchange(false, std::memory_order_acq_rel);
    size_t drained = 0;
    for (size_t from = 0; from < shard_count_; ++from) {
      drained += Ring(from, to).PopBatch(fn, max_per_ring);
    }
    return drained;
  }

  /// Safe from any thread. Items waiting for shard `to` across its inbound rings, for the
  /// handoff_queue_depth gauge; each ring is read at a different instant.
  size_t DepthApprox(size_t to) const {
    if (to >= shard_count_) return 0;
    size_t depth = 0;
    for (size_t from = 0; from < shard_count_; ++from) depth += Ring(from, to).SizeApprox();
    return depth;
  }

  /// Safe from any thread.
  size_t shard_count() const { return shard_count_; }
  /// Safe from any thread. Every ring's capacity (the value given, rounded up).
  size_t ring_capacity() const { return rings_.empty() ? 0 : rings_.front()->capacity(); }

 private:
  // One line per destination: producers of different destinations never share it.
  struct alignas(kCacheLineBytes) Inbox {
    // True from the first Post() after a clear until the owner's next Drain() clears it.
    //
    // Why no wake-up is lost: every write to the flag is an RMW with acq_rel, so the
    // writes form one modification order, each reading the one before it, and every write
    // after a producer's exchange is in that exchange's release sequence. Take an item
    // pushed before its producer's exchange X, and the owner's clear C (also an exchange)
    // that begins some Drain():
    //  - X before C: C reads from X's release sequence, so X synchronizes with C; the push
    //    happens before the pops that follow C, and they see the item.
    //  - C before X, with no other write in between: X reads C's false and its producer
    //    posts a wake-up, whose Drain() clears after X (previous case).
    //  - C before X, with producer writes in between: the first of them read C's false and
    //    posted a wake-up; that Drain()'s clear comes after it in the order and, the
    //    in-between writes all being true, after X too (first case).
    // Plain loads or stores on either side would allow the classic store-buffering
    // outcome: the owner misses the item and the producer misses the clear.
    std::atomic<bool> wake_pending{false};
  };

  SpscRing<T>& Ring(size_t from, size_t to) { return *rings_[from * shard_count_ + to]; }
  const SpscRing<T>& Ring(size_t from, size_t to) const {
    return *rings_[from * shard_count_ + to];
  }

  const size_t shard_count_;
  std::vector<std::unique_ptr<SpscRing<T>>> rings_;  // [from * shard_count_ + to]
  std::unique_ptr<Inbox[]> inboxes_;                 // [to]
};

}  // namespace b2bua
