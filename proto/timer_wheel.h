#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "proto/clock.h"

namespace b2bua::proto {

/// Receives expired timers. The wheel stores a raw pointer: a handler cancels its timers
/// before it is destroyed.
class TimerHandler {
 public:
  virtual void OnTimer(uint32_t kind, uint64_t cookie) = 0;

 protected:
  ~TimerHandler() = default;
};

/// Names one armed timer. A default-constructed id names none. Ids are never reused while
/// armed: a stale id (fired or cancelled) is recognised by its generation and ignored.
struct TimerId {
  uint32_t slot = 0;
  uint32_t generation = 0;
  bool armed() const { return generation != 0; }
};

/// A hashed timing wheel (Varghese and Lauck, scheme 6): scheduling, cancelling and firing
/// cost O(1) whatever the number of live timers; timers further out than one turn of the
/// wheel carry a remaining-rounds count. Timer nodes live in one pooled vector with a free
/// list, so a steady load allocates nothing. One wheel per shard, driven by one asio timer.
class TimerWheel {
 public:
  /// `tick` is the resolution: a timer fires no earlier than asked and at most one tick late.
  explicit TimerWheel(const Clock& clock, Duration tick = std::chrono::milliseconds(5),
                      size_t slot_count = 4096);

  TimerWheel(const TimerWheel&) = delete;
  TimerWheel& operator=(const TimerWheel&) = delete;

  /// Owning shard only. Arms a one-shot timer that calls handler->OnTimer(kind, cookie)
  /// from Advance() once clock.Now() >= now + delay.
  TimerId Schedule(Duration delay, TimerHandler* handler, uint32_t kind, uint64_t cookie = 0);

  /// Owning shard only. Disarms `*id` if it is still armed, then resets it. O(1).
  void Cancel(TimerId* id);

  /// Owning shard only. Fires every timer due at clock.Now(), in deadline order within a
  /// tick. Handlers may Schedule and Cancel (any timer, including ones due in this same
  /// call) from OnTimer. Returns how many fired.
  size_t Advance();

  /// The earliest instant at which Advance() may have work, or nullopt with no timer armed.
  /// May be earlier than the real next deadline (slot granularity), never later.
  std::optional<TimePoint> NextDeadline() const;

  /// Live (armed) timers.
  size_t size() const { return live_; }
  Duration tick() const { return tick_; }
  const Clock& clock() const { return clock_; }

 private:
  enum class NodeState : uint8_t {
    kFree,   // on the free list
    kArmed,  // linked into the slot of due_tick
    kDue,    // taken out of its slot by the running Advance(), not fired yet
  };

  // 64 bytes with padding, kept contiguous in nodes_ and addressed by 32-bit index.
  struct Node {
    TimePoint deadline;
    // The tick the node is filed under: its slot is due_tick & slot_mask_, and
    // (due_tick - current_tick_) / slot_count is its remaining rounds. Keeping the rounds as
    // an absolute tick means no pass over a slot has to decrement them, and a late Advance()
    // need not count how many turns went by.
    uint64_t due_tick = 0;
    uint64_t sequence = 0;  // Schedule() order; breaks ties between equal deadlines
    TimerHandler* handler = nullptr;
    uint64_t cookie = 0;
    uint32_t kind = 0;
    // Bumped each time the node is handed out, never 0 once used: a TimerId naming an older
    // generation is stale. Kept while the node is free, so a stale id never matches again
    // until this one node has been reused 2^32 times.
    uint32_t generation = 0;
    uint32_t prev = 0;  // slot list neighbours, 0 = none; while free, `next` is the free list
    uint32_t next = 0;
    NodeState state = NodeState::kFree;
  };

  // One timer taken out of the wheel by Advance(), fired after the batch is sorted.
  struct DueEntry {
    TimePoint deadline;
    uint64_t sequence;
    uint32_t index;
    uint32_t generation;  // the node may be cancelled and reused before its turn comes
  };

  uint64_t TickOf(TimePoint t) const;
  TimePoint TimeOfTick(uint64_t tick) const;
  size_t SlotOf(uint64_t tick) const { return static_cast<size_t>(tick & slot_mask_); }
  // The first offset in [offset, limit) whose slot, SlotOf(base + offset), holds a node, or
  // `limit`. Skips empty slots 64 at a time through occupied_.
  uint64_t NextOccupied(uint64_t base, uint64_t offset, uint64_t limit) const;
  void CollectDue(size_t slot, TimePoint now);
  void Link(uint32_t index);
  void Unlink(uint32_t index);
  uint32_t AllocateNode();
  void FreeNode(uint32_t index);

  const Clock& clock_;
  const Duration tick_;
  const size_t slot_mask_;              // slot_count - 1; slot_count is a power of two
  const TimePoint epoch_;               // tick k is the instant epoch_ + k * tick_
  std::vector<uint32_t> slot_heads_;    // node index, 0 = empty slot
  std::vector<uint64_t> occupied_;      // bit s set <=> slot_heads_[s] != 0
  std::vector<Node> nodes_;             // nodes_[0] is a sentinel, never used
  uint32_t free_head_ = 0;              // intrusive free list through Node::next, 0 = empty
  // Every armed node has due_tick >= current_tick_. Advance() sets it to the tick of Now():
  // that tick's slot may still hold nodes due later within the tick, so the next call
  // visits it again.
  uint64_t current_tick_ = 0;
  uint64_t next_sequence_ = 0;
  size_t live_ = 0;
  // The batch Advance() is firing. Reused across calls, so it stops allocating once it has
  // grown to the largest batch. Handlers never touch it: re-entering Advance() is refused.
  std::vector<DueEntry> due_;
  size_t fire_position_ = 0;
  bool firing_ = false;
};

}  // namespace b2bua::proto
