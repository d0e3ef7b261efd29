// Tests b2bua/call_engine.{h,cc}: requests inside a call: re-INVITE both ways, INFO, requests still relayed when the call ends. The harness is in call_engine_harness.h.

#include "tests/b2bua/call_engine_harness.h"

namespace b2bua::engine_test {
namespace {

// ---------------------------------------------------------------------------------------
// In-dialog requests.

// A re-INVITE the callee is still ringing on when the call ends is cancelled (an INVITE
// client transaction in Proceeding has no timer of its own) and the caller's gets 487.
TEST_F(CallEngineTest, ReInviteInFlightWhenTheCallEndsIsCancelled) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  Callee bob;
  std::optional<Sent> b = EstablishCall(caller, bob);
  ASSERT_TRUE(b);
  Deliver(caller.InDialog("INVITE", kOfferSdp), caller.peer());
  const uint32_t reinvite_cseq = caller.last_cseq;
  std::vector<Sent> reinvites = RequestsTo(TakeSent(), 5070, Method::kInvite);
  ASSERT_EQ(reinvites.size(), 1u);
  Deliver(bob.Answer(reinvites[0], 100, "Trying"), bob.peer());
  TakeSent();

  Deliver(bob.Bye(*b), bob.peer());
  std::vector<Sent> out = TakeSent();
  std::vector<Sent> cancels = RequestsTo(out, 5070, Method::kCancel);
  ASSERT_EQ(cancels.size(), 1u);
  EXPECT_EQ(cancels[0].cseq(), reinvites[0].cseq());
  EXPECT_EQ(cancels[0].branch(), reinvites[0].branch());
  EXPECT_EQ(cancels[0].to_tag(), bob.tag);
  std::vector<Sent> to_caller = ResponsesTo(out, kCallerPort);
  ASSERT_FALSE(to_caller.empty());
  EXPECT_EQ(to_caller[0].status(), 487);
  EXPECT_EQ(to_caller[0].cseq(), reinvite_cseq);
  EXPECT_EQ(engine_->active_calls(), 0u);
  Advance(70s);  // the callee never answers the CANCEL nor the re-INVITE: 64*T1 gives up
  EXPECT_EQ(layer_->size(), 0u) << "no transaction left waiting";
}

TEST_F(CallEngineTest, ReInviteFromCallerIsRelayedAndAckedEndToEnd) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  Callee bob;
  std::optional<Sent> b = EstablishCall(caller, bob);
  ASSERT_TRUE(b);

  Deliver(caller.InDialog("INVITE", kOfferSdp), caller.peer());
  const uint32_t reinvite_cseq = caller.last_cseq;
  std::vector<Sent> out = TakeSent();
  EXPECT_THAT(Statuses(ResponsesTo(out, kCallerPort)), ElementsAre(100));
  std::vector<Sent> reinvites = RequestsTo(out, 5070, Method::kInvite);
  ASSERT_EQ(reinvites.size(), 1u);
  const Sent& re = reinvites[0];
  EXPECT_EQ(re.request_uri(), bob.ContactUri());
  EXPECT_EQ(re.call_id(), b->call_id());
  EXPECT_EQ(re.from_tag(), b->from_tag());
  EXPECT_EQ(re.to_tag(), bob.tag);
  EXPECT_GT(re.cseq(), b->cseq());
  EXPECT_EQ(re.body(), kOfferSdp);
  EXPECT_EQ(re.Header("Contact"), "<sip:b2bua@127.0.0.1:5060>");

  Deliver(bob.Answer(re, 200, "OK", kAnswerSdp), bob.peer());
  std::vector<Sent> to_caller = ResponsesTo(TakeSent(), kCallerPort);
  ASSERT_EQ(to_caller.size(), 1u);
  EXPECT_EQ(to_caller[0].status(), 200);
  EXPECT_EQ(to_caller[0].cseq(), reinvite_cseq);
  EXPECT_EQ(to_caller[0].to_tag(), caller.to_tag);
  EXPECT_EQ(to_caller[0].body(), kAnswerSdp);
  EXPECT_EQ(to_caller[0].Header("Contact"), "<sip:b2bua@127.0.0.1:5060>");

