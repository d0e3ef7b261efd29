#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "proto/sip_message.h"
#include "proto/sip_parser.h"

namespace b2bua {

/// A counter with one writer (the owning shard) and any number of readers (the exporter).
/// Incrementing is a plain load and store, no locked instruction: the single writer makes
/// the read-modify-write safe, and relaxed atomics keep the exporter's reads race-free.
class Counter {
 public:
  /// Owning shard only.
  void Inc(uint64_t by = 1) { value_.store(value_.load(std::memory_order_relaxed) + by, std::memory_order_relaxed); }
  /// Owning shard only (gauges).
  void Dec(uint64_t by = 1) { value_.store(value_.load(std::memory_order_relaxed) - by, std::memory_order_relaxed); }
  /// Owning shard only (gauges).
  void Set(uint64_t to) { value_.store(to, std::memory_order_relaxed); }
  /// Safe from any thread.
  uint64_t Get() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

/// A histogram with fixed upper bounds, in seconds. Observations are kept in nanoseconds
/// (sum) and bucket counts; the exporter turns them into Prometheus buckets.
template <size_t N>
class FixedHistogram {
 public:
  explicit constexpr FixedHistogram(const std::array<double, N>& bounds) : bounds_(bounds) {}
  /// Owning shard only.
  void Observe(double value) {
    size_t i = 0;
    while (i < N && value > bounds_[i]) ++i;
    buckets_[i].Inc();
    sum_micro_.Inc(static_cast<uint64_t>(value * 1e6 + 0.5));
  }
  const std::array<double, N>& bounds() const { return bounds_; }
  /// Non-cumulative count of bucket i; index N is +Inf. Safe from any thread.
  uint64_t bucket(size_t i) const { return buckets_[i].Get(); }
  /// Sum of observations, in millionths of the unit. Safe from any thread.
  uint64_t sum_micro() const { return sum_micro_.Get(); }
  /// Owning shard only. Mirrors a histogram with the same bounds kept elsewhere: bucket i
  /// (non-cumulative) and the sum in millionths.
  void SetBucket(size_t i, uint64_t count) { buckets_[i].Set(count); }
  void SetSumMicro(uint64_t sum) { sum_micro_.Set(sum); }

