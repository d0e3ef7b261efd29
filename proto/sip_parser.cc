#include "proto/sip_parser.h"

#include <bit>
#include <cstring>
#include <span>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "proto/sip_chars.h"
#include "proto/sip_header_names.h"

namespace b2bua::proto {
namespace {

constexpr uint64_t kMaxUint32 = 0xffffffffULL;
// No count limit but the message size (RFC 3261 sets none for Via, Route, Record-Route).
constexpr size_t kUnbounded = ~size_t{0};

size_t SkipLws(std::string_view s, size_t i) {
  while (i < s.size() && IsLws(s[i])) ++i;
  return i;
}

size_t SkipToken(std::string_view s, size_t i) {
  while (i < s.size() && IsToken(s[i])) ++i;
  return i;
}

// Reads 1*DIGIT as an unsigned number; false when empty, not all digits, or over `max`.
// Leading zeros are legal ("0068" in RFC 4475 wsinv).
bool ParseDecimal(std::string_view s, uint64_t max, uint64_t* out) {
  if (s.empty()) return false;
  uint64_t value = 0;
  for (char c : s) {
    if (!IsDigit(c)) return false;
    value = value * 10 + static_cast<uint64_t>(c - '0');
    if (value > max) return false;
  }
  *out = value;
  return true;
}

// Index just past the closing quote of the quoted-string starting at s[i] == '"', or npos.
size_t SkipQuotedString(std::string_view s, size_t i) {
  for (++i; i < s.size(); ++i) {
    if (s[i] == '\\') {
      ++i;  // quoted-pair: the next octet is literal, even a quote or a NUL
    } else if (s[i] == '"') {
      return i + 1;
    }
  }
  return std::string_view::npos;
}

// gen-value = token / host / quoted-string; a host may be an IPv6 reference or, as RFC 5118
// 4.5 found in the wild, a bare IPv6 address in Via received.
bool IsParamValueChar(char c) { return HasClass(c, kParamValue); }

// Walks "*( SEMI generic-param )" starting at s[i] and calls fn(name, value) for each.
// Returns false on a malformed list (";;", a missing name, an unterminated quote, junk).
template <typename Fn>
bool ParseParamList(std::string_view s, size_t i, Fn&& fn) {
  for (;;) {
    i = SkipLws(s, i);
    if (i == s.size()) return true;
    if (s[i] != ';') return false;
    i = SkipLws(s, i + 1);
    size_t name_begin = i;
    i = SkipToken(s, i);
    if (i == name_begin) return false;
    std::string_view name = s.substr(name_begin, i - name_begin);
    std::string_view value;
    size_t j = SkipLws(s, i);
    if (j < s.size() && s[j] == '=') {
      j = SkipLws(s, j + 1);
      size_t value_begin = j;
      if (j < s.size() && s[j] == '"') {
        j = SkipQuotedString(s, j);
        if (j == std::string_view::npos) return false;
      } else {
        while (j < s.size() && IsParamValueChar(s[j])) ++j;
        if (j == value_begin) return false;
      }
      value = s.substr(value_begin, j - value_begin);
      i = j;
    }
    if (!fn(name, value)) return false;
  }
}

// qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ), in thousandths.
bool ParseQValue(std::string_view s, int16_t* millis) {
  if (s.empty() || (s[0] != '0' && s[0] != '1')) return false;
  int value = (s[0] - '0') * 1000;
  if (s.size() == 1) {
    *millis = static_cast<int16_t>(value);
    return true;
  }
  if (s[1] != '.' || s.size() > 5) return false;
  int scale = 100;
  for (size_t i = 2; i < s.size(); ++i, scale /= 10) {
    if (!IsDigit(s[i])) return false;
    value += (s[i] - '0') * scale;
  }
  if (value > 1000) return false;
  *millis = static_cast<int16_t>(value);
  return true;
}

bool IsDisplayNameChar(char c) { return IsToken(c) || IsLws(c); }

// Parses name-addr or addr-spec with its header parameters. `value` is LWS-trimmed.
Defect ParseNameAddr(std::string_view value, NameAddr* out, std::string_view* params_out) {
  *out = kEmptyNameAddr;
  out->text = value;
  size_t i = 0;
  size_t uri_begin, uri_end, after_uri;
  if (!value.empty() && value[0] == '"') {
    size_t close = SkipQuotedString(value, 0);
    if (close == std::string_view::npos) return Defect::kBadHeaderValue;
    out->display_name = value.substr(1, close - 2);
    out->quoted_display_name = true;
    i = SkipLws(value, close);
    if (i == value.size() || value[i] != '<') return Defect::kBadHeaderValue;
  } else {
    size_t angle = value.find('<');
    if (angle != std::string_view::npos) {
      for (size_t k = 0; k < angle; ++k)
        if (!IsDisplayNameChar(value[k])) return Defect::kBadHeaderValue;
      out->display_name = TrimLws(value.substr(0, angle));
      i = angle;
    }
  }
  if (i < value.size() && value[i] == '<') {
    out->angle_brackets = true;
    uri_begin = i + 1;
    uri_end = value.find('>', uri_begin);
    if (uri_end == std::string_view::npos) return Defect::kBadHeaderValue;
    after_uri = uri_end + 1;
  } else {
    // addr-spec: the URI stops at the first ';' or LWS, and may not hold ',' or '?'
    // (RFC 3261 20.10), which is what makes ";tag" a header parameter here.
    uri_begin = 0;
    uri_end = 0;
    while (uri_end < value.size() && value[uri_end] != ';' && !IsLws(value[uri_end])) {
      if (value[uri_end] == '?' || value[uri_end] == ',') return Defect::kBadHeaderValue;
      ++uri_end;
    }
    after_uri = uri_end;
  }
  if (ParseUri(value.substr(uri_begin, uri_end - uri_begin), &out->uri) != UriError::kNone)
    return Defect::kBadHeaderValue;
  size_t params_begin = SkipLws(value, after_uri);
  out->params = value.substr(params_begin);
  *params_out = out->params;
  return Defect::kNone;
}

Defect ParseFromTo(std::string_view value, NameAddr* out) {
  std::string_view params;
  Defect d = ParseNameAddr(value, out, &params);
  if (d != Defect::kNone) return d;
  bool ok = ParseParamList(params, 0, [&](std::string_view name, std::string_view v) {
    if (EqualsIgnoreCase(name, "tag")) {
      if (v.empty()) return false;
      out->tag = v;
    }
    return true;
  });
  return ok ? Defect::kNone : Defect::kBadHeaderValue;
}

// The parameters a one-pass reader matches by word compare (kViaKeys, kContactKeys below),
// in the order of their keys: ParseParamsPrefix() hands the index on.
enum ViaKey : int { kViaBranch, kViaRport, kViaReceived };
enum ContactKey : int { kContactQ, kContactExpires, kContactTag };
constexpr int kNoKey = -1;

// `key` is the ContactKey the caller matched already, or kNoKey.
bool OnContactParam(Contact* out, int key, std::string_view name, std::string_view v) {
  if (key == kContactQ || (key == kNoKey && EqualsLowerLetters(name, "q"))) {
    if (!ParseQValue(v, &out->q_millis)) {
      out->q_millis = -1;
      out->defect = ContactDefect::kBadQValue;
    }
  } else if (key == kContactExpires || (key == kNoKey && EqualsLowerLetters(name, "expires"))) {
    uint64_t seconds;
    if (ParseDecimal(v, kMaxUint32, &seconds)) out->expires = static_cast<int64_t>(seconds);
    else if (out->defect == ContactDefect::kNone) out->defect = ContactDefect::kBadExpires;
  } else if (key == kContactTag || (key == kNoKey && EqualsLowerLetters(name, "tag"))) {
    out->address.tag = v;
  }
  return true;
}

Defect ParseContact(std::string_view value, Contact* out) {
  *out = kEmptyContact;
  std::string_view params;
  Defect d = ParseNameAddr(value, &out->address, &params);
  if (d != Defect::kNone) return d;
  bool ok = ParseParamList(params, 0, [&](std::string_view name, std::string_view v) {
    return OnContactParam(out, kNoKey, name, v);
  });
  return ok ? Defect::kNone : Defect::kBadHeaderValue;
}

Defect ParseRoute(std::string_view value, NameAddr* out) {
  std::string_view params;
  Defect d = ParseNameAddr(value, out, &params);
  if (d != Defect::kNone) return d;
  return ParseParamList(params, 0, [](std::string_view, std::string_view) { return true; })
             ? Defect::kNone
             : Defect::kBadHeaderValue;
}

bool OnViaParam(Via* out, std::string_view name, std::string_view value) {
  if (EqualsLowerLetters(name, "branch")) {
    if (value.empty()) return false;
    out->branch = value;
  } else if (EqualsLowerLetters(name, "received")) {
    if (value.size() > 2 && value.front() == '[' && value.back() == ']')
      value = value.substr(1, value.size() - 2);
    // A host-name run over the whole value settles it without a search for ':' (IPv6).
    const char* end = value.data() + value.size();
    const char* run_end;
    HostKind kind = ScanHost(value.data(), end, end, &run_end);
    if (run_end != end) kind = ClassifyHost(value, value.find(':') != std::string_view::npos);
    if (kind == HostKind::kNone) return false;
    out->received = value;
  } else if (EqualsLowerLetters(name, "rport")) {
    out->has_rport = true;
    if (!value.empty() && !ParsePort(value, &out->rport)) return false;
  } else if (EqualsLowerLetters(name, "maddr")) {
    if (value.empty()) return false;
    out->maddr = value;
  } else if (EqualsLowerLetters(name, "ttl")) {
    uint64_t ttl;
    if (!ParseDecimal(value, 255, &ttl)) return false;
    out->ttl = static_cast<int16_t>(ttl);
  }
  return true;
}

// via-parm = sent-protocol LWS sent-by *( SEMI via-params ), with SWS around '/' and ':'.
Defect ParseVia(std::string_view v, Via* out) {
  *out = kEmptyVia;
  out->text = v;
  size_t i = 0;
  std::string_view* parts[3] = {&out->protocol_name, &out->protocol_version, &out->transport};
  for (int p = 0; p < 3; ++p) {
    i = SkipLws(v, i);
    if (p > 0) {
      if (i == v.size() || v[i] != '/') return Defect::kBadHeaderValue;
      i = SkipLws(v, i + 1);
    }
    size_t begin = i;
    i = SkipToken(v, i);
    if (i == begin) return Defect::kBadHeaderValue;
    *parts[p] = v.substr(begin, i - begin);
  }
  size_t host_begin = SkipLws(v, i);
  if (host_begin == i) return Defect::kBadHeaderValue;
  i = host_begin;
  if (i < v.size() && v[i] == '[') {
    size_t close = v.find(']', i);
    if (close == std::string_view::npos) return Defect::kBadHeaderValue;
    out->host = v.substr(i + 1, close - i - 1);
    out->host_kind = ClassifyHost(out->host, true);
    i = close + 1;
  } else {
    while (i < v.size() && (IsToken(v[i]) && v[i] != '!' && v[i] != '%')) ++i;
    out->host = v.substr(host_begin, i - host_begin);
    out->host_kind = ClassifyHost(out->host, false);
  }
  if (out->host_kind == HostKind::kNone) return Defect::kBadHeaderValue;
  size_t j = SkipLws(v, i);
  if (j < v.size() && v[j] == ':') {
    j = SkipLws(v, j + 1);
    size_t port_begin = j;
    while (j < v.size() && IsDigit(v[j])) ++j;
    if (!ParsePort(v.substr(port_begin, j - port_begin), &out->port)) return Defect::kBadHeaderValue;
  }
  size_t params_begin = SkipLws(v, j);
  out->params = v.substr(params_begin);
  bool ok = ParseParamList(v, params_begin, [&](std::string_view name, std::string_view value) {
    return OnViaParam(out, name, value);
  });
  return ok ? Defect::kNone : Defect::kBadHeaderValue;
}

// ---------------------------------------------------------------------------------------
// One-pass fast paths. Each walks a list item once, straight from the header value, and
// either fills its output exactly as the split-then-parse functions above would, or returns
// nullptr; the caller then runs those functions, which alone decide every defect. So a fast
// path may refuse anything unusual (quoted parameter values, IPv6, escapes, passwords) but
// must never accept what the exact path rejects, nor accept it differently.
//
// An item ends at ',' or at the end of the value; the returned pointer is its end with
// trailing LWS left out, as ForEachListItem() trims it. No fast path takes ',' inside an
// item, nor '"', '<' or '>' except as balanced display-name quotes and URI brackets, so its
// items are the ones ForEachListItem() would cut.

const char* SkipLws(const char* p, const char* e) {
  // Every LWS byte is <= ' ': most calls end on the first compare, without a table load.
  while (p < e && static_cast<uint8_t>(*p) <= ' ' && IsLws(*p)) ++p;
  return p;
}

// Up to 8 bytes as the word memcpy() loads from them.
constexpr uint64_t LoadedWord(std::string_view bytes) {
  static_assert(std::endian::native == std::endian::little, "words are little-endian");
  uint64_t word = 0;
  for (size_t i = 0; i < bytes.size() && i < 8; ++i)
    word |= uint64_t{static_cast<uint8_t>(bytes[i])} << (8 * i);
  return word;
}
constexpr uint32_t Word4(std::string_view four) {
  return static_cast<uint32_t>(LoadedWord(four.substr(0, 4)));
}

// A parameter name with its '=' ("branch="), matched by one masked compare of the word
// after the ';' instead of a scan: only its letters may differ in case, and it is followed
// by a value. Up to 9 bytes: a ninth is compared on its own.
struct ParamKey {
  uint64_t bytes = 0;  // the first 8 bytes, lower case, little-endian
  uint64_t mask = 0;   // which of them the key covers
  uint64_t fold = 0;   // 0x20 on its letters
  char ninth = 0;      // the 9th byte, or 0
  uint8_t name_size = 0;
};

constexpr ParamKey MakeParamKey(std::string_view spelled) {
  ParamKey key;
  key.bytes = LoadedWord(spelled);
  for (size_t i = 0; i < spelled.size() && i < 8; ++i) {
    key.mask |= uint64_t{0xff} << (8 * i);
    if (spelled[i] >= 'a' && spelled[i] <= 'z') key.fold |= uint64_t{0x20} << (8 * i);
  }
  key.ninth = spelled.size() > 8 ? spelled[8] : 0;
  key.name_size = static_cast<uint8_t>(spelled.size() - 1);
  return key;
}

// ParseParamList() over an item that stops at ',' or `e`, without quoted values. The names
// in `keys`, the ones the caller looks for, are matched without a scan when written in the
// usual ";name=value" way; any other shape takes the general loop. `fn(key, name, value)`
// learns which key matched (its index, with a value of at least one byte) or gets kNoKey,
// and must then judge the name itself.
template <typename Fn>
const char* ParseParamsPrefix(const char* p, const char* e, std::span<const ParamKey> keys,
                              Fn&& fn) {
  for (;;) {
    // Ten bytes (';', a key of up to 9 and a value byte) are read only when the value
    // holds them, so nothing after it can take part in a match.
    if (!keys.empty() && e - p >= 10 && *p == ';') {
      uint64_t word;
      std::memcpy(&word, p + 1, sizeof word);
      const ParamKey* key = nullptr;
      for (const ParamKey& k : keys)
        if (((word | k.fold) & k.mask) == k.bytes && (k.ninth == 0 || p[9] == k.ninth)) {
          key = &k;
          break;
        }
      if (key != nullptr) {
        const char* value = p + 2 + key->name_size;
        const char* value_end = SkipClass(value, e, kParamValue);
        if (value_end != value) {
          if (!fn(static_cast<int>(key - keys.data()), std::string_view(p + 1, key->name_size),
                  std::string_view(value, static_cast<size_t>(value_end - value))))
            return nullptr;
          p = value_end;
          continue;
        }
      }
    }
    const char* q = SkipLws(p, e);
    if (q == e || *q == ',') return p;
    if (*q != ';') return nullptr;
    q = SkipLws(q + 1, e);
    const char* name = q;
    q = SkipClass(q, e, kToken);
    if (q == name) return nullptr;
    std::string_view name_view(name, static_cast<size_t>(q - name));
    std::string_view value;
    p = q;
    const char* j = SkipLws(q, e);
    if (j < e && *j == '=') {
      j = SkipLws(j + 1, e);
      const char* value_begin = j;
      j = SkipClass(j, e, kParamValue);
      if (j == value_begin) return nullptr;  // also a quoted value: the exact path reads it
      value = {value_begin, static_cast<size_t>(j - value_begin)};
      p = j;
    }
    if (!fn(kNoKey, name_view, value)) return nullptr;
  }
}

// In ViaKey and ContactKey order; kTagKeys has the one key 0.
constexpr ParamKey kViaKeys[] = {MakeParamKey("branch="), MakeParamKey("rport="),
                                 MakeParamKey("received=")};
constexpr ParamKey kTagKeys[] = {MakeParamKey("tag=")};
constexpr ParamKey kContactKeys[] = {MakeParamKey("q="), MakeParamKey("expires="),
                                     MakeParamKey("tag=")};

// `params` runs from the first parameter to the item's end; empty, it sits at the end, as
// value.substr(value.size()) does in the exact path.
std::string_view ParamsView(const char* params_begin, const char* item_end) {
  if (params_begin > item_end) params_begin = item_end;
  return {params_begin, static_cast<size_t>(item_end - params_begin)};
}

// "SIP/2.0/" transport LWS host [":" port] params: every Via a real peer sends.
const char* ParseViaPrefix(const char* p, const char* e, const char* limit, Via* out) {
  if (e - p < 9 || std::memcmp(p, "SIP/2.0/", 8) != 0) return nullptr;
  *out = kEmptyVia;
  const char* begin = p;
  out->protocol_name = {p, 3};
  out->protocol_version = {p + 4, 3};
  p += 8;
  const char* transport = p;
  const char* host;
  // "UDP ", "TCP " or "TLS " and the host: the transport and its LWS without a scan.
  uint32_t word = 0;
  if (e - p >= 5) std::memcpy(&word, p, sizeof word);
  if ((word == Word4("UDP ") || word == Word4("TCP ") || word == Word4("TLS ")) &&
      static_cast<uint8_t>(p[4]) > ' ') {
    p += 3;
    host = p + 1;
  } else {
    p = SkipClass(p, e, kToken);
    if (p == transport) return nullptr;
    host = SkipLws(p, e);
    if (host == p) return nullptr;
  }
  out->transport = {transport, static_cast<size_t>(p - transport)};
  out->host_kind = ScanHost(host, e, limit, &p);
  // ParseVia() takes a host up to the first non-token byte ('!' and '%' excluded): a
  // longer run than ScanHost() took means a host the exact path must judge.
  if (out->host_kind == HostKind::kNone || (p < e && IsToken(*p))) return nullptr;
  out->host = {host, static_cast<size_t>(p - host)};
  const char* item_end = p;
  const char* j = SkipLws(p, e);
  if (j < e && *j == ':') {
    j = SkipLws(j + 1, e);
    const char* digits = j;
    while (j < e && IsDigit(*j)) ++j;
    if (!ParsePortDigits(digits, static_cast<size_t>(j - digits), &out->port)) return nullptr;
    item_end = j;
  }
  const char* params = SkipLws(j, e);
  item_end = ParseParamsPrefix(item_end, e, kViaKeys, [out](int key, std::string_view name,
                                                            std::string_view value) {
    switch (key) {
      case kViaBranch: out->branch = value; return true;
      case kViaRport: out->has_rport = true; return ParsePort(value, &out->rport);
      default: return OnViaParam(out, name, value);
    }
  });
  if (item_end == nullptr) return nullptr;
  out->text = {begin, static_cast<size_t>(item_end - begin)};
  out->params = ParamsView(params, item_end);
  return item_end;
}

// name-addr or addr-spec with header parameters, as ParseNameAddr() plus ParseParamList().
template <typename Fn>
const char* ParseNameAddrPrefix(const char* p, const char* e, const char* limit, NameAddr* out,
                                std::span<const ParamKey> keys, Fn&& on_param) {
  // Every member but `uri`, which ParseUriPrefix() resets before it can succeed.
  static_assert(sizeof(NameAddr) == 4 * sizeof(std::string_view) + sizeof(SipUri) + 8,
                "a new NameAddr member must be reset here");
  out->text = {};
  out->display_name = {};
  out->params = {};
  out->tag = {};
  out->angle_brackets = false;
  out->quoted_display_name = false;
  const char* begin = p;
  const char* after_uri;
  const char* q = p;
  if (q < e && *q == '"') {
    for (++q; q < e && *q != '"'; ++q)
      if (*q == '\\') return nullptr;
    if (q == e) return nullptr;
    out->display_name = {p + 1, static_cast<size_t>(q - p - 1)};
    out->quoted_display_name = true;
    q = SkipLws(q + 1, e);
    if (q == e || *q != '<') return nullptr;
  } else {
    while (q < e && IsDisplayNameChar(*q)) ++q;
    if (q < e && *q == '<') out->display_name = TrimLws({p, static_cast<size_t>(q - p)});
  }
  if (q < e && *q == '<') {
    out->angle_brackets = true;
    const char* uri_end = ParseUriPrefix(q + 1, e, limit, UriEnd::kAngle, &out->uri);
    if (uri_end == nullptr) return nullptr;
    after_uri = uri_end + 1;
  } else {
    // Without '<' (anywhere: a later one stops every scan below) it is an addr-spec.
    after_uri = ParseUriPrefix(p, e, limit, UriEnd::kAddrSpec, &out->uri);
    if (after_uri == nullptr) return nullptr;
  }
  const char* params = SkipLws(after_uri, e);
  const char* item_end = ParseParamsPrefix(after_uri, e, keys, on_param);
  if (item_end == nullptr) return nullptr;
  out->text = {begin, static_cast<size_t>(item_end - begin)};
  out->params = ParamsView(params, item_end);
  return item_end;
}

const char* ParseFromToPrefix(const char* p, const char* e, const char* limit, NameAddr* out) {
  return ParseNameAddrPrefix(p, e, limit, out, kTagKeys,
                             [out](int key, std::string_view name, std::string_view v) {
                               if (key == 0 || EqualsLowerLetters(name, "tag")) {
                                 if (v.empty()) return false;
                                 out->tag = v;
                               }
                               return true;
                             });
}

const char* ParseContactPrefix(const char* p, const char* e, const char* limit, Contact* out) {
  // `address` is reset by ParseNameAddrPrefix().
  static_assert(sizeof(Contact) == sizeof(NameAddr) + 16,
                "a new Contact member must be reset here");
  out->expires = -1;
  out->q_millis = -1;
  out->defect = ContactDefect::kNone;
  return ParseNameAddrPrefix(p, e, limit, &out->address, kContactKeys,
                             [out](int key, std::string_view name, std::string_view v) {
                               return OnContactParam(out, key, name, v);
                             });
}

const char* ParseRoutePrefix(const char* p, const char* e, const char* limit, NameAddr* out) {
  return ParseNameAddrPrefix(p, e, limit, out, {},
                             [](int, std::string_view, std::string_view) { return true; });
}

bool ParseCSeq(std::string_view v, CSeq* out) {
  // 1*DIGIT LWS Method, the number read as it is scanned.
  const char* p = v.data();
  const char* const e = p + v.size();
  const char* digit = p;
  uint64_t number = 0;
  for (; digit < e && IsDigit(*digit); ++digit) {
    number = number * 10 + static_cast<uint64_t>(*digit - '0');
    if (number > kMaxUint32) return false;
  }
  if (digit == p) return false;
  const char* method = SkipLws(digit, e);
  if (method == digit || method == e || !AllToken(method, e)) return false;
  out->number = static_cast<uint32_t>(number);
  out->method_text = {method, static_cast<size_t>(e - method)};
  out->method = LookupMethod(out->method_text);
  return true;
}

// Call-ID = word [ "@" word ], in one pass.
bool IsValidCallId(std::string_view v, const char* limit) {
  const char* p = v.data();
  const char* e = p + v.size();
  const char* q = SkipWordChars(p, e, limit);
  if (q == p) return false;
  if (q == e) return true;
  if (*q != '@') return false;
  const char* second = ++q;
  q = SkipWordChars(q, e, limit);
  return q != second && q == e;
}

// A comma list of tokens; an empty value is fine (Supported:), an empty item is not.
// One pass: a quote or bracket, which would change how ForEachListItem() splits, is not a
// token character, so it fails the list either way. LWS is looked for only where a byte
// is neither a token character nor the ',' expected next: "INVITE, ACK" costs a table test
// per byte and little per item.
bool IsTokenList(std::string_view v) {
  const char* p = v.data();
  const char* const e = p + v.size();
  if (p == e) return true;
  for (;;) {
    if (!IsToken(*p)) {
      p = SkipLws(p, e);
      if (p == e || !IsToken(*p)) return false;
    }
    do ++p;
    while (p < e && IsToken(*p));
    if (p == e) return true;
    if (*p != ',') {
      p = SkipLws(p, e);
      if (p == e) return true;
      if (*p != ',') return false;
    }
    if (++p == e) return false;
  }
}

// rfc1123-date = wkday "," SP date1 SP time SP "GMT" (RFC 3261 20.17; only GMT is legal).
bool IsValidDate(std::string_view v) {
  static constexpr std::string_view kDays[] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
  static constexpr std::string_view kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                 "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  // "Sat, 13 Nov 2010 23:29:00 GMT"
  if (v.size() != 29) return false;
  bool day_ok = false, month_ok = false;
  for (auto d : kDays) day_ok |= v.substr(0, 3) == d;
  for (auto m : kMonths) month_ok |= v.substr(8, 3) == m;
  auto digits = [&](size_t at, size_t n) {
    for (size_t k = at; k < at + n; ++k)
      if (!IsDigit(v[k])) return false;
    return true;
  };
  return day_ok && month_ok && v.substr(3, 2) == ", " && digits(5, 2) && v[7] == ' ' &&
         v[11] == ' ' && digits(12, 4) && v[16] == ' ' && digits(17, 2) && v[19] == ':' &&
         digits(20, 2) && v[22] == ':' && digits(23, 2) && v.substr(25) == " GMT";
}

// media-type = m-type SLASH m-subtype *(SEMI m-parameter)
bool IsValidContentType(std::string_view v) {
  size_t i = SkipToken(v, 0);
  if (i == 0) return false;
  i = SkipLws(v, i);
  if (i == v.size() || v[i] != '/') return false;
  i = SkipLws(v, i + 1);
  size_t sub = i;
  i = SkipToken(v, i);
  if (i == sub) return false;
  return ParseParamList(v, i, [](std::string_view, std::string_view) { return true; });
}

bool IsSipVersion(std::string_view v) { return EqualsIgnoreCase(v, "SIP/2.0"); }

// SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT: well formed but maybe not 2.0 (then 505).
bool LooksLikeSipVersion(std::string_view v) {
  if (v.size() < 7 || !EqualsIgnoreCase(v.substr(0, 4), "SIP/")) return false;
  size_t dot = v.find('.', 4);
  if (dot == std::string_view::npos || dot == 4 || dot + 1 == v.size()) return false;
  for (size_t k = 4; k < v.size(); ++k)
    if (k != dot && !IsDigit(v[k])) return false;
  return true;
}

// Fills the next free slots from a list value with a one-pass `prefix` parser. False, with
// `count` restored, when the parser declines an item or the slots run out: the exact path
// then parses the whole value again and reports whatever is wrong.
template <typename Value, typename Prefix>
bool ParseListPrefix(std::string_view v, const char* limit, Value* slots, size_t capacity,
                     size_t& count, Prefix prefix) {
  const size_t first = count;
  const char* p = v.data();
  const char* e = p + v.size();
  while (count < capacity) {
    const char* q = prefix(p, e, limit, &slots[count]);
    if (q == nullptr) break;
    ++count;
    q = SkipLws(q, e);
    if (q == e) return true;
    p = SkipLws(q + 1, e);  // past the ',' that ended the item
  }
  count = first;
  return false;
}

// Bit i set when p[i] == '\n', for i < n (n <= 64).
uint64_t NewlineMask(const char* p, size_t n) {
  uint64_t mask = 0;
  size_t i = 0;
#if defined(__SSE2__)
  const __m128i lf = _mm_set1_epi8('\n');
  for (; i + 16 <= n; i += 16) {
    __m128i chunk = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i));
    mask |= static_cast<uint64_t>(
                static_cast<uint32_t>(_mm_movemask_epi8(_mm_cmpeq_epi8(chunk, lf))))
            << i;
  }
#endif
  for (; i < n; ++i) mask |= static_cast<uint64_t>(p[i] == '\n') << i;
  return mask;
}

