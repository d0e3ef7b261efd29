#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "b2bua/call_limits.h"
#include "b2bua/redirect_policy.h"
#include "b2bua/redirect_settings.h"
#include "proto/cidr.h"
#include "proto/transport.h"

namespace b2bua {

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
  /// The redirect policy `redirect` describes, built once at load (never null once loaded).
  std::shared_ptr<const ConfiguredRedirectPolicy> redirect_policy;
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
  // Walks the digits of `user` from index `begin` down the tree at `root`; `*best` is the
  // deepest route met (-1 if none) and `*best_depth` the digits it took to get there.
  void Walk(int32_t root, std::string_view user, size_t begin, int32_t* best,
            int* best_depth) const;

  std::vector<Route> routes_;
  std::vector<int32_t> overflow_;  // per route: index of its overflow_to route, or -1
  std::vector<Node> nodes_;
  int32_t plain_root_ = -1;
  int32_t plus_root_ = -1;
};

}  // namespace b2bua