 private:
  std::array<double, N> bounds_;
  std::array<Counter, N + 1> buckets_;
  Counter sum_micro_;
};

enum class CallOutcome : uint8_t {
  kAnswered,      // bridged with a 2xx (counted when the call ends)
  kRejected,      // the callee side's final failure relayed to the caller
  kCancelled,     // the caller cancelled before answer
  kNoAnswer,      // Timer C / no-answer timeout
  kNoRoute,       // 404 / no next hop
  kUnreachable,   // every next hop timed out or failed at the transport
  kOverload,      // refused 503 by the call limit or draining
  kRedirectFailed,  // the redirect search ended without an answer
  kRedirectSent,  // answered 3xx (relay mode, or the route is a redirect action)
  kCount,
};
std::string_view CallOutcomeName(CallOutcome outcome);

/// Status codes of 3xx we count by name; anything else is "other".
enum class RedirectCode : uint8_t { k300, k301, k302, k305, k380, kOther, kCount };
RedirectCode ToRedirectCode(int status);
std::string_view RedirectCodeName(RedirectCode code);

enum class TargetOutcome : uint8_t {
  kAnswered,        // 2xx
  kFailed,          // a final 4xx/5xx/6xx
  kTimeout,         // per-target timeout or Timer B
  kRefusedByPolicy, // allow/deny lists, scheme
  kSkippedAsLoop,   // self, the redirecting target, or already tried
  kRedirected,      // answered with a 3xx that was followed
  kCancelled,       // the caller cancelled during the attempt
  kCount,
};
std::string_view TargetOutcomeName(TargetOutcome outcome);

enum class RedirectFailure : uint8_t { kExhausted, kDepth, kLoop, kCancelled, kAllRefused, kCount };
std::string_view RedirectFailureName(RedirectFailure reason);

enum class DropReason : uint8_t {
  kOversized,    // datagram larger than the receive buffer / parser limit
  kUnparsable,   // could not even be answered (no Via, garbage)
  kBadResponse,  // a response that failed ValidateResponse
  kQueueFull,    // cross-shard ring full
  kSendFailed,   // sendto/sendmmsg error
  kCount,
};
std::string_view DropReasonName(DropReason reason);

/// Why a request was refused at the edge (b2bua_requests_rejected_total{reason}).
enum class RejectReason : uint8_t {
  kUntrusted,       // source outside access.callers
  kRelayDenied,     // no route, and the source may not relay to its Request-URI; or a
                    // route whose callers do not include the source
  kScanner,         // User-Agent of a SIP scanner
  kFlood,           // source over access.flood, or serving its block
  kCallsPerSource,  // access.max_calls_per_source
  kRouteLimit,      // a route's max_calls or calls_per_second, with no route to overflow to
  kRate,            // limits.calls_per_second
  kCount,
};
std::string_view RejectReasonName(RejectReason reason);

/// Why the B2BUA closed a stream connection (b2bua_connections_closed_total{reason}).
enum class ConnectionClose : uint8_t {
  kIdle,              // no traffic either way for tcp.idle_timeout
  kFirstByteTimeout,  // accepted, then silent for tcp.first_byte_timeout
  kMessageTimeout,    // a message left unfinished past tcp.message_timeout
  kFramingError,      // unparsable or over tcp.max_message_bytes (answered 513 when it can)
  kWriteOverflow,     // the peer stopped reading what we sent
  kCount,
};
std::string_view ConnectionCloseName(ConnectionClose reason);

/// Why a TLS handshake failed (b2bua_tls_handshakes_failed_total{reason}).
enum class HandshakeFailure : uint8_t {
  kTimeout,  // not done within tls.handshake_timeout
  kVerify,   // the peer's certificate did not verify (chain, or the name of a next hop)
  kError,    // anything else: protocol, version, not TLS at all
  kCount,
};
std::string_view HandshakeFailureName(HandshakeFailure reason);

/// Why an instance did not take a call over (b2bua_cluster_adoptions_failed_total{reason}).
enum class AdoptFailure : uint8_t {
  kNotFound,     // no such dialog in the store (ended, expired, never replicated)
  kOwnedByOther, // another instance took it first
  kUnavailable,  // the store did not answer
  kOverload,     // too many requests already waiting for the store on this shard
  kCount,
};
std::string_view AdoptFailureName(AdoptFailure reason);

/// Why a dialog store command failed (b2bua_redis_command_failures_total{reason}).
enum class StoreFailure : uint8_t {
  kDisconnected,  // not connected when asked, or the connection was lost before the reply
  kTimeout,       // no reply within cluster.redis_timeout
  kError,         // an error reply, or one this version cannot read
  kCount,
};
std::string_view StoreFailureName(StoreFailure reason);

/// Index of a stream transport in the by-transport counters.
inline constexpr size_t kTcpIndex = 0;
inline constexpr size_t kTlsIndex = 1;

/// Every counter one shard publishes. Allocated once per shard, written only by that
/// shard's thread, read by the exporter when scraped (Seastar's per-shard metrics).
/// Indexing by enum replaces any lookup by name on the hot path.
struct alignas(64) ShardCounters {
  static constexpr size_t kMethods = static_cast<size_t>(proto::Method::kUpdate) + 1;
  static constexpr size_t kStatusClasses = 7;  // index = code / 100 (1..6), 0 unused
  static constexpr size_t kDefects = static_cast<size_t>(proto::Defect::kRequestUriTooLong) + 1;

