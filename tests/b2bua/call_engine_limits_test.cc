// Tests b2bua/call_engine.{h,cc}: admission: retransmitted INVITEs, draining, max_calls, loops, shard ownership, the access policy (relay, route callers, RFC 3325 identity), call limits, sips:, many Vias. The harness is in call_engine_harness.h.

#include "tests/b2bua/call_engine_harness.h"

namespace b2bua::engine_test {
namespace {

// ---------------------------------------------------------------------------------------
// Admission, loops and sharding.

TEST_F(CallEngineTest, RetransmittedInviteDoesNotStartASecondCall) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  Callee bob;
  std::optional<Sent> b = Invite(caller);
  ASSERT_TRUE(b);
  Deliver(bob.Answer(*b, 180, "Ringing"), bob.peer());
  TakeSent();
  Deliver(caller.Invite(), caller.peer());
  std::vector<Sent> out = TakeSent();
  EXPECT_THAT(RequestsOf(out, Method::kInvite), IsEmpty());
  EXPECT_THAT(Statuses(ResponsesTo(out, kCallerPort)), ElementsAre(180)) << "last provisional";
  EXPECT_EQ(engine_->active_calls(), 1u);
}

TEST_F(CallEngineTest, DrainingRefusesNewCallsWith503) {
  ASSERT_NO_FATAL_FAILURE(Start());
  engine_->StartDraining();
  Caller caller;
  Deliver(caller.Invite(), caller.peer());
  std::vector<Sent> out = TakeSent();
  EXPECT_THAT(RequestsOf(out, Method::kInvite), IsEmpty());
  std::vector<Sent> finals = WithStatus(ResponsesTo(out, kCallerPort), 503);
  ASSERT_EQ(finals.size(), 1u);
  EXPECT_TRUE(finals[0].HasHeader("Retry-After"));
  EXPECT_EQ(Ended(CallOutcome::kOverload), 1u);
  EXPECT_EQ(engine_->active_calls(), 0u);
}

TEST_F(CallEngineTest, CallsOverMaxCallsAreRefusedWith503) {
  ASSERT_NO_FATAL_FAILURE(Start("limits: {max_calls: 1}\n"));
  Caller first;
  ASSERT_TRUE(Invite(first));
  Caller second;
  second.call_id = "second@pc33.atlanta.example.com";
  second.branch = "z9hG4bKsecond";
  Deliver(second.Invite(), second.peer());
  std::vector<Sent> out = TakeSent();
  EXPECT_THAT(RequestsOf(out, Method::kInvite), IsEmpty());
  std::vector<Sent> finals = WithStatus(ResponsesTo(out, kCallerPort), 503);
  ASSERT_EQ(finals.size(), 1u);
  EXPECT_EQ(finals[0].call_id(), second.call_id);
  EXPECT_EQ(engine_->active_calls(), 1u);
}

// Our own B-leg INVITE, sent back to us by a proxy at 5070, is a spiral that would never end.
TEST_F(CallEngineTest, InviteCarryingOurOwnViaIsAnswered482) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  std::optional<Sent> b = Invite(caller);
  ASSERT_TRUE(b);
  std::string looped = b->bytes();
  looped.insert(looped.find("\r\n") + 2,
                "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKproxyloop\r\n");
  Deliver(looped, LoopbackPeer(5070));
  std::vector<Sent> out = TakeSent();
  EXPECT_THAT(RequestsOf(out, Method::kInvite), IsEmpty());
  std::vector<Sent> answers = ResponsesTo(out, 5070);
  ASSERT_EQ(answers.size(), 2u);
  EXPECT_EQ(answers[0].status(), 100);
  EXPECT_EQ(answers[1].status(), 482);
  EXPECT_EQ(engine_->active_calls(), 1u) << "the real call is untouched";
}

