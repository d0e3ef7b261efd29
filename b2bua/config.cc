#include "b2bua/config.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <exception>
#include <utility>

#include "absl/strings/ascii.h"
#include "b2bua/config_loader.h"
#include "b2bua/default_config.h"
#include "b2bua/leg_headers.h"

namespace b2bua {
namespace config_loader {

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

absl::Status Loader::ReadIpPort(const YAML::Node& node, std::string_view path,
                                std::string* out) const {
  B2BUA_CONFIG_RETURN_IF_ERROR(ReadScalar(node, path, "IP:PORT", out));
  proto::NetAddress address;
  if (!proto::NetAddress::ParseIpPort(*out, &address) || address.port() == 0)
    return Error(node, path, StrCat("'", *out, "' is not IP:PORT"));
  return absl::OkStatus();
}

// Each prefix is parsed here, once; the data plane only asks the list.
absl::Status Loader::ReadCidrList(const YAML::Node& node, std::string_view path,
                                  proto::CidrList* out) const {
  std::vector<std::string> texts;
  B2BUA_CONFIG_RETURN_IF_ERROR(ReadStringList(node, path, &texts));
  std::vector<proto::Cidr> cidrs;
  for (size_t i = 0; i < texts.size(); ++i) {
    absl::StatusOr<proto::Cidr> cidr = proto::Cidr::ParseOrExplain(texts[i]);
    if (!cidr.ok())
      return Error(node[i], ItemPath(path, i), std::string(cidr.status().message()));
    cidrs.push_back(*cidr);
  }
  *out = proto::CidrList(std::move(cidrs));
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
  if (auto* n = f.Find("listen"))
    B2BUA_CONFIG_RETURN_IF_ERROR(ReadIpPort(*n, "tls.listen", &out->listen));
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

absl::Status Loader::ReadCluster(const YAML::Node& node, ClusterConfig* out) const {
  Fields f;
  B2BUA_CONFIG_RETURN_IF_ERROR(ReadMap(node, "cluster",
                                       {"instance_id", "front", "redis", "key_prefix",
                                        "redis_timeout", "dialog_ttl_margin",
                                        "ready_without_redis"},
                                       &f));
  const YAML::Node* id = f.Find("instance_id");
  const YAML::Node* front = f.Find("front");
  if (id == nullptr || front == nullptr)
    return Error(node, "cluster", "needs instance_id and front (or remove the section)");
  B2BUA_CONFIG_RETURN_IF_ERROR(ReadScalar(*id, "cluster.instance_id", "a word", &out->instance_id));
  // The id is written into routing tokens that stand in SIP URIs and Redis keys.
  const bool id_ok = !out->instance_id.empty() && out->instance_id.size() <= 16 &&
                     std::all_of(out->instance_id.begin(), out->instance_id.end(), [](char c) {
                       return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
                     });
  if (!id_ok)
    return Error(*id, "cluster.instance_id",
                 StrCat("'", out->instance_id, "' must be 1 to 16 of a-z and 0-9"));
  B2BUA_CONFIG_RETURN_IF_ERROR(ReadScalar(*front, "cluster.front", "HOST:PORT", &out->front));
  {
    const size_t colon = out->front.rfind(':');
    proto::SipUri uri;
    const std::string probe = StrCat("sip:", out->front);
    if (colon == std::string::npos || colon + 1 == out->front.size() ||
        proto::ParseUri(probe, &uri) != proto::UriError::kNone || uri.port == 0 ||
        !uri.user.empty() || !uri.params.empty())
      return Error(*front, "cluster.front",
                   StrCat("'", out->front, "' is not HOST:PORT (e.g. 192.0.2.10:5060)"));
  }
  if (auto* n = f.Find("redis"))
    B2BUA_CONFIG_RETURN_IF_ERROR(ReadIpPort(*n, "cluster.redis", &out->redis));
  if (auto* n = f.Find("key_prefix"))
    B2BUA_CONFIG_RETURN_IF_ERROR(ReadScalar(*n, "cluster.key_prefix", "a word", &out->key_prefix));
  if (auto* n = f.Find("redis_timeout"))
    B2BUA_CONFIG_RETURN_IF_ERROR(
        ReadDuration(*n, "cluster.redis_timeout", 10ms, 10s, &out->redis_timeout));
  if (auto* n = f.Find("dialog_ttl_margin"))
    B2BUA_CONFIG_RETURN_IF_ERROR(
        ReadDuration(*n, "cluster.dialog_ttl_margin", 1s, 24h, &out->dialog_ttl_margin));
  if (auto* n = f.Find("ready_without_redis"))
    B2BUA_CONFIG_RETURN_IF_ERROR(ReadBool(*n, "cluster.ready_without_redis", &out->ready_without_redis));
  return absl::OkStatus();
}

absl::Status Loader::Load(const YAML::Node& root, Config* config) {
  Fields f;
  B2BUA_CONFIG_RETURN_IF_ERROR(ReadMap(
      root, "",
      {"access", "limits", "timers", "udp", "tcp", "tls", "headers", "redirect",
       "failover_on", "probe", "cluster", "routes"},
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
  if (auto* n = f.Find("cluster"))
    B2BUA_CONFIG_RETURN_IF_ERROR(ReadCluster(*n, &config->cluster));
  // Routes come last: each one starts from the global redirect settings read above,
  // wherever the redirect: section sits in the file.
  std::vector<Route> routes;
  if (auto* n = f.Find("routes"))
    B2BUA_CONFIG_RETURN_IF_ERROR(ReadRoutes(*n, config->redirect, &routes));
  // The redirect policies are built here, once per snapshot: no call parses a list.
  config->redirect_policy = ConfiguredRedirectPolicy::FromSettings(config->redirect);
  for (Route& route : routes)
    route.redirect_policy = ConfiguredRedirectPolicy::FromSettings(route.redirect);
  config->routes = RouteTable(std::move(routes));
  return absl::OkStatus();
}

}  // namespace config_loader

namespace {

using config_loader::Loader;
using proto::StrCat;

constexpr std::string_view kDefaultSourceName = "<built-in default>";
// Far above any real configuration; stops a mistaken path such as /dev/zero.
constexpr size_t kMaxConfigBytes = 16 * 1024 * 1024;

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
