// Tests b2bua/call_engine.{h,cc}: 3xx redirects followed for the caller: target order, loops, depth, relay mode, 305, Diversion, the 301 cache shared by the shards, the application's redirect policy. The harness is in call_engine_harness.h.

#include "tests/b2bua/call_engine_harness.h"

namespace b2bua::engine_test {
namespace {

// ---------------------------------------------------------------------------------------
// Redirects.

constexpr std::string_view kThreeContacts =
    "Contact: <sip:t1@127.0.0.1:5071>;q=0.2\r\n"
    "Contact: <sip:t2@127.0.0.1:5072>;q=1.0, <sip:t3@127.0.0.1:5073>;q=0.5\r\n";

TEST_F(CallEngineTest, RedirectIsFollowedInQOrderUntilATargetAnswers) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  Callee bob;
  Callee t1{5071, "t1", "tag1"};
  Callee t2{5072, "t2", "tag2"};
  Callee t3{5073, "t3", "tag3"};
  std::optional<Sent> first = Invite(caller);
  ASSERT_TRUE(first);

  Deliver(bob.Redirect(*first, 302, kThreeContacts), bob.peer());
  std::vector<Sent> out = TakeSent();
  EXPECT_EQ(RequestsTo(out, 5070, Method::kAck).size(), 1u) << "the 302 is ACKed";
  std::vector<Sent> to_caller = ResponsesTo(out, kCallerPort);
  ASSERT_EQ(to_caller.size(), 1u) << "the 3xx is not relayed";
  EXPECT_EQ(to_caller[0].status(), 181);
  const std::string a_tag = to_caller[0].to_tag();
  EXPECT_FALSE(a_tag.empty());
  EXPECT_THAT(RequestsTo(out, 5071, Method::kInvite), IsEmpty());
  EXPECT_THAT(RequestsTo(out, 5073, Method::kInvite), IsEmpty());
  std::vector<Sent> to_t2 = RequestsTo(out, 5072, Method::kInvite);
  ASSERT_EQ(to_t2.size(), 1u) << "highest q first";
  ExpectRetryOf(*first, to_t2[0], "sip:t2@127.0.0.1:5072");
  EXPECT_EQ(to_t2[0].body(), kOfferSdp);
  EXPECT_EQ(to_t2[0].msg().max_forwards(), caller.max_forwards - 2);
  std::string history = to_t2[0].Header("History-Info");
  EXPECT_THAT(history, HasSubstr(caller.request_uri));
  EXPECT_THAT(history, HasSubstr("sip:t2@127.0.0.1:5072"));
  EXPECT_THAT(history, HasSubstr("rc=302"));

  Deliver(t2.Answer(to_t2[0], 503, "Service Unavailable"), t2.peer());
  out = TakeSent();
  EXPECT_THAT(ResponsesTo(out, kCallerPort), IsEmpty());
  std::vector<Sent> to_t3 = RequestsTo(out, 5073, Method::kInvite);
  ASSERT_EQ(to_t3.size(), 1u);
  ExpectRetryOf(to_t2[0], to_t3[0], "sip:t3@127.0.0.1:5073");
  EXPECT_THAT(to_t3[0].Header("History-Info"), HasSubstr("sip:t3@127.0.0.1:5073"));

  Deliver(t3.Answer(to_t3[0], 486, "Busy Here"), t3.peer());
  out = TakeSent();
  EXPECT_THAT(ResponsesTo(out, kCallerPort), IsEmpty());
  std::vector<Sent> to_t1 = RequestsTo(out, 5071, Method::kInvite);
  ASSERT_EQ(to_t1.size(), 1u);
  ExpectRetryOf(to_t3[0], to_t1[0], "sip:t1@127.0.0.1:5071");
  EXPECT_THAT(to_t1[0].Header("History-Info"), HasSubstr("sip:t1@127.0.0.1:5071"));

  Deliver(t1.Answer(to_t1[0], 200, "OK", kAnswerSdp), t1.peer());
  to_caller = ResponsesTo(TakeSent(), kCallerPort);
  ASSERT_EQ(to_caller.size(), 1u);
  EXPECT_EQ(to_caller[0].status(), 200);
  EXPECT_EQ(to_caller[0].body(), kAnswerSdp);
  EXPECT_EQ(to_caller[0].to_tag(), a_tag);
  caller.to_tag = a_tag;
  Deliver(caller.Ack2xx(), caller.peer());
  std::vector<Sent> acks = RequestsTo(TakeSent(), 5071, Method::kAck);
  ASSERT_EQ(acks.size(), 1u);
  EXPECT_EQ(acks[0].cseq(), to_t1[0].cseq());

