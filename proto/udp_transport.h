#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include "absl/status/statusor.h"
#include "proto/net_address.h"
#include "proto/transport.h"

namespace boost::asio {
class io_context;
}  // namespace boost::asio

namespace b2bua::proto {

struct UdpOptions {
  /// SO_RCVBUF and SO_SNDBUF. Stock buffers drop datagrams at a few thousand calls/s.
  int socket_buffer_bytes = 4 * 1024 * 1024;
  /// Larger datagrams are dropped and counted (MSG_TRUNC).
  size_t max_datagram_bytes = 65535;
  /// Datagrams read (recvmmsg) and written (sendmmsg) per system call.
  size_t batch = 32;
};

/// Receives datagrams; called on the owning shard. `bytes` is valid during the call only
/// and is followed by at least kReceivePadding readable bytes (scanners may over-read).
class DatagramHandler {
 public:
  virtual void OnDatagram(std::string_view bytes, const Peer& source) = 0;
  /// Called once after each batch of datagrams, for work that batches well (sending).
  virtual void OnBatchEnd() {}

 protected:
  ~DatagramHandler() = default;
};

struct UdpCounters {
  uint64_t datagrams_received = 0;
  uint64_t bytes_received = 0;
  uint64_t datagrams_sent = 0;
  uint64_t dropped_oversized = 0;
  uint64_t send_failures = 0;
  uint64_t receive_syscalls = 0;
  uint64_t send_syscalls = 0;
};

/// One shard's UDP socket. Every shard binds the same address with SO_REUSEPORT, so the
/// kernel spreads sources across shards. Reads with recvmmsg and writes with sendmmsg:
/// Send() only queues; Flush() (run after every receive batch and timer turn) writes the
/// queue in as few system calls as possible.
class UdpTransport final : public MessageSink {
 public:
  static constexpr size_t kReceivePadding = 64;

  /// Boundary: opens and binds the socket. `listen` port 0 picks an ephemeral port (then
  /// every shard after the first must bind the port the first one got).
  static absl::StatusOr<std::unique_ptr<UdpTransport>> Open(boost::asio::io_context& io,
                                                            const NetAddress& listen,
                                                            const UdpOptions& options);
  ~UdpTransport() override;

  /// Owning shard only. Starts the receive loop.
  void Start(DatagramHandler* handler);
  /// Owning shard only. Cancels pending I/O; no handler runs afterwards.
  void Close();

  /// Owning shard only. Queues one datagram; flushed by Flush() or when the queue is full.
  bool Send(const Peer& to, std::string_view bytes) override;
  /// Owning shard only.
  void Flush();

  const NetAddress& local_address() const { return local_; }
  const UdpCounters& counters() const { return counters_; }
  /// The socket buffer sizes the kernel granted (it may cap them: net.core.rmem_max).
  int granted_receive_buffer() const { return granted_rcvbuf_; }

 private:
  struct Impl;
  explicit UdpTransport(std::unique_ptr<Impl> impl);
  void StartWait();
  void ReadBatch();

  std::unique_ptr<Impl> impl_;
  NetAddress local_;
  UdpCounters counters_;
  int granted_rcvbuf_ = 0;
};

}  // namespace b2bua::proto