// NewlineMask(p, 64), unrolled: every window but the input's last one.
uint64_t NewlineMask64(const char* p) {
#if defined(__SSE2__)
  const __m128i lf = _mm_set1_epi8('\n');
  uint64_t mask = 0;
  for (int k = 0; k < 4; ++k) {
    __m128i chunk = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * k));
    mask |= static_cast<uint64_t>(static_cast<uint32_t>(
                _mm_movemask_epi8(_mm_cmpeq_epi8(chunk, lf))))
            << (16 * k);
  }
  return mask;
#else
  return NewlineMask(p, 64);
#endif
}

// Finds line ends 64 bytes at a time, so that the next line of a header block costs a bit
// scan instead of a memchr() call. Reads only [window, end).
class NewlineFinder {
 public:
  explicit NewlineFinder(const char* end) : end_(end) {}

  /// The first '\n' at or after `p`, or `end` when there is none.
  const char* Next(const char* p) {
    for (;;) {
      if (p >= end_) return end_;
      uintptr_t offset = reinterpret_cast<uintptr_t>(p) - reinterpret_cast<uintptr_t>(window_);
      if (offset >= window_size_) {  // also when p is before the window (wraps around)
        window_ = p;
        size_t left = static_cast<size_t>(end_ - p);
        window_size_ = left < 64 ? left : 64;
        mask_ = window_size_ == 64 ? NewlineMask64(p) : NewlineMask(p, window_size_);
        offset = 0;
      }
      uint64_t bits = mask_ >> offset;
      if (bits != 0) return p + __builtin_ctzll(bits);
      p = window_ + window_size_;
    }
  }

