#pragma once

// The YAML loader behind ParseConfig(), shared by the files that read the sections of the
// config: config.cc (the top level and the scalar sections) and config_routes.cc (routes,
// next hops and the redirect settings), over the helpers of config_loader.cc. Internal to
// them: yaml-cpp stays out of every other translation unit.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "b2bua/config.h"
#include "proto/sip_chars.h"
#include "proto/sip_message.h"
#include "proto/str_util.h"
#include "yaml-cpp/yaml.h"

// Propagates a failed absl::Status out of the calling function.
#define B2BUA_CONFIG_RETURN_IF_ERROR(expr) \
  do {                                     \
    absl::Status status_ = (expr);         \
    if (!status_.ok()) return status_;     \
  } while (false)

namespace b2bua::config_loader {

using std::chrono::milliseconds;
using std::chrono_literals::operator""h;
using std::chrono_literals::operator""ms;
using std::chrono_literals::operator""s;
// Debian's abseil has its own string_view: proto::StrCat takes std::string_view pieces.
using proto::StrCat;

std::string JoinNames(const std::vector<std::string_view>& names);
size_t EditDistance(std::string_view a, std::string_view b);
std::string FormatDuration(milliseconds d);
bool ParseDurationText(std::string_view text, milliseconds* out);
std::string_view NodeKind(const YAML::Node& node);
std::string_view UriProblem(proto::UriError error);
absl::StatusOr<std::string> CheckDomain(std::string_view text);

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

std::string KeyPath(std::string_view path, std::string_view key);
std::string ItemPath(std::string_view path, size_t i);

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
  /// An "IP:PORT" scalar with a port that is not 0.
  absl::Status ReadIpPort(const YAML::Node& node, std::string_view path, std::string* out) const;
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
  absl::Status ReadDomains(const YAML::Node& node, std::string_view path,
                           std::vector<std::string>* out) const;
  absl::Status ReadProbe(const YAML::Node& node, ProbeConfig* out) const;
  absl::Status ReadCluster(const YAML::Node& node, ClusterConfig* out) const;
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

}  // namespace b2bua::config_loader
