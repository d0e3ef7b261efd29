#include "b2bua/hop_health.h"

#include <algorithm>

#include "proto/sip_chars.h"

namespace b2bua {

std::optional<proto::Duration> HopHealth::RetryAfter(const proto::SipMessage& response) {
  const proto::HeaderField* retry = response.FindHeader(proto::HeaderId::kRetryAfter);
  if (retry == nullptr) return std::nullopt;
  uint64_t seconds = 0;
  size_t i = 0;
  // Digits first (RFC 3261 20.33); stop counting long before overflow.
  while (i < retry->value.size() && proto::IsDigit(retry->value[i]) &&
         seconds < static_cast<uint64_t>(kMaxRest.count()))
    seconds = seconds * 10 + static_cast<uint64_t>(retry->value[i++] - '0');
  if (i == 0 || seconds == 0) return std::nullopt;
  return std::chrono::seconds(std::min<uint64_t>(seconds, kMaxRest.count()));
}

void HopHealth::Rest(const proto::NetAddress& hop, proto::TimePoint until) {
  if (resting_.size() >= kMaxResting && !resting_.contains(hop)) resting_.clear();
  resting_[hop] = until;
}

bool HopHealth::Skip(const proto::NetAddress& hop, proto::TimePoint now) const {
  if (dead_.contains(hop)) return true;
  auto it = resting_.find(hop);
  return it != resting_.end() && it->second > now;
}

uint64_t HopHealth::StartRound() {
  probed_.clear();
  return ++round_;
}

std::optional<size_t> HopHealth::AddProbe(const proto::NetAddress& hop) {
  if (std::find(probed_.begin(), probed_.end(), hop) != probed_.end()) return std::nullopt;
  probed_.push_back(hop);
  return probed_.size() - 1;
}

void HopHealth::OnProbeResult(size_t slot, bool answered) {
  if (slot >= probed_.size()) return;
  if (answered)
    dead_.erase(probed_[slot]);
  else
    dead_.insert(probed_[slot]);
}

}  // namespace b2bua
