// Tests b2bua/call_engine.{h,cc}: final failures and failover across next hops, and next hops and targets named by host (RFC 3263 through TargetResolver). The harness is in call_engine_harness.h.

#include "tests/b2bua/call_engine_harness.h"

namespace b2bua::engine_test {
namespace {

// ---------------------------------------------------------------------------------------
// Final failures and next-hop failover.

TEST_F(CallEngineTest, BusyIsRelayedToTheCaller) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  Callee bob;
  std::optional<Sent> b = Invite(caller);
  ASSERT_TRUE(b);
  Deliver(bob.Answer(*b, 486, "Busy Here"), bob.peer());
  std::vector<Sent> out = TakeSent();
  EXPECT_EQ(RequestsTo(out, 5070, Method::kAck).size(), 1u);
  std::vector<Sent> to_caller = ResponsesTo(out, kCallerPort);
  ASSERT_EQ(to_caller.size(), 1u);
  EXPECT_EQ(to_caller[0].status(), 486);
  EXPECT_EQ(to_caller[0].call_id(), caller.call_id);
  EXPECT_FALSE(to_caller[0].to_tag().empty());
  EXPECT_NE(to_caller[0].to_tag(), bob.tag);
  EXPECT_EQ(Ended(CallOutcome::kRejected), 1u);
  EXPECT_EQ(engine_->active_calls(), 0u);

  caller.to_tag = to_caller[0].to_tag();
  Deliver(caller.AckFailure(), caller.peer());
  EXPECT_THAT(TakeSent(), IsEmpty());
}

TEST_F(CallEngineTest, ServiceUnavailableFromTheOnlyHopEndsTheCall) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  Callee bob;
  std::optional<Sent> b = Invite(caller);
  ASSERT_TRUE(b);
  Deliver(bob.Answer(*b, 503, "Service Unavailable"), bob.peer());
  std::vector<Sent> out = TakeSent();
  std::vector<Sent> to_caller = ResponsesTo(out, kCallerPort);
  ASSERT_EQ(to_caller.size(), 1u);
  // RFC 3261 16.7 would turn a 503 into 500; relaying it is the other accepted choice.
  EXPECT_THAT(to_caller[0].status(), AnyOf(500, 503));
  EXPECT_EQ(RequestsOf(out, Method::kInvite).size(), 0u) << "there is no other hop";
  EXPECT_EQ(engine_->active_calls(), 0u);
  EXPECT_EQ(counters_->calls_active.Get(), 0u);
}

TEST_F(CallEngineTest, RouteFailsOverToTheNextHopOn503) {
  ASSERT_NO_FATAL_FAILURE(Start(R"yaml(
routes:
  - prefix: "555"
    next_hops: ["sip:127.0.0.1:5070", "sip:127.0.0.1:5071"]
)yaml"));
  Caller caller;
  caller.request_uri = "sip:5551234@b2bua.example.net";
  Callee a{5070, "hop-a", "hopa"};
  Callee b{5071, "hop-b", "hopb"};
  std::optional<Sent> first = Invite(caller, 5070);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->request_uri(), caller.request_uri);

  Deliver(a.Answer(*first, 503, "Service Unavailable"), a.peer());
  std::vector<Sent> out = TakeSent();
  EXPECT_EQ(RequestsTo(out, 5070, Method::kAck).size(), 1u);
  EXPECT_THAT(ResponsesTo(out, kCallerPort), IsEmpty());
  std::vector<Sent> second = RequestsTo(out, 5071, Method::kInvite);
  ASSERT_EQ(second.size(), 1u);
  ExpectRetryOf(*first, second[0], caller.request_uri);
  EXPECT_EQ(second[0].body(), kOfferSdp);

  Deliver(b.Answer(second[0], 200, "OK", kAnswerSdp), b.peer());
  std::vector<Sent> to_caller = ResponsesTo(TakeSent(), kCallerPort);
  ASSERT_EQ(to_caller.size(), 1u);
  EXPECT_EQ(to_caller[0].status(), 200);
  EXPECT_EQ(to_caller[0].body(), kAnswerSdp);
  caller.to_tag = to_caller[0].to_tag();
  Deliver(caller.Ack2xx(), caller.peer());
  std::vector<Sent> acks = RequestsTo(TakeSent(), 5071, Method::kAck);
  ASSERT_EQ(acks.size(), 1u);
  EXPECT_EQ(acks[0].cseq(), second[0].cseq());
}


