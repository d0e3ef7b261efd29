#include "b2bua/sip_tokens.h"

#include <functional>

#include "proto/str_util.h"

namespace b2bua {
namespace {

constexpr std::string_view kCallIdPrefix = "B2B";

}  // namespace

uint32_t ShardForCallId(std::string_view call_id, uint32_t shard_count) {
  if (shard_count <= 1) return 0;
  if (call_id.size() > kCallIdPrefix.size() + 1 && call_id.starts_with(kCallIdPrefix)) {
    uint32_t shard = 0;
    size_t i = kCallIdPrefix.size();
    for (; i < call_id.size() && i < kCallIdPrefix.size() + 4; ++i) {
      char c = call_id[i];
      if (c >= '0' && c <= '9') shard = shard * 16 + static_cast<uint32_t>(c - '0');
      else if (c >= 'a' && c <= 'f') shard = shard * 16 + static_cast<uint32_t>(c - 'a' + 10);
      else break;
    }
    if (i < call_id.size() && call_id[i] == '-') return shard % shard_count;
  }
  return static_cast<uint32_t>(std::hash<std::string_view>{}(call_id) % shard_count);
}

std::string TokenSource::Token(char kind) {
  // Shard index first, so a token also names its owner; the counter makes it unique, the
  // multiplier spreads consecutive counters over the digits, and the seed (xor keeps it a
  // one-to-one map) sets this process apart from the others.
  return proto::StrCat(kind, proto::Hex{shard_index_},
                       proto::Hex{(++counter_ * 2654435761ull) ^ seed_});
}

std::string TokenSource::Branch(char kind) {
  std::string branch(kBranchPrefix);
  branch += Token(kind);
  return branch;
}

std::string TokenSource::CallId(char kind, std::string_view suffix) {
  return proto::StrCat(kCallIdPrefix, proto::Hex{shard_index_}, "-", Token(kind), "-", suffix);
}

}  // namespace b2bua
