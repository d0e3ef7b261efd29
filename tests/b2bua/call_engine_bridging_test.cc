// Tests b2bua/call_engine.{h,cc}: a call bridged end to end: set-up, 2xx reliability, CANCEL, requests outside a call, the core's timers, and a soak of a thousand calls. The harness is in call_engine_harness.h.

#include "tests/b2bua/call_engine_harness.h"

namespace b2bua::engine_test {
namespace {

// ---------------------------------------------------------------------------------------
// Basic calls.

TEST_F(CallEngineTest, BasicCallIsBridgedWithTopologyHidden) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  Callee bob;

  Deliver(caller.Invite(), caller.peer());
  std::vector<Sent> out = TakeSent();
  ASSERT_FALSE(out.empty());
  // 100 Trying goes back at once, before anything else.
  EXPECT_EQ(out[0].port(), kCallerPort);
  EXPECT_EQ(out[0].status(), 100);
  EXPECT_EQ(out[0].call_id(), caller.call_id);
  std::vector<Sent> invites = RequestsTo(out, 5070, Method::kInvite);
  ASSERT_EQ(invites.size(), 1u);
  const Sent& b = invites[0];
  EXPECT_EQ(b.ip(), "127.0.0.1");

  // The B-leg INVITE: the caller's Request-URI (no routes), a dialog of its own.
  EXPECT_EQ(b.request_uri(), caller.request_uri);
  EXPECT_NE(b.call_id(), caller.call_id);
  EXPECT_FALSE(b.call_id().empty());
  EXPECT_NE(b.from_tag(), caller.from_tag);
  EXPECT_FALSE(b.from_tag().empty());
  EXPECT_TRUE(b.to_tag().empty());
  ASSERT_EQ(b.msg().via_count(), 1u);
  const proto::Via& via = *b.msg().top_via();
  EXPECT_EQ(via.host, "127.0.0.1");
  EXPECT_EQ(via.port, kB2buaPort);
  EXPECT_THAT(std::string(via.branch), StartsWith("z9hG4bK"));
  EXPECT_EQ(b.Header("Contact"), "<sip:b2bua@127.0.0.1:5060>");
  EXPECT_EQ(b.msg().max_forwards(), caller.max_forwards - 1);
  EXPECT_EQ(b.msg().from().display_name, "Alice Liddell");
  EXPECT_EQ(b.msg().from().uri.text, "sip:alice@atlanta.example.com");
  EXPECT_EQ(b.msg().to().display_name, "Bob");
  EXPECT_EQ(b.msg().to().uri.text, "sip:bob@biloxi.example.com");
  EXPECT_EQ(b.body(), kOfferSdp);
  EXPECT_EQ(b.msg().content_type(), "application/sdp");
  EXPECT_EQ(b.cseq_method(), "INVITE");
  // Headers on the default pass list go through; unknown ones do not.
  EXPECT_EQ(b.Header("User-Agent"), "CallerUA/1.0");
  EXPECT_FALSE(b.HasHeader("X-Caller-Secret"));
  EXPECT_FALSE(b.HasHeader("History-Info"));

  // Topology hiding: nothing that names the caller's dialog or address.
  for (std::string_view secret :
       {std::string_view(caller.call_id), std::string_view(caller.from_tag),
        std::string_view(caller.branch), std::string_view("127.0.0.1:5061"),
        Caller::kContactUri}) {
    EXPECT_THAT(b.bytes(), Not(HasSubstr(std::string(secret)))) << secret;
  }

  // 180: relayed with our To tag and Contact, not the callee's.
  Deliver(bob.Answer(b, 180, "Ringing"), bob.peer());
  out = TakeSent();
  std::vector<Sent> to_caller = ResponsesTo(out, kCallerPort);
  ASSERT_EQ(to_caller.size(), 1u);
  const Sent ringing = to_caller[0];
  EXPECT_EQ(ringing.status(), 180);
  EXPECT_EQ(ringing.call_id(), caller.call_id);
  EXPECT_EQ(ringing.from_tag(), caller.from_tag);
  EXPECT_EQ(ringing.cseq(), caller.cseq);
  EXPECT_EQ(ringing.branch(), caller.branch);
  EXPECT_FALSE(ringing.to_tag().empty());
  EXPECT_NE(ringing.to_tag(), bob.tag);
  EXPECT_EQ(ringing.Header("Contact"), "<sip:b2bua@127.0.0.1:5060>");
  EXPECT_THAT(ringing.bytes(), Not(HasSubstr(bob.ContactUri())));
  EXPECT_THAT(ringing.bytes(), Not(HasSubstr(b.call_id())));

