#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "b2bua/dialog_record.h"
#include "b2bua/dialog_store.h"
#include "b2bua/shard_counters.h"
#include "proto/clock.h"

// hiredis and Asio stay out of this header: the call engine and the shard see only the
// DialogStore interface and these plain structs.
namespace boost::asio {
class io_context;
}  // namespace boost::asio

namespace b2bua {

struct RedisStoreSettings {
  /// An IP address literal ("10.0.0.7", "::1"). Host names are refused by Start(): hiredis
  /// resolves them with a blocking getaddrinfo() on every connect, on the shard's thread.
  std::string host = "127.0.0.1";
  uint16_t port = 6379;
  /// Put before every dialog key, so that several clusters can share one Redis.
  std::string key_prefix = "b2bua:dialog:";
  /// A command without a reply after this long has timed out, and the connection is taken
  /// for stuck: it is closed and opened again.
  proto::Duration command_timeout = std::chrono::milliseconds(500);
  /// A TCP connect not done after this long is given up and tried again (a Redis host that
  /// is down drops SYNs, and the kernel would keep trying for minutes).
  proto::Duration connect_timeout = std::chrono::seconds(1);
  /// Delay before the first reconnect; doubled after every failed attempt up to
  /// reconnect_max, back to reconnect_min once a new connection has answered a command.
  proto::Duration reconnect_min = std::chrono::milliseconds(100);
  proto::Duration reconnect_max = std::chrono::seconds(5);
  /// Saves and removes wait this long before they are written, so that the commands of
  /// many calls go in one write and their replies come back in one wake-up of the shard
  /// (each wake-up costs more than the command). An adoption is written at once, with
  /// whatever waits. 0: every command at once.
  proto::Duration write_batch_window = std::chrono::milliseconds(5);
};

/// Why a store command failed; indexes RedisStoreStats::failures. The shard mirrors them
/// into its counters under the same names (StoreFailureName()).
using RedisFailure = StoreFailure;

/// What one store did, for the metrics exporter. Written only by the store's shard, read
/// from any thread (every access relaxed); give each store its own. Must outlive the store.
struct RedisStoreStats {
  /// Upper bounds (inclusive, microseconds) of the round-trip buckets; one more bucket,
  /// index kRoundTripBoundsUs.size(), is +Inf.
  static constexpr std::array<uint64_t, 10> kRoundTripBoundsUs = {
      100, 250, 500, 1'000, 2'500, 5'000, 10'000, 25'000, 50'000, 100'000};

  std::atomic<uint64_t> saves{0};            // Save() calls, sent or not
  std::atomic<uint64_t> removes{0};          // Remove() calls, sent or not
  std::atomic<uint64_t> adoptions_tried{0};  // Adopt() calls
  std::atomic<uint64_t> adopted{0};          // Adopt() calls that ended kAdopted
  /// Commands (of any kind) that failed, by RedisFailure. Each command counts at most once.
  std::array<std::atomic<uint64_t>, static_cast<size_t>(RedisFailure::kCount)> failures{};
  /// Connection attempts after the first one (after a failed attempt or a lost connection).
  std::atomic<uint64_t> reconnects{0};
  /// Gauge: 1 while connected() holds.
  std::atomic<uint64_t> connected{0};
  /// Time from sending a command to its reply, of every command that got one. Bucket counts
  /// are not cumulative (the exporter adds them up); the sum is in microseconds.
  std::array<std::atomic<uint64_t>, kRoundTripBoundsUs.size() + 1> round_trip_buckets{};
  std::atomic<uint64_t> round_trip_sum_us{0};

  /// Safe from any thread.
  uint64_t failure(RedisFailure reason) const {
    return failures[static_cast<size_t>(reason)].load(std::memory_order_relaxed);
  }
  /// Safe from any thread. Replies observed (the sum of the buckets).
  uint64_t round_trip_count() const {
    uint64_t count = 0;
    for (const std::atomic<uint64_t>& bucket : round_trip_buckets)
      count += bucket.load(std::memory_order_relaxed);
    return count;
  }
};

/// The DialogStore of a cluster: one Redis connection per shard, over hiredis's async API,
/// driven by the shard's own io_context (no thread, no lock, never blocks).
///
/// Layout: a dialog is the Redis hash "<key_prefix><key>" with two fields, `owner` (the
/// instance that owns the call now) and `data` (EncodeDialogRecord bytes). Both are written
/// by one command, with the TTL, so a reader never sees one without the other or a record
/// without expiry. `owner` is the authority: the copy of the owner inside `data` is not read.
///
/// Adoption rule (one Lua script, atomic in Redis): a record whose owner is `self` is
/// adopted (its TTL renewed); a record whose owner is still the instance its key names
/// (OwnerOfKey(), the call's first owner) is adopted by setting owner = self; any other owner
/// means another instance adopted the call first: kOwnedByOther. So of several instances
/// racing for one call exactly one wins, a retry by the winner (after a kUnavailable whose
/// command did reach Redis) still wins, and a call is taken over at most once: once its
/// adopter is gone too, nobody can take it again.
///
/// Failures never queue: while disconnected, Save and Remove are dropped and counted and
/// Adopt answers kUnavailable, and calls go on unreplicated. A command without a reply
/// within command_timeout fails (kTimeout) together with every command behind it on the
/// connection, which is closed and reopened; such a command may still have been applied.
/// Commands are pipelined: each is written without waiting for the replies before it.
///
/// Lifetime: the io_context and the stats must outlive the store. Destroying the store
/// closes the connection and drops every command in flight: `done` callbacks not yet run
/// never run, and are destroyed inside the destructor. Handlers the store left queued in
/// the io_context are harmless after its destruction.
///
/// The process must ignore SIGPIPE (main.cc does): hiredis writes with write(2), and a Redis
/// that died would otherwise kill the process on the next command.
class RedisDialogStore final : public DialogStore {
 public:
  /// Owning shard only. Does not connect yet (Start() does). `stats` is not null.
  RedisDialogStore(boost::asio::io_context& io, RedisStoreSettings settings,
                   RedisStoreStats* stats);
  ~RedisDialogStore() override;
  RedisDialogStore(const RedisDialogStore&) = delete;
  RedisDialogStore& operator=(const RedisDialogStore&) = delete;

