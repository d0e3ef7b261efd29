#include "proto/tcp_transport.h"
#include "proto/socket_util.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <cerrno>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "proto/sip_builder.h"
#include "proto/sip_message.h"
#include "proto/sip_parser.h"

namespace b2bua::proto {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;

namespace {

constexpr uint32_t kIdMask = 0x00FFFFFFu;
// Most SIP messages fit; a connection that carries bigger ones grows its buffer up to
// max_message_bytes + 1.
constexpr size_t kInitialReceiveBytes = 4096;
// accept() failing for want of descriptors or memory would fail again at once: pause.
constexpr auto kAcceptBackoff = std::chrono::milliseconds(100);
constexpr char kPing[] = "\r\n\r\n";  // RFC 5626 3.5.1
constexpr std::string_view kPong = "\r\n";

tcp::endpoint ToEndpoint(const NetAddress& address) {
  if (address.is_v6()) {
    asio::ip::address_v6::bytes_type bytes;
    std::memcpy(bytes.data(), address.bytes().data(), bytes.size());
    return tcp::endpoint(asio::ip::address_v6(bytes), address.port());
  }
  asio::ip::address_v4::bytes_type bytes;
  std::memcpy(bytes.data(), address.bytes().data(), bytes.size());
  return tcp::endpoint(asio::ip::address_v4(bytes), address.port());
}

NetAddress FromEndpoint(const tcp::endpoint& endpoint) {
  return NetAddress::FromSockaddr(endpoint.data(), static_cast<socklen_t>(endpoint.size()));
}

// Server names remembered for outgoing TLS connections; past it the table starts afresh.
constexpr size_t kMaxServerNames = 4096;

bool IsTls13(std::string_view version) { return version == "1.3"; }

NetAddress IpOnly(NetAddress address) {
  address.set_port(0);
  return address;
}

}  // namespace

// ---------------------------------------------------------------------------------------
// TLS contexts

struct TlsContext::Impl {
  asio::ssl::context server{asio::ssl::context::tls_server};
  asio::ssl::context client{asio::ssl::context::tls_client};
};

TlsContext::TlsContext(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TlsContext::~TlsContext() = default;

absl::StatusOr<std::shared_ptr<const TlsContext>> TlsContext::Load(const TlsSettings& settings) {
  auto impl = std::make_unique<Impl>();
  auto failed = [](const char* key, const std::string& file, const error_code& ec) {
    return absl::InvalidArgumentError(absl::StrCat("tls.", key, ": ", file, ": ", ec.message()));
  };
  const int min_version = IsTls13(settings.min_version) ? TLS1_3_VERSION : TLS1_2_VERSION;
  for (asio::ssl::context* ctx : {&impl->server, &impl->client}) {
    SSL_CTX_set_min_proto_version(ctx->native_handle(), min_version);
    error_code ec;
    ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_compression,
                     ec);
    ctx->use_certificate_chain_file(settings.certificate, ec);
    if (ec) return failed("certificate", settings.certificate, ec);
    ctx->use_private_key_file(settings.private_key, asio::ssl::context::pem, ec);
    if (ec) return failed("private_key", settings.private_key, ec);
    if (SSL_CTX_check_private_key(ctx->native_handle()) != 1) {
      return absl::InvalidArgumentError(absl::StrCat("tls.private_key: ", settings.private_key,
                                                     " does not match ", settings.certificate));
    }
  }
  // RFC 5922: a next hop's certificate is always checked, against `ca` and its name.
  error_code ec;
  if (settings.ca.empty()) {
    impl->client.set_default_verify_paths(ec);
    if (ec) return failed("ca", "<system store>", ec);
  } else {
    impl->client.load_verify_file(settings.ca, ec);
    if (ec) return failed("ca", settings.ca, ec);
  }
  impl->client.set_verify_mode(asio::ssl::verify_peer, ec);
  if (settings.verify_peer) {
    if (settings.ca.empty()) {
      impl->server.set_default_verify_paths(ec);
    } else {
      impl->server.load_verify_file(settings.ca, ec);
    }
    if (ec) return failed("ca", settings.ca, ec);
    impl->server.set_verify_mode(
        asio::ssl::verify_peer | asio::ssl::verify_fail_if_no_peer_cert, ec);
  }
  return std::shared_ptr<const TlsContext>(new TlsContext(std::move(impl)));
}

// ---------------------------------------------------------------------------------------
// The transport

struct TcpTransport::Impl : std::enable_shared_from_this<TcpTransport::Impl> {
  struct Connection;
  using ConnectionPtr = std::shared_ptr<Connection>;

