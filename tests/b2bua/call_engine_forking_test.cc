// Tests b2bua/call_attempts.cc and b2bua/call_answer.cc with `fork: parallel_equal_q`:
// equal-q redirect targets rung at once, the first 2xx wins and the others are CANCELled
// with a Reason, 6xx ends the search, one early media, the caller's CANCEL reaches every
// branch, max_parallel and max_targets. The harness is in call_engine_harness.h.

#include "tests/b2bua/call_engine_harness.h"

namespace b2bua::engine_test {
namespace {

constexpr std::string_view kParallel = "redirect: {fork: parallel_equal_q}\n";

// Three targets of q=1.0 and one of q=0.5, in that header order.
constexpr std::string_view kTwoGroups =
    "Contact: <sip:t1@127.0.0.1:5071>, <sip:t2@127.0.0.1:5072>;q=1.0\r\n"
    "Contact: <sip:t4@127.0.0.1:5074>;q=0.5, <sip:t3@127.0.0.1:5073>\r\n";

class ForkingTest : public CallEngineTest {
 protected:
  // Starts a call and has bob redirect it to `contacts`; returns the INVITEs sent to each
  // of ports 5071..5074 (empty when none).
  void RedirectTo(std::string_view contacts, std::string_view yaml = kParallel) {
    ASSERT_NO_FATAL_FAILURE(Start(yaml));
    std::optional<Sent> first = Invite(caller_);
    ASSERT_TRUE(first);
    Deliver(bob_.Redirect(*first, 302, contacts), bob_.peer());
    Collect(TakeSent());
  }
  void Collect(const std::vector<Sent>& out) {
    for (int i = 0; i < 4; ++i) {
      std::vector<Sent> invites = RequestsTo(out, static_cast<uint16_t>(5071 + i), Method::kInvite);
      if (!invites.empty()) invite_[i] = invites.back();
    }
    for (const Sent& s : ResponsesTo(out, kCallerPort)) to_caller_.push_back(s);
  }
  Callee& target(int n) { return targets_[n - 1]; }
  const Sent& invite(int n) { return *invite_[n - 1]; }
  bool invited(int n) const { return invite_[n - 1].has_value(); }

