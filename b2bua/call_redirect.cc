// 3xx answers followed for the caller: the target set, the redirect policy, the 301 cache
// and the call record.

#include "b2bua/call_state.h"

namespace b2bua {

PolicyDecision CallEngine::DecideTarget(Call& call, const Target& target) {
  if (policy_override_ != nullptr) return policy_override_->Decide(target, call.cookie);
  if (!call.setup().policy) {
    const RedirectSettings& settings = SettingsFor(call);
    call.setup().policy = std::make_unique<ConfiguredRedirectPolicy>(
        SecurityFromSettings(settings),
        settings.to_uri == RedirectToUri::kReplace);
  }
  return call.setup().policy->Decide(target, call.cookie);
}

void CallEngine::ResumeRedirect(uint64_t call_cookie, PolicyDecision decision) {
  auto it = calls_.find(call_cookie);
  if (it == calls_.end() || !it->second->setup_view().parked || it->second->cancelled) return;
  Call& call = *it->second;
  call.setup().parked = false;
  // The parked target goes back to pending with the decision recorded by the policy's
  // next answer; simplest faithful behaviour: re-run the search.
  if (decision == PolicyDecision::kStop || decision == PolicyDecision::kReject) {
    call.setup().targets.MarkResult(static_cast<size_t>(call.setup().current_target), TargetState::kRefused, 0);
    if (decision == PolicyDecision::kStop) {
      FinishSearch(call);
      return;
    }
  } else {
    if (AttemptTarget(call, static_cast<size_t>(call.setup().current_target), decision)) return;
  }
  if (!StartNextAttempt(call)) FinishSearch(call);
}

void CallEngine::OnRedirect(Call& call, const SipMessage& response) {
  const int status = response.status_code();
  const RedirectSettings& settings = SettingsFor(call);
  context_.counters->redirects_received[static_cast<size_t>(ToRedirectCode(status))].Inc();
  // Keep every Contact line verbatim: relay mode and relay_last_3xx send them back as is.
  call.setup().last_3xx_status = StrCat(status, " ", response.reason_phrase());
  call.setup().last_3xx_contacts.clear();
  for (size_t i = 0; i < response.header_count(); ++i) {
    const proto::HeaderField& h = response.headers()[i];
    if (h.id == proto::HeaderId::kContact) AppendHeader(call.setup().last_3xx_contacts, "Contact", h.value);
  }
  if (call.in_redirect && call.setup().current_target >= 0) {
    context_.counters->redirect_targets[static_cast<size_t>(TargetOutcome::kRedirected)].Inc();
    EndAttempt(call);
  }
  if (settings.mode == RedirectMode::kRelay || status == 380) {
    AnswerCaller(call, status, response.reason_phrase(), call.setup().last_3xx_contacts, {}, {});
    context_.counters->redirects_sent.Inc();
    EndCall(call, CallOutcome::kRedirectSent);
    return;
  }
  if (!call.in_redirect) {
    call.in_redirect = true;
    call.setup().first_redirect = context_.clock->Now();
  }
  // The first 3xx comes from the original target (index 0), later ones from a target.
  const int from = call.setup().current_target < 0 ? 0 : call.setup().current_target;
  const int depth = call.setup().targets.at(static_cast<size_t>(from)).depth + 1;
  call.setup().max_depth_seen = std::max(call.setup().max_depth_seen, depth);
  if (depth > settings.max_depth) {
    call.setup().depth_exceeded = true;
    call.setup().targets.MarkResult(static_cast<size_t>(from), TargetState::kRedirected,
                            static_cast<uint16_t>(status));
  } else {
    MergeResult merged = call.setup().targets.Merge(response, from, depth);
    if (merged.loops > 0) {
      call.setup().loops += static_cast<int>(merged.loops);
      context_.counters->redirect_loops_detected.Inc(merged.loops);
      context_.counters->redirect_targets[static_cast<size_t>(TargetOutcome::kSkippedAsLoop)].Inc(
          merged.loops);
    }
    // 301: remember the best target for later calls to the same Request-URI.
    if (status == 301 && call.setup().current_target < 0 && settings.cache_301.entries > 0 &&
        merged.added > 0 && !call.setup().targets.pending_order().empty()) {
      const Target& best = call.setup().targets.at(call.setup().targets.pending_order()[0]);
      const proto::TimePoint now = context_.clock->Now();
      const proto::TimePoint expires = now + settings.cache_301.ttl;
      moved_permanently_.Learn(call.setup().a_request_uri, best.request_uri, expires,
                               settings.cache_301.entries, now);
      if (context_.redirect_share != nullptr)
        context_.redirect_share->SharePermanentRedirect(call.setup().a_request_uri,
                                                        best.request_uri, expires);
    }
  }
  if (settings.send_181 && !call.setup().sent_181 && !call.a_final_sent) {
    call.setup().sent_181 = true;
    std::string out = call.setup().a_head.Start(181, "Call Is Being Forwarded", call.a_tag);
    AppendHeader(out, "Contact", ContactFor(call.a.peer.transport));
    AppendBody(out, {}, {});
    context_.counters->responses_sent[1].Inc();
    transactions_->Respond(call.a_invite, 181, std::move(out));
  }
  if (!StartNextAttempt(call)) FinishSearch(call);
}

void CallEngine::LearnPermanentRedirect(std::string_view request_uri, std::string_view target,
                                        proto::TimePoint expires) {
  moved_permanently_.Learn(request_uri, target, expires, config_->redirect.cache_301.entries,
                           context_.clock->Now());
}

void CallEngine::EndAttempt(Call& call) {
  if (call.setup().current_target < 0) return;
  const size_t index = static_cast<size_t>(call.setup().current_target);
  if (index < call.setup().attempt_started.size())
    call.setup().attempt_took[index] = context_.clock->Now() - call.setup().attempt_started[index];
}

void CallEngine::WriteCallRecord(const Call& call, CallOutcome outcome) {
  // One line, key=value, so log shippers parse it without a schema. The Call-ID is the
  // caller's: that is what the caller's support desk will quote.
  const std::string line = StrCat(
      "call-record call_id=\"", call.a.call_id, "\" outcome=", CallOutcomeName(outcome),
      " duration_ms=",
      std::chrono::duration_cast<std::chrono::milliseconds>(context_.clock->Now() - call.started)
          .count(),
      call.setup_state != nullptr ? RedirectRecord(*call.setup_state) : call.redirect_record);
  context_.call_records->OnCallRecord(line);
}

std::string CallEngine::RedirectRecord(const CallSetup& setup) {
  const auto ms = [](proto::Duration d) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
  };
  std::string out = StrCat(" request_uri=\"", setup.a_request_uri, "\" depth=",
                           setup.max_depth_seen, " loops=", setup.loops, " refused=",
                           setup.refused, " hops=[");
  bool first = true;
  for (uint16_t index : setup.targets.attempt_order()) {
    const Target& target = setup.targets.at(index);
    if (target.is_original()) continue;
    StrAppend(&out, first ? "" : ",", "{target=\"", target.request_uri, "\" q=",
              target.q_millis / 1000, ".", static_cast<char>('0' + target.q_millis / 100 % 10),
              static_cast<char>('0' + target.q_millis / 10 % 10),
              static_cast<char>('0' + target.q_millis % 10), " state=",
              TargetStateName(target.state), " status=", target.status);
    if (index < setup.attempt_took.size())
      StrAppend(&out, " answer_ms=", ms(setup.attempt_took[index]));
    out += '}';
    first = false;
  }
  out += ']';
  return out;
}

}  // namespace b2bua
