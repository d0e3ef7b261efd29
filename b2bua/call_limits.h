#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>

#include "proto/clock.h"
#include "proto/net_address.h"

namespace b2bua {

// Limits on new calls that must hold across every shard: a source's calls, a route's calls
// and the call rates land on whichever shard their Call-ID hashes to. The state is a few
// atomics updated once when a call starts and once when it ends, never per packet, and no
// lock is taken.

/// A token bucket of `per_second` tokens a second holding at most one second's worth, kept
/// as one atomic "theoretical arrival time" (GCRA, RFC 2697's sibling from ATM): safe from
/// any thread, lock-free, exact.
class RateLimiter {
 public:
  /// Safe from any thread. Takes a token when one is there; `per_second` 0 always passes.
  bool TryAcquire(proto::TimePoint now, uint32_t per_second);

 private:
  // Nanoseconds on the steady clock when the bucket would be full again.
  std::atomic<int64_t> theoretical_arrival_ns_{0};
};

/// Concurrent calls against a ceiling. Safe from any thread.
class ConcurrencyLimit {
 public:
  /// Takes a slot when fewer than `max` are taken; `max` 0 always passes (and counts).
  bool TryAcquire(uint32_t max);
  void Release() { active_.fetch_sub(1, std::memory_order_relaxed); }
  uint32_t active() const { return active_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint32_t> active_{0};
};

/// A route's shared load: calls up now and its call-rate bucket. Carried over from one
/// config snapshot to the next for a route of the same prefix, so a reload resets nothing.
struct RouteLoad {
  ConcurrencyLimit calls;
  RateLimiter rate;
};

/// Concurrent calls per source address, in a count-min sketch: each address increments
/// one counter in each of four rows of 2^16, picked by four 16-bit slices of its hash, and
/// its count is the smallest of the four. Fixed memory (1 MiB) whatever the number of
/// sources, so spoofed addresses cannot grow it; lock-free. It never under-counts; it
/// over-counts a source only when all four of its counters are shared with other sources
/// holding calls (with K such sources, odds about (K / 65536)^4: 1 in 70,000 at 4,000).
/// Calls from one source starting on several shards in the same instant may let one extra
/// call through per extra shard. Safe from any thread.
class SourceCallCounter {
 public:
  SourceCallCounter();
  /// Counts a call from `source` (port ignored) unless that makes more than `max`;
  /// false, with nothing counted, when it would.
  bool TryAcquire(const proto::NetAddress& source, uint32_t max);
  /// Ends a call counted by TryAcquire().
  void Release(const proto::NetAddress& source);
  /// The estimate for `source`.
  uint32_t Count(const proto::NetAddress& source) const;

 private:
  static constexpr size_t kRowBits = 16;
  static constexpr size_t kRowSize = size_t{1} << kRowBits;
  static constexpr size_t kRows = 4;
  using Slots = std::array<size_t, kRows>;
  static Slots SlotsFor(const proto::NetAddress& source);

  std::unique_ptr<std::atomic<uint32_t>[]> counters_;  // kRows rows of kRowSize
};

/// The limits shared by every shard of one process; owned by the ShardGroup.
struct SharedCallLimits {
  SourceCallCounter per_source;
  RateLimiter global_rate;
};

}  // namespace b2bua
