#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace b2bua::proto {

/// Character classes of the RFC 3261 section 25 grammar, as one table lookup each.
/// Shared by the parser, the URI parser and the validators so that one definition
/// of "token" serves everywhere.
enum CharClass : uint16_t {
  kToken = 1 << 0,       // token: alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~"
  kWordExtra = 1 << 1,   // word adds: "(" ")" "<" ">" ":" "\" DQUOTE "/" "[" "]" "?" "{" "}"
  kWhitespace = 1 << 2,  // SP, HT and the CR/LF of a folded line (inside a header value only)
  kDigit = 1 << 3,
  kHexDigit = 1 << 4,
  kUnreserved = 1 << 5,  // alphanum / mark
  kUserExtra = 1 << 6,   // user-unreserved: "&" "=" "+" "$" "," ";" "?" "/"
  kParamExtra = 1 << 7,  // param-unreserved plus ":" "&" "+" "$": paramchar minus escapes
  kHostChar = 1 << 8,    // host names and dotted IPv4: alphanum "-" "." and, leniently, "_"
  kListSpecial = 1 << 9, // what a comma-list splitter must look at: "," DQUOTE "<" ">"
  kParamValue = 1 << 10, // gen-value without quotes: token, and ":" "[" "]" for hosts
};

namespace detail {
constexpr std::array<uint16_t, 256> BuildCharTable() {
  std::array<uint16_t, 256> t{};
  for (int c = 0; c < 256; ++c) {
    uint16_t f = 0;
    bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    bool digit = c >= '0' && c <= '9';
    bool mark = c == '-' || c == '_' || c == '.' || c == '!' || c == '~' || c == '*' || c == '\'' ||
                c == '(' || c == ')';
    if (alpha || digit || c == '-' || c == '.' || c == '!' || c == '%' || c == '*' || c == '_' ||
        c == '+' || c == '`' || c == '\'' || c == '~')
      f |= kToken;
    if (c == '(' || c == ')' || c == '<' || c == '>' || c == ':' || c == '\\' || c == '"' ||
        c == '/' || c == '[' || c == ']' || c == '?' || c == '{' || c == '}')
      f |= kWordExtra;
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') f |= kWhitespace;
    if (digit) f |= kDigit;
    if (digit || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')) f |= kHexDigit;
    if (alpha || digit || mark) f |= kUnreserved;
    if (c == '&' || c == '=' || c == '+' || c == '$' || c == ',' || c == ';' || c == '?' || c == '/')
      f |= kUserExtra;
    if (c == '[' || c == ']' || c == '/' || c == ':' || c == '&' || c == '+' || c == '$')
      f |= kParamExtra;
    if (alpha || digit || c == '-' || c == '.' || c == '_') f |= kHostChar;
    if (c == ',' || c == '"' || c == '<' || c == '>') f |= kListSpecial;
    if ((f & kToken) || c == ':' || c == '[' || c == ']') f |= kParamValue;
    t[c] = f;
  }
  return t;
}
inline constexpr std::array<uint16_t, 256> kCharTable = BuildCharTable();
}  // namespace detail

constexpr bool HasClass(char c, uint16_t cls) {
  return (detail::kCharTable[static_cast<uint8_t>(c)] & cls) != 0;
}
constexpr bool IsToken(char c) { return HasClass(c, kToken); }
constexpr bool IsWordChar(char c) { return HasClass(c, kToken | kWordExtra); }
constexpr bool IsLws(char c) { return HasClass(c, kWhitespace); }
constexpr bool IsDigit(char c) { return HasClass(c, kDigit); }
constexpr bool IsHexDigit(char c) { return HasClass(c, kHexDigit); }

constexpr char ToLowerAscii(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

/// ASCII case-insensitive comparison, as SIP compares tokens, schemes, hosts and parameter names.
constexpr bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (ToLowerAscii(a[i]) != ToLowerAscii(b[i])) return false;
  return true;
}

/// EqualsIgnoreCase(s, lower) for a `lower` made only of lowercase letters ("branch"). ORing
/// 0x20 into any byte gives such a letter only for that letter in either case, so whole
/// words compare at once, with overlapping loads instead of a byte loop.
inline bool EqualsLowerLetters(std::string_view s, std::string_view lower) {
  const size_t n = lower.size();
  if (s.size() != n) return false;
  auto same = [&](size_t at, auto word) {
    decltype(word) a, b;
    std::memcpy(&a, s.data() + at, sizeof a);
    std::memcpy(&b, lower.data() + at, sizeof b);
    constexpr auto kCase = static_cast<decltype(word)>(0x2020202020202020ULL);
    return static_cast<decltype(word)>(a | kCase) == b;
  };
  if (n >= 8) {
    for (size_t at = 0; at + 8 < n; at += 8)
      if (!same(at, uint64_t{})) return false;
    return same(n - 8, uint64_t{});
  }
  if (n >= 4) return same(0, uint32_t{}) && same(n - 4, uint32_t{});
  if (n >= 2) return same(0, uint16_t{}) && same(n - 2, uint16_t{});
  return n == 0 || (s[0] | 0x20) == lower[0];
}

/// True when every character of `s` is a token character and `s` is not empty.
constexpr bool IsTokenString(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!IsToken(c)) return false;
  return true;
}

