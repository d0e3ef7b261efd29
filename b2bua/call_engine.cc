// The call engine's core: a request's way in, a new call, the core's timers, the end of a
// call.

#include "b2bua/call_state.h"

namespace b2bua {

CallEngine::CallEngine(const ShardContext& context, std::shared_ptr<const Config> config)
    : context_(context),
      config_(std::move(config)),
      tokens_(context.shard_index, context.token_seed) {
  const std::string ip = context_.advertised_ip.empty() ? context_.local_address.IpString()
                                                       : context_.advertised_ip;
  local_host_port_ = ip.find(':') != std::string::npos
                         ? StrCat("[", ip, "]:", context_.local_address.port())
                         : StrCat(ip, ":", context_.local_address.port());
  contact_header_ = StrCat("<sip:b2bua@", local_host_port_, ">");
  if (context_.tls_port != 0) {
    tls_host_port_ = ip.find(':') != std::string::npos
                         ? StrCat("[", ip, "]:", context_.tls_port)
                         : StrCat(ip, ":", context_.tls_port);
    tls_contact_header_ = StrCat("<sip:b2bua@", tls_host_port_, ";transport=tls>");
  }
}

const std::string& CallEngine::HostPortFor(proto::TransportKind transport) const {
  return transport == proto::TransportKind::kTls && !tls_host_port_.empty() ? tls_host_port_
                                                                            : local_host_port_;
}

const std::string& CallEngine::ContactFor(proto::TransportKind transport) const {
  return transport == proto::TransportKind::kTls && !tls_contact_header_.empty()
             ? tls_contact_header_
             : contact_header_;
}

CallEngine::~CallEngine() {
  for (auto& [cookie, call] : calls_) {
    context_.timers->Cancel(&call->timer_c);
    if (call->setup_state != nullptr)
      for (Attempt& attempt : call->setup_state->attempts) context_.timers->Cancel(&attempt.timeout);
    context_.timers->Cancel(&call->a_2xx_timer);
    context_.timers->Cancel(&call->duration_timer);
    context_.timers->Cancel(&call->cancel_guard);
    context_.timers->Cancel(&call->reinvite_2xx_timer);
    context_.timers->Cancel(&call->b_ack_timer);
  }
  context_.timers->Cancel(&probe_timer_);
}

bool CallEngine::Send(const Peer& to, std::string_view bytes) {
  return context_.sink->Send(to, bytes);
}

CallEngine::Call* CallEngine::FindByCallId(std::string_view call_id) {
  auto it = calls_by_call_id_.find(call_id);
  return it == calls_by_call_id_.end() ? nullptr : it->second;
}

const RedirectSettings& CallEngine::SettingsFor(const Call& call) const {
  return call.route ? call.route->redirect : call.config->redirect;
}

const ConfiguredRedirectPolicy& CallEngine::PolicyFor(const Call& call) const {
  return call.route ? *call.route->redirect_policy : *call.config->redirect_policy;
}

bool CallEngine::NamesSelf(const proto::SipUri& uri) const {
  if (!IsIpLiteral(uri)) return false;
  proto::NetAddress address;
  if (!proto::NetAddress::ParseIp(uri.host, uri.port ? uri.port : 5060, &address)) return false;
  if (address.port() != context_.local_address.port()) return false;
  return address.SameIp(context_.local_address) ||
         (context_.local_address.is_unspecified() && address.is_loopback());
}

bool CallEngine::DestinationFor(const proto::SipUri& uri, Peer* out) const {
  if (!IsIpLiteral(uri)) return false;
  uint16_t port = uri.port ? uri.port : (uri.scheme == proto::UriScheme::kSips ? 5061 : 5060);
  if (!proto::NetAddress::ParseIp(uri.host, port, &out->address)) return false;
  out->transport = TransportOfUri(uri);
  out->connection_id = 0;
  return true;
}

void CallEngine::ArmTimer(Call& call, proto::TimerId* timer, proto::Duration delay,
                          uint32_t kind) {
  context_.timers->Cancel(timer);
  *timer = context_.timers->Schedule(delay, this, kind, call.cookie);
}

void CallEngine::RespondStateless(TransactionId id, const SipMessage& request, int status,
                                  std::string_view reason, std::string_view extra) {
  // Only reached for requests with a transaction: the layer sends, retransmits and absorbs.
  std::string tag = request.to().tag.empty() ? tokens_.Token('t') : std::string();
  ResponseHead head = ResponseHead::Capture(request, *transactions_->ResponseDestination(id));
  std::string out = head.Start(status, reason, tag);
  StrAppend(&out, extra);
  AppendBody(out, {}, {});
  context_.counters->responses_sent[status / 100].Inc();
  transactions_->Respond(id, status, std::move(out));
}

void CallEngine::OnRequest(TransactionId id, const SipMessage& request, const Peer& source) {
  context_.counters->requests_received[static_cast<size_t>(request.method())].Inc();
  if (!request.to().tag.empty()) {
    Call* call = FindByCallId(request.call_id());
    if (call == nullptr) {
      // Cluster mode: a call of a dead instance, routed here by its token.
      if (TryAdopt(id, request, source)) return;
      RespondStateless(id, request, 481, "Call/Transaction Does Not Exist", {});
      return;
    }
    OnInDialogRequest(*call, id, request, source);
    return;
  }
  if (request.method() == Method::kInvite) {
    OnNewInvite(id, request, source);
    return;
  }
  OnOutOfDialogRequest(id, request, source);
}

void CallEngine::OnOutOfDialogRequest(TransactionId id, const SipMessage& request,
                                      const Peer& source) {
  switch (request.method()) {
    case Method::kOptions:
      // Keep-alive probes from peers and load balancers.
      RespondStateless(id, request, 200, "OK",
                       StrCat("Allow: ", kAllow, "\r\nAccept: application/sdp\r\n"));
      return;
    case Method::kRegister:
    case Method::kSubscribe:
    case Method::kPublish:
      RespondStateless(id, request, 405, "Method Not Allowed",
                       StrCat("Allow: ", kAllow, "\r\n"));
      return;
    case Method::kBye:
    case Method::kPrack:
    case Method::kUpdate:
      RespondStateless(id, request, 481, "Call/Transaction Does Not Exist", {});
      return;
    default:
      RespondStateless(id, request, 403, "Forbidden", {});
      return;
  }
}

void CallEngine::OnNewInvite(TransactionId id, const SipMessage& request, const Peer& source) {
  // A request carrying our own Via came back to us: a routing loop (RFC 3261 16.3 4).
  for (size_t i = 0; i < request.via_count(); ++i) {
    const proto::Via& via = request.vias()[i];
    if (TokenSource::IsOurBranch(via.branch) && via.port == context_.local_address.port()) {
      proto::NetAddress address;
      if (proto::NetAddress::ParseIp(via.host, via.port, &address) &&
          address.SameIp(context_.local_address)) {
        RespondStateless(id, request, 482, "Loop Detected", {});
        return;
      }
    }
  }
  const Config& config = *config_;
  if (draining_ || calls_.size() >= config.limits.max_calls) {
    context_.counters->calls_ended[static_cast<size_t>(CallOutcome::kOverload)].Inc();
    RespondStateless(id, request, 503, "Service Unavailable", "Retry-After: 5\r\n");
    return;
  }
  if (FindByCallId(request.call_id()) != nullptr) {
    // Same Call-ID without To tag but another branch: a merged request (RFC 3261 8.2.2.2).
    RespondStateless(id, request, 482, "Loop Detected", {});
    return;
  }
  CallAdmission admission;
  if (!AdmitCall(id, request, source, &admission)) return;

  auto owned = std::make_unique<Call>();
  Call& call = *owned;
  call.cookie = next_call_cookie_++;
  call.config = config_;
  call.started = context_.clock->Now();
  call.a_invite = id;
  call.setup().a_head = ResponseHead::Capture(request, *transactions_->ResponseDestination(id));
  call.setup().a_request_uri = std::string(request.request_uri().text);
  call.setup().max_forwards = request.max_forwards() < 0 ? 70 : request.max_forwards();
  call.setup().offer_body = std::string(request.body());
  call.setup().offer_type = std::string(request.content_type());
  call.setup().passed = PassedHeaders(request, config.headers, IdentityHeaders::kPerNextHop);
  CallerIdentity identity =
      ExtractIdentity(request, config.headers, config.access.IsTrusted(source.address));
  call.setup().asserted_identity = std::move(identity.asserted);
  call.setup().preferred_identity = std::move(identity.preferred);
  call.setup().privacy_id = identity.privacy_id;
  call.held_route_load = admission.route_load;
  call.source_counted = admission.source_counted;
  call.source_address = source.address;

  call.a.call_id = std::string(request.call_id());
  call.a.remote_party = std::string(request.from().text);
  call.a_tag = tokens_.Token('a');
  call.a.local_party = StrCat(request.to().text, ";tag=", call.a_tag);
  call.setup().a_head.to = std::string(request.to().text);
  call.a.remote_cseq = request.cseq().number;
  call.a_invite_cseq = request.cseq().number;
  call.a.local_cseq = 100;
  call.a.peer = source;
  call.a_response_peer = *transactions_->ResponseDestination(id);
  if (request.contact_count() > 0) {
    call.a.remote_target = std::string(request.contacts()[0].address.uri.text);
  }
  for (size_t i = 0; i < request.record_route_count(); ++i)
    call.a.route_set.emplace_back(request.record_routes()[i].text);

  call.b.call_id = tokens_.CallId('c', StrCat(Hex{call.cookie}));
  std::string from_tag = tokens_.Token('f');
  call.b.local_party = StrCat(WithoutTag(request.from()), ";tag=", from_tag);
  call.setup().b_to = std::string(request.to().text);
  call.b.local_cseq = 1;

  calls_by_call_id_[call.a.call_id] = &call;
  calls_by_call_id_[call.b.call_id] = &call;
  Call* raw = owned.get();
  calls_.emplace(call.cookie, std::move(owned));
  context_.counters->calls_active.Inc();

  ArmTimer(*raw, &raw->timer_c, config.limits.no_answer_timeout, kTimerC);

  const proto::SipUri& ruri = request.request_uri();
  // The route AdmitCall() chose: the best match, or the one a full route overflowed to.
  const Route* route = admission.route;
  raw->route = route;
  TargetSetLimits limits;
  limits.max_targets = static_cast<uint16_t>(SettingsFor(*raw).max_targets);
  raw->setup().search = TargetSearch(SearchSettings::From(SettingsFor(*raw)), limits);
  raw->setup().search.Begin(raw->setup().a_request_uri);
  if (SettingsFor(*raw).deny_self)
    raw->setup().search.targets().AddSelf(context_.local_address.IpString(),
                                          context_.local_address.port());
  if (route != nullptr && route->action == Route::Action::kRedirect) {
    // We are the redirect server for this number (call forwarding, number portability).
    std::string contacts;
    for (const std::string& c : route->contacts) AppendHeader(contacts, "Contact", c);
    context_.counters->redirects_sent.Inc();
    AnswerCaller(*raw, route->redirect_code,
                 route->redirect_code == 301 ? "Moved Permanently" : "Moved Temporarily",
                 contacts, {}, {});
    EndCall(*raw, CallOutcome::kRedirectSent);
    return;
  }
  if (route != nullptr) {
    raw->setup().hops = route->next_hops;
  } else if (ruri.IsSip()) {
    if (NamesSelf(ruri)) {
      AnswerCaller(*raw, 404, "Not Found", {}, {}, {});
      EndCall(*raw, CallOutcome::kNoRoute);
      return;
    }
    NextHop hop;
    hop.uri = std::string(ruri.text);
    hop.host = std::string(ruri.host);
    hop.transport = TransportOfUri(ruri);
    hop.port = ruri.port ? ruri.port
                         : (hop.transport == proto::TransportKind::kTls ? 5061 : 5060);
    raw->setup().hops.push_back(std::move(hop));
  }
  // A 301 learned earlier sends the call straight to the permanent target.
  if (std::optional<std::string_view> cached =
          moved_permanently_.Find(raw->setup().a_request_uri, context_.clock->Now())) {
    // The cached target becomes the only next hop, with its own Request-URI; a name is
    // resolved like any other next hop.
    proto::SipUri target;
    if (proto::ParseUri(*cached, &target) == proto::UriError::kNone &&
        (IsIpLiteral(target) || context_.resolver != nullptr)) {
      context_.counters->redirect_cache_hits.Inc();
      NextHop hop;
      hop.uri = std::string(*cached);
      hop.host = std::string(target.host);
      hop.transport = TransportOfUri(target);
      hop.port = target.port ? target.port
                             : (hop.transport == proto::TransportKind::kTls ? 5061 : 5060);
      raw->setup().hop_request_uri = hop.uri;
      raw->setup().hops.assign(1, std::move(hop));
    }
  }
  if (raw->setup().hops.empty() && !raw->in_redirect) {
    AnswerCaller(*raw, 404, "Not Found", "Reason: SIP;cause=404;text=\"no route\"\r\n", {}, {});
    EndCall(*raw, CallOutcome::kNoRoute);
    return;
  }
  if (!StartNextHop(*raw)) FinishSearch(*raw);
}

void CallEngine::OnResponse(TransactionId id, uint64_t cookie, const SipMessage& response) {
  context_.counters->responses_received[response.status_code() / 100].Inc();
  if (cookie & kProbeCookie) {
    // Any final answer, even 404 or 405, shows the hop is up.
    if (response.status_code() >= 200) OnProbeResult(cookie, true);
    return;
  }
  auto it = calls_.find(cookie);
  if (it == calls_.end()) {
    // The call ended while an attempt was still out; if it answers now, release it.
    if (response.cseq().method == Method::kInvite && response.status_code() / 100 == 2)
      ReleaseStray2xx(nullptr, response);
    return;
  }
  Call& call = *it->second;
  if (id == call.b_invite) {
    OnAnsweredInviteResponse(call, response);
    return;
  }
  if (call.setup_state != nullptr) {
    std::vector<Attempt>& attempts = call.setup_state->attempts;
    for (size_t slot = 0; slot < attempts.size(); ++slot) {
      if (attempts[slot].invite == id) {
        OnAttemptResponse(call, slot, response);
        return;
      }
    }
  }
  if (response.cseq().method == Method::kInvite && response.status_code() / 100 == 2 &&
      !call.relays.contains(id)) {
    // An attempt we gave up on (timed out, cancelled) answered after all.
    ReleaseStray2xx(&call, response);
    return;
  }
  OnRelayedResponse(call, id, response);
}

void CallEngine::OnClientFailure(TransactionId id, uint64_t cookie, proto::ClientFailure failure) {
  if (cookie & kProbeCookie) {
    OnProbeResult(cookie, false);
    return;
  }
  auto it = calls_.find(cookie);
  if (it == calls_.end()) return;
  Call& call = *it->second;
  if (id == call.b_invite) return;  // the answered INVITE: its dialog lives on
  if (call.setup_state != nullptr) {
    if (Attempt* attempt = call.setup_state->FindAttempt(id)) {
      // The transaction is gone: nothing is left for a CANCEL to reach.
      const bool was_calling = attempt->state == Attempt::State::kCalling;
      EndAttempt(*attempt);
      if (was_calling) {
        OnAttemptFailure(call, static_cast<size_t>(attempt - call.setup_state->attempts.data()),
                         408, "Request Timeout", nullptr);
      } else {
        FinishIfGivenUp(call);
      }
      return;
    }
  }
  auto relay = call.relays.find(id);
  if (relay == call.relays.end()) return;
  Call::Relay r = std::move(relay->second);
  call.relays.erase(relay);
  std::string out = r.head.Start(408, "Request Timeout", {});
  AppendBody(out, {}, {});
  transactions_->Respond(r.server, 408, std::move(out));
  if (r.method == Method::kInvite) call.reinvite_pending = false;
}

void CallEngine::OnCancel(TransactionId invite, const SipMessage& cancel) {
  Call* found = FindByCallId(cancel.call_id());
  if (found == nullptr || found->a_invite != invite) return;
  Call& call = *found;
  if (call.a_final_sent) return;
  CancelCall(call);
}

void CallEngine::CancelCall(Call& call) {
  call.cancelled = true;
  AnswerCaller(call, 487, "Request Terminated", {}, {}, {});
  call.setup().search.OnCallerGaveUp();
  if (CancelAttempts(call, {})) {
    // The callee leg's 487s end the call; if they never come, this guard does.
    ArmTimer(call, &call.cancel_guard, call.config->timers.t1 * 64, kCancelGuard);
    return;
  }
  FinishSearch(call);
}

void CallEngine::OnTimer(uint32_t kind, uint64_t cookie) {
  if (kind == kProbe) {
    probe_timer_ = {};
    ProbeNextHops();
    return;
  }
  auto it = calls_.find(cookie);
  if (it == calls_.end()) return;
  Call& call = *it->second;
  if (kind >= kAttemptTimeout) {
    OnAttemptTimeout(call, kind - kAttemptTimeout);
    return;
  }
  switch (kind) {
    case kTimerC:
      call.timer_c = {};
      if (call.state == Call::State::kTrying || call.state == Call::State::kEarly) {
        // No answer in time: cancel the B-leg and tell the caller (RFC 3261 16.8).
        call.cancelled = true;
        CancelAttempts(call, {});
        AnswerCaller(call, 408, "Request Timeout",
                     "Reason: SIP;cause=408;text=\"no answer\"\r\n", {}, {});
        EndCall(call, CallOutcome::kNoAnswer);
      }
      return;
    case kA2xxRetransmit: {
      call.a_2xx_timer = {};
      if (call.state != Call::State::kAnswered) return;
      const std::optional<proto::Duration> wait =
          call.setup().a_2xx_schedule.Next(context_.clock->Now());
      if (!wait) {
        // No ACK within 64*T1 (RFC 3261 13.3.1.4): confirm the callee, then BYE both legs.
        SendAckToB(call, call.b_invite_cseq, {}, {});
        call.b_acked = true;
        call.state = Call::State::kConfirmed;
        ByeBothLegs(call);
        EndCall(call, CallOutcome::kAnswered);
        return;
      }
      SendA2xx(call);
      context_.counters->core_retransmissions_sent.Inc();
      ArmTimer(call, &call.a_2xx_timer, *wait, kA2xxRetransmit);
      return;
    }
    case kMaxDuration:
      call.duration_timer = {};
      if (call.state == Call::State::kConfirmed || call.state == Call::State::kAnswered) {
        ByeBothLegs(call);
        EndCall(call, CallOutcome::kAnswered);
      }
      return;
    case kReInvite2xxRetransmit: {
      call.reinvite_2xx_timer = {};
      if (!call.reinvite_pending) return;
      const std::optional<proto::Duration> wait =
          call.reinvite_2xx_schedule.Next(context_.clock->Now());
      if (!wait) return;
      Send(call.reinvite_2xx_peer, call.reinvite_2xx);
      context_.counters->core_retransmissions_sent.Inc();
      ArmTimer(call, &call.reinvite_2xx_timer, *wait, kReInvite2xxRetransmit);
      return;
    }
    case kCancelGuard:
      call.cancel_guard = {};
      FinishSearch(call);
      return;
    case kForgetBAck:
      call.b_ack_timer = {};
      std::string().swap(call.b_ack);
      return;
    default:
      context_.counters->internal_bugs.Inc();
      return;
  }
}

void CallEngine::EndCall(Call& call, CallOutcome outcome) {
  if (call.state == Call::State::kEnding) return;
  const bool had_dialogs =
      call.state == Call::State::kAnswered || call.state == Call::State::kConfirmed;
  if (!call.a_final_sent) {
    // Every path that ends a call answers the caller first; one that did not would leave
    // the caller's INVITE transaction waiting forever.
    context_.counters->internal_bugs.Inc();
    AnswerCaller(call, 500, "Server Internal Error", {}, {}, {});
  }
  call.state = Call::State::kEnding;
  // RFC 3261 15.1.2: requests still waiting for the other leg's answer get 487; their
  // server transactions would otherwise wait for the core forever.
  for (auto& [client, relay] : call.relays) {
    // An INVITE still in flight would wait for its final response forever: cancel it.
    if (relay.method == Method::kInvite) transactions_->CancelInvite(client);
    if (relay.server == proto::kNoTransaction) continue;
    std::string out = relay.head.Start(487, "Request Terminated", {});
    AppendBody(out, {}, {});
    context_.counters->responses_sent[4].Inc();
    transactions_->Respond(relay.server, 487, std::move(out));
  }
  call.relays = {};
  // Attempts still ringing (a 6xx or a relayed final ended the search) stop ringing.
  CancelAttempts(call, {});
  if (call.setup_state != nullptr)
    for (Attempt& attempt : call.setup_state->attempts) context_.timers->Cancel(&attempt.timeout);
  context_.timers->Cancel(&call.timer_c);
  context_.timers->Cancel(&call.a_2xx_timer);
  context_.timers->Cancel(&call.duration_timer);
  context_.timers->Cancel(&call.cancel_guard);
  context_.timers->Cancel(&call.reinvite_2xx_timer);
  context_.timers->Cancel(&call.b_ack_timer);
  if (had_dialogs) context_.counters->dialogs_active.Dec(2);
  if (call.replicated) context_.dialog_store->Remove(DialogKeyOf(call));
  call.replicated = false;
  if (call.adopted) adopted_keys_.erase(call.cookie);
  if (call.held_route_load != nullptr) call.held_route_load->calls.Release();
  call.held_route_load = nullptr;
  if (call.source_counted && context_.call_limits != nullptr)
    context_.call_limits->per_source.Release(call.source_address);
  call.source_counted = false;
  context_.counters->calls_ended[static_cast<size_t>(outcome)].Inc();
  context_.counters->calls_active.Dec();
  if (call.in_redirect && context_.call_records != nullptr) WriteCallRecord(call, outcome);
  if (outcome != CallOutcome::kAnswered && LogEnabled(LogLevel::kInfo)) {
    // Failed calls are what an operator greps for; a storm of them is rate-limited.
    static LogRateLimit limit(50);
    uint64_t suppressed = 0;
    if (limit.Allow(&suppressed))
      WriteLogLine(LogLevel::kInfo,
                   StrCat("call ended call_id=\"", call.a.call_id, "\" outcome=",
                          CallOutcomeName(outcome), " status=",
                          call.setup_view().best_status),
                   suppressed);
  }
  calls_by_call_id_.erase(call.a.call_id);
  calls_by_call_id_.erase(call.b.call_id);
  auto it = calls_.find(call.cookie);
  if (it != calls_.end()) {
    // Freed after the current callback returns (Envoy's deferred delete).
    ended_.push_back(std::move(it->second));
    calls_.erase(it);
  }
}

void CallEngine::CollectEndedCalls() { ended_.clear(); }

void CallEngine::ReleaseSetupState(Call& call) {
  // A confirmed call may be held for hours: keep only what its dialogs need. The hops a
  // redirected call's record lists are all final by now, so they are written out once
  // and the search itself is freed.
  if (call.relays.empty()) call.relays = {};  // frees the table; pending relays stay
  ArmTimer(call, &call.b_ack_timer, call.config->timers.t1 * 64, kForgetBAck);
  if (call.setup_state == nullptr) return;
  if (call.in_redirect && context_.call_records != nullptr)
    call.redirect_record = RedirectRecord(*call.setup_state, call.started);
  // Attempts that lost the race may still answer: their 487 finds no attempt and is
  // dropped, a 2xx is released as a stray.
  for (Attempt& attempt : call.setup_state->attempts) context_.timers->Cancel(&attempt.timeout);
  call.setup_state.reset();
}

void CallEngine::EndAllCalls() {
  std::vector<Call*> live;
  for (auto& [cookie, call] : calls_) live.push_back(call.get());
  for (Call* call : live) {
    if (call->state == Call::State::kAnswered || call->state == Call::State::kConfirmed) {
      if (!call->b_acked) SendAckToB(*call, call->b_invite_cseq, {}, {});
      ByeBothLegs(*call);
      EndCall(*call, CallOutcome::kAnswered);
      continue;
    }
    if (call->state == Call::State::kEnding) continue;
    call->cancelled = true;
    CancelAttempts(*call, {});
    AnswerCaller(*call, 503, "Service Unavailable",
                 "Retry-After: 5\r\nReason: SIP;cause=503;text=\"shutting down\"\r\n", {}, {});
    EndCall(*call, CallOutcome::kOverload);
  }
}

}  // namespace b2bua
