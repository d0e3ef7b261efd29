#include "proto/sip_uri.h"

#include <array>

#include "proto/sip_chars.h"

namespace b2bua::proto {
namespace {

#if !defined(__SSE2__)
// Host-name characters in three kinds, so the scalar ScanHost() classifies while it walks.
constexpr uint8_t kHostOther = 1;  // letters, '-', '_'
constexpr uint8_t kHostDigit = 2;
constexpr uint8_t kHostDot = 4;
constexpr std::array<uint8_t, 256> BuildHostTable() {
  std::array<uint8_t, 256> t{};
  for (int c = 0; c < 256; ++c) {
    if (c == '.') t[c] = kHostDot;
    else if (c >= '0' && c <= '9') t[c] = kHostDigit;
    else if (HasClass(static_cast<char>(c), kHostChar)) t[c] = kHostOther;
  }
  return t;
}
constexpr std::array<uint8_t, 256> kHostTable = BuildHostTable();
#endif

// What ParseUriPrefix() takes in a user part and in a parameter, escapes excepted: a '%'
// sends the URI to the exact path. The user set leaves out ';' '?' ',', which also end
// an addr-spec or start parameters or headers.
constexpr uint8_t kUriUser = 1;
constexpr uint8_t kUriParam = 2;
constexpr std::array<uint8_t, 256> BuildUriTable() {
  std::array<uint8_t, 256> t{};
  for (int c = 0; c < 256; ++c) {
    char ch = static_cast<char>(c);
    if (HasClass(ch, kUnreserved | kUserExtra) && ch != ';' && ch != '?' && ch != ',')
      t[c] |= kUriUser;
    if (HasClass(ch, kUnreserved | kParamExtra)) t[c] |= kUriParam;
  }
  return t;
}
constexpr std::array<uint8_t, 256> kUriTable = BuildUriTable();

bool UriClass(char c, uint8_t cls) { return (kUriTable[static_cast<uint8_t>(c)] & cls) != 0; }

// User parts and URI parameters are short ("alice", "transport=udp"): a table walk four
// bytes a step, as SkipClass() does for tokens.
const char* SkipUriChars(const char* p, const char* end, uint8_t cls) {
  while (end - p >= 4) {
    uint8_t all = kUriTable[static_cast<uint8_t>(p[0])] & kUriTable[static_cast<uint8_t>(p[1])] &
                  kUriTable[static_cast<uint8_t>(p[2])] & kUriTable[static_cast<uint8_t>(p[3])];
    if (!(all & cls)) break;
    p += 4;
  }
  while (p < end && UriClass(*p, cls)) ++p;
  return p;
}

// Checks %HH escapes and that every other byte belongs to `allowed`.
bool CheckEscaped(std::string_view s, uint16_t allowed, std::string_view extra, UriError* error) {
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '%') {
      if (i + 2 >= s.size() || !IsHexDigit(s[i + 1]) || !IsHexDigit(s[i + 2])) {
        *error = UriError::kBadEscape;
        return false;
      }
      i += 2;
      continue;
    }
    if (HasClass(c, allowed)) continue;
    if (extra.find(c) != std::string_view::npos) continue;
    return false;
  }
  return true;
}

bool IsSchemeChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || IsDigit(c) || c == '+' || c == '-' ||
         c == '.';
}

#if !defined(__SSE2__)
// Dotted IPv4 for a run ScanHost() found to hold only digits and dots, so that each byte
// needs one compare: four parts of 1 to 3 digits, each at most 255.
bool IsDottedQuad(const char* p, const char* e) {
  for (int parts = 1;; ++parts) {
    const char* start = p;
    unsigned value = 0;
    while (p < e && *p != '.') value = value * 10 + static_cast<unsigned>(*p++ - '0');
    // Over 3 digits the value may wrap, but the length alone rejects it.
    if (p == start || p - start > 3 || value > 255) return false;
    if (p == e) return parts == 4;
    if (parts == 4) return false;
    ++p;  // the '.'
  }
}
#else
// IsDottedQuad() for a run of `n` <= 15 digits and dots whose dots are the set bits of
// `dots`, none leading and none doubled: three dots, parts of 1 to 3 digits, each at most
// 255. The dot positions come from ScanHost()'s vector pass, so no byte is looked at twice.
bool IsDottedQuadRun(const char* p, unsigned n, unsigned dots) {
  unsigned start = 0;
  for (int part = 0; part < 4; ++part) {
    unsigned stop = n;
    if (part < 3) {
      if (dots == 0) return false;
      stop = static_cast<unsigned>(__builtin_ctz(dots));
      dots &= dots - 1;
    } else if (dots != 0) {
      return false;
    }
    const unsigned digits = stop - start;
    if (digits - 1 >= 3) return false;  // none (a trailing dot) or more than 3
    const char* d = p + start;
    unsigned value = static_cast<unsigned>(d[0] - '0');
    if (digits > 1) value = value * 10 + static_cast<unsigned>(d[1] - '0');
    if (digits > 2) value = value * 10 + static_cast<unsigned>(d[2] - '0');
    if (value > 255) return false;
    start = stop + 1;
  }
  return true;
}
#endif