  Caller caller_;
  Callee bob_;
  Callee targets_[4] = {{5071, "t1", "tag1"}, {5072, "t2", "tag2"},
                        {5073, "t3", "tag3"}, {5074, "t4", "tag4"}};
  std::optional<Sent> invite_[4];
  std::vector<Sent> to_caller_;
};

TEST_F(ForkingTest, EqualQTargetsAreRungAtOnceAndTheFirst2xxWins) {
  ASSERT_NO_FATAL_FAILURE(RedirectTo(kTwoGroups));
  ASSERT_TRUE(invited(1) && invited(2) && invited(3)) << "the q=1.0 group at once";
  EXPECT_FALSE(invited(4)) << "q=0.5 waits for the group";
  // Each branch is its own transaction: own branch parameter and CSeq, one Call-ID.
  EXPECT_NE(invite(1).branch(), invite(2).branch());
  EXPECT_NE(invite(1).cseq(), invite(2).cseq());
  EXPECT_NE(invite(2).cseq(), invite(3).cseq());
  EXPECT_EQ(invite(1).call_id(), invite(3).call_id());
  EXPECT_EQ(invite(1).from_tag(), invite(3).from_tag());
  // RFC 7044: each branch's History-Info names its own target, not its siblings'.
  EXPECT_THAT(invite(2).Header("History-Info"), HasSubstr("sip:t2@127.0.0.1:5072"));
  EXPECT_THAT(invite(2).Header("History-Info"), Not(HasSubstr("sip:t1@")));

  Deliver(target(1).Answer(invite(1), 180, "Ringing"), target(1).peer());
  Deliver(target(3).Answer(invite(3), 180, "Ringing"), target(3).peer());
  EXPECT_THAT(Statuses(ResponsesTo(TakeSent(), kCallerPort)), ElementsAre(180, 180));

  Deliver(target(2).Answer(invite(2), 200, "OK", kAnswerSdp), target(2).peer());
  std::vector<Sent> out = TakeSent();
  std::vector<Sent> to_caller = ResponsesTo(out, kCallerPort);
  ASSERT_EQ(to_caller.size(), 1u);
  EXPECT_EQ(to_caller[0].status(), 200);
  EXPECT_EQ(to_caller[0].body(), kAnswerSdp);
  for (int n : {1, 3}) {
    std::vector<Sent> cancels = RequestsTo(out, target(n).port, Method::kCancel);
    ASSERT_EQ(cancels.size(), 1u) << "t" << n << " lost the race";
    EXPECT_EQ(cancels[0].branch(), invite(n).branch());
    EXPECT_EQ(cancels[0].Header("Reason"),
              "SIP;cause=200;text=\"Call completed elsewhere\"");
  }
  EXPECT_THAT(RequestsTo(out, 5072, Method::kCancel), IsEmpty());
  EXPECT_THAT(RequestsTo(out, 5074, Method::kInvite), IsEmpty());
  EXPECT_EQ(Targets(TargetOutcome::kAnswered), 1u);
  EXPECT_EQ(Targets(TargetOutcome::kCancelled), 2u);

  // The losers' 487s are ACKed by their transactions and reach nobody.
  Deliver(target(1).Answer(invite(1), 487, "Request Terminated"), target(1).peer());
  out = TakeSent();
  EXPECT_EQ(RequestsTo(out, 5071, Method::kAck).size(), 1u);
  EXPECT_THAT(ResponsesTo(out, kCallerPort), IsEmpty());

  caller_.to_tag = to_caller[0].to_tag();
  Deliver(caller_.Ack2xx(), caller_.peer());
  std::vector<Sent> acks = RequestsTo(TakeSent(), 5072, Method::kAck);
  ASSERT_EQ(acks.size(), 1u);
  EXPECT_EQ(acks[0].cseq(), invite(2).cseq()) << "the winner's CSeq";

  // A loser whose 200 crossed our CANCEL is ACKed and released with BYE.
  Deliver(target(3).Answer(invite(3), 200, "OK", kAnswerSdp), target(3).peer());
  out = TakeSent();
  EXPECT_EQ(RequestsTo(out, 5073, Method::kAck).size(), 1u);
  EXPECT_EQ(RequestsTo(out, 5073, Method::kBye).size(), 1u);
  EXPECT_THAT(ResponsesTo(out, kCallerPort), IsEmpty());
  EXPECT_EQ(engine_->active_calls(), 1u);

  // The call record lists every branch with its start.
  Deliver(caller_.Bye(), caller_.peer());
  ASSERT_EQ(records_.lines.size(), 1u);
  EXPECT_THAT(records_.lines[0], HasSubstr("{target=\"sip:t2@127.0.0.1:5072\" q=1.000 "
                                           "state=answered status=200 answer_ms=0 start_ms=0}"));
  EXPECT_THAT(records_.lines[0], HasSubstr("{target=\"sip:t1@127.0.0.1:5071\" q=1.000 "
                                           "state=cancelled status=0"));
}

TEST_F(ForkingTest, NextGroupStartsWhenEveryBranchOfTheGroupFailed) {
  ASSERT_NO_FATAL_FAILURE(RedirectTo(kTwoGroups));
  Deliver(target(1).Answer(invite(1), 486, "Busy Here"), target(1).peer());
  Deliver(target(3).Answer(invite(3), 404, "Not Found"), target(3).peer());
  Collect(TakeSent());
  EXPECT_FALSE(invited(4)) << "t2 is still ringing";
  Advance(1s);
  Deliver(target(2).Answer(invite(2), 503, "Service Unavailable"), target(2).peer());
  std::vector<Sent> out = TakeSent();
  Collect(out);
  ASSERT_TRUE(invited(4));
  EXPECT_THAT(Statuses(ResponsesTo(out, kCallerPort)), IsEmpty());

  Deliver(target(4).Answer(invite(4), 480, "Temporarily Unavailable"), target(4).peer());
  std::vector<Sent> to_caller = ResponsesTo(TakeSent(), kCallerPort);
  ASSERT_EQ(to_caller.size(), 1u);
  EXPECT_EQ(to_caller[0].status(), 486) << "RFC 3261 16.7: the best 4xx of every branch";
  EXPECT_EQ(Targets(TargetOutcome::kFailed), 4u);
  EXPECT_EQ(engine_->active_calls(), 0u);
  ASSERT_EQ(records_.lines.size(), 1u);
  EXPECT_THAT(records_.lines[0], HasSubstr("{target=\"sip:t4@127.0.0.1:5074\" q=0.500 "
                                           "state=failed status=480 answer_ms=0 start_ms=1000}"));
}

TEST_F(ForkingTest, SixHundredFromOneBranchEndsTheSearchAndCancelsTheOthers) {
  ASSERT_NO_FATAL_FAILURE(RedirectTo(kTwoGroups));
  Deliver(target(1).Answer(invite(1), 180, "Ringing"), target(1).peer());
  TakeSent();
  Deliver(target(2).Answer(invite(2), 603, "Decline"), target(2).peer());
  std::vector<Sent> out = TakeSent();
  std::vector<Sent> to_caller = ResponsesTo(out, kCallerPort);
  ASSERT_EQ(to_caller.size(), 1u);
  EXPECT_EQ(to_caller[0].status(), 603);
  EXPECT_EQ(RequestsTo(out, 5071, Method::kCancel).size(), 1u) << "ringing: cancelled now";
  EXPECT_THAT(RequestsTo(out, 5074, Method::kInvite), IsEmpty());
  EXPECT_EQ(engine_->active_calls(), 0u);
  // t3 never sent a provisional: its CANCEL waits for one (RFC 3261 9.1).
  Deliver(target(3).Answer(invite(3), 180, "Ringing"), target(3).peer());
  out = TakeSent();
  EXPECT_EQ(RequestsTo(out, 5073, Method::kCancel).size(), 1u);
  EXPECT_THAT(ResponsesTo(out, kCallerPort), IsEmpty());
}

TEST_F(ForkingTest, CallerCancelReachesEveryBranchAndGets487Once) {
  ASSERT_NO_FATAL_FAILURE(RedirectTo(kTwoGroups));
  for (int n : {1, 2, 3}) Deliver(target(n).Answer(invite(n), 180, "Ringing"), target(n).peer());
  TakeSent();
  Deliver(caller_.Cancel(), caller_.peer());
  std::vector<Sent> out = TakeSent();
  EXPECT_THAT(Statuses(ResponsesTo(out, kCallerPort)), ElementsAre(200, 487));
  for (int n : {1, 2, 3}) {
    std::vector<Sent> cancels = RequestsTo(out, target(n).port, Method::kCancel);
    ASSERT_EQ(cancels.size(), 1u) << "t" << n;
    EXPECT_FALSE(cancels[0].HasHeader("Reason")) << "not completed elsewhere";
  }
  EXPECT_EQ(engine_->active_calls(), 1u) << "until the branches' 487s are in";
  for (int n : {1, 2, 3})
    Deliver(target(n).Answer(invite(n), 487, "Request Terminated"), target(n).peer());
  out = TakeSent();
  EXPECT_THAT(ResponsesTo(out, kCallerPort), IsEmpty()) << "487 once";
  EXPECT_THAT(RequestsTo(out, 5074, Method::kInvite), IsEmpty());
  EXPECT_EQ(engine_->active_calls(), 0u);
  EXPECT_EQ(Ended(CallOutcome::kCancelled), 1u);
  EXPECT_EQ(Targets(TargetOutcome::kCancelled), 3u);
}

TEST_F(ForkingTest, OnlyTheFirstBranchWithABodyGivesTheCallerEarlyMedia) {
  ASSERT_NO_FATAL_FAILURE(RedirectTo(kTwoGroups));
  Deliver(target(2).Answer(invite(2), 183, "Session Progress", kAnswerSdp), target(2).peer());
  Deliver(target(1).Answer(invite(1), 183, "Session Progress", "v=0\r\no=other\r\n"),
          target(1).peer());
  std::vector<Sent> to_caller = ResponsesTo(TakeSent(), kCallerPort);
  ASSERT_EQ(to_caller.size(), 2u);
  EXPECT_EQ(to_caller[0].body(), kAnswerSdp);
  EXPECT_EQ(to_caller[1].body(), "") << "t1's media would be a second early dialog";
  EXPECT_EQ(to_caller[0].to_tag(), to_caller[1].to_tag()) << "one early dialog";

  // When the media's branch ends, the next one with a body takes over.
  Deliver(target(2).Answer(invite(2), 486, "Busy Here"), target(2).peer());
  Deliver(target(1).Answer(invite(1), 183, "Session Progress", "v=0\r\no=other\r\n"),
          target(1).peer());
  to_caller = ResponsesTo(TakeSent(), kCallerPort);
  ASSERT_EQ(to_caller.size(), 1u);
  EXPECT_EQ(to_caller[0].body(), "v=0\r\no=other\r\n");
}

TEST_F(ForkingTest, EarlyMediaNoneRelaysRingingWithoutBodies) {
  ASSERT_NO_FATAL_FAILURE(RedirectTo(
      kTwoGroups, "redirect: {fork: parallel_equal_q, early_media: none}\n"));
  Deliver(target(2).Answer(invite(2), 183, "Session Progress", kAnswerSdp), target(2).peer());
  std::vector<Sent> to_caller = ResponsesTo(TakeSent(), kCallerPort);
  ASSERT_EQ(to_caller.size(), 1u);
  EXPECT_EQ(to_caller[0].status(), 183);
  EXPECT_EQ(to_caller[0].body(), "");
}

TEST_F(ForkingTest, MaxParallelSplitsALargeGroup) {
  ASSERT_NO_FATAL_FAILURE(
      RedirectTo(kTwoGroups, "redirect: {fork: parallel_equal_q, max_parallel: 2}\n"));
  ASSERT_TRUE(invited(1) && invited(2));
  EXPECT_FALSE(invited(3));
  Deliver(target(1).Answer(invite(1), 486, "Busy Here"), target(1).peer());
  Deliver(target(2).Answer(invite(2), 486, "Busy Here"), target(2).peer());
  Collect(TakeSent());
  ASSERT_TRUE(invited(3)) << "the rest of the q=1.0 targets";
  EXPECT_FALSE(invited(4));
}

TEST_F(ForkingTest, MaxTargetsCountsEveryParallelAttempt) {
  ASSERT_NO_FATAL_FAILURE(
      RedirectTo(kTwoGroups, "redirect: {fork: parallel_equal_q, max_targets: 2}\n"));
  ASSERT_TRUE(invited(1) && invited(2));
  EXPECT_FALSE(invited(3)) << "max_targets 2";
  Deliver(target(1).Answer(invite(1), 486, "Busy Here"), target(1).peer());
  Deliver(target(2).Answer(invite(2), 486, "Busy Here"), target(2).peer());
  std::vector<Sent> out = TakeSent();
  EXPECT_THAT(RequestsTo(out, 5073, Method::kInvite), IsEmpty());
  EXPECT_THAT(RequestsTo(out, 5074, Method::kInvite), IsEmpty());
  EXPECT_THAT(Statuses(ResponsesTo(out, kCallerPort)), ElementsAre(486));
}

TEST_F(ForkingTest, BranchThatRingsTooLongIsCancelledWhileTheOthersRing) {
  ASSERT_NO_FATAL_FAILURE(RedirectTo(
      kTwoGroups, "redirect: {fork: parallel_equal_q, target_timeout: 2s}\n"));
  for (int n : {1, 2, 3}) Deliver(target(n).Answer(invite(n), 180, "Ringing"), target(n).peer());
  TakeSent();
  Advance(2100ms);
  std::vector<Sent> out = TakeSent();
  for (int n : {1, 2, 3}) EXPECT_EQ(RequestsTo(out, target(n).port, Method::kCancel).size(), 1u);
  Collect(out);
  ASSERT_TRUE(invited(4)) << "every branch of the group timed out: the next group";
  EXPECT_EQ(Targets(TargetOutcome::kTimeout), 3u);
  Deliver(target(4).Answer(invite(4), 200, "OK", kAnswerSdp), target(4).peer());
  EXPECT_THAT(Statuses(ResponsesTo(TakeSent(), kCallerPort)), ElementsAre(200));
}

TEST_F(ForkingTest, RedirectFromOneBranchWaitsForTheGroup) {
  ASSERT_NO_FATAL_FAILURE(RedirectTo(
      "Contact: <sip:t1@127.0.0.1:5071>, <sip:t2@127.0.0.1:5072>\r\n"));
  ASSERT_TRUE(invited(1) && invited(2));
  Deliver(target(1).Redirect(invite(1), 302, "Contact: <sip:t3@127.0.0.1:5073>\r\n"),
          target(1).peer());
  Collect(TakeSent());
  EXPECT_FALSE(invited(3)) << "t2 is still ringing";
  Deliver(target(2).Answer(invite(2), 486, "Busy Here"), target(2).peer());
  Collect(TakeSent());
  ASSERT_TRUE(invited(3));
  EXPECT_EQ(invite(3).msg().max_forwards(), caller_.max_forwards - 3) << "two redirect levels";
  Deliver(target(3).Answer(invite(3), 200, "OK", kAnswerSdp), target(3).peer());
  EXPECT_THAT(Statuses(ResponsesTo(TakeSent(), kCallerPort)), ElementsAre(200));
}

TEST_F(ForkingTest, SerialStaysTheDefault) {
  ASSERT_NO_FATAL_FAILURE(RedirectTo(kTwoGroups, ""));
  EXPECT_TRUE(invited(1));
  EXPECT_FALSE(invited(2));
  EXPECT_FALSE(invited(3));
}

}  // namespace
}  // namespace b2bua::engine_test
