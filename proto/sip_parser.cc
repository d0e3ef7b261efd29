#include "proto/sip_parser.h"

#include <cstring>

#include "proto/sip_chars.h"

namespace b2bua::proto {
namespace {

constexpr uint64_t kMaxUint32 = 0xffffffffULL;

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
  *out = NameAddr{};
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

Defect ParseContact(std::string_view value, Contact* out) {
  *out = Contact{};
  std::string_view params;
  Defect d = ParseNameAddr(value, &out->address, &params);
  if (d != Defect::kNone) return d;
  bool ok = ParseParamList(params, 0, [&](std::string_view name, std::string_view v) {
    if (EqualsIgnoreCase(name, "q")) {
      if (!ParseQValue(v, &out->q_millis)) {
        out->q_millis = -1;
        out->defect = ContactDefect::kBadQValue;
      }
    } else if (EqualsIgnoreCase(name, "expires")) {
      uint64_t seconds;
      if (ParseDecimal(v, kMaxUint32, &seconds)) out->expires = static_cast<int64_t>(seconds);
      else if (out->defect == ContactDefect::kNone) out->defect = ContactDefect::kBadExpires;
    } else if (EqualsIgnoreCase(name, "tag")) {
      out->address.tag = v;
    }
    return true;
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

// via-parm = sent-protocol LWS sent-by *( SEMI via-params ), with SWS around '/' and ':'.
Defect ParseVia(std::string_view v, Via* out) {
  *out = Via{};
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
    if (EqualsIgnoreCase(name, "branch")) {
      if (value.empty()) return false;
      out->branch = value;
    } else if (EqualsIgnoreCase(name, "received")) {
      if (value.size() > 2 && value.front() == '[' && value.back() == ']')
        value = value.substr(1, value.size() - 2);
      if (ClassifyHost(value, value.find(':') != std::string_view::npos) == HostKind::kNone)
        return false;
      out->received = value;
    } else if (EqualsIgnoreCase(name, "rport")) {
      out->has_rport = true;
      if (!value.empty() && !ParsePort(value, &out->rport)) return false;
    } else if (EqualsIgnoreCase(name, "maddr")) {
      if (value.empty()) return false;
      out->maddr = value;
    } else if (EqualsIgnoreCase(name, "ttl")) {
      uint64_t ttl;
      if (!ParseDecimal(value, 255, &ttl)) return false;
      out->ttl = static_cast<int16_t>(ttl);
    }
    return true;
  });
  return ok ? Defect::kNone : Defect::kBadHeaderValue;
}

bool ParseCSeq(std::string_view v, CSeq* out) {
  size_t i = 0;
  while (i < v.size() && IsDigit(v[i])) ++i;
  uint64_t number;
  if (!ParseDecimal(v.substr(0, i), kMaxUint32, &number)) return false;
  size_t method_begin = SkipLws(v, i);
  if (method_begin == i) return false;
  std::string_view method = v.substr(method_begin);
  if (!IsTokenString(method)) return false;
  out->number = static_cast<uint32_t>(number);
  out->method_text = method;
  out->method = LookupMethod(method);
  return true;
}

// Call-ID = word [ "@" word ].
bool IsValidCallId(std::string_view v) {
  if (v.empty()) return false;
  size_t at = v.find('@');
  std::string_view first = v.substr(0, at);
  if (first.empty()) return false;
  for (char c : first)
    if (!IsWordChar(c)) return false;
  if (at == std::string_view::npos) return true;
  std::string_view second = v.substr(at + 1);
  if (second.empty()) return false;
  for (char c : second)
    if (!IsWordChar(c)) return false;
  return true;
}

// A comma list of tokens; an empty value is fine (Supported:), an empty item is not.
bool IsTokenList(std::string_view v) {
  if (v.empty()) return true;
  bool ok = true;
  ForEachListItem(v, [&](std::string_view item) { ok = ok && IsTokenString(item); });
  return ok;
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

}  // namespace

// One parse in progress; SipMessage befriends it to fill its private members.
class ParserState {
 public:
  ParserState(std::string_view input, Framing framing, const ParserLimits& limits, SipMessage* m)
      : in_(input), framing_(framing), limits_(limits), m_(*m) {}

  ParseResult Run();

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
          case Defect::kMessageTooLarge: r.problem.response_code = 413; break;
          default: r.problem.response_code = 400; break;
        }
      }
    }
    return r;
  }

  void ParseStartLine(std::string_view line);
  void OnHeader(std::string_view name, std::string_view value);
  void ParseHeaderValue(const HeaderField& field);
  template <typename Value, typename ParseOne>
  void ParseList(const HeaderField& field, Value* slots, size_t capacity, size_t& count,
                 ParseOne parse_one);

  std::string_view in_;
  Framing framing_;
  const ParserLimits& limits_;
  SipMessage& m_;
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
  answerable_ = IsTokenString(method) ||
                (line.size() > 8 && line.substr(line.size() - 8) == " SIP/2.0");
  if (first_sp == std::string_view::npos || !IsTokenString(method))
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
  for (char c : uri)
    if (c == ' ' || c == '\t') return Fail(Defect::kBadRequestUri);
  if (ParseUri(uri, &m_.request_uri_) != UriError::kNone) return Fail(Defect::kBadRequestUri);
  // Escaped headers are not allowed in a Request-URI (RFC 3261 19.1.1, RFC 4475 3.1.2.11).
  if (!m_.request_uri_.headers.empty()) return Fail(Defect::kBadRequestUri);
}

