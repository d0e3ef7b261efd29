#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "proto/clock.h"
#include "proto/net_address.h"
#include "proto/transport.h"

// Asio stays out of this header so that code using the resolver does not compile Asio.
namespace boost::asio {
class io_context;
}  // namespace boost::asio

namespace b2bua::proto {

/// How a Resolve() ended. Only kOk comes with targets.
enum class ResolveStatus : uint8_t {
  kOk,        // at least one target
  kNotFound,  // the names exist nowhere (NXDOMAIN) or hold no usable record
  kTimeout,   // a DNS server did not answer (timed out, or refused the connection)
  kError,     // SERVFAIL, REFUSED, malformed answer, bad name, or a local failure
};

std::string_view ResolveStatusName(ResolveStatus status);  // "OK", "NOT_FOUND", ...

/// One place to send a request. `tls` is set for SIPS (RFC 3263 "SIPS+D2T", `_sips._tcp`):
/// the transport is then TCP carrying TLS.
struct ResolvedTarget {
  NetAddress address;
  TransportKind transport = TransportKind::kUdp;
  bool tls = false;

  friend bool operator==(const ResolvedTarget&, const ResolvedTarget&) = default;
};

/// The answer to one Resolve(): the targets to try, best first. A request that fails on
/// one target (timeout, 503, transport error) moves on to the next (RFC 3263 4.3).
struct ResolvedTargets {
  ResolveStatus status = ResolveStatus::kError;
  std::vector<ResolvedTarget> targets;
};

/// Receives the result. The reference is valid only during the call.
using ResolveCallback = absl::AnyInvocable<void(const ResolvedTargets&)>;

/// One SRV record as RFC 2782 orders it. Exposed so that the weighted ordering can be
/// tested on its own.
struct SrvRecord {
  std::string target;
  uint16_t priority = 0;
  uint16_t weight = 0;
  uint16_t port = 0;

