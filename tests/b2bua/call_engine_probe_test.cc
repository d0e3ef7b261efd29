// Tests the next-hop OPTIONS probes of b2bua/call_engine: a hop that stops answering is
// skipped by new calls until it answers again. Real TransactionLayer, fake clock.

#include <memory>
#include <string>
#include <vector>

#include "b2bua/call_engine.h"
#include "b2bua/config.h"
#include "gtest/gtest.h"
#include "proto/clock.h"
#include "proto/sip_parser.h"
#include "proto/timer_wheel.h"
#include "proto/transaction.h"

namespace b2bua {
namespace {

using namespace std::chrono_literals;

struct Sent {
  proto::Peer to;
  std::string bytes;
};

class RecordingSink final : public proto::MessageSink {
 public:
  bool Send(const proto::Peer& to, std::string_view bytes) override {
    sent.push_back({to, std::string(bytes)});
    return true;
  }
  std::vector<Sent> sent;
};

proto::Peer Loopback(uint16_t port) {
  proto::Peer peer;
  proto::NetAddress::ParseIp("127.0.0.1", port, &peer.address);
  return peer;
}

// Every name resolves to two addresses on 127.0.0.1, ports 5070 and 5071, at once.
class TwoAddressResolver final : public TargetResolver {
 public:
  void Resolve(std::string_view host, uint16_t port,
               std::optional<proto::TransportKind> transport, bool sips,
               proto::ResolveCallback callback) override {
    ++queries;
    proto::ResolvedTargets result;
    result.status = proto::ResolveStatus::kOk;
    for (uint16_t to : {5070, 5071}) {
      proto::ResolvedTarget target;
      target.address = Loopback(to).address;
      result.targets.push_back(target);
    }
    callback(result);
  }
  int queries = 0;
};

class ProbeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Build("probe: {options_interval: 10s}\n"
          "routes:\n"
          "  - prefix: \"\"\n"
          "    next_hops: [\"sip:127.0.0.1:5070\", \"sip:127.0.0.1:5071\"]\n",
          nullptr);
  }

  void Build(const std::string& config_text, TargetResolver* resolver) {
    auto config = ParseConfig(config_text, "probe.yaml");
    ASSERT_TRUE(config.ok()) << config.status();
    ShardContext context;
    context.clock = &clock_;
    context.timers = &wheel_;
    context.sink = &sink_;
    context.counters = &counters_;
    context.resolver = resolver;
    proto::NetAddress::ParseIp("127.0.0.1", 5060, &context.local_address);
    layer_.reset();
    engine_ = std::make_unique<CallEngine>(context, *config);
    layer_ = std::make_unique<proto::TransactionLayer>(proto::TransactionConfig{}, wheel_, sink_,
                                                       *engine_);
    engine_->SetTransactionLayer(layer_.get());
  }

  void Advance(proto::Duration by) {
    for (proto::Duration step = 10ms; by > proto::Duration::zero(); by -= step) {
      clock_.Advance(step);
      wheel_.Advance();
    }
  }

  void Deliver(const std::string& text, const proto::Peer& from) {
    message_ = std::make_unique<proto::SipMessage>();
    buffer_ = text;
    ASSERT_EQ(parser_.Parse(buffer_, proto::Framing::kDatagram, message_.get()).status,
              proto::ParseStatus::kComplete);
    layer_->OnMessage(*message_, from);
  }

  // The OPTIONS probes sent to `port` since the last call, parsed.
  std::vector<std::string> TakeProbesTo(uint16_t port) {
    std::vector<std::string> out;
    for (const Sent& s : sink_.sent)
      if (s.to.address.port() == port && s.bytes.starts_with("OPTIONS ")) out.push_back(s.bytes);
    return out;
  }

  // A 200 answer to a request we sent, built from its own headers.
  std::string Answer(const std::string& request) {
    proto::SipMessage parsed;
    EXPECT_EQ(parser_.Parse(request, proto::Framing::kDatagram, &parsed).status,
              proto::ParseStatus::kComplete);
    return "SIP/2.0 200 OK\r\nVia: " + std::string(parsed.top_via()->text) +
           "\r\nFrom: " + std::string(parsed.from().text) + "\r\nTo: " +
           std::string(parsed.to().text) + ";tag=hop\r\nCall-ID: " +
           std::string(parsed.call_id()) + "\r\nCSeq: " + std::to_string(parsed.cseq().number) +
           " " + std::string(parsed.cseq().method_text) + "\r\nContent-Length: 0\r\n\r\n";
  }

  std::string Invite() {
    ++calls_;  // not inside the expression below: its operands are unsequenced
    return "INVITE sip:1000@127.0.0.1:5060 SIP/2.0\r\n"
           "Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-caller-" + std::to_string(calls_) +
           ";rport\r\nMax-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=a" +
           std::to_string(calls_) + "\r\nTo: <sip:1000@127.0.0.1>\r\nCall-ID: probe-call-" +
           std::to_string(calls_) + "\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@127.0.0.1:5061>\r\n"
           "Content-Length: 0\r\n\r\n";
  }