  EXPECT_EQ(RedirectsReceived(RedirectCode::k302), 1u);
  EXPECT_EQ(Targets(TargetOutcome::kFailed), 2u);
  EXPECT_EQ(Targets(TargetOutcome::kAnswered), 1u);
  EXPECT_EQ(counters_->redirects_sent.Get(), 0u);

  // The call record lists every hop in the order tried, with q, state and status.
  EXPECT_THAT(records_.lines, IsEmpty()) << "written when the call ends, not before";
  caller.to_tag = a_tag;
  Deliver(caller.Bye(), caller.peer());
  ASSERT_EQ(records_.lines.size(), 1u);
  const std::string& line = records_.lines[0];
  EXPECT_THAT(line, HasSubstr("outcome=answered"));
  EXPECT_THAT(line, HasSubstr("depth=1"));
  const size_t hop_t2 = line.find("{target=\"sip:t2@127.0.0.1:5072\" q=1.000 state=failed status=503");
  const size_t hop_t3 = line.find("{target=\"sip:t3@127.0.0.1:5073\" q=0.500 state=failed status=486");
  const size_t hop_t1 = line.find("{target=\"sip:t1@127.0.0.1:5071\" q=0.200 state=answered status=200");
  ASSERT_NE(hop_t2, std::string::npos) << line;
  ASSERT_NE(hop_t3, std::string::npos) << line;
  ASSERT_NE(hop_t1, std::string::npos) << line;
  EXPECT_LT(hop_t2, hop_t3);
  EXPECT_LT(hop_t3, hop_t1);
}

// RFC 3261 12.1.1: a provisional response with a To tag creates an early dialog, so the
// 181 the B2BUA makes up must carry a Contact like the 180 it relays does.
TEST_F(CallEngineEdgeTest, CallIsBeingForwarded181CarriesContact) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  Callee bob;
  std::optional<Sent> first = Invite(caller);
  ASSERT_TRUE(first);
  Deliver(bob.Redirect(*first, 302, "Contact: <sip:t2@127.0.0.1:5072>\r\n"), bob.peer());
  std::vector<Sent> to_caller = ResponsesTo(TakeSent(), kCallerPort);
  ASSERT_EQ(to_caller.size(), 1u);
  EXPECT_EQ(to_caller[0].status(), 181);
  EXPECT_FALSE(to_caller[0].to_tag().empty());
  EXPECT_EQ(to_caller[0].Header("Contact"), "<sip:b2bua@127.0.0.1:5060>");
}

TEST_F(CallEngineTest, RedirectBackToTheFirstCalleeIsALoopAnswered482) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  Callee bob;
  Callee t1{5071, "t1", "tag1"};
  std::optional<Sent> first = Invite(caller);
  ASSERT_TRUE(first);
  Deliver(bob.Redirect(*first, 302, "Contact: <sip:t1@127.0.0.1:5071>\r\n"), bob.peer());
  std::vector<Sent> to_t1 = RequestsTo(TakeSent(), 5071, Method::kInvite);
  ASSERT_EQ(to_t1.size(), 1u);

  Deliver(t1.Redirect(to_t1[0], 302, "Contact: <sip:bob@127.0.0.1:5070>\r\n"), t1.peer());
  std::vector<Sent> out = TakeSent();
  EXPECT_THAT(RequestsTo(out, 5070, Method::kInvite), IsEmpty()) << "never back to bob";
  std::vector<Sent> to_caller = ResponsesTo(out, kCallerPort);
  ASSERT_EQ(to_caller.size(), 1u);
  EXPECT_EQ(to_caller[0].status(), 482);
  EXPECT_THAT(to_caller[0].Header("Reason"), HasSubstr("cause=482"));
  EXPECT_GT(counters_->redirect_loops_detected.Get(), 0u);
  EXPECT_EQ(Failures(RedirectFailure::kLoop), 1u);
  EXPECT_EQ(Targets(TargetOutcome::kSkippedAsLoop), 1u);
  EXPECT_EQ(Ended(CallOutcome::kRedirectFailed), 1u);
  EXPECT_EQ(engine_->active_calls(), 0u);
  // A call that never got up writes its record from the live search.
  ASSERT_EQ(records_.lines.size(), 1u);
  EXPECT_THAT(records_.lines[0], HasSubstr("outcome=redirect_failed"));
  EXPECT_THAT(records_.lines[0], HasSubstr("depth=2 loops=1"));
  EXPECT_THAT(records_.lines[0],
              HasSubstr("{target=\"sip:t1@127.0.0.1:5071\" q=1.000 state=redirected status=302"));
}

