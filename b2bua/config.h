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

/// A set of SIP status codes (100..699), filled from YAML items such as 486 or "5xx".
/// Contains() is one bit test, so the data plane can ask it per response.
class StatusCodeSet {
 public:
  StatusCodeSet() = default;
  /// Every code of the given classes: Classes({4, 5}) holds 400..499 and 500..599.
  static StatusCodeSet Classes(std::initializer_list<int> classes) {
    StatusCodeSet set;
    for (int c : classes) set.AddClass(c);
    return set;
  }
  static StatusCodeSet Codes(std::initializer_list<int> codes) {
    StatusCodeSet set;
    for (int code : codes) set.Add(code);
    return set;
  }

  /// Codes outside 100..699 are ignored.
  void Add(int code) {
    if (code >= kMin && code <= kMax) bits_.set(static_cast<size_t>(code));
  }
  /// `status_class` 1..6; anything else is ignored.
  void AddClass(int status_class) {
    for (int code = status_class * 100; code < status_class * 100 + 100; ++code) Add(code);
  }
  bool Contains(int code) const {
    return code >= kMin && code <= kMax && bits_.test(static_cast<size_t>(code));
  }
  bool empty() const { return bits_.none(); }

  friend bool operator==(const StatusCodeSet&, const StatusCodeSet&) = default;

 private:
  static constexpr int kMin = 100;
  static constexpr int kMax = 699;
  std::bitset<kMax + 1> bits_;
};

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

/// What happens to the headers the B2BUA does not generate itself when it copies a
/// message from one leg to the other. Header names compare case-insensitively, and a
/// compact form ("k", "c", "s", ...) counts as its long name.
class HeaderPolicy {
 public:
  /// The `pass` list used when the file has none.
  static const std::vector<std::string>& DefaultPass();

  /// Passes DefaultPass(), strips nothing, drops unknown headers.
  HeaderPolicy();
  HeaderPolicy(std::vector<std::string> pass, std::vector<std::string> strip, bool pass_unknown);

  /// Whether a header named `name` is copied to the other leg: never when it is in
  /// `strip`, always when it is in `pass`, and otherwise (a header named in neither list,
  /// typically an X- header) only when `pass_unknown` is set. Safe from any thread; O(1)
  /// and allocation-free.
  bool IsPassed(std::string_view name) const;

  /// The lists as configured (spelling kept), for logs and the admin dump.
  const std::vector<std::string>& pass() const { return pass_; }
  const std::vector<std::string>& strip() const { return strip_; }
  bool pass_unknown() const { return pass_unknown_; }

 private:
  // Hashes and compares ASCII case-insensitively, so a lookup needs no lower-cased copy.
  struct CaseInsensitiveHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const;
  };
  struct CaseInsensitiveEq {
    using is_transparent = void;
    bool operator()(std::string_view a, std::string_view b) const;
  };
  using NameSet = absl::flat_hash_set<std::string, CaseInsensitiveHash, CaseInsensitiveEq>;

  void Index();

  std::vector<std::string> pass_;
  std::vector<std::string> strip_;
  bool pass_unknown_ = false;
  // pass_ and strip_ under their long names; IsPassed() maps a compact name to its long one.
  NameSet pass_index_;
  NameSet strip_index_;
};

enum class RedirectMode : uint8_t {
  kFollow,  // the B2BUA tries the 3xx Contacts itself; the caller never sees the 3xx
  kRelay,   // the 3xx goes back to the caller unchanged
};

/// The To header of the INVITE sent to a redirect target.
enum class RedirectToUri : uint8_t {
  kKeep,     // the original To (RFC 3261 8.1.3.4: To stays, only the Request-URI changes)
  kReplace,  // the target URI, for peers that route on To
};

enum class RedirectFork : uint8_t {
  kSerial,          // one target at a time, highest q first
  kParallelEqualQ,  // targets of equal q at once (RFC 3261 16.6 style), groups in q order
};

/// The permanent-redirect cache: a 301 answer for a Request-URI is remembered so that the
/// next call to it goes straight to the target.
struct RedirectCacheSettings {
  uint32_t entries = 1000;  // 0 turns the cache off
  std::chrono::milliseconds ttl = std::chrono::hours(1);

