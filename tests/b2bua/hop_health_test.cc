// Tests b2bua/hop_health.{h,cc}: 503 Retry-After rests, the probes' verdicts, and the
// bounds on both.

#include "b2bua/hop_health.h"

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "gtest/gtest.h"
#include "proto/sip_parser.h"

namespace b2bua {
namespace {

using namespace std::chrono_literals;

proto::NetAddress Address(const char* ip_port) {
  proto::NetAddress address;
  EXPECT_TRUE(proto::NetAddress::ParseIpPort(ip_port, &address)) << ip_port;
  return address;
}

// The Retry-After a 503 carrying `retry_after` (no header when empty) asks for.
std::optional<proto::Duration> RetryAfterOf(const std::string& retry_after) {
  std::string bytes =
      "SIP/2.0 503 Service Unavailable\r\n"
      "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds\r\n"
      "From: <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
      "To: <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n"
      "Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
      "CSeq: 314159 INVITE\r\n";
  if (!retry_after.empty()) bytes += "Retry-After: " + retry_after + "\r\n";
  bytes += "Content-Length: 0\r\n\r\n";
  auto message = std::make_unique<proto::SipMessage>();
  const proto::ParseResult result =
      proto::SipParser().Parse(bytes, proto::Framing::kDatagram, message.get());
  EXPECT_EQ(result.status, proto::ParseStatus::kComplete) << bytes;
  return HopHealth::RetryAfter(*message);
}

TEST(HopHealthTest, RetryAfterIsReadInSeconds) {
  EXPECT_EQ(RetryAfterOf("30"), std::optional<proto::Duration>(30s));
  EXPECT_EQ(RetryAfterOf("120 (maintenance);duration=60"), std::optional<proto::Duration>(120s));
  EXPECT_EQ(RetryAfterOf("86400000"), std::optional<proto::Duration>(HopHealth::kMaxRest))
      << "capped";
  EXPECT_EQ(RetryAfterOf("0"), std::nullopt) << "0 asks for no rest";
  // "Retry-After: soon" never gets here: the parser refuses the response.
  EXPECT_EQ(RetryAfterOf(""), std::nullopt) << "no header";
}

TEST(HopHealthTest, AResting503HopIsSkippedUntilItsTime) {
  HopHealth health;
  const proto::TimePoint now{};
  const proto::NetAddress hop = Address("192.0.2.10:5060");
  EXPECT_FALSE(health.Skip(hop, now));
  health.Rest(hop, now + 30s);
  EXPECT_TRUE(health.Skip(hop, now + 29s));
  EXPECT_FALSE(health.Skip(hop, now + 30s));
  EXPECT_FALSE(health.Skip(Address("192.0.2.10:5070"), now)) << "another port, another hop";
}

TEST(HopHealthTest, RestingTableIsBounded) {
  HopHealth health;
  const proto::TimePoint now{};
  const proto::NetAddress first = Address("10.0.0.1:5060");
  health.Rest(first, now + 1h);
  for (uint32_t i = 0; i < HopHealth::kMaxResting; ++i) {
    const proto::NetAddress hop = Address(("10.1." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1) +
                   ":5060").c_str());
    health.Rest(hop, now + 1h);
  }
  EXPECT_FALSE(health.Skip(first, now)) << "the table started over rather than grow";
  // A hop already in the table never makes it start over.
  const proto::NetAddress last = Address("10.1.4.24:5060");
  health.Rest(last, now + 2h);
  EXPECT_TRUE(health.Skip(last, now + 90min));
}

TEST(HopHealthTest, ProbesMarkHopsDeadAndAliveAgain) {
  HopHealth health;
  const proto::TimePoint now{};
  const proto::NetAddress a = Address("192.0.2.1:5060");
  const proto::NetAddress b = Address("192.0.2.2:5060");
  const uint64_t round = health.StartRound();
  EXPECT_EQ(health.round(), round);
  const std::optional<size_t> slot_a = health.AddProbe(a);
  const std::optional<size_t> slot_b = health.AddProbe(b);
  ASSERT_TRUE(slot_a && slot_b);
  EXPECT_FALSE(health.AddProbe(a)) << "one probe per address a round";
  health.OnProbeResult(*slot_a, false);
  health.OnProbeResult(*slot_b, true);
  EXPECT_TRUE(health.Skip(a, now));
  EXPECT_FALSE(health.Skip(b, now));
  EXPECT_EQ(health.dead_count(), 1u);

  health.StartRound();
  health.OnProbeResult(*slot_b, false);  // the slot of the last round: nobody's now
  EXPECT_FALSE(health.Skip(b, now));
  const std::optional<size_t> again = health.AddProbe(a);
  ASSERT_TRUE(again);
  health.OnProbeResult(*again, true);
  EXPECT_FALSE(health.Skip(a, now)) << "answered again";

  health.OnProbeResult(99, false);  // unknown slot
  health.AddProbe(b);
  health.OnProbeResult(1, false);
  EXPECT_EQ(health.dead_count(), 1u);
  health.ForgetDead();
  EXPECT_EQ(health.dead_count(), 0u);
  EXPECT_FALSE(health.Skip(b, now));
}

}  // namespace
}  // namespace b2bua
