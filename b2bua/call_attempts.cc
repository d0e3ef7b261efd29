// The B-leg attempts: the INVITE to a next hop or a redirect target, in turn, resolved by
// RFC 3263 when named, with 503 Retry-After rests honoured.

#include "b2bua/call_state.h"

namespace b2bua {

bool CallEngine::SendBLegInvite(Call& call, std::string_view request_uri, const Peer& destination,
                                std::string_view proxy_route) {
  const RedirectSettings& settings = SettingsFor(call);
  // Every redirect hop draws on the caller's Max-Forwards budget (never reset to 70).
  int max_forwards = call.setup().max_forwards - 1 - call.setup().max_depth_seen;
  if (max_forwards < 0) {
    call.setup().hops_exhausted = true;
    return false;
  }
  // RFC 3261 26.2.2: a sips: Request-URI travels over TLS on every hop, or not at all.
  if (IsSipsUri(request_uri) && destination.transport != proto::TransportKind::kTls) {
    call.setup().sips_refused = true;
    return false;
  }
  if (destination.transport == proto::TransportKind::kTls) {
    if (context_.tls_names == nullptr) return false;  // no TLS configured
    // The certificate must name the host the hop was given by; an IP literal names itself.
    const std::string& host = call.setup().pending_host;
    proto::NetAddress literal;
    if (!host.empty() && !proto::NetAddress::ParseIp(host, 0, &literal))
      context_.tls_names->SetServerName(destination.address, host);
  }
  call.b_request_uri = std::string(request_uri);
  // What this attempt's target (index 0: the original) was sent, for a 305 it may answer.
  const size_t attempt = call.setup().current_target < 0
                             ? 0 : static_cast<size_t>(call.setup().current_target);
  std::vector<std::string>& sent = call.setup().sent_request_uris;
  if (sent.size() <= attempt) sent.resize(attempt + 1);
  sent[attempt] = call.b_request_uri;
  call.b_invite_cseq = call.b.local_cseq++;
  std::string branch = tokens_.Branch('b');
  const std::string via = StrCat("SIP/2.0/", proto::TransportName(destination.transport), " ",
                                 HostPortFor(destination.transport), ";branch=", branch,
                                 ";rport");
  std::string out;
  out.reserve(1024 + call.setup().offer_body.size() + call.setup().passed.size());
  StrAppend(&out, "INVITE ", request_uri, " SIP/2.0\r\n");
  AppendHeader(out, "Via", via);
  if (!proxy_route.empty()) AppendHeader(out, "Route", proxy_route);
  StrAppend(&out, "Max-Forwards: ", max_forwards, "\r\n");
  AppendHeader(out, "From", call.b.local_party);
  AppendHeader(out, "To", call.setup().b_to);
  AppendHeader(out, "Call-ID", call.b.call_id);
  StrAppend(&out, "CSeq: ", call.b_invite_cseq, " INVITE\r\n");
  AppendHeader(out, "Contact", ContactFor(destination.transport));
  if (call.in_redirect && !call.setup().history_info.empty()) {
    if (settings.history_info) AppendHeader(out, "History-Info", call.setup().history_info);
    if (settings.diversion && call.setup().current_target >= 0) {
      // RFC 5806: diverted from the target whose 3xx named this one.
      const int from = call.setup().targets.at(
          static_cast<size_t>(call.setup().current_target)).from_target;
      AppendHeader(out, "Diversion",
                   StrCat("<", SentRequestUri(call, from), ">;reason=unconditional"));
    }
  }
  StrAppend(&out, call.setup().passed);
  {
    // RFC 3325: the asserted identity stays inside the trust domain when the caller asked
    // for privacy, and a preferred identity is never handed to a trusted next hop, which
    // could take it for one we asserted.
    const bool trusted_hop = call.config->access.IsTrusted(destination.address);
    if (trusted_hop || !call.setup().privacy_id) StrAppend(&out, call.setup().asserted_identity);
    if (!trusted_hop) StrAppend(&out, call.setup().preferred_identity);
  }
  AppendBody(out, call.setup().offer_body, call.setup().offer_type);
  call.b.peer = destination;
  call.b_acked = false;
  call.b_cancel_sent = false;
  context_.counters->requests_sent[static_cast<size_t>(Method::kInvite)].Inc();
  call.b_invite =
      transactions_->SendRequest(std::move(out), branch, Method::kInvite, destination, call.cookie);
  return call.b_invite != proto::kNoTransaction;
}

bool CallEngine::StartNextAttempt(Call& call) {
  // Next hops of the route, in order (serial failover).
  while (!call.in_redirect && call.setup().next_hop < call.setup().hops.size()) {
    const NextHop& hop = call.setup().hops[call.setup().next_hop++];
    proto::SipUri uri;
    if (proto::ParseUri(hop.uri, &uri) != proto::UriError::kNone) continue;
    std::optional<proto::TransportKind> transport;
    if (!uri.transport.empty() || uri.scheme == proto::UriScheme::kSips)
      transport = hop.transport;
    std::string request_uri =
        call.setup().hop_request_uri.empty() ? call.setup().a_request_uri : call.setup().hop_request_uri;
    proto::SipUri original;
    if (call.setup().hop_request_uri.empty() &&
        proto::ParseUri(call.setup().a_request_uri, &original) == proto::UriError::kNone &&
        original.IsSip() && NamesSelf(original)) {
      // A Request-URI naming the B2BUA would bring the call straight back through a proxy
      // next hop: address the user at the next hop instead (a trunk routes on the user).
      const bool v6 = hop.host.find(':') != std::string::npos;
      request_uri = StrCat("sip:", original.user, original.has_user ? "@" : "",
                           v6 ? "[" : "", hop.host, v6 ? "]" : "",
                           uri.port ? StrCat(":", uri.port) : "");
    }
    if (SendAttempt(call, uri, std::move(request_uri), {}, transport, -1)) return true;
  }
  if (!call.in_redirect) return false;
  // Redirect targets, best q first.
  while (Target* target = call.setup().targets.NextPending()) {
    const size_t index = target->index;
    PolicyDecision decision = DecideTarget(call, *target);
    if (decision == PolicyDecision::kPending) {
      // The application decides later (ResumeRedirect); the shard goes on meanwhile.
      call.setup().parked = true;
      call.setup().current_target = static_cast<int>(index);
      return true;
    }
    if (decision == PolicyDecision::kStop) {
      call.setup().targets.MarkResult(index, TargetState::kRefused, 0);
      break;
    }
    if (AttemptTarget(call, index, decision)) return true;
  }
  return false;
}

const std::string& CallEngine::SentRequestUri(Call& call, int target_index) {
  const std::vector<std::string>& sent = call.setup().sent_request_uris;
  const size_t index = target_index < 0 ? 0 : static_cast<size_t>(target_index);
  return index < sent.size() && !sent[index].empty() ? sent[index]
                                                     : call.setup().a_request_uri;
}

void CallEngine::RefuseTarget(Call& call, size_t index) {
  ++call.setup().refused;
  context_.counters->redirect_targets[static_cast<size_t>(TargetOutcome::kRefusedByPolicy)].Inc();
  call.setup().targets.MarkResult(index, TargetState::kRefused, 0);
}

bool CallEngine::AttemptTarget(Call& call, size_t index, PolicyDecision decision) {
  const RedirectSettings& settings = SettingsFor(call);
  if (call.setup().max_forwards - 1 - call.setup().max_depth_seen < 0) {
    // The caller's Max-Forwards budget is spent: no redirect hop may go further.
    call.setup().hops_exhausted = true;
    call.setup().targets.MarkResult(index, TargetState::kRefused, 0);
    return false;
  }
  if (decision == PolicyDecision::kReject || decision == PolicyDecision::kStop) {
    RefuseTarget(call, index);
    return false;
  }
  const Target& target = call.setup().targets.at(index);
  std::string request_uri = target.request_uri;
  const int redirect_status = target.redirect_status;
  const int redirected_by = target.from_target;
  proto::SipUri uri;
  if (proto::ParseUri(request_uri, &uri) != proto::UriError::kNone) {
    RefuseTarget(call, index);
    return false;
  }
  // Where the INVITE goes: the target itself, or for tel: the route's first next hop.
  std::string destination_text = request_uri;
  std::optional<proto::TransportKind> transport;
  if (uri.scheme == proto::UriScheme::kTel) {
    // tel: targets are re-routed by number through the route table.
    const Route* route = call.config->routes.Match(uri.user);
    if (route == nullptr || route->next_hops.empty()) {
      RefuseTarget(call, index);
      return false;
    }
    const NextHop& hop = route->next_hops.front();
    destination_text = hop.uri;
    transport = hop.transport;
    request_uri = StrCat("sip:", uri.user, "@", hop.host,
                         hop.port != 5060 ? StrCat(":", hop.port) : "", ";user=phone");
  } else if (!uri.transport.empty() || uri.scheme == proto::UriScheme::kSips) {
    transport = TransportOfUri(uri);
  }
  proto::SipUri destination_uri;
  if (proto::ParseUri(destination_text, &destination_uri) != proto::UriError::kNone ||
      (destination_uri.host_kind == proto::HostKind::kName && context_.resolver == nullptr)) {
    // A host name with no resolver configured cannot be reached.
    RefuseTarget(call, index);
    return false;
  }
  if (decision == PolicyDecision::kAcceptReplace || settings.to_uri == RedirectToUri::kReplace)
    call.setup().b_to = StrCat("<", request_uri, ">");
  std::string proxy_route;
  if (redirect_status == 305) {
    // 305 Use Proxy (RFC 3261 21.3.6): the Contact is the proxy; the request that got the
    // 305 is sent again, same Request-URI, through it.
    proxy_route = StrCat("<", request_uri, ";lr>");
    request_uri = SentRequestUri(call, redirected_by);
  }
  // History-Info (RFC 7044): the first target this leg asked for, then each retargeting
  // with its cause.
  if (call.setup().history_info.empty())
    call.setup().history_info = StrCat("<", SentRequestUri(call, 0), ">;index=1");
  StrAppend(&call.setup().history_info, ", <", request_uri, ">;index=1.", index, ";rc=",
                  redirect_status ? redirect_status : 302);
  call.setup().current_target = static_cast<int>(index);
  if (call.setup().attempt_started.size() < call.setup().targets.size()) {
    call.setup().attempt_started.resize(call.setup().targets.size());
    call.setup().attempt_took.resize(call.setup().targets.size(), proto::Duration::zero());
  }
  call.setup().attempt_started[index] = context_.clock->Now();
  ArmTimer(call, &call.target_timer, settings.target_timeout, kTargetTimeout);
  if (SendAttempt(call, destination_uri, std::move(request_uri), std::move(proxy_route),
                  transport, static_cast<int>(index)))
    return true;
  call.setup().targets.MarkResult(index, TargetState::kFailed, 0);
  return false;
}

bool CallEngine::SendAttempt(Call& call, const proto::SipUri& uri, std::string request_uri,
                             std::string proxy_route,
                             std::optional<proto::TransportKind> transport, int target_index) {
  // A new attempt supersedes any resolution still out and the addresses left from the
  // previous one: a late answer must not start a second INVITE.
  call.setup().resolving = false;
  ++call.setup().resolve_generation;
  call.setup().spare_addresses.clear();
  Peer destination;
  call.setup().pending_host.assign(uri.host);
  if (DestinationFor(uri, &destination)) {
    if (transport) destination.transport = *transport;
    if (target_index < 0 && HopResting(destination)) {
      call.setup().skipped_resting = true;
      return false;
    }
    return SendBLegInvite(call, request_uri, destination, proxy_route);
  }
  if (context_.resolver == nullptr || uri.host_kind != proto::HostKind::kName) return false;
  // RFC 3263 resolution is asynchronous: the attempt waits for it, the shard goes on.
  call.setup().pending_request_uri = std::move(request_uri);
  call.setup().pending_proxy_route = std::move(proxy_route);
  call.setup().pending_target = target_index;
  call.setup().resolving = true;
  const uint64_t generation = call.setup().resolve_generation;
  const uint64_t cookie = call.cookie;
  context_.resolver->Resolve(
      uri.host, uri.port, transport, uri.scheme == proto::UriScheme::kSips,
      [this, cookie, generation](const proto::ResolvedTargets& result) {
        OnResolved(cookie, generation, result);
      });
  return true;
}

void CallEngine::OnResolved(uint64_t cookie, uint64_t generation,
                            const proto::ResolvedTargets& result) {
  auto it = calls_.find(cookie);
  if (it == calls_.end()) return;
  Call& call = *it->second;
  // A late answer for a call already set up (or ended) finds nothing waiting.
  if (!call.setup_view().resolving || generation != call.setup_view().resolve_generation) return;
  call.setup().resolving = false;
  if (call.cancelled ||
      (call.state != Call::State::kTrying && call.state != Call::State::kEarly))
    return;
  const RedirectSettings& settings = SettingsFor(call);
  bool refused = false;
  bool sent = false;
  if (result.status == proto::ResolveStatus::kOk) {
    // In RFC 3263 order; the first address we may and can use wins.
    for (const proto::ResolvedTarget& target : result.targets) {
      // RFC 3263 targets: TLS ones when this B2BUA has TLS, UDP ones always.
      Peer destination{target.address, target.transport, 0};
      if (target.tls) {
        if (context_.tls_names == nullptr) continue;
        destination.transport = proto::TransportKind::kTls;
      } else if (target.transport != proto::TransportKind::kUdp) {
        continue;
      }
      if (call.setup().pending_target >= 0) {
        // A name must not lead where an address would be refused (RFC 1918, ourselves).
        const bool self = destination.address == context_.local_address;
        if ((settings.deny_self && self) ||
            (call.setup().policy && !call.setup().policy->AddressAllowed(destination.address))) {
          refused = true;
          continue;
        }
      } else if (HopResting(destination)) {
        call.setup().skipped_resting = true;
        continue;
      }
      if (!sent) {
        sent = SendBLegInvite(call, call.setup().pending_request_uri, destination,
                              call.setup().pending_proxy_route);
      } else {
        // RFC 3263 4.3: the other addresses of the name are tried if this one fails.
        call.setup().spare_addresses.push_back(destination);
      }
    }
  }
  if (sent) return;
  if (call.setup().pending_target >= 0) {
    const size_t index = static_cast<size_t>(call.setup().pending_target);
    if (refused) {
      RefuseTarget(call, index);
    } else {
      context_.counters->redirect_targets[static_cast<size_t>(TargetOutcome::kFailed)].Inc();
      call.setup().targets.MarkResult(index, TargetState::kFailed, 0);
    }
    context_.timers->Cancel(&call.target_timer);
  }
  if (!StartNextAttempt(call)) FinishSearch(call);
}

bool CallEngine::HopResting(const Peer& destination) const {
  if (dead_hops_.contains(destination.address)) return true;
  auto it = resting_hops_.find(destination.address);
  return it != resting_hops_.end() && it->second > context_.clock->Now();
}

}  // namespace b2bua