TEST_F(CallEngineTest, ContactNamingTheB2buaItselfIsNeverTried) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  Callee bob;
  std::optional<Sent> first = Invite(caller);
  ASSERT_TRUE(first);
  // Both name 127.0.0.1:5060 (the second through the default port).
  Deliver(bob.Redirect(*first, 302,
                       "Contact: <sip:b2bua@127.0.0.1:5060>, <sip:anyone@127.0.0.1>\r\n"),
          bob.peer());
  std::vector<Sent> out = TakeSent();
  for (const Sent& s : out) EXPECT_NE(s.port(), kB2buaPort) << s.bytes();
  EXPECT_THAT(RequestsOf(out, Method::kInvite), IsEmpty());
  std::vector<Sent> finals = WithStatus(ResponsesTo(out, kCallerPort), 482);
  ASSERT_EQ(finals.size(), 1u);
  EXPECT_THAT(finals[0].Header("Reason"), HasSubstr("482"));
  EXPECT_EQ(Targets(TargetOutcome::kSkippedAsLoop), 2u);
  EXPECT_EQ(counters_->redirect_loops_detected.Get(), 2u);
  EXPECT_EQ(Failures(RedirectFailure::kLoop), 1u);
}

TEST_F(CallEngineTest, RedirectDeeperThanMaxDepthAnswers483) {
  ASSERT_NO_FATAL_FAILURE(Start("redirect: {max_depth: 1}\n"));
  Caller caller;
  Callee bob;
  Callee t1{5071, "t1", "tag1"};
  std::optional<Sent> first = Invite(caller);
  ASSERT_TRUE(first);
  Deliver(bob.Redirect(*first, 302, "Contact: <sip:t1@127.0.0.1:5071>\r\n"), bob.peer());
  std::vector<Sent> to_t1 = RequestsTo(TakeSent(), 5071, Method::kInvite);
  ASSERT_EQ(to_t1.size(), 1u);

  Deliver(t1.Redirect(to_t1[0], 302, "Contact: <sip:t2@127.0.0.1:5072>\r\n"), t1.peer());
  std::vector<Sent> out = TakeSent();
  EXPECT_THAT(RequestsTo(out, 5072, Method::kInvite), IsEmpty());
  std::vector<Sent> finals = WithStatus(ResponsesTo(out, kCallerPort), 483);
  ASSERT_EQ(finals.size(), 1u);
  EXPECT_EQ(Failures(RedirectFailure::kDepth), 1u);
  EXPECT_EQ(engine_->active_calls(), 0u);
}

TEST_F(CallEngineTest, RelayModeHandsTheCallerThe3xxContactsByteForByte) {
  ASSERT_NO_FATAL_FAILURE(Start("redirect: {mode: relay}\n"));
  Caller caller;
  Callee bob;
  std::optional<Sent> first = Invite(caller);
  ASSERT_TRUE(first);
  Deliver(bob.Redirect(*first, 302, kThreeContacts), bob.peer());
  std::vector<Sent> out = TakeSent();
  EXPECT_EQ(RequestsOf(out, Method::kInvite).size(), 0u);
  std::vector<Sent> to_caller = ResponsesTo(out, kCallerPort);
  ASSERT_EQ(to_caller.size(), 1u) << "no 181 either";
  EXPECT_EQ(to_caller[0].status(), 302);
  EXPECT_THAT(to_caller[0].bytes(), HasSubstr(std::string(kThreeContacts)));
  EXPECT_THAT(to_caller[0].Headers("Contact"),
              ElementsAre("<sip:t1@127.0.0.1:5071>;q=0.2",
                          "<sip:t2@127.0.0.1:5072>;q=1.0, <sip:t3@127.0.0.1:5073>;q=0.5"));
  EXPECT_EQ(to_caller[0].call_id(), caller.call_id);
  EXPECT_EQ(counters_->redirects_sent.Get(), 1u);
  EXPECT_EQ(Ended(CallOutcome::kRedirectSent), 1u);
  EXPECT_EQ(engine_->active_calls(), 0u);
}

// RFC 3261 8.1.3.4 / 21.3.6: a 305's Contact is the proxy to reach the same target
// through; the Request-URI stays the caller's and the proxy becomes a loose Route.
TEST_F(CallEngineTest, UseProxy305RetriesTheSameTargetThroughTheProxy) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  Callee bob;
  std::optional<Sent> first = Invite(caller);
  ASSERT_TRUE(first);
  Deliver(bob.Redirect(*first, 305, "Contact: <sip:proxy@127.0.0.1:5075>\r\n"), bob.peer());
  std::vector<Sent> via_proxy = RequestsTo(TakeSent(), 5075, Method::kInvite);
  ASSERT_EQ(via_proxy.size(), 1u) << "the retry goes to the proxy";
  EXPECT_EQ(via_proxy[0].request_uri(), caller.request_uri) << "not to a new target";
  EXPECT_EQ(via_proxy[0].Header("Route"), "<sip:proxy@127.0.0.1:5075;lr>");
  EXPECT_EQ(via_proxy[0].call_id(), first->call_id()) << "same B-leg Call-ID";
  EXPECT_GT(via_proxy[0].cseq(), first->cseq());
  EXPECT_EQ(RedirectsReceived(RedirectCode::k305), 1u);
}

