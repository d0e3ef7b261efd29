#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "b2bua/status_code_set.h"
#include "proto/cidr.h"
#include "proto/sip_chars.h"

namespace b2bua {

// How 3xx answers are followed: the `redirect:` section of the config, globally and per route.

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

/// Which attempt's early media (a provisional answer's body) reaches the caller.
enum class EarlyMedia : uint8_t {
  kFirst,  // the first attempt that sends a body keeps the early media until it ends
  kNone,   // provisional answers reach the caller without their body
};

/// The permanent-redirect cache: a 301 answer for a Request-URI is remembered so that the
/// next call to it goes straight to the target.
struct RedirectCacheSettings {
  uint32_t entries = 1000;  // 0 turns the cache off
  std::chrono::milliseconds ttl = std::chrono::hours(1);

  friend bool operator==(const RedirectCacheSettings&, const RedirectCacheSettings&) = default;
};

/// Which redirect targets may be tried. Domains are lower-cased host names; a domain also
/// covers its subdomains (b2bua/redirect_policy.h DomainMatches). CIDRs are parsed once, at
/// load ("address/length", IPv6 may be bracketed, no host bits set; a bare address is a
/// /32 or /128).
struct RedirectAllowList {
  std::vector<std::string> domains;  // empty: any domain (deny still applies)
  proto::CidrList cidrs;             // empty: any address (deny still applies)
  /// Lower-case "sip", "sips" or "tel"; never empty.
  std::vector<std::string> schemes = {"sip", "sips"};

  friend bool operator==(const RedirectAllowList&, const RedirectAllowList&) = default;
};

struct RedirectDenyList {
  std::vector<std::string> domains;
  proto::CidrList cidrs;

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
  StatusCodeSet try_next_on = StatusCodeSet::FailureClasses();
  /// Add History-Info (RFC 7044) entries for each retargeting.
  bool history_info = true;
  /// Add a Diversion header (RFC 5806) for each retargeting.
  bool diversion = false;
  /// When every target failed, answer the caller with the last 3xx rather than the best
  /// final answer of the targets.
  bool relay_last_3xx = false;
  RedirectFork fork = RedirectFork::kSerial;
  /// Most targets of one parallel group; a larger group of equal q is split.
  int max_parallel = 8;
  EarlyMedia early_media = EarlyMedia::kFirst;
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

}  // namespace b2bua
