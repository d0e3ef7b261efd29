// Tests b2bua/redirect_cache.{h,cc}: what a 301 teaches, for how long, and within what
// size, on a fake clock.

#include "b2bua/redirect_cache.h"

#include <chrono>
#include <string>

#include "gtest/gtest.h"
#include "proto/clock.h"

namespace b2bua {
namespace {

using std::chrono::seconds;

TEST(RedirectCacheTest, RemembersUntilItExpires) {
  proto::FakeClock clock;
  RedirectCache cache;
  cache.Learn("sip:old@example.com", "sip:new@example.net", clock.Now() + seconds(60), 10,
              clock.Now());
  ASSERT_TRUE(cache.Find("sip:old@example.com", clock.Now()).has_value());
  EXPECT_EQ(*cache.Find("sip:old@example.com", clock.Now()), "sip:new@example.net");
  EXPECT_FALSE(cache.Find("sip:other@example.com", clock.Now()).has_value());
  clock.Advance(seconds(59));
  EXPECT_TRUE(cache.Find("sip:old@example.com", clock.Now()).has_value());
  clock.Advance(seconds(1));
  EXPECT_FALSE(cache.Find("sip:old@example.com", clock.Now()).has_value());
  EXPECT_EQ(cache.size(), 0u);  // dropped on the way
}

TEST(RedirectCacheTest, ALaterAnswerReplacesAnEarlierOne) {
  proto::FakeClock clock;
  RedirectCache cache;
  cache.Learn("sip:a@x", "sip:first@y", clock.Now() + seconds(10), 10, clock.Now());
  cache.Learn("sip:a@x", "sip:second@y", clock.Now() + seconds(100), 10, clock.Now());
  clock.Advance(seconds(50));
  ASSERT_TRUE(cache.Find("sip:a@x", clock.Now()).has_value());
  EXPECT_EQ(*cache.Find("sip:a@x", clock.Now()), "sip:second@y");
  EXPECT_EQ(cache.size(), 1u);
}

TEST(RedirectCacheTest, NeverGrowsPastItsCapacity) {
  proto::FakeClock clock;
  RedirectCache cache;
  for (int i = 0; i < 1000; ++i) {
    cache.Learn("sip:u" + std::to_string(i) + "@x", "sip:t@y", clock.Now() + seconds(60), 16,
                clock.Now());
    ASSERT_LE(cache.size(), 16u);
  }
  // The newest is always there.
  EXPECT_TRUE(cache.Find("sip:u999@x", clock.Now()).has_value());
}

TEST(RedirectCacheTest, AFullCacheForgetsExpiredEntriesFirst) {
  proto::FakeClock clock;
  RedirectCache cache;
  cache.Learn("sip:keep@x", "sip:t@y", clock.Now() + seconds(600), 3, clock.Now());
  cache.Learn("sip:old1@x", "sip:t@y", clock.Now() + seconds(10), 3, clock.Now());
  cache.Learn("sip:old2@x", "sip:t@y", clock.Now() + seconds(10), 3, clock.Now());
  clock.Advance(seconds(20));
  cache.Learn("sip:new@x", "sip:t@y", clock.Now() + seconds(60), 3, clock.Now());
  EXPECT_TRUE(cache.Find("sip:keep@x", clock.Now()).has_value());
  EXPECT_TRUE(cache.Find("sip:new@x", clock.Now()).has_value());
  EXPECT_EQ(cache.size(), 2u);
}

TEST(RedirectCacheTest, CapacityZeroOrExpiredKeepsNothing) {
  proto::FakeClock clock;
  RedirectCache cache;
  cache.Learn("sip:a@x", "sip:t@y", clock.Now() + seconds(60), 0, clock.Now());
  cache.Learn("sip:b@x", "sip:t@y", clock.Now(), 10, clock.Now());
  EXPECT_EQ(cache.size(), 0u);
}

}  // namespace
}  // namespace b2bua
