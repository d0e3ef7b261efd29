// The b2bua binary: flags, config, shards, metrics endpoint and signals. Wiring only.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <random>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "b2bua/call_engine.h"
#include "b2bua/config.h"
#include "b2bua/log.h"
#include "b2bua/shard.h"
#include "metrics/exporter.h"
#include "metrics/http_server.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:5060",
          "SIP address IP:PORT (UDP; [v6]:PORT for IPv6). Every shard binds it with SO_REUSEPORT.");
ABSL_FLAG(uint32_t, shards, 0,
          "Worker shards, one thread each; 0 means one per CPU core.");
ABSL_FLAG(std::string, config, "",
          "YAML file with routes, redirect policy, limits and timers "
          "(see deploy/b2bua.example.yaml). Empty: the embedded default config.");
ABSL_FLAG(std::string, metrics_listen, "127.0.0.1:9464",
          "Prometheus endpoint IP:PORT serving /metrics, /healthz and /readyz. Empty disables it.");
ABSL_FLAG(std::string, log_level, "info", "error, warning, info or debug.");
ABSL_FLAG(std::string, advertise, "",
          "IP written into Via and Contact (the address peers reach the B2BUA at). Empty: the "
          "--listen IP, or for a wildcard listen address the one the host routes from.");
ABSL_FLAG(std::string, dns_server, "",
          "DNS server IP:PORT for RFC 3263 lookups of next hops and redirect targets named by "
          "host name. Empty: the servers of /etc/resolv.conf.");
ABSL_FLAG(bool, call_records, true,
          "Log one line per redirected call when it ends: every hop with target, q, "
          "status and time to answer.");

namespace {

// The project version (CMakeLists.txt): b2bua_build_info, --version and the start-up line.
constexpr std::string_view kVersion = B2BUA_VERSION;

void Log(int level, int threshold, const std::string& line) {
  if (level <= threshold) b2bua::WriteLogLine(static_cast<b2bua::LogLevel>(level), line);
}

// `--help` lists this binary's own flags and exits 0 (abseil's lists only flags defined
// in a file named after the program, and exits 1).
bool WantsHelp(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-help" || arg == "-h" || arg == "--helpfull") return true;
  }
  return false;
}

// What `--version` prints and the start-up line names, so that a log says what ran.
constexpr std::string_view kVersionLine = "b2bua " B2BUA_VERSION " (" B2BUA_BUILD_TYPE " build)";

bool WantsVersion(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--version" || arg == "-version") return true;
  }
  return false;
}

void PrintHelp() {
  std::string out = std::string(absl::ProgramUsageMessage()) + "\n\nFlags:\n";
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (std::string(flag->Filename()).find("b2bua/main.cc") == std::string::npos) continue;
    out += "  --" + std::string(name) + " (default: \"" + flag->DefaultValue() + "\")\n      " +
           flag->Help() + "\n";
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
}

// The source address the host would use towards the outside world: connecting a UDP
// socket sends nothing, it only picks the route.
std::string RoutedIp(bool v6) {
  int fd = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) return {};
  b2bua::proto::NetAddress probe;
  b2bua::proto::NetAddress::ParseIp(v6 ? "2001:db8::1" : "192.0.2.1", 9, &probe);
  sockaddr_storage address;
  socklen_t length = probe.ToSockaddr(&address);
  std::string ip;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), length) == 0) {
    length = sizeof(address);
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0)
      ip = b2bua::proto::NetAddress::FromSockaddr(reinterpret_cast<sockaddr*>(&address), length)
               .IpString();
  }
  ::close(fd);
  return ip;
}

// Call records go to stderr, one fwrite per line: stdio's own lock keeps lines whole
// across shards, and only calls that went through the redirect engine write one.
class StderrCallRecords final : public b2bua::CallRecordSink {
 public:
  void OnCallRecord(std::string_view line) override {
    std::string out = "b2bua info: ";
    out.append(line);
    out += '\n';
    std::fwrite(out.data(), 1, out.size(), stderr);
  }
};

