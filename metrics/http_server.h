#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace b2bua::metrics {

/// The admin HTTP endpoint: GET /metrics, /healthz and /readyz over HTTP/1.1 with
/// keep-alive. It runs on its own thread with its own io_context (Boost.Beast), so a slow
/// or hostile scraper can never stall a shard; the shards are only read through the
/// `render_metrics` callback.
///
/// Routes:
///   GET /metrics  200, text/plain; version=0.0.4; charset=utf-8, body = render_metrics()
///   GET /healthz  200 "ok" (the process is up and this thread answers)
///   GET /readyz   200 "ready" if ready(), else 503 "not ready"
///   other paths   404; methods other than GET: 405 (with Allow: GET)
/// Query strings are ignored for routing. Requests are bounded (kMaxHeaderBytes of header,
/// 431 beyond; kMaxBodyBytes of body, 413 beyond), and a connection that sends nothing
/// for `idle_timeout` is closed.
///
/// The header does not include Boost: Beast and Asio stay inside http_server.cc.
class MetricsHttpServer {
 public:
  static constexpr size_t kMaxHeaderBytes = 8 * 1024;
  static constexpr size_t kMaxBodyBytes = 1024;

  struct Options {
    /// Deadline for each request read and each response write on a connection.
    std::chrono::milliseconds idle_timeout{std::chrono::seconds(10)};
    /// Connections beyond this are closed as soon as they are accepted.
    size_t max_connections = 64;
  };

  /// Main thread, at startup. Binds `listen` ("IP:PORT" or "[IPv6]:PORT"; port 0 picks an
  /// ephemeral port, see port()) and starts serving on a new thread.
  /// `render_metrics` and `ready` are called on the server thread, one request at a time;
  /// they must be safe to call from there (MetricsRegistry::Render is). An exception they
  /// throw closes that connection and is counted in internal_errors().
  /// Returns InvalidArgument for a malformed `listen`, Unavailable if it cannot be bound.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(
      const std::string& listen, std::function<std::string()> render_metrics,
      std::function<bool()> ready);
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(
      const std::string& listen, std::function<std::string()> render_metrics,
      std::function<bool()> ready, const Options& options);

  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  /// Calls Stop().
  ~MetricsHttpServer();

  /// Safe from any thread. The port actually bound (the ephemeral one when asked for 0).
  uint16_t port() const;

  /// Any thread but the server thread. Stops accepting, closes every connection, and joins
  /// the server thread. Idempotent.
  void Stop();

  /// Safe from any thread. Exceptions caught on the server thread (from the callbacks or
  /// from Asio); each was also written to stderr. Should stay 0.
  uint64_t internal_errors() const;

 private:
  struct Impl;
  explicit MetricsHttpServer(std::unique_ptr<Impl> impl);

  std::unique_ptr<Impl> impl_;
};

}  // namespace b2bua::metrics
