// Tests the next-hop OPTIONS probes of b2bua/call_engine: a hop that stops answering is
// skipped by new calls until it answers again. The shared harness of
// call_engine_harness.h: the real TransactionLayer on a fake clock.

#include "tests/b2bua/call_engine_harness.h"

namespace b2bua::engine_test {
namespace {

constexpr std::string_view kTwoHops = R"yaml(
probe: {options_interval: 10s}
routes:
  - prefix: ""
    next_hops: ["sip:127.0.0.1:5070", "sip:127.0.0.1:5071"]
)yaml";

// Every name resolves to two addresses on 127.0.0.1, ports 5070 and 5071, at once.
class TwoAddressResolver final : public TargetResolver {
 public:
  void Resolve(std::string_view host, uint16_t port,
               std::optional<proto::TransportKind> transport, bool sips,
               proto::ResolveCallback callback) override {
    callback(ResolvedTo({"127.0.0.1:5070", "127.0.0.1:5071"}));
  }
};

class ProbeTest : public CallEngineTest {
 protected:
  // What the B2BUA sent since the last Forget(), gathered across turns.
  const std::vector<Sent>& Outbox() {
    for (Sent& sent : TakeSent()) outbox_.push_back(std::move(sent));
    return outbox_;
  }
  void Forget() {
    Outbox();
    outbox_.clear();
  }

  std::vector<Sent> ProbesTo(uint16_t port) { return RequestsTo(Outbox(), port, Method::kOptions); }
  bool InviteSentTo(uint16_t port) { return !RequestsTo(Outbox(), port, Method::kInvite).empty(); }

  // A caller of its own for each call.
  void Call() {
    Caller caller;
    ++calls_;
    caller.request_uri = "sip:1000@127.0.0.1:5060";
    caller.call_id = "probe-call-" + std::to_string(calls_);
    caller.from_tag = "a" + std::to_string(calls_);
    caller.branch = "z9hG4bK-caller-" + std::to_string(calls_);
    Deliver(caller.Invite(), caller.peer());
  }

  std::vector<Sent> outbox_;
  int calls_ = 0;
};

TEST_F(ProbeTest, SilentHopIsSkippedUntilItAnswersAgain) {
  ASSERT_NO_FATAL_FAILURE(Start(kTwoHops));
  engine_->StartProbing();
  Advance(10s);  // shard 0 of 1 probes after one interval
  std::vector<Sent> to_first = ProbesTo(5070);
  std::vector<Sent> to_second = ProbesTo(5071);
  ASSERT_EQ(to_first.size(), 1u);
  ASSERT_EQ(to_second.size(), 1u);
  EXPECT_TRUE(to_first[0].call_id().starts_with("B2B0-")) << to_first[0].call_id();
  EXPECT_TRUE(to_first[0].call_id().ends_with("-probe")) << to_first[0].call_id();
  EXPECT_EQ(ShardForCallId(to_first[0].call_id(), 4), 0u)
      << "the Call-ID names the probing shard, so the answer returns to it";
  Deliver(ResponseTo(to_second[0], 200, "OK", "hop"), LoopbackPeer(5071));
  // The first hop never answers: Timer F (64*T1) declares it dead.
  Advance(33s);
  EXPECT_EQ(engine_->dead_hops(), 1u);

  Forget();
  Call();
  EXPECT_FALSE(InviteSentTo(5070)) << "a dead hop is skipped";
  EXPECT_TRUE(InviteSentTo(5071));

  // The next probe round: the first hop answers and is used again.
  Forget();
  Advance(10s);
  to_first = ProbesTo(5070);
  ASSERT_FALSE(to_first.empty());
  const size_t dead_before = engine_->dead_hops();
  Deliver(ResponseTo(to_first.back(), 200, "OK", "hop"), LoopbackPeer(5070));
  EXPECT_EQ(engine_->dead_hops(), dead_before - 1) << "its answer revives the first hop";
  Forget();
  Call();
  EXPECT_TRUE(InviteSentTo(5070));
}

TEST_F(ProbeTest, EveryHopDeadAnswers503) {
  ASSERT_NO_FATAL_FAILURE(Start(kTwoHops));
  engine_->StartProbing();
  Advance(10s);
  Advance(33s);  // neither answers
  EXPECT_EQ(engine_->dead_hops(), 2u);
  Forget();
  Call();
  EXPECT_THAT(Statuses(WithStatus(ResponsesTo(Outbox(), kCallerPort), 503)), ElementsAre(503));
  EXPECT_FALSE(InviteSentTo(5070));
  EXPECT_FALSE(InviteSentTo(5071));
}

TEST_F(ProbeTest, IntervalZeroSendsNoProbe) {
  ASSERT_NO_FATAL_FAILURE(
      Start("probe: {options_interval: 0}\nroutes: [{prefix: \"\", next_hops: "
            "[\"sip:127.0.0.1:5070\"]}]\n"));
  engine_->StartProbing();
  Advance(60s);
  EXPECT_TRUE(ProbesTo(5070).empty());
}

TEST_F(ProbeTest, NextHopNamedByHostIsProbedAtEveryAddressItResolvesTo) {
  TwoAddressResolver resolver;
  resolver_ = &resolver;
  ASSERT_NO_FATAL_FAILURE(Start("probe: {options_interval: 10s}\n"
                                "routes: [{prefix: \"\", next_hops: "
                                "[\"sip:trunk.example.net:5070\"]}]\n"));
  engine_->StartProbing();
  Advance(10s);
  std::vector<Sent> to_first = ProbesTo(5070);
  std::vector<Sent> to_second = ProbesTo(5071);
  ASSERT_EQ(to_first.size(), 1u);
  ASSERT_EQ(to_second.size(), 1u);
  EXPECT_EQ(to_first[0].request_uri(), "sip:trunk.example.net:5070");
  Deliver(ResponseTo(to_second[0], 200, "OK", "hop"), LoopbackPeer(5071));
  Advance(33s);  // the first address never answers
  EXPECT_EQ(engine_->dead_hops(), 1u);

  Forget();
  Call();
  EXPECT_FALSE(InviteSentTo(5070)) << "the dead address of the name is skipped";
  EXPECT_TRUE(InviteSentTo(5071));
}

}  // namespace
}  // namespace b2bua::engine_test
