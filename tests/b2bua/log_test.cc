// Tests b2bua/log.{h,cc}: level parsing and the per-site flood guard.

#include "b2bua/log.h"

#include "gtest/gtest.h"

namespace b2bua {
namespace {

TEST(LogTest, LevelsParseByName) {
  LogLevel level = LogLevel::kError;
  EXPECT_TRUE(ParseLogLevel("debug", &level));
  EXPECT_EQ(level, LogLevel::kDebug);
  EXPECT_TRUE(ParseLogLevel("warning", &level));
  EXPECT_EQ(level, LogLevel::kWarning);
  EXPECT_FALSE(ParseLogLevel("verbose", &level));
  EXPECT_EQ(level, LogLevel::kWarning) << "a bad name changes nothing";
}

TEST(LogTest, EnabledFollowsTheLevel) {
  SetLogLevel(LogLevel::kWarning);
  EXPECT_TRUE(LogEnabled(LogLevel::kError));
  EXPECT_TRUE(LogEnabled(LogLevel::kWarning));
  EXPECT_FALSE(LogEnabled(LogLevel::kInfo));
  SetLogLevel(LogLevel::kInfo);
}

TEST(LogTest, RateLimitLetsABurstThroughThenCountsWhatItDrops) {
  LogRateLimit limit(3);
  uint64_t suppressed = 99;
  int allowed = 0;
  for (int i = 0; i < 10; ++i)
    if (limit.Allow(&suppressed)) ++allowed;
  // All ten calls land in the same second on any sane machine; if the second ticked over
  // in between, at most three more get through.
  EXPECT_GE(allowed, 3);
  EXPECT_LE(allowed, 6);
  EXPECT_EQ(suppressed, 0u) << "nothing was dropped before the lines that passed";
}

}  // namespace
}  // namespace b2bua