TEST_F(CallEngineTest, BLegCallIdNamesTheShardThatOwnsTheCall) {
  ASSERT_NO_FATAL_FAILURE(Start({}, /*shard_index=*/3, /*shard_count=*/4));
  Caller caller;
  std::optional<Sent> b = Invite(caller);
  ASSERT_TRUE(b);
  EXPECT_EQ(ShardForCallId(b->call_id(), 4), 3u) << b->call_id();
  EXPECT_EQ(ShardForCallId(b->call_id(), 1), 0u);
}


// ---------------------------------------------------------------------------------------
// The access policy and call limits of a new INVITE (b2bua/access_policy.h,
// b2bua/call_limits.h): relay, route callers, identity headers, caps.

class CallEngineAccessTest : public CallEngineTest {
 protected:
  uint64_t Rejected(RejectReason reason) const {
    return counters_->requests_rejected[static_cast<size_t>(reason)].Get();
  }
  /// Sends the caller's INVITE from `from` and returns what went out.
  std::vector<Sent> InviteFrom(const Caller& caller, const Peer& from) {
    Deliver(caller.Invite(), from);
    return TakeSent();
  }
  static Caller NumberedCaller(int n, std::string_view request_uri) {
    Caller caller;
    caller.request_uri = std::string(request_uri);
    caller.call_id = "acl-" + std::to_string(n) + "@pc33.atlanta.example.com";
    caller.from_tag = "aclft" + std::to_string(n);
    caller.branch = "z9hG4bKacl" + std::to_string(n);
    caller.requests = n * 10;
    return caller;
  }
};

// Without a route the Request-URI host is the next hop only for trusted sources.
TEST_F(CallEngineAccessTest, UntrustedCallerMayNotRelayToTheRequestUri) {
  ASSERT_NO_FATAL_FAILURE(Start("access: { trusted: [127.0.0.2/32], callers: [127.0.0.0/8] }\n"));
  Caller caller = NumberedCaller(1, "sip:+19005551234@127.0.0.1:5070");
  std::vector<Sent> out = InviteFrom(caller, caller.peer());
  EXPECT_TRUE(RequestsOf(out, Method::kInvite).empty());
  std::vector<Sent> answers = Finals(ResponsesTo(out, kCallerPort));
  ASSERT_THAT(FinalStatuses(answers), ElementsAre(403));
  EXPECT_THAT(answers[0].Header("Reason"), HasSubstr("relaying to the Request-URI"));
  EXPECT_EQ(Rejected(RejectReason::kRelayDenied), 1u);
  EXPECT_EQ(engine_->active_calls(), 0u);
}

TEST_F(CallEngineAccessTest, TrustedCallerRelaysToTheRequestUri) {
  ASSERT_NO_FATAL_FAILURE(Start("access: { trusted: [127.0.0.1/32] }\n"));
  Caller caller = NumberedCaller(1, "sip:+19005551234@127.0.0.1:5070");
  EXPECT_EQ(RequestsOf(InviteFrom(caller, caller.peer()), Method::kInvite).size(), 1u);
}

TEST_F(CallEngineAccessTest, RelayToNobodyRefusesEvenTrustedCallers) {
  ASSERT_NO_FATAL_FAILURE(
      Start("access: { trusted: [127.0.0.1/32], relay_to_request_uri: nobody }\n"));
  Caller second = NumberedCaller(2, "sip:+19005551234@127.0.0.1:5070");
  std::vector<Sent> out = InviteFrom(second, second.peer());
  EXPECT_TRUE(RequestsOf(out, Method::kInvite).empty());
  EXPECT_THAT(FinalStatuses(ResponsesTo(out, kCallerPort)), ElementsAre(403));
}