 private:
  const char* window_ = nullptr;
  size_t window_size_ = 0;
  const char* const end_;
  uint64_t mask_ = 0;
};

}  // namespace

// The headers ParseHeaderValue() has a case for; every other one it would leave alone.
constexpr uint64_t kCheckedHeaders = [] {
  uint64_t mask = 0;
  for (HeaderId id : {HeaderId::kVia, HeaderId::kContact, HeaderId::kRoute, HeaderId::kRecordRoute,
                      HeaderId::kFrom, HeaderId::kTo, HeaderId::kCallId, HeaderId::kCSeq,
                      HeaderId::kMaxForwards, HeaderId::kContentLength, HeaderId::kContentType,
                      HeaderId::kExpires, HeaderId::kDate, HeaderId::kRequire,
                      HeaderId::kProxyRequire, HeaderId::kSupported, HeaderId::kUnsupported,
                      HeaderId::kAllow, HeaderId::kRetryAfter})
    mask |= uint64_t{1} << static_cast<unsigned>(id);
  return mask;
}();
static_assert(static_cast<unsigned>(HeaderId::kCount) <= 64, "kCheckedHeaders is one word");

// One parse in progress; SipMessage befriends it to fill its private members.
class ParserState {
 public:
  // `one_pass` off leaves every value to the split-then-parse functions alone: the reference
  // that ParseExact() offers the differential tests.
  ParserState(std::string_view input, Framing framing, const ParserLimits& limits, SipMessage* m,
              bool one_pass)
      : in_(input), framing_(framing), limits_(limits), m_(*m), one_pass_(one_pass) {}