// RFC 5806: with `diversion: true` (and History-Info off) each retargeted INVITE names
// the original target in a Diversion header.
TEST_F(CallEngineTest, DiversionNamesTheOriginalTargetWhenConfigured) {
  ASSERT_NO_FATAL_FAILURE(Start("redirect: {diversion: true, history_info: false}\n"));
  Caller caller;
  Callee bob;
  std::optional<Sent> first = Invite(caller);
  ASSERT_TRUE(first);
  Deliver(bob.Redirect(*first, 302, "Contact: <sip:t2@127.0.0.1:5072>\r\n"), bob.peer());
  std::vector<Sent> retry = RequestsTo(TakeSent(), 5072, Method::kInvite);
  ASSERT_EQ(retry.size(), 1u);
  EXPECT_EQ(retry[0].Header("Diversion"), "<" + caller.request_uri + ">;reason=unconditional");
  EXPECT_EQ(retry[0].Header("History-Info"), "") << "History-Info is off";
}

// In a chain each retry is diverted from the target that redirected it, and a 305 met
// deep in the chain re-sends that target's own Request-URI through the proxy.
TEST_F(CallEngineTest, DiversionAndUseProxyFollowTheTargetThatRedirected) {
  ASSERT_NO_FATAL_FAILURE(Start("redirect: {diversion: true}\n"));
  Caller caller;
  Callee bob;
  Callee t1{5071, "t1", "tag1"};
  Callee t2{5072, "t2", "tag2"};
  std::optional<Sent> first = Invite(caller);
  ASSERT_TRUE(first);
  Deliver(bob.Redirect(*first, 302, "Contact: <sip:t1@127.0.0.1:5071>\r\n"), bob.peer());
  std::vector<Sent> to_t1 = RequestsTo(TakeSent(), 5071, Method::kInvite);
  ASSERT_EQ(to_t1.size(), 1u);
  EXPECT_EQ(to_t1[0].Header("Diversion"), "<" + caller.request_uri + ">;reason=unconditional");

  Deliver(t1.Redirect(to_t1[0], 302, "Contact: <sip:t2@127.0.0.1:5072>\r\n"), t1.peer());
  std::vector<Sent> to_t2 = RequestsTo(TakeSent(), 5072, Method::kInvite);
  ASSERT_EQ(to_t2.size(), 1u);
  EXPECT_EQ(to_t2[0].Header("Diversion"), "<sip:t1@127.0.0.1:5071>;reason=unconditional");
  EXPECT_THAT(to_t2[0].Header("History-Info"),
              StartsWith("<" + caller.request_uri + ">;index=1, <sip:t1@127.0.0.1:5071>"));

  Deliver(t2.Redirect(to_t2[0], 305, "Contact: <sip:proxy@127.0.0.1:5075>\r\n"), t2.peer());
  std::vector<Sent> via_proxy = RequestsTo(TakeSent(), 5075, Method::kInvite);
  ASSERT_EQ(via_proxy.size(), 1u);
  EXPECT_EQ(via_proxy[0].request_uri(), "sip:t2@127.0.0.1:5072") << "t2's request, again";
  EXPECT_EQ(via_proxy[0].Header("Route"), "<sip:proxy@127.0.0.1:5075;lr>");
}

TEST_F(CallEngineTest, TargetInADeniedCidrIsRefusedAndNeverInvited) {
  ASSERT_NO_FATAL_FAILURE(Start(R"yaml(redirect: {deny: {cidrs: ["127.0.0.99/32"]}})yaml"));
  Caller caller;
  Callee bob;
  Callee t2{5072, "t2", "tag2"};
  std::optional<Sent> first = Invite(caller);
  ASSERT_TRUE(first);
  Deliver(bob.Redirect(*first, 302,
                       "Contact: <sip:evil@127.0.0.99:5070>;q=1.0\r\n"
                       "Contact: <sip:t2@127.0.0.1:5072>;q=0.5\r\n"),
          bob.peer());
  std::vector<Sent> out = TakeSent();
  for (const Sent& s : out) EXPECT_NE(s.ip(), "127.0.0.99") << s.bytes();
  EXPECT_EQ(Targets(TargetOutcome::kRefusedByPolicy), 1u);
  std::vector<Sent> to_t2 = RequestsTo(out, 5072, Method::kInvite);
  ASSERT_EQ(to_t2.size(), 1u);
  EXPECT_EQ(to_t2[0].ip(), "127.0.0.1");

  Deliver(t2.Answer(to_t2[0], 200, "OK", kAnswerSdp), t2.peer());
  EXPECT_THAT(Statuses(ResponsesTo(TakeSent(), kCallerPort)), ElementsAre(200));
}