TEST_F(CallEngineAccessTest, RouteCallersRestrictTheRoute) {
  ASSERT_NO_FATAL_FAILURE(Start(R"yaml(
access: { trusted: [127.0.0.2/32], callers: [127.0.0.0/8] }
routes:
  - prefix: "1900"
    next_hops: ["sip:127.0.0.1:5070"]
    callers: [127.0.0.2/32]
  - prefix: ""
    next_hops: ["sip:127.0.0.1:5070"]
)yaml"));
  Caller premium = NumberedCaller(1, "sip:19005551234@b2bua.example.net");
  std::vector<Sent> out = InviteFrom(premium, premium.peer());
  EXPECT_TRUE(RequestsOf(out, Method::kInvite).empty());
  std::vector<Sent> answers = Finals(ResponsesTo(out, kCallerPort));
  ASSERT_THAT(FinalStatuses(answers), ElementsAre(403));
  EXPECT_THAT(answers[0].Header("Reason"), HasSubstr("route not allowed"));
  // The same caller reaches ordinary numbers through the default route.
  Caller ordinary = NumberedCaller(2, "sip:2125550100@b2bua.example.net");
  EXPECT_EQ(RequestsOf(InviteFrom(ordinary, ordinary.peer()), Method::kInvite).size(), 1u);
  // The trusted peer may call the premium number.
  Caller trunk = NumberedCaller(3, "sip:19005551234@b2bua.example.net");
  EXPECT_EQ(RequestsOf(InviteFrom(trunk, PeerAt("127.0.0.2", kCallerPort)), Method::kInvite)
                .size(),
            1u);
}

constexpr std::string_view kIdentityRoute = R"yaml(
routes:
  - prefix: ""
    next_hops: ["sip:127.0.0.1:5070"]
)yaml";

// RFC 3325: P-Asserted-Identity crosses only from inside the trust domain.
TEST_F(CallEngineAccessTest, AssertedIdentityFromAnUntrustedCallerIsRemoved) {
  ASSERT_NO_FATAL_FAILURE(Start(std::string(kIdentityRoute) +
                                "access: { trusted: [127.0.0.2/32], callers: [127.0.0.0/8] }\n"));
  Caller caller = NumberedCaller(1, "sip:2125550100@b2bua.example.net");
  caller.extra = "P-Asserted-Identity: <sip:+12125550100@carrier.example>\r\n"
                 "P-Preferred-Identity: <sip:+12125550111@carrier.example>\r\n";
  std::vector<Sent> invites = RequestsOf(InviteFrom(caller, caller.peer()), Method::kInvite);
  ASSERT_EQ(invites.size(), 1u);
  EXPECT_FALSE(invites[0].HasHeader("P-Asserted-Identity"));
  // The next hop is outside the trust domain: a preferred identity may go, as what it is.
  EXPECT_EQ(invites[0].Header("P-Preferred-Identity"), "<sip:+12125550111@carrier.example>");
}

TEST_F(CallEngineAccessTest, AssertedIdentityFromATrustedCallerIsKept) {
  ASSERT_NO_FATAL_FAILURE(Start(std::string(kIdentityRoute) +
                                "access: { trusted: [127.0.0.1/32] }\n"));
  Caller caller = NumberedCaller(1, "sip:2125550100@b2bua.example.net");
  caller.extra = "P-Asserted-Identity: <sip:+12125550100@carrier.example>\r\n"
                 "P-Asserted-Identity: <tel:+12125550100>\r\n"
                 "P-Preferred-Identity: <sip:+12125550111@carrier.example>\r\n";
  std::vector<Sent> invites = RequestsOf(InviteFrom(caller, caller.peer()), Method::kInvite);
  ASSERT_EQ(invites.size(), 1u);
  EXPECT_THAT(invites[0].Headers("P-Asserted-Identity"),
              ElementsAre("<sip:+12125550100@carrier.example>", "<tel:+12125550100>"));
  // The next hop is trusted: a preferred identity must not reach it as if we asserted it.
  EXPECT_FALSE(invites[0].HasHeader("P-Preferred-Identity"));
}

