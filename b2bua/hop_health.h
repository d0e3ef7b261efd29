#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "proto/clock.h"
#include "proto/net_address.h"
#include "proto/sip_message.h"

namespace b2bua {

/// What one shard knows of its next hops' health: hops resting after a 503 with
/// Retry-After (RFC 3261 21.5.4), and hops its OPTIONS probes found dead. Decisions only: no
/// timers, no sends; the engine probes and asks. Owned by one shard; not thread-safe.
class HopHealth {
 public:
  /// At most this many resting hops are remembered; past it the table starts over, so a
  /// stream of 503s from ever new addresses cannot grow memory.
  static constexpr size_t kMaxResting = 1024;
  /// A Retry-After longer than this is taken as this.
  static constexpr std::chrono::seconds kMaxRest{3600};

  /// Safe from any thread. The rest a 503 asks for: its Retry-After in whole seconds
  /// (comment and parameters ignored), capped at kMaxRest; nullopt when there is none or it
  /// is 0 or not a number.
  static std::optional<proto::Duration> RetryAfter(const proto::SipMessage& response);

  /// Owning shard only. `hop` asked not to be used until `until`.
  void Rest(const proto::NetAddress& hop, proto::TimePoint until);
  /// Owning shard only. Whether calls should skip `hop` at `now`: it rests, or the probes
  /// found it dead.
  bool Skip(const proto::NetAddress& hop, proto::TimePoint now) const;

  /// Owning shard only. A new probe round starts: the addresses probed so far are
  /// forgotten (results still out for them are ignored). Returns the round's number.
  uint64_t StartRound();
  uint64_t round() const { return round_; }
  /// Owning shard only. The slot `hop`'s probe answers to in this round, or nullopt when it
  /// was probed already in this round (one probe per address, however many routes name it).
  std::optional<size_t> AddProbe(const proto::NetAddress& hop);
  /// Owning shard only. The probe in `slot` of the current round was answered (any final
  /// response) or failed (timeout, transport error). Unknown slots are ignored.
  void OnProbeResult(size_t slot, bool answered);
  /// Owning shard only. Probing stopped: every hop counts as alive again.
  void ForgetDead() { dead_.clear(); }
  size_t dead_count() const { return dead_.size(); }

 private:
  absl::flat_hash_map<proto::NetAddress, proto::TimePoint> resting_;
  absl::flat_hash_set<proto::NetAddress> dead_;
  std::vector<proto::NetAddress> probed_;  // by slot, this round
  uint64_t round_ = 0;
};

}  // namespace b2bua