  ParseResult Run();
  /// Run()'s verdict, sooner, for the shape nearly every message has: CRLF line ends, no
  /// folding, no leading CRLF, names ending at their ':', and a complete, valid message.
  /// False for anything else; the message is then in no useful state and Run() starts over.
  bool RunFast(ParseResult* result);

 private:
  void Fail(Defect defect, HeaderId header = HeaderId::kOther, std::string_view name = {}) {
    if (problem_) return;  // the first defect is the one reported
    problem_.defect = defect;
    problem_.header = header;
    problem_.header_name = name;
  }
  ParseResult Finish(ParseStatus status, size_t consumed) {
    ParseResult r;
    r.status = status;
    r.consumed = static_cast<uint32_t>(consumed);
    r.problem = problem_;
    if (status == ParseStatus::kMalformed || status == ParseStatus::kTooLarge) {
      if (!answerable_) {
        r.problem.response_code = 0;
      } else {
        switch (r.problem.defect) {
          case Defect::kBadVersion: r.problem.response_code = 505; break;
          // RFC 3261 21.5.14: the message as a whole is over what the server takes.
          case Defect::kMessageTooLarge: r.problem.response_code = 513; break;
          default: r.problem.response_code = 400; break;
        }
      }
    }
    return r;
  }

  void ParseStartLine(std::string_view line);
  // Stores a header line (`value` already LWS-trimmed) and checks its value.
  void OnHeader(std::string_view name, std::string_view value, HeaderId id);
  void ParseHeaderValue(const HeaderField& field);
  template <typename Value, typename ParseOne>
  void ParseList(const HeaderField& field, std::vector<Value>& slots, size_t max_count,
                 size_t& count, ParseOne parse_one);

