#include "proto/udp_transport.h"
#include "proto/socket_util.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/udp.hpp>
#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace b2bua::proto {

namespace asio = boost::asio;

struct UdpTransport::Impl {
  Impl(asio::io_context& io, const UdpOptions& opts) : socket(io), options(opts) {}

  asio::ip::udp::socket socket;
  UdpOptions options;
  DatagramHandler* handler = nullptr;
  bool closed = false;

  // Receive side: one buffer per batch slot, reused forever.
  std::vector<char> receive_storage;
  std::vector<mmsghdr> receive_headers;
  std::vector<iovec> receive_iovecs;
  std::vector<sockaddr_storage> receive_sources;

  // Send side: queued datagrams packed into one arena.
  std::vector<char> send_arena;
  struct Pending {
    size_t offset;
    size_t length;
    sockaddr_storage to;
    socklen_t to_length;
  };
  std::vector<Pending> pending;
  std::vector<mmsghdr> send_headers;
  std::vector<iovec> send_iovecs;
};

UdpTransport::UdpTransport(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

UdpTransport::~UdpTransport() { Close(); }

absl::StatusOr<std::unique_ptr<UdpTransport>> UdpTransport::Open(asio::io_context& io,
                                                                 const NetAddress& listen,
                                                                 const UdpOptions& options) {
  auto impl = std::make_unique<Impl>(io, options);
  NetAddress bound;
  absl::StatusOr<int> opened = OpenReusePortSocket(SOCK_DGRAM, listen, &bound);
  if (!opened.ok()) return opened.status();
  const int fd = *opened;
  int buffer = options.socket_buffer_bytes;
  // SO_*BUFFORCE passes net.core.rmem_max when running with CAP_NET_ADMIN; fall back quietly.
  if (::setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buffer, sizeof(buffer)) != 0)
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buffer, sizeof(buffer));
  if (::setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &buffer, sizeof(buffer)) != 0)
    ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buffer, sizeof(buffer));
  boost::system::error_code ec;
  impl->socket.assign(listen.is_v6() ? asio::ip::udp::v6() : asio::ip::udp::v4(), fd, ec);
  if (ec) {
    ::close(fd);
    return absl::InternalError(absl::StrCat("udp assign: ", ec.message()));
  }
  auto transport = std::unique_ptr<UdpTransport>(new UdpTransport(std::move(impl)));
  transport->local_ = bound;
  int granted = 0;
  socklen_t granted_length = sizeof(granted);
  ::getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &granted, &granted_length);
  transport->granted_rcvbuf_ = granted;

  Impl& m = *transport->impl_;
  const size_t batch = options.batch ? options.batch : 1;
  // One byte more than the largest datagram we accept tells oversized ones apart
  // without MSG_TRUNC bookkeeping; padding lets scanners over-read safely.
  const size_t slot = options.max_datagram_bytes + 1 + kReceivePadding;
  m.receive_storage.resize(slot * batch);
  m.receive_headers.resize(batch);
  m.receive_iovecs.resize(batch);
  m.receive_sources.resize(batch);
  m.send_arena.reserve(batch * 2048);
  m.pending.reserve(batch);
  m.send_headers.resize(batch);
  m.send_iovecs.resize(batch);
  return transport;
}

void UdpTransport::Start(DatagramHandler* handler) {
  impl_->handler = handler;
  StartWait();
}

void UdpTransport::Close() {
  if (!impl_ || impl_->closed) return;
  impl_->closed = true;
  boost::system::error_code ec;
  impl_->socket.cancel(ec);
  impl_->socket.close(ec);
}

void UdpTransport::StartWait() {
  if (impl_->closed) return;
  impl_->socket.async_wait(asio::socket_base::wait_read, [this](boost::system::error_code ec) {
    if (ec || impl_->closed) return;
    ReadBatch();
    StartWait();
  });
}

