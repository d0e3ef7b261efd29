// Tests b2bua/reliable_2xx.h: the RFC 3261 13.3.1.4 re-send schedule of a 2xx to INVITE.

#include "b2bua/reliable_2xx.h"

#include <chrono>
#include <optional>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace b2bua {
namespace {

using namespace std::chrono_literals;
using ::testing::ElementsAre;

TEST(Reliable2xxScheduleTest, DoublesFromT1UpToT2AndEndsAt64T1) {
  Reliable2xxSchedule schedule;
  proto::TimePoint now{};
  std::vector<long> waits_ms;
  proto::Duration wait = schedule.Start(now, 500ms, 4s);
  EXPECT_EQ(wait, 500ms);
  for (;;) {
    now += wait;
    std::optional<proto::Duration> next = schedule.Next(now);
    if (!next) break;
    waits_ms.push_back(std::chrono::duration_cast<std::chrono::milliseconds>(*next).count());
    wait = *next;
  }
  // Re-sends at 0.5, 1.5, 3.5, 7.5, 11.5 ... s; the last wait is cut to end at 32 s.
  EXPECT_THAT(waits_ms, ElementsAre(1000, 2000, 4000, 4000, 4000, 4000, 4000, 4000, 4000, 500));
  EXPECT_EQ(now, proto::TimePoint{} + 32s) << "given up exactly at 64*T1";
  EXPECT_EQ(schedule.sends(), 11) << "the first send and ten re-sends";
}

TEST(Reliable2xxScheduleTest, ALateTimerStillEndsAtTheDeadline) {
  Reliable2xxSchedule schedule;
  const proto::TimePoint start{};
  schedule.Start(start, 500ms, 4s);
  // A loop turn that ran late: the next wait never reaches past 64*T1.
  std::optional<proto::Duration> next = schedule.Next(start + 31s);
  ASSERT_TRUE(next);
  EXPECT_EQ(*next, 1s);
  EXPECT_FALSE(schedule.Next(start + 32s));
  EXPECT_EQ(schedule.sends(), 2);
}

TEST(Reliable2xxScheduleTest, StartsOverForEachNew2xx) {
  Reliable2xxSchedule schedule;
  schedule.Start(proto::TimePoint{}, 500ms, 4s);
  EXPECT_FALSE(schedule.Next(proto::TimePoint{} + 40s));
  const proto::TimePoint later = proto::TimePoint{} + 100s;
  EXPECT_EQ(schedule.Start(later, 200ms, 4s), 200ms);
  EXPECT_EQ(schedule.Next(later + 200ms), 400ms);
  EXPECT_EQ(schedule.sends(), 2);
}

}  // namespace
}  // namespace b2bua
