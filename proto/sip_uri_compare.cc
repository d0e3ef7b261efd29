#include "proto/sip_uri_compare.h"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "proto/sip_chars.h"
#include "proto/sip_message.h"

namespace b2bua::proto {
namespace {

constexpr char kUpperHex[] = "0123456789ABCDEF";

// One character of a URI component after unescaping.
struct Unit {
  char c;
  // A reserved character (or '%') written as %HH. RFC 3261 19.1.4 makes only unreserved
  // characters equal to their escapes: "a%3Bb" (one user "a;b" escaped) is not "a;b".
  bool escaped;
};

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  return ToLowerAscii(c) - 'a' + 10;
}

bool StaysEscaped(char c) {
  switch (c) {
    case ';': case '/': case '?': case ':': case '@': case '&': case '=': case '+': case '$':
    case ',':
    // '%' itself: decoding "%2541" to "%41" would make it collide with a real escape.
    case '%':
      return true;
    default:
      return false;
  }
}

// Reads the unit at s[*i] and advances *i past it.
Unit NextUnit(std::string_view s, size_t* i) {
  char c = s[*i];
  if (c == '%' && *i + 2 < s.size() && IsHexDigit(s[*i + 1]) && IsHexDigit(s[*i + 2])) {
    char decoded = static_cast<char>(HexValue(s[*i + 1]) * 16 + HexValue(s[*i + 2]));
    *i += 3;
    return {decoded, StaysEscaped(decoded)};
  }
  // A '%' without two hex digits cannot come out of ParseUri; it stays a plain character.
  ++*i;
  return {c, false};
}

// Compares two escaped component texts unit by unit, without allocating.
bool UnitsEqual(std::string_view a, std::string_view b, bool fold_case) {
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    Unit x = NextUnit(a, &i);
    Unit y = NextUnit(b, &j);
    if (x.escaped != y.escaped) return false;
    if (fold_case ? ToLowerAscii(x.c) != ToLowerAscii(y.c) : x.c != y.c) return false;
  }
  return i == a.size() && j == b.size();
}

// Appends the canonical spelling of a component: the form UnitsEqual() compares.
void AppendCanonical(std::string* out, std::string_view s, bool fold_case) {
  for (size_t i = 0; i < s.size();) {
    Unit u = NextUnit(s, &i);
    if (u.escaped) {
      unsigned char byte = static_cast<unsigned char>(u.c);
      out->push_back('%');
      out->push_back(kUpperHex[byte >> 4]);
      out->push_back(kUpperHex[byte & 15]);
    } else {
      out->push_back(fold_case ? ToLowerAscii(u.c) : u.c);
    }
  }
}

void AppendLower(std::string* out, std::string_view s) {
  for (char c : s) out->push_back(ToLowerAscii(c));
}

// ---------------------------------------------------------------------------------------
// Hosts.

// Reads an IP literal into network-order bytes (IPv4 in the first four). False for text that
// ClassifyHost() accepted but that is no address, such as the lenient "2001:db8:::192.0.2.1".
bool IpBytes(std::string_view host, HostKind kind, std::array<uint8_t, 16>* out) {
  *out = {};
  if (kind == HostKind::kIpv4) {
    // ClassifyHost() allows leading zeros ("192.0.2.01"), which inet_pton() refuses.
    size_t part = 0;
    int value = -1;
    for (char c : host) {
      if (c == '.') {
        if (value < 0 || part == 3) return false;
        (*out)[part++] = static_cast<uint8_t>(value);
        value = -1;
      } else if (IsDigit(c)) {
        value = (value < 0 ? 0 : value * 10) + (c - '0');
        if (value > 255) return false;
      } else {
        return false;
      }
    }
    if (value < 0 || part != 3) return false;
    (*out)[3] = static_cast<uint8_t>(value);
    return true;
  }
  if (kind == HostKind::kIpv6) {
    char text[INET6_ADDRSTRLEN + 1];
    if (host.size() >= sizeof(text)) return false;
    std::memcpy(text, host.data(), host.size());
    text[host.size()] = '\0';
    return inet_pton(AF_INET6, text, out->data()) == 1;
  }
  return false;
}

bool HostsEqual(std::string_view a, HostKind a_kind, std::string_view b, HostKind b_kind) {
  // An IP address never equals a name, even one that resolves to it.
  if (a_kind != b_kind) return false;
  if (a_kind != HostKind::kIpv4 && a_kind != HostKind::kIpv6) return EqualsIgnoreCase(a, b);
  std::array<uint8_t, 16> a_bytes, b_bytes;
  bool a_ok = IpBytes(a, a_kind, &a_bytes);
  bool b_ok = IpBytes(b, b_kind, &b_bytes);
  if (a_ok && b_ok) return a_bytes == b_bytes;
  return !a_ok && !b_ok && EqualsIgnoreCase(a, b);
}