void UdpTransport::ReadBatch() {
  Impl& m = *impl_;
  const size_t batch = m.receive_headers.size();
  const size_t slot = m.options.max_datagram_bytes + 1 + kReceivePadding;
  const int fd = m.socket.native_handle();
  // Drain what is queued, but yield to the io_context after a bounded amount of work so
  // timers and peer wake-ups are not starved under flood.
  for (int round = 0; round < 8 && !m.closed; ++round) {
    for (size_t i = 0; i < batch; ++i) {
      m.receive_iovecs[i] = {m.receive_storage.data() + i * slot, m.options.max_datagram_bytes + 1};
      mmsghdr& h = m.receive_headers[i];
      std::memset(&h, 0, sizeof(h));
      h.msg_hdr.msg_iov = &m.receive_iovecs[i];
      h.msg_hdr.msg_iovlen = 1;
      h.msg_hdr.msg_name = &m.receive_sources[i];
      h.msg_hdr.msg_namelen = sizeof(sockaddr_storage);
    }
    int count = ::recvmmsg(fd, m.receive_headers.data(), static_cast<unsigned>(batch), MSG_DONTWAIT,
                           nullptr);
    ++counters_.receive_syscalls;
    if (count <= 0) break;
    for (int i = 0; i < count && !m.closed; ++i) {
      const mmsghdr& h = m.receive_headers[i];
      const size_t length = h.msg_len;
      if (length > m.options.max_datagram_bytes || (h.msg_hdr.msg_flags & MSG_TRUNC)) {
        ++counters_.dropped_oversized;
        continue;
      }
      ++counters_.datagrams_received;
      counters_.bytes_received += length;
      char* data = m.receive_storage.data() + i * slot;
      std::memset(data + length, 0, kReceivePadding);
      Peer source;
      source.address = NetAddress::FromSockaddr(reinterpret_cast<const sockaddr*>(&m.receive_sources[i]),
                                                h.msg_hdr.msg_namelen);
      source.transport = TransportKind::kUdp;
      if (m.handler) m.handler->OnDatagram(std::string_view(data, length), source);
    }
    if (m.handler) m.handler->OnBatchEnd();
    Flush();
    if (static_cast<size_t>(count) < batch) break;
  }
}

bool UdpTransport::Send(const Peer& to, std::string_view bytes) {
  Impl& m = *impl_;
  if (m.closed) {
    ++counters_.send_failures;
    return false;
  }
  if (m.pending.size() >= m.send_headers.size()) Flush();
  Impl::Pending p;
  p.offset = m.send_arena.size();
  p.length = bytes.size();
  p.to_length = to.address.ToSockaddr(&p.to);
  m.send_arena.insert(m.send_arena.end(), bytes.begin(), bytes.end());
  m.pending.push_back(p);
  return true;
}

void UdpTransport::Flush() {
  Impl& m = *impl_;
  if (m.pending.empty()) return;
  const size_t n = m.pending.size();
  for (size_t i = 0; i < n; ++i) {
    Impl::Pending& p = m.pending[i];
    m.send_iovecs[i] = {m.send_arena.data() + p.offset, p.length};
    mmsghdr& h = m.send_headers[i];
    std::memset(&h, 0, sizeof(h));
    h.msg_hdr.msg_iov = &m.send_iovecs[i];
    h.msg_hdr.msg_iovlen = 1;
    h.msg_hdr.msg_name = &p.to;
    h.msg_hdr.msg_namelen = p.to_length;
  }
  const int fd = m.socket.native_handle();
  size_t sent = 0;
  while (sent < n) {
    int result = ::sendmmsg(fd, m.send_headers.data() + sent, static_cast<unsigned>(n - sent),
                            MSG_DONTWAIT);
    ++counters_.send_syscalls;
    if (result > 0) {
      sent += static_cast<size_t>(result);
      counters_.datagrams_sent += static_cast<uint64_t>(result);
      continue;
    }
    if (result < 0 && errno == EINTR) continue;
    // A datagram the kernel refuses (ICMP-reported unreachable peer, full buffer) is
    // dropped and counted; UDP retransmission timers recover what matters.
    ++counters_.send_failures;
    ++sent;
  }
  m.pending.clear();
  m.send_arena.clear();
}

}  // namespace b2bua::proto