  Impl(asio::io_context& io_context, const NetAddress& listen_address, const TcpOptions& opts)
      : io(io_context),
        acceptor(io_context),
        accept_backoff(io_context),
        listen(listen_address),
        options(opts),
        parser(ParserLimits{opts.max_message_bytes}),
        kind(opts.tls ? TransportKind::kTls : TransportKind::kTcp) {}

  void StartAccept();
  void OnAccept(error_code ec, tcp::socket socket);
  // TLS: the handshake runs before anything is read or written.
  void StartHandshake(Connection& c, bool server);
  void OnHandshake(Connection& c, error_code ec);
  Connection* Connect(const NetAddress& to);
  void OnConnect(Connection& c, error_code ec);
  ConnectionPtr NewConnection(tcp::socket socket, const NetAddress& remote, bool inbound);
  uint32_t NextId();
  Connection* FindLive(uint32_t id);
  void StartRead(Connection& c);
  void OnRead(Connection& c, error_code ec, size_t bytes);
  size_t Frame(Connection& c);
  bool Enqueue(Connection& c, std::string_view bytes);
  void StartWrite(Connection& c);
  void OnWrite(Connection& c, error_code ec, size_t bytes);
  void ArmTimer(Connection& c, TimePoint at);
  void OnTimer(Connection& c);
  // The earliest of the connection's idle, first-byte and message deadlines.
  TimePoint NextDeadline(const Connection& c) const;
  // A request over the size limit whose headers arrived is answered 513; the connection
  // then only waits for the answer to leave (and discards what it reads) before closing.
  bool AnswerTooLarge(Connection& c, const ParseResult& result);
  void CloseConnection(Connection& c, bool report);
  void CloseAll();

  asio::io_context& io;
  tcp::acceptor acceptor;
  asio::steady_timer accept_backoff;
  const NetAddress listen;
  TcpOptions options;
  SipParser parser;
  // Scratch for framing only: the handler gets the bytes and parses them itself.
  SipMessage message;
  StreamHandler* handler = nullptr;
  bool started = false;
  bool closed = false;
  TcpCounters counters;
  uint32_t last_id = 0;

  // Owns every live connection. In-flight handlers hold their own reference, so a closed
  // connection is freed when its last handler has run.
  absl::flat_hash_map<uint32_t, ConnectionPtr> connections;
  // Head of a list (Connection::next_same_address) of the live connections to each remote
  // address: two can share one when they reach different local addresses.
  absl::flat_hash_map<NetAddress, Connection*> by_address;
  // Accepted connections per source IP (port 0 in the key).
  absl::flat_hash_map<NetAddress, size_t> inbound_per_ip;
  // TLS: what a new connection to an address verifies the server's certificate against.
  absl::flat_hash_map<NetAddress, std::string> server_names;
  const TransportKind kind;
};

struct TcpTransport::Impl::Connection : std::enable_shared_from_this<Connection> {
  Connection(Impl* impl, tcp::socket s, uint32_t connection_id, const NetAddress& remote_address,
             bool is_inbound)
      : owner(impl),
        id(connection_id),
        remote(remote_address),
        inbound(is_inbound),
        socket(std::move(s)),
        timer(impl->io) {}

  Peer peer() const { return Peer{remote, owner_kind, id}; }

