#include "b2bua/config.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <exception>
#include <iterator>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "b2bua/default_config.h"
#include "b2bua/leg_headers.h"
#include "proto/sip_chars.h"
#include "proto/sip_message.h"
#include "proto/sip_parser.h"
#include "proto/str_util.h"
#include "yaml-cpp/yaml.h"

// File-local: propagates a failed absl::Status out of the calling function.
#define B2BUA_CONFIG_RETURN_IF_ERROR(expr) \
  do {                                     \
    absl::Status status_ = (expr);         \
    if (!status_.ok()) return status_;     \
  } while (false)

namespace b2bua {
namespace {

using std::chrono::milliseconds;
using std::chrono_literals::operator""h;
using std::chrono_literals::operator""ms;
using std::chrono_literals::operator""s;

constexpr std::string_view kDefaultSourceName = "<built-in default>";
// Far above any real configuration; stops a mistaken path such as /dev/zero.
constexpr size_t kMaxConfigBytes = 16 * 1024 * 1024;

// ---------------------------------------------------------------------------------------
// Small helpers.

// Debian's abseil has its own string_view: proto::StrCat takes std::string_view pieces.
using proto::StrCat;

std::string JoinNames(const std::vector<std::string_view>& names) {
  std::string out;
  for (std::string_view name : names) {
    if (!out.empty()) out += ", ";
    out += name;
  }
  return out;
}

size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      size_t cost = proto::ToLowerAscii(a[i - 1]) == proto::ToLowerAscii(b[j - 1]) ? 0 : 1;
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + cost});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// Shows a duration in the largest unit that divides it, as the file would spell it.
std::string FormatDuration(milliseconds d) {
  int64_t ms = d.count();
  if (ms != 0 && ms % 3600000 == 0) return StrCat(ms / 3600000, "h");
  if (ms != 0 && ms % 60000 == 0) return StrCat(ms / 60000, "m");
  if (ms % 1000 == 0) return StrCat(ms / 1000, "s");
  return StrCat(ms, "ms");
}

// "500ms", "8s", "2m", "4h", or a bare number of seconds.
bool ParseDurationText(std::string_view text, milliseconds* out) {
  size_t digits = 0;
  while (digits < text.size() && proto::IsDigit(text[digits])) ++digits;
  // 12 digits of hours still fit in int64 milliseconds; the caller checks the real range.
  if (digits == 0 || digits > 12) return false;
  int64_t value = 0;
  for (size_t i = 0; i < digits; ++i) value = value * 10 + (text[i] - '0');
  std::string_view unit = text.substr(digits);
  if (unit == "ms")
    *out = milliseconds(value);
  else if (unit.empty() || unit == "s")
    *out = milliseconds(value * 1000);
  else if (unit == "m")
    *out = milliseconds(value * 60000);
  else if (unit == "h")
    *out = milliseconds(value * 3600000);
  else
    return false;
  return true;
}

std::string_view NodeKind(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Null: return "nothing";
    case YAML::NodeType::Scalar: return "a single value";
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Map: return "a mapping";
    case YAML::NodeType::Undefined: return "nothing";
  }
  return "something else";
}

// The URI defects in the words of a configuration error ("bad port").
std::string_view UriProblem(proto::UriError error) {
  switch (error) {
    case proto::UriError::kNone: return "no error";
    case proto::UriError::kEmpty: return "empty";
    case proto::UriError::kBadScheme: return "bad scheme";
    case proto::UriError::kBadUser: return "bad user part";
    case proto::UriError::kBadHost: return "bad host";
    case proto::UriError::kBadPort: return "bad port";
    case proto::UriError::kBadParam: return "bad parameter";
    case proto::UriError::kBadHeaders: return "bad headers";
    case proto::UriError::kBadTelNumber: return "bad telephone number";
    case proto::UriError::kBadEscape: return "bad %-escape";
  }
  return "unknown defect";
}

// Checks "address/length" (or a bare address) and returns it with the length spelled out,
// or an explanation of what is wrong.
absl::StatusOr<std::string> CheckCidr(std::string_view text) {
  size_t slash = text.find('/');
  std::string address(text.substr(0, slash));
  // "[2001:db8::]/32", as IPv6 is written in URIs; the redirect policy accepts it too.
  bool bracketed = address.size() > 2 && address.front() == '[' && address.back() == ']';
  if (bracketed) address = address.substr(1, address.size() - 2);
  unsigned char bytes[16];
  int max_length;
  if (!bracketed && inet_pton(AF_INET, address.c_str(), bytes) == 1) {
    max_length = 32;
  } else if (inet_pton(AF_INET6, address.c_str(), bytes) == 1) {
    max_length = 128;
  } else {
    return absl::InvalidArgumentError(StrCat("'", text,
                                          "' is not a CIDR (expected an IPv4 or IPv6 address, ",
                                          "then '/' and a prefix length)"));
  }
  int length = max_length;
  if (slash != std::string_view::npos) {
    std::string_view digits = text.substr(slash + 1);
    bool all_digits = !digits.empty() && digits.size() <= 3 &&
                      std::all_of(digits.begin(), digits.end(), proto::IsDigit);
    if (all_digits) {
      length = 0;
      for (char c : digits) length = length * 10 + (c - '0');
    }
    if (!all_digits || length > max_length) {
      return absl::InvalidArgumentError(
          StrCat("'", text, "': the prefix length must be 0..", max_length));
    }
  }
  // "10.0.0.1/8" is nearly always a typo for "10.0.0.0/8" or "10.0.0.1/32"; refusing it
  // keeps the deny lists meaning what they look like.
  for (int bit = length; bit < max_length; ++bit) {
    if (bytes[bit / 8] & (0x80 >> (bit % 8))) {
      return absl::InvalidArgumentError(
          StrCat("'", text, "' has bits set after the /", length, " prefix (host bits must be zero)"));
    }
  }
  return slash == std::string_view::npos ? StrCat(text, "/", max_length) : std::string(text);
}

// Lower-cased domain, or an explanation. The redirect policy matches a domain and all its
// subdomains, so "*.example.com" would be a wildcard it never honours: refused with a hint.
absl::StatusOr<std::string> CheckDomain(std::string_view text) {
  std::string domain = absl::AsciiStrToLower(std::string(text));
  std::string_view name = domain;
  if (name.substr(0, 2) == "*.") {
    return absl::InvalidArgumentError(
        StrCat("'", text, "': write '", text.substr(2), "', which covers its subdomains too"));
  }
  if (!name.empty() && name.front() == '.') name.remove_prefix(1);  // ".example.com"
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);   // "example.com."
  switch (proto::ClassifyHost(name, false)) {
    case proto::HostKind::kName: return domain;
    case proto::HostKind::kIpv4:
    case proto::HostKind::kIpv6:
      return absl::InvalidArgumentError(
          StrCat("'", text, "' is an address; list addresses under cidrs"));
    case proto::HostKind::kNone: break;
  }
  // Host names never hold ':', IPv6 addresses always do.
  if (name.find(':') != std::string_view::npos) {
    return absl::InvalidArgumentError(
        StrCat("'", text, "' is an address; list addresses under cidrs"));
  }
  return absl::InvalidArgumentError(StrCat("'", text, "' is not a domain name"));
}

// ---------------------------------------------------------------------------------------
// The loader: walks the YAML tree and fills a Config, stopping at the first error.

