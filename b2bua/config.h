#pragma once

#include <bitset>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "b2bua/access_policy.h"
#include "b2bua/call_limits.h"
#include "b2bua/header_policy.h"
#include "b2bua/redirect_settings.h"
#include "b2bua/route_table.h"
#include "b2bua/status_code_set.h"
#include "proto/cidr.h"
#include "proto/sip_chars.h"
#include "proto/tcp_transport.h"
#include "proto/transport.h"

namespace b2bua {

// The B2BUA configuration: the model the YAML file (see deploy/b2bua.example.yaml) is
// loaded into. Everything here is built once on the main thread by ParseConfig() and then
// shared read-only with every shard as a `std::shared_ptr<const Config>` snapshot, so no
// member needs synchronisation. Every member's initializer is the value used when the
// file leaves the key out.

struct LimitsConfig {
  /// Concurrent calls; a new INVITE over it is answered 503 with Retry-After.
  uint32_t max_calls = 100000;
  /// A call is torn down (BYE on both legs) after this long.
  std::chrono::milliseconds max_call_duration = std::chrono::hours(4);
  /// Timer C: an INVITE leg with no final answer is cancelled after this long.
  std::chrono::milliseconds no_answer_timeout = std::chrono::seconds(180);
  /// On shutdown, calls still up after this long are torn down.
  std::chrono::milliseconds drain_timeout = std::chrono::seconds(30);
  /// New calls a second, all shards together; over it 503 with Retry-After. 0: no limit.
  uint32_t calls_per_second = 0;
  /// A longer Request-URI is answered 414.
  uint32_t max_request_uri_bytes = 1024;

  friend bool operator==(const LimitsConfig&, const LimitsConfig&) = default;
};

/// RFC 3261 17.1.1.1 transaction timers.
struct TimersConfig {
  std::chrono::milliseconds t1 = std::chrono::milliseconds(500);
  std::chrono::milliseconds t2 = std::chrono::seconds(4);
  std::chrono::milliseconds t4 = std::chrono::seconds(5);

  friend bool operator==(const TimersConfig&, const TimersConfig&) = default;
};

struct UdpConfig {
  /// SO_RCVBUF and SO_SNDBUF asked of the kernel.
  uint32_t socket_buffer_bytes = 4194304;
  /// The largest datagram read; longer ones are truncated by the kernel and dropped.
  uint32_t max_datagram_bytes = 65535;

  friend bool operator==(const UdpConfig&, const UdpConfig&) = default;
};

/// SIP over TCP: limits a peer that opens connections, or sends slowly, cannot get around.
struct TcpConfig {
  /// A longer message is answered 513 (when its headers came) and its connection closed.
  uint32_t max_message_bytes = 65535;
  /// Per shard, inbound plus outbound; over it, accepts are refused.
  uint32_t max_connections = 10000;
  /// Accepted connections from one IP, per shard.
  uint32_t max_connections_per_source = 64;
  std::chrono::milliseconds idle_timeout = std::chrono::minutes(5);
  /// An accepted connection must send its first byte within this.
  std::chrono::milliseconds first_byte_timeout = std::chrono::seconds(10);
  /// A message must be whole within this of its first byte.
  std::chrono::milliseconds message_timeout = std::chrono::seconds(10);
  /// An outgoing connection must be established within this.
  std::chrono::milliseconds connect_timeout = std::chrono::seconds(5);

  friend bool operator==(const TcpConfig&, const TcpConfig&) = default;
};

/// SIP over TLS (RFC 3261 26): a listener, and the certificates for it and for next hops
/// reached over TLS (sips: or ;transport=tls). The files are read when the config is
/// loaded and on every reload (a broken file refuses the reload).
struct TlsConfig {
  /// "IP:PORT" of the listener; empty: no TLS at all.
  std::string listen;
  proto::TlsSettings settings;
  std::chrono::milliseconds handshake_timeout = std::chrono::seconds(5);

  bool enabled() const { return !listen.empty(); }
  friend bool operator==(const TlsConfig&, const TlsConfig&) = default;
};

/// One instance of a cluster behind a front (deploy/cluster): confirmed calls are kept in
/// Redis, and both legs' Contact names the front with a routing token, so that another
/// instance can take a call over when this one dies. Absent: a single box, as before.
/// Read at start only; a reload keeps the running values.
struct ClusterConfig {
  /// [a-z0-9], at most 16: written into every call's routing token. Empty: no cluster.
  std::string instance_id;
  /// "HOST:PORT" the far ends' in-dialog requests are sent to (the Contact's host).
  std::string front;
  /// "IP:PORT" of the Redis server.
  std::string redis = "127.0.0.1:6379";
  std::string key_prefix = "b2bua:dialog:";
  /// A Redis command not answered within this counts as failed.
  std::chrono::milliseconds redis_timeout = std::chrono::milliseconds(500);
  /// A dialog key lives this long past the call's max_call_duration deadline, so a crash
  /// leaves nothing behind for ever.
  std::chrono::milliseconds dialog_ttl_margin = std::chrono::seconds(60);
  /// /readyz stays ready while Redis is unreachable (calls go on unreplicated).
  bool ready_without_redis = true;

  bool enabled() const { return !instance_id.empty(); }
  friend bool operator==(const ClusterConfig&, const ClusterConfig&) = default;
};

/// Sending an OPTIONS request to each next hop to notice that it is down before a call
/// does.
struct ProbeConfig {
  std::chrono::milliseconds options_interval = std::chrono::seconds(30);  // 0: no probing

  friend bool operator==(const ProbeConfig&, const ProbeConfig&) = default;
};

struct Config {
  AccessConfig access;
  LimitsConfig limits;
  TimersConfig timers;
  UdpConfig udp;
  TcpConfig tcp;
  TlsConfig tls;
  HeaderPolicy headers;
  RedirectSettings redirect;
  /// The redirect policy `redirect` describes, built once at load (never null once loaded).
  std::shared_ptr<const ConfiguredRedirectPolicy> redirect_policy;
  /// Final answers from a next hop that make the call try the route's next hop. A
  /// transaction timeout always does.
  StatusCodeSet failover_on = StatusCodeSet::Codes({408, 500, 502, 503, 504});
  ProbeConfig probe;
  ClusterConfig cluster;
  RouteTable routes;
  /// Where the configuration came from (a path or "<built-in default>"), for logs.
  std::string source;
};

/// Parses and checks a whole configuration. Every key is optional; an unknown key, a value
/// of the wrong type or out of range, or an inconsistent combination is an
/// InvalidArgumentError whose message reads
/// "<source_name>:<line>: <path>: <reason>", e.g.
/// "b2bua.yaml:12: routes[1].next_hops[0]: 'sip:foo:99999' is not a valid SIP URI (bad
/// port)". Never throws. Main thread (startup and reload).
///
/// With `previous` (a reload), a route keeps the RouteLoad of the previous route of the same
/// prefix, so its call count and rate survive the reload.
absl::StatusOr<std::shared_ptr<const Config>> ParseConfig(std::string_view yaml_text,
                                                          std::string_view source_name,
                                                          const Config* previous = nullptr);

/// Reads `path` and parses it with ParseConfig(), naming the file by `path` in errors.
/// A file that cannot be read gives the status of its errno. Main thread.
absl::StatusOr<std::shared_ptr<const Config>> LoadConfigFile(const std::string& path,
                                                             const Config* previous = nullptr);

/// The embedded default (b2bua/default_config.h): no routes, redirects followed. Its text
/// is covered by the tests, so an error here means a broken build. Main thread.
absl::StatusOr<std::shared_ptr<const Config>> DefaultConfig();

}  // namespace b2bua