  // Null once the connection is closed. Every completion handler checks it first: the
  // Impl may be gone by then, the Connection is not (the handler holds it).
  Impl* owner;
  const uint32_t id;
  const NetAddress remote;
  const bool inbound;
  TransportKind owner_kind = TransportKind::kTcp;
  // False while an outgoing connection is being established: bytes queue until then.
  bool connected = false;
  tcp::socket socket;
  // The connect timeout, then the idle timeout. Armed once and re-armed from its own
  // handler only, so traffic costs a clock read and no timer operation.
  asio::steady_timer timer;
  TimePoint armed_for;
  TimePoint last_activity;
  TimePoint accepted_at;
  bool received_any = false;
  // When the unfinished message in the buffer began arriving; epoch when there is none.
  TimePoint message_started;
  // Answered 513: reads are discarded, and the connection closes once the answer is out.
  bool closing = false;
  // TLS: the stream over `socket`, and the context it was set up with (kept alive for the
  // connection's life, whatever a reload does). Plain TCP is handshaken from the start.
  std::shared_ptr<const TlsContext> tls_context;
  std::unique_ptr<asio::ssl::stream<tcp::socket&>> tls;
  bool handshaken = true;
  TimePoint handshake_deadline;

  // Received bytes not yet framed are [receive_begin, receive_end).
  std::vector<char> receive;
  size_t receive_begin = 0;
  size_t receive_end = 0;
  // How much of kPing the CRLFs since the last message have matched.
  uint8_t ping_match = 0;

  // Send() appends to `queued`; `writing` belongs to the async_write in flight. Swapping
  // them keeps messages whole and in order, batches what queued meanwhile into one write,
  // and reuses both buffers' capacity.
  std::string queued;
  std::string writing;
  bool write_in_flight = false;

