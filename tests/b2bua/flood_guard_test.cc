// Tests b2bua/flood_guard.{h,cc}: the per-source window, the block and its end, sources
// kept apart, and the bound on the table, all on a fake clock.

#include "b2bua/flood_guard.h"

#include <chrono>
#include <string>
#include <string_view>

#include "gtest/gtest.h"
#include "proto/clock.h"

namespace b2bua {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Verdict = FloodGuard::Verdict;

proto::NetAddress Ip(std::string_view text, uint16_t port = 5060) {
  proto::NetAddress address;
  EXPECT_TRUE(proto::NetAddress::ParseIp(text, port, &address)) << text;
  return address;
}

FloodSettings Settings(uint32_t max_requests, uint32_t max_sources = 1000) {
  FloodSettings s;
  s.window = seconds(2);
  s.max_requests = max_requests;
  s.block_for = seconds(60);
  s.max_sources = max_sources;
  return s;
}

TEST(FloodGuardTest, BlocksTheRequestOverTheLimitAndSaysSoOnce) {
  proto::FakeClock clock;
  FloodGuard guard;
  const FloodSettings s = Settings(5);
  for (int i = 0; i < 5; ++i)
    EXPECT_EQ(guard.Count(Ip("192.0.2.1"), clock.Now(), s), Verdict::kPass) << i;
  EXPECT_EQ(guard.Count(Ip("192.0.2.1"), clock.Now(), s), Verdict::kBlockedNow);
  EXPECT_EQ(guard.blocked(), 1u);
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(guard.Count(Ip("192.0.2.1"), clock.Now(), s), Verdict::kBlocked);
  EXPECT_EQ(guard.blocked(), 1u);
}

TEST(FloodGuardTest, TheWindowStartsAfresh) {
  proto::FakeClock clock;
  FloodGuard guard;
  const FloodSettings s = Settings(5);
  // 5 requests in each of many 2 s windows: never over the limit.
  for (int window = 0; window < 10; ++window) {
    for (int i = 0; i < 5; ++i)
      ASSERT_EQ(guard.Count(Ip("192.0.2.1"), clock.Now(), s), Verdict::kPass);
    clock.Advance(seconds(2));
  }
  EXPECT_EQ(guard.blocked(), 0u);
}

TEST(FloodGuardTest, PortsOfOneAddressCountTogether) {
  proto::FakeClock clock;
  FloodGuard guard;
  const FloodSettings s = Settings(3);
  EXPECT_EQ(guard.Count(Ip("192.0.2.1", 1000), clock.Now(), s), Verdict::kPass);
  EXPECT_EQ(guard.Count(Ip("192.0.2.1", 1001), clock.Now(), s), Verdict::kPass);
  EXPECT_EQ(guard.Count(Ip("192.0.2.1", 1002), clock.Now(), s), Verdict::kPass);
  EXPECT_EQ(guard.Count(Ip("192.0.2.1", 1003), clock.Now(), s), Verdict::kBlockedNow);
}

TEST(FloodGuardTest, AnotherSourceIsNotAffected) {
  proto::FakeClock clock;
  FloodGuard guard;
  const FloodSettings s = Settings(3);
  for (int i = 0; i < 10; ++i) guard.Count(Ip("192.0.2.1"), clock.Now(), s);
  EXPECT_EQ(guard.Count(Ip("192.0.2.1"), clock.Now(), s), Verdict::kBlocked);
  EXPECT_EQ(guard.Count(Ip("192.0.2.2"), clock.Now(), s), Verdict::kPass);
  EXPECT_EQ(guard.Count(Ip("2001:db8::1"), clock.Now(), s), Verdict::kPass);
}

TEST(FloodGuardTest, TheBlockEndsAfterBlockFor) {
  proto::FakeClock clock;
  FloodGuard guard;
  const FloodSettings s = Settings(2);
  for (int i = 0; i < 3; ++i) guard.Count(Ip("192.0.2.1"), clock.Now(), s);
  clock.Advance(seconds(59));
  EXPECT_EQ(guard.Count(Ip("192.0.2.1"), clock.Now(), s), Verdict::kBlocked);
  clock.Advance(seconds(1));
  EXPECT_EQ(guard.Count(Ip("192.0.2.1"), clock.Now(), s), Verdict::kPass);
  EXPECT_EQ(guard.blocked(), 0u);
}

TEST(FloodGuardTest, SweepLiftsEndedBlocksAndForgetsIdleSources) {
  proto::FakeClock clock;
  FloodGuard guard;
  const FloodSettings s = Settings(2);
  for (int i = 0; i < 3; ++i) guard.Count(Ip("192.0.2.1"), clock.Now(), s);
  guard.Count(Ip("192.0.2.2"), clock.Now(), s);
  EXPECT_EQ(guard.tracked(), 2u);
  clock.Advance(seconds(3));
  guard.Sweep(clock.Now(), s);
  EXPECT_EQ(guard.tracked(), 1u);  // the idle one is gone, the blocked one stays
  EXPECT_EQ(guard.blocked(), 1u);
  clock.Advance(seconds(60));
  guard.Sweep(clock.Now(), s);
  EXPECT_EQ(guard.tracked(), 0u);
  EXPECT_EQ(guard.blocked(), 0u);
}

// Spoofed sources cannot grow the table past max_sources; once it is full of live
// entries a new source passes untracked and is counted.
TEST(FloodGuardTest, TheTableIsBounded) {
  proto::FakeClock clock;
  FloodGuard guard;
  const FloodSettings s = Settings(100, 1000);
  for (uint32_t i = 0; i < 5000; ++i) {
    proto::NetAddress a = Ip("10.0.0.0");
    std::string text = std::to_string(10) + "." + std::to_string((i >> 16) & 255) + "." +
                       std::to_string((i >> 8) & 255) + "." + std::to_string(i & 255);
    ASSERT_TRUE(proto::NetAddress::ParseIp(text, 5060, &a));
    EXPECT_EQ(guard.Count(a, clock.Now(), s), Verdict::kPass);
  }
  EXPECT_EQ(guard.tracked(), 1000u);
  EXPECT_EQ(guard.untracked(), 4000u);
  // Once their window has passed, the idle entries make room again.
  clock.Advance(seconds(2));
  EXPECT_EQ(guard.Count(Ip("192.0.2.1"), clock.Now(), s), Verdict::kPass);
  EXPECT_EQ(guard.tracked(), 1u);
}

TEST(FloodGuardTest, ZeroMaxRequestsTurnsItOff) {
  proto::FakeClock clock;
  FloodGuard guard;
  const FloodSettings s = Settings(0);
  for (int i = 0; i < 10000; ++i)
    ASSERT_EQ(guard.Count(Ip("192.0.2.1"), clock.Now(), s), Verdict::kPass);
  EXPECT_EQ(guard.tracked(), 0u);
}

}  // namespace
}  // namespace b2bua
