#pragma once

#include <array>
#include <cstdint>
#include <string_view>

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

/// True when every character of `s` is a token character and `s` is not empty.
constexpr bool IsTokenString(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!IsToken(c)) return false;
  return true;
}

/// Removes leading and trailing LWS (including the CR/LF of folded lines).
constexpr std::string_view TrimLws(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && IsLws(s[b])) ++b;
  while (e > b && IsLws(s[e - 1])) --e;
  return s.substr(b, e - b);
}

}  // namespace b2bua::proto