  Connection* prev_same_address = nullptr;
  Connection* next_same_address = nullptr;
};

TcpTransport::TcpTransport(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

TcpTransport::~TcpTransport() { Close(); }

absl::StatusOr<std::unique_ptr<TcpTransport>> TcpTransport::Open(asio::io_context& io,
                                                                 const NetAddress& listen,
                                                                 const TcpOptions& options) {
  // ParseResult::consumed is 32 bits.
  if (options.max_message_bytes == 0 || options.max_message_bytes > (1u << 30))
    return absl::InvalidArgumentError("tcp: max_message_bytes must be in 1..2^30");
  if (options.max_connections == 0 || options.max_connections >= kIdMask)
    return absl::InvalidArgumentError("tcp: max_connections must be in 1..2^24-2");
  auto impl = std::make_shared<Impl>(io, listen, options);
  NetAddress bound;
  absl::StatusOr<int> opened = OpenReusePortSocket(SOCK_STREAM, listen, &bound);
  if (!opened.ok()) return opened.status();
  const int fd = *opened;
  if (::listen(fd, SOMAXCONN) != 0) {
    int error = errno;
    ::close(fd);
    return absl::UnavailableError(
        absl::StrCat("listen tcp ", listen.ToString(), ": ", std::strerror(error)));
  }
  error_code ec;
  impl->acceptor.assign(listen.is_v6() ? tcp::v6() : tcp::v4(), fd, ec);
  if (ec) {
    ::close(fd);
    return absl::InternalError(absl::StrCat("tcp assign: ", ec.message()));
  }
  auto transport = std::unique_ptr<TcpTransport>(new TcpTransport(std::move(impl)));
  transport->local_ = bound;
  return transport;
}

void TcpTransport::Start(StreamHandler* handler) {
  Impl& m = *impl_;
  m.handler = handler;
  if (m.started || m.closed) return;
  m.started = true;
  m.StartAccept();
}

void TcpTransport::Close() {
  if (impl_) impl_->CloseAll();
}

bool TcpTransport::Send(const Peer& to, std::string_view bytes) {
  Impl& m = *impl_;
  if (m.closed) {
    ++m.counters.send_failures;
    return false;
  }
  Impl::Connection* c = nullptr;
  if (to.connection_id != 0) c = m.FindLive(to.connection_id);
  if (c == nullptr) {
    // RFC 3261 18.2.2: when the request's connection is gone, any connection to the same
    // address will do before a new one is opened.
    auto it = m.by_address.find(to.address);
    if (it != m.by_address.end()) c = it->second;
  }
  if (c == nullptr) c = m.Connect(to.address);
  if (c == nullptr) {
    ++m.counters.send_failures;
    return false;
  }
  return m.Enqueue(*c, bytes);
}

void TcpTransport::UpdateOptions(const TcpOptions& options) {
  Impl& m = *impl_;
  const uint32_t base = m.options.connection_id_base;
  std::shared_ptr<const TlsContext> tls = m.options.tls;
  m.options = options;
  m.options.connection_id_base = base;
  // A plain transport stays plain; a TLS one takes the new context, if any.
  m.options.tls = tls && options.tls ? options.tls : tls;
  m.parser = SipParser(ParserLimits{options.max_message_bytes});
}

void TcpTransport::SetServerName(const NetAddress& to, std::string_view host) {
  Impl& m = *impl_;
  if (m.server_names.size() >= kMaxServerNames) m.server_names.clear();
  m.server_names[IpOnly(to)] = std::string(host);
}

size_t TcpTransport::connection_count() const { return impl_->connections.size(); }

const TcpCounters& TcpTransport::counters() const { return impl_->counters; }

// ---------------------------------------------------------------------------------------
// Accepting

void TcpTransport::Impl::StartAccept() {
  acceptor.async_accept([self = shared_from_this()](error_code ec, tcp::socket socket) {
    self->OnAccept(ec, std::move(socket));
  });
}

void TcpTransport::Impl::OnAccept(error_code ec, tcp::socket socket) {
  if (closed) return;
  if (ec) {
    if (ec == asio::error::operation_aborted) return;
    ++counters.accept_errors;
    if (ec == asio::error::no_descriptors || ec == asio::error::no_memory ||
        ec == asio::error::no_buffer_space || ec.value() == ENFILE) {
      accept_backoff.expires_after(kAcceptBackoff);
      accept_backoff.async_wait([self = shared_from_this()](error_code wait_ec) {
        if (!wait_ec && !self->closed) self->StartAccept();
      });
      return;
    }
    StartAccept();  // the peer gave up before we accepted (ECONNABORTED): nothing lasting
    return;
  }
  error_code ignored;
  tcp::endpoint endpoint = socket.remote_endpoint(ignored);
  if (ignored) {
    StartAccept();  // already reset by the peer
    return;
  }
  const NetAddress remote = FromEndpoint(endpoint);
  auto per_ip = inbound_per_ip.find(IpOnly(remote));
  const size_t from_ip = per_ip == inbound_per_ip.end() ? 0 : per_ip->second;
  if (connections.size() >= options.max_connections ||
      from_ip >= options.max_connections_per_source_ip) {
    ++counters.refused_over_limit;
    // Reset rather than FIN: a flood must not leave sockets in TIME_WAIT on our side.
    socket.set_option(asio::socket_base::linger(true, 0), ignored);
    socket.close(ignored);
    StartAccept();
    return;
  }
  // SIP is request/response: Nagle would hold a response back waiting for an ACK.
  socket.set_option(tcp::no_delay(true), ignored);
  ConnectionPtr c = NewConnection(std::move(socket), remote, /*inbound=*/true);
  c->connected = true;
  ++counters.accepted;
  c->last_activity = std::chrono::steady_clock::now();
  c->accepted_at = c->last_activity;
  if (options.tls) {
    StartHandshake(*c, /*server=*/true);
  } else {
    ArmTimer(*c, NextDeadline(*c));
    StartRead(*c);
  }
  StartAccept();
}

void TcpTransport::Impl::StartHandshake(Connection& c, bool server) {
  c.tls_context = options.tls;
  const TlsContext::Impl& ctx = c.tls_context->impl();
  // Asio takes the context by non-const reference but only reads its native handle.
  auto& context = const_cast<asio::ssl::context&>(server ? ctx.server : ctx.client);
  c.tls = std::make_unique<asio::ssl::stream<tcp::socket&>>(c.socket, context);
  c.handshaken = false;
  c.handshake_deadline = std::chrono::steady_clock::now() + options.handshake_timeout;
  if (!server) {
    // RFC 5922 7: the certificate must name the host the request was sent to; an address
    // reached without a name must be named by its IP.
    SSL* ssl = c.tls->native_handle();
    auto name = server_names.find(IpOnly(c.remote));
    if (name != server_names.end()) {
      SSL_set_tlsext_host_name(ssl, name->second.c_str());
      SSL_set1_host(ssl, name->second.c_str());
    } else {
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), c.remote.IpString().c_str());
    }
  }
  ArmTimer(c, NextDeadline(c));
  c.tls->async_handshake(
      server ? asio::ssl::stream_base::server : asio::ssl::stream_base::client,
      [self = c.shared_from_this()](error_code ec) {
        if (Impl* owner = self->owner) owner->OnHandshake(*self, ec);
      });
}

