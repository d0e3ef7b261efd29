// Tests b2bua/call_limits.{h,cc}: the token bucket, the concurrency ceiling and the
// per-source count-min sketch, on a fake clock.

#include "b2bua/call_limits.h"

#include <chrono>
#include <string>
#include <string_view>

#include "gtest/gtest.h"
#include "proto/clock.h"

namespace b2bua {
namespace {

using std::chrono::milliseconds;

proto::NetAddress Ip(std::string_view text, uint16_t port = 5060) {
  proto::NetAddress address;
  EXPECT_TRUE(proto::NetAddress::ParseIp(text, port, &address)) << text;
  return address;
}

TEST(RateLimiterTest, OneSecondOfTokensThenTheRate) {
  proto::FakeClock clock;
  RateLimiter limiter;
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(limiter.TryAcquire(clock.Now(), 10)) << i;
  EXPECT_FALSE(limiter.TryAcquire(clock.Now(), 10));
  clock.Advance(milliseconds(99));
  EXPECT_FALSE(limiter.TryAcquire(clock.Now(), 10));
  clock.Advance(milliseconds(1));
  EXPECT_TRUE(limiter.TryAcquire(clock.Now(), 10));
  EXPECT_FALSE(limiter.TryAcquire(clock.Now(), 10));
}

TEST(RateLimiterTest, SteadyRateIsKept) {
  proto::FakeClock clock;
  RateLimiter limiter;
  int admitted = 0;
  // 100 offered a second for 10 s against a limit of 20/s: 20 burst + 20 a second.
  for (int ms = 0; ms < 10000; ms += 10) {
    if (limiter.TryAcquire(clock.Now(), 20)) ++admitted;
    clock.Advance(milliseconds(10));
  }
  EXPECT_GE(admitted, 200);
  EXPECT_LE(admitted, 221);
}

TEST(RateLimiterTest, ZeroIsNoLimit) {
  proto::FakeClock clock;
  RateLimiter limiter;
  for (int i = 0; i < 100000; ++i) ASSERT_TRUE(limiter.TryAcquire(clock.Now(), 0));
}

TEST(ConcurrencyLimitTest, CeilingAndRelease) {
  ConcurrencyLimit limit;
  EXPECT_TRUE(limit.TryAcquire(2));
  EXPECT_TRUE(limit.TryAcquire(2));
  EXPECT_FALSE(limit.TryAcquire(2));
  EXPECT_EQ(limit.active(), 2u);
  limit.Release();
  EXPECT_TRUE(limit.TryAcquire(2));
  EXPECT_TRUE(limit.TryAcquire(0));  // 0: no ceiling, still counted
  EXPECT_EQ(limit.active(), 3u);
}

TEST(SourceCallCounterTest, PerSourceCeiling) {
  SourceCallCounter counter;
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(counter.TryAcquire(Ip("192.0.2.1", 5000 + i), 5));
  EXPECT_FALSE(counter.TryAcquire(Ip("192.0.2.1"), 5));
  EXPECT_EQ(counter.Count(Ip("192.0.2.1")), 5u);
  // Another address has its own count.
  EXPECT_TRUE(counter.TryAcquire(Ip("192.0.2.2"), 5));
  counter.Release(Ip("192.0.2.1"));
  EXPECT_TRUE(counter.TryAcquire(Ip("192.0.2.1"), 5));
  EXPECT_FALSE(counter.TryAcquire(Ip("192.0.2.1"), 5));
}

// Thousands of sources each holding calls: none is refused below its ceiling (the sketch
// over-counts only when all four of a source's counters are shared: odds near 1e-7 here).
TEST(SourceCallCounterTest, ManySourcesKeepTheirOwnCounts) {
  SourceCallCounter counter;
  int refused = 0;
  for (int i = 0; i < 1000; ++i) {
    const std::string ip = "10.0." + std::to_string(i / 256) + "." + std::to_string(i % 256);
    for (int call = 0; call < 3; ++call)
      if (!counter.TryAcquire(Ip(ip), 3)) ++refused;
  }
  EXPECT_EQ(refused, 0);
  EXPECT_FALSE(counter.TryAcquire(Ip("10.0.0.7"), 3));
}

}  // namespace
}  // namespace b2bua