  // 200: relayed with the answer SDP, our Contact, the same To tag as the 180.
  Deliver(bob.Answer(b, 200, "OK", kAnswerSdp), bob.peer());
  out = TakeSent();
  to_caller = ResponsesTo(out, kCallerPort);
  ASSERT_EQ(to_caller.size(), 1u);
  const Sent ok = to_caller[0];
  EXPECT_EQ(ok.status(), 200);
  EXPECT_EQ(ok.body(), kAnswerSdp);
  EXPECT_EQ(ok.msg().content_type(), "application/sdp");
  EXPECT_EQ(ok.Header("Contact"), "<sip:b2bua@127.0.0.1:5060>");
  EXPECT_EQ(ok.to_tag(), ringing.to_tag());
  EXPECT_EQ(ok.call_id(), caller.call_id);
  EXPECT_THAT(ok.bytes(), Not(HasSubstr(bob.ContactUri())));
  EXPECT_THAT(ok.bytes(), Not(HasSubstr(bob.tag)));
  // Nothing goes to the callee before the caller's ACK (the ACK is end to end).
  EXPECT_THAT(RequestsTo(out, 5070, Method::kAck), IsEmpty());
  EXPECT_EQ(counters_->calls_active.Get(), 1u);
  EXPECT_EQ(counters_->dialogs_active.Get(), 2u);

  // Caller's ACK: an ACK on the B-leg, to the callee's Contact, CSeq of the INVITE.
  caller.to_tag = ok.to_tag();
  Deliver(caller.Ack2xx(), caller.peer());
  out = TakeSent();
  std::vector<Sent> acks = RequestsTo(out, 5070, Method::kAck);
  ASSERT_EQ(acks.size(), 1u);
  EXPECT_EQ(acks[0].request_uri(), bob.ContactUri());
  EXPECT_EQ(acks[0].cseq(), b.cseq());
  EXPECT_EQ(acks[0].cseq_method(), "ACK");
  EXPECT_EQ(acks[0].call_id(), b.call_id());
  EXPECT_EQ(acks[0].from_tag(), b.from_tag());
  EXPECT_EQ(acks[0].to_tag(), bob.tag);
  EXPECT_THAT(ResponsesTo(out, kCallerPort), IsEmpty());

  // A 200 retransmitted by the callee after our ACK is ACKed again, not relayed.
  Deliver(bob.Answer(b, 200, "OK", kAnswerSdp), bob.peer());
  out = TakeSent();
  EXPECT_THAT(ResponsesTo(out, kCallerPort), IsEmpty());
  std::vector<Sent> re_acks = RequestsTo(out, 5070, Method::kAck);
  ASSERT_EQ(re_acks.size(), 1u);
  EXPECT_EQ(re_acks[0].bytes(), acks[0].bytes());

  // Caller's BYE: answered 200, and a BYE goes to the callee in the B-leg dialog.
  Deliver(caller.Bye(), caller.peer());
  out = TakeSent();
  to_caller = ResponsesTo(out, kCallerPort);
  ASSERT_EQ(to_caller.size(), 1u);
  EXPECT_EQ(to_caller[0].status(), 200);
  EXPECT_EQ(to_caller[0].cseq_method(), "BYE");
  std::vector<Sent> byes = RequestsTo(out, 5070, Method::kBye);
  ASSERT_EQ(byes.size(), 1u);
  EXPECT_EQ(byes[0].request_uri(), bob.ContactUri());
  EXPECT_EQ(byes[0].call_id(), b.call_id());
  EXPECT_EQ(byes[0].from_tag(), b.from_tag());
  EXPECT_EQ(byes[0].to_tag(), bob.tag);
  EXPECT_GT(byes[0].cseq(), b.cseq());
  Deliver(bob.Ok(byes[0]), bob.peer());