// A mapping whose keys have been checked: each one known and present once.
struct Fields {
  struct Entry {
    std::string key;
    YAML::Node key_node;
    YAML::Node value;
  };
  std::vector<Entry> entries;

  const YAML::Node* Find(std::string_view key) const {
    for (const Entry& e : entries)
      if (e.key == key) return &e.value;
    return nullptr;
  }
};

// "redirect" + "allow" -> "redirect.allow"; "routes", 2 -> "routes[2]".
std::string KeyPath(std::string_view path, std::string_view key) {
  return path.empty() ? std::string(key) : StrCat(path, ".", key);
}
std::string ItemPath(std::string_view path, size_t i) { return StrCat(path, "[", i, "]"); }

class Loader {
 public:
  explicit Loader(std::string_view source) : source_(source) {}

  absl::Status Load(const YAML::Node& root, Config* config);

 private:
  absl::Status Error(const YAML::Node& node, std::string_view path, std::string_view reason) const {
    YAML::Mark mark = node.Mark();
    int line = mark.is_null() ? 1 : mark.line + 1;
    return absl::InvalidArgumentError(path.empty()
                                          ? StrCat(source_, ":", line, ": ", reason)
                                          : StrCat(source_, ":", line, ": ", path, ": ", reason));
  }
  static int Line(const YAML::Node& node) {
    YAML::Mark mark = node.Mark();
    return mark.is_null() ? 0 : mark.line + 1;
  }

  absl::Status ReadMap(const YAML::Node& node, std::string_view path,
                       std::initializer_list<std::string_view> known, Fields* out) const;
  absl::Status ReadScalar(const YAML::Node& node, std::string_view path, std::string_view what,
                          std::string* out) const;
  absl::Status ReadBool(const YAML::Node& node, std::string_view path, bool* out) const;
  template <typename T>
  absl::Status ReadInt(const YAML::Node& node, std::string_view path, int64_t min, int64_t max,
                       T* out) const;
  absl::Status ReadDuration(const YAML::Node& node, std::string_view path, milliseconds min,
                            milliseconds max, milliseconds* out) const;
  absl::Status ReadList(const YAML::Node& node, std::string_view path,
                        std::vector<YAML::Node>* out) const;
  absl::Status ReadStringList(const YAML::Node& node, std::string_view path,
                              std::vector<std::string>* out) const;
  template <typename T>
  absl::Status ReadEnum(const YAML::Node& node, std::string_view path,
                        std::initializer_list<std::pair<std::string_view, T>> names, T* out) const;
  absl::Status ReadStatusSet(const YAML::Node& node, std::string_view path,
                             StatusCodeSet* out) const;

  absl::Status ReadLimits(const YAML::Node& node, LimitsConfig* out) const;
  absl::Status ReadAccess(const YAML::Node& node, AccessConfig* out) const;
  absl::Status ReadFlood(const YAML::Node& node, FloodSettings* out) const;
  absl::Status ReadCidrList(const YAML::Node& node, std::string_view path,
                            proto::CidrList* out) const;
  absl::Status ReadTimers(const YAML::Node& node, TimersConfig* out) const;
  absl::Status ReadUdp(const YAML::Node& node, UdpConfig* out) const;
  absl::Status ReadTcp(const YAML::Node& node, TcpConfig* out) const;
  absl::Status ReadTls(const YAML::Node& node, TlsConfig* out) const;
  absl::Status ReadHeaders(const YAML::Node& node, HeaderPolicy* out) const;
  absl::Status ReadRedirect(const YAML::Node& node, std::string_view path,
                            RedirectSettings* inout) const;
  absl::Status ReadCache301(const YAML::Node& node, std::string_view path,
                            RedirectCacheSettings* inout) const;
  absl::Status ReadAllow(const YAML::Node& node, std::string_view path,
                         RedirectAllowList* inout) const;
  absl::Status ReadDeny(const YAML::Node& node, std::string_view path,
                        RedirectDenyList* inout) const;
  absl::Status ReadCidrs(const YAML::Node& node, std::string_view path,
                         std::vector<std::string>* out) const;
  absl::Status ReadDomains(const YAML::Node& node, std::string_view path,
                           std::vector<std::string>* out) const;
  absl::Status ReadProbe(const YAML::Node& node, ProbeConfig* out) const;
  absl::Status ReadRoutes(const YAML::Node& node, const RedirectSettings& global,
                          std::vector<Route>* out) const;
  absl::Status ReadRoute(const YAML::Node& node, std::string_view path,
                         const RedirectSettings& global, Route* out) const;
  absl::Status ReadNextHop(const YAML::Node& node, std::string_view path, NextHop* out) const;
  absl::Status ReadContact(const YAML::Node& node, std::string_view path, std::string* out) const;

  std::string source_;
  // Next hops over TLS need the tls: section, read before the routes.
  bool tls_configured_ = false;
  // Reused for every Contact check: a SipMessage is tens of kilobytes.
  mutable std::unique_ptr<proto::SipMessage> scratch_message_;
};

absl::Status Loader::ReadMap(const YAML::Node& node, std::string_view path,
                             std::initializer_list<std::string_view> known, Fields* out) const {
  out->entries.clear();
  // "limits:" with nothing under it reads as null: the same as leaving the section out.
  if (node.IsNull()) return absl::OkStatus();
  if (!node.IsMap()) {
    return Error(node, path, StrCat("expected a mapping (key: value), found ", NodeKind(node)));
  }
  for (auto it = node.begin(); it != node.end(); ++it) {
    // Copies: `it->` yields a temporary proxy, so a reference would dangle.
    const YAML::Node key_node = it->first;
    if (!key_node.IsScalar()) return Error(key_node, path, "a key must be a plain name");
    std::string key = key_node.Scalar();
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      std::string reason = StrCat("unknown key '", key, "'");
      std::string_view best;
      size_t best_distance = 3;  // suggest only close misspellings
      for (std::string_view candidate : known) {
        size_t d = EditDistance(key, candidate);
        if (d < best_distance) {
          best_distance = d;
          best = candidate;
        }
      }
      if (!best.empty())
        reason += StrCat(" (did you mean '", best, "'?)");
      else
        reason += StrCat(" (known keys: ", JoinNames(known), ")");
      return Error(key_node, path, reason);
    }
    // yaml-cpp keeps duplicate keys and answers lookups with the first: the second would
    // be silently ignored.
    for (const Fields::Entry& e : out->entries) {
      if (e.key == key) {
        return Error(key_node, KeyPath(path, key),
                     StrCat("appears twice (first on line ", Line(e.key_node), ")"));
      }
    }
    out->entries.push_back({std::move(key), key_node, it->second});
  }
  return absl::OkStatus();
}

absl::Status Loader::ReadScalar(const YAML::Node& node, std::string_view path,
                                std::string_view what, std::string* out) const {
  if (!node.IsScalar()) {
    return Error(node, path, StrCat("expected ", what, ", found ", NodeKind(node)));
  }
  *out = node.Scalar();
  return absl::OkStatus();
}

absl::Status Loader::ReadBool(const YAML::Node& node, std::string_view path, bool* out) const {
  std::string text;
  B2BUA_CONFIG_RETURN_IF_ERROR(ReadScalar(node, path, "true or false", &text));
  std::string lower = absl::AsciiStrToLower(text);
  if (lower == "true" || lower == "yes" || lower == "on")
    *out = true;
  else if (lower == "false" || lower == "no" || lower == "off")
    *out = false;
  else
    return Error(node, path, StrCat("'", text, "' is not true or false"));
  return absl::OkStatus();
}