  Deliver(caller.AckReInvite(reinvite_cseq), caller.peer());
  std::vector<Sent> acks = RequestsTo(TakeSent(), 5070, Method::kAck);
  ASSERT_EQ(acks.size(), 1u);
  EXPECT_EQ(acks[0].cseq(), re.cseq());
  EXPECT_EQ(acks[0].to_tag(), bob.tag);
}

TEST_F(CallEngineTest, ReInviteFromCalleeIsRelayedAndAckedEndToEnd) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  Callee bob;
  std::optional<Sent> b = EstablishCall(caller, bob);
  ASSERT_TRUE(b);

  Deliver(bob.InDialog(*b, "INVITE", kAnswerSdp), bob.peer());
  const uint32_t reinvite_cseq = bob.last_cseq;
  std::vector<Sent> reinvites = RequestsTo(TakeSent(), kCallerPort, Method::kInvite);
  ASSERT_EQ(reinvites.size(), 1u);
  const Sent& re = reinvites[0];
  EXPECT_EQ(re.request_uri(), Caller::kContactUri);
  EXPECT_EQ(re.call_id(), caller.call_id);
  EXPECT_EQ(re.from_tag(), caller.to_tag);
  EXPECT_EQ(re.to_tag(), caller.from_tag);
  EXPECT_EQ(re.body(), kAnswerSdp);

  Deliver(ResponseTo(re, 200, "OK", {},
                     "Contact: <" + std::string(Caller::kContactUri) + ">\r\n", kOfferSdp),
          caller.peer());
  std::vector<Sent> to_bob = ResponsesTo(TakeSent(), 5070);
  ASSERT_EQ(to_bob.size(), 1u);
  EXPECT_EQ(to_bob[0].status(), 200);
  EXPECT_EQ(to_bob[0].cseq(), reinvite_cseq);
  EXPECT_EQ(to_bob[0].body(), kOfferSdp);

  Deliver(bob.AckReInvite(*b, reinvite_cseq), bob.peer());
  std::vector<Sent> acks = RequestsTo(TakeSent(), kCallerPort, Method::kAck);
  ASSERT_EQ(acks.size(), 1u);
  EXPECT_EQ(acks[0].cseq(), re.cseq());
  EXPECT_EQ(acks[0].call_id(), caller.call_id);
}

// RFC 3261 13.3.1.4 / RFC 6026: the 2xx to any INVITE, re-INVITEs included, is the TU's to
// retransmit until the ACK; the transaction layer only absorbs the INVITE retransmissions.
TEST_F(CallEngineEdgeTest, ReInvite2xxToCallerIsRetransmittedUntilAck) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  Callee bob;
  std::optional<Sent> b = EstablishCall(caller, bob);
  ASSERT_TRUE(b);
  Deliver(caller.InDialog("INVITE", kOfferSdp), caller.peer());
  std::vector<Sent> reinvites = RequestsTo(TakeSent(), 5070, Method::kInvite);
  ASSERT_EQ(reinvites.size(), 1u);
  Deliver(bob.Answer(reinvites[0], 200, "OK", kAnswerSdp), bob.peer());
  ASSERT_EQ(WithStatus(ResponsesTo(TakeSent(), kCallerPort), 200).size(), 1u);
  Advance(600ms);
  EXPECT_EQ(WithStatus(ResponsesTo(TakeSent(), kCallerPort), 200).size(), 1u)
      << "the 2xx to the re-INVITE is re-sent after T1";
}