  EXPECT_EQ(Ended(CallOutcome::kAnswered), 1u);
  EXPECT_EQ(counters_->calls_active.Get(), 0u);
  EXPECT_EQ(counters_->dialogs_active.Get(), 0u);
  EXPECT_EQ(engine_->active_calls(), 0u);
}

TEST_F(CallEngineTest, CallerLeg2xxIsRetransmittedWithDoublingIntervalUntilAck) {
  ASSERT_NO_FATAL_FAILURE(Start());  // T1 500ms, T2 4s
  Caller caller;
  Callee bob;
  std::optional<Sent> b = Invite(caller);
  ASSERT_TRUE(b);
  Deliver(bob.Answer(*b, 200, "OK", kAnswerSdp), bob.peer());
  std::vector<Sent> oks = WithStatus(ResponsesTo(TakeSent(), kCallerPort), 200);
  ASSERT_EQ(oks.size(), 1u);

  // The callee's own retransmissions of its 200 are not relayed: the core paces the A-leg.
  Advance(200ms);
  Deliver(bob.Answer(*b, 200, "OK", kAnswerSdp), bob.peer());
  EXPECT_THAT(ResponsesTo(TakeSent(), kCallerPort), IsEmpty());

  Advance(15s);  // up to t0 + 15.2s: re-sent at t0 + 0.5, 1.5, 3.5, 7.5 and 11.5s
  std::vector<Sent> more = WithStatus(ResponsesTo(TakeSent(), kCallerPort), 200);
  ASSERT_EQ(more.size(), 5u);
  oks.insert(oks.end(), more.begin(), more.end());
  // Intervals T1, 2T1, 4T1, then capped at T2 (RFC 3261 13.3.1.4). One wheel tick of slack.
  const std::vector<proto::Duration> expected = {500ms, 1000ms, 2000ms, 4000ms, 4000ms};
  for (size_t i = 0; i < expected.size(); ++i) {
    proto::Duration gap = oks[i + 1].at() - oks[i].at();
    EXPECT_GE(gap, expected[i] - 1ms) << "retransmission " << i + 1;
    EXPECT_LE(gap, expected[i] + 10ms) << "retransmission " << i + 1;
    EXPECT_EQ(oks[i + 1].bytes(), oks[0].bytes()) << "retransmission " << i + 1;
  }

  caller.to_tag = oks[0].to_tag();
  Deliver(caller.Ack2xx(), caller.peer());
  EXPECT_EQ(RequestsTo(TakeSent(), 5070, Method::kAck).size(), 1u);
  Advance(30s);
  EXPECT_THAT(ResponsesTo(TakeSent(), kCallerPort), IsEmpty());
  EXPECT_EQ(engine_->active_calls(), 1u);
}

TEST_F(CallEngineTest, CalleeStill2xxRetransmittingAfter64T1IsAckedAgainNotHungUp) {
  ASSERT_NO_FATAL_FAILURE(Start());  // T1 500ms: the stored ACK is kept for 32 s
  Caller caller;
  Callee bob;
  std::optional<Sent> b = Invite(caller);
  ASSERT_TRUE(b);
  Deliver(bob.Answer(*b, 200, "OK", kAnswerSdp), bob.peer());
  std::vector<Sent> oks = WithStatus(ResponsesTo(TakeSent(), kCallerPort), 200);
  ASSERT_EQ(oks.size(), 1u);
  caller.to_tag = oks[0].to_tag();
  Deliver(caller.Ack2xx(), caller.peer());
  std::vector<Sent> acks = RequestsTo(TakeSent(), 5070, Method::kAck);
  ASSERT_EQ(acks.size(), 1u);

  Advance(10s);
  Deliver(bob.Answer(*b, 200, "OK", kAnswerSdp), bob.peer());
  std::vector<Sent> again = RequestsTo(TakeSent(), 5070, Method::kAck);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].bytes(), acks[0].bytes());  // within 64*T1: the very same ACK

  Advance(40s);  // the stored ACK is forgotten; a late retransmission still gets one
  Deliver(bob.Answer(*b, 200, "OK", kAnswerSdp), bob.peer());
  std::vector<Sent> out = TakeSent();
  std::vector<Sent> late = RequestsTo(out, 5070, Method::kAck);
  ASSERT_EQ(late.size(), 1u);
  EXPECT_EQ(late[0].request_uri(), acks[0].request_uri());
  EXPECT_EQ(late[0].call_id(), acks[0].call_id());
  EXPECT_EQ(late[0].cseq(), acks[0].cseq());
  EXPECT_EQ(late[0].from_tag(), acks[0].from_tag());
  EXPECT_EQ(late[0].to_tag(), bob.tag);
  EXPECT_THAT(RequestsTo(out, 5070, Method::kBye), IsEmpty());
  EXPECT_THAT(ResponsesTo(out, kCallerPort), IsEmpty());
  EXPECT_EQ(engine_->active_calls(), 1u);
}

// RFC 3261 15: a callee must not send BYE before its 2xx. One that does gets 481; the
// caller's INVITE still gets its final answer, so no transaction waits forever.
TEST_F(CallEngineTest, CalleeByeBeforeAnsweringGets481AndTheCallGoesOn) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  Callee bob;
  std::optional<Sent> b = Invite(caller);
  ASSERT_TRUE(b);
  Deliver(bob.Answer(*b, 180, "Ringing"), bob.peer());
  TakeSent();
  Deliver(bob.Bye(*b), bob.peer());
  std::vector<Sent> out = TakeSent();
  std::vector<Sent> to_bob = ResponsesTo(out, 5070);
  ASSERT_EQ(to_bob.size(), 1u);
  EXPECT_EQ(to_bob[0].status(), 481);
  EXPECT_THAT(ResponsesTo(out, kCallerPort), IsEmpty());
  EXPECT_EQ(engine_->active_calls(), 1u);

  Deliver(bob.Answer(*b, 486, "Busy Here"), bob.peer());
  std::vector<Sent> to_caller = ResponsesTo(TakeSent(), kCallerPort);
  ASSERT_EQ(to_caller.size(), 1u);
  EXPECT_EQ(to_caller[0].status(), 486);
  EXPECT_EQ(engine_->active_calls(), 0u);
  Advance(40s);
  EXPECT_EQ(layer_->size(), 0u) << "no transaction left waiting";
}