  friend bool operator==(const RedirectCacheSettings&, const RedirectCacheSettings&) = default;
};

/// Which redirect targets may be tried. Domains are lower-cased host names; a domain also
/// covers its subdomains (b2bua/redirect_policy.h DomainMatches). CIDRs are
/// "address/length" strings (IPv6 may be bracketed), checked with inet_pton, with the
/// length in range and no host bits set; a bare address is stored with /32 or /128 added. The
/// redirect policy parses them again into its own Cidr type.
struct RedirectAllowList {
  std::vector<std::string> domains;  // empty: any domain (deny still applies)
  std::vector<std::string> cidrs;    // empty: any address (deny still applies)
  /// Lower-case "sip", "sips" or "tel"; never empty.
  std::vector<std::string> schemes = {"sip", "sips"};

  friend bool operator==(const RedirectAllowList&, const RedirectAllowList&) = default;
};

struct RedirectDenyList {
  std::vector<std::string> domains;
  std::vector<std::string> cidrs;

  friend bool operator==(const RedirectDenyList&, const RedirectDenyList&) = default;
};

/// How 3xx answers from the callee side are handled. The `redirect:` section sets the
/// global values; a route's own `redirect:` overrides single keys, and Route::redirect
/// holds the result of that merge. Nested keys merge one by one
/// (`redirect: {allow: {domains: [a]}}` keeps the global allow.cidrs); a list given by a
/// route replaces the global list, it does not extend it.
struct RedirectSettings {
  RedirectMode mode = RedirectMode::kFollow;
  /// Send "181 Call Is Being Forwarded" to the caller when a redirect is followed.
  bool send_181 = true;
  /// Redirects followed in a row (a target that redirects again is one level deeper).
  int max_depth = 5;
  /// Targets tried per call, all levels together.
  int max_targets = 16;
  /// How long one target may ring before the next is tried.
  std::chrono::milliseconds target_timeout = std::chrono::seconds(8);
  RedirectToUri to_uri = RedirectToUri::kKeep;
  /// Final answers from a target after which the next target is tried; any other final
  /// answer goes to the caller.
  StatusCodeSet try_next_on = StatusCodeSet::Classes({4, 5});
  /// Add History-Info (RFC 7044) entries for each retargeting.
  bool history_info = true;
  /// Add a Diversion header (RFC 5806) for each retargeting.
  bool diversion = false;
  /// When every target failed, answer the caller with the last 3xx rather than the best
  /// final answer of the targets.
  bool relay_last_3xx = false;
  RedirectFork fork = RedirectFork::kSerial;
  RedirectCacheSettings cache_301;
  RedirectAllowList allow;
  RedirectDenyList deny;
  /// Refuse targets that resolve to one of the B2BUA's own listening addresses.
  bool deny_self = true;

  /// Whether a final `status` from a redirect target moves on to the next target.
  bool TryNextOn(int status) const { return try_next_on.Contains(status); }
  /// `scheme` as written in a URI ("SIP" counts as "sip").
  bool AllowsScheme(std::string_view scheme) const {
    for (const std::string& s : allow.schemes)
      if (proto::EqualsIgnoreCase(s, scheme)) return true;
    return false;
  }

  friend bool operator==(const RedirectSettings&, const RedirectSettings&) = default;
};

/// Where a routed call goes: one entry of a route's `next_hops`.
struct NextHop {
  std::string uri;       // as configured, e.g. "sip:10.0.0.2:5060;transport=tcp"
  std::string host;      // IP literal (IPv6 without brackets) or a DNS name
  uint16_t port = 5060;  // 5060 when the URI has none
  proto::TransportKind transport = proto::TransportKind::kUdp;  // ;transport=, UDP if absent

  friend bool operator==(const NextHop&, const NextHop&) = default;
};

struct Route {
  enum class Action : uint8_t {
    kRoute,     // send the call to next_hops, in order, failing over on failover_on
    kRedirect,  // answer the caller with redirect_code and `contacts`
  };