TEST_F(CallEngineTest, OnlyDeniedTargetsAnswer403) {
  ASSERT_NO_FATAL_FAILURE(Start(R"yaml(redirect: {deny: {cidrs: ["127.0.0.99/32"]}})yaml"));
  Caller caller;
  Callee bob;
  std::optional<Sent> first = Invite(caller);
  ASSERT_TRUE(first);
  Deliver(bob.Redirect(*first, 302, "Contact: <sip:evil@127.0.0.99:5070>\r\n"), bob.peer());
  std::vector<Sent> out = TakeSent();
  for (const Sent& s : out) EXPECT_NE(s.ip(), "127.0.0.99") << s.bytes();
  std::vector<Sent> finals = WithStatus(ResponsesTo(out, kCallerPort), 403);
  ASSERT_EQ(finals.size(), 1u);
  EXPECT_THAT(finals[0].Header("Reason"), HasSubstr("403"));
  EXPECT_EQ(Failures(RedirectFailure::kAllRefused), 1u);
  EXPECT_EQ(engine_->active_calls(), 0u);
}

TEST_F(CallEngineEdgeTest, Permanent301IsCachedForTheNextCallToTheSameUri) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Callee bob;
  Callee t2{5072, "t2", "tag2"};
  {
    Caller first_caller;
    std::optional<Sent> first = Invite(first_caller);
    ASSERT_TRUE(first);
    Deliver(bob.Redirect(*first, 301, "Contact: <sip:t2@127.0.0.1:5072>\r\n"), bob.peer());
    std::vector<Sent> to_t2 = RequestsTo(TakeSent(), 5072, Method::kInvite);
    ASSERT_EQ(to_t2.size(), 1u);
    Deliver(t2.Answer(to_t2[0], 200, "OK", kAnswerSdp), t2.peer());
    std::vector<Sent> oks = WithStatus(ResponsesTo(TakeSent(), kCallerPort), 200);
    ASSERT_EQ(oks.size(), 1u);
    first_caller.to_tag = oks[0].to_tag();
    Deliver(first_caller.Ack2xx(), first_caller.peer());
    Deliver(first_caller.Bye(), first_caller.peer());
    std::vector<Sent> byes = RequestsTo(TakeSent(), 5072, Method::kBye);
    ASSERT_EQ(byes.size(), 1u);
    Deliver(t2.Ok(byes[0]), t2.peer());
    ASSERT_EQ(engine_->active_calls(), 0u);
    EXPECT_EQ(RedirectsReceived(RedirectCode::k301), 1u);
  }

  Caller second_caller;
  second_caller.call_id = "second-call@pc33.atlanta.example.com";
  second_caller.from_tag = "77aa";
  second_caller.branch = "z9hG4bKsecond";
  Deliver(second_caller.Invite(), second_caller.peer());
  std::vector<Sent> out = TakeSent();
  EXPECT_THAT(RequestsTo(out, 5070, Method::kInvite), IsEmpty()) << "bob moved permanently";
  std::vector<Sent> to_t2 = RequestsTo(out, 5072, Method::kInvite);
  ASSERT_EQ(to_t2.size(), 1u);
  EXPECT_EQ(to_t2[0].request_uri(), "sip:t2@127.0.0.1:5072");
  EXPECT_EQ(counters_->redirect_cache_hits.Get(), 1u);
}

TEST_F(CallEngineTest, TargetThatOnlyRingsIsCancelledAfterTargetTimeout) {
  ASSERT_NO_FATAL_FAILURE(Start("redirect: {target_timeout: 2s}\n"));
  Caller caller;
  Callee bob;
  Callee t1{5071, "t1", "tag1"};
  Callee t2{5072, "t2", "tag2"};
  std::optional<Sent> first = Invite(caller);
  ASSERT_TRUE(first);
  Deliver(bob.Redirect(*first, 302,
                       "Contact: <sip:t1@127.0.0.1:5071>;q=1.0, <sip:t2@127.0.0.1:5072>;q=0.5\r\n"),
          bob.peer());
  std::vector<Sent> to_t1 = RequestsTo(TakeSent(), 5071, Method::kInvite);
  ASSERT_EQ(to_t1.size(), 1u);
  Deliver(t1.Answer(to_t1[0], 180, "Ringing"), t1.peer());
  EXPECT_THAT(Statuses(ResponsesTo(TakeSent(), kCallerPort)), ElementsAre(180));

  Advance(1900ms);
  EXPECT_THAT(TakeSent(), IsEmpty());
  Advance(200ms);
  std::vector<Sent> out = TakeSent();
  std::vector<Sent> cancels = RequestsTo(out, 5071, Method::kCancel);
  ASSERT_EQ(cancels.size(), 1u);
  EXPECT_EQ(cancels[0].branch(), to_t1[0].branch());
  EXPECT_EQ(cancels[0].cseq(), to_t1[0].cseq());
  EXPECT_EQ(cancels[0].request_uri(), to_t1[0].request_uri());
  std::vector<Sent> to_t2 = RequestsTo(out, 5072, Method::kInvite);
  ASSERT_EQ(to_t2.size(), 1u);
  ExpectRetryOf(to_t1[0], to_t2[0], "sip:t2@127.0.0.1:5072");
  EXPECT_EQ(Targets(TargetOutcome::kTimeout), 1u);
  EXPECT_THAT(ResponsesTo(out, kCallerPort), IsEmpty());

  Deliver(t1.Ok(cancels[0]), t1.peer());
  Deliver(t1.Answer(to_t1[0], 487, "Request Terminated"), t1.peer());
  out = TakeSent();
  EXPECT_EQ(RequestsTo(out, 5071, Method::kAck).size(), 1u);
  EXPECT_THAT(ResponsesTo(out, kCallerPort), IsEmpty()) << "t1's 487 is not the caller's";

  Deliver(t2.Answer(to_t2[0], 200, "OK", kAnswerSdp), t2.peer());
  EXPECT_THAT(Statuses(ResponsesTo(TakeSent(), kCallerPort)), ElementsAre(200));
  EXPECT_EQ(Targets(TargetOutcome::kAnswered), 1u);
}