TEST_F(CallEngineTest, InfoIsRelayedBothWays) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  Callee bob;
  std::optional<Sent> b = EstablishCall(caller, bob);
  ASSERT_TRUE(b);

  Deliver(caller.InDialog("INFO"), caller.peer());
  const uint32_t info_cseq = caller.last_cseq;
  std::vector<Sent> infos = RequestsTo(TakeSent(), 5070, Method::kInfo);
  ASSERT_EQ(infos.size(), 1u);
  EXPECT_EQ(infos[0].call_id(), b->call_id());
  EXPECT_EQ(infos[0].to_tag(), bob.tag);
  Deliver(bob.Ok(infos[0]), bob.peer());
  std::vector<Sent> to_caller = ResponsesTo(TakeSent(), kCallerPort);
  ASSERT_EQ(to_caller.size(), 1u);
  EXPECT_EQ(to_caller[0].status(), 200);
  EXPECT_EQ(to_caller[0].cseq(), info_cseq);
  EXPECT_EQ(to_caller[0].cseq_method(), "INFO");

  Deliver(bob.InDialog(*b, "INFO"), bob.peer());
  infos = RequestsTo(TakeSent(), kCallerPort, Method::kInfo);
  ASSERT_EQ(infos.size(), 1u);
  EXPECT_EQ(infos[0].call_id(), caller.call_id);
  Deliver(ResponseTo(infos[0], 200, "OK", {}), caller.peer());
  std::vector<Sent> to_bob = ResponsesTo(TakeSent(), 5070);
  ASSERT_EQ(to_bob.size(), 1u);
  EXPECT_EQ(to_bob[0].status(), 200);
  EXPECT_EQ(to_bob[0].cseq(), bob.last_cseq);
}

// RFC 3261 15.1.2: when the call ends, a request still waiting for the other leg's
// answer gets 487, so its server transaction does not wait forever.
TEST_F(CallEngineTest, RequestStillRelayedWhenTheCallEndsGets487) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  Callee bob;
  std::optional<Sent> b = EstablishCall(caller, bob);
  ASSERT_TRUE(b);
  Deliver(bob.InDialog(*b, "INFO"), bob.peer());
  const uint32_t info_cseq = bob.last_cseq;
  ASSERT_EQ(RequestsTo(TakeSent(), kCallerPort, Method::kInfo).size(), 1u);
  // The caller never answers the INFO and hangs up.
  Deliver(caller.Bye(), caller.peer());
  std::vector<Sent> to_bob = ResponsesTo(TakeSent(), 5070);
  ASSERT_EQ(to_bob.size(), 1u);
  EXPECT_EQ(to_bob[0].status(), 487);
  EXPECT_EQ(to_bob[0].cseq(), info_cseq);
  EXPECT_EQ(to_bob[0].cseq_method(), "INFO");
  EXPECT_EQ(engine_->active_calls(), 0u);
  Advance(40s);
  EXPECT_EQ(layer_->size(), 0u) << "no transaction left waiting";
}

// The caller may send in-dialog requests as soon as it has the 2xx; its ACK still carries
// the INVITE's CSeq (RFC 3261 13.2.2.4) and must still confirm the call.
TEST_F(CallEngineTest, AckAfterAnInDialogRequestStillConfirmsTheCall) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  Callee bob;
  std::optional<Sent> b = Invite(caller);
  ASSERT_TRUE(b);
  Deliver(bob.Answer(*b, 200, "OK", kAnswerSdp), bob.peer());
  std::vector<Sent> oks = WithStatus(ResponsesTo(TakeSent(), kCallerPort), 200);
  ASSERT_EQ(oks.size(), 1u);
  caller.to_tag = oks[0].to_tag();

  Deliver(caller.InDialog("INFO"), caller.peer());
  std::vector<Sent> infos = RequestsTo(TakeSent(), 5070, Method::kInfo);
  ASSERT_EQ(infos.size(), 1u);
  Deliver(bob.Ok(infos[0]), bob.peer());
  TakeSent();

  Deliver(caller.Ack2xx(), caller.peer());
  std::vector<Sent> acks = RequestsTo(TakeSent(), 5070, Method::kAck);
  ASSERT_EQ(acks.size(), 1u);
  EXPECT_EQ(acks[0].cseq(), b->cseq());
  Advance(10s);
  EXPECT_THAT(ResponsesTo(TakeSent(), kCallerPort), IsEmpty()) << "2xx retransmissions stopped";
}

}  // namespace
}  // namespace b2bua::engine_test
