#pragma once

#include <algorithm>
#include <optional>

#include "proto/clock.h"

namespace b2bua {

/// When the core re-sends a 2xx to an INVITE until its ACK comes (RFC 3261 13.3.1.4): first
/// after T1, the wait doubling up to T2, for 64*T1 in all; the last wait ends exactly at
/// 64*T1. A plain schedule: the engine owns the timer and the bytes, so the first 2xx of a
/// call and a relayed re-INVITE's 2xx use the same rule.
class Reliable2xxSchedule {
 public:
  /// The 2xx went out at `now`: the wait before the first re-send.
  proto::Duration Start(proto::TimePoint now, proto::Duration t1, proto::Duration t2) {
    interval_ = t1;
    t2_ = t2;
    deadline_ = now + t1 * 64;
    sends_ = 1;
    return interval_;
  }

  /// The timer fired at `now`. The wait after the re-send to make now, or nullopt when
  /// 64*T1 has passed: then nothing is re-sent and the ACK is given up for lost.
  std::optional<proto::Duration> Next(proto::TimePoint now) {
    if (now >= deadline_) return std::nullopt;
    ++sends_;
    interval_ = std::min(interval_ * 2, t2_);
    return std::min<proto::Duration>(interval_, deadline_ - now);
  }

  /// Times the 2xx went out, the first included.
  int sends() const { return sends_; }

 private:
  proto::TimePoint deadline_{};
  proto::Duration interval_{};
  proto::Duration t2_{};
  int sends_ = 0;
};

}  // namespace b2bua
