#include "b2bua/call_limits.h"

#include <chrono>

#include "absl/hash/hash.h"

namespace b2bua {

bool RateLimiter::TryAcquire(proto::TimePoint now, uint32_t per_second) {
  if (per_second == 0) return true;
  const int64_t now_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count();
  const int64_t interval_ns = 1'000'000'000 / per_second;
  // One second of tokens may be spent at once.
  const int64_t burst_ns = 1'000'000'000 - interval_ns;
  int64_t arrival = theoretical_arrival_ns_.load(std::memory_order_relaxed);
  for (;;) {
    const int64_t base = arrival > now_ns ? arrival : now_ns;
    if (base - now_ns > burst_ns) return false;
    if (theoretical_arrival_ns_.compare_exchange_weak(arrival, base + interval_ns,
                                                      std::memory_order_relaxed))
      return true;
  }
}

bool ConcurrencyLimit::TryAcquire(uint32_t max) {
  const uint32_t before = active_.fetch_add(1, std::memory_order_relaxed);
  if (max == 0 || before < max) return true;
  active_.fetch_sub(1, std::memory_order_relaxed);
  return false;
}

SourceCallCounter::SourceCallCounter()
    : counters_(new std::atomic<uint32_t>[kRows * kRowSize]) {
  for (size_t i = 0; i < kRows * kRowSize; ++i) counters_[i].store(0, std::memory_order_relaxed);
}

SourceCallCounter::Slots SourceCallCounter::SlotsFor(const proto::NetAddress& source) {
  proto::NetAddress ip = source;
  ip.set_port(0);
  const uint64_t h = absl::HashOf(ip);
  Slots slots;
  for (size_t row = 0; row < kRows; ++row)
    slots[row] = row * kRowSize + static_cast<size_t>((h >> (row * kRowBits)) & (kRowSize - 1));
  return slots;
}

bool SourceCallCounter::TryAcquire(const proto::NetAddress& source, uint32_t max) {
  const Slots slots = SlotsFor(source);
  uint32_t smallest = UINT32_MAX;
  for (size_t slot : slots) {
    const uint32_t before = counters_[slot].fetch_add(1, std::memory_order_relaxed);
    if (before < smallest) smallest = before;
  }
  if (max == 0 || smallest < max) return true;
  for (size_t slot : slots) counters_[slot].fetch_sub(1, std::memory_order_relaxed);
  return false;
}

void SourceCallCounter::Release(const proto::NetAddress& source) {
  for (size_t slot : SlotsFor(source)) counters_[slot].fetch_sub(1, std::memory_order_relaxed);
}

uint32_t SourceCallCounter::Count(const proto::NetAddress& source) const {
  uint32_t smallest = UINT32_MAX;
  for (size_t slot : SlotsFor(source)) {
    const uint32_t value = counters_[slot].load(std::memory_order_relaxed);
    if (value < smallest) smallest = value;
  }
  return smallest;
}

}  // namespace b2bua