/// Removes leading and trailing LWS (including the CR/LF of folded lines).
constexpr std::string_view TrimLws(std::string_view s) {
  // Most values have nothing to trim: two compares settle it.
  if (s.empty() || (static_cast<uint8_t>(s.front()) > ' ' && static_cast<uint8_t>(s.back()) > ' '))
    return s;
  size_t b = 0, e = s.size();
  // Every LWS byte is <= ' ': the usual non-LWS byte costs one compare, no table load.
  while (b < e && static_cast<uint8_t>(s[b]) <= ' ' && IsLws(s[b])) ++b;
  while (e > b && static_cast<uint8_t>(s[e - 1]) <= ' ' && IsLws(s[e - 1])) --e;
  return s.substr(b, e - b);
}

/// Runs of one character class. Each Skip*() returns the first byte at or after `p` outside
/// its class, or `end`. With SSE2, long runs of a class that a few range compares describe
/// (host names, Call-ID words) go 16 bytes per step; short runs of classes that need many
/// compares (tokens) go through the HasClass() table four bytes per step.
namespace simd {

#if defined(__SSE2__)
// c in [lo, hi], unsigned: shift lo to -128, then one signed compare.
inline __m128i InRange(__m128i c, uint8_t lo, uint8_t hi) {
  __m128i shifted = _mm_add_epi8(c, _mm_set1_epi8(static_cast<char>(0x80 - lo)));
  return _mm_cmplt_epi8(shifted, _mm_set1_epi8(static_cast<char>(-128 + (hi - lo) + 1)));
}
inline __m128i Is(__m128i c, char x) { return _mm_cmpeq_epi8(c, _mm_set1_epi8(x)); }

// The n < 16 bytes at p, zero-filled: NUL is in no class, so a run stops at the end.
inline __m128i LoadPartial(const char* p, size_t n) {
  uint64_t lo = 0, hi = 0;
  if (n >= 8) {
    std::memcpy(&lo, p, 8);
    if (n > 8) {
      std::memcpy(&hi, p + n - 8, 8);
      hi >>= 8 * (16 - n);
    }
  } else if (n >= 4) {
    uint32_t a, b;
    std::memcpy(&a, p, 4);
    std::memcpy(&b, p + n - 4, 4);
    lo = a | (static_cast<uint64_t>(b) << (8 * (n - 4)));
  } else {
    for (size_t i = 0; i < n; ++i)
      lo |= static_cast<uint64_t>(static_cast<uint8_t>(p[i])) << (8 * i);
  }
  return _mm_set_epi64x(static_cast<int64_t>(hi), static_cast<int64_t>(lo));
}

// word (kToken | kWordExtra): every visible character but "#$&,;=@^|"
inline __m128i WordMask(__m128i c) {
  __m128i visible = InRange(c, 0x21, 0x7e);
  __m128i not_word = _mm_or_si128(InRange(c, '#', '$'), Is(c, '&'));
  not_word = _mm_or_si128(not_word, _mm_or_si128(Is(c, ','), Is(c, ';')));
  not_word = _mm_or_si128(not_word, _mm_or_si128(Is(c, '='), Is(c, '@')));
  not_word = _mm_or_si128(not_word, _mm_or_si128(Is(c, '^'), Is(c, '|')));
  return _mm_andnot_si128(not_word, visible);
}

// `limit` >= `end` is where the caller's buffer really ends: loads may cross `end` up to
// there, and the bits past `end` are then masked off. Only the last 15 bytes of a buffer
// need the slower partial load.
template <typename Mask>
inline const char* Skip(const char* p, const char* end, const char* limit, Mask mask) {
  for (;;) {
    size_t left = static_cast<size_t>(end - p);
    __m128i c = limit - p >= 16 ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(p))
                                : LoadPartial(p, left);
    unsigned out = ~static_cast<unsigned>(_mm_movemask_epi8(mask(c))) & 0xffff;
    unsigned shift = left < 16 ? static_cast<unsigned>(left) : 16;
    out |= (0xffffffffu << shift) & 0xffff;
    if (out != 0) return p + __builtin_ctz(out);
    p += 16;
  }
}
#endif

}  // namespace simd

