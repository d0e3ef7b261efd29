// The callee leg's attempts: INVITEs to the route's next hops in turn, and to the redirect
// targets the search picks (one at a time, or a group at once), resolved by RFC 3263 when
// named, with 503 Retry-After rests honoured.

#include "b2bua/call_state.h"

namespace b2bua {

size_t CallEngine::NewAttempt(Call& call, uint16_t target, bool next_hop) {
  std::vector<Attempt>& attempts = call.setup().attempts;
  Attempt& attempt = attempts.emplace_back();
  attempt.target = target;
  attempt.next_hop = next_hop;
  attempt.started = context_.clock->Now();
  return attempts.size() - 1;
}

bool CallEngine::SendBLegInvite(Call& call, size_t slot, const Peer& destination) {
  CallSetup& setup = call.setup();
  Attempt& attempt = setup.attempts[slot];
  const RedirectSettings& settings = SettingsFor(call);
  // Every redirect hop draws on the caller's Max-Forwards budget (never reset to 70).
  const int max_forwards = setup.max_forwards - 1 - setup.search.max_depth_seen();
  if (max_forwards < 0) {
    setup.hops_exhausted = true;
    return false;
  }
  // RFC 3261 26.2.2: a sips: Request-URI travels over TLS on every hop, or not at all.
  if (IsSipsUri(attempt.request_uri) && destination.transport != proto::TransportKind::kTls) {
    setup.sips_refused = true;
    return false;
  }
  if (destination.transport == proto::TransportKind::kTls) {
    if (context_.tls_names == nullptr) return false;  // no TLS configured
    // The certificate must name the host the hop was given by; an IP literal names itself.
    proto::NetAddress literal;
    if (!attempt.host.empty() && !proto::NetAddress::ParseIp(attempt.host, 0, &literal))
      context_.tls_names->SetServerName(destination.address, attempt.host);
  }
  attempt.cseq = call.b.local_cseq++;
  std::string branch = tokens_.Branch('b');
  const std::string via = StrCat("SIP/2.0/", proto::TransportName(destination.transport), " ",
                                 HostPortFor(destination.transport), ";branch=", branch,
                                 ";rport");
  std::string out;
  out.reserve(1024 + setup.offer_body.size() + setup.passed.size());
  StrAppend(&out, "INVITE ", attempt.request_uri, " SIP/2.0\r\n");
  AppendHeader(out, "Via", via);
  if (!attempt.proxy_route.empty()) AppendHeader(out, "Route", attempt.proxy_route);
  StrAppend(&out, "Max-Forwards: ", max_forwards, "\r\n");
  AppendHeader(out, "From", call.b.local_party);
  AppendHeader(out, "To", attempt.to.empty() ? setup.b_to : attempt.to);
  AppendHeader(out, "Call-ID", call.b.call_id);
  StrAppend(&out, "CSeq: ", attempt.cseq, " INVITE\r\n");
  AppendHeader(out, "Contact", ContactFor(call, destination.transport));
  if (!attempt.next_hop && call.in_redirect) {
    if (settings.history_info && !attempt.history.empty())
      AppendHeader(out, "History-Info", attempt.history);
    if (settings.diversion) {
      // RFC 5806: diverted from the target whose 3xx named this one.
      const int from = setup.search.targets().at(attempt.target).from_target;
      AppendHeader(out, "Diversion",
                   StrCat("<", SentRequestUri(call, from), ">;reason=unconditional"));
    }
  }
  StrAppend(&out, setup.passed);
  {
    // RFC 3325: the asserted identity stays inside the trust domain when the caller asked
    // for privacy, and a preferred identity is never handed to a trusted next hop, which
    // could take it for one we asserted.
    const bool trusted_hop = call.config->access.IsTrusted(destination.address);
    if (trusted_hop || !setup.privacy_id) StrAppend(&out, setup.asserted_identity);
    if (!trusted_hop) StrAppend(&out, setup.preferred_identity);
  }
  AppendBody(out, setup.offer_body, setup.offer_type);
  attempt.peer = destination;
  context_.counters->requests_sent[static_cast<size_t>(Method::kInvite)].Inc();
  attempt.invite =
      transactions_->SendRequest(std::move(out), branch, Method::kInvite, destination, call.cookie);
  attempt.state = attempt.invite != proto::kNoTransaction ? Attempt::State::kCalling
                                                          : Attempt::State::kDone;
  return attempt.invite != proto::kNoTransaction;
}

bool CallEngine::StartNextHop(Call& call) {
  CallSetup& setup = call.setup();
  while (!call.in_redirect && setup.next_hop < setup.hops.size()) {
    const NextHop hop = setup.hops[setup.next_hop++];
    proto::SipUri uri;
    if (proto::ParseUri(hop.uri, &uri) != proto::UriError::kNone) continue;
    std::optional<proto::TransportKind> transport;
    if (!uri.transport.empty() || uri.scheme == proto::UriScheme::kSips)
      transport = hop.transport;
    std::string request_uri =
        setup.hop_request_uri.empty() ? setup.a_request_uri : setup.hop_request_uri;
    proto::SipUri original;
    if (setup.hop_request_uri.empty() &&
        proto::ParseUri(setup.a_request_uri, &original) == proto::UriError::kNone &&
        original.IsSip() && NamesSelf(original)) {
      // A Request-URI naming the B2BUA would bring the call straight back through a proxy
      // next hop: address the user at the next hop instead (a trunk routes on the user).
      const bool v6 = hop.host.find(':') != std::string::npos;
      request_uri = StrCat("sip:", original.user, original.has_user ? "@" : "",
                           v6 ? "[" : "", hop.host, v6 ? "]" : "",
                           uri.port ? StrCat(":", uri.port) : "");
    }
    const size_t slot = NewAttempt(call, 0, true);
    call.setup().attempts[slot].request_uri = std::move(request_uri);
    if (SendAttempt(call, slot, uri, transport)) return true;
  }
  return false;
}

const std::string& CallEngine::SentRequestUri(Call& call, int target) {
  const uint16_t index = target < 0 ? 0 : static_cast<uint16_t>(target);
  const std::vector<Attempt>& attempts = call.setup().attempts;
  for (auto it = attempts.rbegin(); it != attempts.rend(); ++it)
    if (it->target == index && it->invite != proto::kNoTransaction) return it->request_uri;
  return call.setup().a_request_uri;
}

void CallEngine::CountRefused(Call& call) {
  ++call.setup().refused;
  context_.counters->redirect_targets[static_cast<size_t>(TargetOutcome::kRefusedByPolicy)].Inc();
}

void CallEngine::RunSearch(Call& call, SearchStep step, const SipMessage* response) {
  for (;;) {
    if (call.state == Call::State::kEnding) return;
    CancelTargets(call, step.cancel, {});
    switch (step.action) {
      case SearchStep::Action::kWait:
      case SearchStep::Action::kAnswer:  // OnAttempt2xx bridges the call itself
        return;
      case SearchStep::Action::kRelayResponse:
        RelayFinal(call, response != nullptr ? response->status_code() : 500,
                   response != nullptr ? response->reason_phrase() : "Server Internal Error",
                   response);
        return;
      case SearchStep::Action::kFinish:
        FinishSearch(call);
        return;
      case SearchStep::Action::kStart:
        break;
    }
    // History-Info (RFC 7044): the first target this leg asked for, then each retargeting.
    // The attempts of one group share what came before it, each adding its own entry.
    CallSetup& setup = call.setup();
    if (setup.history_info.empty())
      setup.history_info = StrCat("<", SentRequestUri(call, 0), ">;index=1");
    const std::string history_before_group = setup.history_info;
    std::optional<SearchStep> after;
    for (uint16_t target : step.start) {
      if (call.state == Call::State::kEnding) return;
      const size_t slot = NewAttempt(call, target, false);
      call.setup().attempts[slot].history = history_before_group;
      const Launch launch = StartTarget(call, target);
      if (launch == Launch::kStarted) continue;
      call.setup().attempts[slot].state = Attempt::State::kDone;
      // Only the last of these can be more than kWait: the group's others are still live.
      after = call.setup().search.OnNotSent(
          target, launch == Launch::kFailed ? TargetState::kFailed : TargetState::kRefused,
          launch == Launch::kStopped);
    }
    if (!after) return;
    step = std::move(*after);
    response = nullptr;
  }
}

CallEngine::Launch CallEngine::StartTarget(Call& call, uint16_t target) {
  const size_t slot = call.setup().attempts.size() - 1;
  const PolicyDecision decision = DecideTarget(call, call.setup().search.targets().at(target));
  if (decision == PolicyDecision::kPending) {
    // The application decides later (ResumeRedirect); the shard goes on meanwhile.
    call.setup().attempts[slot].state = Attempt::State::kParked;
    return Launch::kStarted;
  }
  return LaunchTarget(call, slot, decision);
}

CallEngine::Launch CallEngine::LaunchTarget(Call& call, size_t slot, PolicyDecision decision) {
  CallSetup& setup = call.setup();
  const RedirectSettings& settings = SettingsFor(call);
  const uint16_t index = setup.attempts[slot].target;
  if (decision == PolicyDecision::kStop) {
    CountRefused(call);
    return Launch::kStopped;
  }
  if (setup.max_forwards - 1 - setup.search.max_depth_seen() < 0) {
    // The caller's Max-Forwards budget is spent: no redirect hop may go further.
    setup.hops_exhausted = true;
    return Launch::kRefused;
  }
  if (decision == PolicyDecision::kReject) {
    CountRefused(call);
    return Launch::kRefused;
  }
  const Target& target = setup.search.targets().at(index);
  std::string request_uri = target.request_uri;
  const int redirect_status = target.redirect_status;
  const int redirected_by = target.from_target;
  proto::SipUri uri;
  if (proto::ParseUri(request_uri, &uri) != proto::UriError::kNone) {
    CountRefused(call);
    return Launch::kRefused;
  }
  // Where the INVITE goes: the target itself, or for tel: the route's first next hop.
  std::string destination_text = request_uri;
  std::optional<proto::TransportKind> transport;
  if (uri.scheme == proto::UriScheme::kTel) {
    // tel: targets are re-routed by number through the route table.
    const Route* route = call.config->routes.Match(uri.user);
    if (route == nullptr || route->next_hops.empty()) {
      CountRefused(call);
      return Launch::kRefused;
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
    CountRefused(call);
    return Launch::kRefused;
  }
  Attempt& attempt = setup.attempts[slot];
  if (decision == PolicyDecision::kAcceptReplace || settings.to_uri == RedirectToUri::kReplace)
    attempt.to = StrCat("<", request_uri, ">");
  if (redirect_status == 305) {
    // 305 Use Proxy (RFC 3261 21.3.6): the Contact is the proxy; the request that got the
    // 305 is sent again, same Request-URI, through it.
    attempt.proxy_route = StrCat("<", request_uri, ";lr>");
    request_uri = SentRequestUri(call, redirected_by);
  }
  const std::string entry = StrCat(", <", request_uri, ">;index=1.", index, ";rc=",
                                   redirect_status ? redirect_status : 302);
  StrAppend(&attempt.history, entry);
  StrAppend(&setup.history_info, entry);
  attempt.request_uri = std::move(request_uri);
  attempt.started = context_.clock->Now();
  attempt.timeout = context_.timers->Schedule(settings.target_timeout, this,
                                              kAttemptTimeout + static_cast<uint32_t>(slot),
                                              call.cookie);
  if (SendAttempt(call, slot, destination_uri, transport)) return Launch::kStarted;
  EndAttempt(call.setup().attempts[slot]);
  return Launch::kFailed;
}

bool CallEngine::SendAttempt(Call& call, size_t slot, const proto::SipUri& uri,
                             std::optional<proto::TransportKind> transport) {
  Attempt& attempt = call.setup().attempts[slot];
  attempt.host.assign(uri.host);
  Peer destination;
  if (DestinationFor(uri, &destination)) {
    if (transport) destination.transport = *transport;
    if (attempt.next_hop && HopResting(destination)) {
      call.setup().skipped_resting = true;
      return false;
    }
    return SendBLegInvite(call, slot, destination);
  }
  if (context_.resolver == nullptr || uri.host_kind != proto::HostKind::kName) return false;
  // RFC 3263 resolution is asynchronous: the attempt waits for it, the shard goes on.
  attempt.state = Attempt::State::kResolving;
  const uint64_t generation = ++attempt.resolve_generation;
  const uint64_t cookie = call.cookie;
  context_.resolver->Resolve(
      uri.host, uri.port, transport, uri.scheme == proto::UriScheme::kSips,
      [this, cookie, slot, generation](const proto::ResolvedTargets& result) {
        OnResolved(cookie, slot, generation, result);
      });
  return true;
}

void CallEngine::OnResolved(uint64_t cookie, size_t slot, uint64_t generation,
                            const proto::ResolvedTargets& result) {
  auto it = calls_.find(cookie);
  if (it == calls_.end() || it->second->setup_state == nullptr) return;
  Call& call = *it->second;
  CallSetup& setup = *call.setup_state;
  // A late answer for an attempt given up (cancelled, superseded) finds nothing waiting.
  if (slot >= setup.attempts.size()) return;
  if (setup.attempts[slot].state != Attempt::State::kResolving ||
      setup.attempts[slot].resolve_generation != generation)
    return;
  setup.attempts[slot].state = Attempt::State::kDone;
  if (call.cancelled ||
      (call.state != Call::State::kTrying && call.state != Call::State::kEarly))
    return;
  const RedirectSettings& settings = SettingsFor(call);
  const bool next_hop = setup.attempts[slot].next_hop;
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
      if (!next_hop) {
        // A name must not lead where an address would be refused (RFC 1918, ourselves).
        const bool self = destination.address == context_.local_address;
        if ((settings.deny_self && self) ||
            !PolicyFor(call).AddressAllowed(destination.address)) {
          refused = true;
          continue;
        }
      } else if (HopResting(destination)) {
        setup.skipped_resting = true;
        continue;
      }
      if (!sent) {
        sent = SendBLegInvite(call, slot, destination);
      } else {
        // RFC 3263 4.3: the other addresses of the name are tried if this one fails.
        setup.attempts[slot].spare_addresses.push_back(destination);
      }
    }
  }
  if (sent) return;
  Attempt& attempt = setup.attempts[slot];
  EndAttempt(attempt);
  if (next_hop) {
    if (!StartNextHop(call)) FinishSearch(call);
    return;
  }
  if (refused) {
    CountRefused(call);
  } else {
    context_.counters->redirect_targets[static_cast<size_t>(TargetOutcome::kFailed)].Inc();
  }
  RunSearch(call,
            setup.search.OnNotSent(attempt.target,
                                   refused ? TargetState::kRefused : TargetState::kFailed, false),
            nullptr);
}