  bool InviteSentTo(uint16_t port) const {
    for (const Sent& s : sink_.sent)
      if (s.to.address.port() == port && s.bytes.starts_with("INVITE ")) return true;
    return false;
  }

  proto::FakeClock clock_;
  proto::TimerWheel wheel_{clock_, 10ms};
  RecordingSink sink_;
  ShardCounters counters_;
  std::unique_ptr<CallEngine> engine_;
  std::unique_ptr<proto::TransactionLayer> layer_;
  proto::SipParser parser_;
  std::unique_ptr<proto::SipMessage> message_;
  std::string buffer_;
  int calls_ = 0;
};

TEST_F(ProbeTest, SilentHopIsSkippedUntilItAnswersAgain) {
  engine_->StartProbing();
  Advance(10s);  // shard 0 of 1 probes after one interval
  std::vector<std::string> to_first = TakeProbesTo(5070);
  std::vector<std::string> to_second = TakeProbesTo(5071);
  ASSERT_EQ(to_first.size(), 1u);
  ASSERT_EQ(to_second.size(), 1u);
  EXPECT_NE(to_first[0].find("Call-ID: B2B0-probe-"), std::string::npos)
      << "the Call-ID names the probing shard, so the answer returns to it";
  Deliver(Answer(to_second[0]), Loopback(5071));
  // The first hop never answers: Timer F (64*T1) declares it dead.
  Advance(33s);
  EXPECT_EQ(engine_->dead_hops(), 1u);

  sink_.sent.clear();
  Deliver(Invite(), Loopback(5061));
  EXPECT_FALSE(InviteSentTo(5070)) << "a dead hop is skipped";
  EXPECT_TRUE(InviteSentTo(5071));

  // The next probe round: the first hop answers and is used again.
  sink_.sent.clear();
  Advance(10s);
  to_first = TakeProbesTo(5070);
  ASSERT_FALSE(to_first.empty());
  const size_t dead_before = engine_->dead_hops();
  Deliver(Answer(to_first.back()), Loopback(5070));
  EXPECT_EQ(engine_->dead_hops(), dead_before - 1) << "its answer revives the first hop";
  sink_.sent.clear();
  Deliver(Invite(), Loopback(5061));
  EXPECT_TRUE(InviteSentTo(5070));
}

TEST_F(ProbeTest, EveryHopDeadAnswers503) {
  engine_->StartProbing();
  Advance(10s);
  Advance(33s);  // neither answers
  EXPECT_EQ(engine_->dead_hops(), 2u);
  sink_.sent.clear();
  Deliver(Invite(), Loopback(5061));
  bool got_503 = false;
  for (const Sent& s : sink_.sent)
    if (s.to.address.port() == 5061 && s.bytes.starts_with("SIP/2.0 503")) got_503 = true;
  EXPECT_TRUE(got_503);
  EXPECT_FALSE(InviteSentTo(5070));
  EXPECT_FALSE(InviteSentTo(5071));
}

TEST_F(ProbeTest, IntervalZeroSendsNoProbe) {
  auto config = ParseConfig("probe: {options_interval: 0}\nroutes: [{prefix: \"\", next_hops: "
                            "[\"sip:127.0.0.1:5070\"]}]\n", "off.yaml");
  ASSERT_TRUE(config.ok());
  engine_->SetConfig(*config);
  engine_->StartProbing();
  Advance(60s);
  EXPECT_TRUE(TakeProbesTo(5070).empty());
}

TEST_F(ProbeTest, NextHopNamedByHostIsProbedAtEveryAddressItResolvesTo) {
  TwoAddressResolver resolver;
  ASSERT_NO_FATAL_FAILURE(Build("probe: {options_interval: 10s}\n"
                                "routes: [{prefix: \"\", next_hops: "
                                "[\"sip:trunk.example.net:5070\"]}]\n",
                                &resolver));
  engine_->StartProbing();
  Advance(10s);
  std::vector<std::string> to_first = TakeProbesTo(5070);
  std::vector<std::string> to_second = TakeProbesTo(5071);
  ASSERT_EQ(to_first.size(), 1u);
  ASSERT_EQ(to_second.size(), 1u);
  EXPECT_TRUE(to_first[0].starts_with("OPTIONS sip:trunk.example.net:5070 SIP/2.0\r\n"))
      << to_first[0];
  Deliver(Answer(to_second[0]), Loopback(5071));
  Advance(33s);  // the first address never answers
  EXPECT_EQ(engine_->dead_hops(), 1u);

  sink_.sent.clear();
  Deliver(Invite(), Loopback(5061));
  EXPECT_FALSE(InviteSentTo(5070)) << "the dead address of the name is skipped";
  EXPECT_TRUE(InviteSentTo(5071));
}

}  // namespace
}  // namespace b2bua
