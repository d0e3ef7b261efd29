#pragma once

#include <cstddef>
#include <cstdint>

#include "absl/container/flat_hash_map.h"
#include "b2bua/access_policy.h"
#include "proto/clock.h"
#include "proto/net_address.h"

namespace b2bua {

/// Per-source request counting, Kamailio pike style: a source that sends more than
/// `max_requests` within one `window` is blocked for `block_for`. One per shard, touched by
/// its thread only, so no locks. Time comes in as an argument: tests drive it with a fake
/// clock.
///
/// Memory is bounded: at most `max_sources` addresses are tracked. When the table is full,
/// idle entries are swept out first; a new source that still finds no room is let through
/// untracked and counted (blocking it would let spoofed floods lock out real callers); a
/// full table is swept at most once a window.
class FloodGuard {
 public:
  enum class Verdict : uint8_t {
    kPass,
    kBlockedNow,  // this request crossed the limit: log the source once, then drop
    kBlocked,     // the source is serving its block: drop silently
  };

  /// Owning shard only. Counts one request from `source` (its port is ignored).
  Verdict Count(const proto::NetAddress& source, proto::TimePoint now,
                const FloodSettings& settings);

  /// Owning shard only. Frees entries idle for a window and lifts blocks that have run
  /// out. Count() calls it when the table is full; the shard also calls it once a window
  /// so the blocked-sources gauge falls when blocks end.
  void Sweep(proto::TimePoint now, const FloodSettings& settings);

  /// Sources now blocked (the b2bua_flood_sources_blocked gauge).
  size_t blocked() const { return blocked_; }
  /// Sources tracked.
  size_t tracked() const { return table_.size(); }
  /// Requests let through untracked because the table was full.
  uint64_t untracked() const { return untracked_; }

 private:
  struct Entry {
    proto::TimePoint window_start;
    proto::TimePoint blocked_until;  // epoch: not blocked
    uint32_t requests = 0;
  };

  static proto::NetAddress Key(const proto::NetAddress& source);

  absl::flat_hash_map<proto::NetAddress, Entry> table_;
  proto::TimePoint next_full_sweep_{};
  size_t blocked_ = 0;
  uint64_t untracked_ = 0;
};

}  // namespace b2bua
