// 3xx answers followed for the caller: the target set, the redirect policy, the 301 cache
// and the call record.

#include "b2bua/call_state.h"

namespace b2bua {

PolicyDecision CallEngine::DecideTarget(Call& call, const Target& target) {
  if (policy_override_ != nullptr) return policy_override_->Decide(target, call.cookie);
  return PolicyFor(call).Check(target);
}

void CallEngine::ResumeRedirect(uint64_t call_cookie, PolicyDecision decision) {
  auto it = calls_.find(call_cookie);
  if (it == calls_.end() || it->second->setup_state == nullptr || it->second->cancelled) return;
  Call& call = *it->second;
  // Parked targets are resumed in the order they were parked.
  std::vector<Attempt>& attempts = call.setup_state->attempts;
  size_t slot = 0;
  while (slot < attempts.size() && attempts[slot].state != Attempt::State::kParked) ++slot;
  if (slot == attempts.size()) return;
  attempts[slot].state = Attempt::State::kDone;
  if (decision == PolicyDecision::kPending) decision = PolicyDecision::kReject;
  const Launch launch = LaunchTarget(call, slot, decision);
  if (launch == Launch::kStarted) return;
  Attempt& attempt = call.setup().attempts[slot];
  EndAttempt(attempt);
  RunSearch(call,
            call.setup().search.OnNotSent(
                attempt.target,
                launch == Launch::kFailed ? TargetState::kFailed : TargetState::kRefused,
                launch == Launch::kStopped),
            nullptr);
}

void CallEngine::OnRedirect(Call& call, size_t slot, const SipMessage& response) {
  const int status = response.status_code();
  const RedirectSettings& settings = SettingsFor(call);
  CallSetup& setup = call.setup();
  const Attempt& attempt = setup.attempts[slot];
  const uint16_t from = attempt.next_hop ? 0 : attempt.target;
  context_.counters->redirects_received[static_cast<size_t>(ToRedirectCode(status))].Inc();
  // Keep every Contact line verbatim: relay mode and relay_last_3xx send them back as is.
  setup.last_3xx_status = StrCat(status, " ", response.reason_phrase());
  setup.last_3xx_contacts.clear();
  for (size_t i = 0; i < response.header_count(); ++i) {
    const proto::HeaderField& h = response.headers()[i];
    if (h.id == proto::HeaderId::kContact) AppendHeader(setup.last_3xx_contacts, "Contact", h.value);
  }
  if (call.in_redirect && !attempt.next_hop)
    context_.counters->redirect_targets[static_cast<size_t>(TargetOutcome::kRedirected)].Inc();
  if (settings.mode == RedirectMode::kRelay || status == 380) {
    AnswerCaller(call, status, response.reason_phrase(), setup.last_3xx_contacts, {}, {});
    context_.counters->redirects_sent.Inc();
    EndCall(call, CallOutcome::kRedirectSent);
    return;
  }
  if (!call.in_redirect) {
    call.in_redirect = true;
    setup.first_redirect = context_.clock->Now();
  }
  MergeResult merged;
  SearchStep step = setup.search.OnRedirect(from, response, &merged);
  if (merged.loops > 0) {
    context_.counters->redirect_loops_detected.Inc(merged.loops);
    context_.counters->redirect_targets[static_cast<size_t>(TargetOutcome::kSkippedAsLoop)].Inc(
        merged.loops);
  }
  // 301: remember the best target for later calls to the same Request-URI. The original
  // target's 3xx is the first, so the search's first pick is the best of its Contacts.
  if (status == 301 && from == 0 && settings.cache_301.entries > 0 && merged.added > 0 &&
      step.action == SearchStep::Action::kStart) {
    const Target& best = setup.search.targets().at(step.start[0]);
    const proto::TimePoint now = context_.clock->Now();
    const proto::TimePoint expires = now + settings.cache_301.ttl;
    moved_permanently_.Learn(setup.a_request_uri, best.request_uri, expires,
                             settings.cache_301.entries, now);
    if (context_.redirect_share != nullptr)
      context_.redirect_share->SharePermanentRedirect(setup.a_request_uri, best.request_uri,
                                                      expires);
  }
  if (settings.send_181 && !setup.sent_181 && !call.a_final_sent) {
    setup.sent_181 = true;
    std::string out = setup.a_head.Start(181, "Call Is Being Forwarded", call.a_tag);
    AppendHeader(out, "Contact", ContactFor(call, call.a.peer.transport));
    AppendBody(out, {}, {});
    context_.counters->responses_sent[1].Inc();
    transactions_->Respond(call.a_invite, 181, std::move(out));
  }
  RunSearch(call, std::move(step), nullptr);
}

void CallEngine::LearnPermanentRedirect(std::string_view request_uri, std::string_view target,
                                        proto::TimePoint expires) {
  moved_permanently_.Learn(request_uri, target, expires, config_->redirect.cache_301.entries,
                           context_.clock->Now());
}

void CallEngine::WriteCallRecord(const Call& call, CallOutcome outcome) {
  context_.call_records->OnCallRecord(CallRecordLine(
      call.a.call_id, CallOutcomeName(outcome), context_.clock->Now() - call.started,
      call.setup_state != nullptr ? RedirectRecord(*call.setup_state, call.started)
                                  : call.redirect_record));
}

std::string CallEngine::RedirectRecord(const CallSetup& setup, proto::TimePoint call_started) {
  // The branches that went out: the route's next hops are not redirect hops.
  std::vector<BranchRecord> branches;
  for (const Attempt& attempt : setup.attempts)
    if (!attempt.next_hop && attempt.invite != proto::kNoTransaction)
      branches.push_back({attempt.target, attempt.started, attempt.ended});
  return RedirectRecordFields(setup.a_request_uri, setup.search, setup.refused, branches,
                              call_started);
}

}  // namespace b2bua