// ---------------------------------------------------------------------------------------
// Next hops and redirect targets named by host name (RFC 3263 through TargetResolver).

// The engine with a FakeResolver in its context; every other fixture runs without one.
class CallEngineDnsTest : public CallEngineTest {
 protected:
  CallEngineDnsTest() { resolver_ = &dns_; }

  /// Delivers the DNS answer to request `index`, then ends the turn as the shard does.
  void AnswerDns(size_t index, const proto::ResolvedTargets& result) {
    dns_.Answer(index, result);
    engine_->CollectEndedCalls();
  }

  /// A caller of its own (Call-ID, tags, branch) for the n-th call of a test.
  static Caller NthCaller(int n) {
    Caller caller;
    caller.request_uri = "sip:5551234@b2bua.example.net";
    caller.call_id = "dns-" + std::to_string(n) + "@pc33.atlanta.example.com";
    caller.from_tag = "dnsft" + std::to_string(n);
    caller.branch = "z9hG4bKdns" + std::to_string(n);
    caller.requests = n * 10;
    return caller;
  }

  FakeResolver dns_;
};

// Tests that fail against the current engine; each names the code at fault.
class CallEngineDnsEdgeTest : public CallEngineDnsTest {};

constexpr std::string_view kTrunkRoute = R"yaml(
routes:
  - prefix: ""
    next_hops: ["sip:trunk.example.test:5070"]
)yaml";

constexpr std::string_view kTwoTrunkRoute = R"yaml(
routes:
  - prefix: ""
    next_hops: ["sip:trunk1.example.test:5070", "sip:trunk2.example.test:5071"]
)yaml";

TEST_F(CallEngineDnsTest, NextHopNamedByHostIsInvitedAtTheResolvedAddress) {
  // 127.0.0.2, not the 127.0.0.1 every callee of this file uses: the address can only
  // come from the resolver.
  dns_.AnswerInline("trunk.example.test", ResolvedTo({"127.0.0.2:5070"}));
  ASSERT_NO_FATAL_FAILURE(Start(kTrunkRoute));
  Caller caller = NthCaller(1);
  Callee trunk{5070, "trunk", "trk"};
  const Peer trunk_peer = PeerAt("127.0.0.2", 5070);

  Deliver(caller.Invite(), caller.peer());
  ASSERT_EQ(dns_.requests.size(), 1u);
  EXPECT_EQ(dns_.requests[0].host, "trunk.example.test");
  EXPECT_EQ(dns_.requests[0].port, 5070);
  EXPECT_EQ(dns_.requests[0].transport, std::nullopt);
  EXPECT_FALSE(dns_.requests[0].sips);
  std::vector<Sent> invites = RequestsOf(TakeSent(), Method::kInvite);
  ASSERT_EQ(invites.size(), 1u);
  EXPECT_EQ(invites[0].to(), trunk_peer);
  EXPECT_EQ(invites[0].request_uri(), caller.request_uri);
  EXPECT_EQ(invites[0].body(), kOfferSdp);

  Deliver(trunk.Answer(invites[0], 200, "OK", kAnswerSdp), trunk_peer);
  std::vector<Sent> to_caller = ResponsesTo(TakeSent(), kCallerPort);
  ASSERT_THAT(Statuses(to_caller), ElementsAre(200));
  caller.to_tag = to_caller[0].to_tag();
  Deliver(caller.Ack2xx(), caller.peer());
  std::vector<Sent> acks = RequestsOf(TakeSent(), Method::kAck);
  ASSERT_EQ(acks.size(), 1u);
  EXPECT_EQ(acks[0].to(), trunk_peer);
  EXPECT_EQ(acks[0].cseq(), invites[0].cseq());
}

TEST_F(CallEngineDnsTest, NextHopResolvedAfterARoundTripStillGetsTheInvite) {
  ASSERT_NO_FATAL_FAILURE(Start(kTrunkRoute));
  Caller caller = NthCaller(1);
  Callee trunk{5070, "trunk", "trk"};

  Deliver(caller.Invite(), caller.peer());
  std::vector<Sent> out = TakeSent();
  EXPECT_THAT(RequestsOf(out, Method::kInvite), IsEmpty()) << "nothing to send to yet";
  EXPECT_THAT(Statuses(ResponsesTo(out, kCallerPort)), ElementsAre(100));
  ASSERT_THAT(dns_.hosts(), ElementsAre("trunk.example.test"));
  EXPECT_EQ(engine_->active_calls(), 1u);

  Advance(300ms);  // the shard runs other calls meanwhile
  AnswerDns(0, ResolvedTo({"127.0.0.1:5070"}));
  std::vector<Sent> invites = RequestsTo(TakeSent(), 5070, Method::kInvite);
  ASSERT_EQ(invites.size(), 1u);
  EXPECT_EQ(invites[0].ip(), "127.0.0.1");
  Deliver(trunk.Answer(invites[0], 200, "OK", kAnswerSdp), trunk.peer());
  EXPECT_THAT(Statuses(ResponsesTo(TakeSent(), kCallerPort)), ElementsAre(200));
}

