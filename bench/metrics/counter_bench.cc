// Cost of the per-shard counters (b2bua/shard_counters.h) on the data plane, and of a
// scrape (metrics/exporter.h) on the exporter thread.
//
// Counter::Inc is a relaxed load + store with no locked instruction, so it should cost
// about as much as a plain increment; BM_AtomicFetchAdd shows the locked alternative it
// avoids. With a reader thread polling the same counter (an exporter scrape in a tight
// loop, far worse than the real once-per-15s), the cache line bounces between cores and
// the write gets slower: that is the upper bound a scrape can impose on a shard.

#include <benchmark/benchmark.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "b2bua/shard_counters.h"
#include "metrics/exporter.h"
#include "proto/sip_message.h"

namespace b2bua {
namespace {

// Polls `counter` until told to stop, the way the exporter reads it, only without pause.
class BusyReader {
 public:
  explicit BusyReader(const Counter& counter)
      : thread_([this, &counter] {
          uint64_t seen = 0;
          while (!stop_.load(std::memory_order_relaxed)) seen += counter.Get();
          benchmark::DoNotOptimize(seen);
        }) {}
  ~BusyReader() {
    stop_.store(true, std::memory_order_relaxed);
    thread_.join();
  }

 private:
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

/** Measure Counter::Inc on one thread, nobody reading: the shard's steady-state cost. */
void BM_CounterInc(benchmark::State& state) {
  Counter counter;
  for (auto _ : state) {
    counter.Inc();
    benchmark::ClobberMemory();
  }
  benchmark::DoNotOptimize(counter.Get());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_CounterInc);

/** Measure Counter::Inc while another thread calls Get() on the same counter in a loop. */
void BM_CounterIncWithReader(benchmark::State& state) {
  Counter counter;
  BusyReader reader(counter);
  for (auto _ : state) {
    counter.Inc();
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_CounterIncWithReader)->UseRealTime();

/** Measure a locked std::atomic fetch_add, the instruction Counter::Inc avoids. */
void BM_AtomicFetchAdd(benchmark::State& state) {
  std::atomic<uint64_t> value{0};
  for (auto _ : state) value.fetch_add(1, std::memory_order_relaxed);
  benchmark::DoNotOptimize(value.load());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_AtomicFetchAdd);

/** Measure FixedHistogram::Observe on call_setup_seconds (bucket search + two Incs). */
void BM_HistogramObserve(benchmark::State& state) {
  auto shard = std::make_unique<ShardCounters>();
  // Spread over the buckets so the linear bound search is not always the first compare.
  const double samples[] = {0.004, 0.03, 0.2, 0.7, 3.0, 12.0};
  size_t i = 0;
  for (auto _ : state) {
    shard->call_setup_seconds.Observe(samples[i]);
    i = (i + 1) % std::size(samples);
  }
  benchmark::DoNotOptimize(shard->call_setup_seconds.bucket(0));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_HistogramObserve);

/** Measure MetricsRegistry::Render (collect, sum, serialize) for N shards, one scrape. */
void BM_Render(benchmark::State& state) {
  const size_t shard_count = static_cast<size_t>(state.range(0));
  std::vector<std::unique_ptr<ShardCounters>> shards;
  std::vector<const ShardCounters*> views;
  for (size_t i = 0; i < shard_count; ++i) {
    shards.push_back(std::make_unique<ShardCounters>());
    // Non-zero values, so number formatting is measured as in production.
    ShardCounters& c = *shards.back();
    c.requests_received[static_cast<size_t>(proto::Method::kInvite)].Inc(123456 + i);
    c.responses_sent[2].Inc(98765);
    c.calls_ended[static_cast<size_t>(CallOutcome::kAnswered)].Inc(4242);
    c.calls_active.Set(321);
    c.call_setup_seconds.Observe(0.3);
    c.redirects_received[static_cast<size_t>(RedirectCode::k302)].Inc(17);
  }
  for (const auto& shard : shards) views.push_back(shard.get());
  metrics::MetricsRegistry registry(views, "bench");

  size_t bytes = 0;
  for (auto _ : state) {
    std::string text = registry.Render();
    bytes = text.size();
    benchmark::DoNotOptimize(text);
  }
  state.counters["text_bytes"] = static_cast<double>(bytes);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bytes));
}
BENCHMARK(BM_Render)->Arg(1)->Arg(2)->Arg(8)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace b2bua
