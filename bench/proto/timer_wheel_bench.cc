// Speed of proto/timer_wheel: the cost of arming, disarming and firing a timer, swept over
// the number of live timers (->Arg: 1k, 10k, 100k). A hashed wheel should show the same
// cost per operation whatever that number is.
//
// Time is a FakeClock moved by hand, so the numbers measure the wheel, not the clock. The
// delays are SIP-like: T1 retransmissions to Timer B/C, 10 ms to 64 s, which on the default
// 5 ms x 4096-slot wheel (20.48 s per turn) puts a share of the timers a few turns out.

#include <benchmark/benchmark.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

#include "proto/clock.h"
#include "proto/timer_wheel.h"

namespace b2bua::proto {
namespace {

constexpr Duration kTick = std::chrono::milliseconds(5);
constexpr size_t kSlots = 4096;

// Precomputed, so the timed loops do not measure the random number generator.
std::vector<Duration> Delays(size_t count, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> ms(10, 64'000);
  std::vector<Duration> delays(count);
  for (Duration& d : delays) d = std::chrono::milliseconds(ms(rng));
  return delays;
}

// Does nothing, as cheaply as possible: what is measured is the wheel's bookkeeping.
class NullHandler final : public TimerHandler {
 public:
  void OnTimer(uint32_t, uint64_t cookie) override { benchmark::DoNotOptimize(cookie); }
};

// Re-arms every timer that fires with the next precomputed delay, so the number of live
// timers stays constant while the clock runs.
class RearmingHandler final : public TimerHandler {
 public:
  RearmingHandler(TimerWheel& wheel, const std::vector<Duration>& delays)
      : wheel_(wheel), delays_(delays) {}
  void OnTimer(uint32_t kind, uint64_t cookie) override {
    ++fired_;
    wheel_.Schedule(delays_[next_++ % delays_.size()], this, kind, cookie);
  }
  uint64_t fired() const { return fired_; }

 private:
  TimerWheel& wheel_;
  const std::vector<Duration>& delays_;
  size_t next_ = 0;
  uint64_t fired_ = 0;
};

/** Measure Schedule() + Cancel() of one timer on a wheel holding state.range(0) others. */
void BM_ScheduleCancel(benchmark::State& state) {
  const size_t live = static_cast<size_t>(state.range(0));
  FakeClock clock;
  TimerWheel wheel(clock, kTick, kSlots);
  NullHandler handler;
  for (const Duration& d : Delays(live, 1)) wheel.Schedule(d, &handler, 0);
  const std::vector<Duration> delays = Delays(4096, 2);
  // One pass outside the timing, so the pool already holds the node reused below.
  TimerId warm = wheel.Schedule(delays[0], &handler, 0);
  wheel.Cancel(&warm);

  size_t i = 0;
  for (auto _ : state) {
    TimerId id = wheel.Schedule(delays[i & 4095], &handler, 1, i);
    ++i;
    benchmark::DoNotOptimize(id);
    wheel.Cancel(&id);
  }
  if (wheel.size() != live) state.SkipWithError("live timer count drifted");
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.counters["live"] = static_cast<double>(wheel.size());
}
BENCHMARK(BM_ScheduleCancel)->ArgName("live")->Arg(1'000)->Arg(10'000)->Arg(100'000);

/** Measure firing and re-arming: one tick of Advance() per iteration, items = timers fired. */
void BM_AdvanceFireRearm(benchmark::State& state) {
  const size_t live = static_cast<size_t>(state.range(0));
  FakeClock clock;
  TimerWheel wheel(clock, kTick, kSlots);
  const std::vector<Duration> delays = Delays(4096, 3);
  RearmingHandler handler(wheel, delays);
  for (const Duration& d : Delays(live, 4)) wheel.Schedule(d, &handler, 0);
  // A full timer lifetime (64 s) outside the timing: the pool and the batch vector reach
  // their steady size and the load spreads evenly over the slots.
  for (int i = 0; i < 64'000 / 5; ++i) {
    clock.Advance(kTick);
    wheel.Advance();
  }

  const uint64_t fired_before = handler.fired();
  for (auto _ : state) {
    clock.Advance(kTick);
    benchmark::DoNotOptimize(wheel.Advance());
  }
  const uint64_t fired = handler.fired() - fired_before;
  state.SetItemsProcessed(static_cast<int64_t>(fired));
  state.counters["fired_per_tick"] =
      static_cast<double>(fired) / static_cast<double>(state.iterations());
}
BENCHMARK(BM_AdvanceFireRearm)->ArgName("live")->Arg(1'000)->Arg(10'000)->Arg(100'000);

/** Measure NextDeadline(), asked once per loop turn by the shard's driving timer. */
void BM_NextDeadline(benchmark::State& state) {
  const size_t live = static_cast<size_t>(state.range(0));
  FakeClock clock;
  TimerWheel wheel(clock, kTick, kSlots);
  NullHandler handler;
  for (const Duration& d : Delays(live, 5)) wheel.Schedule(d, &handler, 0);
  for (auto _ : state) benchmark::DoNotOptimize(wheel.NextDeadline());
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_NextDeadline)->ArgName("live")->Arg(1'000)->Arg(10'000)->Arg(100'000);

}  // namespace
}  // namespace b2bua::proto