class CallEngineDnsFailoverTest : public CallEngineDnsTest,
                                  public ::testing::WithParamInterface<proto::ResolveStatus> {};

TEST_P(CallEngineDnsFailoverTest, FirstHopThatDoesNotResolveFailsOverToTheSecond) {
  ASSERT_NO_FATAL_FAILURE(Start(kTwoTrunkRoute));
  Caller caller = NthCaller(1);
  Callee second{5071, "trunk2", "trk2"};

  Deliver(caller.Invite(), caller.peer());
  TakeSent();
  ASSERT_THAT(dns_.hosts(), ElementsAre("trunk1.example.test"));
  AnswerDns(0, ResolveFailed(GetParam()));
  std::vector<Sent> out = TakeSent();
  EXPECT_THAT(ResponsesTo(out, kCallerPort), IsEmpty()) << "a second hop is left";
  EXPECT_THAT(RequestsOf(out, Method::kInvite), IsEmpty());
  ASSERT_THAT(dns_.hosts(), ElementsAre("trunk1.example.test", "trunk2.example.test"));
  EXPECT_EQ(dns_.requests[1].port, 5071);

  AnswerDns(1, ResolvedTo({"127.0.0.1:5071"}));
  std::vector<Sent> invites = RequestsOf(TakeSent(), Method::kInvite);
  ASSERT_EQ(invites.size(), 1u);
  EXPECT_EQ(invites[0].to(), second.peer());
  EXPECT_EQ(invites[0].request_uri(), caller.request_uri);
  Deliver(second.Answer(invites[0], 200, "OK", kAnswerSdp), second.peer());
  EXPECT_THAT(Statuses(ResponsesTo(TakeSent(), kCallerPort)), ElementsAre(200));
}

INSTANTIATE_TEST_SUITE_P(NxdomainAndTimeout, CallEngineDnsFailoverTest,
                         ::testing::Values(proto::ResolveStatus::kNotFound,
                                           proto::ResolveStatus::kTimeout),
                         [](const ::testing::TestParamInfo<proto::ResolveStatus>& info) {
                           return info.param == proto::ResolveStatus::kNotFound ? "Nxdomain"
                                                                                : "Timeout";
                         });

TEST_F(CallEngineDnsTest, RedirectTargetNamedByHostIsResolvedAndInvited) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  Callee bob;
  Callee moved{5072, "bob", "mvd"};
  std::optional<Sent> first = Invite(caller);
  ASSERT_TRUE(first);
  EXPECT_THAT(dns_.requests, IsEmpty()) << "the first hop is an IP literal";

  Deliver(bob.Redirect(*first, 302, "Contact: <sip:bob@moved.example.test>\r\n"), bob.peer());
  std::vector<Sent> out = TakeSent();
  EXPECT_THAT(RequestsOf(out, Method::kInvite), IsEmpty());
  ASSERT_EQ(dns_.requests.size(), 1u);
  EXPECT_EQ(dns_.requests[0].host, "moved.example.test");
  EXPECT_EQ(dns_.requests[0].port, 0) << "no port in the Contact: RFC 3263 picks it";
  EXPECT_FALSE(dns_.requests[0].sips);

  AnswerDns(0, ResolvedTo({"127.0.0.1:5072"}));
  std::vector<Sent> invites = RequestsOf(TakeSent(), Method::kInvite);
  ASSERT_EQ(invites.size(), 1u);
  EXPECT_EQ(invites[0].to(), moved.peer());
  ExpectRetryOf(*first, invites[0], "sip:bob@moved.example.test");
  EXPECT_THAT(invites[0].Header("History-Info"), HasSubstr("sip:bob@moved.example.test"));

  Deliver(moved.Answer(invites[0], 200, "OK", kAnswerSdp), moved.peer());
  EXPECT_THAT(Statuses(ResponsesTo(TakeSent(), kCallerPort)), ElementsAre(200));
  EXPECT_EQ(Targets(TargetOutcome::kAnswered), 1u);
  EXPECT_EQ(Targets(TargetOutcome::kFailed), 0u);
}