template <typename T>
absl::Status Loader::ReadInt(const YAML::Node& node, std::string_view path, int64_t min,
                             int64_t max, T* out) const {
  std::string text;
  B2BUA_CONFIG_RETURN_IF_ERROR(ReadScalar(node, path, "a number", &text));
  int64_t value;
  if (!absl::SimpleAtoi(text, &value)) {
    return Error(node, path, StrCat("'", text, "' is not a whole number"));
  }
  if (value < min || value > max) {
    return Error(node, path, StrCat(value, " is out of range (", min, "..", max, ")"));
  }
  *out = static_cast<T>(value);
  return absl::OkStatus();
}

absl::Status Loader::ReadDuration(const YAML::Node& node, std::string_view path, milliseconds min,
                                  milliseconds max, milliseconds* out) const {
  std::string text;
  B2BUA_CONFIG_RETURN_IF_ERROR(ReadScalar(node, path, "a duration", &text));
  milliseconds value;
  if (!ParseDurationText(text, &value)) {
    return Error(
        node, path,
        StrCat("'", text, "' is not a duration (use 500ms, 8s, 2m, 4h, or a number of seconds)"));
  }
  if (value < min || value > max) {
    return Error(
        node, path,
        StrCat("'", text, "' is out of range (", FormatDuration(min), "..", FormatDuration(max), ")"));
  }
  *out = value;
  return absl::OkStatus();
}

absl::Status Loader::ReadList(const YAML::Node& node, std::string_view path,
                              std::vector<YAML::Node>* out) const {
  out->clear();
  if (node.IsNull()) return absl::OkStatus();  // "domains:" with nothing after it
  if (!node.IsSequence()) {
    return Error(node, path, StrCat("expected a list, found ", NodeKind(node)));
  }
  for (auto it = node.begin(); it != node.end(); ++it) out->push_back(*it);
  return absl::OkStatus();
}

absl::Status Loader::ReadStringList(const YAML::Node& node, std::string_view path,
                                    std::vector<std::string>* out) const {
  std::vector<YAML::Node> items;
  B2BUA_CONFIG_RETURN_IF_ERROR(ReadList(node, path, &items));
  out->clear();
  for (size_t i = 0; i < items.size(); ++i) {
    std::string text;
    B2BUA_CONFIG_RETURN_IF_ERROR(ReadScalar(items[i], ItemPath(path, i), "a single value", &text));
    out->push_back(std::move(text));
  }
  return absl::OkStatus();
}

template <typename T>
absl::Status Loader::ReadEnum(const YAML::Node& node, std::string_view path,
                              std::initializer_list<std::pair<std::string_view, T>> names,
                              T* out) const {
  std::string text;
  B2BUA_CONFIG_RETURN_IF_ERROR(ReadScalar(node, path, "a single value", &text));
  std::vector<std::string_view> choices;
  for (const auto& [name, value] : names) {
    if (proto::EqualsIgnoreCase(name, text)) {
      *out = value;
      return absl::OkStatus();
    }
    choices.push_back(name);
  }
  return Error(node, path, StrCat("'", text, "' is not one of: ", JoinNames(choices)));
}

// Items are codes (486) or classes ("5xx"). Only failures belong here: 1xx and 2xx are not
// final failures and 3xx answers are redirects, handled on their own.
absl::Status Loader::ReadStatusSet(const YAML::Node& node, std::string_view path,
                                   StatusCodeSet* out) const {
  std::vector<YAML::Node> items;
  B2BUA_CONFIG_RETURN_IF_ERROR(ReadList(node, path, &items));
  StatusCodeSet set;
  for (size_t i = 0; i < items.size(); ++i) {
    std::string item_path = ItemPath(path, i);
    std::string text;
    B2BUA_CONFIG_RETURN_IF_ERROR(ReadScalar(items[i], item_path, "a status code or class", &text));
    if (text.size() == 3 && proto::IsDigit(text[0]) && (text[1] == 'x' || text[1] == 'X') &&
        (text[2] == 'x' || text[2] == 'X')) {
      int status_class = text[0] - '0';
      if (status_class < 4 || status_class > 6) {
        return Error(items[i], item_path,
                     StrCat("'", text, "' is not a failure class (4xx, 5xx or 6xx)"));
      }
      set.AddClass(status_class);
      continue;
    }
    int code;
    if (!absl::SimpleAtoi(text, &code) || code < 100 || code > 699) {
      return Error(items[i], item_path,
                   StrCat("'", text, "' is not a status code (100..699) or class (\"5xx\")"));
    }
    if (code < 400) {
      return Error(items[i], item_path, StrCat(code, " is not a failure (use 400..699)"));
    }
    set.Add(code);
  }
  *out = set;
  return absl::OkStatus();
}

absl::Status Loader::ReadLimits(const YAML::Node& node, LimitsConfig* out) const {
  Fields f;
  B2BUA_CONFIG_RETURN_IF_ERROR(
      ReadMap(node, "limits",
              {"max_calls", "max_call_duration", "no_answer_timeout", "drain_timeout",
               "calls_per_second", "max_request_uri_bytes"},
              &f));
  if (auto* n = f.Find("calls_per_second"))
    B2BUA_CONFIG_RETURN_IF_ERROR(
        ReadInt(*n, "limits.calls_per_second", 0, 1000000, &out->calls_per_second));
  // Below 128 bytes, ordinary Request-URIs with a parameter or two would be refused.
  if (auto* n = f.Find("max_request_uri_bytes"))
    B2BUA_CONFIG_RETURN_IF_ERROR(
        ReadInt(*n, "limits.max_request_uri_bytes", 128, 65535, &out->max_request_uri_bytes));
  if (auto* n = f.Find("max_calls"))
    B2BUA_CONFIG_RETURN_IF_ERROR(ReadInt(*n, "limits.max_calls", 1, 10000000, &out->max_calls));
  if (auto* n = f.Find("max_call_duration"))
    B2BUA_CONFIG_RETURN_IF_ERROR(
        ReadDuration(*n, "limits.max_call_duration", 1s, 168h, &out->max_call_duration));
  if (auto* n = f.Find("no_answer_timeout"))
    B2BUA_CONFIG_RETURN_IF_ERROR(
        ReadDuration(*n, "limits.no_answer_timeout", 1s, 1h, &out->no_answer_timeout));
  if (auto* n = f.Find("drain_timeout"))
    B2BUA_CONFIG_RETURN_IF_ERROR(
        ReadDuration(*n, "limits.drain_timeout", 0s, 1h, &out->drain_timeout));
  return absl::OkStatus();
}

absl::Status Loader::ReadCidrList(const YAML::Node& node, std::string_view path,
                                  proto::CidrList* out) const {
  std::vector<std::string> texts;
  B2BUA_CONFIG_RETURN_IF_ERROR(ReadCidrs(node, path, &texts));
  absl::StatusOr<proto::CidrList> list = proto::CidrList::Parse(texts);
  if (!list.ok()) return Error(node, path, std::string(list.status().message()));
  *out = *std::move(list);
  return absl::OkStatus();
}

