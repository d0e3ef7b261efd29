#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "proto/clock.h"
#include "proto/net_address.h"
#include "proto/transport.h"

// Asio stays out of this header so that code using the transport does not compile Asio.
namespace boost::asio {
class io_context;
}  // namespace boost::asio

namespace b2bua::proto {

/// Where a TLS endpoint's certificate, key and trusted CAs come from (PEM files).
struct TlsSettings {
  std::string certificate;  // chain, leaf first
  std::string private_key;
  std::string ca;           // trusted CAs; empty: the system's store
  /// Ask callers for a certificate and refuse a connection without a valid one.
  bool verify_peer = false;
  /// "1.2" or "1.3": older protocol versions are refused.
  std::string min_version = "1.2";

  friend bool operator==(const TlsSettings&, const TlsSettings&) = default;
};

/// Certificates and keys loaded and checked, ready for handshakes: one server side (for
/// accepted connections) and one client side (for connections to next hops, which always
/// verifies the server against `ca` and its name, RFC 5922). Immutable; shared by the
/// shards and by every connection that was set up with it, so a reload that loads a new
/// one changes the next handshake and leaves live connections alone.
class TlsContext {
 public:
  /// Boundary (start-up and reload, main thread): reads and checks the files; an error
  /// names the file and what is wrong with it.
  static absl::StatusOr<std::shared_ptr<const TlsContext>> Load(const TlsSettings& settings);
  ~TlsContext();

  struct Impl;
  const Impl& impl() const { return *impl_; }