// The name passes the domain rules; the address it leads to must pass the CIDR rules.
TEST_F(CallEngineDnsTest, RedirectTargetResolvingIntoADeniedCidrIsRefused) {
  dns_.AnswerInline("moved.example.test", ResolvedTo({"127.0.0.9:5060"}));
  ASSERT_NO_FATAL_FAILURE(Start(R"yaml(redirect: {deny: {cidrs: ["127.0.0.0/8"]}})yaml"));
  Caller caller;
  Callee bob;
  std::optional<Sent> first = Invite(caller);
  ASSERT_TRUE(first);
  Deliver(bob.Redirect(*first, 302, "Contact: <sip:bob@moved.example.test>\r\n"), bob.peer());
  std::vector<Sent> out = TakeSent();
  ASSERT_THAT(dns_.hosts(), ElementsAre("moved.example.test"));
  for (const Sent& s : out) EXPECT_NE(s.ip(), "127.0.0.9") << s.bytes();
  EXPECT_THAT(RequestsOf(out, Method::kInvite), IsEmpty());
  EXPECT_EQ(Targets(TargetOutcome::kRefusedByPolicy), 1u);
  std::vector<Sent> finals = WithStatus(ResponsesTo(out, kCallerPort), 403);
  ASSERT_EQ(finals.size(), 1u);
  EXPECT_EQ(Failures(RedirectFailure::kAllRefused), 1u);
  EXPECT_EQ(engine_->active_calls(), 0u);
}

TEST_F(CallEngineDnsTest, CancelWhileTheNextHopResolvesAnswers487AndTheLateAnswerSendsNothing) {
  ASSERT_NO_FATAL_FAILURE(Start(kTrunkRoute));
  Caller caller = NthCaller(1);
  Deliver(caller.Invite(), caller.peer());
  TakeSent();
  ASSERT_EQ(dns_.requests.size(), 1u);

  Deliver(caller.Cancel(), caller.peer());
  std::vector<Sent> out = TakeSent();
  EXPECT_THAT(Statuses(ResponsesTo(out, kCallerPort)), ElementsAre(200, 487));
  EXPECT_THAT(RequestsOf(out, Method::kCancel), IsEmpty()) << "no INVITE went out";
  EXPECT_EQ(engine_->active_calls(), 0u);
  EXPECT_EQ(Ended(CallOutcome::kCancelled), 1u);
  caller.to_tag = WithStatus(ResponsesTo(out, kCallerPort), 487)[0].to_tag();
  Deliver(caller.AckFailure(), caller.peer());

  AnswerDns(0, ResolvedTo({"127.0.0.1:5070"}));
  EXPECT_THAT(TakeSent(), IsEmpty());
  Advance(40s);
  EXPECT_THAT(RequestsOf(TakeSent(), Method::kInvite), IsEmpty());
}

TEST_F(CallEngineDnsTest, CancelWhileARedirectTargetResolvesAnswers487AndTheLateAnswerIsIgnored) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  Callee bob;
  std::optional<Sent> first = Invite(caller);
  ASSERT_TRUE(first);
  Deliver(bob.Redirect(*first, 302, "Contact: <sip:bob@moved.example.test>\r\n"), bob.peer());
  TakeSent();
  ASSERT_EQ(dns_.requests.size(), 1u);

  Deliver(caller.Cancel(), caller.peer());
  std::vector<Sent> out = TakeSent();
  EXPECT_THAT(Statuses(ResponsesTo(out, kCallerPort)), ElementsAre(200, 487));
  EXPECT_THAT(RequestsOf(out, Method::kCancel), IsEmpty()) << "the 302 ended the only INVITE";
  EXPECT_EQ(engine_->active_calls(), 0u);

  AnswerDns(0, ResolvedTo({"127.0.0.1:5072"}));
  EXPECT_THAT(RequestsOf(TakeSent(), Method::kInvite), IsEmpty());
  EXPECT_EQ(Ended(CallOutcome::kCancelled), 1u);
}