TEST_F(CallEngineTest, CalleeByeIsRelayedToCallerInTheCallersDialog) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  Callee bob;
  std::optional<Sent> b = EstablishCall(caller, bob);
  ASSERT_TRUE(b);

  Deliver(bob.Bye(*b), bob.peer());
  std::vector<Sent> out = TakeSent();
  std::vector<Sent> to_bob = ResponsesTo(out, 5070);
  ASSERT_EQ(to_bob.size(), 1u);
  EXPECT_EQ(to_bob[0].status(), 200);
  EXPECT_EQ(to_bob[0].cseq_method(), "BYE");

  std::vector<Sent> byes = RequestsTo(out, kCallerPort, Method::kBye);
  ASSERT_EQ(byes.size(), 1u);
  const Sent& bye = byes[0];
  EXPECT_EQ(bye.request_uri(), Caller::kContactUri);
  EXPECT_EQ(bye.call_id(), caller.call_id);
  // From/To swapped: we are the caller's "Bob" with the tag it learned from our 200.
  EXPECT_EQ(bye.msg().from().uri.text, "sip:bob@biloxi.example.com");
  EXPECT_EQ(bye.from_tag(), caller.to_tag);
  EXPECT_EQ(bye.msg().to().uri.text, "sip:alice@atlanta.example.com");
  EXPECT_EQ(bye.to_tag(), caller.from_tag);
  EXPECT_GT(bye.msg().max_forwards(), 0);
  EXPECT_THAT(bye.bytes(), Not(HasSubstr(b->call_id())));
  EXPECT_THAT(bye.bytes(), Not(HasSubstr(bob.tag)));
  Deliver(ResponseTo(bye, 200, "OK", {}), caller.peer());

  EXPECT_EQ(Ended(CallOutcome::kAnswered), 1u);
  EXPECT_EQ(counters_->calls_active.Get(), 0u);
  EXPECT_EQ(counters_->dialogs_active.Get(), 0u);
  EXPECT_EQ(engine_->active_calls(), 0u);
}

// ---------------------------------------------------------------------------------------
// CANCEL.

TEST_F(CallEngineTest, CallerCancelAfterRingingCancelsTheBLeg) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  Callee bob;
  std::optional<Sent> b = Invite(caller);
  ASSERT_TRUE(b);
  Deliver(bob.Answer(*b, 180, "Ringing"), bob.peer());
  TakeSent();

  Deliver(caller.Cancel(), caller.peer());
  std::vector<Sent> out = TakeSent();
  std::vector<Sent> to_caller = ResponsesTo(out, kCallerPort);
  ASSERT_EQ(to_caller.size(), 2u);
  EXPECT_EQ(to_caller[0].status(), 200);
  EXPECT_EQ(to_caller[0].cseq_method(), "CANCEL");
  EXPECT_EQ(to_caller[1].status(), 487);
  EXPECT_EQ(to_caller[1].cseq_method(), "INVITE");
  std::vector<Sent> cancels = RequestsTo(out, 5070, Method::kCancel);
  ASSERT_EQ(cancels.size(), 1u);
  EXPECT_EQ(cancels[0].branch(), b->branch());
  EXPECT_EQ(cancels[0].cseq(), b->cseq());
  EXPECT_EQ(cancels[0].request_uri(), b->request_uri());
  EXPECT_EQ(cancels[0].call_id(), b->call_id());
  EXPECT_EQ(cancels[0].from(), b->from());

  caller.to_tag = to_caller[1].to_tag();
  Deliver(caller.AckFailure(), caller.peer());
  Deliver(bob.Ok(cancels[0]), bob.peer());
  Deliver(bob.Answer(*b, 487, "Request Terminated"), bob.peer());
  out = TakeSent();
  // The 487 is ACKed by the INVITE client transaction (same branch, the callee's tag).
  std::vector<Sent> acks = RequestsTo(out, 5070, Method::kAck);
  ASSERT_EQ(acks.size(), 1u);
  EXPECT_EQ(acks[0].branch(), b->branch());
  EXPECT_EQ(acks[0].to_tag(), bob.tag);
  EXPECT_THAT(ResponsesTo(out, kCallerPort), IsEmpty());

  EXPECT_EQ(engine_->active_calls(), 0u);
  EXPECT_EQ(Ended(CallOutcome::kCancelled), 1u);
  EXPECT_EQ(counters_->calls_active.Get(), 0u);
}