/// The first byte at or after `p` outside `cls`, or `end`; four table lookups a step. The
/// runs it serves (method and parameter names, option tags, parameter values) are short,
/// and SSE2 needs some twenty operations per 16 bytes to test a class like token.
inline const char* SkipClass(const char* p, const char* end, uint16_t cls) {
  while (end - p >= 4) {
    uint16_t all = detail::kCharTable[static_cast<uint8_t>(p[0])] &
                   detail::kCharTable[static_cast<uint8_t>(p[1])] &
                   detail::kCharTable[static_cast<uint8_t>(p[2])] &
                   detail::kCharTable[static_cast<uint8_t>(p[3])];
    if (!(all & cls)) break;
    p += 4;
  }
  while (p < end && HasClass(*p, cls)) ++p;
  return p;
}

/// Word characters (Call-ID), 16 bytes a step with SSE2. Reads only [p, limit), where
/// `limit` >= `end` is the end of the caller's buffer.
inline const char* SkipWordChars(const char* p, const char* end, const char* limit) {
#if defined(__SSE2__)
  return simd::Skip(p, end, limit, simd::WordMask);
#else
  (void)limit;
  while (p < end && IsWordChar(*p)) ++p;
  return p;
#endif
}

/// SP or HT, with one compare for the bytes above ' ' that a header line mostly holds.
constexpr bool IsSpOrHt(char c) {
  return static_cast<uint8_t>(c) <= ' ' && (c == ' ' || c == '\t');
}

/// True when every byte of [p, end) is a token character: one AND per byte and no branch,
/// for a run whose end is already known.
inline bool AllToken(const char* p, const char* end) {
  const auto& t = detail::kCharTable;
  uint16_t all = kToken;
  for (; end - p >= 4; p += 4)
    all &= t[static_cast<uint8_t>(p[0])] & t[static_cast<uint8_t>(p[1])] &
           t[static_cast<uint8_t>(p[2])] & t[static_cast<uint8_t>(p[3])];
  for (; p < end; ++p) all &= t[static_cast<uint8_t>(*p)];
  return (all & kToken) != 0;
}

/// ParsePort() over `n` bytes already known to be digits (a scanner stopped at the first
/// non-digit): 1 to 5 of them, 1..65535, without a second look at each byte.
inline bool ParsePortDigits(const char* p, size_t n, uint16_t* port) {
  if (n - 1 >= 5) return false;  // none, or more than 5
  uint32_t value = 0;
  for (size_t k = 0; k < n; ++k) value = value * 10 + static_cast<uint32_t>(p[k] - '0');
  if (value - 1 >= 65535) return false;  // 0, or over 65535
  *port = static_cast<uint16_t>(value);
  return true;
}

/// The first ':' at or after `p`, or `end`. 16 bytes a step with SSE2; reads only
/// [p, limit), `limit` >= `end`.
inline const char* SkipToColon(const char* p, const char* end, const char* limit) {
#if defined(__SSE2__)
  return simd::Skip(p, end, limit, [](__m128i c) {
    return _mm_xor_si128(simd::Is(c, ':'), _mm_set1_epi8(-1));
  });
#else
  (void)limit;
  while (p < end && *p != ':') ++p;
  return p;
#endif
}

/// The first ':', SP or HT at or after `p`, or `end`: where a header name ends if it is a
/// token. 16 bytes a step with SSE2; reads only [p, limit), `limit` >= `end`.
inline const char* SkipToNameEnd(const char* p, const char* end, const char* limit) {
#if defined(__SSE2__)
  return simd::Skip(p, end, limit, [](__m128i c) {
    __m128i stop = _mm_or_si128(simd::Is(c, ':'), _mm_or_si128(simd::Is(c, ' '), simd::Is(c, '\t')));
    return _mm_xor_si128(stop, _mm_set1_epi8(-1));
  });
#else
  (void)limit;
  while (p < end && *p != ':' && *p != ' ' && *p != '\t') ++p;
  return p;
#endif
}

}  // namespace b2bua::proto