// Lenient on purpose: RFC 5118 4.10 asks to accept the "2001:db8:::192.0.2.1" form that
// RFC 3261's ABNF admits.
bool LooksLikeIpv6(std::string_view s) {
  if (s.size() < 2 || s.size() > 45) return false;
  int colons = 0;
  int runs = 0;  // runs of two or more colons: "::" may appear once
  int run = 0;
  for (char c : s) {
    if (c == ':') {
      ++colons;
      if (++run == 2) ++runs;
      if (run > 3) return false;
    } else if (!IsHexDigit(c) && c != '.') {
      return false;
    } else {
      run = 0;
    }
  }
  return colons >= 2 && colons <= 8 && runs <= 1 && !(run == 3);
}

bool ParseTelNumber(std::string_view number) {
  if (number.empty()) return false;
  size_t i = 0;
  bool global = number[0] == '+';
  if (global) ++i;
  bool any = false;
  for (; i < number.size(); ++i) {
    char c = number[i];
    bool visual = c == '-' || c == '.' || c == '(' || c == ')';
    if (IsDigit(c)) any = true;
    else if (!global && (IsHexDigit(c) || c == '*' || c == '#')) any = true;
    else if (!visual) return false;
  }
  return any;
}

UriError ParseParams(std::string_view params, SipUri* out) {
  // params starts with ';'
  std::string_view name, value;
  size_t pos = 0;
  while (pos < params.size()) {
    size_t next = params.find(';', pos + 1);
    if (next == std::string_view::npos) next = params.size();
    std::string_view item = params.substr(pos + 1, next - pos - 1);
    size_t eq = item.find('=');
    name = item.substr(0, eq);
    value = eq == std::string_view::npos ? std::string_view() : item.substr(eq + 1);
    UriError error = UriError::kBadParam;
    if (name.empty() || !CheckEscaped(name, kUnreserved | kParamExtra, "", &error)) return error;
    if (eq != std::string_view::npos &&
        (value.empty() || !CheckEscaped(value, kUnreserved | kParamExtra, "", &error)))
      return error;
    if (EqualsIgnoreCase(name, "transport")) out->transport = value;
    else if (EqualsIgnoreCase(name, "maddr")) out->maddr = value;
    else if (EqualsIgnoreCase(name, "lr")) out->lr = true;
    pos = next;
  }
  return UriError::kNone;
}

