#pragma once

// The header-name index behind LookupHeaderId(), for the two files that use it: the parser
// inlines the lookup it does on every header line, sip_message.cc builds the index.

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "proto/sip_message.h"

namespace b2bua::proto {

namespace detail {

// The header-name index behind LookupHeaderId(), built at compile time in sip_message.cc and
// declared here so that the parser can inline the lookup it does for every header line.
// Names hash perfectly on (length, first, middle and last letter), straight to a slot that
// holds the name as two byte strings compared a word at a time: `lower` is the name in lower
// case and `fold` has 0x20 where a letter may differ in case, so (in ^ lower) & ~fold == 0
// accepts exactly the spellings EqualsIgnoreCase accepts, with no per-byte loop.
inline constexpr size_t kMaxHeaderNameLength = 20;
inline constexpr size_t kHeaderNameSlots = 256;

struct alignas(8) HeaderNameSlot {
  char lower[24] = {};  // kMaxHeaderNameLength rounded up to whole words
  char fold[24] = {};
  uint8_t length = 0;  // 0 for an empty slot, which then matches no name
  HeaderId id = HeaderId::kOther;
};

struct HeaderNameIndex {
  std::array<HeaderNameSlot, kHeaderNameSlots> slots{};
  std::array<HeaderId, 26> compact{};
  bool collision = false;
};

extern const HeaderNameIndex kHeaderNameIndex;

constexpr size_t HeaderNameHash(size_t n, char first, char middle, char last) {
  auto lower = [](char c) { return static_cast<size_t>(static_cast<uint8_t>(c) | 0x20); };
  return (n + lower(first) + 16 * lower(last) + 24 * lower(middle)) & (kHeaderNameSlots - 1);
}

template <typename Word>
inline Word LoadWord(const char* p) {
  Word w;
  std::memcpy(&w, p, sizeof(Word));
  return w;
}

// The n bytes at `name` against a slot of the same length. Words overlap instead of reading
// past `name + n`, so the caller needs no padding.
inline bool MatchesSlot(const char* name, size_t n, const HeaderNameSlot& s) {
  auto same = [&](size_t at, auto word) {
    using Word = decltype(word);
    return ((LoadWord<Word>(name + at) ^ LoadWord<Word>(s.lower + at)) &
            ~LoadWord<Word>(s.fold + at)) == 0;
  };
  if (n >= 8) {
    for (size_t k = 0; k + 8 < n; k += 8)
      if (!same(k, uint64_t{})) return false;
    return same(n - 8, uint64_t{});
  }
  if (n >= 4) return same(0, uint32_t{}) && same(n - 4, uint32_t{});
  return same(0, uint16_t{}) && same(n - 2, uint16_t{});
}

/// LookupHeaderId() over the `n` bytes at `name`, inline.
inline HeaderId LookupHeaderIdInline(const char* name, size_t n) {
  const HeaderNameIndex& index = kHeaderNameIndex;
  if (n - 2 < kMaxHeaderNameLength - 1) {  // 2 <= n <= kMaxHeaderNameLength
    const HeaderNameSlot& s = index.slots[HeaderNameHash(n, name[0], name[n / 2], name[n - 1])];
    return s.length == n && MatchesSlot(name, n, s) ? s.id : HeaderId::kOther;
  }
  if (n != 1) return HeaderId::kOther;
  unsigned letter = (static_cast<unsigned>(static_cast<uint8_t>(name[0])) | 0x20) - 'a';
  return letter < 26 ? index.compact[letter] : HeaderId::kOther;
}

}  // namespace detail

}  // namespace b2bua::proto