TEST_F(CallEngineAccessTest, PrivacyIdKeepsTheAssertedIdentityInsideTheTrustDomain) {
  ASSERT_NO_FATAL_FAILURE(Start(std::string(kIdentityRoute) +
                                "access: { trusted: [127.0.0.3/32] }\n"));
  Caller caller = NumberedCaller(1, "sip:2125550100@b2bua.example.net");
  caller.extra = "P-Asserted-Identity: <sip:+12125550100@carrier.example>\r\n"
                 "Privacy: header;id\r\n";
  std::vector<Sent> invites =
      RequestsOf(InviteFrom(caller, PeerAt("127.0.0.3", kCallerPort)), Method::kInvite);
  ASSERT_EQ(invites.size(), 1u);
  EXPECT_FALSE(invites[0].HasHeader("P-Asserted-Identity"));
  EXPECT_EQ(invites[0].Header("Privacy"), "header;id");

  // Without Privacy: id it goes to the untrusted next hop as well.
  Caller open = NumberedCaller(2, "sip:2125550100@b2bua.example.net");
  open.extra = "P-Asserted-Identity: <sip:+12125550100@carrier.example>\r\n";
  invites = RequestsOf(InviteFrom(open, PeerAt("127.0.0.3", kCallerPort)), Method::kInvite);
  ASSERT_EQ(invites.size(), 1u);
  EXPECT_EQ(invites[0].Header("P-Asserted-Identity"), "<sip:+12125550100@carrier.example>");
}

// STIR/SHAKEN (RFC 8224): the signature and the Date it covers reach the callee untouched,
// and the From and To it signs keep their URIs.
TEST_F(CallEngineAccessTest, IdentityAndDateFromATrustedSourcePassByteForByte) {
  ASSERT_NO_FATAL_FAILURE(Start(kIdentityRoute));
  Caller caller = NumberedCaller(1, "sip:2125550100@b2bua.example.net");
  const std::string identity =
      "eyJhbGciOiJFUzI1NiIsInBwdCI6InNoYWtlbiIsInR5cCI6InBhc3Nwb3J0In0.eyJhdHRlc3QiOiJBIn0."
      "c2lnbmF0dXJl;info=<https://cert.example.org/passport.cer>;alg=ES256;ppt=shaken";
  const std::string date = "Tue, 01 Dec 2026 10:00:00 GMT";
  caller.extra = "Identity: " + identity + "\r\nDate: " + date + "\r\n";
  std::vector<Sent> invites = RequestsOf(InviteFrom(caller, caller.peer()), Method::kInvite);
  ASSERT_EQ(invites.size(), 1u);
  EXPECT_EQ(invites[0].Header("Identity"), identity);
  EXPECT_EQ(invites[0].Header("Date"), date);
  proto::SipUri from;
  ASSERT_EQ(proto::ParseUri(invites[0].msg().from().uri.text, &from), proto::UriError::kNone);
  EXPECT_EQ(invites[0].msg().from().uri.text, "sip:alice@atlanta.example.com");
  EXPECT_EQ(invites[0].msg().to().uri.text, "sip:bob@biloxi.example.com");
}