void CallEngine::OnAttemptTimeout(Call& call, size_t slot) {
  if (call.setup_state == nullptr || slot >= call.setup_state->attempts.size()) return;
  Attempt& attempt = call.setup_state->attempts[slot];
  attempt.timeout = {};
  if ((call.state != Call::State::kTrying && call.state != Call::State::kEarly) ||
      !call.in_redirect || call.cancelled)
    return;
  if (attempt.state != Attempt::State::kCalling && attempt.state != Attempt::State::kResolving)
    return;
  // This target rang too long: cancel it and move on. Its 487 is no longer ours to relay.
  CancelAttempt(call, attempt, {});
  OnAttemptFailure(call, slot, 408, "Request Timeout", nullptr);
}

bool CallEngine::HopResting(const Peer& destination) const {
  return hop_health_.Skip(destination.address, context_.clock->Now());
}

void CallEngine::EndAttempt(Attempt& attempt) {
  context_.timers->Cancel(&attempt.timeout);
  if (attempt.state != Attempt::State::kDone) attempt.ended = context_.clock->Now();
  attempt.state = Attempt::State::kDone;
}

void CallEngine::FinishIfGivenUp(Call& call) {
  if (call.cancelled && call.state != Call::State::kEnding &&
      (call.setup_state == nullptr || !call.setup_state->AttemptsOut()))
    FinishSearch(call);
}