TEST_F(CallEngineTest, CancelBeforeAnyProvisionalIsHeldUntilTheCalleeRings) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  Callee bob;
  std::optional<Sent> b = Invite(caller);
  ASSERT_TRUE(b);

  Deliver(caller.Cancel(), caller.peer());
  std::vector<Sent> out = TakeSent();
  EXPECT_THAT(Statuses(ResponsesTo(out, kCallerPort)), ElementsAre(200, 487));
  // RFC 3261 9.1: no CANCEL before a provisional response.
  EXPECT_THAT(RequestsTo(out, 5070, Method::kCancel), IsEmpty());

  Deliver(bob.Answer(*b, 180, "Ringing"), bob.peer());
  out = TakeSent();
  std::vector<Sent> cancels = RequestsTo(out, 5070, Method::kCancel);
  ASSERT_EQ(cancels.size(), 1u);
  EXPECT_EQ(cancels[0].branch(), b->branch());
  EXPECT_THAT(ResponsesTo(out, kCallerPort), IsEmpty()) << "180 after the 487 is not relayed";

  Deliver(bob.Ok(cancels[0]), bob.peer());
  Deliver(bob.Answer(*b, 487, "Request Terminated"), bob.peer());
  EXPECT_EQ(RequestsTo(TakeSent(), 5070, Method::kAck).size(), 1u);
  EXPECT_EQ(engine_->active_calls(), 0u);
  EXPECT_EQ(Ended(CallOutcome::kCancelled), 1u);
}

TEST_F(CallEngineTest, AnswerCrossingTheCallersCancelIsAckedAndReleased) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  Callee bob;
  std::optional<Sent> b = Invite(caller);
  ASSERT_TRUE(b);
  Deliver(bob.Answer(*b, 180, "Ringing"), bob.peer());
  Deliver(caller.Cancel(), caller.peer());
  std::vector<Sent> cancels = RequestsTo(TakeSent(), 5070, Method::kCancel);
  ASSERT_EQ(cancels.size(), 1u);

  // The callee answered before it saw the CANCEL.
  Deliver(bob.Answer(*b, 200, "OK", kAnswerSdp), bob.peer());
  std::vector<Sent> out = TakeSent();
  EXPECT_EQ(RequestsTo(out, 5070, Method::kAck).size(), 1u);
  std::vector<Sent> byes = RequestsTo(out, 5070, Method::kBye);
  ASSERT_EQ(byes.size(), 1u);
  EXPECT_EQ(byes[0].to_tag(), bob.tag);
  EXPECT_EQ(byes[0].request_uri(), bob.ContactUri());
  EXPECT_THAT(ResponsesTo(out, kCallerPort), IsEmpty());
  Deliver(bob.Ok(cancels[0]), bob.peer());
  Deliver(bob.Ok(byes[0]), bob.peer());

  Advance(40s);
  EXPECT_EQ(engine_->active_calls(), 0u);
  EXPECT_EQ(counters_->calls_active.Get(), 0u);
  EXPECT_EQ(counters_->dialogs_active.Get(), 0u);
}


// ---------------------------------------------------------------------------------------
// Requests outside a call.

TEST_F(CallEngineTest, OptionsOutOfDialogIsAnswered200WithAllow) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Deliver(
      "OPTIONS sip:127.0.0.1:5060 SIP/2.0\r\n"
      "Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bKopt1;rport\r\n"
      "Max-Forwards: 70\r\n"
      "From: <sip:monitor@example.org>;tag=m1\r\n"
      "To: <sip:127.0.0.1:5060>\r\n"
      "Call-ID: options-1@example.org\r\n"
      "CSeq: 1 OPTIONS\r\n"
      "Content-Length: 0\r\n\r\n",
      LoopbackPeer(kCallerPort));
  std::vector<Sent> out = TakeSent();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].port(), kCallerPort);
  EXPECT_EQ(out[0].status(), 200);
  EXPECT_EQ(out[0].cseq_method(), "OPTIONS");
  EXPECT_EQ(out[0].call_id(), "options-1@example.org");
  EXPECT_THAT(out[0].Header("Allow"), HasSubstr("INVITE"));
  EXPECT_FALSE(out[0].to_tag().empty());
  EXPECT_EQ(engine_->active_calls(), 0u);
}

TEST_F(CallEngineTest, RegisterIsAnswered405WithAllow) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Deliver(
      "REGISTER sip:127.0.0.1:5060 SIP/2.0\r\n"
      "Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bKreg1;rport\r\n"
      "Max-Forwards: 70\r\n"
      "From: <sip:alice@example.org>;tag=r1\r\n"
      "To: <sip:alice@example.org>\r\n"
      "Call-ID: register-1@example.org\r\n"
      "CSeq: 1 REGISTER\r\n"
      "Contact: <sip:alice@127.0.0.1:5061>\r\n"
      "Expires: 3600\r\n"
      "Content-Length: 0\r\n\r\n",
      LoopbackPeer(kCallerPort));
  std::vector<Sent> out = TakeSent();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].status(), 405);
  EXPECT_EQ(out[0].cseq_method(), "REGISTER");
  std::string allow = out[0].Header("Allow");
  EXPECT_THAT(allow, HasSubstr("INVITE"));
  EXPECT_THAT(allow, Not(HasSubstr("REGISTER")));
}