UriError ParseSipUri(std::string_view rest, SipUri* out) {
  // userinfo ends at the first '@'; '@' is legal in neither params nor headers.
  size_t at = rest.find('@');
  if (at != std::string_view::npos) {
    std::string_view userinfo = rest.substr(0, at);
    size_t colon = userinfo.find(':');
    std::string_view user = userinfo.substr(0, colon);
    UriError error = UriError::kBadUser;
    if (!CheckEscaped(user, kUnreserved | kUserExtra, "", &error)) return error;
    out->user = user;
    out->has_user = true;
    if (colon != std::string_view::npos) {
      std::string_view password = userinfo.substr(colon + 1);
      if (!CheckEscaped(password, kUnreserved, "&=+$,", &error)) return error;
      out->password = password;
    }
    rest = rest.substr(at + 1);
  }
  // hostport
  size_t host_end;
  if (!rest.empty() && rest[0] == '[') {
    size_t close = rest.find(']');
    if (close == std::string_view::npos) return UriError::kBadHost;
    out->host = rest.substr(1, close - 1);
    if (!LooksLikeIpv6(out->host)) return UriError::kBadHost;
    out->host_kind = HostKind::kIpv6;
    host_end = close + 1;
  } else {
    host_end = 0;
    while (host_end < rest.size() && rest[host_end] != ':' && rest[host_end] != ';' &&
           rest[host_end] != '?')
      ++host_end;
    out->host = rest.substr(0, host_end);
    out->host_kind = ClassifyHost(out->host, false);
    if (out->host_kind == HostKind::kNone) return UriError::kBadHost;
  }
  rest = rest.substr(host_end);
  if (!rest.empty() && rest[0] == ':') {
    size_t end = 1;
    while (end < rest.size() && rest[end] != ';' && rest[end] != '?') ++end;
    if (!ParsePort(rest.substr(1, end - 1), &out->port)) return UriError::kBadPort;
    rest = rest.substr(end);
  }
  size_t question = rest.find('?');
  std::string_view params = rest.substr(0, question);
  if (!params.empty()) {
    if (params[0] != ';') return UriError::kBadHost;
    out->params = params;
    UriError error = ParseParams(params, out);
    if (error != UriError::kNone) return error;
  }
  if (question != std::string_view::npos) {
    std::string_view headers = rest.substr(question + 1);
    UriError error = UriError::kBadHeaders;
    if (headers.empty() || !CheckEscaped(headers, kUnreserved, "[]/?:+$=&", &error)) return error;
    // header = hname "=" hvalue, joined by '&'; hname is never empty.
    for (size_t begin = 0; begin <= headers.size();) {
      size_t end = headers.find('&', begin);
      if (end == std::string_view::npos) end = headers.size();
      std::string_view header = headers.substr(begin, end - begin);
      size_t eq = header.find('=');
      if (eq == 0 || eq == std::string_view::npos) return UriError::kBadHeaders;
      begin = end + 1;
    }
    out->headers = headers;
  }
  return UriError::kNone;
}

}  // namespace

std::string_view UriErrorText(UriError error) {
  switch (error) {
    case UriError::kNone: return "no error";
    case UriError::kEmpty: return "empty URI";
    case UriError::kBadScheme: return "bad URI scheme";
    case UriError::kBadUser: return "bad URI user part";
    case UriError::kBadHost: return "bad URI host";
    case UriError::kBadPort: return "bad URI port";
    case UriError::kBadParam: return "bad URI parameter";
    case UriError::kBadHeaders: return "bad URI headers";
    case UriError::kBadTelNumber: return "bad telephone number";
    case UriError::kBadEscape: return "bad %-escape in URI";
  }
  return "unknown URI error";
}

HostKind ClassifyHost(std::string_view host, bool bracketed) {
  if (host.empty()) return HostKind::kNone;
  if (bracketed) return LooksLikeIpv6(host) ? HostKind::kIpv6 : HostKind::kNone;
  const char* end = host.data() + host.size();
  const char* run_end;
  HostKind kind = ScanHost(host.data(), end, end, &run_end);
  return run_end == end ? kind : HostKind::kNone;
}

HostKind ScanHost(const char* begin, const char* end, const char* limit, const char** run_end) {
  // One pass: legal characters, no empty label, and whether it could be dotted IPv4.
  // '_' is not in RFC 1034 host names but appears in real SRV-style names.
  const char* p = begin;
#if defined(__SSE2__)
  // Bit masks per 16 bytes: the run, its dots, and its non-digits.
  unsigned previous_dot = 1;  // so that a leading '.' counts as an empty label
  unsigned empty_label = 0;
  unsigned other = 0;
  unsigned first_dots = 0;  // the dots of the first 16 bytes, which hold any IPv4 run
  for (;;) {
    size_t left = static_cast<size_t>(end - p);
    __m128i c = limit - p >= 16 ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(p))
                                : simd::LoadPartial(p, left);
    __m128i dot = simd::Is(c, '.');
    __m128i alpha = simd::InRange(_mm_or_si128(c, _mm_set1_epi8(0x20)), 'a', 'z');
    __m128i named = _mm_or_si128(alpha, _mm_or_si128(simd::Is(c, '-'), simd::Is(c, '_')));
    __m128i host = _mm_or_si128(_mm_or_si128(named, dot), simd::InRange(c, '0', '9'));
    unsigned in_end = left < 16 ? (1u << left) - 1 : 0xffff;  // bytes before `end`
    unsigned run = static_cast<unsigned>(__builtin_ctz(
        ~(static_cast<unsigned>(_mm_movemask_epi8(host)) & in_end) | 0x10000u));
    unsigned in_run = (1u << run) - 1;
    unsigned dots = static_cast<unsigned>(_mm_movemask_epi8(dot));
    empty_label |= dots & ((dots << 1) | previous_dot) & in_run;
    if (p == begin) first_dots = dots & in_run;
    other |= static_cast<unsigned>(_mm_movemask_epi8(named)) & in_run;
    previous_dot = (dots >> 15) & 1;
    p += run;
    if (run < 16) break;  // `end` always stops the run
  }
