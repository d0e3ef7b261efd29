#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "proto/cidr.h"
#include "proto/net_address.h"

namespace b2bua {

/// What a request from a source outside `access.callers` gets.
enum class UnknownSourceAction : uint8_t {
  kReject,  // 403 Forbidden with a Reason
  kDrop,    // silence: nothing tells a scanner that a SIP server is here
};

/// Who may have a call sent to its Request-URI host when no route matches.
enum class RequestUriRelay : uint8_t {
  kTrusted,  // sources in access.trusted only
  kNobody,   // routes only
  kAnyone,   // every caller: an open relay, for closed labs only
};

/// Per-source request-rate limit, Kamailio pike style: more than `max_requests` requests
/// within `window` blocks the source for `block_for`.
struct FloodSettings {
  std::chrono::milliseconds window = std::chrono::seconds(2);
  uint32_t max_requests = 200;  // 0 turns flood protection off
  std::chrono::milliseconds block_for = std::chrono::seconds(60);
  /// Sources tracked per shard; bounds the memory spoofed addresses can take.
  uint32_t max_sources = 1000000;

  friend bool operator==(const FloodSettings&, const FloodSettings&) = default;
};

/// User-Agent values of SIP scanners, matched as case-insensitive substrings.
class ScannerList {
 public:
  /// The list used when the config names none: the tools seen knocking on SIP ports.
  static const std::vector<std::string>& Defaults();

  ScannerList();
  explicit ScannerList(std::vector<std::string> patterns);

  /// True when some pattern occurs in `user_agent`, ignoring ASCII case. Owning shard only:
  /// it lower-cases into `scratch`, a buffer the caller reuses so no call allocates.
  bool Matches(std::string_view user_agent, std::string* scratch) const;
  /// As configured, for logs and tests.
  const std::vector<std::string>& patterns() const { return patterns_; }
  bool empty() const { return lowered_.empty(); }

  friend bool operator==(const ScannerList& a, const ScannerList& b) {
    return a.patterns_ == b.patterns_;
  }

 private:
  std::vector<std::string> patterns_;
  std::vector<std::string> lowered_;
};

/// The `access` section: who may use the B2BUA and for what, decided before any work is
/// done for a request. Part of the config snapshot, so a SIGHUP swaps every list at once.
struct AccessConfig {
  /// The trust domain (RFC 3325): core proxies and trunks. Their P-Asserted-Identity is
  /// kept, they may relay to any Request-URI (by default), and they are never flood-blocked.
  proto::CidrList trusted = LoopbackOnly();
  /// Sources that may start dialogs at all; trusted sources always may.
  proto::CidrList callers = LoopbackOnly();
  UnknownSourceAction unknown_source = UnknownSourceAction::kReject;
  RequestUriRelay relay_to_request_uri = RequestUriRelay::kTrusted;
  ScannerList scanner_user_agents;
  FloodSettings flood;
  /// Concurrent calls from one source address; 0: no limit.
  uint32_t max_calls_per_source = 0;

  /// 127.0.0.0/8 and ::1/128.
  static proto::CidrList LoopbackOnly();

  bool IsTrusted(const proto::NetAddress& source) const { return trusted.Contains(source); }
  /// May `source` start a dialog (send a request without a To tag)?
  bool IsCaller(const proto::NetAddress& source) const {
    return callers.Contains(source) || trusted.Contains(source);
  }
  /// May a call from `source` go to its Request-URI host when no route matches?
  bool MayRelayToRequestUri(const proto::NetAddress& source) const {
    switch (relay_to_request_uri) {
      case RequestUriRelay::kTrusted: return trusted.Contains(source);
      case RequestUriRelay::kNobody: return false;
      case RequestUriRelay::kAnyone: return true;
    }
    return false;
  }

  friend bool operator==(const AccessConfig&, const AccessConfig&) = default;
};

}  // namespace b2bua
