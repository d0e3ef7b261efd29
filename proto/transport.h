#pragma once

#include <cstdint>
#include <string_view>

#include "proto/net_address.h"

namespace b2bua::proto {

enum class TransportKind : uint8_t { kUdp, kTcp, kTls };

std::string_view TransportName(TransportKind kind);  // "UDP", "TCP", "TLS"

/// Where a message came from or goes to. For TCP, `connection_id` names the connection a
/// request arrived on so that its responses go back on it (RFC 3261 18.2.2); 0 means
/// "any connection to `address`, opened if needed".
struct Peer {
  NetAddress address;
  TransportKind transport = TransportKind::kUdp;
  uint32_t connection_id = 0;

  bool reliable() const { return transport != TransportKind::kUdp; }
  friend bool operator==(const Peer&, const Peer&) = default;
};

/// Sends serialized messages. Implemented by the shard's transports; the transaction layer
/// and the core only ever see this interface. Per-packet: never throws; a failed send is
/// counted by the transport and reported as false.
class MessageSink {
 public:
  virtual ~MessageSink() = default;
  /// Owning shard only. `bytes` need not outlive the call.
  virtual bool Send(const Peer& to, std::string_view bytes) = 0;
};

}  // namespace b2bua::proto