// deny_self (the default) holds for names too: a name leading back to our own listen
// address is skipped, and the search goes on.
TEST_F(CallEngineDnsTest, RedirectTargetResolvingToTheB2buaItselfIsNeverSent) {
  dns_.AnswerInline("self.example.test", ResolvedTo({"127.0.0.1:5060"}));
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  Callee bob;
  Callee t2{5072, "t2", "tag2"};
  std::optional<Sent> first = Invite(caller);
  ASSERT_TRUE(first);
  Deliver(bob.Redirect(*first, 302,
                       "Contact: <sip:bob@self.example.test>;q=1.0\r\n"
                       "Contact: <sip:t2@127.0.0.1:5072>;q=0.5\r\n"),
          bob.peer());
  std::vector<Sent> out = TakeSent();
  ASSERT_THAT(dns_.hosts(), ElementsAre("self.example.test"));
  for (const Sent& s : out) EXPECT_NE(s.port(), kB2buaPort) << s.bytes();
  std::vector<Sent> invites = RequestsOf(out, Method::kInvite);
  ASSERT_EQ(invites.size(), 1u);
  EXPECT_EQ(invites[0].to(), t2.peer());
  Deliver(t2.Answer(invites[0], 200, "OK", kAnswerSdp), t2.peer());
  EXPECT_THAT(Statuses(ResponsesTo(TakeSent(), kCallerPort)), ElementsAre(200));
}

TEST_F(CallEngineDnsTest, NextHopAnswering503WithRetryAfterIsSkippedUntilItExpires) {
  dns_.AnswerInline("trunk1.example.test", ResolvedTo({"127.0.0.1:5070"}));
  dns_.AnswerInline("trunk2.example.test", ResolvedTo({"127.0.0.1:5071"}));
  ASSERT_NO_FATAL_FAILURE(Start(kTwoTrunkRoute));
  Callee hop1{5070, "trunk1", "trk1"};
  Callee hop2{5071, "trunk2", "trk2"};

  // Hop 2 answers each call 486; the caller ACKs so nothing is retransmitted.
  auto busy_at_hop2 = [&](Caller& caller, const Sent& invite) {
    Deliver(hop2.Answer(invite, 486, "Busy Here"), hop2.peer());
    std::vector<Sent> finals = WithStatus(ResponsesTo(TakeSent(), kCallerPort), 486);
    ASSERT_EQ(finals.size(), 1u);
    caller.to_tag = finals[0].to_tag();
    Deliver(caller.AckFailure(), caller.peer());
    TakeSent();
  };

  Caller first = NthCaller(1);
  std::optional<Sent> to_hop1 = Invite(first, 5070);
  ASSERT_TRUE(to_hop1);
  Deliver(hop1.Answer(*to_hop1, 503, "Service Unavailable", {}, "Retry-After: 30\r\n"),
          hop1.peer());
  std::vector<Sent> to_hop2 = RequestsTo(TakeSent(), 5071, Method::kInvite);
  ASSERT_EQ(to_hop2.size(), 1u) << "503 fails over";
  ASSERT_NO_FATAL_FAILURE(busy_at_hop2(first, to_hop2[0]));

  Advance(29s);
  Caller second = NthCaller(2);
  Deliver(second.Invite(), second.peer());
  std::vector<Sent> out = TakeSent();
  EXPECT_THAT(RequestsTo(out, 5070, Method::kInvite), IsEmpty()) << "hop 1 rests for 30 s";
  to_hop2 = RequestsTo(out, 5071, Method::kInvite);
  ASSERT_EQ(to_hop2.size(), 1u);
  ASSERT_NO_FATAL_FAILURE(busy_at_hop2(second, to_hop2[0]));

  Advance(2s);  // 31 s after the 503
  Caller third = NthCaller(3);
  Deliver(third.Invite(), third.peer());
  out = TakeSent();
  EXPECT_EQ(RequestsTo(out, 5070, Method::kInvite).size(), 1u) << "hop 1 is back";
  EXPECT_THAT(RequestsTo(out, 5071, Method::kInvite), IsEmpty());
}