// ---------------------------------------------------------------------------------------
// Protocol details beyond the happy path.

// RFC 3261 12.1.1: the UAS copies the request's Record-Route into every response that
// creates a dialog, so that the caller's ACK and BYE go back through the proxy that asked
// to stay in the path. Requests from the B2BUA to the caller use that route set.
TEST_F(CallEngineEdgeTest, CallersRecordRouteIsCopiedIntoDialogCreatingResponses) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  caller.extra = "Record-Route: <sip:127.0.0.1:5090;lr>\r\n";
  Callee bob;
  std::optional<Sent> b = Invite(caller);
  ASSERT_TRUE(b);
  EXPECT_FALSE(b->HasHeader("Record-Route")) << "hop by hop: not copied to the B-leg";
  Deliver(bob.Answer(*b, 180, "Ringing"), bob.peer());
  Deliver(bob.Answer(*b, 200, "OK", kAnswerSdp), bob.peer());
  std::vector<Sent> to_caller = ResponsesTo(TakeSent(), kCallerPort);
  ASSERT_EQ(to_caller.size(), 2u);
  EXPECT_EQ(to_caller[0].Header("Record-Route"), "<sip:127.0.0.1:5090;lr>") << "180";
  EXPECT_EQ(to_caller[1].Header("Record-Route"), "<sip:127.0.0.1:5090;lr>") << "200";

  caller.to_tag = to_caller[1].to_tag();
  Deliver(caller.Ack2xx(), caller.peer());
  TakeSent();
  Deliver(bob.Bye(*b), bob.peer());
  std::vector<Sent> byes = RequestsOf(TakeSent(), Method::kBye);
  ASSERT_EQ(byes.size(), 1u);
  EXPECT_EQ(byes[0].Header("Route"), "<sip:127.0.0.1:5090;lr>");
}

// RFC 3261 15: the caller may BYE an early dialog. The INVITE still needs its final answer
// (15.1.2 recommends 487) and the callee leg must be cancelled; nothing was answered, so
// the call must not count as answered.
TEST_F(CallEngineEdgeTest, CallerByeInEarlyDialogCancelsTheCalleeAndEndsTheInvite) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  Callee bob;
  std::optional<Sent> b = Invite(caller);
  ASSERT_TRUE(b);
  Deliver(bob.Answer(*b, 180, "Ringing"), bob.peer());
  std::vector<Sent> ringing = ResponsesTo(TakeSent(), kCallerPort);
  ASSERT_EQ(ringing.size(), 1u);
  caller.to_tag = ringing[0].to_tag();

  Deliver(caller.Bye(), caller.peer());
  std::vector<Sent> out = TakeSent();
  std::vector<Sent> to_caller = ResponsesTo(out, kCallerPort);
  std::vector<int> bye_answers, invite_answers;
  for (const Sent& s : to_caller)
    (s.cseq_method() == "BYE" ? bye_answers : invite_answers).push_back(s.status());
  EXPECT_THAT(bye_answers, ElementsAre(200));
  EXPECT_THAT(invite_answers, ElementsAre(487));
  EXPECT_EQ(RequestsTo(out, 5070, Method::kCancel).size(), 1u);
  EXPECT_EQ(Ended(CallOutcome::kAnswered), 0u);
  // Left as is, both INVITE transactions sit in Proceeding, where no timer ends them.
  Advance(40s);
  EXPECT_EQ(layer_->size(), 0u);
}

// RFC 3261 13.3.1.4: without an ACK for 64*T1 the dialog is confirmed but the session
// SHOULD be ended with a BYE; the B2BUA has two dialogs to end.
TEST_F(CallEngineEdgeTest, MissingCallerAckEndsBothLegsWithBye) {
  ASSERT_NO_FATAL_FAILURE(Start());  // T1 500ms: 64*T1 = 32s
  Caller caller;
  Callee bob;
  std::optional<Sent> b = Invite(caller);
  ASSERT_TRUE(b);
  Deliver(bob.Answer(*b, 200, "OK", kAnswerSdp), bob.peer());
  std::vector<Sent> oks = WithStatus(ResponsesTo(TakeSent(), kCallerPort), 200);
  ASSERT_EQ(oks.size(), 1u);
  const proto::TimePoint answered_at = oks[0].at();
  Advance(40s);
  std::vector<Sent> out = TakeSent();
  // The callee gets one BYE (and its retransmissions, since nobody answers it here).
  std::vector<Sent> callee_byes = RequestsTo(out, 5070, Method::kBye);
  ASSERT_FALSE(callee_byes.empty());
  for (const Sent& bye : callee_byes) EXPECT_EQ(bye.branch(), callee_byes[0].branch());
  EXPECT_EQ(RequestsTo(out, 5070, Method::kAck).size(), 1u) << "the callee's 2xx is ACKed";
  EXPECT_LE(callee_byes[0].at() - answered_at, 32s + 10ms) << "given up after 64*T1";
  EXPECT_FALSE(RequestsTo(out, kCallerPort, Method::kBye).empty()) << "the caller's dialog";
  EXPECT_EQ(engine_->active_calls(), 0u);
  EXPECT_EQ(counters_->dialogs_active.Get(), 0u);
}