// A target given up on (per-target timeout) may answer 2xx before our CANCEL reaches it.
// RFC 3261 15 / 9.1: the UAC must still ACK that 2xx and then end the dialog with BYE,
// otherwise the callee believes it is in a call nobody will ever hang up.
TEST_F(CallEngineEdgeTest, LateAnswerFromATimedOutTargetIsAckedAndReleased) {
  ASSERT_NO_FATAL_FAILURE(Start("redirect: {target_timeout: 2s}\n"));
  Caller caller;
  Callee bob;
  Callee t1{5071, "t1", "tag1"};
  std::optional<Sent> first = Invite(caller);
  ASSERT_TRUE(first);
  Deliver(bob.Redirect(*first, 302,
                       "Contact: <sip:t1@127.0.0.1:5071>;q=1.0, <sip:t2@127.0.0.1:5072>;q=0.5\r\n"),
          bob.peer());
  std::vector<Sent> to_t1 = RequestsTo(TakeSent(), 5071, Method::kInvite);
  ASSERT_EQ(to_t1.size(), 1u);
  Deliver(t1.Answer(to_t1[0], 180, "Ringing"), t1.peer());
  Advance(2100ms);
  std::vector<Sent> out = TakeSent();
  ASSERT_EQ(RequestsTo(out, 5071, Method::kCancel).size(), 1u);
  ASSERT_EQ(RequestsTo(out, 5072, Method::kInvite).size(), 1u);

  Deliver(t1.Answer(to_t1[0], 200, "OK", kAnswerSdp), t1.peer());
  out = TakeSent();
  EXPECT_THAT(ResponsesTo(out, kCallerPort), IsEmpty()) << "the caller is not bridged to t1";
  EXPECT_EQ(RequestsTo(out, 5071, Method::kAck).size(), 1u) << "the 2xx must be ACKed";
  EXPECT_EQ(RequestsTo(out, 5071, Method::kBye).size(), 1u) << "and the dialog released";
}

