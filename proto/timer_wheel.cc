#include "proto/timer_wheel.h"

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>

namespace b2bua::proto {
namespace {

// Longer delays are clamped: such a timer never fires in practice, and the cap keeps
// deadline and tick arithmetic far from overflow (steady_clock counts int64 nanoseconds,
// about 292 years).
constexpr Duration kMaxDelay = std::chrono::hours(24 * 365 * 100);

// Keeps the bitmap and head arrays at a sane size whatever the caller asks for.
constexpr size_t kMaxSlotCount = size_t{1} << 24;

// How many nodes NextDeadline() looks at before it settles for a bound that is earlier than
// the true deadline. A wheel whose nearest slots hold only next-turn timers would otherwise
// make it walk every node.
constexpr size_t kNextDeadlineScanBudget = 64;

constexpr size_t kBitsPerWord = 64;

size_t SlotCountFor(size_t requested) {
  return std::bit_ceil(std::clamp<size_t>(requested, 1, kMaxSlotCount));
}

}  // namespace

TimerWheel::TimerWheel(const Clock& clock, Duration tick, size_t slot_count)
    : clock_(clock),
      // A zero or negative tick would divide by zero in TickOf().
      tick_(tick > Duration::zero() ? tick : Duration(1)),
      slot_mask_(SlotCountFor(slot_count) - 1),
      epoch_(clock.Now()),
      slot_heads_(slot_mask_ + 1, 0),
      occupied_((slot_mask_ + kBitsPerWord) / kBitsPerWord, 0),
      nodes_(1) {
  // Most batches are a handful of timers; larger ones grow this once and keep the room.
  due_.reserve(64);
}

// Timers scheduled from OnTimer() never fire in the Advance() that runs the handler, even
// when already due: a handler that re-arms itself with a zero delay therefore cannot keep
// one Advance() busy forever. They fire on the next call, and NextDeadline() reports a time
// no later than now so the driver makes that call at once.
TimerId TimerWheel::Schedule(Duration delay, TimerHandler* handler, uint32_t kind,
                             uint64_t cookie) {
  if (handler == nullptr) return TimerId{};
  const uint32_t index = AllocateNode();
  if (index == 0) return TimerId{};  // 2^32 live timers: the index space is exhausted

  Node& node = nodes_[index];
  node.deadline = clock_.Now() + std::clamp(delay, Duration::zero(), kMaxDelay);
  // Filing the node under the tick its deadline falls in (rounding down) keeps the
  // invariant NextDeadline() relies on: the tick's start is never after the deadline. The
  // deadline is at or after the Now() of the last Advance(), so its tick is normally at or
  // after current_tick_; only a clock set backwards (FakeClock::Set) gives an earlier one,
  // and that node goes into the current slot, the next one Advance() visits.
  node.due_tick = std::max(TickOf(node.deadline), current_tick_);
  node.sequence = next_sequence_++;
  node.handler = handler;
  node.cookie = cookie;
  node.kind = kind;
  node.state = NodeState::kArmed;
  Link(index);
  ++live_;
  return TimerId{index, node.generation};
}

void TimerWheel::Cancel(TimerId* id) {
  if (id == nullptr) return;
  const TimerId target = *id;
  *id = TimerId{};
  if (!target.armed() || target.slot == 0 || target.slot >= nodes_.size()) return;
  Node& node = nodes_[target.slot];
  if (node.generation != target.generation || node.state == NodeState::kFree) return;
  // A kDue node sits in the running Advance()'s batch, in no slot list. Freeing it is
  // enough: the batch entry's generation or state no longer matches, so it is skipped.
  if (node.state == NodeState::kArmed) Unlink(target.slot);
  FreeNode(target.slot);
  --live_;
}

size_t TimerWheel::Advance() {
  // Re-entered from OnTimer(): the outer call owns due_ and finishes the batch itself.
  if (firing_) return 0;

  const TimePoint now = clock_.Now();
  const uint64_t first = current_tick_;
  // max(): a clock set backwards (FakeClock::Set) must not move the wheel backwards.
  const uint64_t target = std::max(TickOf(now), first);
  // Set before any handler runs, so timers they schedule land at or after target and stay
  // visible to NextDeadline() and the next Advance().
  current_tick_ = target;
  if (live_ == 0) return 0;

  // Visit the slots of ticks first..target, each at most once: after more than one full
  // turn every slot has come round, and the deadline test below picks out every node due by
  // now, whichever turn it was filed for. The slot of `first` is visited again because the
  // previous call may have left nodes in it that were due later within that tick.
  const uint64_t span = std::min<uint64_t>(target - first + 1, slot_mask_ + 1);
  due_.clear();
  for (uint64_t offset = NextOccupied(first, 0, span); offset < span;
       offset = NextOccupied(first, offset + 1, span)) {
    CollectDue(SlotOf(first + offset), now);
  }
  if (due_.empty()) return 0;

  // The batch may span several ticks (a late call) or several turns; deadline order with
  // Schedule() order for ties is what callers see either way.
  std::sort(due_.begin(), due_.end(), [](const DueEntry& a, const DueEntry& b) {
    return a.deadline != b.deadline ? a.deadline < b.deadline : a.sequence < b.sequence;
  });

  firing_ = true;
  size_t fired = 0;
  for (fire_position_ = 0; fire_position_ < due_.size(); ++fire_position_) {
    const DueEntry entry = due_[fire_position_];
    Node& node = nodes_[entry.index];
    // Cancelled by an earlier handler of this batch, and possibly handed out again since.
    if (node.generation != entry.generation || node.state != NodeState::kDue) continue;
    TimerHandler* const handler = node.handler;
    const uint32_t kind = node.kind;
    const uint64_t cookie = node.cookie;
    // Free before the call: the handler sees its timer disarmed (size() excludes it, a
    // Cancel() of its id is a no-op) and may reuse the node at once. `node` may dangle
    // after OnTimer(), since a Schedule() there can grow nodes_.
    FreeNode(entry.index);
    --live_;
    handler->OnTimer(kind, cookie);
    ++fired;
  }
  firing_ = false;
  due_.clear();
  return fired;
}

std::optional<TimePoint> TimerWheel::NextDeadline() const {
  if (live_ == 0) return std::nullopt;

  // Asked from a handler: the rest of the batch is due by now and is the earliest work
  // (anything still in a slot was not due when the batch was taken, and anything scheduled
  // since is due no earlier than the Now() of the call that scheduled it). It may have been
  // cancelled since; an early answer is allowed.
  if (firing_ && fire_position_ + 1 < due_.size()) return due_[fire_position_ + 1].deadline;

  // The first slot, in tick order from current_tick_, that holds a node filed for that very
  // tick (and not a later turn) holds the earliest deadline: nodes of later ticks have
  // deadlines at or after their tick's start, which is after every deadline filed for this
  // tick. Its minimum is exact.
  const uint64_t turn = slot_mask_ + 1;
  size_t examined = 0;
  for (uint64_t offset = NextOccupied(current_tick_, 0, turn); offset < turn;
       offset = NextOccupied(current_tick_, offset + 1, turn)) {
    const uint64_t tick = current_tick_ + offset;
    std::optional<TimePoint> earliest;
    for (uint32_t i = slot_heads_[SlotOf(tick)]; i != 0; i = nodes_[i].next) {
      const Node& node = nodes_[i];
      ++examined;
      // Every armed node has due_tick >= current_tick_ and sits in slot due_tick's slot, so
      // due_tick is either this tick or at least one turn later.
      if (node.due_tick == tick && (!earliest || node.deadline < *earliest)) {
        earliest = node.deadline;
      }
    }
    if (earliest) return earliest;
    // Every node seen so far is at least a turn away and every slot in between was empty,
    // so nothing is due before the next tick starts. Stop here rather than walk the wheel;
    // the driver wakes early once and asks again.
    if (examined >= kNextDeadlineScanBudget) return TimeOfTick(tick + 1);
  }
  // A full turn with nothing filed for its own tick: every timer is a turn or more away.
  return TimeOfTick(current_tick_ + turn);
}

uint64_t TimerWheel::TickOf(TimePoint t) const {
  if (t <= epoch_) return 0;
  return static_cast<uint64_t>((t - epoch_) / tick_);
}

TimePoint TimerWheel::TimeOfTick(uint64_t tick) const {
  return epoch_ + tick_ * static_cast<Duration::rep>(tick);
}

uint64_t TimerWheel::NextOccupied(uint64_t base, uint64_t offset, uint64_t limit) const {
  while (offset < limit) {
    const size_t slot = SlotOf(base + offset);
    const size_t bit = slot % kBitsPerWord;
    const uint64_t bits = occupied_[slot / kBitsPerWord] >> bit;
    if (bits != 0) return std::min<uint64_t>(offset + std::countr_zero(bits), limit);
    // Skip the rest of this word, but stop at the end of the wheel: the next slot after
    // that is slot 0, which is in another word (or this one, with fewer than 64 slots).
    const size_t word_end = std::min<size_t>(slot - bit + kBitsPerWord, slot_mask_ + 1);
    offset += word_end - slot;
  }
  return limit;
}

void TimerWheel::CollectDue(size_t slot, TimePoint now) {
  for (uint32_t i = slot_heads_[slot]; i != 0;) {
    Node& node = nodes_[i];
    const uint32_t next = node.next;
    // The deadline alone decides: a node filed for a later turn has a later deadline, and
    // a node of this tick whose deadline is still ahead stays for the next call.
    if (node.deadline <= now) {
      Unlink(i);
      node.state = NodeState::kDue;
      due_.push_back(DueEntry{node.deadline, node.sequence, i, node.generation});
    }
    i = next;
  }
}

void TimerWheel::Link(uint32_t index) {
  Node& node = nodes_[index];
  const size_t slot = SlotOf(node.due_tick);
  const uint32_t head = slot_heads_[slot];
  node.prev = 0;
  node.next = head;
  if (head != 0) nodes_[head].prev = index;
  slot_heads_[slot] = index;
  occupied_[slot / kBitsPerWord] |= uint64_t{1} << (slot % kBitsPerWord);
}

void TimerWheel::Unlink(uint32_t index) {
  Node& node = nodes_[index];
  const size_t slot = SlotOf(node.due_tick);
  if (node.prev != 0) {
    nodes_[node.prev].next = node.next;
  } else {
    slot_heads_[slot] = node.next;
    if (node.next == 0) {
      occupied_[slot / kBitsPerWord] &= ~(uint64_t{1} << (slot % kBitsPerWord));
    }
  }
  if (node.next != 0) nodes_[node.next].prev = node.prev;
  node.prev = 0;
  node.next = 0;
}

uint32_t TimerWheel::AllocateNode() {
  uint32_t index = free_head_;
  if (index != 0) {
    free_head_ = nodes_[index].next;
  } else {
    if (nodes_.size() > std::numeric_limits<uint32_t>::max()) return 0;
    // Warm-up only: once the pool covers the peak number of live timers, the free list
    // serves every Schedule().
    index = static_cast<uint32_t>(nodes_.size());
    nodes_.emplace_back();
  }
  Node& node = nodes_[index];
  node.next = 0;
  node.generation =
      node.generation == std::numeric_limits<uint32_t>::max() ? 1 : node.generation + 1;
  return index;
}

void TimerWheel::FreeNode(uint32_t index) {
  Node& node = nodes_[index];
  node.state = NodeState::kFree;
  node.handler = nullptr;
  node.prev = 0;
  // LIFO, so the node reused next is the one most likely still in cache.
  node.next = free_head_;
  free_head_ = index;
}

}  // namespace b2bua::proto
