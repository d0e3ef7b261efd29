#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "proto/sip_message.h"

namespace b2bua {

/// The shard that owns a Call-ID: the Call-IDs the B2BUA makes (TokenSource::CallId) name
/// their shard in a prefix, every other Call-ID is hashed. Pure, so every shard computes
/// the same owner without a shared table. Safe from any thread.
uint32_t ShardForCallId(std::string_view call_id, uint32_t shard_count);

/// The Call-IDs, tags and branches one shard writes. Each names the shard and carries a
/// counter, so none repeats within the process, mixed with a seed drawn when the process
/// starts, so that the instances of a cluster, and one instance before and after a restart,
/// do not write the same ones (RFC 3261 8.1.1.4: Call-IDs unique in space and time); B-leg Call-IDs start with the shard
/// (ShardForCallId), and every branch starts with the same prefix, which is how the B2BUA
/// recognises its own Via on a request that came back (a loop). Owning shard only.
class TokenSource {
 public:
  /// The prefix of every branch the B2BUA writes: RFC 3261's magic cookie, then "b2b".
  static constexpr std::string_view kBranchPrefix = "z9hG4bKb2b";
  static_assert(kBranchPrefix.starts_with(proto::kBranchMagicCookie));

  explicit TokenSource(uint32_t shard_index, uint64_t seed = 0)
      : shard_index_(shard_index), seed_(seed) {}

  /// A tag or other unique word: `kind`, the shard, a counter ("f1a2c9e3...").
  std::string Token(char kind);
  /// A Via branch: kBranchPrefix and a token.
  std::string Branch(char kind);
  /// A Call-ID that ShardForCallId() maps back to this shard: "B2B<shard>-<token>-<suffix>".
  std::string CallId(char kind, std::string_view suffix);

  /// Whether `branch` is one the B2BUA wrote.
  static bool IsOurBranch(std::string_view branch) { return branch.starts_with(kBranchPrefix); }

 private:
  const uint32_t shard_index_;
  const uint64_t seed_;
  uint64_t counter_ = 0;
};

}  // namespace b2bua
