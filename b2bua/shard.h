#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "b2bua/call_limits.h"
#include "b2bua/config.h"
#include "b2bua/shard_counters.h"
#include "proto/clock.h"
#include "proto/net_address.h"
#include "proto/tcp_transport.h"
#include "proto/transport.h"

namespace b2bua {

class CallRecordSink;

/// A message read by one shard and owned by another, on its way through a ring. Owns its
/// bytes: the receive buffer it came from is reused as soon as the batch ends.
struct Envelope {
  std::string bytes;
  enum class Kind : uint8_t {
    kInbound,   // a message another shard read, for the shard that owns its call
    kOutbound,  // bytes for a stream connection the receiving shard owns (RFC 3261
                // 18.2.2: responses go back on the connection the request came in on)
    kPermanentRedirect,  // a 301 another shard learned: "Request-URI\ntarget"
  };
  proto::Peer source;  // inbound: where it came from; outbound: where it goes
  Kind kind = Kind::kInbound;
  proto::TimePoint expires{};  // kPermanentRedirect: until when the target holds
};

struct ShardGroupOptions {
  uint32_t shards = 1;
  proto::NetAddress listen;
  /// Envelopes each (from, to) ring holds; a full ring drops and counts.
  size_t ring_capacity = 4096;
  /// Written into Via and Contact instead of the listen address; empty: the listen address.
  std::string advertised_ip;
  /// DNS server "IP:PORT" for RFC 3263 lookups; empty: /etc/resolv.conf.
  std::string dns_server;
  /// Receives the call records of redirected calls; null for none. Must outlive the group.
  CallRecordSink* call_records = nullptr;
  /// Loaded from config.tls when it is enabled (TlsContext::Load); null: no TLS.
  std::shared_ptr<const proto::TlsContext> tls;
  /// When this process started (Unix seconds): part of every cluster dialog key, so keys
  /// stay unique across restarts of one instance.
  uint64_t boot_epoch = 0;
  /// Random, drawn at start: mixed into every Call-ID, tag and branch.
  uint64_t token_seed = 0;
};

class Shard;

/// N shards, each one thread running its own io_context and owning its socket, parser,
/// transaction layer, calls and timers. The group only starts, stops and addresses them.
class ShardGroup {
 public:
  explicit ShardGroup(ShardGroupOptions options);
  ~ShardGroup();

  ShardGroup(const ShardGroup&) = delete;
  ShardGroup& operator=(const ShardGroup&) = delete;

  /// Main thread. Opens every shard's socket and starts the threads.
  absl::Status Start(std::shared_ptr<const Config> config);
  /// Main thread. Stops every shard and joins the threads. Idempotent.
  void Stop();
  /// Safe from any thread. New calls are refused with 503 from now on.
  void StartDraining();
  /// Safe from any thread. Ends every live call (BYE, or CANCEL and 503) on every shard.
  void EndAllCalls();
  /// Safe from any thread. Hands a new config snapshot to every shard, with the TLS
  /// context loaded for it (null when TLS is off): live calls keep their config, live TLS
  /// connections their context; new ones take the new.
  void UpdateConfig(std::shared_ptr<const Config> config,
                    std::shared_ptr<const proto::TlsContext> tls = nullptr);
  /// Safe from any thread. Calls in progress, summed over the shards.
  uint64_t ActiveCalls() const;
  /// Safe from any thread. Whether every shard's dialog store connection is up (true when
  /// not clustered).
  bool StoresConnected() const;

  /// Safe from any thread. Stable for the group's lifetime, for the metrics exporter.
  std::vector<const ShardCounters*> counters() const;
  /// The address every shard listens on (the real port when 0 was asked).
  const proto::NetAddress& local_address() const { return local_address_; }
  size_t size() const { return shards_.size(); }
  bool running() const { return running_.load(); }

  /// Any shard's thread. Passes `envelope` to shard `to`; false (counted) when its ring is full.
  bool Handoff(uint32_t from, uint32_t to, Envelope&& envelope);

 private:
  friend class Shard;
  struct Rings;

  ShardGroupOptions options_;
  proto::NetAddress local_address_;
  std::unique_ptr<Rings> rings_;
  // Shared by every shard's engine; outlives the threads.
  std::unique_ptr<SharedCallLimits> call_limits_ = std::make_unique<SharedCallLimits>();
  std::vector<std::unique_ptr<Shard>> shards_;
  std::vector<std::thread> threads_;
  std::atomic<bool> running_{false};
};

}  // namespace b2bua