TEST_F(CallEngineTest, RouteWithRedirectActionAnswers302WithTheConfiguredContacts) {
  ASSERT_NO_FATAL_FAILURE(Start(R"yaml(
routes:
  - prefix: "800"
    action: redirect
    redirect_code: 302
    contacts: ["<sip:1001@127.0.0.1:5071>;q=0.9", "<sip:1002@127.0.0.1:5072>;q=0.5"]
)yaml"));
  Caller caller;
  caller.request_uri = "sip:8001234@b2bua.example.net";
  Deliver(caller.Invite(), caller.peer());
  std::vector<Sent> out = TakeSent();
  EXPECT_THAT(RequestsOf(out, Method::kInvite), IsEmpty());
  std::vector<Sent> finals = WithStatus(ResponsesTo(out, kCallerPort), 302);
  ASSERT_EQ(finals.size(), 1u);
  EXPECT_THAT(finals[0].Headers("Contact"),
              ElementsAre("<sip:1001@127.0.0.1:5071>;q=0.9", "<sip:1002@127.0.0.1:5072>;q=0.5"));
  EXPECT_FALSE(finals[0].to_tag().empty());
  EXPECT_EQ(counters_->redirects_sent.Get(), 1u);
  EXPECT_EQ(Ended(CallOutcome::kRedirectSent), 1u);
  EXPECT_EQ(engine_->active_calls(), 0u);

  caller.to_tag = finals[0].to_tag();
  Deliver(caller.AckFailure(), caller.peer());
  EXPECT_THAT(TakeSent(), IsEmpty()) << "the ACK of the 302 ends its transaction";
}

// Every redirect hop draws on the caller's Max-Forwards budget: 3 at the caller leaves 2
// for the first callee, 1 after one redirect, 0 after two.
TEST_F(CallEngineTest, RedirectChainConsumesTheCallersMaxForwards) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  caller.max_forwards = 3;
  Callee bob;
  Callee t1{5071, "t1", "tag1"};
  Callee t2{5072, "t2", "tag2"};
  std::optional<Sent> first = Invite(caller);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->msg().max_forwards(), 2);

  Deliver(bob.Redirect(*first, 302, "Contact: <sip:t1@127.0.0.1:5071>\r\n"), bob.peer());
  std::vector<Sent> to_t1 = RequestsTo(TakeSent(), 5071, Method::kInvite);
  ASSERT_EQ(to_t1.size(), 1u);
  EXPECT_EQ(to_t1[0].msg().max_forwards(), 1);

  Deliver(t1.Redirect(to_t1[0], 302, "Contact: <sip:t2@127.0.0.1:5072>\r\n"), t1.peer());
  std::vector<Sent> to_t2 = RequestsTo(TakeSent(), 5072, Method::kInvite);
  ASSERT_EQ(to_t2.size(), 1u);
  EXPECT_EQ(to_t2[0].msg().max_forwards(), 0);

  // No budget left: the next target is never sent a request.
  Deliver(t2.Redirect(to_t2[0], 302, "Contact: <sip:t3@127.0.0.1:5073>\r\n"), t2.peer());
  std::vector<Sent> out = TakeSent();
  EXPECT_THAT(RequestsTo(out, 5073, Method::kInvite), IsEmpty());
  for (const Sent& s : RequestsOf(out, Method::kInvite)) EXPECT_GE(s.msg().max_forwards(), 0);
  EXPECT_EQ(WithStatus(ResponsesTo(out, kCallerPort), 200).size(), 0u);
  EXPECT_EQ(engine_->active_calls(), 0u) << "the call ended with a final answer";
}

// When the budget is what stops the search, the caller should learn that with 483 Too Many
// Hops (RFC 3261 16.3 / 8.2.2 semantics), as for max_depth, not with a generic 480.
TEST_F(CallEngineEdgeTest, ExhaustedMaxForwardsBudgetAnswers483) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  caller.max_forwards = 2;
  Callee bob;
  Callee t1{5071, "t1", "tag1"};
  std::optional<Sent> first = Invite(caller);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->msg().max_forwards(), 1);
  Deliver(bob.Redirect(*first, 302, "Contact: <sip:t1@127.0.0.1:5071>\r\n"), bob.peer());
  std::vector<Sent> to_t1 = RequestsTo(TakeSent(), 5071, Method::kInvite);
  ASSERT_EQ(to_t1.size(), 1u);
  EXPECT_EQ(to_t1[0].msg().max_forwards(), 0);
  Deliver(t1.Redirect(to_t1[0], 302, "Contact: <sip:t2@127.0.0.1:5072>\r\n"), t1.peer());
  std::vector<Sent> out = TakeSent();
  EXPECT_THAT(RequestsTo(out, 5072, Method::kInvite), IsEmpty());
  std::vector<Sent> finals;
  for (const Sent& s : ResponsesTo(out, kCallerPort))
    if (s.status() >= 200) finals.push_back(s);
  ASSERT_EQ(finals.size(), 1u);
  EXPECT_EQ(finals[0].status(), 483);
}


// ---------------------------------------------------------------------------------------
// The application's redirect policy.

// Parks every target; the test plays the application that decides later.
class ParkingPolicy final : public RedirectPolicy {
 public:
  PolicyDecision Decide(const Target& target, uint64_t call_cookie) override {
    asked.push_back(target.request_uri);
    cookie = call_cookie;
    return PolicyDecision::kPending;
  }
  std::vector<std::string> asked;
  uint64_t cookie = 0;
};

TEST_F(CallEngineTest, ParkedRedirectDecisionResumesTheSearch) {
  ASSERT_NO_FATAL_FAILURE(Start());
  ParkingPolicy policy;
  engine_->SetRedirectPolicy(&policy);
  Caller caller;
  Callee bob;
  Callee t2{5072, "t2", "tag2"};
  std::optional<Sent> first = Invite(caller);
  ASSERT_TRUE(first);
  Deliver(bob.Redirect(*first, 302, "Contact: <sip:t2@127.0.0.1:5072>\r\n"), bob.peer());
  EXPECT_THAT(RequestsOf(TakeSent(), Method::kInvite), IsEmpty());
  EXPECT_THAT(policy.asked, ElementsAre("sip:t2@127.0.0.1:5072"));

  engine_->ResumeRedirect(policy.cookie, PolicyDecision::kAccept);
  std::vector<Sent> to_t2 = RequestsTo(TakeSent(), 5072, Method::kInvite);
  ASSERT_EQ(to_t2.size(), 1u);
  ExpectRetryOf(*first, to_t2[0], "sip:t2@127.0.0.1:5072");
  Deliver(t2.Answer(to_t2[0], 200, "OK", kAnswerSdp), t2.peer());
  EXPECT_THAT(Statuses(ResponsesTo(TakeSent(), kCallerPort)), ElementsAre(200));
}