void AppendHost(std::string* out, std::string_view host, HostKind kind, bool brackets) {
  std::array<uint8_t, 16> bytes;
  if (IpBytes(host, kind, &bytes)) {
    char text[INET6_ADDRSTRLEN];
    int family = kind == HostKind::kIpv6 ? AF_INET6 : AF_INET;
    if (inet_ntop(family, bytes.data(), text, sizeof(text)) != nullptr) {
      if (brackets && kind == HostKind::kIpv6) out->push_back('[');
      out->append(text);
      if (brackets && kind == HostKind::kIpv6) out->push_back(']');
      return;
    }
  }
  bool bracket = brackets && kind == HostKind::kIpv6;
  if (bracket) out->push_back('[');
  AppendLower(out, host);
  if (bracket) out->push_back(']');
}

// ---------------------------------------------------------------------------------------
// Parameters.

bool IsSignificantParam(std::string_view name) {
  constexpr std::string_view kSignificant[] = {"transport", "user", "ttl", "method", "maddr"};
  for (std::string_view s : kSignificant)
    if (UnitsEqual(name, s, true)) return true;
  return false;
}

// Finds the first parameter named `name` (escape-aware, case-insensitive).
bool FindFirstParam(std::string_view params, std::string_view name,
                    std::string_view* found_name, std::string_view* found_value) {
  ParamIterator it(params);
  std::string_view n, v;
  while (it.Next(&n, &v)) {
    if (UnitsEqual(n, name, true)) {
      *found_name = n;
      *found_value = v;
      return true;
    }
  }
  return false;
}

// True when `name` (a view into `params`) is the first parameter of that name there.
bool IsFirstOccurrence(std::string_view params, std::string_view name) {
  std::string_view first_name, first_value;
  return FindFirstParam(params, name, &first_name, &first_value) &&
         first_name.data() == name.data();
}

bool ParamsEquivalent(std::string_view a, std::string_view b, bool all_significant) {
  std::string_view n, v, other_name, other_value;
  ParamIterator a_it(a);
  while (a_it.Next(&n, &v)) {
    if (!IsFirstOccurrence(a, n)) continue;
    if (FindFirstParam(b, n, &other_name, &other_value)) {
      // A flag parameter has an empty value: ";lr" equals ";lr" but not ";lr=1".
      if (!UnitsEqual(v, other_value, true)) return false;
    } else if (all_significant || IsSignificantParam(n)) {
      return false;
    }
  }
  ParamIterator b_it(b);
  while (b_it.Next(&n, &v)) {
    if (!IsFirstOccurrence(b, n)) continue;
    if (!FindFirstParam(a, n, &other_name, &other_value) &&
        (all_significant || IsSignificantParam(n)))
      return false;
  }
  return true;
}

void AppendParams(std::string* out, std::string_view params, bool all_significant) {
  std::vector<std::string> items;
  ParamIterator it(params);
  std::string_view n, v;
  while (it.Next(&n, &v)) {
    if (!(all_significant || IsSignificantParam(n)) || !IsFirstOccurrence(params, n)) continue;
    std::string item;
    AppendCanonical(&item, n, true);
    if (!v.empty()) {
      item.push_back('=');
      AppendCanonical(&item, v, true);
    }
    items.push_back(std::move(item));
  }
  // Names are unique and hold no '=', so sorting whole items sorts by name.
  std::sort(items.begin(), items.end());
  for (const std::string& item : items) {
    out->push_back(';');
    out->append(item);
  }
}

// ---------------------------------------------------------------------------------------
// Header components ("?a=b&c=d").

struct UriHeader {
  std::string_view name;
  std::string_view value;
};

template <typename Fn>
void ForEachUriHeader(std::string_view headers, Fn&& fn) {
  if (headers.empty()) return;
  for (size_t begin = 0; begin <= headers.size();) {
    size_t end = headers.find('&', begin);
    if (end == std::string_view::npos) end = headers.size();
    std::string_view item = headers.substr(begin, end - begin);
    size_t eq = item.find('=');
    fn(UriHeader{item.substr(0, eq),
                 eq == std::string_view::npos ? std::string_view() : item.substr(eq + 1)});
    begin = end + 1;
  }
}

// Compact forms name the same header as the long form ("s" is "Subject").
std::string_view CanonicalHeaderName(std::string_view name) {
  HeaderId id = LookupHeaderId(name);
  return id == HeaderId::kOther ? name : HeaderName(id);
}

bool UriHeadersEqual(const UriHeader& x, const UriHeader& y) {
  return UnitsEqual(CanonicalHeaderName(x.name), CanonicalHeaderName(y.name), true) &&
         UnitsEqual(x.value, y.value, false);
}

size_t CountEqual(std::string_view headers, const UriHeader& h) {
  size_t count = 0;
  ForEachUriHeader(headers, [&](const UriHeader& other) { count += UriHeadersEqual(h, other); });
  return count;
}

