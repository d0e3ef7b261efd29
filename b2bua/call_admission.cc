// Admission of a new INVITE, before any call state exists: route callers, relay to the
// Request-URI, per-source, per-route and global call limits.

#include "b2bua/call_state.h"

namespace b2bua {

bool CallEngine::AdmitCall(TransactionId id, const SipMessage& request, const Peer& source,
                           CallAdmission* out) {
  const Config& config = *config_;
  const AccessConfig& access = config.access;
  auto refuse = [&](RejectReason reason, int status, std::string_view phrase,
                    std::string_view extra) {
    context_.counters->requests_rejected[static_cast<size_t>(reason)].Inc();
    RespondStateless(id, request, status, phrase, extra);
    return false;
  };
  const proto::SipUri& ruri = request.request_uri();
  // No user part matches only the default route.
  const Route* route = config.routes.Match(ruri.user);
  if (route != nullptr && !route->callers.empty() && !route->callers.Contains(source.address)) {
    return refuse(RejectReason::kRelayDenied, 403, "Forbidden",
                  "Reason: SIP;cause=403;text=\"route not allowed for this source\"\r\n");
  }
  // Without a route the Request-URI host is the next hop: an open relay unless only the
  // sources that may relay get it. A Request-URI naming the B2BUA gets its 404 later.
  if (route == nullptr && ruri.IsSip() && !NamesSelf(ruri) &&
      !access.MayRelayToRequestUri(source.address)) {
    return refuse(RejectReason::kRelayDenied, 403, "Forbidden",
                  "Reason: SIP;cause=403;text=\"relaying to the Request-URI is not allowed\"\r\n");
  }
  SharedCallLimits* limits = context_.call_limits;
  // Trunks and core proxies carry many callers' calls: the per-source cap is for the rest.
  if (limits != nullptr && access.max_calls_per_source != 0 &&
      !access.IsTrusted(source.address)) {
    if (!limits->per_source.TryAcquire(source.address, access.max_calls_per_source)) {
      return refuse(RejectReason::kCallsPerSource, 503, "Service Unavailable",
                    "Retry-After: 5\r\nReason: SIP;cause=503;text=\"too many calls from this "
                    "source\"\r\n");
    }
    out->source_counted = true;
  }
  auto release = [&] {
    if (out->route_load != nullptr) out->route_load->calls.Release();
    out->route_load = nullptr;
    if (out->source_counted) limits->per_source.Release(source.address);
    out->source_counted = false;
  };
  const proto::TimePoint now = context_.clock->Now();
  // A route at its capacity or rate hands the call to the route it names in overflow_to,
  // if any; a bounded walk, so a cycle of overflow_to names cannot spin.
  const Route* chosen = route;
  for (int hop = 0; chosen != nullptr && chosen->action == Route::Action::kRoute; ++hop) {
    if (hop == 8 || (!chosen->callers.empty() && !chosen->callers.Contains(source.address))) {
      chosen = nullptr;
      break;
    }
    if (chosen->load->calls.TryAcquire(chosen->max_calls)) {
      if (chosen->load->rate.TryAcquire(now, chosen->calls_per_second)) {
        out->route_load = chosen->load.get();
        break;
      }
      chosen->load->calls.Release();
    }
    chosen = config.routes.OverflowOf(*chosen);
  }
  if (route != nullptr && chosen == nullptr) {
    release();
    return refuse(RejectReason::kRouteLimit, 503, "Service Unavailable",
                  "Retry-After: 5\r\nReason: SIP;cause=503;text=\"route at capacity\"\r\n");
  }
  // The global rate last: a call refused above has not spent a token of it.
  if (limits != nullptr && !limits->global_rate.TryAcquire(now, config.limits.calls_per_second)) {
    release();
    return refuse(RejectReason::kRate, 503, "Service Unavailable",
                  "Retry-After: 1\r\nReason: SIP;cause=503;text=\"call rate limit\"\r\n");
  }
  out->route = chosen;
  return true;
}

}  // namespace b2bua