 private:
  explicit TlsContext(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

struct TcpOptions {
  /// The largest message a peer may send (start line, headers and body). A message that
  /// does not end within it is a framing error and closes the connection.
  size_t max_message_bytes = 65535;
  /// A connection with no traffic either way for this long is closed.
  Duration idle_timeout = std::chrono::minutes(5);
  /// An accepted connection that sends nothing within this is closed: sockets opened and
  /// left silent must not pile up.
  Duration first_byte_timeout = std::chrono::seconds(10);
  /// A message must be whole within this of its first byte: a peer trickling a byte every
  /// few seconds is closed (slowloris).
  Duration message_timeout = std::chrono::seconds(10);
  /// Accepted connections from one IP (any port) beyond this are closed at once.
  size_t max_connections_per_source_ip = 64;
  /// Inbound plus outbound. Over it, accepts are refused and Send() does not connect.
  size_t max_connections = 10000;
  /// An outgoing connection not established within this is given up.
  Duration connect_timeout = std::chrono::seconds(5);
  /// Bytes queued and not yet written on one connection. A peer that stops reading must
  /// not grow our memory without bound: over it, the message is dropped and the connection
  /// closed.
  size_t max_write_queue_bytes = 1024 * 1024;
  /// Shard index << 24. Connection ids are base | (1..2^24-1): unique per shard, and the
  /// top byte names the shard that owns the connection. The low 24 bits are ignored.
  uint32_t connection_id_base = 0;
  /// Set: every connection, accepted or opened, is TLS (SIP over TLS, RFC 3261 26.2) and
  /// its peers are TransportKind::kTls. Null: plain TCP.
  std::shared_ptr<const TlsContext> tls;
  /// A TLS handshake not done within this closes the connection.
  Duration handshake_timeout = std::chrono::seconds(5);
};

/// Receives framed messages; called on the owning shard.
class StreamHandler {
 public:
  /// One complete message (CRLF keep-alives before it are stripped). `message` is valid
  /// during the call only. `source` carries kTcp, the remote address and the connection id
  /// to answer on. The handler may call Send() and Close() from here.
  virtual void OnStreamMessage(std::string_view message, const Peer& source) = 0;
  /// Called once after the messages of one read, for work that batches well (sending).
  virtual void OnBatchEnd() {}
  /// Bytes queued by Send() were dropped: the outgoing connection failed or timed out, or
  /// the connection broke with bytes unwritten. Called once per connection, after it has
  /// been forgotten (a Send() from here opens a new one). `to.connection_id` is the dead
  /// connection's id. Never called from Close().
  virtual void OnSendFailure(const Peer& to) {}

 protected:
  ~StreamHandler() = default;
};

struct TcpCounters {
  uint64_t accepted = 0;
  /// Accepts closed at once: over max_connections or max_connections_per_source_ip.
  uint64_t refused_over_limit = 0;
  /// accept() failures (EMFILE and the like); accepting resumes after a pause.
  uint64_t accept_errors = 0;
  /// Outgoing connections established.
  uint64_t connects = 0;
  /// Outgoing connections that failed, timed out, or could not be started.
  uint64_t connect_failures = 0;
  uint64_t messages_received = 0;
  /// kMalformed or kTooLarge on a stream; each one closed its connection.
  uint64_t framing_errors = 0;
  uint64_t bytes_received = 0;
  uint64_t bytes_sent = 0;
  /// RFC 5626 double-CRLF pings answered with a CRLF pong.
  uint64_t pongs_sent = 0;
  uint64_t idle_closed = 0;
  /// Accepted connections closed for sending nothing within first_byte_timeout.
  uint64_t first_byte_timeouts = 0;
  /// Connections closed for a message left unfinished past message_timeout.
  uint64_t message_timeouts = 0;
  /// Requests over max_message_bytes answered 513 before their connection was closed.
  uint64_t oversized_answered = 0;
  /// TLS handshakes completed, and failed by reason: the deadline passed, the peer's
  /// certificate did not verify (chain or name), anything else (protocol, version).
  uint64_t handshakes = 0;
  uint64_t handshake_timeouts = 0;
  uint64_t handshake_verify_failures = 0;
  uint64_t handshake_errors = 0;
  /// Connections closed because their write queue went over max_write_queue_bytes.
  uint64_t write_overflow = 0;
  /// Send() calls that returned false, plus queued messages dropped with their connection.
  uint64_t send_failures = 0;
};

/// One shard's SIP-over-TCP or SIP-over-TLS transport (RFC 3261 18, 26.2). Every shard listens on the same
/// address with SO_REUSEPORT, so the kernel spreads connections across shards; each
/// connection then lives on the shard that accepted (or opened) it, and its id names that
/// shard. Each connection has its own receive buffer framed by SipParser (kStream), one
/// in-order write queue, and one timer (connect timeout, then idle timeout).
///
/// Everything runs on the thread that runs `io`; nothing is locked. Errors are values:
/// a broken connection is closed and counted, never thrown.
class TcpTransport final : public MessageSink {
 public:
  /// Boundary: opens, binds and listens. `listen` port 0 picks an ephemeral port (then
  /// every shard after the first must listen on the port the first one got).
  static absl::StatusOr<std::unique_ptr<TcpTransport>> Open(boost::asio::io_context& io,
                                                            const NetAddress& listen,
                                                            const TcpOptions& options);
  /// Owning shard only. Closes everything, as Close() does.
  ~TcpTransport() override;

  /// Owning shard only. Starts accepting. `handler` must outlive the transport or Close().
  void Start(StreamHandler* handler);
  /// Owning shard only. Closes the listener and every connection, dropping queued bytes;
  /// no handler runs afterwards. Idempotent.
  void Close();

  /// Owning shard only. Queues `bytes` on the connection `to.connection_id` when it is
  /// alive (RFC 3261 18.2.2: responses go back on the request's connection); otherwise on
  /// any live connection to `to.address`; otherwise opens one and sends once connected.
  /// False when the bytes were dropped (closed transport, connection limit, write queue
  /// overflow); a later failure of a new connection is reported by OnSendFailure().
  bool Send(const Peer& to, std::string_view bytes) override;

  /// Owning shard only. New limits and timeouts, from the next event of each connection
  /// on (a config reload); `connection_id_base` is kept, and so is TLS or not (a new TLS
  /// context serves the next handshakes).
  void UpdateOptions(const TcpOptions& options);

  /// Owning shard only. TLS: the host name a new connection to `to` must present a
  /// certificate for (and sends as SNI), as the caller resolved `to` from it. Without one
  /// the certificate must name the IP address. Bounded: the oldest names are forgotten.
  void SetServerName(const NetAddress& to, std::string_view host);

  /// Owning shard only.
  size_t connection_count() const;
  const NetAddress& local_address() const { return local_; }
  /// Owning shard only.
  const TcpCounters& counters() const;

 private:
  struct Impl;
  explicit TcpTransport(std::shared_ptr<Impl> impl);

  // Shared with in-flight Asio handlers, so that a handler that runs after the transport
  // is gone finds the Impl alive and closed.
  std::shared_ptr<Impl> impl_;
  NetAddress local_;
};

}  // namespace b2bua::proto
