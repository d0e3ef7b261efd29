#include "proto/sip_uri.h"

#include "proto/sip_chars.h"

namespace b2bua::proto {
namespace {

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

bool ParseIpv4(std::string_view s) {
  int parts = 0;
  size_t i = 0;
  while (i <= s.size()) {
    size_t start = i;
    int value = 0;
    while (i < s.size() && IsDigit(s[i])) {
      value = value * 10 + (s[i] - '0');
      if (value > 255 || i - start >= 3) return false;
      ++i;
    }
    if (i == start) return false;
    ++parts;
    if (i == s.size()) break;
    if (s[i] != '.') return false;
    ++i;
  }
  return parts == 4;
}

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
  // One pass: legal characters, no empty label, and whether it could be dotted IPv4.
  bool all_digits_and_dots = true;
  char previous = '.';  // so that a leading '.' counts as an empty label
  for (char c : host) {
    // '_' is not in RFC 1034 host names but appears in real SRV-style names; kHostChar has it.
    if (!HasClass(c, kHostChar) || (c == '.' && previous == '.')) return HostKind::kNone;
    all_digits_and_dots &= IsDigit(c) || c == '.';
    previous = c;
  }
  if (all_digits_and_dots) return ParseIpv4(host) ? HostKind::kIpv4 : HostKind::kNone;
  if (host.front() == '-') return HostKind::kNone;
  return HostKind::kName;
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

UriError ParseUri(std::string_view text, SipUri* out) {
  *out = SipUri{};
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