absl::Status Loader::ReadFlood(const YAML::Node& node, FloodSettings* out) const {
  Fields f;
  B2BUA_CONFIG_RETURN_IF_ERROR(ReadMap(
      node, "access.flood", {"window", "max_requests", "block_for", "max_sources"}, &f));
  if (auto* n = f.Find("window"))
    B2BUA_CONFIG_RETURN_IF_ERROR(ReadDuration(*n, "access.flood.window", 100ms, 1h, &out->window));
  if (auto* n = f.Find("max_requests"))
    B2BUA_CONFIG_RETURN_IF_ERROR(
        ReadInt(*n, "access.flood.max_requests", 0, 100000000, &out->max_requests));
  if (auto* n = f.Find("block_for"))
    B2BUA_CONFIG_RETURN_IF_ERROR(
        ReadDuration(*n, "access.flood.block_for", 1s, 168h, &out->block_for));
  if (auto* n = f.Find("max_sources"))
    B2BUA_CONFIG_RETURN_IF_ERROR(
        ReadInt(*n, "access.flood.max_sources", 1000, 100000000, &out->max_sources));
  return absl::OkStatus();
}

absl::Status Loader::ReadAccess(const YAML::Node& node, AccessConfig* out) const {
  Fields f;
  B2BUA_CONFIG_RETURN_IF_ERROR(ReadMap(
      node, "access",
      {"trusted", "callers", "unknown_source", "relay_to_request_uri", "scanner_user_agents",
       "flood", "max_calls_per_source"},
      &f));
  if (auto* n = f.Find("trusted"))
    B2BUA_CONFIG_RETURN_IF_ERROR(ReadCidrList(*n, "access.trusted", &out->trusted));
  if (auto* n = f.Find("callers"))
    B2BUA_CONFIG_RETURN_IF_ERROR(ReadCidrList(*n, "access.callers", &out->callers));
  if (auto* n = f.Find("unknown_source")) {
    B2BUA_CONFIG_RETURN_IF_ERROR(ReadEnum<UnknownSourceAction>(
        *n, "access.unknown_source",
        {{"reject", UnknownSourceAction::kReject}, {"drop", UnknownSourceAction::kDrop}},
        &out->unknown_source));
  }
  if (auto* n = f.Find("relay_to_request_uri")) {
    B2BUA_CONFIG_RETURN_IF_ERROR(ReadEnum<RequestUriRelay>(
        *n, "access.relay_to_request_uri",
        {{"trusted", RequestUriRelay::kTrusted},
         {"nobody", RequestUriRelay::kNobody},
         {"anyone", RequestUriRelay::kAnyone}},
        &out->relay_to_request_uri));
  }
  if (auto* n = f.Find("scanner_user_agents")) {
    std::vector<std::string> patterns;
    B2BUA_CONFIG_RETURN_IF_ERROR(ReadStringList(*n, "access.scanner_user_agents", &patterns));
    for (size_t i = 0; i < patterns.size(); ++i) {
      // An empty pattern would be in every User-Agent: every caller would be a scanner.
      if (patterns[i].empty())
        return Error((*n)[i], ItemPath("access.scanner_user_agents", i), "is empty");
    }
    out->scanner_user_agents = ScannerList(std::move(patterns));
  }
  if (auto* n = f.Find("flood")) B2BUA_CONFIG_RETURN_IF_ERROR(ReadFlood(*n, &out->flood));
  if (auto* n = f.Find("max_calls_per_source"))
    B2BUA_CONFIG_RETURN_IF_ERROR(
        ReadInt(*n, "access.max_calls_per_source", 0, 10000000, &out->max_calls_per_source));
  return absl::OkStatus();
}

absl::Status Loader::ReadTimers(const YAML::Node& node, TimersConfig* out) const {
  Fields f;
  B2BUA_CONFIG_RETURN_IF_ERROR(ReadMap(node, "timers", {"t1", "t2", "t4"}, &f));
  if (auto* n = f.Find("t1"))
    B2BUA_CONFIG_RETURN_IF_ERROR(ReadDuration(*n, "timers.t1", 1ms, 60s, &out->t1));
  if (auto* n = f.Find("t2"))
    B2BUA_CONFIG_RETURN_IF_ERROR(ReadDuration(*n, "timers.t2", 1ms, 60s, &out->t2));
  if (auto* n = f.Find("t4"))
    B2BUA_CONFIG_RETURN_IF_ERROR(ReadDuration(*n, "timers.t4", 1ms, 60s, &out->t4));
  // T2 caps the retransmit interval that starts at T1 (RFC 3261 17.1.2.2).
  if (out->t1 > out->t2) {
    const YAML::Node* where = f.Find("t2") ? f.Find("t2") : f.Find("t1");
    return Error(*where, f.Find("t2") ? "timers.t2" : "timers.t1",
                 StrCat("t1 (", FormatDuration(out->t1), ") must not exceed t2 (",
                     FormatDuration(out->t2), ")"));
  }
  return absl::OkStatus();
}

absl::Status Loader::ReadUdp(const YAML::Node& node, UdpConfig* out) const {
  Fields f;
  B2BUA_CONFIG_RETURN_IF_ERROR(
      ReadMap(node, "udp", {"socket_buffer_bytes", "max_datagram_bytes"}, &f));
  if (auto* n = f.Find("socket_buffer_bytes"))
    B2BUA_CONFIG_RETURN_IF_ERROR(
        ReadInt(*n, "udp.socket_buffer_bytes", 65536, int64_t{1} << 30, &out->socket_buffer_bytes));
  // Below an Ethernet MTU, ordinary INVITEs would be cut short.
  if (auto* n = f.Find("max_datagram_bytes"))
    B2BUA_CONFIG_RETURN_IF_ERROR(
        ReadInt(*n, "udp.max_datagram_bytes", 1500, 65535, &out->max_datagram_bytes));
  return absl::OkStatus();
}

absl::Status Loader::ReadTcp(const YAML::Node& node, TcpConfig* out) const {
  Fields f;
  B2BUA_CONFIG_RETURN_IF_ERROR(
      ReadMap(node, "tcp",
              {"max_message_bytes", "max_connections", "max_connections_per_source",
               "idle_timeout", "first_byte_timeout", "message_timeout", "connect_timeout"},
              &f));
  if (auto* n = f.Find("max_message_bytes"))
    B2BUA_CONFIG_RETURN_IF_ERROR(
        ReadInt(*n, "tcp.max_message_bytes", 1500, 1 << 20, &out->max_message_bytes));
  if (auto* n = f.Find("max_connections"))
    B2BUA_CONFIG_RETURN_IF_ERROR(
        ReadInt(*n, "tcp.max_connections", 1, 1000000, &out->max_connections));
  if (auto* n = f.Find("max_connections_per_source"))
    B2BUA_CONFIG_RETURN_IF_ERROR(ReadInt(*n, "tcp.max_connections_per_source", 1, 1000000,
                                         &out->max_connections_per_source));
  if (auto* n = f.Find("idle_timeout"))
    B2BUA_CONFIG_RETURN_IF_ERROR(ReadDuration(*n, "tcp.idle_timeout", 1s, 24h, &out->idle_timeout));
  if (auto* n = f.Find("first_byte_timeout"))
    B2BUA_CONFIG_RETURN_IF_ERROR(
        ReadDuration(*n, "tcp.first_byte_timeout", 100ms, 1h, &out->first_byte_timeout));
  if (auto* n = f.Find("message_timeout"))
    B2BUA_CONFIG_RETURN_IF_ERROR(
        ReadDuration(*n, "tcp.message_timeout", 100ms, 1h, &out->message_timeout));
  if (auto* n = f.Find("connect_timeout"))
    B2BUA_CONFIG_RETURN_IF_ERROR(
        ReadDuration(*n, "tcp.connect_timeout", 100ms, 60s, &out->connect_timeout));
  return absl::OkStatus();
}

