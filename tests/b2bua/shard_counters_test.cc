// Tests b2bua/shard_counters.{h,cc}: counters and gauges, the fixed histogram, and that
// every enum value has a label name of its own (the exporter prints them as label values).

#include "b2bua/shard_counters.h"

#include <set>
#include <string>

#include "gtest/gtest.h"

namespace b2bua {
namespace {

TEST(CounterTest, IncDecSet) {
  Counter c;
  c.Inc();
  c.Inc(4);
  EXPECT_EQ(c.Get(), 5u);
  c.Dec(2);
  EXPECT_EQ(c.Get(), 3u);
  c.Set(42);
  EXPECT_EQ(c.Get(), 42u);
}

TEST(FixedHistogramTest, BucketsAndSum) {
  FixedHistogram<3> h({0.1, 1, 10});
  h.Observe(0.05);
  h.Observe(0.1);   // on a bound: that bucket
  h.Observe(5);
  h.Observe(100);   // +Inf
  EXPECT_EQ(h.bucket(0), 2u);
  EXPECT_EQ(h.bucket(1), 0u);
  EXPECT_EQ(h.bucket(2), 1u);
  EXPECT_EQ(h.bucket(3), 1u);
  EXPECT_EQ(h.sum_micro(), 105150000u);
}

template <typename Enum, typename Name>
void ExpectDistinctNames(Enum count, Name name) {
  std::set<std::string> seen;
  for (size_t i = 0; i < static_cast<size_t>(count); ++i) {
    const std::string label(name(static_cast<Enum>(i)));
    EXPECT_NE(label, "other") << i;
    EXPECT_TRUE(seen.insert(label).second) << label;
  }
}

TEST(ShardCountersTest, EveryReasonHasALabelOfItsOwn) {
  ExpectDistinctNames(CallOutcome::kCount, CallOutcomeName);
  ExpectDistinctNames(TargetOutcome::kCount, TargetOutcomeName);
  ExpectDistinctNames(RedirectFailure::kCount, RedirectFailureName);
  ExpectDistinctNames(DropReason::kCount, DropReasonName);
  ExpectDistinctNames(RejectReason::kCount, RejectReasonName);
  ExpectDistinctNames(ConnectionClose::kCount, ConnectionCloseName);
  ExpectDistinctNames(HandshakeFailure::kCount, HandshakeFailureName);
  EXPECT_EQ(RejectReasonName(RejectReason::kRelayDenied), "relay_denied");
  EXPECT_EQ(HandshakeFailureName(HandshakeFailure::kVerify), "verify");
}

TEST(ShardCountersTest, RedirectCodesByName) {
  EXPECT_EQ(RedirectCodeName(ToRedirectCode(301)), "301");
  EXPECT_EQ(RedirectCodeName(ToRedirectCode(302)), "302");
  EXPECT_EQ(ToRedirectCode(399), RedirectCode::kOther);
}

// The exporter reads counters from another thread while the shard writes: each counter is
// on its own atomic, and the struct is cache-line aligned so two shards never share a line.
TEST(ShardCountersTest, AlignedToACacheLine) {
  EXPECT_EQ(alignof(ShardCounters), 64u);
  EXPECT_EQ(sizeof(ShardCounters) % 64, 0u);
}

}  // namespace
}  // namespace b2bua
