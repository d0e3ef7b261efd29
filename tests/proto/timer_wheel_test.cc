// Tests proto/timer_wheel.{h,cc}: deadlines, cancellation, stale ids, handlers that
// re-enter the wheel, rounds, late Advance() catch-up, NextDeadline() and pooling. Time is
// a FakeClock moved by hand; nothing sleeps.

#include "proto/timer_wheel.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <new>
#include <optional>
#include <ostream>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/clock.h"

// Counts every global allocation in this binary, so a test can show that a warmed-up wheel
// allocates nothing. Not under AddressSanitizer: its runtime owns operator new there, and
// mixing its nothrow new with our delete is a mismatch it rightly reports.
#if defined(__SANITIZE_ADDRESS__)
#define B2BUA_COUNT_ALLOCATIONS 0
#else
#define B2BUA_COUNT_ALLOCATIONS 1
#endif
// Every non-aligned form is replaced, so that each pairs with its own delete; the aligned
// forms keep the library's own pair.
namespace {
std::atomic<size_t> g_allocations{0};
}  // namespace
#if B2BUA_COUNT_ALLOCATIONS
namespace {

// Out of line so that g++ does not pair an inlined free() with a `new` it sees elsewhere
// (-Wmismatched-new-delete).
[[gnu::noinline]] void* CountedAllocate(size_t size) noexcept {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(size == 0 ? 1 : size);
}
[[gnu::noinline]] void Release(void* p) noexcept { std::free(p); }
}  // namespace