  /// Owning shard only. Starts connecting, in the background: a failed attempt or a lost
  /// connection is retried with exponential backoff for as long as the store lives. Fails
  /// only on bad settings (a host that is not an IP literal, port 0, a zero timeout or an
  /// empty backoff range); a second call does nothing.
  absl::Status Start();

  /// Owning shard only. One EVAL: HSET owner and data, PEXPIRE ttl (at least 1 ms). Fire
  /// and forget: a failure is only counted (a record without a key too, as kError).
  void Save(const DialogRecord& record, proto::Duration ttl) override;

  /// Owning shard only. DEL; fire and forget, like Save().
  void Remove(std::string_view key) override;

  /// Owning shard only. The adoption rule above. `done` runs exactly once (unless the store
  /// is destroyed first), from its own handler on the io_context, never inside Adopt():
  /// kUnavailable when disconnected, on timeout or on a Redis error; kNotFound also when
  /// the stored bytes are not a record of `key` (counted as kError). It may call the store
  /// again, or destroy it.
  void Adopt(std::string_view key, std::string_view self, proto::Duration ttl,
             std::function<void(AdoptOutcome, std::optional<DialogRecord>)> done) override;

  /// Owning shard only. True from the connect callback's OK until the connection is lost.
  bool connected() const override;

 private:
  class Impl;
  // Shared so that handlers queued in the io_context can hold a weak_ptr to it and find
  // out, when they run, that the store is gone.
  std::shared_ptr<Impl> impl_;
};

}  // namespace b2bua