// RFC 3261 17.2.1 / 18.2.2: a 2xx and its retransmissions go where the transaction layer
// sends responses (Via sent-by port when the client did not ask for rport), not to the
// request's source port.
TEST_F(CallEngineEdgeTest, CallerLeg2xxRetransmissionsGoWhereTheFirst2xxWent) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  caller.rport = false;
  caller.source_port = 40000;  // sent from an ephemeral port; Via says 5061
  Callee bob;
  std::optional<Sent> b = Invite(caller);
  ASSERT_TRUE(b);
  Deliver(bob.Answer(*b, 200, "OK", kAnswerSdp), bob.peer());
  std::vector<Sent> out = TakeSent();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].status(), 200);
  const uint16_t port = out[0].port();
  EXPECT_EQ(port, kCallerPort);
  Advance(600ms);
  out = TakeSent();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].status(), 200);
  EXPECT_EQ(out[0].port(), port);
}


// ---------------------------------------------------------------------------------------
// Timers of the core.

TEST_F(CallEngineTest, NoAnswerTimeoutCancelsTheCalleeAndAnswers408) {
  ASSERT_NO_FATAL_FAILURE(Start("limits: {no_answer_timeout: 5s}\n"));
  Caller caller;
  Callee bob;
  std::optional<Sent> b = Invite(caller);
  ASSERT_TRUE(b);
  Deliver(bob.Answer(*b, 180, "Ringing"), bob.peer());
  TakeSent();
  Advance(4900ms);
  EXPECT_THAT(TakeSent(), IsEmpty());
  Advance(200ms);
  std::vector<Sent> out = TakeSent();
  std::vector<Sent> cancels = RequestsTo(out, 5070, Method::kCancel);
  ASSERT_EQ(cancels.size(), 1u);
  EXPECT_EQ(cancels[0].branch(), b->branch());
  std::vector<Sent> finals = WithStatus(ResponsesTo(out, kCallerPort), 408);
  ASSERT_EQ(finals.size(), 1u);
  EXPECT_THAT(finals[0].Header("Reason"), HasSubstr("408"));
  EXPECT_EQ(Ended(CallOutcome::kNoAnswer), 1u);
  EXPECT_EQ(engine_->active_calls(), 0u);

  Deliver(bob.Ok(cancels[0]), bob.peer());
  Deliver(bob.Answer(*b, 487, "Request Terminated"), bob.peer());
  out = TakeSent();
  EXPECT_EQ(RequestsTo(out, 5070, Method::kAck).size(), 1u);
  EXPECT_THAT(ResponsesTo(out, kCallerPort), IsEmpty());
}

TEST_F(CallEngineTest, MaxCallDurationHangsUpBothLegs) {
  ASSERT_NO_FATAL_FAILURE(Start("limits: {max_call_duration: 60s}\n"));
  Caller caller;
  Callee bob;
  std::optional<Sent> b = EstablishCall(caller, bob);
  ASSERT_TRUE(b);
  Advance(59s);
  EXPECT_THAT(TakeSent(), IsEmpty());
  Advance(2s);
  std::vector<Sent> out = TakeSent();
  // Unique(): nobody answers the BYEs here, so they are retransmitted.
  std::vector<Sent> to_bob = Unique(RequestsTo(out, 5070, Method::kBye));
  std::vector<Sent> to_caller = Unique(RequestsTo(out, kCallerPort, Method::kBye));
  ASSERT_EQ(to_bob.size(), 1u);
  ASSERT_EQ(to_caller.size(), 1u);
  EXPECT_EQ(to_bob[0].call_id(), b->call_id());
  EXPECT_EQ(to_caller[0].call_id(), caller.call_id);
  EXPECT_EQ(to_caller[0].to_tag(), caller.from_tag);
  EXPECT_EQ(Ended(CallOutcome::kAnswered), 1u);
  EXPECT_EQ(counters_->dialogs_active.Get(), 0u);
  EXPECT_EQ(engine_->active_calls(), 0u);
}