  friend bool operator==(const SrvRecord&, const SrvRecord&) = default;
};

/// Sorts `records` by priority, lowest first, and within one priority draws them by the
/// RFC 2782 weighted random selection (weight-0 records are drawn only rarely before the
/// others). The result depends only on the records and the `rng` state, not on the order
/// the records arrived in.
void OrderSrvRecords(std::vector<SrvRecord>* records, std::mt19937_64& rng);

struct SipResolverOptions {
  /// "IP:PORT" or "[IPv6]:PORT" of the one DNS server to ask; empty reads the system
  /// /etc/resolv.conf.
  std::string dns_server;
  /// How long c-ares waits for the first try of a query. c-ares (1.18) lengthens later
  /// tries, so a query with `tries` = 2 may take up to about three times this.
  Duration query_timeout = std::chrono::seconds(2);
  int tries = 2;
  /// Bound on cached (name, type) answers, evicted least recently used first. 0 disables
  /// the cache.
  size_t cache_entries = 4096;
  /// Negative answers (NXDOMAIN, no data) are cached for the SOA minimum of the answer
  /// (RFC 2308), but never longer than this, and for this long when the answer has no
  /// SOA. Short, so that a record provisioned after a failed call is seen soon.
  Duration negative_ttl = std::chrono::seconds(30);
  /// Upper bound on any positive TTL, so that a mistaken huge TTL does not pin a target.
  Duration max_ttl = std::chrono::hours(1);
  /// Order of the addresses of one host (A before AAAA unless set).
  bool prefer_ipv6 = false;
  /// Ask for AAAA records as well as A.
  bool query_ipv6 = true;
  /// Seeds the RNG behind the RFC 2782 weighted SRV selection. 0 seeds from
  /// std::random_device; tests pass a fixed value to get a fixed order.
  uint64_t random_seed = 0;
};

/// Counters one resolver bumps; its shard publishes them. Owning shard only.
struct ResolverCounters {
  uint64_t resolves = 0;         // Resolve() calls
  uint64_t queries_sent = 0;     // DNS queries handed to c-ares (each may be retried)
  uint64_t cache_hits = 0;       // (name, type) lookups answered from the cache
  uint64_t cache_misses = 0;     // lookups that needed a query or joined one in flight
  uint64_t coalesced = 0;        // lookups that joined an identical query in flight
  uint64_t cache_evictions = 0;  // live entries dropped because the cache was full
  uint64_t query_timeouts = 0;   // DNS queries that ended without an answer
  uint64_t query_errors = 0;     // DNS queries that ended in SERVFAIL, REFUSED, etc.
  uint64_t failures = 0;         // Resolve() calls that ended with other than kOk
};

/// Resolves SIP URIs' hosts to an ordered list of targets following RFC 3263 4.1/4.2:
///  - a numeric IP host is used as it is, with no DNS;
///  - an explicit port means A/AAAA only;
///  - an explicit transport without a port means SRV (`_sip._udp`, `_sip._tcp`,
///    `_sips._tcp`) and, if there is none, A/AAAA on 5060 (5061 for SIPS);
///  - otherwise NAPTR (SIP+D2U, SIP+D2T, SIPS+D2T with the "S" flag) then SRV of each
///    replacement; with no NAPTR, SRV `_sip._udp` and `_sip._tcp` (only `_sips._tcp` for
///    SIPS); with no SRV either, A/AAAA on 5060 UDP (5061 TLS for SIPS).
/// SRV targets are sorted by RFC 2782 and every target's A and AAAA records are resolved;
/// one target's addresses stay together, IPv4 first unless `prefer_ipv6`.
///
/// One resolver per shard, used only from the thread that runs `io_context` (queries,
/// cache and counters are not locked). Answers are cached per (name, type) for the
/// record TTL, measured with the injected Clock; identical queries in flight are shared.
/// c-ares sockets and its retry timer run on the io_context.
///
/// Destroying the resolver cancels every pending Resolve(): their callbacks are never
/// called, and are destroyed (with whatever they captured) inside the destructor. The
/// io_context must outlive the resolver; handlers the resolver left queued in it are
/// harmless after its destruction.
class SipResolver {
 public:
  /// Safe from any thread (ares_library_init runs once per process). Fails when c-ares
  /// cannot start or `dns_server` is not "IP:PORT".
  static absl::StatusOr<std::unique_ptr<SipResolver>> Create(boost::asio::io_context& io,
                                                             const Clock& clock,
                                                             SipResolverOptions options);

  ~SipResolver();
  SipResolver(const SipResolver&) = delete;
  SipResolver& operator=(const SipResolver&) = delete;

  /// Owning shard only. Resolves `host` (a name, an IPv4 literal or an IPv6 literal with or
  /// without brackets) for a SIP or SIPS URI. `port` 0 means the URI gave none;
  /// `transport` is the URI's transport= parameter, if any.
  ///
  /// `cb` is called exactly once, unless the resolver is destroyed first. It is called
  /// inline, before Resolve() returns, when no DNS answer has to be awaited: a numeric
  /// host, an invalid host, an answer built entirely from the cache, or a query c-ares
  /// refuses at once (kError). Otherwise it is called later from a handler of its own on
  /// the io_context (never from inside c-ares). Either way it may call Resolve() again or
  /// destroy the resolver.
  void Resolve(std::string_view host, uint16_t port, std::optional<TransportKind> transport,
               bool sips, ResolveCallback cb);

  /// Owning shard only. Stays valid as long as the resolver.
  const ResolverCounters& counters() const;

  /// Owning shard only. Cached (name, type) entries, live or expired-but-not-yet-evicted.
  size_t cache_size() const;

 private:
  class Impl;

  SipResolver(boost::asio::io_context& io, const Clock& clock, SipResolverOptions options);

  // Shared so that handlers queued in the io_context can hold a weak_ptr to it and find
  // out, when they run, that the resolver is gone.
  std::shared_ptr<Impl> impl_;
};

}  // namespace b2bua::proto