bool CallEngine::CancelAttempt(Call& call, Attempt& attempt, std::string_view reason) {
  context_.timers->Cancel(&attempt.timeout);
  switch (attempt.state) {
    case Attempt::State::kCalling:
      attempt.state = Attempt::State::kCancelling;
      attempt.ended = context_.clock->Now();
      context_.counters->requests_sent[static_cast<size_t>(Method::kCancel)].Inc();
      transactions_->CancelInvite(attempt.invite, reason);
      return true;
    case Attempt::State::kParked:
    case Attempt::State::kResolving:
      // Nothing was sent; a late DNS answer or policy decision finds it done.
      attempt.ended = context_.clock->Now();
      attempt.state = Attempt::State::kDone;
      return true;
    case Attempt::State::kCancelling:
    case Attempt::State::kDone:
      return false;
  }
  return false;
}

void CallEngine::CancelTargets(Call& call, const TargetIndices& targets,
                               std::string_view reason) {
  if (targets.empty()) return;
  for (Attempt& attempt : call.setup().attempts) {
    if (std::find(targets.begin(), targets.end(), attempt.target) == targets.end()) continue;
    if (CancelAttempt(call, attempt, reason) && call.in_redirect && !attempt.next_hop)
      context_.counters->redirect_targets[static_cast<size_t>(TargetOutcome::kCancelled)].Inc();
  }
}

bool CallEngine::CancelAttempts(Call& call, std::string_view reason) {
  if (call.setup_state == nullptr) return false;
  bool sent = false;
  for (Attempt& attempt : call.setup_state->attempts) {
    if (!CancelAttempt(call, attempt, reason)) continue;
    if (call.in_redirect && !attempt.next_hop)
      context_.counters->redirect_targets[static_cast<size_t>(TargetOutcome::kCancelled)].Inc();
    sent = sent || attempt.state == Attempt::State::kCancelling;
  }
  return sent;
}

}  // namespace b2bua