absl::Status Loader::ReadTls(const YAML::Node& node, TlsConfig* out) const {
  Fields f;
  B2BUA_CONFIG_RETURN_IF_ERROR(ReadMap(node, "tls",
                                       {"listen", "certificate", "private_key", "ca",
                                        "verify_peer", "min_version", "handshake_timeout"},
                                       &f));
  if (auto* n = f.Find("listen")) {
    B2BUA_CONFIG_RETURN_IF_ERROR(ReadScalar(*n, "tls.listen", "IP:PORT", &out->listen));
    proto::NetAddress address;
    if (!proto::NetAddress::ParseIpPort(out->listen, &address) || address.port() == 0)
      return Error(*n, "tls.listen", StrCat("'", out->listen, "' is not IP:PORT"));
  }
  if (auto* n = f.Find("certificate"))
    B2BUA_CONFIG_RETURN_IF_ERROR(
        ReadScalar(*n, "tls.certificate", "a file", &out->settings.certificate));
  if (auto* n = f.Find("private_key"))
    B2BUA_CONFIG_RETURN_IF_ERROR(
        ReadScalar(*n, "tls.private_key", "a file", &out->settings.private_key));
  if (auto* n = f.Find("ca"))
    B2BUA_CONFIG_RETURN_IF_ERROR(ReadScalar(*n, "tls.ca", "a file", &out->settings.ca));
  if (auto* n = f.Find("verify_peer"))
    B2BUA_CONFIG_RETURN_IF_ERROR(ReadBool(*n, "tls.verify_peer", &out->settings.verify_peer));
  if (auto* n = f.Find("min_version")) {
    B2BUA_CONFIG_RETURN_IF_ERROR(ReadEnum<std::string>(
        *n, "tls.min_version", {{"1.2", "1.2"}, {"1.3", "1.3"}}, &out->settings.min_version));
  }
  if (auto* n = f.Find("handshake_timeout"))
    B2BUA_CONFIG_RETURN_IF_ERROR(
        ReadDuration(*n, "tls.handshake_timeout", 100ms, 60s, &out->handshake_timeout));
  if (f.entries.empty()) return absl::OkStatus();
  if (!out->enabled()) return Error(node, "tls", "needs listen (IP:PORT)");
  for (std::string_view key : {"certificate", "private_key"}) {
    if (!f.Find(key)) return Error(node, "tls", StrCat("needs ", key, " (a PEM file)"));
  }
  return absl::OkStatus();
}

absl::Status Loader::ReadHeaders(const YAML::Node& node, HeaderPolicy* out) const {
  Fields f;
  B2BUA_CONFIG_RETURN_IF_ERROR(ReadMap(node, "headers", {"pass", "strip", "pass_unknown"}, &f));
  std::vector<std::string> pass = HeaderPolicy::DefaultPass();
  std::vector<std::string> strip;
  bool pass_unknown = false;
  for (std::string_view key : {"pass", "strip"}) {
    const YAML::Node* n = f.Find(key);
    if (!n) continue;
    std::string path = KeyPath("headers", key);
    std::vector<std::string>& names = key == "pass" ? pass : strip;
    B2BUA_CONFIG_RETURN_IF_ERROR(ReadStringList(*n, path, &names));
    for (size_t i = 0; i < names.size(); ++i) {
      if (!proto::IsTokenString(names[i])) {
        return Error((*n)[i], ItemPath(path, i), StrCat("'", names[i], "' is not a header name"));
      }
      if (key == "pass" && IsDialogHeader(proto::LookupHeaderId(names[i]))) {
        return Error(
            (*n)[i], ItemPath(path, i),
            StrCat("'", names[i], "' is built by the B2BUA for each leg and cannot be passed"));
      }
    }
  }
  if (auto* n = f.Find("pass_unknown"))
    B2BUA_CONFIG_RETURN_IF_ERROR(ReadBool(*n, "headers.pass_unknown", &pass_unknown));
  *out = HeaderPolicy(std::move(pass), std::move(strip), pass_unknown);
  return absl::OkStatus();
}

absl::Status Loader::ReadCidrs(const YAML::Node& node, std::string_view path,
                               std::vector<std::string>* out) const {
  std::vector<std::string> texts;
  B2BUA_CONFIG_RETURN_IF_ERROR(ReadStringList(node, path, &texts));
  out->clear();
  for (size_t i = 0; i < texts.size(); ++i) {
    absl::StatusOr<std::string> cidr = CheckCidr(texts[i]);
    if (!cidr.ok()) return Error(node[i], ItemPath(path, i), std::string(cidr.status().message()));
    out->push_back(*std::move(cidr));
  }
  return absl::OkStatus();
}

absl::Status Loader::ReadDomains(const YAML::Node& node, std::string_view path,
                                 std::vector<std::string>* out) const {
  std::vector<std::string> texts;
  B2BUA_CONFIG_RETURN_IF_ERROR(ReadStringList(node, path, &texts));
  out->clear();
  for (size_t i = 0; i < texts.size(); ++i) {
    absl::StatusOr<std::string> domain = CheckDomain(texts[i]);
    if (!domain.ok())
      return Error(node[i], ItemPath(path, i), std::string(domain.status().message()));
    out->push_back(*std::move(domain));
  }
  return absl::OkStatus();
}

// Like ReadRedirect(), these overwrite only the keys present.
absl::Status Loader::ReadCache301(const YAML::Node& node, std::string_view path,
                                  RedirectCacheSettings* inout) const {
  Fields f;
  B2BUA_CONFIG_RETURN_IF_ERROR(ReadMap(node, path, {"entries", "ttl"}, &f));
  if (auto* n = f.Find("entries"))
    B2BUA_CONFIG_RETURN_IF_ERROR(
        ReadInt(*n, KeyPath(path, "entries"), 0, 10000000, &inout->entries));
  if (auto* n = f.Find("ttl"))
    B2BUA_CONFIG_RETURN_IF_ERROR(ReadDuration(*n, KeyPath(path, "ttl"), 1s, 720h, &inout->ttl));
  return absl::OkStatus();
}

absl::Status Loader::ReadAllow(const YAML::Node& node, std::string_view path,
                               RedirectAllowList* inout) const {
  Fields f;
  B2BUA_CONFIG_RETURN_IF_ERROR(ReadMap(node, path, {"domains", "cidrs", "schemes"}, &f));
  if (auto* n = f.Find("domains"))
    B2BUA_CONFIG_RETURN_IF_ERROR(ReadDomains(*n, KeyPath(path, "domains"), &inout->domains));
  if (auto* n = f.Find("cidrs"))
    B2BUA_CONFIG_RETURN_IF_ERROR(ReadCidrs(*n, KeyPath(path, "cidrs"), &inout->cidrs));
  if (auto* n = f.Find("schemes")) {
    std::string schemes_path = KeyPath(path, "schemes");
    std::vector<YAML::Node> items;
    B2BUA_CONFIG_RETURN_IF_ERROR(ReadList(*n, schemes_path, &items));
    std::vector<std::string> schemes;
    for (size_t i = 0; i < items.size(); ++i) {
      std::string scheme;
      B2BUA_CONFIG_RETURN_IF_ERROR(
          ReadEnum<std::string>(items[i], ItemPath(schemes_path, i),
                                {{"sip", "sip"}, {"sips", "sips"}, {"tel", "tel"}}, &scheme));
      if (std::find(schemes.begin(), schemes.end(), scheme) == schemes.end())
        schemes.push_back(std::move(scheme));
    }
    // An empty list would refuse every target: that is mode: relay, said obscurely.
    if (schemes.empty())
      return Error(*n, schemes_path, "allows no scheme; use mode: relay to stop following");
    inout->schemes = std::move(schemes);
  }
  return absl::OkStatus();
}

