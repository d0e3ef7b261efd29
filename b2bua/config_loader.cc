#include "b2bua/config_loader.h"

#include <arpa/inet.h>

#include <algorithm>
#include <exception>

#include "absl/strings/ascii.h"
#include "b2bua/leg_headers.h"

namespace b2bua::config_loader {

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

// "redirect" + "allow" -> "redirect.allow"; "routes", 2 -> "routes[2]".
std::string KeyPath(std::string_view path, std::string_view key) {
  return path.empty() ? std::string(key) : StrCat(path, ".", key);
}
std::string ItemPath(std::string_view path, size_t i) { return StrCat(path, "[", i, "]"); }

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

}  // namespace b2bua::config_loader
