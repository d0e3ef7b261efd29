// Cluster mode: confirmed calls written to the dialog store, both legs' Contact naming the
// front with the call's routing token, and calls of a dead instance taken over when one of
// their in-dialog requests arrives here.

#include "b2bua/call_state.h"
#include "proto/sip_parser.h"

namespace b2bua {
namespace {

// Requests one shard holds while their dialogs come back from the store; past it they are
// answered 503 at once, so a burst of requests for dead dialogs cannot grow memory.
constexpr size_t kMaxHeldRequests = 512;
// CSeq numbers a taken-over call starts above the stored ones: a write the dead instance
// had not made yet (a request relayed just before it died) must not repeat a number.
constexpr uint32_t kAdoptedCseqGap = 100;

// A stream connection belongs to the instance that has it: another one dials anew.
Dialog Portable(Dialog dialog) {
  dialog.peer.connection_id = 0;
  return dialog;
}

}  // namespace

std::string CallEngine::DialogKeyOf(const Call& call) const {
  if (call.adopted) {
    auto it = adopted_keys_.find(call.cookie);
    return it != adopted_keys_.end() ? it->second : std::string();
  }
  return DialogKey(context_.instance_id, context_.boot_epoch, context_.shard_index, call.cookie);
}

const std::string& CallEngine::ContactFor(const Call& call, proto::TransportKind transport) {
  if (!clustered()) return ContactFor(transport);
  // The set-up sends it several times (INVITE, provisional and final answers): built once.
  std::string* contact = call.setup_state != nullptr ? &call.setup_state->cluster_contact
                                                     : &cluster_contact_;
  if (contact->empty() || contact == &cluster_contact_)
    *contact = StrCat("<sip:", kRoutingTokenPrefix, DialogKeyOf(call), "@", context_.front, ">");
  return *contact;
}

DialogRecord CallEngine::RecordOf(const Call& call) const {
  DialogRecord record;
  record.key = DialogKeyOf(call);
  record.owner = context_.instance_id;
  record.caller = Portable(call.a);
  record.callee = Portable(call.b);
  record.caller_invite_cseq = call.a_invite_cseq;
  record.callee_invite_cseq = call.b_invite_cseq;
  const int64_t now_ms = context_.wall_clock->NowUnixMs();
  const auto ms = [](proto::Duration d) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
  };
  const proto::TimePoint now = context_.clock->Now();
  record.started_at_unix_ms = now_ms - ms(now - call.started);
  if (call.config->limits.max_call_duration > proto::Duration::zero())
    record.ends_at_unix_ms = now_ms + ms(call.ends - now);
  return record;
}

proto::Duration CallEngine::DialogTtl(const Call& call) const {
  const proto::TimePoint now = context_.clock->Now();
  const proto::Duration left =
      call.ends > now ? call.ends - now : proto::Duration::zero();
  return left + config_->cluster.dialog_ttl_margin;
}

void CallEngine::Replicate(Call& call) {
  if (!clustered() || call.state != Call::State::kConfirmed) return;
  context_.dialog_store->Save(RecordOf(call), DialogTtl(call));
  call.replicated = true;
  context_.counters->dialogs_replicated.Inc();
}

bool CallEngine::TryAdopt(TransactionId id, const SipMessage& request, const Peer& source) {
  if (!clustered() || request.method() == Method::kAck) return false;
  // Only the front (a trusted source) may make this instance take a call over: a token is
  // no secret, and anyone else could pull live calls away from their owner.
  if (!config_->access.IsTrusted(source.address)) return false;
  const std::string_view key = KeyFromRoutingToken(request.request_uri().user);
  if (key.empty()) return false;
  if (held_requests_ >= kMaxHeldRequests) {
    context_.counters->adoptions_failed[static_cast<size_t>(AdoptFailure::kOverload)].Inc();
    RespondStateless(id, request, 503, "Service Unavailable", "Retry-After: 1\r\n");
    return true;
  }
  auto [it, first] = adopting_.try_emplace(std::string(key));
  it->second.push_back({id, std::string(request.raw()), source});
  ++held_requests_;
  if (!first) return true;  // the store was asked already; this one waits with the others
  const std::string owned_key = it->first;
  context_.dialog_store->Adopt(
      owned_key, context_.instance_id, config_->limits.max_call_duration +
                                           config_->cluster.dialog_ttl_margin,
      [this, owned_key](AdoptOutcome outcome, std::optional<DialogRecord> record) {
        OnAdopted(owned_key, outcome, std::move(record));
      });
  return true;
}