TEST_F(CallEngineDnsTest, EveryNextHopRestingAnswers503AndSendsNoInvite) {
  dns_.AnswerInline("trunk1.example.test", ResolvedTo({"127.0.0.1:5070"}));
  dns_.AnswerInline("trunk2.example.test", ResolvedTo({"127.0.0.1:5071"}));
  ASSERT_NO_FATAL_FAILURE(Start(kTwoTrunkRoute));
  Callee hop1{5070, "trunk1", "trk1"};
  Callee hop2{5071, "trunk2", "trk2"};

  Caller first = NthCaller(1);
  std::optional<Sent> to_hop1 = Invite(first, 5070);
  ASSERT_TRUE(to_hop1);
  Deliver(hop1.Answer(*to_hop1, 503, "Service Unavailable", {}, "Retry-After: 30\r\n"),
          hop1.peer());
  std::vector<Sent> to_hop2 = RequestsTo(TakeSent(), 5071, Method::kInvite);
  ASSERT_EQ(to_hop2.size(), 1u);
  Deliver(hop2.Answer(to_hop2[0], 503, "Service Unavailable", {}, "Retry-After: 60\r\n"),
          hop2.peer());
  std::vector<Sent> finals = WithStatus(ResponsesTo(TakeSent(), kCallerPort), 503);
  ASSERT_EQ(finals.size(), 1u);
  first.to_tag = finals[0].to_tag();
  Deliver(first.AckFailure(), first.peer());
  TakeSent();

  Advance(5s);
  const size_t asked = dns_.requests.size();
  Caller second = NthCaller(2);
  Deliver(second.Invite(), second.peer());
  std::vector<Sent> out = TakeSent();
  EXPECT_THAT(RequestsOf(out, Method::kInvite), IsEmpty());
  finals = WithStatus(ResponsesTo(out, kCallerPort), 503);
  ASSERT_EQ(finals.size(), 1u);
  EXPECT_EQ(finals[0].call_id(), second.call_id);
  EXPECT_TRUE(finals[0].HasHeader("Retry-After"));
  EXPECT_EQ(dns_.requests.size(), asked + 2) << "both names were looked at";
  EXPECT_EQ(Ended(CallOutcome::kUnreachable), 1u);
  EXPECT_EQ(engine_->active_calls(), 0u);
}