TEST_F(CallEngineAccessTest, CallsPerSourceAreCappedForUntrustedSources) {
  ASSERT_NO_FATAL_FAILURE(Start(std::string(kIdentityRoute) +
                                "access: { trusted: [127.0.0.2/32], callers: [127.0.0.0/8], "
                                "max_calls_per_source: 2 }\n"));
  Caller first = NumberedCaller(1, "sip:2125550100@b2bua.example.net");
  Caller second = NumberedCaller(2, "sip:2125550100@b2bua.example.net");
  Caller third = NumberedCaller(3, "sip:2125550100@b2bua.example.net");
  EXPECT_EQ(RequestsOf(InviteFrom(first, first.peer()), Method::kInvite).size(), 1u);
  EXPECT_EQ(RequestsOf(InviteFrom(second, second.peer()), Method::kInvite).size(), 1u);
  std::vector<Sent> out = InviteFrom(third, third.peer());
  EXPECT_TRUE(RequestsOf(out, Method::kInvite).empty());
  std::vector<Sent> answers = Finals(ResponsesTo(out, kCallerPort));
  ASSERT_THAT(FinalStatuses(answers), ElementsAre(503));
  EXPECT_FALSE(answers[0].Header("Retry-After").empty());
  EXPECT_EQ(Rejected(RejectReason::kCallsPerSource), 1u);
  // Another source has its own allowance; a trusted one has none.
  Caller other = NumberedCaller(4, "sip:2125550100@b2bua.example.net");
  EXPECT_EQ(RequestsOf(InviteFrom(other, PeerAt("127.0.0.5", kCallerPort)), Method::kInvite)
                .size(),
            1u);
  for (int n = 5; n < 9; ++n) {
    Caller trunk = NumberedCaller(n, "sip:2125550100@b2bua.example.net");
    EXPECT_EQ(RequestsOf(InviteFrom(trunk, PeerAt("127.0.0.2", kCallerPort)), Method::kInvite)
                  .size(),
              1u);
  }
  // A call that ends gives its place back.
  Deliver(first.Cancel(), first.peer());
  TakeSent();
  Advance(40s);
  TakeSent();
  Caller fourth = NumberedCaller(9, "sip:2125550100@b2bua.example.net");
  EXPECT_EQ(RequestsOf(InviteFrom(fourth, fourth.peer()), Method::kInvite).size(), 1u);
}

