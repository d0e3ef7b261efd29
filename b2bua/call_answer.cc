// What the caller hears: provisional and final answers relayed, the best failure chosen
// (RFC 3261 16.7), the search ended.

#include "b2bua/call_state.h"

namespace b2bua {

void CallEngine::AnswerCaller(Call& call, int status, std::string_view reason,
                              std::string_view extra, std::string_view body,
                              std::string_view content_type) {
  if (call.a_final_sent) return;
  std::string out = call.setup().a_head.Start(status, reason, call.a_tag);
  if (status < 300 && status > 100)
    AppendHeader(out, "Contact", ContactFor(call, call.a.peer.transport));
  StrAppend(&out, extra);
  AppendBody(out, body, content_type);
  context_.counters->responses_sent[status / 100].Inc();
  if (status >= 200) call.a_final_sent = true;
  if (status >= 200 && status < 300) {
    // The core owns 2xx reliability (RFC 3261 13.3.1.4).
    call.setup().a_2xx = out;
    ArmTimer(call, &call.a_2xx_timer,
             call.setup().a_2xx_schedule.Start(context_.clock->Now(), call.config->timers.t1,
                                               call.config->timers.t2),
             kA2xxRetransmit);
  }
  transactions_->Respond(call.a_invite, status, std::move(out));
}

void CallEngine::FinishSearch(Call& call) {
  const RedirectSettings& settings = SettingsFor(call);
  if (call.in_redirect) {
    // The search ended without an answer: say why, with a Reason (RFC 3326).
    RedirectFailure failure = RedirectFailure::kExhausted;
    int status = call.setup().best_status;
    std::string reason = call.setup().best_reason;
    if (call.cancelled) {
      failure = RedirectFailure::kCancelled;
    } else if (call.setup().best_status == 0 &&
               (call.setup().search.depth_exceeded() || call.setup().hops_exhausted)) {
      failure = RedirectFailure::kDepth;
      status = 483;
      reason = "Too Many Hops";
    } else if (call.setup().best_status == 0 && call.setup().search.loops() > 0 &&
               call.setup().refused == 0) {
      failure = RedirectFailure::kLoop;
      status = 482;
      reason = "Loop Detected";
    } else if (call.setup().best_status == 0 && call.setup().refused > 0) {
      failure = RedirectFailure::kAllRefused;
      status = 403;
      reason = "Forbidden";
    }
    context_.counters->redirect_failures[static_cast<size_t>(failure)].Inc();
    context_.counters->redirect_depth.Observe(call.setup().search.max_depth_seen());
    if (!call.cancelled) {
      if (settings.relay_last_3xx && !call.setup().last_3xx_status.empty()) {
        int code = std::atoi(call.setup().last_3xx_status.c_str());
        AnswerCaller(call, code, call.setup().last_3xx_status.substr(4), call.setup().last_3xx_contacts, {}, {});
        EndCall(call, CallOutcome::kRedirectSent);
        return;
      }
      if (status == 0) {
        status = 480;
        reason = "Temporarily Unavailable";
      }
      std::string why = StrCat("Reason: SIP;cause=", status, ";text=\"redirect ",
                                     RedirectFailureName(failure), "\"\r\n");
      AnswerCaller(call, status, reason, why, {}, {});
    }
    EndCall(call, call.cancelled ? CallOutcome::kCancelled : CallOutcome::kRedirectFailed);
    return;
  }
  if (call.cancelled) {
    EndCall(call, CallOutcome::kCancelled);
    return;
  }
  if (call.setup().best_status == 0 && call.setup().skipped_resting) {
    AnswerCaller(call, 503, "Service Unavailable",
                 "Retry-After: 5\r\nReason: SIP;cause=503;text=\"every next hop is resting\"\r\n",
                 {}, {});
    EndCall(call, CallOutcome::kUnreachable);
    return;
  }
  if (call.setup().best_status == 0 && call.setup().sips_refused) {
    AnswerCaller(call, 480, "Temporarily Unavailable",
                 "Reason: SIP;cause=480;text=\"a sips: Request-URI needs a TLS next hop\"\r\n",
                 {}, {});
    EndCall(call, CallOutcome::kUnreachable);
    return;
  }
  if (call.setup().best_status == 0) {
    AnswerCaller(call, 408, "Request Timeout",
                 "Reason: SIP;cause=408;text=\"no next hop answered\"\r\n", {}, {});
    EndCall(call, call.setup().hops.empty() ? CallOutcome::kNoRoute : CallOutcome::kUnreachable);
    return;
  }
  AnswerCaller(call, call.setup().best_status, call.setup().best_reason, call.setup().best_extra, {}, {});
  EndCall(call, CallOutcome::kRejected);
}

void CallEngine::OnAttemptResponse(Call& call, size_t slot, const SipMessage& response) {
  CallSetup& setup = call.setup();
  Attempt& attempt = setup.attempts[slot];
  const int status = response.status_code();
  if (status < 200) {
    // 100 is hop by hop; a cancelled attempt's ringing is no longer the caller's business.
    if (status == 100 || call.cancelled || call.a_final_sent ||
        attempt.state != Attempt::State::kCalling)
      return;
    call.state = Call::State::kEarly;
    const ProvisionalRelay relay =
        setup.search.OnProvisional(attempt.target, !response.body().empty());
    std::string out = setup.a_head.Start(status, response.reason_phrase(), call.a_tag);
    AppendHeader(out, "Contact", ContactFor(call, call.a.peer.transport));
    StrAppend(&out, PassedHeaders(response, call.config->headers,
                                  IdentityFrom(call.config->access, attempt.peer)));
    if (relay == ProvisionalRelay::kRelay)
      AppendBody(out, response.body(), response.content_type());
    else
      AppendBody(out, {}, {});
    context_.counters->responses_sent[1].Inc();
    transactions_->Respond(call.a_invite, status, std::move(out));
    return;
  }
  if (status < 300) {
    OnAttempt2xx(call, slot, response);
    return;
  }
  // The transaction layer ACKs this final and absorbs its retransmissions.
  const bool was_calling = attempt.state == Attempt::State::kCalling;
  EndAttempt(attempt);
  if (!was_calling) {
    // A cancelled attempt's 487 (or a final that crossed our CANCEL): once the last one is
    // in, a call the caller gave up on ends.
    FinishIfGivenUp(call);
    return;
  }
  if (status < 400 && !call.cancelled) {
    OnRedirect(call, slot, response);
    return;
  }
  OnAttemptFailure(call, slot, status, response.reason_phrase(), &response);
}

void CallEngine::OnAnsweredInviteResponse(Call& call, const SipMessage& response) {
  if (response.status_code() / 100 != 2) return;
  std::string_view to_tag = response.to().tag;
  const bool same_dialog = call.b.remote_party.find(StrCat("tag=", to_tag)) != std::string::npos;
  if (call.b_acked && same_dialog) {
    ResendBAck(call);  // a retransmitted 2xx: our ACK was lost
    return;
  }
  if (call.state == Call::State::kAnswered && same_dialog) {
    return;  // retransmission before the caller's ACK: the ACK will follow it
  }
  // Another dialog from the same INVITE (a forking proxy beyond the callee).
  ReleaseStray2xx(&call, response);
}

void CallEngine::OnAttempt2xx(Call& call, size_t slot, const SipMessage& response) {
  CallSetup& setup = call.setup();
  Attempt& attempt = setup.attempts[slot];
  const bool was_calling = attempt.state == Attempt::State::kCalling;
  if (!was_calling || call.cancelled || call.state == Call::State::kAnswered ||
      call.state == Call::State::kConfirmed) {
    // An attempt that lost the race, that we gave up on, or that answered after CANCEL:
    // ACK it and release it with BYE.
    EndAttempt(attempt);
    ReleaseStray2xx(&call, response);
    FinishIfGivenUp(call);
    return;
  }
  EndAttempt(attempt);
  const SearchStep step = setup.search.OnAnswered(attempt.target, response.status_code());
  // RFC 3326: the other branches learn why they are cancelled, so no phone logs a
  // missed call.
  CancelTargets(call, step.cancel,
                "Reason: SIP;cause=200;text=\"Call completed elsewhere\"\r\n");
  call.b_invite = attempt.invite;
  call.b_invite_cseq = attempt.cseq;
  call.b_request_uri = attempt.request_uri;
  call.b.peer = attempt.peer;
  if (call.in_redirect && !attempt.next_hop)
    context_.counters->redirect_targets[static_cast<size_t>(TargetOutcome::kAnswered)].Inc();
  AcceptInvite2xx(call, response);
}

void CallEngine::ReleaseStray2xx(Call* call, const SipMessage& response) {
  // A 2xx after CANCEL, from a second fork or from an abandoned attempt: ACK it and
  // release it with BYE so the callee does not believe in a call nobody will end. The
  // response names everything needed: our From, the callee's To and Contact.
  std::string target = response.contact_count()
                           ? std::string(response.contacts()[0].address.uri.text)
                           : std::string();
  Peer destination;
  proto::SipUri target_uri;
  const bool routable = !target.empty() &&
                        proto::ParseUri(target, &target_uri) == proto::UriError::kNone &&
                        DestinationFor(target_uri, &destination);
  if (!routable) {
    if (call == nullptr || target.empty()) {
      context_.counters->internal_bugs.Inc();
      return;
    }
    destination = call->b.peer;
  }
  // The answering dialog, seen from our side: our From, its To and Contact.
  Dialog stray;
  stray.call_id = std::string(response.call_id());
  stray.local_party = std::string(response.from().text);
  stray.remote_party = std::string(response.to().text);
  stray.remote_target = std::move(target);
  stray.peer = destination;
  SendAck(stray, response.cseq().number, {}, {});
  std::string branch = tokens_.Branch('y');
  std::string bye = StartDialogRequest(stray, "BYE", branch, response.cseq().number + 1);
  AppendBody(bye, {}, {});
  context_.counters->requests_sent[static_cast<size_t>(Method::kBye)].Inc();
  transactions_->SendRequest(std::move(bye), branch, Method::kBye, destination, 0);
}

void CallEngine::AcceptInvite2xx(Call& call, const SipMessage& response) {
  context_.timers->Cancel(&call.timer_c);
  // Establish the B-leg dialog (RFC 3261 12.1.2): the route set is the Record-Route in
  // reverse order, the remote target the 2xx Contact.
  call.b.remote_party = std::string(response.to().text);
  call.b.remote_target = response.contact_count()
                             ? std::string(response.contacts()[0].address.uri.text)
                             : call.b_request_uri;
  call.b.route_set.clear();
  for (size_t i = response.record_route_count(); i > 0; --i)
    call.b.route_set.emplace_back(response.record_routes()[i - 1].text);
  call.b.remote_cseq = 0;
  call.setup().b_answer_body = std::string(response.body());
  call.state = Call::State::kAnswered;
  context_.counters->dialogs_active.Inc(2);
  context_.counters->call_setup_seconds.Observe(
      std::chrono::duration<double>(context_.clock->Now() - call.started).count());
  if (call.in_redirect) {
    context_.counters->redirect_depth.Observe(call.setup().search.max_depth_seen());
    context_.counters->redirect_extra_delay_seconds.Observe(
        std::chrono::duration<double>(context_.clock->Now() - call.setup().first_redirect).count());
  }
  call.ends = context_.clock->Now() + call.config->limits.max_call_duration;
  ArmTimer(call, &call.duration_timer, call.config->limits.max_call_duration, kMaxDuration);
  AnswerCaller(call, response.status_code(), response.reason_phrase(),
               PassedHeaders(response, call.config->headers,
                             IdentityFrom(call.config->access, call.b.peer)),
               response.body(), response.content_type());
}

void CallEngine::OnAttemptFailure(Call& call, size_t slot, int status, std::string_view reason,
                                  const SipMessage* response) {
  CallSetup& setup = call.setup();
  const bool next_hop = setup.attempts[slot].next_hop;
  const uint16_t target = setup.attempts[slot].target;
  // Remember the best answer (RFC 3261 16.7) for when every attempt has failed; a
  // timeout is not an answer (it makes the call unreachable, not rejected).
  if (response != nullptr && BetterFinal(status, setup.best_status)) {
    setup.best_status = status;
    setup.best_reason = std::string(reason);
    setup.best_extra = PassedHeaders(*response, call.config->headers,
                                     IdentityFrom(call.config->access, setup.attempts[slot].peer));
  }
  if (call.cancelled) {
    FinishIfGivenUp(call);
    return;
  }
  if ((response == nullptr || status == 503) && !setup.attempts[slot].spare_addresses.empty()) {
    // The same next hop or target under its next DNS address.
    Attempt& attempt = setup.attempts[slot];
    const Peer next = attempt.spare_addresses.front();
    attempt.spare_addresses.erase(attempt.spare_addresses.begin());
    if (!next_hop)
      attempt.timeout = context_.timers->Schedule(SettingsFor(call).target_timeout, this,
                                                  kAttemptTimeout + static_cast<uint32_t>(slot),
                                                  call.cookie);
    if (SendBLegInvite(call, slot, next)) return;
    EndAttempt(setup.attempts[slot]);
  }
  if (call.in_redirect && !next_hop) {
    const bool timeout = response == nullptr;
    context_.counters->redirect_targets[static_cast<size_t>(
        timeout ? TargetOutcome::kTimeout : TargetOutcome::kFailed)].Inc();
    RunSearch(call,
              timeout ? setup.search.OnTimeout(target) : setup.search.OnFinal(target, status),
              response);
    return;
  }
  if (status == 503 && response != nullptr) {
    // "503 with Retry-After": that next hop asked not to be bothered for a while.
    if (std::optional<proto::Duration> rest = HopHealth::RetryAfter(*response))
      hop_health_.Rest(setup.attempts[slot].peer.address, context_.clock->Now() + *rest);
  }
  if ((response == nullptr || call.config->failover_on.Contains(status)) &&
      setup.next_hop < setup.hops.size()) {
    if (StartNextHop(call)) return;
  }
  FinishSearch(call);
}

void CallEngine::RelayFinal(Call& call, int status, std::string_view reason,
                            const SipMessage* response) {
  // 6xx ends the search (RFC 3261 16.7); other finals outside try_next_on go to the caller
  // as they are.
  CallSetup& setup = call.setup();
  setup.best_status = status;
  setup.best_reason = std::string(reason);
  std::string extra;
  if (response != nullptr) {
    // The attempt that answered, by its CSeq (unique per attempt): whether its identity
    // headers may pass depends on who it was.
    Peer from = call.b.peer;
    for (const Attempt& attempt : setup.attempts)
      if (attempt.cseq == response->cseq().number) from = attempt.peer;
    extra = PassedHeaders(*response, call.config->headers,
                          IdentityFrom(call.config->access, from));
  }
  AnswerCaller(call, status, reason, extra, {}, {});
  context_.counters->redirect_failures[static_cast<size_t>(RedirectFailure::kExhausted)].Inc();
  EndCall(call, CallOutcome::kRedirectFailed);
}

}  // namespace b2bua