void* operator new(size_t size) {
  if (void* p = CountedAllocate(size)) return p;
  throw std::bad_alloc();
}
void* operator new[](size_t size) {
  if (void* p = CountedAllocate(size)) return p;
  throw std::bad_alloc();
}
void* operator new(size_t size, const std::nothrow_t&) noexcept { return CountedAllocate(size); }
void* operator new[](size_t size, const std::nothrow_t&) noexcept { return CountedAllocate(size); }
void operator delete(void* p) noexcept { Release(p); }
void operator delete[](void* p) noexcept { Release(p); }
void operator delete(void* p, size_t) noexcept { Release(p); }
void operator delete[](void* p, size_t) noexcept { Release(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { Release(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { Release(p); }
#endif  // B2BUA_COUNT_ALLOCATIONS

namespace b2bua::proto {
namespace {

using std::chrono::hours;
using std::chrono::microseconds;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using std::chrono::seconds;
using ::testing::ElementsAre;

constexpr Duration kTick = milliseconds(5);

struct Fired {
  uint32_t kind;
  uint64_t cookie;
  TimePoint at;
  bool operator==(const Fired&) const = default;
};

void PrintTo(const Fired& f, std::ostream* os) {
  *os << "{kind " << f.kind << ", cookie " << f.cookie << ", at "
      << std::chrono::duration_cast<microseconds>(f.at.time_since_epoch()).count() << " us}";
}

// Records every expiry with the clock's time; an optional hook runs inside OnTimer().
class RecordingHandler final : public TimerHandler {
 public:
  explicit RecordingHandler(const Clock& clock) : clock_(clock) {}

  void OnTimer(uint32_t kind, uint64_t cookie) override {
    fired_.push_back(Fired{kind, cookie, clock_.Now()});
    if (hook_) hook_(kind, cookie);
  }

  void set_hook(std::function<void(uint32_t, uint64_t)> hook) { hook_ = std::move(hook); }
  const std::vector<Fired>& fired() const { return fired_; }
  std::vector<uint64_t> cookies() const {
    std::vector<uint64_t> out;
    for (const Fired& f : fired_) out.push_back(f.cookie);
    return out;
  }
  void clear() { fired_.clear(); }

 private:
  const Clock& clock_;
  std::vector<Fired> fired_;
  std::function<void(uint32_t, uint64_t)> hook_;
};

class TimerWheelTest : public ::testing::Test {
 protected:
  FakeClock clock_;
  RecordingHandler handler_{clock_};
};

// ---------------------------------------------------------------------------------------
// Deadlines.

TEST_F(TimerWheelTest, FiresAtItsDeadlineAndNotBefore) {
  TimerWheel wheel(clock_, kTick, 64);
  const TimePoint start = clock_.Now();
  // 12.3 ms: not on a tick boundary, so rounding in either direction would show.
  TimerId id = wheel.Schedule(microseconds(12300), &handler_, 7, 42);
  EXPECT_TRUE(id.armed());

  clock_.Set(start + microseconds(12300) - nanoseconds(1));
  EXPECT_EQ(wheel.Advance(), 0u);
  EXPECT_TRUE(handler_.fired().empty());

  clock_.Set(start + microseconds(12300));
  EXPECT_EQ(wheel.Advance(), 1u);
  EXPECT_THAT(handler_.fired(), ElementsAre(Fired{7, 42, start + microseconds(12300)}));
  EXPECT_EQ(wheel.size(), 0u);

  // Fires once only.
  clock_.Advance(seconds(10));
  EXPECT_EQ(wheel.Advance(), 0u);
  EXPECT_EQ(handler_.fired().size(), 1u);
}

TEST_F(TimerWheelTest, ZeroAndNegativeDelaysFireOnTheNextAdvance) {
  TimerWheel wheel(clock_, kTick, 64);
  wheel.Schedule(Duration::zero(), &handler_, 1, 1);
  wheel.Schedule(-seconds(3), &handler_, 1, 2);
  EXPECT_EQ(wheel.Advance(), 2u);
  EXPECT_THAT(handler_.cookies(), ElementsAre(1u, 2u));
}

TEST_F(TimerWheelTest, DrivenEveryTickAFireIsAtMostOneTickLate) {
  TimerWheel wheel(clock_, kTick, 32);
  const TimePoint start = clock_.Now();
  std::mt19937_64 rng(1);
  // Up to three turns out, at arbitrary sub-tick offsets.
  std::uniform_int_distribution<int64_t> delay_us(0, 3 * 32 * 5000);
  std::vector<TimePoint> deadlines;
  for (uint64_t i = 0; i < 2000; ++i) {
    const microseconds delay(delay_us(rng));
    deadlines.push_back(start + delay);
    wheel.Schedule(delay, &handler_, 0, i);
  }
  // A periodic driver, as a shard's steady_timer would be without NextDeadline().
  for (int turns = 0; wheel.size() > 0; ++turns) {
    ASSERT_LT(turns, 4 * 32) << "timers left after four turns";
    clock_.Advance(kTick);
    wheel.Advance();
  }
  ASSERT_EQ(handler_.fired().size(), deadlines.size());
  for (const Fired& f : handler_.fired()) {
    const TimePoint deadline = deadlines[f.cookie];
    EXPECT_GE(f.at, deadline) << "timer " << f.cookie << " fired early";
    EXPECT_LT(f.at - deadline, kTick) << "timer " << f.cookie << " fired a tick late";
  }
}

TEST_F(TimerWheelTest, FiresInDeadlineOrderWithinATickAndScheduleOrderOnTies) {
  TimerWheel wheel(clock_, kTick, 64);
  // All inside one 5 ms tick.
  wheel.Schedule(microseconds(5400), &handler_, 0, 4);
  wheel.Schedule(microseconds(5100), &handler_, 0, 1);
  wheel.Schedule(microseconds(5300), &handler_, 0, 3);
  wheel.Schedule(microseconds(5200), &handler_, 0, 2);
  wheel.Schedule(microseconds(5200), &handler_, 0, 22);  // tie with 2, scheduled later
  clock_.Advance(milliseconds(10));
  EXPECT_EQ(wheel.Advance(), 5u);
  EXPECT_THAT(handler_.cookies(), ElementsAre(1u, 2u, 22u, 3u, 4u));
}

TEST_F(TimerWheelTest, NullHandlerIsRefused) {
  TimerWheel wheel(clock_, kTick, 64);
  TimerId id = wheel.Schedule(milliseconds(1), nullptr, 0);
  EXPECT_FALSE(id.armed());
  EXPECT_EQ(wheel.size(), 0u);
}

// ---------------------------------------------------------------------------------------
// Cancel and stale ids.

TEST_F(TimerWheelTest, CancelDisarmsAndResetsTheId) {
  TimerWheel wheel(clock_, kTick, 64);
  TimerId keep = wheel.Schedule(milliseconds(20), &handler_, 0, 1);
  TimerId drop = wheel.Schedule(milliseconds(20), &handler_, 0, 2);
  EXPECT_EQ(wheel.size(), 2u);

  wheel.Cancel(&drop);
  EXPECT_FALSE(drop.armed());
  EXPECT_EQ(wheel.size(), 1u);
  wheel.Cancel(&drop);  // already reset: nothing happens
  wheel.Cancel(nullptr);
  EXPECT_EQ(wheel.size(), 1u);

  clock_.Advance(milliseconds(20));
  EXPECT_EQ(wheel.Advance(), 1u);
  EXPECT_THAT(handler_.cookies(), ElementsAre(1u));
  EXPECT_TRUE(keep.armed()) << "the caller's copy is not touched by firing";
}

TEST_F(TimerWheelTest, CancelOfAStaleIdLeavesTheNodesNewTimerAlone) {
  TimerWheel wheel(clock_, kTick, 64);
  TimerId first = wheel.Schedule(milliseconds(5), &handler_, 0, 1);
  const TimerId first_copy = first;
  clock_.Advance(milliseconds(5));
  ASSERT_EQ(wheel.Advance(), 1u);

  // The pooled node is handed out again; the old id must not reach the new timer.
  TimerId second = wheel.Schedule(milliseconds(5), &handler_, 0, 2);
  ASSERT_EQ(second.slot, first.slot) << "expected the free list to reuse the node";
  EXPECT_NE(second.generation, first.generation);

  wheel.Cancel(&first);  // fired: stale
  EXPECT_FALSE(first.armed());
  EXPECT_EQ(wheel.size(), 1u);

  // Cancelled, then its node reused: a kept copy of the cancelled id is stale too.
  TimerId cancelled_copy = second;
  wheel.Cancel(&second);
  TimerId third = wheel.Schedule(milliseconds(5), &handler_, 0, 3);
  ASSERT_EQ(third.slot, cancelled_copy.slot);
  wheel.Cancel(&cancelled_copy);
  TimerId first_again = first_copy;
  wheel.Cancel(&first_again);
  EXPECT_EQ(wheel.size(), 1u);

  // Out-of-range and never-armed ids are ignored as well.
  TimerId bogus{123456, 9};
  wheel.Cancel(&bogus);
  EXPECT_FALSE(bogus.armed());
  TimerId none;
  wheel.Cancel(&none);

  clock_.Advance(milliseconds(5));
  EXPECT_EQ(wheel.Advance(), 1u);
  EXPECT_THAT(handler_.cookies(), ElementsAre(1u, 3u));
}

// ---------------------------------------------------------------------------------------
// Handlers that use the wheel.

TEST_F(TimerWheelTest, HandlerReschedulesItself) {
  TimerWheel wheel(clock_, kTick, 16);
  const TimePoint start = clock_.Now();
  constexpr Duration kPeriod = milliseconds(37);  // not a multiple of the tick
  int remaining = 5;
  handler_.set_hook([&](uint32_t kind, uint64_t cookie) {
    // The firing timer no longer counts as live inside its own handler.
    EXPECT_EQ(wheel.size(), 0u);
    if (--remaining > 0) wheel.Schedule(kPeriod, &handler_, kind, cookie + 1);
  });
  wheel.Schedule(kPeriod, &handler_, 9, 0);

  for (int i = 0; i < 200 && wheel.size() > 0; ++i) {
    const std::optional<TimePoint> next = wheel.NextDeadline();
    ASSERT_TRUE(next.has_value());
    clock_.Set(*next);
    wheel.Advance();
  }
  ASSERT_EQ(handler_.fired().size(), 5u);
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(handler_.fired()[i].cookie, i);
    EXPECT_EQ(handler_.fired()[i].at, start + kPeriod * static_cast<int>(i + 1));
  }
}

TEST_F(TimerWheelTest, HandlerCancelsAnotherTimerDueInTheSameAdvance) {
  TimerWheel wheel(clock_, kTick, 64);
  TimerId second;
  TimerId later;
  handler_.set_hook([&](uint32_t, uint64_t cookie) {
    if (cookie == 1) {
      wheel.Cancel(&second);  // due in this very call, already taken out of its slot
      wheel.Cancel(&later);   // still waiting in its slot
    }
  });
  wheel.Schedule(milliseconds(1), &handler_, 0, 1);
  second = wheel.Schedule(milliseconds(2), &handler_, 0, 2);
  later = wheel.Schedule(milliseconds(50), &handler_, 0, 3);
  wheel.Schedule(milliseconds(3), &handler_, 0, 4);

  clock_.Advance(milliseconds(3));
  EXPECT_EQ(wheel.Advance(), 2u);
  EXPECT_THAT(handler_.cookies(), ElementsAre(1u, 4u));
  EXPECT_EQ(wheel.size(), 0u);
  EXPECT_EQ(wheel.NextDeadline(), std::nullopt);
  clock_.Advance(seconds(1));
  EXPECT_EQ(wheel.Advance(), 0u);
}

TEST_F(TimerWheelTest, CancelledDueNodeReusedInsideTheBatchIsNotFiredAsTheOldTimer) {
  TimerWheel wheel(clock_, kTick, 64);
  TimerId victim;
  TimerId replacement;
  handler_.set_hook([&](uint32_t, uint64_t cookie) {
    if (cookie == 1) {
      wheel.Cancel(&victim);
      // LIFO free list: this takes the victim's node while its batch entry is pending.
      replacement = wheel.Schedule(Duration::zero(), &handler_, 0, 99);
    }
  });
  wheel.Schedule(milliseconds(1), &handler_, 0, 1);
  victim = wheel.Schedule(milliseconds(2), &handler_, 0, 2);
  const uint32_t victim_slot = victim.slot;
  clock_.Advance(milliseconds(2));
  EXPECT_EQ(wheel.Advance(), 1u);
  EXPECT_EQ(replacement.slot, victim_slot);
  EXPECT_THAT(handler_.cookies(), ElementsAre(1u));

  // Scheduled from a handler: not fired by the call that ran the handler, but the wheel
  // says it is due now and the next call fires it.
  ASSERT_TRUE(wheel.NextDeadline().has_value());
  EXPECT_LE(*wheel.NextDeadline(), clock_.Now());
  EXPECT_EQ(wheel.Advance(), 1u);
  EXPECT_THAT(handler_.cookies(), ElementsAre(1u, 99u));
}

TEST_F(TimerWheelTest, ZeroDelayRescheduleLoopDoesNotLivelockOneAdvance) {
  TimerWheel wheel(clock_, kTick, 64);
  handler_.set_hook(
      [&](uint32_t, uint64_t cookie) { wheel.Schedule(Duration::zero(), &handler_, 0, cookie); });
  wheel.Schedule(Duration::zero(), &handler_, 0, 5);
  EXPECT_EQ(wheel.Advance(), 1u);
  EXPECT_EQ(wheel.Advance(), 1u);
  EXPECT_EQ(wheel.size(), 1u);
}

TEST_F(TimerWheelTest, AdvanceFromAHandlerIsRefusedAndTheOuterCallFinishes) {
  TimerWheel wheel(clock_, kTick, 64);
  size_t inner = 99;
  handler_.set_hook([&](uint32_t, uint64_t cookie) {
    if (cookie == 1) inner = wheel.Advance();
  });
  for (uint64_t i = 1; i <= 3; ++i) wheel.Schedule(milliseconds(i), &handler_, 0, i);
  clock_.Advance(milliseconds(3));
  EXPECT_EQ(wheel.Advance(), 3u);
  EXPECT_EQ(inner, 0u);
  EXPECT_THAT(handler_.cookies(), ElementsAre(1u, 2u, 3u));
}

TEST_F(TimerWheelTest, NextDeadlineFromAHandlerCoversTheRestOfTheBatch) {
  TimerWheel wheel(clock_, kTick, 64);
  std::optional<TimePoint> seen;
  handler_.set_hook([&](uint32_t, uint64_t cookie) {
    if (cookie == 1) seen = wheel.NextDeadline();
  });
  const TimePoint start = clock_.Now();
  wheel.Schedule(milliseconds(1), &handler_, 0, 1);
  wheel.Schedule(milliseconds(2), &handler_, 0, 2);
  clock_.Advance(milliseconds(4));
  EXPECT_EQ(wheel.Advance(), 2u);
  ASSERT_TRUE(seen.has_value());
  EXPECT_LE(*seen, start + milliseconds(2));
}

// ---------------------------------------------------------------------------------------
// Rounds: timers more than one turn out.

TEST_F(TimerWheelTest, FarTimersSharingASlotFireOnTheirOwnTurn) {
  // 8 slots of 1 ms: one turn is 8 ms. All of these hash to slot 3.
  TimerWheel wheel(clock_, milliseconds(1), 8);
  const TimePoint start = clock_.Now();
  wheel.Schedule(milliseconds(3), &handler_, 0, 3);
  wheel.Schedule(milliseconds(3 + 8), &handler_, 0, 11);
  wheel.Schedule(milliseconds(3 + 8 * 2), &handler_, 0, 19);
  wheel.Schedule(milliseconds(3 + 8 * 12), &handler_, 0, 99);
  wheel.Schedule(hours(1), &handler_, 0, 3600);

  for (int ms = 1; ms <= 100; ++ms) {
    clock_.Set(start + milliseconds(ms));
    wheel.Advance();
  }
  ASSERT_EQ(handler_.fired().size(), 4u);
  EXPECT_EQ(handler_.fired()[0], (Fired{0, 3, start + milliseconds(3)}));
  EXPECT_EQ(handler_.fired()[1], (Fired{0, 11, start + milliseconds(11)}));
  EXPECT_EQ(handler_.fired()[2], (Fired{0, 19, start + milliseconds(19)}));
  EXPECT_EQ(handler_.fired()[3], (Fired{0, 99, start + milliseconds(99)}));
  EXPECT_EQ(wheel.size(), 1u);

  clock_.Set(start + hours(1));
  EXPECT_EQ(wheel.Advance(), 1u);
  EXPECT_EQ(handler_.fired().back(), (Fired{0, 3600, start + hours(1)}));
}

TEST_F(TimerWheelTest, WheelWithOneSlotStillWorks) {
  TimerWheel wheel(clock_, milliseconds(1), 1);
  const TimePoint start = clock_.Now();
  wheel.Schedule(milliseconds(7), &handler_, 0, 7);
  wheel.Schedule(milliseconds(2), &handler_, 0, 2);
  for (int calls = 0; wheel.size() > 0; ++calls) {
    ASSERT_LT(calls, 10) << "the driver is not making progress";
    clock_.Set(*wheel.NextDeadline());
    wheel.Advance();
  }
  EXPECT_THAT(handler_.fired(), ElementsAre(Fired{0, 2, start + milliseconds(2)},
                                            Fired{0, 7, start + milliseconds(7)}));
}

TEST_F(TimerWheelTest, SlotCountIsRoundedUpToAPowerOfTwo) {
  // 10 slots become 16: a timer 12 ms out on a 1 ms tick must not alias onto 2 ms.
  TimerWheel wheel(clock_, milliseconds(1), 10);
  const TimePoint start = clock_.Now();
  wheel.Schedule(milliseconds(12), &handler_, 0, 12);
  wheel.Schedule(milliseconds(2), &handler_, 0, 2);
  for (int ms = 1; ms <= 20; ++ms) {
    clock_.Set(start + milliseconds(ms));
    wheel.Advance();
  }
  EXPECT_THAT(handler_.fired(), ElementsAre(Fired{0, 2, start + milliseconds(2)},
                                            Fired{0, 12, start + milliseconds(12)}));
}

// ---------------------------------------------------------------------------------------
// Late Advance().

TEST_F(TimerWheelTest, LateAdvanceFiresEverythingDueInDeadlineOrder) {
  // 16 slots of 1 ms: 16 ms per turn. Timers over five turns; the clock jumps 2.5 turns.
  TimerWheel wheel(clock_, milliseconds(1), 16);
  const TimePoint start = clock_.Now();
  std::vector<TimePoint> deadlines;
  for (uint64_t i = 0; i < 80; ++i) {
    // Scrambled order, sub-tick offsets, several per slot.
    const Duration delay = microseconds((i * 37 % 80) * 1000 + (i % 3) * 250);
    deadlines.push_back(start + delay);
    wheel.Schedule(delay, &handler_, 0, i);
  }
  clock_.Set(start + microseconds(40500));
  const size_t fired = wheel.Advance();

  size_t expected = 0;
  for (TimePoint d : deadlines) expected += d <= clock_.Now() ? 1 : 0;
  EXPECT_EQ(fired, expected);
  ASSERT_EQ(handler_.fired().size(), expected);
  for (size_t i = 0; i < handler_.fired().size(); ++i) {
    EXPECT_LE(deadlines[handler_.fired()[i].cookie], clock_.Now());
    if (i > 0) {
      EXPECT_LE(deadlines[handler_.fired()[i - 1].cookie], deadlines[handler_.fired()[i].cookie])
          << "out of order at " << i;
    }
  }
  EXPECT_EQ(wheel.size(), deadlines.size() - expected);

  // The rest still fires, each exactly at its deadline, driven by NextDeadline().
  handler_.clear();
  for (int calls = 0; wheel.size() > 0; ++calls) {
    ASSERT_LT(calls, 1000) << "the driver is not making progress";
    clock_.Set(*wheel.NextDeadline());
    wheel.Advance();
  }
  EXPECT_EQ(handler_.fired().size(), deadlines.size() - expected);
  for (const Fired& f : handler_.fired()) EXPECT_EQ(f.at, deadlines[f.cookie]);
}

TEST_F(TimerWheelTest, AdvanceAfterAYearOfSilenceVisitsEachSlotOnce) {
  // 6.3e9 ticks go by. Stepping tick by tick would take minutes; the call must be as quick
  // as one turn.
  TimerWheel wheel(clock_, kTick, 4096);
  const TimePoint start = clock_.Now();
  wheel.Schedule(seconds(1), &handler_, 0, 1);
  wheel.Schedule(hours(24 * 200), &handler_, 0, 2);
  wheel.Schedule(hours(24 * 400), &handler_, 0, 3);
  clock_.Set(start + hours(24 * 365));
  EXPECT_EQ(wheel.Advance(), 2u);
  EXPECT_THAT(handler_.cookies(), ElementsAre(1u, 2u));

  // The wheel keeps working from the new time on.
  handler_.clear();
  wheel.Schedule(milliseconds(12), &handler_, 0, 4);
  clock_.Advance(milliseconds(12));
  EXPECT_EQ(wheel.Advance(), 1u);
  clock_.Set(start + hours(24 * 400));
  EXPECT_EQ(wheel.Advance(), 1u);
  EXPECT_THAT(handler_.cookies(), ElementsAre(4u, 3u));
}

TEST_F(TimerWheelTest, ClockSetBackwardsFiresNothingEarly) {
  TimerWheel wheel(clock_, kTick, 64);
  const TimePoint start = clock_.Now();
  clock_.Set(start + seconds(1));
  wheel.Advance();
  wheel.Schedule(milliseconds(10), &handler_, 0, 1);
  clock_.Set(start);
  EXPECT_EQ(wheel.Advance(), 0u);
  clock_.Set(start + seconds(1) + milliseconds(10));
  EXPECT_EQ(wheel.Advance(), 1u);

  // Scheduled while the clock reads earlier than the wheel has already got to: its tick is
  // behind the wheel's, yet it still fires on reaching its deadline, not a turn later.
  clock_.Set(start);
  const TimerId behind = wheel.Schedule(milliseconds(10), &handler_, 0, 2);
  ASSERT_TRUE(behind.armed());
  ASSERT_TRUE(wheel.NextDeadline().has_value());
  EXPECT_LE(*wheel.NextDeadline(), start + milliseconds(10));
  clock_.Set(start + milliseconds(10));
  EXPECT_EQ(wheel.Advance(), 1u);
  EXPECT_THAT(handler_.cookies(), ElementsAre(1u, 2u));
}

// ---------------------------------------------------------------------------------------
// NextDeadline().

TEST_F(TimerWheelTest, NextDeadlineIsTheEarliestDeadline) {
  TimerWheel wheel(clock_, kTick, 64);
  const TimePoint start = clock_.Now();
  EXPECT_EQ(wheel.NextDeadline(), std::nullopt);

  TimerId late = wheel.Schedule(milliseconds(200), &handler_, 0, 1);
  EXPECT_EQ(wheel.NextDeadline(), start + milliseconds(200));
  TimerId early = wheel.Schedule(microseconds(7300), &handler_, 0, 2);
  EXPECT_EQ(wheel.NextDeadline(), start + microseconds(7300));

  wheel.Cancel(&early);
  EXPECT_EQ(wheel.NextDeadline(), start + milliseconds(200));
  wheel.Cancel(&late);
  EXPECT_EQ(wheel.NextDeadline(), std::nullopt);
}

TEST_F(TimerWheelTest, NextDeadlineAfterAPartialTickIsInTheFuture) {
  TimerWheel wheel(clock_, kTick, 64);
  const TimePoint start = clock_.Now();
  // Same tick [5 ms, 10 ms): the first fires, the second is still ahead.
  wheel.Schedule(microseconds(5500), &handler_, 0, 1);
  wheel.Schedule(microseconds(8500), &handler_, 0, 2);
  clock_.Set(start + microseconds(6000));
  EXPECT_EQ(wheel.Advance(), 1u);
  // Not the tick's start (in the past, which would make the driver spin) but the deadline.
  EXPECT_EQ(wheel.NextDeadline(), start + microseconds(8500));
}

TEST_F(TimerWheelTest, NextDeadlineForOnlyFarTimersIsEarlyButInTheFuture) {
  // 64 slots of 5 ms: a turn is 320 ms.
  TimerWheel wheel(clock_, kTick, 64);
  const TimePoint start = clock_.Now();
  const TimePoint deadline = start + seconds(5) + microseconds(1234);
  wheel.Schedule(deadline - start, &handler_, 0, 1);

  // A driver that trusts NextDeadline(): never past the deadline, never standing still,
  // and only a few early wake-ups on the way (one per turn at most).
  int wakeups = 0;
  while (wheel.size() > 0) {
    const std::optional<TimePoint> next = wheel.NextDeadline();
    ASSERT_TRUE(next.has_value());
    ASSERT_LE(*next, deadline);
    ASSERT_GT(*next, clock_.Now()) << "the driver would spin";
    clock_.Set(*next);
    wheel.Advance();
    ASSERT_LT(++wakeups, 40);
  }
  EXPECT_THAT(handler_.fired(), ElementsAre(Fired{0, 1, deadline}));
}

TEST_F(TimerWheelTest, NextDeadlineBehindALongFarListIsStillNeverLate) {
  // More next-turn timers in the nearest slot than NextDeadline() will look at.
  TimerWheel wheel(clock_, milliseconds(1), 16);
  const TimePoint start = clock_.Now();
  for (uint64_t i = 0; i < 500; ++i) {
    wheel.Schedule(milliseconds(1 + 16 * (1 + i % 4)), &handler_, 0, i);
  }
  wheel.Schedule(milliseconds(9), &handler_, 0, 1000);
  const std::optional<TimePoint> next = wheel.NextDeadline();
  ASSERT_TRUE(next.has_value());
  EXPECT_LE(*next, start + milliseconds(9));
  EXPECT_GT(*next, clock_.Now());
}

// ---------------------------------------------------------------------------------------
// Load.

TEST_F(TimerWheelTest, HundredThousandRandomTimersFireOnceAtTheirDeadlineInOrder) {
  TimerWheel wheel(clock_, kTick, 1024);  // one turn = 5.12 s
  const TimePoint start = clock_.Now();
  constexpr size_t kTimers = 100'000;
  std::mt19937_64 rng(42);
  // Up to about four turns, microsecond resolution so many share a tick, some exactly.
  std::uniform_int_distribution<int64_t> delay_us(0, 20'000'000);
  std::vector<TimePoint> deadlines(kTimers);
  std::vector<TimerId> ids(kTimers);
  for (size_t i = 0; i < kTimers; ++i) {
    const Duration delay = microseconds(delay_us(rng) / 100 * 100);
    deadlines[i] = start + delay;
    ids[i] = wheel.Schedule(delay, &handler_, 0, i);
  }
  // Cancel every seventh.
  std::vector<bool> cancelled(kTimers, false);
  for (size_t i = 0; i < kTimers; i += 7) {
    wheel.Cancel(&ids[i]);
    cancelled[i] = true;
  }
  const size_t armed = kTimers - (kTimers + 6) / 7;
  EXPECT_EQ(wheel.size(), armed);

  std::vector<size_t> order;
  for (size_t i = 0; i < kTimers; ++i) {
    if (!cancelled[i]) order.push_back(i);
  }
  // What the wheel must produce: deadline order, Schedule() order on ties.
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return deadlines[a] < deadlines[b]; });

  size_t next_expected = 0;
  for (size_t calls = 0; wheel.size() > 0; ++calls) {
    ASSERT_LT(calls, 2 * kTimers) << "the driver is not making progress";
    const std::optional<TimePoint> next = wheel.NextDeadline();
    ASSERT_TRUE(next.has_value());
    ASSERT_LE(*next, deadlines[order[next_expected]]) << "NextDeadline() later than the truth";
    clock_.Set(*next);
    next_expected += wheel.Advance();
  }
  ASSERT_EQ(next_expected, armed);
  ASSERT_EQ(handler_.fired().size(), armed);
  std::vector<uint32_t> times_fired(kTimers, 0);
  for (size_t i = 0; i < armed; ++i) {
    const Fired& f = handler_.fired()[i];
    ++times_fired[f.cookie];
    ASSERT_EQ(f.cookie, order[i]) << "firing " << i << " out of order";
    ASSERT_EQ(f.at, deadlines[f.cookie]) << "a NextDeadline() driver fires exactly on time";
  }
  for (size_t i = 0; i < kTimers; ++i) ASSERT_EQ(times_fired[i], cancelled[i] ? 0u : 1u) << i;
}

TEST_F(TimerWheelTest, RandomJumpsNeverFireEarlyOrTwiceAndKeepDeadlineOrder) {
  TimerWheel wheel(clock_, milliseconds(1), 64);  // one turn = 64 ms
  const TimePoint start = clock_.Now();
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<int64_t> delay_us(0, 300'000);
  std::uniform_int_distribution<int64_t> step_us(0, 150'000);  // up to ~2.3 turns at once
  std::vector<TimePoint> deadlines;
  std::vector<uint32_t> times_fired;
  TimePoint last_deadline_fired = start;
  // Handlers keep adding timers while the clock jumps about.
  handler_.set_hook([&](uint32_t, uint64_t cookie) {
    ++times_fired[cookie];
    EXPECT_GE(clock_.Now(), deadlines[cookie]);
    EXPECT_GE(deadlines[cookie], last_deadline_fired);
    last_deadline_fired = deadlines[cookie];
    if (cookie % 3 == 0 && deadlines.size() < 30'000) {
      const Duration delay = microseconds(delay_us(rng));
      deadlines.push_back(clock_.Now() + delay);
      times_fired.push_back(0);
      wheel.Schedule(delay, &handler_, 0, deadlines.size() - 1);
    }
  });
  for (size_t i = 0; i < 10'000; ++i) {
    const Duration delay = microseconds(delay_us(rng));
    deadlines.push_back(start + delay);
    times_fired.push_back(0);
    wheel.Schedule(delay, &handler_, 0, i);
  }
  for (int calls = 0; wheel.size() > 0; ++calls) {
    ASSERT_LT(calls, 100'000) << "timers that never fire";
    clock_.Advance(microseconds(step_us(rng)));
    wheel.Advance();
    // Whatever is left is in the future.
    const std::optional<TimePoint> next = wheel.NextDeadline();
    if (next) {
      for (size_t i = 0; i < deadlines.size(); ++i) {
        if (times_fired[i] == 0) {
          ASSERT_LE(*next, deadlines[i]);
        }
      }
    }
  }
  for (size_t i = 0; i < deadlines.size(); ++i) ASSERT_EQ(times_fired[i], 1u) << i;
}

TEST_F(TimerWheelTest, SizeCountsArmedTimers) {
  TimerWheel wheel(clock_, kTick, 64);
  EXPECT_EQ(wheel.size(), 0u);
  TimerId a = wheel.Schedule(milliseconds(10), &handler_, 0, 1);
  wheel.Schedule(milliseconds(20), &handler_, 0, 2);
  wheel.Schedule(seconds(100), &handler_, 0, 3);
  EXPECT_EQ(wheel.size(), 3u);
  wheel.Cancel(&a);
  EXPECT_EQ(wheel.size(), 2u);
  clock_.Advance(milliseconds(20));
  wheel.Advance();
  EXPECT_EQ(wheel.size(), 1u);
  EXPECT_EQ(wheel.tick(), kTick);
  EXPECT_EQ(&wheel.clock(), &clock_);
}

// ---------------------------------------------------------------------------------------
// Pooling.

// Counts expiries and nothing else, so the allocation count below is the wheel's alone.
class CountingHandler final : public TimerHandler {
 public:
  void OnTimer(uint32_t, uint64_t) override { ++fired; }
  uint64_t fired = 0;
};

TEST_F(TimerWheelTest, SteadyStateAllocatesNothing) {
  TimerWheel wheel(clock_, kTick, 256);
  CountingHandler counter;
  std::vector<TimerId> ids(4096);
  std::mt19937_64 rng(3);
  std::uniform_int_distribution<int64_t> delay_us(0, 3'000'000);  // over two turns

  // Churn: cancel random ids and mostly re-arm them, advance, fire, ask for the deadline.
  auto churn = [&](int rounds) {
    for (int r = 0; r < rounds; ++r) {
      for (int k = 0; k < 512; ++k) {
        TimerId& id = ids[rng() % ids.size()];
        wheel.Cancel(&id);
        if (rng() % 4 != 0) id = wheel.Schedule(microseconds(delay_us(rng)), &counter, 0);
      }
      clock_.Advance(microseconds(1500));
      wheel.Advance();
      (void)wheel.NextDeadline();
    }
  };
  if (!B2BUA_COUNT_ALLOCATIONS) GTEST_SKIP() << "allocations are not counted under ASan";
  churn(2000);  // warm-up: the pool and the batch vector grow to their peak
  const uint64_t fired_in_warm_up = counter.fired;
  const size_t before = g_allocations.load();
  churn(2000);
  const size_t after = g_allocations.load();
  EXPECT_GT(counter.fired, fired_in_warm_up) << "the churn must fire timers too";
  EXPECT_EQ(after - before, 0u) << "the wheel allocated in steady state";
}

}  // namespace
}  // namespace b2bua::proto