absl::Status Loader::ReadDeny(const YAML::Node& node, std::string_view path,
                              RedirectDenyList* inout) const {
  Fields f;
  B2BUA_CONFIG_RETURN_IF_ERROR(ReadMap(node, path, {"domains", "cidrs"}, &f));
  if (auto* n = f.Find("domains"))
    B2BUA_CONFIG_RETURN_IF_ERROR(ReadDomains(*n, KeyPath(path, "domains"), &inout->domains));
  if (auto* n = f.Find("cidrs"))
    B2BUA_CONFIG_RETURN_IF_ERROR(ReadCidrs(*n, KeyPath(path, "cidrs"), &inout->cidrs));
  return absl::OkStatus();
}

// Only the keys present overwrite `*inout`, which is how a route's override merges over
// the global settings.
absl::Status Loader::ReadRedirect(const YAML::Node& node, std::string_view path,
                                  RedirectSettings* inout) const {
  Fields f;
  B2BUA_CONFIG_RETURN_IF_ERROR(
      ReadMap(node, path,
              {"mode", "send_181", "max_depth", "max_targets", "target_timeout", "to_uri",
               "try_next_on", "history_info", "diversion", "relay_last_3xx", "fork", "cache_301",
               "allow", "deny", "deny_self"},
              &f));
  RedirectSettings& r = *inout;
  for (const Fields::Entry& e : f.entries) {
    std::string key_path = KeyPath(path, e.key);
    const YAML::Node& n = e.value;
    absl::Status s;
    if (e.key == "mode") {
      s = ReadEnum<RedirectMode>(
          n, key_path, {{"follow", RedirectMode::kFollow}, {"relay", RedirectMode::kRelay}},
          &r.mode);
    } else if (e.key == "send_181") {
      s = ReadBool(n, key_path, &r.send_181);
    } else if (e.key == "max_depth") {
      s = ReadInt(n, key_path, 0, 20, &r.max_depth);
    } else if (e.key == "max_targets") {
      s = ReadInt(n, key_path, 1, 64, &r.max_targets);
    } else if (e.key == "target_timeout") {
      s = ReadDuration(n, key_path, 100ms, 1h, &r.target_timeout);
    } else if (e.key == "to_uri") {
      s = ReadEnum<RedirectToUri>(
          n, key_path, {{"keep", RedirectToUri::kKeep}, {"replace", RedirectToUri::kReplace}},
          &r.to_uri);
    } else if (e.key == "try_next_on") {
      s = ReadStatusSet(n, key_path, &r.try_next_on);
    } else if (e.key == "history_info") {
      s = ReadBool(n, key_path, &r.history_info);
    } else if (e.key == "diversion") {
      s = ReadBool(n, key_path, &r.diversion);
    } else if (e.key == "relay_last_3xx") {
      s = ReadBool(n, key_path, &r.relay_last_3xx);
    } else if (e.key == "fork") {
      s = ReadEnum<RedirectFork>(
          n, key_path,
          {{"serial", RedirectFork::kSerial}, {"parallel_equal_q", RedirectFork::kParallelEqualQ}},
          &r.fork);
      // Refused rather than silently treated as serial: the engine has no parallel forking.
      if (s.ok() && r.fork == RedirectFork::kParallelEqualQ)
        s = Error(n, key_path,
                  "'parallel_equal_q' is not available in this version: targets are tried "
                  "one at a time (use serial)");
    } else if (e.key == "deny_self") {
      s = ReadBool(n, key_path, &r.deny_self);
    } else if (e.key == "cache_301") {
      s = ReadCache301(n, key_path, &r.cache_301);
    } else if (e.key == "allow") {
      s = ReadAllow(n, key_path, &r.allow);
    } else if (e.key == "deny") {
      s = ReadDeny(n, key_path, &r.deny);
    }
    B2BUA_CONFIG_RETURN_IF_ERROR(s);
  }
  return absl::OkStatus();
}

absl::Status Loader::ReadProbe(const YAML::Node& node, ProbeConfig* out) const {
  Fields f;
  B2BUA_CONFIG_RETURN_IF_ERROR(ReadMap(node, "probe", {"options_interval"}, &f));
  if (auto* n = f.Find("options_interval")) {
    B2BUA_CONFIG_RETURN_IF_ERROR(
        ReadDuration(*n, "probe.options_interval", 0s, 1h, &out->options_interval));
    // Sub-second probing floods the next hops for no gain in detection time.
    if (out->options_interval != 0s && out->options_interval < 1s) {
      return Error(*n, "probe.options_interval", "must be 0 (off) or at least 1s");
    }
  }
  return absl::OkStatus();
}

absl::Status Loader::ReadNextHop(const YAML::Node& node, std::string_view path,
                                 NextHop* out) const {
  std::string text;
  B2BUA_CONFIG_RETURN_IF_ERROR(ReadScalar(node, path, "a SIP URI", &text));
  proto::SipUri uri;
  proto::UriError error = proto::ParseUri(text, &uri);
  if (error != proto::UriError::kNone) {
    return Error(node, path, StrCat("'", text, "' is not a valid SIP URI (", UriProblem(error), ")"));
  }
  if (uri.scheme != proto::UriScheme::kSip && uri.scheme != proto::UriScheme::kSips) {
    return Error(node, path, StrCat("'", text, "' is not a sip: or sips: URI"));
  }
  if (uri.has_user) {
    return Error(node, path, StrCat("'", text, "': a next hop names a host; remove the user part"));
  }
  if (!uri.headers.empty()) {
    return Error(node, path, StrCat("'", text, "': a next hop cannot carry headers ('?')"));
  }
  if (!uri.maddr.empty()) {
    return Error(node, path, StrCat("'", text, "': maddr is not supported"));
  }
  // sips: demands TLS on every hop (RFC 3261 26.2.2).
  const bool sips = uri.scheme == proto::UriScheme::kSips;
  out->transport = sips ? proto::TransportKind::kTls : proto::TransportKind::kUdp;
  if (!uri.transport.empty()) {
    if (proto::EqualsIgnoreCase(uri.transport, "tls")) {
      out->transport = proto::TransportKind::kTls;
    } else if (sips && !proto::EqualsIgnoreCase(uri.transport, "tcp")) {
      return Error(node, path, StrCat("'", text, "': a sips: next hop goes over TLS"));
    } else if (proto::EqualsIgnoreCase(uri.transport, "udp")) {
      out->transport = proto::TransportKind::kUdp;
    } else if (proto::EqualsIgnoreCase(uri.transport, "tcp")) {
      if (!sips) out->transport = proto::TransportKind::kTcp;
    } else {
      return Error(node, path,
                   StrCat("'", text, "': transport '", uri.transport,
                          "' is not supported (udp, tcp or tls)"));
    }
  }
  out->host = std::string(uri.host);
  const bool tls = out->transport == proto::TransportKind::kTls;
  if (tls && !tls_configured_) {
    return Error(node, path,
                 StrCat("'", text, "' goes over TLS: configure the tls: section (listen, ",
                        "certificate, private_key, ca)"));
  }
  out->port = uri.port != 0 ? uri.port : (tls ? 5061 : 5060);
  out->uri = std::move(text);
  return absl::OkStatus();
}

