#pragma once

#include <functional>
#include <optional>
#include <string_view>

#include "b2bua/dialog_record.h"
#include "proto/clock.h"

namespace b2bua {

/// How an adoption ended.
enum class AdoptOutcome : uint8_t {
  kAdopted,      // the record is ours now
  kNotFound,     // no such dialog (ended, expired, or never replicated)
  kOwnedByOther, // another live instance adopted it first
  kUnavailable,  // the store did not answer (down, slow, not connected)
};

/// The cluster's dialog store, as one shard sees it: Redis in production
/// (b2bua/redis_dialog_store), a fake in the engine's tests. Every call is asynchronous and
/// never blocks the shard; results come back on the owning shard's thread. A store that is
/// down loses writes (they are counted) and answers adoptions with kUnavailable: calls go on
/// on the instance that has them.
class DialogStore {
 public:
  virtual ~DialogStore() = default;

  /// Owning shard only. Writes `record` under record.key, replacing any older one; the key
  /// expires `ttl` from now unless written again.
  virtual void Save(const DialogRecord& record, proto::Duration ttl) = 0;

  /// Owning shard only. Removes the record of `key`.
  virtual void Remove(std::string_view key) = 0;

  /// Owning shard only. Takes the dialog `key` over for instance `self`, atomically: only one
  /// caller wins when several try at once, and a record whose owner is `self` already is
  /// returned as adopted. `done` runs once, on this shard, with the outcome and, when
  /// adopted, the record (its owner set to `self`; its TTL `ttl` from now).
  virtual void Adopt(std::string_view key, std::string_view self, proto::Duration ttl,
                     std::function<void(AdoptOutcome, std::optional<DialogRecord>)> done) = 0;

  /// Owning shard only. Whether the store is reachable now (for /readyz and logs).
  virtual bool connected() const = 0;
};

/// The wall clock the cluster's absolute deadlines are written in (Unix milliseconds).
class WallClock {
 public:
  virtual int64_t NowUnixMs() const = 0;

 protected:
  ~WallClock() = default;
};

}  // namespace b2bua