// Multiset equality without allocating: equal sizes, and every header of `a` occurs as often
// in `b` as in `a`. Quadratic, but URIs carry a handful of headers at most.
bool UriHeadersEquivalent(std::string_view a, std::string_view b) {
  size_t a_count = 0, b_count = 0;
  ForEachUriHeader(a, [&](const UriHeader&) { ++a_count; });
  ForEachUriHeader(b, [&](const UriHeader&) { ++b_count; });
  if (a_count != b_count) return false;
  bool equal = true;
  ForEachUriHeader(a, [&](const UriHeader& h) {
    if (equal) equal = CountEqual(a, h) == CountEqual(b, h);
  });
  return equal;
}

void AppendUriHeaders(std::string* out, std::string_view headers) {
  std::vector<std::string> items;
  ForEachUriHeader(headers, [&](const UriHeader& h) {
    std::string item;
    AppendCanonical(&item, CanonicalHeaderName(h.name), true);
    item.push_back('=');
    AppendCanonical(&item, h.value, false);
    items.push_back(std::move(item));
  });
  if (items.empty()) return;
  // A name holds no literal '=', so each item splits back unambiguously: equal sorted lists
  // are exactly equal multisets.
  std::sort(items.begin(), items.end());
  out->push_back('?');
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out->push_back('&');
    out->append(items[i]);
  }
}

// ---------------------------------------------------------------------------------------
// tel: numbers (RFC 3966 4).

bool IsVisualSeparator(char c) { return c == '-' || c == '.' || c == '(' || c == ')'; }

bool TelNumbersEqual(std::string_view a, std::string_view b) {
  size_t i = 0, j = 0;
  for (;;) {
    while (i < a.size() && IsVisualSeparator(a[i])) ++i;
    while (j < b.size() && IsVisualSeparator(b[j])) ++j;
    if (i == a.size() || j == b.size()) return i == a.size() && j == b.size();
    if (ToLowerAscii(a[i]) != ToLowerAscii(b[j])) return false;
    ++i;
    ++j;
  }
}

std::string_view OpaquePart(const SipUri& uri) {
  return uri.text.size() > uri.scheme_text.size() ? uri.text.substr(uri.scheme_text.size() + 1)
                                                  : std::string_view();
}

}  // namespace

bool SipUriEquivalent(const SipUri& a, const SipUri& b) {
  if (a.scheme != b.scheme) return false;
  switch (a.scheme) {
    case UriScheme::kOther:
      return EqualsIgnoreCase(a.scheme_text, b.scheme_text) && OpaquePart(a) == OpaquePart(b);
    case UriScheme::kTel:
      return TelNumbersEqual(a.user, b.user) && ParamsEquivalent(a.params, b.params, true);
    case UriScheme::kSip:
    case UriScheme::kSips:
      break;
  }
  // Cheapest and most selective tests first: most compared URIs differ in user or host.
  return a.has_user == b.has_user && a.port == b.port && UnitsEqual(a.user, b.user, false) &&
         HostsEqual(a.host, a.host_kind, b.host, b.host_kind) &&
         UnitsEqual(a.password, b.password, false) &&
         ParamsEquivalent(a.params, b.params, false) &&
         UriHeadersEquivalent(a.headers, b.headers);
}

std::string NormalizeSipUri(const SipUri& uri) {
  std::string key;
  key.reserve(uri.text.size() + 8);
  switch (uri.scheme) {
    case UriScheme::kOther:
      AppendLower(&key, uri.scheme_text);
      key.push_back(':');
      key.append(OpaquePart(uri));
      return key;
    case UriScheme::kTel:
      key.append("tel:");
      for (char c : uri.user)
        if (!IsVisualSeparator(c)) key.push_back(ToLowerAscii(c));
      AppendParams(&key, uri.params, true);
      return key;
    case UriScheme::kSip:
      key.append("sip:");
      break;
    case UriScheme::kSips:
      key.append("sips:");
      break;
  }
  if (uri.has_user) {
    // Neither a canonical user nor a password holds a literal '@' (it stays %40), so the
    // key splits back unambiguously.
    AppendCanonical(&key, uri.user, false);
    if (!uri.password.empty()) {
      key.push_back(':');
      AppendCanonical(&key, uri.password, false);
    }
    key.push_back('@');
  }
  AppendHost(&key, uri.host, uri.host_kind, true);
  if (uri.port != 0) {
    key.push_back(':');
    key.append(std::to_string(uri.port));
  }
  AppendParams(&key, uri.params, false);
  AppendUriHeaders(&key, uri.headers);
  return key;
}

std::string NormalizeSipHost(std::string_view host) {
  bool bracketed = host.size() >= 2 && host.front() == '[' && host.back() == ']';
  if (bracketed) host = host.substr(1, host.size() - 2);
  // An unbracketed IPv6 literal is accepted too: callers pass configured listen addresses.
  bool v6 = bracketed || host.find(':') != std::string_view::npos;
  std::string out;
  AppendHost(&out, host, ClassifyHost(host, v6), false);
  return out;
}

}  // namespace b2bua::proto
