// Tests b2bua/sip_tokens.{h,cc}: the words the B2BUA writes are unique, name their shard,
// and its branches are recognisable as its own.

#include "b2bua/sip_tokens.h"

#include <set>
#include <string>

#include "absl/container/flat_hash_set.h"
#include "gtest/gtest.h"

namespace b2bua {
namespace {

TEST(TokenSourceTest, TokensNeverRepeatWithinAShardOrAcrossShards) {
  TokenSource first(0), second(1);
  absl::flat_hash_set<std::string> seen;
  for (int i = 0; i < 100000; ++i) {
    ASSERT_TRUE(seen.insert(first.Token('f')).second);
    ASSERT_TRUE(seen.insert(second.Token('f')).second);
  }
  EXPECT_EQ(first.Token('t').front(), 't');
}

TEST(TokenSourceTest, ProcessesWithOtherSeedsNeverWriteTheSameTokens) {
  // Two instances of a cluster, or one before and after a restart: same shard, same
  // counters, different seeds.
  TokenSource first(0, 0x9e3779b97f4a7c15ull);
  TokenSource second(0, 0x2545f4914f6cdd1dull);
  std::set<std::string> seen;
  for (int i = 0; i < 10000; ++i) {
    EXPECT_TRUE(seen.insert(first.CallId('c', "x")).second);
    EXPECT_TRUE(seen.insert(second.CallId('c', "x")).second);
  }
  EXPECT_EQ(ShardForCallId(TokenSource(3, 42).CallId('c', "x"), 4), 3u)
      << "the seed leaves the shard readable";
}

TEST(TokenSourceTest, BranchesCarryThePrefixThatMarksThemOurs) {
  TokenSource tokens(3);
  const std::string branch = tokens.Branch('b');
  EXPECT_TRUE(branch.starts_with("z9hG4bK")) << branch;  // RFC 3261 8.1.1.7
  EXPECT_TRUE(TokenSource::IsOurBranch(branch));
  EXPECT_FALSE(TokenSource::IsOurBranch("z9hG4bKnashds8"));
  EXPECT_NE(tokens.Branch('b'), branch);
}

TEST(TokenSourceTest, CallIdsNameTheirShard) {
  for (uint32_t shard : {0u, 1u, 7u, 15u, 200u}) {
    TokenSource tokens(shard);
    const std::string call_id = tokens.CallId('c', "42");
    EXPECT_TRUE(call_id.starts_with("B2B")) << call_id;
    EXPECT_TRUE(call_id.ends_with("-42")) << call_id;
    EXPECT_EQ(ShardForCallId(call_id, 256), shard) << call_id;
    EXPECT_EQ(ShardForCallId(call_id, 1), 0u);
  }
}

TEST(ShardForCallIdTest, OtherCallIdsAreHashedTheSameEverywhere) {
  EXPECT_EQ(ShardForCallId("a84b4c76e66710@pc33.atlanta.example.com", 4),
            ShardForCallId("a84b4c76e66710@pc33.atlanta.example.com", 4));
  EXPECT_LT(ShardForCallId("B2Bzz-not-ours", 4), 4u);
  EXPECT_LT(ShardForCallId("B2B", 4), 4u);
}

}  // namespace
}  // namespace b2bua
