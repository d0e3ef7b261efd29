// Inside a call: ACK, BYE, re-INVITE and the other requests relayed between the two
// dialogs.

#include "b2bua/call_state.h"

namespace b2bua {

std::string CallEngine::StartDialogRequest(const Dialog& dialog, std::string_view method_text,
                                           std::string_view branch, uint32_t cseq) const {
  // RFC 3261 12.2.1.1: Request-URI the remote target, the route set as Route, the
  // dialog's From, To and Call-ID.
  std::string out;
  out.reserve(512);
  StrAppend(&out, method_text, " ", dialog.remote_target, " SIP/2.0\r\nVia: SIP/2.0/",
            proto::TransportName(dialog.peer.transport), " ",
            HostPortFor(dialog.peer.transport), ";branch=",
            branch, ";rport\r\n");
  for (const std::string& route : dialog.route_set) AppendHeader(out, "Route", route);
  StrAppend(&out, "Max-Forwards: 70\r\n");
  AppendHeader(out, "From", dialog.local_party);
  AppendHeader(out, "To", dialog.remote_party);
  AppendHeader(out, "Call-ID", dialog.call_id);
  StrAppend(&out, "CSeq: ", cseq, " ", method_text, "\r\n");
  return out;
}

std::string CallEngine::SendAck(const Dialog& dialog, uint32_t cseq, std::string_view body,
                                std::string_view content_type) {
  std::string out = StartDialogRequest(dialog, "ACK", tokens_.Branch('k'), cseq);
  AppendBody(out, body, content_type);
  context_.counters->requests_sent[static_cast<size_t>(Method::kAck)].Inc();
  Send(dialog.peer, out);
  return out;
}

void CallEngine::SendAckToB(Call& call, uint32_t cseq, std::string_view body,
                            std::string_view content_type) {
  std::string out = SendAck(call.b, cseq, body, content_type);
  if (cseq == call.b_invite_cseq) call.b_ack = std::move(out);
}

void CallEngine::ResendBAck(Call& call) {
  if (!call.b_ack.empty()) {
    Send(call.b.peer, call.b_ack);
    return;
  }
  // Past 64*T1 the stored ACK is gone; a callee that is still retransmitting gets a new
  // one (same dialog and CSeq; an ACK for a 2xx is its own transaction).
  SendAck(call.b, call.b_invite_cseq, {}, {});
}

void CallEngine::OnAck(const SipMessage& ack, const Peer& source) {
  context_.counters->requests_received[static_cast<size_t>(Method::kAck)].Inc();
  Call* found = FindByCallId(ack.call_id());
  if (found == nullptr) return;
  Call& call = *found;
  const bool from_a = ack.call_id() == call.a.call_id;
  if (from_a && call.state == Call::State::kAnswered &&
      ack.cseq().number == call.a_invite_cseq) {
    // The caller confirmed our 2xx: stop retransmitting and ACK the callee end to end,
    // with the caller's SDP when the offer came late (in the 2xx).
    context_.timers->Cancel(&call.a_2xx_timer);
    call.state = Call::State::kConfirmed;
    SendAckToB(call, call.b_invite_cseq, ack.body(), ack.content_type());
    call.b_acked = true;
    ReleaseSetupState(call);
    Replicate(call);
    return;
  }
  if (call.reinvite_pending && from_a == call.reinvite_from_a &&
      ack.cseq().number == call.reinvite_ack_cseq_in) {
    call.reinvite_pending = false;
    context_.timers->Cancel(&call.reinvite_2xx_timer);
    SendAck(from_a ? call.b : call.a, call.reinvite_ack_cseq_out, ack.body(),
            ack.content_type());
  }
}

TransactionId CallEngine::SendInDialogRequest(Call& call, bool to_b_leg, Method method,
                                              std::string_view method_text,
                                              std::string_view extra, std::string_view body,
                                              std::string_view content_type) {
  Dialog& dialog = to_b_leg ? call.b : call.a;
  std::string branch = tokens_.Branch('r');
  const uint32_t cseq = dialog.local_cseq++;
  std::string out = StartDialogRequest(dialog, method_text, branch, cseq);
  if (method == Method::kInvite || method == Method::kUpdate || method == Method::kNotify ||
      method == Method::kRefer || method == Method::kSubscribe)
    AppendHeader(out, "Contact", ContactFor(call, dialog.peer.transport));
  StrAppend(&out, extra);
  AppendBody(out, body, content_type);
  context_.counters->requests_sent[static_cast<size_t>(method)].Inc();
  if (method == Method::kInvite) call.reinvite_ack_cseq_out = cseq;
  return transactions_->SendRequest(std::move(out), branch, method, dialog.peer, call.cookie);
}

void CallEngine::ByeBothLegs(Call& call) {
  SendInDialogRequest(call, true, Method::kBye, "BYE", {}, {}, {});
  SendInDialogRequest(call, false, Method::kBye, "BYE", {}, {}, {});
}

void CallEngine::OnInDialogRequest(Call& call, TransactionId id, const SipMessage& request,
                                   const Peer& source) {
  const bool from_a = request.call_id() == call.a.call_id;
  Dialog& incoming = from_a ? call.a : call.b;
  const Method method = request.method();
  if (from_a && call.state != Call::State::kConfirmed && call.state != Call::State::kAnswered &&
      method != Method::kBye) {
    RespondStateless(id, request, 481, "Call/Transaction Does Not Exist", {});
    return;
  }
  if (!from_a && (call.state == Call::State::kTrying ||
                  (method == Method::kBye && call.state == Call::State::kEarly))) {
    // No dialog with the callee before it answers with a tag; and RFC 3261 15: a callee
    // must not send BYE before its 2xx. The INVITE still owes us a final response (or
    // Timer C ends it).
    RespondStateless(id, request, 481, "Call/Transaction Does Not Exist", {});
    return;
  }
  incoming.remote_cseq = request.cseq().number;
  if (method == Method::kBye) {
    // Answer at once and release the other leg: a BYE is never refused.
    RespondStateless(id, request, 200, "OK", {});
    if (from_a && !call.a_final_sent) {
      // A BYE in the caller's early dialog ends the INVITE like a CANCEL (RFC 3261 15).
      CancelCall(call);
      return;
    }
    if (call.state == Call::State::kAnswered || call.state == Call::State::kConfirmed) {
      SendInDialogRequest(call, from_a, Method::kBye, "BYE", {}, {}, {});
    }
    EndCall(call, CallOutcome::kAnswered);
    return;
  }
  if (method == Method::kInvite || method == Method::kUpdate) {
    if (call.reinvite_pending) {
      RespondStateless(id, request, 491, "Request Pending", "Retry-After: 1\r\n");
      return;
    }
  }
  if (method == Method::kInvite && !from_a) {
    // Refresh where the callee can be reached; the route set stays (RFC 3261 12.2).
    if (request.contact_count())
      call.b.remote_target = std::string(request.contacts()[0].address.uri.text);
  } else if (method == Method::kInvite && request.contact_count()) {
    call.a.remote_target = std::string(request.contacts()[0].address.uri.text);
  }
  const TransactionId relayed =
      SendInDialogRequest(call, from_a, method, request.method_text(),
                          PassedHeaders(request, call.config->headers,
                                        IdentityFrom(call.config->access, source)),
                          request.body(), request.content_type());
  if (relayed == proto::kNoTransaction) {
    RespondStateless(id, request, 500, "Server Internal Error", {});
    return;
  }
  Call::Relay& relay = call.relays[relayed];
  relay.server = id;
  relay.head = ResponseHead::Capture(request, *transactions_->ResponseDestination(id));
  relay.method = method;
  relay.from_a = from_a;
  if (method == Method::kInvite) {
    call.reinvite_pending = true;
    call.reinvite_from_a = from_a;
    call.reinvite_ack_cseq_in = request.cseq().number;
  }
  // Both legs' CSeqs moved: a survivor taking the call over must number above them.
  Replicate(call);
}

void CallEngine::OnRelayedResponse(Call& call, TransactionId id, const SipMessage& response) {
  auto it = call.relays.find(id);
  if (it == call.relays.end()) return;
  const int status = response.status_code();
  if (status == 100) return;
  Call::Relay& relay = it->second;
  if (relay.server == proto::kNoTransaction) {
    if (status >= 200) call.relays.erase(it);
    return;
  }
  std::string out = relay.head.Start(status, response.reason_phrase(), {});
  if (status < 300 && (relay.method == Method::kInvite || relay.method == Method::kUpdate))
    AppendHeader(out, "Contact",
                 ContactFor(call, (relay.from_a ? call.a.peer : call.b.peer).transport));
  if (status >= 200 && status < 300 && relay.method == Method::kInvite) {
    // The answering leg's 2xx is ACKed when the offering leg ACKs ours (end to end).
    Dialog& answering = relay.from_a ? call.b : call.a;
    if (response.contact_count())
      answering.remote_target = std::string(response.contacts()[0].address.uri.text);
  } else if (status >= 300 && relay.method == Method::kInvite) {
    call.reinvite_pending = false;
  }
  StrAppend(&out, PassedHeaders(response, call.config->headers,
                                IdentityFrom(call.config->access,
                                             relay.from_a ? call.b.peer : call.a.peer)));
  AppendBody(out, response.body(), response.content_type());
  context_.counters->responses_sent[status / 100].Inc();
  if (status >= 200 && status < 300 && relay.method == Method::kInvite) {
    // Like the first 2xx, a re-INVITE's 2xx is ours to retransmit until its ACK.
    call.reinvite_2xx = out;
    call.reinvite_2xx_peer = *transactions_->ResponseDestination(relay.server);
    ArmTimer(call, &call.reinvite_2xx_timer,
             call.reinvite_2xx_schedule.Start(context_.clock->Now(), call.config->timers.t1,
                                              call.config->timers.t2),
             kReInvite2xxRetransmit);
  }
  transactions_->Respond(relay.server, status, std::move(out));
  if (status >= 200) {
    const bool refreshed = status < 300 && (relay.method == Method::kInvite ||
                                            relay.method == Method::kUpdate);
    call.relays.erase(it);
    // A re-INVITE or UPDATE may have moved a remote target.
    if (refreshed) Replicate(call);
  }
}

void CallEngine::OnStrayResponse(const SipMessage& response, const Peer& source) {
  context_.counters->responses_received[response.status_code() / 100].Inc();
  if (response.cseq().method != Method::kInvite || response.status_code() / 100 != 2) return;
  // A 2xx retransmitted after its transaction ended: re-send our ACK if we know the call.
  Call* call = FindByCallId(response.call_id());
  if (call != nullptr && call->b_acked && response.cseq().number == call->b_invite_cseq) {
    ResendBAck(*call);
    return;
  }
}

void CallEngine::SendA2xx(Call& call) { Send(call.a_response_peer, call.setup().a_2xx); }

}  // namespace b2bua