  std::string_view in_;
  Framing framing_;
  const ParserLimits& limits_;
  SipMessage& m_;
  const bool one_pass_;
  Problem problem_;
  bool answerable_ = false;  // a request whose start line named a method: a 4xx can go back
  uint64_t content_length_ = 0;
  bool has_content_length_ = false;
};

void ParserState::ParseStartLine(std::string_view line) {
  if (line.size() >= 4 && EqualsIgnoreCase(line.substr(0, 4), "SIP/")) {
    // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
    m_.is_request_ = false;
    size_t sp = line.find(' ');
    std::string_view version = line.substr(0, sp);
    if (!IsSipVersion(version)) return Fail(LooksLikeSipVersion(version) ? Defect::kBadVersion
                                                                         : Defect::kBadStartLine);
    std::string_view rest = sp == std::string_view::npos ? std::string_view() : line.substr(sp + 1);
    // Exactly three digits; "4294967301" (RFC 4475 bigcode) is not a status code.
    if (rest.size() < 3 || !IsDigit(rest[0]) || !IsDigit(rest[1]) || !IsDigit(rest[2]) ||
        (rest.size() > 3 && rest[3] != ' '))
      return Fail(Defect::kBadStatusCode);
    int code = (rest[0] - '0') * 100 + (rest[1] - '0') * 10 + (rest[2] - '0');
    if (code < 100 || code > 699) return Fail(Defect::kBadStatusCode);
    m_.status_code_ = code;
    m_.reason_phrase_ = rest.size() > 4 ? rest.substr(4) : std::string_view();
    return;
  }
  // Request-Line = Method SP Request-URI SP SIP-Version, single spaces (RFC 4475 3.1.2.9).
  m_.is_request_ = true;
  size_t first_sp = line.find(' ');
  std::string_view method = line.substr(0, first_sp);
  // A line that starts with a token or ends in the version is a request gone wrong, worth
  // a 400; anything else is noise, dropped without an answer.
  const bool method_ok = IsTokenString(method);
  answerable_ = method_ok || (line.size() > 8 && line.substr(line.size() - 8) == " SIP/2.0");
  if (first_sp == std::string_view::npos || !method_ok)
    return Fail(Defect::kBadStartLine);
  m_.method_text_ = method;
  m_.method_ = LookupMethod(method);
  size_t last_sp = line.rfind(' ');
  if (last_sp == first_sp) return Fail(Defect::kBadStartLine);
  std::string_view version = line.substr(last_sp + 1);
  if (!IsSipVersion(version))
    return Fail(LooksLikeSipVersion(version) ? Defect::kBadVersion : Defect::kBadStartLine);
  std::string_view uri = line.substr(first_sp + 1, last_sp - first_sp - 1);
  if (uri.empty()) return Fail(Defect::kBadStartLine);
  // The one-pass parser takes neither SP, HT nor '?': its success settles all three checks.
  if (one_pass_ && ParseUriPrefix(uri.data(), uri.data() + uri.size(), in_.data() + in_.size(),
                                  UriEnd::kText, &m_.request_uri_) != nullptr)
    return;
  m_.request_uri_ = kEmptySipUri;  // as Clear() left it, should the checks below fail first
  for (char c : uri)
    if (c == ' ' || c == '\t') return Fail(Defect::kBadRequestUri);
  if (ParseUri(uri, &m_.request_uri_) != UriError::kNone) return Fail(Defect::kBadRequestUri);
  // Escaped headers are not allowed in a Request-URI (RFC 3261 19.1.1, RFC 4475 3.1.2.11).
  if (!m_.request_uri_.headers.empty()) return Fail(Defect::kBadRequestUri);
}

