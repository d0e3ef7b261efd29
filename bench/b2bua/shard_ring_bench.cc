// Speed of b2bua/spsc_ring.h and b2bua/shard_mailbox.h: items per second through one ring
// on one thread (the cost of the operations alone) and across two threads (what a shard
// handoff sees, cache-line transfers included), and what the wake-pending protocol adds.
//
// The item is a 16-byte move-only handle, like an Envelope's owning pointer: the numbers are
// the queue's, not a payload copy's. Cross-thread runs need two free cores; on a busy
// machine they measure the scheduler as much as the ring.

#include <benchmark/benchmark.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <thread>
#include <utility>

#include "b2bua/shard_mailbox.h"
#include "b2bua/spsc_ring.h"

namespace b2bua {
namespace {

struct Handoff {
  uint64_t sequence = 0;
  std::unique_ptr<int> payload;  // stays null: moving it is what a real handoff pays
};

/** Measure TryPush + PopBatch on one thread, `batch` items per round trip. */
void BM_RingPushPopSameThread(benchmark::State& state) {
  const size_t batch = static_cast<size_t>(state.range(0));
  SpscRing<Handoff> ring(1024);
  uint64_t sequence = 0;
  uint64_t sum = 0;
  for (auto _ : state) {
    for (size_t i = 0; i < batch; ++i) ring.TryPush(Handoff{sequence++, nullptr});
    ring.PopBatch([&](Handoff&& h) { sum += h.sequence; }, batch);
  }
  benchmark::DoNotOptimize(sum);
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * batch));
}
BENCHMARK(BM_RingPushPopSameThread)->ArgName("batch")->Arg(1)->Arg(32)->Arg(256);

/** Measure TryPop one item at a time against PopBatch, on one thread. */
void BM_RingPushTryPopSameThread(benchmark::State& state) {
  SpscRing<Handoff> ring(1024);
  uint64_t sequence = 0;
  uint64_t sum = 0;
  for (auto _ : state) {
    ring.TryPush(Handoff{sequence++, nullptr});
    sum += ring.TryPop()->sequence;
  }
  benchmark::DoNotOptimize(sum);
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_RingPushTryPopSameThread);

/** Measure one ring across two threads: this thread pushes, a second pops in batches of 256. */
void BM_RingCrossThread(benchmark::State& state) {
  SpscRing<Handoff> ring(static_cast<size_t>(state.range(0)));
  std::atomic<bool> done{false};
  uint64_t received = 0;
  std::thread consumer([&] {
    for (;;) {
      const size_t n = ring.PopBatch([&](Handoff&& h) { received += h.sequence != 0; }, 256);
      if (n != 0) continue;
      if (done.load(std::memory_order_acquire) && ring.SizeApprox() == 0) return;
      std::this_thread::yield();
    }
  });
  uint64_t sequence = 1;
  uint64_t full = 0;
  for (auto _ : state) {
    Handoff h{sequence++, nullptr};
    while (!ring.TryPush(std::move(h))) {
      ++full;
      std::this_thread::yield();
    }
  }
  done.store(true, std::memory_order_release);
  consumer.join();
  if (received != sequence - 1) state.SkipWithError("items lost");
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.counters["full_retries"] = static_cast<double>(full);
}
BENCHMARK(BM_RingCrossThread)->ArgName("capacity")->Arg(256)->Arg(4096)->UseRealTime();

/** Measure ShardMailbox Post (with the wake-pending exchange) + Drain on one thread. */
void BM_MailboxPostDrainSameThread(benchmark::State& state) {
  const size_t batch = static_cast<size_t>(state.range(0));
  ShardMailbox<Handoff> mailbox(2, 1024);
  uint64_t sequence = 0;
  uint64_t sum = 0;
  uint64_t wake_ups = 0;
  for (auto _ : state) {
    for (size_t i = 0; i < batch; ++i) {
      bool wake = false;
      mailbox.Post(0, 1, Handoff{sequence++, nullptr}, &wake);
      wake_ups += wake;
    }
    mailbox.Drain(1, [&](Handoff&& h) { sum += h.sequence; }, batch);
  }
  benchmark::DoNotOptimize(sum);
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * batch));
  state.counters["wake_ups_per_item"] =
      static_cast<double>(wake_ups) / static_cast<double>(state.iterations() * batch);
}
BENCHMARK(BM_MailboxPostDrainSameThread)->ArgName("batch")->Arg(1)->Arg(32)->Arg(256);

/** Measure a mailbox handoff across two threads, the consumer draining only when woken. */
void BM_MailboxCrossThread(benchmark::State& state) {
  ShardMailbox<Handoff> mailbox(2, static_cast<size_t>(state.range(0)));
  // 1: Post(..., &wake) per item. More: that many Post()s, then one ClaimWakeUp().
  const uint64_t posts_per_claim = static_cast<uint64_t>(state.range(1));
  // Stands in for asio::post: a wake-up is a count the consumer runs down, one Drain each.
  std::atomic<uint64_t> wake_ups_posted{0};
  std::atomic<bool> done{false};
  uint64_t received = 0;
  std::thread consumer([&] {
    uint64_t wake_ups_run = 0;
    for (;;) {
      if (wake_ups_run < wake_ups_posted.load(std::memory_order_acquire)) {
        ++wake_ups_run;
        mailbox.Drain(1, [&](Handoff&& h) { received += h.sequence != 0; }, 1 << 20);
        continue;
      }
      if (done.load(std::memory_order_acquire) &&
          wake_ups_run == wake_ups_posted.load(std::memory_order_acquire)) {
        return;
      }
      std::this_thread::yield();
    }
  });
  auto post_wake_up = [&] { wake_ups_posted.fetch_add(1, std::memory_order_release); };
  uint64_t sequence = 1;
  uint64_t unclaimed = 0;
  for (auto _ : state) {
    Handoff h{sequence++, nullptr};
    if (posts_per_claim == 1) {
      bool wake = false;
      while (!mailbox.Post(0, 1, std::move(h), &wake)) std::this_thread::yield();
      if (wake) post_wake_up();
      continue;
    }
    while (!mailbox.Post(0, 1, std::move(h))) {
      // Full: claim for what is queued before waiting, or nobody drains it.
      if (unclaimed > 0 && mailbox.ClaimWakeUp(1)) post_wake_up();
      unclaimed = 0;
      std::this_thread::yield();
    }
    if (++unclaimed == posts_per_claim) {
      if (mailbox.ClaimWakeUp(1)) post_wake_up();
      unclaimed = 0;
    }
  }
  if (unclaimed > 0 && mailbox.ClaimWakeUp(1)) post_wake_up();
  done.store(true, std::memory_order_release);
  consumer.join();
  if (received != sequence - 1) state.SkipWithError("items lost");
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.counters["items_per_wake_up"] =
      static_cast<double>(sequence - 1) / static_cast<double>(wake_ups_posted.load());
}
BENCHMARK(BM_MailboxCrossThread)
    ->ArgNames({"capacity", "posts_per_claim"})
    ->Args({256, 1})
    ->Args({4096, 1})
    ->Args({4096, 32})
    ->UseRealTime();

}  // namespace
}  // namespace b2bua