// Parses each comma-separated value of a list header into the next free slot.
template <typename Value, typename ParseOne>
void ParserState::ParseList(const HeaderField& field, Value* slots, size_t capacity,
                            size_t& count, ParseOne parse_one) {
  ForEachListItem(field.value, [&](std::string_view item) {
    if (problem_) return;
    if (item.empty()) return Fail(Defect::kBadHeaderValue, field.id, field.name);
    if (count == capacity) return Fail(Defect::kTooManyValues, field.id, field.name);
    Defect d = parse_one(item, &slots[count++]);
    if (d != Defect::kNone) Fail(d, field.id, field.name);
  });
}

void ParserState::ParseHeaderValue(const HeaderField& field) {
  std::string_view v = field.value;
  auto fail = [&](Defect d) { Fail(d, field.id, field.name); };
  auto bad = [&] { fail(Defect::kBadHeaderValue); };
  switch (field.id) {
    case HeaderId::kVia:
      ParseList(field, m_.vias_.data(), SipMessage::kMaxVias, m_.via_count_, ParseVia);
      break;
    case HeaderId::kContact:
      if (v == "*") {
        m_.contact_star_ = true;
        break;
      }
      ParseList(field, m_.contacts_.data(), SipMessage::kMaxContacts, m_.contact_count_,
                ParseContact);
      break;
    case HeaderId::kRoute:
      ParseList(field, m_.routes_.data(), SipMessage::kMaxRoutes, m_.route_count_, ParseRoute);
      break;
    case HeaderId::kRecordRoute:
      ParseList(field, m_.record_routes_.data(), SipMessage::kMaxRoutes, m_.record_route_count_,
                ParseRoute);
      break;
    case HeaderId::kFrom:
    case HeaderId::kTo: {
      bool from = field.id == HeaderId::kFrom;
      bool& seen = from ? m_.has_from_ : m_.has_to_;
      if (seen) return fail(Defect::kDuplicateHeader);
      seen = true;
      Defect d = ParseFromTo(v, from ? &m_.from_ : &m_.to_);
      if (d != Defect::kNone) fail(d);
      break;
    }
    case HeaderId::kCallId:
      if (!m_.call_id_.empty()) return fail(Defect::kDuplicateHeader);
      if (!IsValidCallId(v)) return bad();
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

void ParserState::OnHeader(std::string_view name, std::string_view value) {
  if (m_.header_count_ == SipMessage::kMaxHeaders) return Fail(Defect::kTooManyHeaders);
  HeaderField& field = m_.headers_[m_.header_count_++];
  field.name = name;
  field.value = TrimLws(value);
  field.id = LookupHeaderId(name);
  // After the first defect only the raw lines are kept: enough to address an error answer.
  if (!problem_) ParseHeaderValue(field);
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
    // A start line that reads as a request may be answered 413, if the caller can address it.
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
  const void* nl = std::memchr(in_.data() + pos, '\n', size - pos);
  size_t line_end = nl ? static_cast<const char*>(nl) - in_.data() : size;
  size_t content_end = line_end > pos && in_[line_end - 1] == '\r' ? line_end - 1 : line_end;
  ParseStartLine(in_.substr(pos, content_end - pos));
  pos = nl ? line_end + 1 : size;

  // Header lines; a header is complete once the next line does not continue it (folding).
  std::string_view pending_name;
  size_t pending_value_begin = 0, pending_value_end = 0;
  bool pending = false;
  auto flush = [&] {
    if (pending) OnHeader(pending_name, in_.substr(pending_value_begin,
                                                   pending_value_end - pending_value_begin));
    pending = false;
  };
  size_t body_begin = 0;
  bool saw_empty_line = false;
  while (pos < size) {
    nl = std::memchr(in_.data() + pos, '\n', size - pos);
    line_end = nl ? static_cast<const char*>(nl) - in_.data() : size;
    content_end = line_end > pos && in_[line_end - 1] == '\r' ? line_end - 1 : line_end;
    size_t next = nl ? line_end + 1 : size;
    if (content_end == pos) {
      flush();
      saw_empty_line = true;
      body_begin = next;
      break;
    }
    if (in_[pos] == ' ' || in_[pos] == '\t') {
      if (!pending) Fail(Defect::kBadHeaderName);
      pending_value_end = content_end;
      pos = next;
      continue;
    }
    flush();
    // field-name = token, then optional whitespace ("Via  :" in RFC 4475 wsinv), then ':'.
    size_t name_end = pos;
    while (name_end < content_end && IsToken(in_[name_end])) ++name_end;
    size_t colon = name_end;
    while (colon < content_end && (in_[colon] == ' ' || in_[colon] == '\t')) ++colon;
    if (name_end == pos || colon == content_end || in_[colon] != ':') {
      size_t shown = content_end - pos < 32 ? content_end - pos : 32;
      Fail(Defect::kBadHeaderName, HeaderId::kOther, in_.substr(pos, shown));
    } else {
      pending = true;
      pending_name = in_.substr(pos, name_end - pos);
      pending_value_begin = colon + 1;
      pending_value_end = content_end;
    }
    pos = next;
  }
  if (!saw_empty_line) {
    flush();
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

ParseResult SipParser::Parse(std::string_view input, Framing framing, SipMessage* message) const {
  return ParserState(input, framing, limits_, message).Run();
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
    case Defect::kNoEmptyLine: put("Missing Empty Line After Headers"); return n;
    case Defect::kTooManyHeaders: put("Too Many Headers"); return n;
    default: put("Bad Request"); return n;
  }
}

}  // namespace b2bua::proto