// The caller gives up while the application is still deciding: the call ends at once, and
// a decision arriving afterwards must not send an INVITE nobody is waiting for.
TEST_F(CallEngineEdgeTest, CancelWhileRedirectDecisionIsPendingEndsTheCall) {
  ASSERT_NO_FATAL_FAILURE(Start());
  ParkingPolicy policy;
  engine_->SetRedirectPolicy(&policy);
  Caller caller;
  Callee bob;
  std::optional<Sent> first = Invite(caller);
  ASSERT_TRUE(first);
  Deliver(bob.Redirect(*first, 302, "Contact: <sip:t2@127.0.0.1:5072>\r\n"), bob.peer());
  TakeSent();
  ASSERT_THAT(policy.asked, ElementsAre("sip:t2@127.0.0.1:5072"));

  Deliver(caller.Cancel(), caller.peer());
  std::vector<Sent> out = TakeSent();
  EXPECT_THAT(Statuses(ResponsesTo(out, kCallerPort)), ElementsAre(200, 487));
  EXPECT_THAT(RequestsOf(out, Method::kCancel), IsEmpty()) << "no INVITE is pending";
  EXPECT_EQ(engine_->active_calls(), 0u) << "nothing left to wait for";

  engine_->ResumeRedirect(policy.cookie, PolicyDecision::kAccept);
  engine_->CollectEndedCalls();
  EXPECT_THAT(RequestsOf(TakeSent(), Method::kInvite), IsEmpty());
  Advance(40s);
  EXPECT_EQ(engine_->active_calls(), 0u);
  EXPECT_EQ(Ended(CallOutcome::kCancelled), 1u);
}


struct RecordedShares final : RedirectShare {
  void SharePermanentRedirect(std::string_view request_uri, std::string_view target,
                              proto::TimePoint expires) override {
    shared.push_back({std::string(request_uri), std::string(target), expires});
  }
  struct Share {
    std::string request_uri;
    std::string target;
    proto::TimePoint expires;
  };
  std::vector<Share> shared;
};

// A 301 learned on this shard goes to the other shards (through RedirectShare), with the
// moment it expires; one they learned sends this shard's next call straight to the target.
TEST_F(CallEngineTest, Permanent301IsSharedWithTheOtherShardsBothWays) {
  RecordedShares shares;
  redirect_share_ = &shares;
  ASSERT_NO_FATAL_FAILURE(Start("redirect: {cache_301: {entries: 10, ttl: 10m}}\n"));
  Caller caller;
  Callee bob;
  std::optional<Sent> invite = Invite(caller);
  ASSERT_TRUE(invite);
  Deliver(bob.Redirect(*invite, 301, "Contact: <sip:t2@127.0.0.1:5072>\r\n"), bob.peer());
  TakeSent();
  ASSERT_EQ(shares.shared.size(), 1u);
  EXPECT_EQ(shares.shared[0].request_uri, caller.request_uri);
  EXPECT_EQ(shares.shared[0].target, "sip:t2@127.0.0.1:5072");
  EXPECT_EQ(shares.shared[0].expires, clock_.Now() + std::chrono::minutes(10));

  // What another shard learned about another number.
  engine_->LearnPermanentRedirect("sip:5559999@b2bua.example.net", "sip:moved@127.0.0.1:5073",
                                  clock_.Now() + std::chrono::minutes(5));
  Caller other;
  other.request_uri = "sip:5559999@b2bua.example.net";
  other.call_id = "shared-301@pc33.atlanta.example.com";
  other.from_tag = "sh301";
  other.branch = "z9hG4bKshared301";
  Deliver(other.Invite(), other.peer());
  std::vector<Sent> out = TakeSent();
  EXPECT_THAT(RequestsTo(out, 5070, Method::kInvite), IsEmpty());
  std::vector<Sent> moved = RequestsTo(out, 5073, Method::kInvite);
  ASSERT_EQ(moved.size(), 1u);
  EXPECT_EQ(moved[0].request_uri(), "sip:moved@127.0.0.1:5073");
  EXPECT_EQ(counters_->redirect_cache_hits.Get(), 1u);
  // Learned from elsewhere, it is not shared again.
  EXPECT_EQ(shares.shared.size(), 1u);
}

}  // namespace
}  // namespace b2bua::engine_test
