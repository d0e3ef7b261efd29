#include "b2bua/shard.h"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdio>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "b2bua/call_engine.h"
#include "b2bua/edge_guard.h"
#include "b2bua/log.h"
#include "b2bua/redis_dialog_store.h"
#include "proto/str_util.h"
#include "b2bua/shard_mailbox.h"
#include "proto/dns_resolver.h"
#include "proto/sip_builder.h"
#include "proto/sip_parser.h"
#include "proto/sip_validate.h"
#include "proto/tcp_transport.h"
#include "proto/timer_wheel.h"
#include "proto/transaction.h"
#include "proto/udp_transport.h"

namespace b2bua {

namespace asio = boost::asio;

struct ShardGroup::Rings {
  Rings(size_t shards, size_t capacity) : mailbox(shards, capacity) {}
  ShardMailbox<Envelope> mailbox;
};

/// The engine's view of the shard's RFC 3263 resolver.
// Unix time, for the deadlines the cluster's dialog records carry.
class SystemWallClock final : public WallClock {
 public:
  int64_t NowUnixMs() const override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
};

class ShardResolver final : public TargetResolver {
 public:
  explicit ShardResolver(std::unique_ptr<proto::SipResolver> resolver)
      : resolver_(std::move(resolver)) {}
  void Resolve(std::string_view host, uint16_t port,
               std::optional<proto::TransportKind> transport, bool sips,
               proto::ResolveCallback callback) override {
    resolver_->Resolve(host, port, transport, sips, std::move(callback));
  }
  const proto::ResolverCounters& counters() const { return resolver_->counters(); }