#else
  (void)limit;
  uint8_t previous = kHostDot;  // so that a leading '.' counts as an empty label
  uint8_t seen = 0;
  uint8_t empty_dots = 0;
  for (; p < end; ++p) {
    uint8_t t = kHostTable[static_cast<uint8_t>(*p)];
    if (t == 0) break;
    empty_dots |= t & previous;  // only kHostDot twice in a row survives the AND
    seen |= t;
    previous = t;
  }
  bool empty_label = (empty_dots & kHostDot) != 0;
  bool other = (seen & kHostOther) != 0;
#endif
  *run_end = p;
  if (p == begin || empty_label) return HostKind::kNone;
#if defined(__SSE2__)
  const auto size = static_cast<unsigned>(p - begin);
  if (!other) return size <= 15 && IsDottedQuadRun(begin, size, first_dots) ? HostKind::kIpv4
                                                                             : HostKind::kNone;
#else
  if (!other) return IsDottedQuad(begin, p) ? HostKind::kIpv4 : HostKind::kNone;
#endif
  return *begin == '-' ? HostKind::kNone : HostKind::kName;
}

bool ParsePort(std::string_view digits, uint16_t* port) {
  if (digits.empty() || digits.size() > 5) return false;
  uint32_t value = 0;
  for (char c : digits) {
    if (!IsDigit(c)) return false;
    value = value * 10 + static_cast<uint32_t>(c - '0');
  }
  if (value == 0 || value > 65535) return false;
  *port = static_cast<uint16_t>(value);
  return true;
}

const char* ParseUriPrefix(const char* begin, const char* end, const char* limit, UriEnd until,
                           SipUri* out) {
  const char* p = begin;
  if (end - p < 5 || (p[0] | 0x20) != 's' || (p[1] | 0x20) != 'i' || (p[2] | 0x20) != 'p')
    return nullptr;
  *out = kEmptySipUri;
  if (p[3] == ':') {
    out->scheme = UriScheme::kSip;
    out->scheme_text = {p, 3};
    p += 4;
  } else if ((p[3] | 0x20) == 's' && p[4] == ':') {
    out->scheme = UriScheme::kSips;
    out->scheme_text = {p, 4};
    p += 5;
  } else {
    return nullptr;
  }
  // userinfo ends at the first '@' of the whole text (ParseUri()). A run of user characters
  // ended by '@' is the user; otherwise the host starts here, and should an '@' come later
  // every scan below stops at it, so that case goes to the exact path.
  const char* host = p;
  const char* q = SkipUriChars(p, end, kUriUser);
  if (q < end && *q == '@') {
    out->user = {p, static_cast<size_t>(q - p)};
    out->has_user = true;
    host = q + 1;
  }
  HostKind kind = ScanHost(host, end, limit, &q);
  if (kind == HostKind::kNone) return nullptr;
  out->host = {host, static_cast<size_t>(q - host)};
  out->host_kind = kind;
  p = q;
  if (p < end && *p == ':') {
    const char* digits = ++p;
    while (p < end && IsDigit(*p)) ++p;
    if (!ParsePortDigits(digits, static_cast<size_t>(p - digits), &out->port)) return nullptr;
  }
  if (until != UriEnd::kAddrSpec) {
    const char* params = p;
    while (p < end && *p == ';') {
      const char* name = ++p;
      p = SkipUriChars(p, end, kUriParam);
      if (p == name) return nullptr;
      std::string_view n(name, static_cast<size_t>(p - name));
      std::string_view v;
      if (p < end && *p == '=') {
        const char* value = ++p;
        p = SkipUriChars(p, end, kUriParam);
        if (p == value) return nullptr;
        v = {value, static_cast<size_t>(p - value)};
      }
      if (EqualsLowerLetters(n, "transport")) out->transport = v;
      else if (EqualsLowerLetters(n, "maddr")) out->maddr = v;
      else if (EqualsLowerLetters(n, "lr")) out->lr = true;
    }
    if (p != params) out->params = {params, static_cast<size_t>(p - params)};
  }
  switch (until) {
    case UriEnd::kText:
      if (p != end) return nullptr;
      break;
    case UriEnd::kAngle:
      if (p == end || *p != '>') return nullptr;
      break;
    case UriEnd::kAddrSpec:
      if (p < end && *p != ';' && *p != ',' && !IsLws(*p)) return nullptr;
      break;
  }
  out->text = {begin, static_cast<size_t>(p - begin)};
  return p;
}