// A Contact value is checked by the same parser that will read it back when the 3xx is
// built, so whatever passes here is what callers will receive.
absl::Status Loader::ReadContact(const YAML::Node& node, std::string_view path,
                                 std::string* out) const {
  std::string text;
  B2BUA_CONFIG_RETURN_IF_ERROR(ReadScalar(node, path, "a Contact value", &text));
  for (char c : text) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return Error(node, path, "a Contact value cannot hold control characters or line breaks");
    }
  }
  std::string message = StrCat("SIP/2.0 302 Moved Temporarily\r\nContact: ", text, "\r\n\r\n");
  if (!scratch_message_) scratch_message_ = std::make_unique<proto::SipMessage>();
  proto::SipMessage& m = *scratch_message_;
  proto::ParseResult result = proto::SipParser().Parse(message, proto::Framing::kDatagram, &m);
  if (!result.ok()) {
    return Error(node, path, StrCat("'", text, "' is not a valid Contact value"));
  }
  if (m.contact_star()) return Error(node, path, "'*' is not a redirect target");
  if (m.contact_count() != 1) {
    return Error(node, path,
                 StrCat("'", text, "' holds ", m.contact_count(),
                     " Contact values; give each its own list item"));
  }
  const proto::Contact& contact = m.contacts()[0];
  if (contact.defect == proto::ContactDefect::kBadQValue) {
    return Error(node, path, StrCat("'", text, "' has a bad q-value (0 to 1, 3 decimals)"));
  }
  if (contact.defect == proto::ContactDefect::kBadExpires) {
    return Error(node, path, StrCat("'", text, "' has a bad expires parameter"));
  }
  proto::UriScheme scheme = contact.address.uri.scheme;
  if (scheme != proto::UriScheme::kSip && scheme != proto::UriScheme::kSips &&
      scheme != proto::UriScheme::kTel) {
    return Error(node, path, StrCat("'", text, "' is not a sip:, sips: or tel: URI"));
  }
  *out = std::move(text);
  return absl::OkStatus();
}

absl::Status Loader::ReadRoute(const YAML::Node& node, std::string_view path,
                               const RedirectSettings& global, Route* out) const {
  Fields f;
  B2BUA_CONFIG_RETURN_IF_ERROR(ReadMap(
      node, path,
      {"prefix", "next_hops", "action", "redirect_code", "contacts", "redirect", "callers",
       "max_calls", "calls_per_second", "overflow_to"},
      &f));
  if (!node.IsMap()) return Error(node, path, "expected a mapping (prefix:, next_hops:, ...)");
  out->line = Line(node);
  out->redirect = global;
  if (auto* n = f.Find("prefix"); n && !n->IsNull()) {
    std::string prefix_path = KeyPath(path, "prefix");
    B2BUA_CONFIG_RETURN_IF_ERROR(ReadScalar(*n, prefix_path, "digits", &out->prefix));
    std::string_view digits = out->prefix;
    if (!digits.empty() && digits[0] == '+') digits.remove_prefix(1);
    bool ok = std::all_of(digits.begin(), digits.end(), proto::IsDigit);
    if (ok && digits.size() > RouteTable::kMaxPrefixDigits) {
      return Error(*n, prefix_path,
                   StrCat("'", out->prefix, "' is longer than ", RouteTable::kMaxPrefixDigits,
                          " digits"));
    }
    if (!ok) {
      return Error(
          *n, prefix_path,
          StrCat("'", out->prefix, "' is not a prefix (digits with an optional leading '+')"));
    }
  }
  if (auto* n = f.Find("action")) {
    B2BUA_CONFIG_RETURN_IF_ERROR(ReadEnum<Route::Action>(
        *n, KeyPath(path, "action"),
        {{"route", Route::Action::kRoute}, {"redirect", Route::Action::kRedirect}}, &out->action));
  }
  const bool redirecting = out->action == Route::Action::kRedirect;
  // Keys that belong to the other action are errors rather than ignored: a route that
  // lists contacts but forgot "action: redirect" would otherwise route silently.
  for (std::string_view key : {"redirect_code", "contacts"}) {
    if (auto* n = f.Find(key); n && !redirecting) {
      return Error(*n, KeyPath(path, key), "only applies to a route with action: redirect");
    }
  }
  for (std::string_view key : {"next_hops", "redirect"}) {
    if (auto* n = f.Find(key); n && redirecting) {
      return Error(*n, KeyPath(path, key), "does not apply to a route with action: redirect");
    }
  }
  if (auto* n = f.Find("redirect_code")) {
    std::string code_path = KeyPath(path, "redirect_code");
    B2BUA_CONFIG_RETURN_IF_ERROR(ReadInt(*n, code_path, 100, 699, &out->redirect_code));
    if (out->redirect_code != 301 && out->redirect_code != 302) {
      return Error(*n, code_path, StrCat(out->redirect_code, " is not 301 or 302"));
    }
  }
  if (auto* n = f.Find("contacts")) {
    std::string contacts_path = KeyPath(path, "contacts");
    std::vector<YAML::Node> items;
    B2BUA_CONFIG_RETURN_IF_ERROR(ReadList(*n, contacts_path, &items));
    if (items.size() > proto::SipMessage::kMaxContacts) {
      return Error(*n, contacts_path,
                   StrCat("at most ", proto::SipMessage::kMaxContacts, " contacts"));
    }
    for (size_t i = 0; i < items.size(); ++i) {
      std::string contact;
      B2BUA_CONFIG_RETURN_IF_ERROR(ReadContact(items[i], ItemPath(contacts_path, i), &contact));
      out->contacts.push_back(std::move(contact));
    }
  }
  if (auto* n = f.Find("next_hops")) {
    std::string hops_path = KeyPath(path, "next_hops");
    std::vector<YAML::Node> items;
    B2BUA_CONFIG_RETURN_IF_ERROR(ReadList(*n, hops_path, &items));
    for (size_t i = 0; i < items.size(); ++i) {
      NextHop hop;
      B2BUA_CONFIG_RETURN_IF_ERROR(ReadNextHop(items[i], ItemPath(hops_path, i), &hop));
      out->next_hops.push_back(std::move(hop));
    }
  }
  if (auto* n = f.Find("redirect")) {
    B2BUA_CONFIG_RETURN_IF_ERROR(ReadRedirect(*n, KeyPath(path, "redirect"), &out->redirect));
  }
  if (auto* n = f.Find("callers"))
    B2BUA_CONFIG_RETURN_IF_ERROR(ReadCidrList(*n, KeyPath(path, "callers"), &out->callers));
  if (auto* n = f.Find("max_calls"))
    B2BUA_CONFIG_RETURN_IF_ERROR(
        ReadInt(*n, KeyPath(path, "max_calls"), 0, 10000000, &out->max_calls));
  if (auto* n = f.Find("calls_per_second"))
    B2BUA_CONFIG_RETURN_IF_ERROR(
        ReadInt(*n, KeyPath(path, "calls_per_second"), 0, 1000000, &out->calls_per_second));
  if (auto* n = f.Find("overflow_to")) {
    std::string prefix;
    // "overflow_to:" with nothing after it reads as null: the default route, as ''.
    if (!n->IsNull())
      B2BUA_CONFIG_RETURN_IF_ERROR(
          ReadScalar(*n, KeyPath(path, "overflow_to"), "a route prefix", &prefix));
    out->overflow_to = std::move(prefix);
  }
  if (redirecting && out->contacts.empty()) {
    return Error(f.Find("contacts") ? *f.Find("contacts") : node, path,
                 "action: redirect needs at least one entry in contacts");
  }
  if (!redirecting && out->next_hops.empty()) {
    return Error(f.Find("next_hops") ? *f.Find("next_hops") : node, path,
                 "needs at least one entry in next_hops (or action: redirect)");
  }
  return absl::OkStatus();
}