 private:
  std::unique_ptr<proto::SipResolver> resolver_;
};

proto::TcpOptions TcpOptionsFrom(const TcpConfig& config) {
  proto::TcpOptions tcp;
  tcp.max_message_bytes = config.max_message_bytes;
  tcp.max_connections = config.max_connections;
  tcp.max_connections_per_source_ip = config.max_connections_per_source;
  tcp.idle_timeout = config.idle_timeout;
  tcp.first_byte_timeout = config.first_byte_timeout;
  tcp.message_timeout = config.message_timeout;
  tcp.connect_timeout = config.connect_timeout;
  return tcp;
}

/// One shard: a thread, its io_context, its socket, parser, transactions, calls and timers.
/// Every member is touched only by the shard's own thread, except the atomic wake flag.
class Shard final : public proto::DatagramHandler,
                    public proto::StreamHandler,
                    public proto::MessageSink,
                    public TlsServerNames,
                    public RedirectShare {
 public:
  Shard(ShardGroup& group, uint32_t index, std::shared_ptr<const Config> config)
      : group_(group),
        index_(index),
        config_(std::move(config)),
        counters_(std::make_unique<ShardCounters>()),
        timers_(clock_),
        work_(asio::make_work_guard(io_)),
        tick_(io_) {}

  absl::Status Open(const proto::NetAddress& listen) {
    ApplyMessageLimits();
    tls_context_ = group_.options_.tls;
    proto::UdpOptions udp;
    udp.socket_buffer_bytes = static_cast<int>(config_->udp.socket_buffer_bytes);
    udp.max_datagram_bytes = config_->udp.max_datagram_bytes;
    auto transport = proto::UdpTransport::Open(io_, listen, udp);
    if (!transport.ok()) return transport.status();
    udp_ = std::move(*transport);
    proto::TcpOptions tcp = TcpOptionsFrom(config_->tcp);
    tcp.connection_id_base = index_ << 24;
    // The UDP socket may have picked the port (port 0): TCP listens on the same one.
    auto stream = proto::TcpTransport::Open(io_, udp_->local_address(), tcp);
    if (!stream.ok()) return stream.status();
    tcp_ = std::move(*stream);
    if (config_->tls.enabled() && group_.options_.tls) {
      proto::NetAddress tls_listen;
      proto::NetAddress::ParseIpPort(config_->tls.listen, &tls_listen);
      auto secure = proto::TcpTransport::Open(io_, tls_listen, TlsOptions());
      if (!secure.ok()) return secure.status();
      tls_ = std::move(*secure);
    }
    proto::SipResolverOptions dns;
    dns.dns_server = group_.options_.dns_server;
    auto resolver = proto::SipResolver::Create(io_, clock_, dns);
    if (!resolver.ok()) return resolver.status();
    resolver_ = std::make_unique<ShardResolver>(std::move(*resolver));
    ShardContext context;
    context.shard_index = index_;
    context.shard_count = static_cast<uint32_t>(group_.options_.shards);
    context.clock = &clock_;
    context.timers = &timers_;
    context.sink = this;
    context.counters = counters_.get();
    context.local_address = udp_->local_address();
    context.call_records = group_.options_.call_records;
    context.advertised_ip = group_.options_.advertised_ip;
    context.resolver = resolver_.get();
    context.call_limits = group_.call_limits_.get();
    context.redirect_share = this;
    context.token_seed = group_.options_.token_seed;
    if (tls_) {
      context.tls_port = tls_->local_address().port();
      context.tls_names = this;
    }
    if (config_->cluster.enabled()) {
      // One Redis connection per shard, on this shard's io_context.
      const ClusterConfig& cluster = config_->cluster;
      RedisStoreSettings redis;
      proto::NetAddress address;
      proto::NetAddress::ParseIpPort(cluster.redis, &address);
      redis.host = address.IpString();
      redis.port = address.port();
      redis.key_prefix = cluster.key_prefix;
      redis.command_timeout = cluster.redis_timeout;
      store_stats_ = std::make_unique<RedisStoreStats>();
      dialog_store_ = std::make_unique<RedisDialogStore>(io_, redis, store_stats_.get());
      if (absl::Status status = dialog_store_->Start(); !status.ok()) return status;
      context.dialog_store = dialog_store_.get();
      context.wall_clock = &wall_clock_;
      context.instance_id = cluster.instance_id;
      context.boot_epoch = group_.options_.boot_epoch;
      context.front = cluster.front;
    }
    engine_ = std::make_unique<CallEngine>(context, config_);
    proto::TransactionConfig txn;
    txn.t1 = config_->timers.t1;
    txn.t2 = config_->timers.t2;
    txn.t4 = config_->timers.t4;
    transactions_ = std::make_unique<proto::TransactionLayer>(txn, timers_, *this, *engine_);
    engine_->SetTransactionLayer(transactions_.get());
    return absl::OkStatus();
  }

  const proto::NetAddress& local_address() const { return udp_->local_address(); }
  const ShardCounters& counters() const { return *counters_; }
  const ShardCounters* counters_ptr() const { return counters_.get(); }
  /// Safe from any thread (set before the thread starts).
  bool clustered() const { return dialog_store_ != nullptr; }

  /// Shard thread. Runs until Stop().
  void Run() {
    udp_->Start(this);
    tcp_->Start(this);
    if (tls_) tls_->Start(this);
    engine_->StartProbing();
    ArmTick();
    io_.run();
  }

  /// Safe from any thread.
  void Stop() {
    asio::post(io_, [this] {
      udp_->Close();
      tcp_->Close();
      if (tls_) tls_->Close();
      tick_.cancel();
      work_.reset();
      io_.stop();
    });
  }

  /// Safe from any thread.
  void UpdateConfig(std::shared_ptr<const Config> config,
                    std::shared_ptr<const proto::TlsContext> tls) {
    asio::post(io_, [this, config = std::move(config), tls = std::move(tls)]() mutable {
      config_ = config;
      ApplyMessageLimits();
      tcp_->UpdateOptions(TcpOptionsFrom(config_->tcp));
      if (tls_) {
        if (tls) tls_context_ = std::move(tls);
        tls_->UpdateOptions(TlsOptions());
      }
      engine_->SetConfig(std::move(config));
      engine_->StartProbing();
    });
  }

  /// Safe from any thread.
  void StartDraining() {
    asio::post(io_, [this] { engine_->StartDraining(); });
  }

  /// Safe from any thread.
  void EndAllCalls() {
    asio::post(io_, [this] {
      engine_->EndAllCalls();
      EndTurn();
    });
  }

  /// Safe from any thread. Runs DrainInbox on the shard; the mailbox's wake-pending flag
  /// makes sure one wake-up is posted per batch and none is lost.
  void Wake() {
    asio::post(io_, [this] { DrainInbox(); });
  }

  // proto::DatagramHandler
  void OnDatagram(std::string_view bytes, const proto::Peer& source) override {
    counters_->datagrams_received.Inc();
    counters_->bytes_received.Inc(bytes.size());
    proto::ParseResult result = parser_.Parse(bytes, proto::Framing::kDatagram, &message_);
    if (result.status == proto::ParseStatus::kKeepAlive) return;
    if (result.status != proto::ParseStatus::kComplete) {
      counters_->parse_errors[static_cast<size_t>(result.problem.defect)].Inc();
      LogBadInput(source, result.problem.defect);
      AnswerProblem(source, result.problem, {});
      return;
    }
    // Who may use the B2BUA is decided here, before the request reaches another shard or
    // any transaction.
    if (message_.is_request() && !Admit(source)) return;
    const uint32_t owner = ShardForCallId(message_.call_id(), group_.options_.shards);
    if (owner != index_) {
      // Another shard owns this call: pass a copy through the ring.
      if (!group_.Handoff(index_, owner, Envelope{std::string(bytes), source}))
        counters_->datagrams_dropped[static_cast<size_t>(DropReason::kQueueFull)].Inc();
      else
        counters_->handoffs_sent.Inc();
      return;
    }
    Dispatch(source);
  }

  void OnBatchEnd() override { EndTurn(); }

  // proto::StreamHandler
  void OnStreamMessage(std::string_view message, const proto::Peer& source) override {
    OnDatagram(message, source);
  }
  void OnSendFailure(const proto::Peer& to) override {
    transactions_->OnTransportFailure(to);
    EndTurn();
  }

  // proto::MessageSink: every message the shard sends, by transport. A TCP connection
  // belongs to the shard that accepted it; bytes for another shard's connection travel
  // there through the ring.
  bool Send(const proto::Peer& to, std::string_view bytes) override {
    if (to.transport == proto::TransportKind::kUdp) return udp_->Send(to, bytes);
    proto::TcpTransport* stream = StreamFor(to.transport);
    if (stream == nullptr) return false;  // TLS without a TLS listener
    const uint32_t owner = to.connection_id >> 24;
    if (to.connection_id == 0 || owner == index_ || owner >= group_.options_.shards)
      return stream->Send(to, bytes);
    Envelope envelope{std::string(bytes), to, Envelope::Kind::kOutbound};
    if (!group_.Handoff(index_, owner, std::move(envelope))) {
      counters_->datagrams_dropped[static_cast<size_t>(DropReason::kQueueFull)].Inc();
      return false;
    }
    counters_->handoffs_sent.Inc();
    return true;
  }

 // TlsServerNames
  void SetServerName(const proto::NetAddress& address, std::string_view host) override {
    if (tls_) tls_->SetServerName(address, host);
  }

 // RedirectShare: a 301 learned here reaches every other shard through its ring.
  void SharePermanentRedirect(std::string_view request_uri, std::string_view target,
                              proto::TimePoint expires) override {
    for (uint32_t to = 0; to < group_.options_.shards; ++to) {
      if (to == index_) continue;
      Envelope envelope{proto::StrCat(request_uri, "\n", target), proto::Peer{},
                        Envelope::Kind::kPermanentRedirect, expires};
      if (!group_.Handoff(index_, to, std::move(envelope)))
        counters_->datagrams_dropped[static_cast<size_t>(DropReason::kQueueFull)].Inc();
    }
  }

 private:
  proto::TcpTransport* StreamFor(proto::TransportKind transport) {
    return transport == proto::TransportKind::kTls ? tls_.get() : tcp_.get();
  }

  proto::TcpOptions TlsOptions() const {
    proto::TcpOptions options = TcpOptionsFrom(config_->tcp);
    options.connection_id_base = index_ << 24;
    options.tls = tls_context_;
    options.handshake_timeout = config_->tls.handshake_timeout;
    return options;
  }

  // Messages reach the parser from UDP and, already framed, from TCP: it takes the larger
  // of the two limits.
  void ApplyMessageLimits() {
    policy_.max_request_uri_bytes = config_->limits.max_request_uri_bytes;
    const size_t largest =
        std::max<size_t>(config_->udp.max_datagram_bytes, config_->tcp.max_message_bytes);
    parser_ = proto::SipParser(proto::ParserLimits{largest});
    response_buffer_.resize(largest + 1024);
  }

  void Reject(RejectReason reason) {
    counters_->requests_rejected[static_cast<size_t>(reason)].Inc();
  }

  // The edge decides before the request reaches another shard or any transaction.
  bool Admit(const proto::Peer& source) {
    const AccessConfig& access = config_->access;
    switch (edge_.Admit(access, message_, source.address, clock_.Now())) {
      case EdgeVerdict::kAccept:
        return true;
      case EdgeVerdict::kBlockFlood:
        counters_->flood_sources_blocked.Set(edge_.flood().blocked());
        LogFloodBlock(source, access.flood);
        Reject(RejectReason::kFlood);
        return false;
      case EdgeVerdict::kDropFlood:
        Reject(RejectReason::kFlood);
        return false;
      case EdgeVerdict::kDropScanner:
        Reject(RejectReason::kScanner);
        return false;
      case EdgeVerdict::kDropUntrusted:
        Reject(RejectReason::kUntrusted);
        return false;
      case EdgeVerdict::kRejectUntrusted:
        break;
    }
    Reject(RejectReason::kUntrusted);
    proto::MessageWriter writer(response_buffer_.data(), response_buffer_.size());
    proto::WriteStatelessResponse(
        message_, 403, "Forbidden",
        "Reason: SIP;cause=403;text=\"source address not allowed\"\r\n", writer);
    if (!writer.overflowed()) {
      counters_->responses_sent[4].Inc();
      Send(source, writer.view());
    }
    return false;
  }

  // Once per block, in a fixed shape that deploy/fail2ban/b2bua.conf matches; spoofed
  // floods of many sources are capped at a few hundred lines a second.
  void LogFloodBlock(const proto::Peer& source, const FloodSettings& flood) {
    static LogRateLimit limit(200);
    uint64_t suppressed = 0;
    if (!LogEnabled(LogLevel::kWarning) || !limit.Allow(&suppressed)) return;
    WriteLogLine(LogLevel::kWarning,
                 proto::StrCat("flood: blocked source ", source.address.ToString(), " (",
                               proto::TransportName(source.transport), ") for ",
                               flood.block_for.count() / 1000, "s: over ", flood.max_requests,
                               " requests in ", flood.window.count(), "ms"),
                 suppressed);
  }

  void Dispatch(const proto::Peer& source) {
    if (message_.is_request()) {
      std::string_view unsupported;
      proto::Problem problem = proto::ValidateRequest(message_, policy_, &unsupported);
      if (problem.defect != proto::Defect::kNone) {
        counters_->parse_errors[static_cast<size_t>(problem.defect)].Inc();
        if (message_.method() != proto::Method::kAck) AnswerProblem(source, problem, unsupported);
        return;
      }
    } else {
      proto::Problem problem = proto::ValidateResponse(message_);
      if (problem.defect != proto::Defect::kNone) {
        counters_->datagrams_dropped[static_cast<size_t>(DropReason::kBadResponse)].Inc();
        return;
      }
    }
    transactions_->OnMessage(message_, source);
  }

  // Bad input is logged, but a flood of it writes at most a few lines a second.
  void LogBadInput(const proto::Peer& source, proto::Defect defect) {
    static LogRateLimit limit(5);
    uint64_t suppressed = 0;
    if (!LogEnabled(LogLevel::kWarning) || !limit.Allow(&suppressed)) return;
    WriteLogLine(LogLevel::kWarning,
                 proto::StrCat("malformed message from ", source.address.ToString(), " (",
                               proto::TransportName(source.transport),
                               "): ", proto::DefectText(defect)),
                 suppressed);
  }

  void AnswerProblem(const proto::Peer& source, const proto::Problem& problem,
                     std::string_view unsupported) {
    if (!message_.is_request() || message_.method() == proto::Method::kAck) {
      counters_->datagrams_dropped[static_cast<size_t>(DropReason::kUnparsable)].Inc();
      return;
    }
    proto::MessageWriter writer(response_buffer_.data(), response_buffer_.size());
    if (!proto::WriteProblemResponse(message_, problem, unsupported, writer) ||
        writer.overflowed()) {
      counters_->datagrams_dropped[static_cast<size_t>(DropReason::kUnparsable)].Inc();
      return;
    }
    counters_->responses_sent[problem.response_code / 100].Inc();
    Send(source, writer.view());
  }

  void DrainInbox() {
    group_.rings_->mailbox.Drain(
        index_,
        [this](Envelope&& envelope) {
          // Not a message: a handoff counts messages only, as Handoff() callers do.
          if (envelope.kind == Envelope::Kind::kPermanentRedirect) {
            const size_t split = envelope.bytes.find('\n');
            std::string_view text = envelope.bytes;
            engine_->LearnPermanentRedirect(text.substr(0, split), text.substr(split + 1),
                                            envelope.expires);
            return;
          }
          counters_->handoffs_received.Inc();
          if (envelope.kind == Envelope::Kind::kOutbound) {
            if (proto::TcpTransport* stream = StreamFor(envelope.source.transport))
              stream->Send(envelope.source, envelope.bytes);
            return;
          }
          proto::ParseResult result =
              parser_.Parse(envelope.bytes, proto::Framing::kDatagram, &message_);
          if (result.status == proto::ParseStatus::kComplete) Dispatch(envelope.source);
        },
        256);
    const size_t left = group_.rings_->mailbox.DepthApprox(index_);
    counters_->handoff_queue_depth.Set(left);
    EndTurn();
    // A bounded drain leaves the rest for the next turn, so timers and sockets get a go.
    if (left > 0) asio::post(io_, [this] { DrainInbox(); });
  }

  void ArmTick() {
    tick_.expires_after(timers_.tick());
    tick_.async_wait([this](boost::system::error_code ec) {
      if (ec) return;
      timers_.Advance();
      SweepFloodTable();
      EndTurn();
      ArmTick();
    });
  }

  // The dialog store's counters (cluster mode).
  void PublishStoreCounters() {
    if (store_stats_ == nullptr) return;
    const RedisStoreStats& stats = *store_stats_;
    const auto load = [](const std::atomic<uint64_t>& v) {
      return v.load(std::memory_order_relaxed);
    };
    counters_->store_disconnected.Set(load(stats.connected) == 0 ? 1 : 0);
    counters_->store_reconnects.Set(load(stats.reconnects));
    for (size_t i = 0; i < counters_->store_failures.size(); ++i)
      counters_->store_failures[i].Set(stats.failure(static_cast<StoreFailure>(i)));
    for (size_t i = 0; i < stats.round_trip_buckets.size(); ++i)
      counters_->store_round_trip_seconds.SetBucket(i, load(stats.round_trip_buckets[i]));
    counters_->store_round_trip_seconds.SetSumMicro(load(stats.round_trip_sum_us));
  }

  // Counters of the stream transports and the resolver.
  void PublishStreamAndDnsCounters() {
    const proto::ResolverCounters& dns = resolver_->counters();
    counters_->dns_resolves.Set(dns.resolves);
    counters_->dns_queries_sent.Set(dns.queries_sent);
    counters_->dns_cache_hits.Set(dns.cache_hits);
    counters_->dns_cache_misses.Set(dns.cache_misses);
    counters_->dns_query_timeouts.Set(dns.query_timeouts);
    counters_->dns_query_errors.Set(dns.query_errors);
    counters_->dns_failures.Set(dns.failures);
    PublishStreamCounters();
  }

  // The stream transports' counters, by transport; closes summed over both.
  void PublishStreamCounters() {
    proto::TcpCounters sum;
    for (proto::TcpTransport* stream : {tcp_.get(), tls_.get()}) {
      if (stream == nullptr) continue;
      const size_t t = stream == tls_.get() ? kTlsIndex : kTcpIndex;
      const proto::TcpCounters& c = stream->counters();
      counters_->stream_connections[t].Set(stream->connection_count());
      counters_->stream_accepted[t].Set(c.accepted);
      counters_->stream_refused[t].Set(c.refused_over_limit);
      sum.idle_closed += c.idle_closed;
      sum.first_byte_timeouts += c.first_byte_timeouts;
      sum.message_timeouts += c.message_timeouts;
      sum.framing_errors += c.framing_errors;
      sum.write_overflow += c.write_overflow;
    }
    auto closed = [&](ConnectionClose reason, uint64_t value) {
      counters_->stream_closed[static_cast<size_t>(reason)].Set(value);
    };
    closed(ConnectionClose::kIdle, sum.idle_closed);
    closed(ConnectionClose::kFirstByteTimeout, sum.first_byte_timeouts);
    closed(ConnectionClose::kMessageTimeout, sum.message_timeouts);
    closed(ConnectionClose::kFramingError, sum.framing_errors);
    closed(ConnectionClose::kWriteOverflow, sum.write_overflow);
    if (tls_) {
      const proto::TcpCounters& c = tls_->counters();
      counters_->tls_handshakes.Set(c.handshakes);
      auto failed = [&](HandshakeFailure reason, uint64_t value) {
        counters_->tls_handshakes_failed[static_cast<size_t>(reason)].Set(value);
      };
      failed(HandshakeFailure::kTimeout, c.handshake_timeouts);
      failed(HandshakeFailure::kVerify, c.handshake_verify_failures);
      failed(HandshakeFailure::kError, c.handshake_errors);
    }
  }

  // Once a window: forget idle sources and lift blocks that ran out, so the gauge falls
  // even when the blocked source has gone quiet.
  void SweepFloodTable() {
    const proto::TimePoint now = clock_.Now();
    if (now < next_flood_sweep_) return;
    const FloodSettings& flood = config_->access.flood;
    edge_.flood().Sweep(now, flood);
    next_flood_sweep_ = now + flood.window;
    counters_->flood_sources_blocked.Set(edge_.flood().blocked());
    counters_->flood_requests_untracked.Set(edge_.flood().untracked());
  }

  // Work that batches: free ended calls, publish counters, flush queued datagrams.
  void EndTurn() {
    engine_->CollectEndedCalls();
    const proto::TransactionCounters& t = transactions_->counters();
    counters_->transactions_server_created.Set(t.server_created);
    counters_->transactions_client_created.Set(t.client_created);
    counters_->retransmissions_absorbed.Set(t.retransmissions_absorbed);
    counters_->retransmissions_sent.Set(t.retransmissions_sent +
                                        counters_->core_retransmissions_sent.Get());
    counters_->transaction_timeouts.Set(t.timeouts);
    counters_->transactions_active.Set(transactions_->size());
    const proto::UdpCounters& u = udp_->counters();
    counters_->datagrams_dropped[static_cast<size_t>(DropReason::kOversized)].Set(
        u.dropped_oversized);
    counters_->datagrams_dropped[static_cast<size_t>(DropReason::kSendFailed)].Set(
        u.send_failures);
    PublishStreamAndDnsCounters();
    PublishStoreCounters();
    udp_->Flush();
  }

  ShardGroup& group_;
  const uint32_t index_;
  std::shared_ptr<const Config> config_;
  std::unique_ptr<ShardCounters> counters_;
  proto::SteadyClock clock_;
  proto::TimerWheel timers_;
  asio::io_context io_{1};
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  asio::steady_timer tick_;
  std::unique_ptr<proto::UdpTransport> udp_;
  std::unique_ptr<proto::TcpTransport> tcp_;
  std::unique_ptr<proto::TcpTransport> tls_;  // null without a tls: section
  std::shared_ptr<const proto::TlsContext> tls_context_;
  std::unique_ptr<ShardResolver> resolver_;
  std::unique_ptr<CallEngine> engine_;
  std::unique_ptr<proto::TransactionLayer> transactions_;
  // Cluster mode. Declared after the engine, so destroyed before it: the store drops its
  // callbacks into the engine when it goes.
  SystemWallClock wall_clock_;
  std::unique_ptr<RedisStoreStats> store_stats_;
  std::unique_ptr<RedisDialogStore> dialog_store_;
  proto::SipParser parser_;
  proto::SipMessage message_;
  proto::RequestPolicy policy_{""};
  EdgeGuard edge_;
  proto::TimePoint next_flood_sweep_{};
  // Stateless answers echo every Via of the request: as large as a message may be.
  std::vector<char> response_buffer_;
};

ShardGroup::ShardGroup(ShardGroupOptions options) : options_(std::move(options)) {
  if (options_.shards == 0) options_.shards = 1;
}

ShardGroup::~ShardGroup() { Stop(); }

absl::Status ShardGroup::Start(std::shared_ptr<const Config> config) {
  rings_ = std::make_unique<Rings>(options_.shards, options_.ring_capacity);
  proto::NetAddress listen = options_.listen;
  for (uint32_t i = 0; i < options_.shards; ++i) {
    auto shard = std::make_unique<Shard>(*this, i, config);
    absl::Status status = shard->Open(listen);
    if (!status.ok()) return status;
    // With port 0 the first shard picks the port; the others join it (SO_REUSEPORT).
    listen = shard->local_address();
    shards_.push_back(std::move(shard));
  }
  local_address_ = listen;
  running_ = true;
  for (auto& shard : shards_) threads_.emplace_back([s = shard.get()] { s->Run(); });
  return absl::OkStatus();
}

void ShardGroup::Stop() {
  if (!running_.exchange(false)) return;
  for (auto& shard : shards_) shard->Stop();
  for (auto& thread : threads_) thread.join();
  threads_.clear();
}

void ShardGroup::StartDraining() {
  for (auto& shard : shards_) shard->StartDraining();
}

void ShardGroup::EndAllCalls() {
  for (auto& shard : shards_) shard->EndAllCalls();
}

void ShardGroup::UpdateConfig(std::shared_ptr<const Config> config,
                              std::shared_ptr<const proto::TlsContext> tls) {
  for (auto& shard : shards_) shard->UpdateConfig(config, tls);
}

uint64_t ShardGroup::ActiveCalls() const {
  uint64_t total = 0;
  for (const auto& shard : shards_) total += shard->counters().calls_active.Get();
  return total;
}

bool ShardGroup::StoresConnected() const {
  for (const auto& shard : shards_)
    if (shard->clustered() && shard->counters().store_disconnected.Get() != 0) return false;
  return true;
}

std::vector<const ShardCounters*> ShardGroup::counters() const {
  std::vector<const ShardCounters*> out;
  for (const auto& shard : shards_) out.push_back(shard->counters_ptr());
  return out;
}

bool ShardGroup::Handoff(uint32_t from, uint32_t to, Envelope&& envelope) {
  bool wake_owner = false;
  if (!rings_->mailbox.Post(from, to, std::move(envelope), &wake_owner)) return false;
  if (wake_owner) shards_[to]->Wake();
  return true;
}

}  // namespace b2bua