UriError ParseUri(std::string_view text, SipUri* out) {
  // Most URIs take the one-pass path; the rest, and every invalid one, the exact one below.
  const char* end = text.data() + text.size();
  if (ParseUriPrefix(text.data(), end, end, UriEnd::kText, out) != nullptr)
    return UriError::kNone;
  *out = kEmptySipUri;
  out->text = text;
  if (text.empty()) return UriError::kEmpty;
  // Nearly every URI is "sip:": skip the generic scheme scan for it.
  if (text.size() > 4 && ToLowerAscii(text[0]) == 's' && ToLowerAscii(text[1]) == 'i' &&
      ToLowerAscii(text[2]) == 'p' && text[3] == ':') {
    out->scheme_text = text.substr(0, 3);
    out->scheme = UriScheme::kSip;
    return ParseSipUri(text.substr(4), out);
  }
  size_t colon = text.find(':');
  if (colon == std::string_view::npos || colon == 0) return UriError::kBadScheme;
  std::string_view scheme = text.substr(0, colon);
  if (!((scheme[0] >= 'a' && scheme[0] <= 'z') || (scheme[0] >= 'A' && scheme[0] <= 'Z')))
    return UriError::kBadScheme;
  for (char c : scheme)
    if (!IsSchemeChar(c)) return UriError::kBadScheme;
  out->scheme_text = scheme;
  std::string_view rest = text.substr(colon + 1);
  if (EqualsIgnoreCase(scheme, "sip")) out->scheme = UriScheme::kSip;
  else if (EqualsIgnoreCase(scheme, "sips")) out->scheme = UriScheme::kSips;
  else if (EqualsIgnoreCase(scheme, "tel")) out->scheme = UriScheme::kTel;
  else out->scheme = UriScheme::kOther;

  switch (out->scheme) {
    case UriScheme::kSip:
    case UriScheme::kSips:
      return ParseSipUri(rest, out);
    case UriScheme::kTel: {
      size_t semi = rest.find(';');
      out->user = rest.substr(0, semi);
      out->has_user = true;
      if (!ParseTelNumber(out->user)) return UriError::kBadTelNumber;
      if (semi != std::string_view::npos) {
        out->params = rest.substr(semi);
        return ParseParams(out->params, out);
      }
      return UriError::kNone;
    }
    case UriScheme::kOther:
      // absoluteURI: opaque, but it must be one word of visible characters.
      if (rest.empty()) return UriError::kBadScheme;
      for (char c : rest)
        if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f || c == '<' || c == '>' ||
            c == '"')
          return UriError::kBadScheme;
      return UriError::kNone;
  }
  return UriError::kBadScheme;
}

bool ParamIterator::Next(std::string_view* name, std::string_view* value) {
  while (!rest_.empty()) {
    size_t start = rest_[0] == ';' ? 1 : 0;
    // A quoted value may hold ';'.
    size_t end = start;
    bool quoted = false;
    for (; end < rest_.size(); ++end) {
      char c = rest_[end];
      if (quoted) {
        if (c == '\\') ++end;
        else if (c == '"') quoted = false;
      } else if (c == '"') {
        quoted = true;
      } else if (c == ';') {
        break;
      }
    }
    std::string_view item = rest_.substr(start, (end < rest_.size() ? end : rest_.size()) - start);
    rest_ = end < rest_.size() ? rest_.substr(end) : std::string_view();
    item = TrimLws(item);
    if (item.empty()) continue;
    size_t eq = item.find('=');
    *name = TrimLws(item.substr(0, eq));
    *value = eq == std::string_view::npos ? std::string_view() : TrimLws(item.substr(eq + 1));
    return true;
  }
  return false;
}

bool FindParam(std::string_view params, std::string_view name, std::string_view* value) {
  ParamIterator it(params);
  std::string_view n, v;
  while (it.Next(&n, &v)) {
    if (EqualsIgnoreCase(n, name)) {
      *value = v;
      return true;
    }
  }
  return false;
}

}  // namespace b2bua::proto