// Parses each comma-separated value of a list header into the next free slot.
template <typename Value, typename ParseOne>
void ParserState::ParseList(const HeaderField& field, std::vector<Value>& slots,
                            size_t max_count, size_t& count, ParseOne parse_one) {
  ForEachListItem(field.value, [&](std::string_view item) {
    if (problem_) return;
    if (item.empty()) return Fail(Defect::kBadHeaderValue, field.id, field.name);
    if (count == slots.size()) {
      if (count >= max_count) return Fail(Defect::kTooManyValues, field.id, field.name);
      // Each value took bytes of the message: growth is bounded by its size.
      slots.resize(std::min(max_count, 2 * slots.size()));
    }
    Defect d = parse_one(item, &slots[count++]);
    if (d != Defect::kNone) Fail(d, field.id, field.name);
  });
}

void ParserState::ParseHeaderValue(const HeaderField& field) {
  std::string_view v = field.value;
  // Vector loads may cross the end of a value, never the end of the input.
  const char* limit = in_.data() + in_.size();
  auto fail = [&](Defect d) { Fail(d, field.id, field.name); };
  auto bad = [&] { fail(Defect::kBadHeaderValue); };
  // A header with a case here must be in kCheckedHeaders too, or it never gets here.
  switch (field.id) {
    case HeaderId::kVia:
      if (!one_pass_ || !ParseListPrefix(v, limit, m_.vias_.data(), m_.vias_.size(),
                                         m_.via_count_, ParseViaPrefix))
        ParseList(field, m_.vias_, kUnbounded, m_.via_count_, ParseVia);
      break;
    case HeaderId::kContact:
      if (v == "*") {
        m_.contact_star_ = true;
        break;
      }
      if (!one_pass_ || !ParseListPrefix(v, limit, m_.contacts_.data(),
                                         SipMessage::kMaxContacts, m_.contact_count_,
                                         ParseContactPrefix))
        ParseList(field, m_.contacts_, SipMessage::kMaxContacts, m_.contact_count_,
                  ParseContact);
      break;
    case HeaderId::kRoute:
      if (!one_pass_ || !ParseListPrefix(v, limit, m_.routes_.data(), m_.routes_.size(),
                                         m_.route_count_, ParseRoutePrefix))
        ParseList(field, m_.routes_, kUnbounded, m_.route_count_, ParseRoute);
      break;
    case HeaderId::kRecordRoute:
      if (!one_pass_ || !ParseListPrefix(v, limit, m_.record_routes_.data(),
                                         m_.record_routes_.size(), m_.record_route_count_,
                                         ParseRoutePrefix))
        ParseList(field, m_.record_routes_, kUnbounded,
                  m_.record_route_count_, ParseRoute);
      break;
    case HeaderId::kFrom:
    case HeaderId::kTo: {
      bool from = field.id == HeaderId::kFrom;
      bool& seen = from ? m_.has_from_ : m_.has_to_;
      if (seen) return fail(Defect::kDuplicateHeader);
      seen = true;
      NameAddr* out = from ? &m_.from_ : &m_.to_;
      const char* end = v.data() + v.size();
      if (one_pass_ && ParseFromToPrefix(v.data(), end, limit, out) == end) break;
      Defect d = ParseFromTo(v, out);
      if (d != Defect::kNone) fail(d);
      break;
    }
    case HeaderId::kCallId:
      if (!m_.call_id_.empty()) return fail(Defect::kDuplicateHeader);
      if (!IsValidCallId(v, limit)) return bad();
      m_.call_id_ = v;
      break;
    case HeaderId::kCSeq:
      if (m_.has_cseq_) return fail(Defect::kDuplicateHeader);
      m_.has_cseq_ = true;
      if (!ParseCSeq(v, &m_.cseq_)) bad();
      break;
    case HeaderId::kMaxForwards: {
      if (m_.max_forwards_ >= 0) return fail(Defect::kDuplicateHeader);
      uint64_t hops;
      if (!ParseDecimal(v, 255, &hops)) return bad();
      m_.max_forwards_ = static_cast<int>(hops);
      break;
    }
    case HeaderId::kContentLength: {
      uint64_t length;
      if (!ParseDecimal(v, kMaxUint32, &length)) return fail(Defect::kBadContentLength);
      // Two different lengths leave the framing undefined (RFC 4475 3.3.9).
      if (has_content_length_ && length != content_length_) return fail(Defect::kBadContentLength);
      has_content_length_ = true;
      content_length_ = length;
      break;
    }
    case HeaderId::kContentType:
      if (!m_.content_type_.empty()) return fail(Defect::kDuplicateHeader);
      if (!IsValidContentType(v)) return bad();
      m_.content_type_ = v;
      break;
    case HeaderId::kExpires: {
      if (m_.expires_ >= 0) return fail(Defect::kDuplicateHeader);
      uint64_t seconds;
      if (!ParseDecimal(v, kMaxUint32, &seconds)) return bad();
      m_.expires_ = static_cast<int64_t>(seconds);
      break;
    }
    case HeaderId::kDate:
      if (!IsValidDate(v)) bad();
      break;
    case HeaderId::kRequire:
    case HeaderId::kProxyRequire:
    case HeaderId::kSupported:
    case HeaderId::kUnsupported:
    case HeaderId::kAllow:
      if (!IsTokenList(v)) bad();
      break;
    case HeaderId::kRetryAfter: {
      size_t digits = 0;
      while (digits < v.size() && IsDigit(v[digits])) ++digits;
      uint64_t seconds;
      if (!ParseDecimal(v.substr(0, digits), kMaxUint32, &seconds)) bad();
      break;
    }
    default:
      break;
  }
}