TEST_F(CallEngineAccessTest, FullRouteOverflowsToItsOverflowRouteThen503) {
  ASSERT_NO_FATAL_FAILURE(Start(R"yaml(
routes:
  - prefix: "1900"
    next_hops: ["sip:127.0.0.1:5071"]
    max_calls: 2
    overflow_to: "1"
  - prefix: "1"
    next_hops: ["sip:127.0.0.1:5072"]
    max_calls: 1
)yaml"));
  std::vector<uint16_t> ports;
  for (int n = 1; n <= 4; ++n) {
    Caller caller = NumberedCaller(n, "sip:19005551234@b2bua.example.net");
    std::vector<Sent> out = InviteFrom(caller, caller.peer());
    std::vector<Sent> invites = RequestsOf(out, Method::kInvite);
    if (invites.size() == 1) {
      ports.push_back(invites[0].port());
    } else {
      EXPECT_THAT(FinalStatuses(ResponsesTo(out, kCallerPort)), ElementsAre(503)) << n;
    }
  }
  EXPECT_THAT(ports, ElementsAre(5071, 5071, 5072));
  EXPECT_EQ(Rejected(RejectReason::kRouteLimit), 1u);
}

TEST_F(CallEngineAccessTest, RouteAndGlobalCallRates) {
  ASSERT_NO_FATAL_FAILURE(Start(R"yaml(
limits: { calls_per_second: 3 }
routes:
  - prefix: "1900"
    next_hops: ["sip:127.0.0.1:5071"]
    calls_per_second: 1
    overflow_to: ""
  - prefix: ""
    next_hops: ["sip:127.0.0.1:5072"]
)yaml"));
  int n = 0;
  auto call = [&](std::string_view uri) {
    Caller caller = NumberedCaller(++n, uri);
    std::vector<Sent> out = InviteFrom(caller, caller.peer());
    std::vector<Sent> invites = RequestsOf(out, Method::kInvite);
    if (invites.size() == 1) return static_cast<int>(invites[0].port());
    std::vector<int> statuses = FinalStatuses(ResponsesTo(out, kCallerPort));
    return statuses.empty() ? 0 : statuses.back();
  };
  EXPECT_EQ(call("sip:19005551234@x.example"), 5071);
  EXPECT_EQ(call("sip:19005551234@x.example"), 5072);  // over the route's rate: next route
  EXPECT_EQ(call("sip:2125550100@x.example"), 5072);
  EXPECT_EQ(call("sip:2125550100@x.example"), 503);    // over the global rate
  EXPECT_EQ(Rejected(RejectReason::kRate), 1u);
  Advance(1s);
  TakeSent();  // retransmissions of the 503 and of the unanswered INVITEs
  EXPECT_EQ(call("sip:19005551234@x.example"), 5071);
}

// Without overflow_to a capped route never leaks its calls into a shorter route that also
// matches: the premium-rate cap holds even with a default route.
TEST_F(CallEngineAccessTest, CappedRouteWithoutOverflowAnswers503) {
  ASSERT_NO_FATAL_FAILURE(Start(R"yaml(
routes:
  - prefix: "1900"
    next_hops: ["sip:127.0.0.1:5071"]
    max_calls: 1
  - prefix: ""
    next_hops: ["sip:127.0.0.1:5072"]
)yaml"));
  Caller first = NumberedCaller(1, "sip:19005551234@b2bua.example.net");
  std::vector<Sent> invites = RequestsOf(InviteFrom(first, first.peer()), Method::kInvite);
  ASSERT_EQ(invites.size(), 1u);
  EXPECT_EQ(invites[0].port(), 5071);
  Caller second = NumberedCaller(2, "sip:19005551234@b2bua.example.net");
  std::vector<Sent> out = InviteFrom(second, second.peer());
  EXPECT_TRUE(RequestsOf(out, Method::kInvite).empty());
  EXPECT_THAT(FinalStatuses(ResponsesTo(out, kCallerPort)), ElementsAre(503));
  EXPECT_EQ(Rejected(RejectReason::kRouteLimit), 1u);
}

// RFC 3261 26.2.2: a sips: Request-URI is never sent over a hop without TLS; the caller
// learns why.
TEST_F(CallEngineAccessTest, SipsRequestUriNeverLeavesOverUdp) {
  ASSERT_NO_FATAL_FAILURE(Start(R"yaml(
routes:
  - prefix: ""
    next_hops: ["sip:127.0.0.1:5070"]
)yaml"));
  Caller caller = NumberedCaller(1, "sips:2125550100@b2bua.example.net");
  std::vector<Sent> out = InviteFrom(caller, caller.peer());
  EXPECT_TRUE(RequestsOf(out, Method::kInvite).empty());
  std::vector<Sent> answers = Finals(ResponsesTo(out, kCallerPort));
  ASSERT_THAT(FinalStatuses(answers), ElementsAre(480));
  EXPECT_THAT(answers[0].Header("Reason"), HasSubstr("needs a TLS next hop"));
}

// RFC 3261 sets no limit on Via values: a request with hundreds of them is processed, and
// the answer echoes every one, in order (RFC 3261 8.2.6.2).
TEST_F(CallEngineAccessTest, HundredsOfViasAreEchoedInTheAnswer) {
  ASSERT_NO_FATAL_FAILURE(Start(kIdentityRoute));
  Caller caller = NumberedCaller(1, "sip:2125550100@b2bua.example.net");
  std::string vias;
  for (int i = 0; i < 300; ++i)
    vias += "Via: SIP/2.0/UDP 10.1." + std::to_string(i / 200) + "." + std::to_string(i % 200) +
            ";branch=z9hG4bKproxy" + std::to_string(i) + "\r\n";
  std::string invite = caller.Invite();
  const size_t after_first_via = invite.find("\r\n", invite.find("\r\nVia: ") + 2) + 2;
  invite.insert(after_first_via, vias);
  Deliver(invite, caller.peer());
  std::vector<Sent> out = TakeSent();
  ASSERT_EQ(RequestsOf(out, Method::kInvite).size(), 1u);
  std::vector<Sent> answers = ResponsesTo(out, kCallerPort);
  ASSERT_FALSE(answers.empty());
  const std::vector<std::string> echoed = answers[0].Headers("Via");
  ASSERT_EQ(echoed.size(), 301u);
  EXPECT_NE(echoed[300].find("branch=z9hG4bKproxy299"), std::string::npos) << echoed[300];
}

}  // namespace
}  // namespace b2bua::engine_test