void TcpTransport::Impl::OnHandshake(Connection& c, error_code ec) {
  if (ec) {
    const bool verify = ec.category() == asio::error::get_ssl_category() &&
                        ERR_GET_REASON(static_cast<unsigned long>(ec.value())) ==
                            SSL_R_CERTIFICATE_VERIFY_FAILED;
    ++(verify ? counters.handshake_verify_failures : counters.handshake_errors);
    CloseConnection(c, /*report=*/true);
    return;
  }
  ++counters.handshakes;
  c.handshaken = true;
  c.last_activity = std::chrono::steady_clock::now();
  StartRead(c);
  if (!c.queued.empty()) StartWrite(c);
}

// ---------------------------------------------------------------------------------------
// Connecting

TcpTransport::Impl::Connection* TcpTransport::Impl::Connect(const NetAddress& to) {
  if (connections.size() >= options.max_connections) {
    ++counters.connect_failures;
    return nullptr;
  }
  tcp::socket socket(io);
  error_code ec;
  socket.open(to.is_v6() ? tcp::v6() : tcp::v4(), ec);
  if (ec) {
    ++counters.connect_failures;
    return nullptr;
  }
  error_code ignored;
  socket.set_option(tcp::no_delay(true), ignored);
  if (!listen.is_unspecified() && listen.is_v6() == to.is_v6()) {
    // Leave from the address we listen on, as UDP does, so a multi-homed host's peers see
    // one address. NO_PORT defers the port choice to connect(), which can then share
    // ephemeral ports across destinations.
    int one = 1;
    ::setsockopt(socket.native_handle(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    socket.bind(ToEndpoint(IpOnly(listen)), ec);
    if (ec) {
      ++counters.connect_failures;
      return nullptr;
    }
  }
  ConnectionPtr c = NewConnection(std::move(socket), to, /*inbound=*/false);
  ArmTimer(*c, std::chrono::steady_clock::now() + options.connect_timeout);
  c->socket.async_connect(ToEndpoint(to), [c](error_code connect_ec) {
    if (Impl* owner = c->owner) owner->OnConnect(*c, connect_ec);
  });
  return c.get();
}

void TcpTransport::Impl::OnConnect(Connection& c, error_code ec) {
  if (ec) {
    ++counters.connect_failures;
    CloseConnection(c, /*report=*/true);
    return;
  }
  ++counters.connects;
  c.connected = true;
  // The timer still runs out at the connect deadline; it then measures idleness from here.
  c.last_activity = std::chrono::steady_clock::now();
  if (options.tls) {
    StartHandshake(c, /*server=*/false);
    return;
  }
  StartRead(c);
  if (!c.queued.empty()) StartWrite(c);
}

TcpTransport::Impl::ConnectionPtr TcpTransport::Impl::NewConnection(tcp::socket socket,
                                                                    const NetAddress& remote,
                                                                    bool inbound) {
  auto c = std::make_shared<Connection>(this, std::move(socket), NextId(), remote, inbound);
  c->owner_kind = kind;
  c->receive.resize(std::min(kInitialReceiveBytes, options.max_message_bytes + 1));
  connections.emplace(c->id, c);
  Connection*& head = by_address[remote];
  c->next_same_address = head;
  if (head != nullptr) head->prev_same_address = c.get();
  head = c.get();
  if (inbound) ++inbound_per_ip[IpOnly(remote)];
  return c;
}

uint32_t TcpTransport::Impl::NextId() {
  // Terminates: max_connections < 2^24 - 1, so some id in the shard's range is free.
  const uint32_t base = options.connection_id_base & ~kIdMask;
  for (;;) {
    last_id = (last_id + 1) & kIdMask;
    if (last_id == 0) continue;  // 0 means "no connection" in Peer
    const uint32_t id = base | last_id;
    if (!connections.contains(id)) return id;
  }
}

TcpTransport::Impl::Connection* TcpTransport::Impl::FindLive(uint32_t id) {
  auto it = connections.find(id);
  return it == connections.end() ? nullptr : it->second.get();
}

// ---------------------------------------------------------------------------------------
// Receiving

void TcpTransport::Impl::StartRead(Connection& c) {
  auto buffer = asio::buffer(c.receive.data() + c.receive_end, c.receive.size() - c.receive_end);
  auto on_read = [self = c.shared_from_this()](error_code ec, size_t bytes) {
    if (Impl* owner = self->owner) owner->OnRead(*self, ec, bytes);
  };
  if (c.tls)
    c.tls->async_read_some(buffer, std::move(on_read));
  else
    c.socket.async_read_some(buffer, std::move(on_read));
}

void TcpTransport::Impl::OnRead(Connection& c, error_code ec, size_t bytes) {
  if (ec) {
    // EOF or reset. Whatever part of a message was buffered dies with the connection.
    CloseConnection(c, /*report=*/true);
    return;
  }
  // The handler may close the transport, or drop its last reference, from a callback.
  std::shared_ptr<Impl> keep_alive = shared_from_this();
  counters.bytes_received += bytes;
  const TimePoint now = std::chrono::steady_clock::now();
  c.last_activity = now;
  c.received_any = true;
  if (c.closing) {
    // Answered 513: what follows is the oversized body, read and thrown away so that the
    // peer's window stays open and our answer is not lost to a reset.
    StartRead(c);
    return;
  }
  c.receive_end += bytes;
  const size_t delivered = Frame(c);
  if (delivered > 0 && handler != nullptr && !closed) handler->OnBatchEnd();
  if (c.owner == nullptr || c.closing) return;
  // A message still unfinished has until message_timeout from its first byte.
  if (c.receive_begin == c.receive_end) {
    c.message_started = TimePoint{};
  } else if (delivered > 0 || c.message_started == TimePoint{}) {
    c.message_started = now;
    if (c.message_started + options.message_timeout < c.armed_for)
      ArmTimer(c, c.message_started + options.message_timeout);
  }

  // Keep the unframed tail at the front so the next read appends to it.
  if (c.receive_begin == c.receive_end) {
    c.receive_begin = c.receive_end = 0;
  } else if (c.receive_begin > 0) {
    std::memmove(c.receive.data(), c.receive.data() + c.receive_begin,
                 c.receive_end - c.receive_begin);
    c.receive_end -= c.receive_begin;
    c.receive_begin = 0;
  }
  if (c.receive_end == c.receive.size()) {
    const size_t cap = options.max_message_bytes + 1;
    if (c.receive.size() >= cap) {
      // The parser reports kTooLarge before a pending message fills max_message_bytes + 1,
      // so this is unreachable; closing beats reading into a zero-length buffer forever.
      ++counters.framing_errors;
      CloseConnection(c, /*report=*/true);
      return;
    }
    c.receive.resize(std::min(cap, c.receive.size() * 2));
  }
  StartRead(c);
}

size_t TcpTransport::Impl::Frame(Connection& c) {
  size_t delivered = 0;
  while (c.owner != nullptr) {
    const char* data = c.receive.data();
    // CRLFs between messages: keep-alives (RFC 3261 7.5). A double CRLF is an RFC 5626
    // ping, answered with one CRLF. Stripped here rather than by the parser so that a ping
    // split across reads, or followed at once by a message, is still answered.
    while (c.receive_begin < c.receive_end &&
           (data[c.receive_begin] == '\r' || data[c.receive_begin] == '\n')) {
      const char ch = data[c.receive_begin++];
      if (ch != kPing[c.ping_match]) {
        c.ping_match = ch == '\r' ? 1 : 0;
        continue;
      }
      if (++c.ping_match < 4) continue;
      c.ping_match = 0;
      ++counters.pongs_sent;
      if (!Enqueue(c, kPong)) return delivered;
    }
    if (c.receive_begin == c.receive_end) break;
    c.ping_match = 0;
    const std::string_view input(data + c.receive_begin, c.receive_end - c.receive_begin);
    const ParseResult result = parser.Parse(input, Framing::kStream, &message);
    if (result.status == ParseStatus::kIncomplete) break;
    if (result.status == ParseStatus::kKeepAlive) {  // not reached: CRLFs were stripped
      c.receive_begin += result.consumed;
      continue;
    }
    if (result.status != ParseStatus::kComplete) {
      // kMalformed or kTooLarge: without a trustworthy Content-Length the next message's
      // start cannot be found, so the stream is unusable.
      ++counters.framing_errors;
      if (!AnswerTooLarge(c, result)) CloseConnection(c, /*report=*/true);
      break;
    }
    ++counters.messages_received;
    ++delivered;
    const std::string_view bytes = input.substr(0, result.consumed);
    c.receive_begin += result.consumed;
    // The view stays valid through the call: the handler may close the connection, but
    // the receive buffer lives as long as the Connection, which our caller holds.
    if (handler != nullptr) handler->OnStreamMessage(bytes, c.peer());
  }
  return delivered;
}

// ---------------------------------------------------------------------------------------
// Sending

bool TcpTransport::Impl::Enqueue(Connection& c, std::string_view bytes) {
  if (c.queued.size() + c.writing.size() + bytes.size() > options.max_write_queue_bytes) {
    ++counters.write_overflow;
    ++counters.send_failures;
    CloseConnection(c, /*report=*/true);
    return false;
  }
  c.queued.append(bytes.data(), bytes.size());
  if (c.connected && c.handshaken && !c.write_in_flight) StartWrite(c);
  return true;
}

void TcpTransport::Impl::StartWrite(Connection& c) {
  c.writing.swap(c.queued);
  c.write_in_flight = true;
  auto on_write = [self = c.shared_from_this()](error_code ec, size_t bytes) {
    if (Impl* owner = self->owner) owner->OnWrite(*self, ec, bytes);
  };
  if (c.tls)
    asio::async_write(*c.tls, asio::buffer(c.writing), std::move(on_write));
  else
    asio::async_write(c.socket, asio::buffer(c.writing), std::move(on_write));
}

void TcpTransport::Impl::OnWrite(Connection& c, error_code ec, size_t bytes) {
  c.write_in_flight = false;
  counters.bytes_sent += bytes;
  if (ec) {
    CloseConnection(c, /*report=*/true);
    return;
  }
  c.writing.clear();
  c.last_activity = std::chrono::steady_clock::now();
  if (!c.queued.empty()) {
    StartWrite(c);
  } else if (c.closing && !c.tls) {
    // The 513 is out: FIN now; the peer's close (or the message deadline) ends it. Over
    // TLS the deadline alone does, since a TCP FIN under it would truncate the stream.
    error_code ignored;
    c.socket.shutdown(tcp::socket::shutdown_send, ignored);
  }
}

bool TcpTransport::Impl::AnswerTooLarge(Connection& c, const ParseResult& result) {
  if (result.status != ParseStatus::kTooLarge || result.problem.response_code == 0 ||
      !message.is_request() || message.method() == Method::kAck || message.via_count() == 0)
    return false;
  char buffer[8192];
  MessageWriter writer(buffer, sizeof(buffer));
  if (!WriteProblemResponse(message, result.problem, {}, writer) || writer.overflowed())
    return false;
  ++counters.oversized_answered;
  c.closing = true;
  c.receive_begin = c.receive_end = 0;
  c.message_started = std::chrono::steady_clock::now();
  ArmTimer(c, c.message_started + options.message_timeout);
  return Enqueue(c, writer.view());
}

// ---------------------------------------------------------------------------------------
// Timers and closing

void TcpTransport::Impl::ArmTimer(Connection& c, TimePoint at) {
  c.armed_for = at;
  c.timer.expires_at(at);
  c.timer.async_wait([self = c.shared_from_this()](error_code ec) {
    if (ec) return;  // cancelled: only CloseConnection cancels
    if (Impl* owner = self->owner) owner->OnTimer(*self);
  });
}

void TcpTransport::Impl::OnTimer(Connection& c) {
  if (!c.connected) {
    ++counters.connect_failures;
    CloseConnection(c, /*report=*/true);
    return;
  }
  const TimePoint now = std::chrono::steady_clock::now();
  if (!c.handshaken && now >= c.handshake_deadline) {
    ++counters.handshake_timeouts;
    CloseConnection(c, /*report=*/true);
    return;
  }
  if (c.inbound && !c.received_any && now >= c.accepted_at + options.first_byte_timeout) {
    ++counters.first_byte_timeouts;
    CloseConnection(c, /*report=*/true);
    return;
  }
  if (c.message_started != TimePoint{} && now >= c.message_started + options.message_timeout) {
    ++counters.message_timeouts;
    CloseConnection(c, /*report=*/true);
    return;
  }
  if (now >= c.last_activity + options.idle_timeout) {
    ++counters.idle_closed;
    CloseConnection(c, /*report=*/true);
    return;
  }
  ArmTimer(c, NextDeadline(c));
}

TimePoint TcpTransport::Impl::NextDeadline(const Connection& c) const {
  TimePoint deadline = c.last_activity + options.idle_timeout;
  if (!c.handshaken) deadline = std::min(deadline, c.handshake_deadline);
  if (c.inbound && !c.received_any)
    deadline = std::min(deadline, c.accepted_at + options.first_byte_timeout);
  if (c.message_started != TimePoint{})
    deadline = std::min(deadline, c.message_started + options.message_timeout);
  return deadline;
}

void TcpTransport::Impl::CloseConnection(Connection& c, bool report) {
  if (c.owner == nullptr) return;
  ConnectionPtr keep_alive = c.shared_from_this();
  c.owner = nullptr;
  error_code ignored;
  // Pending operations complete with operation_aborted and find `owner` null. The buffers
  // they use stay alive with the Connection their handlers hold.
  c.socket.close(ignored);
  c.timer.cancel();

  if (c.prev_same_address != nullptr) {
    c.prev_same_address->next_same_address = c.next_same_address;
  } else {
    auto it = by_address.find(c.remote);
    if (it != by_address.end() && it->second == &c) {
      if (c.next_same_address != nullptr)
        it->second = c.next_same_address;
      else
        by_address.erase(it);
    }
  }
  if (c.next_same_address != nullptr) c.next_same_address->prev_same_address = c.prev_same_address;
  c.prev_same_address = c.next_same_address = nullptr;

  if (c.inbound) {
    auto it = inbound_per_ip.find(IpOnly(c.remote));
    if (it != inbound_per_ip.end() && --it->second == 0) inbound_per_ip.erase(it);
  }
  connections.erase(c.id);

  if (report && !closed && (!c.queued.empty() || !c.writing.empty())) {
    ++counters.send_failures;
    // Posted, not called: this may run inside the handler's own Send().
    asio::post(io, [self = shared_from_this(), peer = c.peer()] {
      if (!self->closed && self->handler != nullptr) self->handler->OnSendFailure(peer);
    });
  }
}

void TcpTransport::Impl::CloseAll() {
  if (closed) return;
  closed = true;
  error_code ignored;
  acceptor.close(ignored);
  accept_backoff.cancel();
  // Closing erases from the map: close from a copy.
  auto all = std::move(connections);
  connections.clear();
  for (auto& [id, c] : all) CloseConnection(*c, /*report=*/false);
  by_address.clear();
  inbound_per_ip.clear();
}

}  // namespace b2bua::proto