void CallEngine::OnAdopted(const std::string& key, AdoptOutcome outcome,
                           std::optional<DialogRecord> record) {
  auto held_it = adopting_.find(key);
  if (held_it == adopting_.end()) return;
  std::vector<HeldRequest> held = std::move(held_it->second);
  adopting_.erase(held_it);
  held_requests_ -= held.size();
  if (reparsed_ == nullptr) reparsed_ = std::make_unique<SipMessage>();
  proto::SipParser parser;

  Call* call = nullptr;
  if (outcome == AdoptOutcome::kAdopted && record && FindByCallId(record->caller.call_id) == nullptr &&
      FindByCallId(record->callee.call_id) == nullptr) {
    auto owned = std::make_unique<Call>();
    call = owned.get();
    call->cookie = next_call_cookie_++;
    call->config = config_;
    call->state = Call::State::kConfirmed;
    call->a_final_sent = true;
    call->b_acked = true;
    call->replicated = true;
    call->adopted = true;
    adopted_keys_[call->cookie] = record->key;
    call->a = std::move(record->caller);
    call->b = std::move(record->callee);
    call->a.local_cseq += kAdoptedCseqGap;
    call->b.local_cseq += kAdoptedCseqGap;
    call->a_invite_cseq = record->caller_invite_cseq;
    call->b_invite_cseq = record->callee_invite_cseq;
    call->a_response_peer = call->a.peer;
    const proto::TimePoint now = context_.clock->Now();
    const int64_t now_ms = context_.wall_clock->NowUnixMs();
    call->started = now - std::chrono::milliseconds(
                              std::max<int64_t>(0, now_ms - record->started_at_unix_ms));
    calls_by_call_id_[call->a.call_id] = call;
    calls_by_call_id_[call->b.call_id] = call;
    calls_.emplace(call->cookie, std::move(owned));
    context_.counters->calls_active.Inc();
    context_.counters->dialogs_active.Inc(2);
    context_.counters->dialogs_adopted.Inc();
    if (record->ends_at_unix_ms != 0) {
      const auto left = std::chrono::milliseconds(
          std::max<int64_t>(0, record->ends_at_unix_ms - now_ms));
      call->ends = now + left;
      ArmTimer(*call, &call->duration_timer, left, kMaxDuration);
    } else {
      call->ends = now + config_->limits.max_call_duration;
    }
    if (LogEnabled(LogLevel::kInfo))
      WriteLogLine(LogLevel::kInfo, StrCat("call taken over call_id=\"", call->a.call_id,
                                           "\" key=", key, " from=", OwnerOfKey(key)));
  } else if (outcome != AdoptOutcome::kAdopted) {
    const AdoptFailure failure = outcome == AdoptOutcome::kNotFound ? AdoptFailure::kNotFound
                                 : outcome == AdoptOutcome::kOwnedByOther
                                     ? AdoptFailure::kOwnedByOther
                                     : AdoptFailure::kUnavailable;
    context_.counters->adoptions_failed[static_cast<size_t>(failure)].Inc();
  }

  for (HeldRequest& request : held) {
    const proto::ParseResult parsed =
        parser.Parse(request.bytes, proto::Framing::kDatagram, reparsed_.get());
    if (!parsed.ok()) {
      context_.counters->internal_bugs.Inc();
      continue;
    }
    if (call == nullptr) call = FindByCallId(reparsed_->call_id());
    if (call != nullptr && call->state != Call::State::kEnding) {
      OnInDialogRequest(*call, request.id, *reparsed_, request.source);
      continue;
    }
    if (outcome == AdoptOutcome::kNotFound) {
      RespondStateless(request.id, *reparsed_, 481, "Call/Transaction Does Not Exist", {});
    } else {
      // The store is down or another instance has the call: the far end tries again.
      RespondStateless(request.id, *reparsed_, 503, "Service Unavailable", "Retry-After: 1\r\n");
    }
  }
}

}  // namespace b2bua