// Timer B ends the only attempt: the caller gets 408, and the call is counted as
// unreachable ("every next hop timed out or failed at the transport", CallOutcome).
TEST_F(CallEngineEdgeTest, SilentHopTimesOutWith408CountedAsUnreachable) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  std::optional<Sent> b = Invite(caller);
  ASSERT_TRUE(b);
  Advance(31s);
  std::vector<Sent> out = TakeSent();
  EXPECT_THAT(ResponsesTo(out, kCallerPort), IsEmpty());
  for (const Sent& s : RequestsTo(out, 5070, Method::kInvite))
    EXPECT_EQ(s.bytes(), b->bytes()) << "only retransmissions (Timer A)";
  Advance(2s);
  // Unique(): the caller does not ACK here, so Timer G re-sends the 408.
  std::vector<Sent> finals = Unique(WithStatus(ResponsesTo(TakeSent(), kCallerPort), 408));
  ASSERT_EQ(finals.size(), 1u);
  EXPECT_EQ(engine_->active_calls(), 0u);
  EXPECT_EQ(Ended(CallOutcome::kUnreachable), 1u);
  EXPECT_EQ(Ended(CallOutcome::kRejected), 0u);
}

TEST_F(CallEngineTest, RouteFailsOverWhenTheFirstHopTimesOut) {
  ASSERT_NO_FATAL_FAILURE(Start(R"yaml(
routes:
  - prefix: "555"
    next_hops: ["sip:127.0.0.1:5070", "sip:127.0.0.1:5071"]
)yaml"));
  Caller caller;
  caller.request_uri = "sip:5551234@b2bua.example.net";
  Callee hop_b{5071, "hop-b", "hopb"};
  std::optional<Sent> first = Invite(caller, 5070);
  ASSERT_TRUE(first);
  Advance(31s);
  EXPECT_THAT(RequestsTo(TakeSent(), 5071, Method::kInvite), IsEmpty());
  Advance(2s);  // Timer B: 64*T1
  std::vector<Sent> second = Unique(RequestsTo(TakeSent(), 5071, Method::kInvite));
  ASSERT_EQ(second.size(), 1u) << "one INVITE and its Timer A retransmissions";
  ExpectRetryOf(*first, second[0], caller.request_uri);
  Deliver(hop_b.Answer(second[0], 200, "OK", kAnswerSdp), hop_b.peer());
  EXPECT_THAT(Statuses(ResponsesTo(TakeSent(), kCallerPort)), ElementsAre(200));
}


// ---------------------------------------------------------------------------------------
// Soak.

TEST_F(CallEngineTest, ThousandSequentialCallsLeaveNoCallTransactionOrTimerBehind) {
  ASSERT_NO_FATAL_FAILURE(Start());
  constexpr int kCalls = 1000;
  int answered = 0;
  for (int i = 0; i < kCalls; ++i) {
    Caller caller;
    caller.call_id = "soak-" + std::to_string(i) + "@pc33.atlanta.example.com";
    caller.from_tag = "ft" + std::to_string(i);
    caller.branch = "z9hG4bKsoak" + std::to_string(i);
    caller.requests = i * 10;
    Callee bob;
    bob.tag = "bt" + std::to_string(i);
    bob.requests = i * 10;
    std::optional<Sent> b = EstablishCall(caller, bob);
    ASSERT_TRUE(b) << "call " << i;
    Advance(10ms);
    if (i % 2 == 0) {
      Deliver(caller.Bye(), caller.peer());
      std::vector<Sent> byes = RequestsTo(TakeSent(), 5070, Method::kBye);
      ASSERT_EQ(byes.size(), 1u) << "call " << i;
      Deliver(bob.Ok(byes[0]), bob.peer());
    } else {
      Deliver(bob.Bye(*b), bob.peer());
      std::vector<Sent> byes = RequestsTo(TakeSent(), kCallerPort, Method::kBye);
      ASSERT_EQ(byes.size(), 1u) << "call " << i;
      Deliver(ResponseTo(byes[0], 200, "OK", {}), caller.peer());
    }
    TakeSent();
    ++answered;
    Advance(10ms);
  }
  EXPECT_EQ(answered, kCalls);
  EXPECT_EQ(engine_->active_calls(), 0u);
  EXPECT_EQ(counters_->calls_active.Get(), 0u);
  EXPECT_EQ(counters_->dialogs_active.Get(), 0u);
  EXPECT_EQ(Ended(CallOutcome::kAnswered), static_cast<uint64_t>(kCalls));

  // Timers L, M, J and K (64*T1 at most) run out; nothing may be left after them.
  Advance(40s);
  TakeSent();
  EXPECT_EQ(layer_->size(), 0u);
  EXPECT_EQ(wheel_.size(), 0u);
  EXPECT_EQ(layer_->counters().server_created, static_cast<uint64_t>(2 * kCalls));
  EXPECT_EQ(layer_->counters().client_created, static_cast<uint64_t>(2 * kCalls));
}

}  // namespace
}  // namespace b2bua::engine_test
