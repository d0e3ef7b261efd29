#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace b2bua::proto {

/// An IPv4 or IPv6 address and port, small and trivially copyable, so that per-packet code
/// carries peers by value without Asio types in its headers.
class NetAddress {
 public:
  NetAddress() = default;

  /// Parses "1.2.3.4", "::1" or "[::1]" (no port). False when it is not a literal address.
  static bool ParseIp(std::string_view text, uint16_t port, NetAddress* out);
  /// Parses "IP:PORT" or "[IPv6]:PORT".
  static bool ParseIpPort(std::string_view text, NetAddress* out);
  static NetAddress FromSockaddr(const sockaddr* address, socklen_t length);

  /// Fills `storage`; returns the length to pass to sendto/bind.
  socklen_t ToSockaddr(sockaddr_storage* storage) const;

  bool is_v6() const { return v6_; }
  uint16_t port() const { return port_; }
  void set_port(uint16_t port) { port_ = port; }
  bool is_loopback() const;
  bool is_unspecified() const;
  const std::array<uint8_t, 16>& bytes() const { return bytes_; }

  /// "1.2.3.4" or "::1" (no brackets, no port).
  std::string IpString() const;
  /// Writes the IP without brackets into `out` (at least 46 bytes); returns its length.
  size_t WriteIp(char* out) const;
  /// "1.2.3.4:5060" or "[::1]:5060".
  std::string ToString() const;

  /// Same IP, port ignored.
  bool SameIp(const NetAddress& other) const { return v6_ == other.v6_ && bytes_ == other.bytes_; }
  friend bool operator==(const NetAddress&, const NetAddress&) = default;

  template <typename H>
  friend H AbslHashValue(H h, const NetAddress& a) {
    return H::combine(std::move(h), a.bytes_, a.port_, a.v6_);
  }

 private:
  std::array<uint8_t, 16> bytes_{};  // IPv4 in the first four bytes
  uint16_t port_ = 0;
  bool v6_ = false;
};

}  // namespace b2bua::proto