// `previous`: the config a reload replaces, whose routes hand their call counts on.
absl::StatusOr<std::shared_ptr<const b2bua::Config>> LoadConfig(
    const std::string& path, const b2bua::Config* previous = nullptr) {
  return path.empty() ? b2bua::DefaultConfig() : b2bua::LoadConfigFile(path, previous);
}

// The TLS context a config asks for: null when it has no tls: section.
absl::StatusOr<std::shared_ptr<const b2bua::proto::TlsContext>> LoadTls(
    const b2bua::Config& config) {
  if (!config.tls.enabled()) return std::shared_ptr<const b2bua::proto::TlsContext>();
  return b2bua::proto::TlsContext::Load(config.tls.settings);
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Carrier-grade SIP back-to-back user agent that follows 3xx redirects for its callers.\n"
      "Usage: b2bua [--listen=IP:PORT] [--shards=N] [--config=FILE] [--metrics_listen=IP:PORT]");
  if (WantsHelp(argc, argv)) {
    PrintHelp();
    return 0;
  }
  if (WantsVersion(argc, argv)) {
    // abseil's own --version would name abseil's build, not ours.
    std::printf("%.*s\n", static_cast<int>(kVersionLine.size()), kVersionLine.data());
    return 0;
  }
  absl::ParseCommandLine(argc, argv);
  b2bua::LogLevel level = b2bua::LogLevel::kInfo;
  if (!b2bua::ParseLogLevel(absl::GetFlag(FLAGS_log_level), &level)) {
    std::fprintf(stderr, "b2bua error: --log_level must be error, warning, info or debug\n");
    return 2;
  }
  b2bua::SetLogLevel(level);
  const int log_level = static_cast<int>(level);

  // Signals are taken synchronously by the main thread; the shards never see them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  const std::string config_path = absl::GetFlag(FLAGS_config);
  auto config = LoadConfig(config_path);
  if (!config.ok()) {
    Log(0, log_level, absl::StrCat("config refused: ", config.status().message()));
    return 2;
  }
  b2bua::ShardGroupOptions options;
  auto tls = LoadTls(**config);
  if (!tls.ok()) {
    Log(0, log_level, absl::StrCat("config refused: ", tls.status().message()));
    return 2;
  }
  options.tls = *tls;
  if (!b2bua::proto::NetAddress::ParseIpPort(absl::GetFlag(FLAGS_listen), &options.listen)) {
    Log(0, log_level, absl::StrCat("--listen: '", absl::GetFlag(FLAGS_listen),
                                   "' is not IP:PORT"));
    return 2;
  }
  options.shards = absl::GetFlag(FLAGS_shards);
  options.dns_server = absl::GetFlag(FLAGS_dns_server);
  options.advertised_ip = absl::GetFlag(FLAGS_advertise);
  if (options.advertised_ip.empty() && options.listen.is_unspecified()) {
    options.advertised_ip = RoutedIp(options.listen.is_v6());
    if (options.advertised_ip.empty()) {
      Log(0, log_level, "--listen is a wildcard address and no route tells which IP peers "
                        "reach us at: give --advertise=IP");
      return 2;
    }
    Log(1, log_level, absl::StrCat("--listen is a wildcard address: advertising ",
                                   options.advertised_ip, " in Via and Contact (--advertise)"));
  }
  if (options.shards == 0) options.shards = std::max(1u, std::thread::hardware_concurrency());
  options.boot_epoch = static_cast<uint64_t>(std::time(nullptr));
  {
    std::random_device random;
    options.token_seed = (static_cast<uint64_t>(random()) << 32) ^ random();
  }

  StderrCallRecords call_records;
  if (absl::GetFlag(FLAGS_call_records) && log_level >= 2) options.call_records = &call_records;
  b2bua::ShardGroup group(options);
  if (absl::Status status = group.Start(*config); !status.ok()) {
    Log(0, log_level, absl::StrCat("start: ", status.message()));
    return 1;
  }
  std::atomic<bool> draining{false};
  b2bua::metrics::MetricsRegistry registry(group.counters(), kVersion);
  std::unique_ptr<b2bua::metrics::MetricsHttpServer> http;
  if (!absl::GetFlag(FLAGS_metrics_listen).empty()) {
    auto server = b2bua::metrics::MetricsHttpServer::Start(
        absl::GetFlag(FLAGS_metrics_listen), [&registry] { return registry.Render(); },
        [&group, &draining, ready_without_store = (*config)->cluster.ready_without_redis] {
          // A cluster member without its Redis still serves its own calls: ready unless
          // the operator asked otherwise.
          return group.running() && !draining.load() &&
                 (ready_without_store || group.StoresConnected());
        });
    if (!server.ok()) {
      Log(0, log_level, absl::StrCat("metrics: ", server.status().message()));
      group.Stop();
      return 1;
    }
    http = std::move(*server);
  }
  Log(2, log_level,
      absl::StrCat(absl::string_view(kVersionLine.data(), kVersionLine.size()), " listening on ",
                   group.local_address().ToString(), " (UDP and TCP)",
                   (*config)->tls.enabled() ? absl::StrCat(", ", (*config)->tls.listen, " (TLS)")
                                            : std::string(),
                   " with ",
                   group.size(),
                   " shards; metrics on ", absl::GetFlag(FLAGS_metrics_listen), "; config ",
                   (*config)->source));

  std::shared_ptr<const b2bua::Config> current = *config;
  for (;;) {
    int signal_number = 0;
    if (sigwait(&signals, &signal_number) != 0) continue;
    if (signal_number == SIGHUP) {
      // Reload: new calls take the new routes and policy; a broken file changes nothing.
      auto reloaded = LoadConfig(config_path, current.get());
      if (!reloaded.ok()) {
        Log(1, log_level, absl::StrCat("reload refused, keeping the old config: ",
                                       reloaded.status().message()));
        continue;
      }
      // The listener is bound once: a new certificate is taken, a new address is not.
      if ((*reloaded)->tls.listen != current->tls.listen) {
        Log(1, log_level, "reload refused, keeping the old config: tls.listen changed (it "
                          "needs a restart)");
        continue;
      }
      // Instance id, front and Redis are part of every live call's token and connection.
      if ((*reloaded)->cluster != current->cluster) {
        Log(1, log_level, "reload refused, keeping the old config: cluster changed (it "
                          "needs a restart)");
        continue;
      }
      auto reloaded_tls = LoadTls(**reloaded);
      if (!reloaded_tls.ok()) {
        Log(1, log_level, absl::StrCat("reload refused, keeping the old config: ",
                                       reloaded_tls.status().message()));
        continue;
      }
      group.UpdateConfig(*reloaded, *reloaded_tls);
      current = *reloaded;
      Log(2, log_level, absl::StrCat("config reloaded from ", (*reloaded)->source));
      continue;
    }
    break;  // SIGTERM or SIGINT
  }
  // Drain: refuse new calls, let live ones end, up to the drain limit.
  draining = true;
  group.StartDraining();
  const auto limit = std::chrono::steady_clock::now() + current->limits.drain_timeout;
  while (group.ActiveCalls() > 0 && std::chrono::steady_clock::now() < limit)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  if (const uint64_t left = group.ActiveCalls(); left > 0) {
    // The drain limit is up: end what is left properly rather than leave both peers
    // holding a call nobody will end.
    Log(1, log_level, absl::StrCat("drain limit reached: ending ", left, " calls with BYE"));
    group.EndAllCalls();
    const auto flush = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    while (group.ActiveCalls() > 0 && std::chrono::steady_clock::now() < flush)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the BYEs leave
  }
  Log(2, log_level, absl::StrCat("stopping with ", group.ActiveCalls(), " calls still up"));
  if (http) http->Stop();
  group.Stop();
  return 0;
}