  /// Digits with an optional leading '+'; empty for the default route.
  std::string prefix;
  /// In failover order. Not empty for kRoute, empty for kRedirect.
  std::vector<NextHop> next_hops;
  Action action = Action::kRoute;
  /// kRedirect only: 301 or 302.
  int redirect_code = 302;
  /// kRedirect only: Contact header values, each checked with the SIP parser
  /// (e.g. "<sip:1001@10.0.0.5>;q=0.9").
  std::vector<std::string> contacts;
  /// The global redirect settings with this route's overrides applied.
  RedirectSettings redirect;
  /// Sources that may use this route; empty: any caller.
  proto::CidrList callers;
  /// Concurrent calls on the route (trunk capacity); 0: no limit.
  uint32_t max_calls = 0;
  /// New calls a second on the route (premium-rate caps); 0: no limit.
  uint32_t calls_per_second = 0;
  /// The prefix of the route that takes this route's calls while it is at max_calls or
  /// calls_per_second ("" names the default route); unset: those calls get 503. Never
  /// implied, so a capped route cannot leak its calls into the default route.
  std::optional<std::string> overflow_to;
  /// Shared by every shard and carried over to the same prefix on reload (never null).
  std::shared_ptr<RouteLoad> load = std::make_shared<RouteLoad>();
  /// 1-based line of the route in the configuration file, for logs.
  int line = 0;
};

/// Routes by the user part of the Request-URI, longest prefix first.
///
/// Matching looks at the digits of the user part. A prefix that starts with '+' matches
/// only users that start with '+' (global numbers); a prefix without '+' matches the
/// digits of the user with any leading '+' removed. Visual separators "-.()" in the user
/// are skipped (RFC 3966 5.1.1), and the digits end at the first other character
/// (";npdi", letters, ...). The longest match wins; between equally long ones, the '+'
/// prefix wins. The empty prefix is the default route and matches any user, including
/// one with no digits at all.
class RouteTable {
 public:
  /// The longest prefix a route may have (E.164 numbers have 15 digits).
  static constexpr size_t kMaxPrefixDigits = 32;

  RouteTable() = default;
  /// `routes` must have unique prefixes made of digits with an optional leading '+'
  /// (ParseConfig() checks this); a later duplicate is ignored.
  explicit RouteTable(std::vector<Route> routes);

  /// The best route for `request_uri_user` (the user part as on the wire; %-escapes are
  /// not decoded), or nullptr when none matches. Safe from any thread; O(length of the
  /// user), never allocates. The pointer is valid as long as this table.
  const Route* Match(std::string_view request_uri_user) const;
  /// Every route that matches `request_uri_user`, best first. Writes at most `capacity`;
  /// returns how many.
  size_t MatchChain(std::string_view request_uri_user, const Route** out, size_t capacity) const;
  /// The route named by `route.overflow_to`, or nullptr. Safe from any thread.
  const Route* OverflowOf(const Route& route) const;

  /// Main thread, before the table is shared: each route takes the RouteLoad of the route
  /// of the same prefix in `previous`, so calls up and rates carry over a reload.
  void InheritLoad(const RouteTable& previous);

  /// No routes at all: every call goes to the host and port of its Request-URI.
  bool empty() const { return routes_.empty(); }
  size_t size() const { return routes_.size(); }
  /// In file order.
  const std::vector<Route>& routes() const { return routes_; }

 private:
  // One node per digit position; the tree for '+' prefixes is separate from the one for
  // plain prefixes because they match differently.
  struct Node {
    int32_t child[10];
    int32_t route;  // index into routes_, -1 when no prefix ends here
  };
  int32_t NewNode();
  // Walks the digits of `user` from index `begin` down the tree at `root`, calling
  // `on_route(route index, digits matched)` for every route met, shortest first.
  template <typename OnRoute>
  void Walk(int32_t root, std::string_view user, size_t begin, OnRoute on_route) const;

  std::vector<Route> routes_;
  std::vector<int32_t> overflow_;  // per route: index of its overflow_to route, or -1
  std::vector<Node> nodes_;
  int32_t plain_root_ = -1;
  int32_t plus_root_ = -1;
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
  /// Final answers from a next hop that make the call try the route's next hop. A
  /// transaction timeout always does.
  StatusCodeSet failover_on = StatusCodeSet::Codes({408, 500, 502, 503, 504});
  ProbeConfig probe;
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
