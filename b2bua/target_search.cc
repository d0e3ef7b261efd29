#include "b2bua/target_search.h"

#include <algorithm>

namespace b2bua {
namespace {

int FinalRank(int status) {
  if (status >= 600) return 0;
  switch (status) {
    case 401: case 407: case 415: case 420: case 484: return 1;
    default: break;
  }
  if (status >= 400 && status < 500) return 2;
  if (status >= 500 && status != 503) return 3;
  if (status == 503) return 4;
  return 5;
}

}  // namespace

bool BetterFinal(int candidate, int best) {
  return best == 0 || FinalRank(candidate) < FinalRank(best);
}

SearchSettings SearchSettings::From(const RedirectSettings& redirect) {
  SearchSettings settings;
  settings.fork = redirect.fork;
  settings.max_parallel = static_cast<uint16_t>(std::clamp(redirect.max_parallel, 1, 0xffff));
  settings.max_depth = redirect.max_depth;
  settings.early_media = redirect.early_media;
  settings.try_next_on = redirect.try_next_on;
  return settings;
}

TargetSearch::TargetSearch(const SearchSettings& settings, TargetSetLimits limits)
    : settings_(settings), targets_(limits) {}

bool TargetSearch::Begin(std::string_view request_uri) {
  live_.clear();
  early_media_target_ = -1;
  max_depth_seen_ = 0;
  loops_ = 0;
  best_status_ = 0;
  depth_exceeded_ = false;
  stopped_ = false;
  if (!targets_.SetOriginal(request_uri)) return false;
  live_.push_back(0);
  return true;
}

bool TargetSearch::IsLive(uint16_t target) const {
  return std::find(live_.begin(), live_.end(), target) != live_.end();
}

void TargetSearch::Settle(uint16_t target, TargetState state, uint16_t status) {
  auto it = std::find(live_.begin(), live_.end(), target);
  if (it != live_.end()) live_.erase(it);
  if (early_media_target_ == target) early_media_target_ = -1;
  targets_.MarkResult(target, state, status);
}

void TargetSearch::CancelLive(SearchStep* step, int keep) {
  for (uint16_t target : live_) {
    if (target == keep) continue;
    step->cancel.push_back(target);
    targets_.MarkResult(target, TargetState::kCancelled, 0);
    if (early_media_target_ == target) early_media_target_ = -1;
  }
  live_.erase(std::remove_if(live_.begin(), live_.end(),
                             [keep](uint16_t target) { return target != keep; }),
              live_.end());
}

bool TargetSearch::NoteFinal(int status) {
  if (!BetterFinal(status, best_status_)) return false;
  best_status_ = status;
  return true;
}

SearchStep TargetSearch::OnAnswered(uint16_t target, int status) {
  SearchStep step;
  if (!IsLive(target)) return step;
  Settle(target, TargetState::kAnswered, static_cast<uint16_t>(status));
  stopped_ = true;
  CancelLive(&step, -1);
  step.action = SearchStep::Action::kAnswer;
  return step;
}

SearchStep TargetSearch::OnFinal(uint16_t target, int status) {
  if (!IsLive(target)) return {};
  Settle(target, TargetState::kFailed, static_cast<uint16_t>(status));
  const bool new_best = NoteFinal(status);
  SearchStep step;
  if (status >= 600) {
    // A 6xx is definitive for every branch (RFC 3261 16.7 step 5).
    stopped_ = true;
    CancelLive(&step, -1);
    step.action = SearchStep::Action::kRelayResponse;
  } else if (!settings_.try_next_on.Contains(status)) {
    stopped_ = true;
    // Serially this answer ends the search at once; in a group the others may still
    // answer 2xx, so the best answer is chosen when the group is over.
    step = settings_.fork == RedirectFork::kSerial && live_.empty()
               ? SearchStep{SearchStep::Action::kRelayResponse, {}, {}, false}
               : Next();
  } else {
    step = Next();
  }
  step.new_best = new_best;
  return step;
}

SearchStep TargetSearch::OnTimeout(uint16_t target) {
  if (!IsLive(target)) return {};
  Settle(target, TargetState::kTimedOut, 408);
  SearchStep step = Next();
  step.cancel.insert(step.cancel.begin(), target);
  return step;
}

SearchStep TargetSearch::OnRedirect(uint16_t target, const proto::SipMessage& response,
                                    MergeResult* merged) {
  MergeResult result;
  if (merged != nullptr) *merged = result;
  // A late 3xx from an attempt already decided (cancelled, or after the search ended).
  if (!IsLive(target)) return {};
  {
    auto it = std::find(live_.begin(), live_.end(), target);
    live_.erase(it);
    if (early_media_target_ == target) early_media_target_ = -1;
    const int depth = targets_.at(target).depth + 1;
    max_depth_seen_ = std::max(max_depth_seen_, depth);
    if (stopped_) {
      // Nothing new starts once the search has stopped: its Contacts would wait forever.
      targets_.MarkResult(target, TargetState::kRedirected,
                          static_cast<uint16_t>(response.status_code()));
    } else if (depth > settings_.max_depth) {
      depth_exceeded_ = true;
      targets_.MarkResult(target, TargetState::kRedirected,
                          static_cast<uint16_t>(response.status_code()));
    } else {
      result = targets_.Merge(response, target, depth);
      loops_ += result.loops;
    }
  }
  if (merged != nullptr) *merged = result;
  return Next();
}

SearchStep TargetSearch::OnNotSent(uint16_t target, TargetState state, bool stop) {
  if (!IsLive(target)) return {};
  Settle(target, state, 0);
  if (stop) stopped_ = true;
  return Next();
}

SearchStep TargetSearch::OnCallerGaveUp() {
  SearchStep step;
  stopped_ = true;
  CancelLive(&step, -1);
  return step;
}

SearchStep TargetSearch::Next() {
  SearchStep step;
  if (!live_.empty()) return step;
  if (stopped_) {
    step.action = SearchStep::Action::kFinish;
    return step;
  }
  const Target* first = targets_.NextPending();
  if (first == nullptr) {
    step.action = SearchStep::Action::kFinish;
    return step;
  }
  step.action = SearchStep::Action::kStart;
  step.start.push_back(first->index);
  if (settings_.fork == RedirectFork::kParallelEqualQ) {
    const uint16_t q = first->q_millis;
    while (step.start.size() < settings_.max_parallel && targets_.pending_count() > 0 &&
           targets_.at(targets_.pending_order()[0]).q_millis == q) {
      const Target* next = targets_.NextPending();
      if (next == nullptr) break;  // max_targets reached
      step.start.push_back(next->index);
    }
  }
  live_.insert(live_.end(), step.start.begin(), step.start.end());
  return step;
}

ProvisionalRelay TargetSearch::OnProvisional(uint16_t target, bool has_body) {
  if (!has_body) return ProvisionalRelay::kRelay;
  if (settings_.early_media == EarlyMedia::kNone) return ProvisionalRelay::kRelayWithoutBody;
  if (early_media_target_ < 0 && IsLive(target)) early_media_target_ = target;
  return early_media_target_ == target ? ProvisionalRelay::kRelay
                                       : ProvisionalRelay::kRelayWithoutBody;
}

}  // namespace b2bua