inline void ParserState::OnHeader(std::string_view name, std::string_view value, HeaderId id) {
  // Every line took bytes of the message: growth is bounded by its size.
  if (m_.header_count_ == m_.headers_.size()) m_.headers_.resize(2 * m_.headers_.size());
  HeaderField& field = m_.headers_[m_.header_count_++];
  field.name = name;
  field.value = value;
  field.id = id;
  // After the first defect only the raw lines are kept: enough to address an error answer.
  // Headers without a grammar to check (unknown ones, Subject, ...) skip the call and its
  // frame setup.
  const bool checked = ((kCheckedHeaders >> static_cast<unsigned>(id)) & 1) != 0;
  if (checked && !problem_) ParseHeaderValue(field);
}

ParseResult ParserState::Run() {
  m_.Clear();
  const size_t size = in_.size();
  size_t pos = 0;
  // CRLFs before a start line are keep-alives or noise (RFC 3261 7.5, RFC 5626 4.4.1).
  while (pos < size && (in_[pos] == '\r' || in_[pos] == '\n')) ++pos;
  if (pos == size) {
    if (pos > 0) return Finish(ParseStatus::kKeepAlive, pos);
    if (framing_ == Framing::kStream) return Finish(ParseStatus::kIncomplete, 0);
    Fail(Defect::kBadStartLine);
    return Finish(ParseStatus::kMalformed, 0);
  }
  const size_t start = pos;
  const size_t limit = limits_.max_message_bytes;
  auto too_large = [&](size_t consumed) {
    // A start line that reads as a request may be answered 513, if the caller can address it.
    size_t sp = in_.find(' ', start);
    answerable_ = sp != std::string_view::npos && sp > start &&
                  IsTokenString(in_.substr(start, sp - start)) &&
                  !EqualsIgnoreCase(in_.substr(start, 4), "SIP/");
    Fail(Defect::kMessageTooLarge);
    return Finish(ParseStatus::kTooLarge, consumed);
  };
  if (framing_ == Framing::kDatagram) {
    if (size - start > limit) return too_large(size);
  } else {
    // Frame before parsing so that a message arriving in pieces is parsed once.
    size_t end = start;
    bool found = false;
    while (end < size) {
      const void* nl = std::memchr(in_.data() + end, '\n', size - end);
      if (!nl) break;
      end = static_cast<const char*>(nl) - in_.data() + 1;
      if (end < size && in_[end] == '\n') { found = true; break; }
      if (end + 1 < size && in_[end] == '\r' && in_[end + 1] == '\n') { found = true; break; }
    }
    if (!found) {
      if (size - start > limit) return too_large(size);
      return Finish(ParseStatus::kIncomplete, 0);
    }
    if (end - start > limit) return too_large(size);
  }

  // Start line.
  NewlineFinder newlines(in_.data() + size);
  auto find_newline = [&](size_t from) {
    return static_cast<size_t>(newlines.Next(in_.data() + from) - in_.data());
  };
  size_t line_end = find_newline(pos);
  size_t content_end = line_end > pos && in_[line_end - 1] == '\r' ? line_end - 1 : line_end;
  ParseStartLine(in_.substr(pos, content_end - pos));
  pos = line_end < size ? line_end + 1 : size;

  // Header lines. A header is complete once the next line does not continue it (folding),
  // so its continuation lines are taken right after it.
  const char* const base = in_.data();
  const char* const input_end = base + size;
  const char* p = base + pos;
  const char* body = nullptr;  // set at the empty line
  while (p < input_end) {
    const char* newline = newlines.Next(p);
    const char* text_end = newline > p && newline[-1] == '\r' ? newline - 1 : newline;
    const char* next = newline < input_end ? newline + 1 : input_end;
    if (text_end == p) {
      body = next;
      break;
    }
    if (IsSpOrHt(*p)) {
      // A continuation with no header line to continue.
      Fail(Defect::kBadHeaderName);
      p = next;
      continue;
    }
    // field-name = token, then optional whitespace ("Via  :" in RFC 4475 wsinv), then ':'.
    // A name the lookup knows is all token characters (it matches exactly, case aside), so
    // the first ':', SP or HT ends it, and only other names need the token check.
    const char* name_end = SkipToNameEnd(p, text_end, input_end);
    HeaderId id = detail::LookupHeaderIdInline(p, static_cast<size_t>(name_end - p));
    if (id == HeaderId::kOther && !AllToken(p, name_end))
      name_end = SkipClass(p, text_end, kToken);
    const char* colon = name_end;
    while (colon < text_end && IsSpOrHt(*colon)) ++colon;
    if (name_end == p || colon == text_end || *colon != ':') {
      size_t shown = text_end - p < 32 ? static_cast<size_t>(text_end - p) : 32;
      Fail(Defect::kBadHeaderName, HeaderId::kOther, {p, shown});
      p = next;
      continue;
    }
    const char* name = p;
    const char* value_end = text_end;
    p = next;
    while (p < input_end && IsSpOrHt(*p)) {
      newline = newlines.Next(p);
      value_end = newline > p && newline[-1] == '\r' ? newline - 1 : newline;
      p = newline < input_end ? newline + 1 : input_end;
    }
    OnHeader({name, static_cast<size_t>(name_end - name)},
             TrimLws({colon + 1, static_cast<size_t>(value_end - colon - 1)}), id);
  }
  const bool saw_empty_line = body != nullptr;
  const size_t body_begin = saw_empty_line ? static_cast<size_t>(body - base) : 0;
  if (!saw_empty_line) {
    // Only a datagram gets here: stream framing found the empty line above.
    Fail(Defect::kNoEmptyLine);
    return Finish(ParseStatus::kMalformed, size);
  }
  if (problem_) return Finish(ParseStatus::kMalformed, framing_ == Framing::kDatagram ? size : body_begin);

  size_t end;
  if (has_content_length_) {
    if (framing_ == Framing::kDatagram) {
      // Over UDP a Content-Length larger than the datagram is an error (RFC 3261 18.3);
      // bytes after the body are ignored (RFC 4475 3.1.1.8).
      if (content_length_ > size - body_begin) {
        Fail(Defect::kBodyTruncated, HeaderId::kContentLength);
        return Finish(ParseStatus::kMalformed, size);
      }
    } else {
      if (body_begin - start + content_length_ > limit) return too_large(size);
      if (content_length_ > size - body_begin) return Finish(ParseStatus::kIncomplete, 0);
    }
    end = body_begin + content_length_;
    m_.content_length_ = static_cast<int64_t>(content_length_);
  } else {
    if (framing_ == Framing::kStream) {
      Fail(Defect::kMissingContentLength, HeaderId::kContentLength);
      return Finish(ParseStatus::kMalformed, body_begin);
    }
    end = size;  // RFC 2543 style: the body is the rest of the datagram
  }
  m_.body_ = in_.substr(body_begin, end - body_begin);
  m_.raw_ = in_.substr(start, end - start);
  return Finish(ParseStatus::kComplete, framing_ == Framing::kDatagram ? size : end);
}