  // SIP traffic.
  std::array<Counter, kMethods> requests_received;   // by proto::Method
  std::array<Counter, kMethods> requests_sent;
  std::array<Counter, kStatusClasses> responses_received;  // by status class
  std::array<Counter, kStatusClasses> responses_sent;
  std::array<Counter, kDefects> parse_errors;        // by proto::Defect
  std::array<Counter, static_cast<size_t>(DropReason::kCount)> datagrams_dropped;
  Counter datagrams_received;
  Counter bytes_received;

  // Stream transports (mirrors proto::TcpCounters at publication time), by transport
  // (kTcpIndex, kTlsIndex); closes summed over both.
  std::array<Counter, 2> stream_connections;  // gauges
  std::array<Counter, 2> stream_accepted;
  std::array<Counter, 2> stream_refused;  // over max_connections or max_connections_per_source
  std::array<Counter, static_cast<size_t>(ConnectionClose::kCount)> stream_closed;
  Counter tls_handshakes;
  std::array<Counter, static_cast<size_t>(HandshakeFailure::kCount)> tls_handshakes_failed;

  // Transactions (mirrors proto::TransactionCounters at publication time).
  Counter transactions_server_created;
  Counter transactions_client_created;
  Counter retransmissions_sent;       // the transaction layer's and the core's together
  Counter core_retransmissions_sent;  // the core's: 2xx to the caller, re-INVITE 2xx
  Counter retransmissions_absorbed;
  Counter transaction_timeouts;
  Counter transactions_active;  // gauge

  // RFC 3263 resolution (mirrors proto::ResolverCounters at publication time).
  Counter dns_resolves;
  Counter dns_queries_sent;
  Counter dns_cache_hits;
  Counter dns_cache_misses;
  Counter dns_query_timeouts;
  Counter dns_query_errors;
  Counter dns_failures;

  // The edge: refused requests, and sources serving a flood block (gauge).
  std::array<Counter, static_cast<size_t>(RejectReason::kCount)> requests_rejected;
  Counter flood_sources_blocked;
  Counter flood_requests_untracked;  // let through because the flood table was full

  // Calls.
  std::array<Counter, static_cast<size_t>(CallOutcome::kCount)> calls_ended;
  Counter calls_active;    // gauge
  Counter dialogs_active;  // gauge
  FixedHistogram<10> call_setup_seconds{{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}};

  // Cross-shard handoff.
  Counter handoffs_sent;
  Counter handoffs_received;
  Counter handoff_queue_depth;  // gauge: envelopes waiting in this shard's inbound rings

  // Redirect engine.
  std::array<Counter, static_cast<size_t>(RedirectCode::kCount)> redirects_received;
  std::array<Counter, static_cast<size_t>(TargetOutcome::kCount)> redirect_targets;
  Counter redirect_loops_detected;
  std::array<Counter, static_cast<size_t>(RedirectFailure::kCount)> redirect_failures;
  Counter redirects_sent;
  Counter redirect_cache_hits;
  FixedHistogram<6> redirect_depth{{0, 1, 2, 3, 5, 8}};
  FixedHistogram<9> redirect_extra_delay_seconds{{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}};

  // Cluster: confirmed calls written to the dialog store, calls taken over from it, and
  // takeovers that did not happen, by AdoptFailure.
  Counter dialogs_replicated;
  Counter dialogs_adopted;
  std::array<Counter, static_cast<size_t>(AdoptFailure::kCount)> adoptions_failed;
  // The dialog store's connection (mirrors RedisStoreStats at publication time).
  Counter store_disconnected;  // gauge: 1 while a configured store is not connected
  Counter store_reconnects;
  std::array<Counter, static_cast<size_t>(StoreFailure::kCount)> store_failures;
  FixedHistogram<10> store_round_trip_seconds{
      {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1}};

  // Survivable "cannot happen" cases (Envoy's ENVOY_BUG).
  Counter internal_bugs;
};

}  // namespace b2bua
