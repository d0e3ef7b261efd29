#include "b2bua/flood_guard.h"

namespace b2bua {

proto::NetAddress FloodGuard::Key(const proto::NetAddress& source) {
  proto::NetAddress key = source;
  key.set_port(0);
  return key;
}

FloodGuard::Verdict FloodGuard::Count(const proto::NetAddress& source, proto::TimePoint now,
                                      const FloodSettings& settings) {
  if (settings.max_requests == 0) return Verdict::kPass;
  const proto::NetAddress key = Key(source);
  auto it = table_.find(key);
  if (it == table_.end()) {
    if (table_.size() >= settings.max_sources) {
      // A full table is swept at most once a window: a walk over a million entries for
      // every packet of a spoofed flood would be the attack's real payload.
      if (now >= next_full_sweep_) {
        Sweep(now, settings);
        next_full_sweep_ = now + settings.window;
      }
      if (table_.size() >= settings.max_sources) {
        ++untracked_;
        return Verdict::kPass;
      }
    }
    it = table_.emplace(key, Entry{now, proto::TimePoint{}, 0}).first;
  }
  Entry& entry = it->second;
  if (entry.blocked_until != proto::TimePoint{}) {
    if (now < entry.blocked_until) return Verdict::kBlocked;
    // The block has run out: the source starts afresh.
    entry.blocked_until = proto::TimePoint{};
    --blocked_;
    entry.window_start = now;
    entry.requests = 0;
  }
  if (now - entry.window_start >= settings.window) {
    entry.window_start = now;
    entry.requests = 0;
  }
  if (++entry.requests <= settings.max_requests) return Verdict::kPass;
  entry.blocked_until = now + settings.block_for;
  ++blocked_;
  return Verdict::kBlockedNow;
}

void FloodGuard::Sweep(proto::TimePoint now, const FloodSettings& settings) {
  for (auto it = table_.begin(); it != table_.end();) {
    Entry& entry = it->second;
    const bool blocked = entry.blocked_until != proto::TimePoint{};
    if (blocked && now < entry.blocked_until) {
      ++it;
      continue;
    }
    if (blocked || now - entry.window_start >= settings.window) {
      if (blocked) --blocked_;
      table_.erase(it++);
      continue;
    }
    ++it;
  }
}

}  // namespace b2bua