bool ParserState::RunFast(ParseResult* result) {
  m_.Clear();
  const char* const base = in_.data();
  const size_t size = in_.size();
  const size_t max_bytes = limits_.max_message_bytes;
  if (size == 0 || base[0] == '\r' || base[0] == '\n') return false;
  if (framing_ == Framing::kDatagram && size > max_bytes) return false;
  // A stream buffer may hold several messages: the first one's header block is looked for
  // within the size limit only, and anything that reaches that bound declines.
  const char* const end = base + (size < max_bytes ? size : max_bytes);
  NewlineFinder newlines(end);
  const char* line_feed = newlines.Next(base);
  if (line_feed == end || line_feed[-1] != '\r') return false;
  ParseStartLine({base, static_cast<size_t>(line_feed - 1 - base)});
  if (problem_) return false;

  const char* p = line_feed + 1;
  const char* body;
  for (;;) {
    if (p >= end) return false;
    if (*p == '\r') {
      if (p + 1 == end || p[1] != '\n') return false;
      body = p + 2;
      break;
    }
    line_feed = newlines.Next(p);
    if (line_feed == end || line_feed[-1] != '\r') return false;
    const char* const text_end = line_feed - 1;
    const char* const next = line_feed + 1;
    if (next < end && IsSpOrHt(*next)) return false;  // folded onto the next line
    const char* const colon = SkipToColon(p, text_end, end);
    if (colon == text_end) return false;
    const size_t name_size = static_cast<size_t>(colon - p);
    const HeaderId id = detail::LookupHeaderIdInline(p, name_size);
    // A known name matched exactly, so it is a token; "Via :" and the like take Run().
    if (id == HeaderId::kOther && (name_size == 0 || !AllToken(p, colon))) return false;
    // Mostly ": value": the one SP is skipped before TrimLws(), which then has nothing to do.
    const char* value = colon + 1;
    if (value < text_end && *value == ' ') ++value;
    OnHeader({p, name_size}, TrimLws({value, static_cast<size_t>(text_end - value)}), id);
    if (problem_) return false;
    p = next;
  }

  const size_t body_begin = static_cast<size_t>(body - base);
  size_t message_end = size;  // without Content-Length, the body is the rest of the datagram
  if (has_content_length_) {
    // A body shorter than its Content-Length: the exact path reports it, or waits for more.
    if (content_length_ > size - body_begin) return false;
    message_end = body_begin + content_length_;
    if (message_end > max_bytes) return false;  // a stream message over the limit
    m_.content_length_ = static_cast<int64_t>(content_length_);
  } else if (framing_ == Framing::kStream) {
    return false;
  }
  m_.body_ = in_.substr(body_begin, message_end - body_begin);
  m_.raw_ = in_.substr(0, message_end);
  *result = Finish(ParseStatus::kComplete, framing_ == Framing::kDatagram ? size : message_end);
  return true;
}

ParseResult SipParser::Parse(std::string_view input, Framing framing, SipMessage* message) const {
  ParseResult result;
  if (ParserState(input, framing, limits_, message, /*one_pass=*/true).RunFast(&result))
    return result;
  return ParserState(input, framing, limits_, message, /*one_pass=*/true).Run();
}

ParseResult SipParser::ParseExact(std::string_view input, Framing framing,
                                  SipMessage* message) const {
  return ParserState(input, framing, limits_, message, /*one_pass=*/false).Run();
}

std::string_view DefectText(Defect defect) {
  switch (defect) {
    case Defect::kNone: return "no defect";
    case Defect::kBadStartLine: return "malformed start line";
    case Defect::kBadMethod: return "malformed method";
    case Defect::kBadRequestUri: return "malformed Request-URI";
    case Defect::kBadVersion: return "unsupported SIP version";
    case Defect::kBadStatusCode: return "malformed status code";
    case Defect::kBadHeaderName: return "malformed header line";
    case Defect::kBadHeaderValue: return "malformed header value";
    case Defect::kDuplicateHeader: return "header present more than once";
    case Defect::kTooManyHeaders: return "too many header lines";
    case Defect::kTooManyValues: return "too many header values";
    case Defect::kBadContentLength: return "malformed or conflicting Content-Length";
    case Defect::kBodyTruncated: return "body shorter than Content-Length";
    case Defect::kMissingContentLength: return "Content-Length missing on a stream transport";
    case Defect::kNoEmptyLine: return "no empty line after the headers";
    case Defect::kMessageTooLarge: return "message over the size limit";
    case Defect::kMissingHeader: return "mandatory header missing";
    case Defect::kCSeqMethodMismatch: return "CSeq method differs from the request method";
    case Defect::kMethodNotImplemented: return "method not implemented";
    case Defect::kUnsupportedUriScheme: return "unsupported Request-URI scheme";
    case Defect::kTooManyHops: return "Max-Forwards exhausted";
    case Defect::kUnsupportedExtension: return "unsupported extension required";
    case Defect::kBadBranch: return "Via branch is only the magic cookie";
    case Defect::kBadAddressOfRecord: return "address of record is not a SIP or SIPS URI";
    case Defect::kRequestUriTooLong: return "Request-URI over the length limit";
  }
  return "unknown defect";
}

size_t WriteReasonPhrase(const Problem& problem, char* out, size_t capacity) {
  size_t n = 0;
  auto put = [&](std::string_view s) {
    for (char c : s) {
      if (n == capacity) return;
      // The header name comes off the wire: keep the phrase to printable ASCII.
      out[n++] = (c >= 0x20 && c < 0x7f) ? c : '?';
    }
  };
  std::string_view name = problem.header_name;
  if (name.empty()) name = HeaderName(problem.header);
  switch (problem.defect) {
    case Defect::kBadVersion: put("Version Not Supported"); return n;
    case Defect::kMessageTooLarge: put("Message Too Large"); return n;
    case Defect::kUnsupportedUriScheme: put("Unsupported URI Scheme"); return n;
    case Defect::kTooManyHops: put("Too Many Hops"); return n;
    case Defect::kUnsupportedExtension: put("Bad Extension"); return n;
    case Defect::kMethodNotImplemented: put("Not Implemented"); return n;
    case Defect::kBadHeaderValue: put("Bad "); put(name); put(" Header"); return n;
    case Defect::kMissingHeader: put("Missing "); put(name); put(" Header"); return n;
    case Defect::kDuplicateHeader: put("Duplicate "); put(name); put(" Header"); return n;
    case Defect::kTooManyValues: put("Too Many "); put(name); put(" Values"); return n;
    case Defect::kBadHeaderName:
      put("Malformed Header Line");
      if (!name.empty()) { put(": "); put(name); }
      return n;
    case Defect::kBadContentLength: put("Bad Content-Length"); return n;
    case Defect::kBodyTruncated: put("Body Shorter Than Content-Length"); return n;
    case Defect::kMissingContentLength: put("Missing Content-Length"); return n;
    case Defect::kBadRequestUri: put("Bad Request-URI"); return n;
    case Defect::kBadStartLine: put("Bad Request Line"); return n;
    case Defect::kCSeqMethodMismatch: put("CSeq Method Mismatch"); return n;
    case Defect::kBadBranch: put("Bad Via Branch"); return n;
    case Defect::kBadAddressOfRecord: put("Bad Address Of Record"); return n;
    case Defect::kRequestUriTooLong: put("Request-URI Too Long"); return n;
    case Defect::kNoEmptyLine: put("Missing Empty Line After Headers"); return n;
    case Defect::kTooManyHeaders: put("Too Many Headers"); return n;
    default: put("Bad Request"); return n;
  }
}

}  // namespace b2bua::proto
