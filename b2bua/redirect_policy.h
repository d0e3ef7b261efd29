#pragma once

#include <array>
#include <memory>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "b2bua/redirect_settings.h"
#include "b2bua/target_set.h"
#include "proto/cidr.h"
#include "proto/net_address.h"
#include "proto/sip_uri.h"

namespace b2bua {

using proto::Cidr;

/// Safe from any thread. Domain rule: `host` equals `domain` or ends in "." + `domain`,
/// ASCII case-insensitive, one trailing dot ignored on either; a leading dot on `domain` is
/// ignored. "example.com" matches "a.example.com", not "badexample.com".
bool DomainMatches(std::string_view host, std::string_view domain);

/// Which redirect targets may be followed. Deny lists win over allow lists; an empty allow
/// list allows everything its deny list does not refuse.
struct RedirectSecurity {
  std::vector<std::string> allow_domains;
  std::vector<std::string> deny_domains;
  proto::CidrList allow_cidrs;
  proto::CidrList deny_cidrs;
  /// Schemes, case-insensitive. Add "tel" when the route table can route numbers: tel:
  /// targets are then accepted here; the engine re-routes them by number.
  std::vector<std::string> allowed_schemes = {"sip", "sips"};
};

enum class PolicyDecision : uint8_t {
  kAccept,         // follow the target
  kAcceptReplace,  // follow it and replace the To of the new INVITE with the target
  kReject,         // skip this target (the engine marks it kRefused) and go on
  kStop,           // stop the redirect search; the caller gets the best response so far
  kPending,        // the decision arrives later through ResumeRedirect()
};

/// "accept", "accept-replace", ... for logs. Static storage.
std::string_view PolicyDecisionName(PolicyDecision decision);

/// The application's say on each redirect target, as PJSIP's on_redirected() callback: the
/// engine calls Decide() once per target, just before sending to it.
///
/// A kPending decision parks the target: the engine keeps the call waiting (its timers still
/// run) until the application calls the engine's `ResumeRedirect(call_cookie, decision)` on
/// the call's owning shard with the final decision (any value but kPending). A call that ends
/// meanwhile makes a later ResumeRedirect() a no-op. The engine, not the policy, counts
/// decisions.
class RedirectPolicy {
 public:
  virtual ~RedirectPolicy() = default;

  /// Owning shard only. Must not block. `target` is valid for the duration of the call only;
  /// copy what a kPending decision needs. `call_cookie` identifies the call for
  /// ResumeRedirect().
  virtual PolicyDecision Decide(const Target& target, uint64_t call_cookie) = 0;
};

/// The shipped policy: RedirectSecurity from the config, decided synchronously. Never
/// returns kStop or kPending.
///
/// Order: a URI that does not parse or whose scheme is not allowed is rejected. For sip: and
/// sips:, the host and the maddr parameter, if any (maddr overrides the host as destination,
/// so it is checked too), must each pass: an IP literal is rejected when a deny CIDR holds it,
/// or when allow CIDRs exist and none holds it; a name is rejected when a deny domain matches,
/// or when allow domains exist and none matches. A tel: or other allowed scheme has no host
/// to check. Otherwise kAcceptReplace when `replace_to`, else kAccept.
///
/// A name is checked as written: the addresses it resolves to are for the engine to vet with
/// AddressAllowed() after DNS, or a name could lead to a denied address.
class ConfiguredRedirectPolicy : public RedirectPolicy {
 public:
  ConfiguredRedirectPolicy(RedirectSecurity security, bool replace_to);
  /// Safe from any thread (config load). The policy `settings` describe: its allow and
  /// deny lists, tel: accepted for re-routing by number, To replaced when to_uri says so.
  /// Built once per config snapshot and route, shared by every call that uses them.
  static std::shared_ptr<const ConfiguredRedirectPolicy> FromSettings(
      const RedirectSettings& settings);

  /// Owning shard only (the object is immutable: any thread would do).
  PolicyDecision Decide(const Target& target, uint64_t call_cookie) override;
  /// Safe from any thread. Decide() without a call: the policy holds no state.
  PolicyDecision Check(const Target& target) const;

  /// Safe from any thread. The CIDR rules alone, for an address a name resolved to.
  bool AddressAllowed(const proto::NetAddress& address) const;
  /// Safe from any thread. The domain rules alone.
  bool DomainAllowed(std::string_view host) const;
  /// Safe from any thread. The scheme rule alone.
  bool SchemeAllowed(std::string_view scheme) const;

  bool replace_to() const { return replace_to_; }

 private:
  bool HostAllowed(std::string_view host, proto::HostKind kind) const;

  const RedirectSecurity security_;
  const bool replace_to_;
};

}  // namespace b2bua