absl::Status Loader::ReadRoutes(const YAML::Node& node, const RedirectSettings& global,
                                std::vector<Route>* out) const {
  std::vector<YAML::Node> items;
  B2BUA_CONFIG_RETURN_IF_ERROR(ReadList(node, "routes", &items));
  absl::flat_hash_map<std::string, int> prefix_lines;
  for (size_t i = 0; i < items.size(); ++i) {
    std::string path = ItemPath("routes", i);
    Route route;
    B2BUA_CONFIG_RETURN_IF_ERROR(ReadRoute(items[i], path, global, &route));
    auto [it, inserted] = prefix_lines.emplace(route.prefix, route.line);
    if (!inserted) {
      // Point at the prefix line when there is one; a default route may have none.
      YAML::Node where = items[i];
      std::string where_path = path;
      if (items[i].IsMap()) {
        for (auto kv = items[i].begin(); kv != items[i].end(); ++kv) {
          if (kv->first.Scalar() == "prefix") {
            // reset(), not '=': assigning a yaml-cpp Node overwrites the node it refers to.
            where.reset(kv->second);
            where_path = KeyPath(path, "prefix");
          }
        }
      }
      std::string shown = route.prefix.empty() ? "the default route (empty prefix)"
                                               : StrCat("prefix '", route.prefix, "'");
      return Error(where, where_path,
                   StrCat("duplicate ", shown, ": already used by the route on line ", it->second));
    }
    out->push_back(std::move(route));
  }
  // overflow_to names another route of this file.
  for (size_t i = 0; i < out->size(); ++i) {
    const Route& route = (*out)[i];
    if (!route.overflow_to) continue;
    const std::string path = KeyPath(ItemPath("routes", i), "overflow_to");
    const YAML::Node where = items[i]["overflow_to"];
    if (*route.overflow_to == route.prefix)
      return Error(where, path, "a route cannot overflow to itself");
    if (!prefix_lines.contains(*route.overflow_to))
      return Error(where, path, StrCat("no route has prefix '", *route.overflow_to, "'"));
  }
  return absl::OkStatus();
}

absl::Status Loader::Load(const YAML::Node& root, Config* config) {
  Fields f;
  B2BUA_CONFIG_RETURN_IF_ERROR(ReadMap(
      root, "",
      {"access", "limits", "timers", "udp", "tcp", "tls", "headers", "redirect",
       "failover_on", "probe", "routes"},
      &f));
  if (auto* n = f.Find("access")) B2BUA_CONFIG_RETURN_IF_ERROR(ReadAccess(*n, &config->access));
  if (auto* n = f.Find("limits")) B2BUA_CONFIG_RETURN_IF_ERROR(ReadLimits(*n, &config->limits));
  if (auto* n = f.Find("timers")) B2BUA_CONFIG_RETURN_IF_ERROR(ReadTimers(*n, &config->timers));
  if (auto* n = f.Find("udp")) B2BUA_CONFIG_RETURN_IF_ERROR(ReadUdp(*n, &config->udp));
  if (auto* n = f.Find("tcp")) B2BUA_CONFIG_RETURN_IF_ERROR(ReadTcp(*n, &config->tcp));
  if (auto* n = f.Find("tls")) B2BUA_CONFIG_RETURN_IF_ERROR(ReadTls(*n, &config->tls));
  tls_configured_ = config->tls.enabled();
  if (auto* n = f.Find("headers")) B2BUA_CONFIG_RETURN_IF_ERROR(ReadHeaders(*n, &config->headers));
  if (auto* n = f.Find("redirect"))
    B2BUA_CONFIG_RETURN_IF_ERROR(ReadRedirect(*n, "redirect", &config->redirect));
  if (auto* n = f.Find("failover_on"))
    B2BUA_CONFIG_RETURN_IF_ERROR(ReadStatusSet(*n, "failover_on", &config->failover_on));
  if (auto* n = f.Find("probe")) B2BUA_CONFIG_RETURN_IF_ERROR(ReadProbe(*n, &config->probe));
  // Routes come last: each one starts from the global redirect settings read above,
  // wherever the redirect: section sits in the file.
  std::vector<Route> routes;
  if (auto* n = f.Find("routes"))
    B2BUA_CONFIG_RETURN_IF_ERROR(ReadRoutes(*n, config->redirect, &routes));
  config->routes = RouteTable(std::move(routes));
  return absl::OkStatus();
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Entry points

absl::StatusOr<std::shared_ptr<const Config>> ParseConfig(std::string_view yaml_text,
                                                          std::string_view source_name,
                                                          const Config* previous) {
  auto config = std::make_shared<Config>();
  config->source = std::string(source_name);
  // yaml-cpp reports errors by throwing; this is the only place they may surface, and
  // none escapes it.
  try {
    YAML::Node root = YAML::Load(std::string(yaml_text));
    Loader loader(source_name);
    B2BUA_CONFIG_RETURN_IF_ERROR(loader.Load(root, config.get()));
    if (previous != nullptr) config->routes.InheritLoad(previous->routes);
  } catch (const YAML::ParserException& e) {
    int line = e.mark.is_null() ? 1 : e.mark.line + 1;
    return absl::InvalidArgumentError(StrCat(source_name, ":", line, ": YAML syntax error: ", e.msg));
  } catch (const std::exception& e) {
    // Only a loader bug (a misused yaml-cpp call) or memory exhaustion lands here.
    return absl::InternalError(StrCat(source_name, ": cannot load: ", e.what()));
  }
  return std::shared_ptr<const Config>(std::move(config));
}

absl::StatusOr<std::shared_ptr<const Config>> LoadConfigFile(const std::string& path,
                                                             const Config* previous) {
  // Plain POSIX reads: unlike a stream, they report a directory or an I/O error by errno
  // instead of handing back an empty text, which would load as the defaults.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::ErrnoToStatus(errno, StrCat("cannot open ", path));
  std::string text;
  char buffer[16384];
  for (;;) {
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int error = errno;
      ::close(fd);
      return absl::ErrnoToStatus(error, StrCat("cannot read ", path));
    }
    if (n == 0) break;
    text.append(buffer, static_cast<size_t>(n));
    if (text.size() > kMaxConfigBytes) {
      ::close(fd);
      return absl::InvalidArgumentError(
          StrCat(path, ": larger than ", kMaxConfigBytes, " bytes; is it a configuration file?"));
    }
  }
  ::close(fd);
  return ParseConfig(text, path, previous);
}

absl::StatusOr<std::shared_ptr<const Config>> DefaultConfig() {
  return ParseConfig(kDefaultConfigYaml, kDefaultSourceName);
}

}  // namespace b2bua

#undef B2BUA_CONFIG_RETURN_IF_ERROR