// Hop 1 timed out (Timer B), hop 2 is still being resolved when the caller cancels: no
// INVITE is out, so the call must end at once, as when the first hop is resolving.
TEST_F(CallEngineDnsEdgeTest, CancelWhileResolvingAfterATimedOutHopEndsTheCallAtOnce) {
  ASSERT_NO_FATAL_FAILURE(Start(R"yaml(
routes:
  - prefix: ""
    next_hops: ["sip:127.0.0.1:5070", "sip:trunk2.example.test:5071"]
)yaml"));
  Caller caller = NthCaller(1);
  std::optional<Sent> first = Invite(caller, 5070);
  ASSERT_TRUE(first);
  Advance(33s);  // Timer B (64*T1) ends hop 1
  TakeSent();
  ASSERT_THAT(dns_.hosts(), ElementsAre("trunk2.example.test"));

  Deliver(caller.Cancel(), caller.peer());
  std::vector<Sent> out = TakeSent();
  EXPECT_THAT(Statuses(ResponsesTo(out, kCallerPort)), ElementsAre(200, 487));
  EXPECT_THAT(RequestsOf(out, Method::kCancel), IsEmpty());
  EXPECT_EQ(engine_->active_calls(), 0u) << "nothing left to wait for";
  EXPECT_EQ(Ended(CallOutcome::kCancelled), 1u);

  AnswerDns(0, ResolvedTo({"127.0.0.1:5071"}));
  EXPECT_THAT(RequestsOf(TakeSent(), Method::kInvite), IsEmpty());
}

// The target being resolved timed out and the search moved on to an IP literal, whose
// INVITE is now the one in progress: the resolution arriving afterwards belongs to an
// abandoned attempt and must not start a second INVITE.
TEST_F(CallEngineDnsEdgeTest, ResolutionArrivingAfterItsTargetTimedOutSendsNoSecondInvite) {
  ASSERT_NO_FATAL_FAILURE(Start("redirect: {target_timeout: 2s}\n"));
  Caller caller;
  Callee bob;
  Callee t2{5072, "t2", "tag2"};
  std::optional<Sent> first = Invite(caller);
  ASSERT_TRUE(first);
  Deliver(bob.Redirect(*first, 302,
                       "Contact: <sip:slow@slow.example.test>;q=1.0\r\n"
                       "Contact: <sip:t2@127.0.0.1:5072>;q=0.5\r\n"),
          bob.peer());
  EXPECT_THAT(RequestsOf(TakeSent(), Method::kInvite), IsEmpty());
  ASSERT_THAT(dns_.hosts(), ElementsAre("slow.example.test"));

  Advance(2100ms);
  std::vector<Sent> to_t2 = RequestsTo(TakeSent(), 5072, Method::kInvite);
  ASSERT_EQ(to_t2.size(), 1u) << "the slow target timed out: next one";

  AnswerDns(0, ResolvedTo({"127.0.0.1:5073"}));
  EXPECT_THAT(RequestsOf(TakeSent(), Method::kInvite), IsEmpty())
      << "the slow target was given up on";

  Deliver(t2.Answer(to_t2[0], 200, "OK", kAnswerSdp), t2.peer());
  std::vector<Sent> out = TakeSent();
  EXPECT_THAT(Statuses(ResponsesTo(out, kCallerPort)), ElementsAre(200));
  EXPECT_THAT(RequestsOf(out, Method::kBye), IsEmpty());
}

// RFC 3263 4.3 and the ResolvedTargets contract (proto/dns_resolver.h): a request that
// fails on one target (timeout, 503) moves on to the next address of the same name.
TEST_F(CallEngineDnsEdgeTest, NextHopNameFailsOverToItsSecondAddress) {
  dns_.AnswerInline("trunk.example.test", ResolvedTo({"127.0.0.2:5070", "127.0.0.3:5070"}));
  ASSERT_NO_FATAL_FAILURE(Start(kTrunkRoute));
  Caller caller = NthCaller(1);
  Callee trunk{5070, "trunk", "trk"};
  Deliver(caller.Invite(), caller.peer());
  std::vector<Sent> invites = RequestsOf(TakeSent(), Method::kInvite);
  ASSERT_EQ(invites.size(), 1u);
  EXPECT_EQ(invites[0].ip(), "127.0.0.2");

  Deliver(trunk.Answer(invites[0], 503, "Service Unavailable"), PeerAt("127.0.0.2", 5070));
  std::vector<Sent> out = TakeSent();
  invites = RequestsOf(out, Method::kInvite);
  ASSERT_EQ(invites.size(), 1u) << "the name's second address is left";
  EXPECT_EQ(invites[0].to(), PeerAt("127.0.0.3", 5070));
  EXPECT_THAT(WithStatus(ResponsesTo(out, kCallerPort), 503), IsEmpty());
}

// A 301 to a name is cached like one to an address; the next call goes to the name.
TEST_F(CallEngineDnsEdgeTest, Permanent301ToANameIsCachedForTheNextCall) {
  dns_.AnswerInline("moved.example.test", ResolvedTo({"127.0.0.1:5072"}));
  ASSERT_NO_FATAL_FAILURE(Start());
  Callee bob;
  Callee moved{5072, "bob", "mvd"};
  {
    Caller first_caller;
    std::optional<Sent> first = Invite(first_caller);
    ASSERT_TRUE(first);
    Deliver(bob.Redirect(*first, 301, "Contact: <sip:bob@moved.example.test>\r\n"), bob.peer());
    std::vector<Sent> to_moved = RequestsTo(TakeSent(), 5072, Method::kInvite);
    ASSERT_EQ(to_moved.size(), 1u);
    Deliver(moved.Answer(to_moved[0], 486, "Busy Here"), moved.peer());
    std::vector<Sent> finals = WithStatus(ResponsesTo(TakeSent(), kCallerPort), 486);
    ASSERT_EQ(finals.size(), 1u);
    first_caller.to_tag = finals[0].to_tag();
    Deliver(first_caller.AckFailure(), first_caller.peer());
    TakeSent();
    ASSERT_EQ(engine_->active_calls(), 0u);
  }

  Caller second_caller;
  second_caller.call_id = "second-call@pc33.atlanta.example.com";
  second_caller.from_tag = "77aa";
  second_caller.branch = "z9hG4bKsecond";
  Deliver(second_caller.Invite(), second_caller.peer());
  std::vector<Sent> out = TakeSent();
  EXPECT_THAT(RequestsTo(out, 5070, Method::kInvite), IsEmpty()) << "bob moved permanently";
  std::vector<Sent> to_moved = RequestsTo(out, 5072, Method::kInvite);
  ASSERT_EQ(to_moved.size(), 1u);
  EXPECT_EQ(to_moved[0].request_uri(), "sip:bob@moved.example.test");
  EXPECT_EQ(counters_->redirect_cache_hits.Get(), 1u);
}

}  // namespace
}  // namespace b2bua::engine_test
