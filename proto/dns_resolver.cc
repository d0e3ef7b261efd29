#include "proto/dns_resolver.h"

#include <ares.h>
#include <arpa/nameser.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstring>
#include <deque>
#include <list>
#include <mutex>
#include <tuple>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace b2bua::proto {
namespace {

namespace asio = boost::asio;

constexpr uint16_t kSipPort = 5060;
constexpr uint16_t kSipsPort = 5061;
// Bounds on the work one Resolve() may cause, so that a hostile or broken zone cannot
// make a shard issue hundreds of queries for one request.
constexpr size_t kMaxNaptrRecords = 8;
constexpr size_t kMaxSrvTargets = 16;
constexpr int kMaxAddressesPerAnswer = 32;
constexpr size_t kMaxNameLength = 253;
// A UDP socket is drained by c-ares itself; a TCP one is read one message per call.
constexpr int kMaxDrainRounds = 16;
// RFC 6891 recommends this EDNS payload size to avoid IP fragmentation; big NAPTR and SRV
// answers then rarely fall back to TCP.
constexpr int kEdnsPayloadSize = 1232;

// The outcome of one (name, type) query, as cached.
enum class LookupStatus : uint8_t { kOk, kNoData, kNxDomain, kTimeout, kError };

struct NaptrRecord {
  uint16_t order = 0;
  uint16_t preference = 0;
  std::string flags;
  std::string service;
  std::string replacement;
  bool has_regexp = false;
};

struct RecordSet {
  LookupStatus status = LookupStatus::kError;
  std::vector<NetAddress> addresses;  // A or AAAA, port 0
  std::vector<SrvRecord> srv;         // as received; ordered per Resolve()
  std::vector<NaptrRecord> naptr;     // sorted by order, then preference
};
using RecordSetPtr = std::shared_ptr<const RecordSet>;
using LookupCallback = absl::AnyInvocable<void(const RecordSetPtr&)>;

struct CacheKey {
  std::string name;  // lower case, no trailing dot
  uint16_t type = 0;

  friend bool operator==(const CacheKey&, const CacheKey&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const CacheKey& key) {
    return H::combine(std::move(h), key.name, key.type);
  }
};

char LowerAscii(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (LowerAscii(a[i]) != LowerAscii(b[i])) return false;
  }
  return true;
}

// Lower-cases and drops one trailing dot, so that "Example.COM." and "example.com" share a
// cache entry. Empty when `host` cannot be a DNS name.
std::string NormalizeName(std::string_view host) {
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);
  if (host.empty() || host.size() > kMaxNameLength) return {};
  std::string name;
  name.reserve(host.size());
  for (char c : host) {
    // Control bytes, blanks and the URI delimiters never belong in a host name; c-ares
    // would accept some of them and send nonsense to the server.
    if (static_cast<unsigned char>(c) <= ' ' || c == '[' || c == ']' || c == '/' || c == '@' ||
        c == ':' || c == ';' || c == '\x7f') {
      return {};
    }
    name.push_back(LowerAscii(c));
  }
  return name;
}

// Walks a DNS message far enough to read TTLs; c-ares 1.18 parses SRV and NAPTR records
// without them. Every read is bounds-checked: the bytes come from the network.
class DnsReader {
 public:
  DnsReader(const unsigned char* data, int length)
      : data_(data), length_(length > 0 ? static_cast<size_t>(length) : 0) {}

  bool ReadU16(uint16_t* out) {
    if (pos_ + 2 > length_) return false;
    *out = static_cast<uint16_t>((data_[pos_] << 8) | data_[pos_ + 1]);
    pos_ += 2;
    return true;
  }
  bool ReadU32(uint32_t* out) {
    if (pos_ + 4 > length_) return false;
    *out = (static_cast<uint32_t>(data_[pos_]) << 24) |
           (static_cast<uint32_t>(data_[pos_ + 1]) << 16) |
           (static_cast<uint32_t>(data_[pos_ + 2]) << 8) | static_cast<uint32_t>(data_[pos_ + 3]);
    pos_ += 4;
    return true;
  }
  bool Skip(size_t n) {
    if (pos_ + n > length_) return false;
    pos_ += n;
    return true;
  }
  // Skips a possibly compressed name; a pointer ends it, so loops cannot happen here.
  bool SkipName() {
    for (int labels = 0; labels < 128; ++labels) {
      if (pos_ >= length_) return false;
      uint8_t len = data_[pos_];
      if (len == 0) {
        ++pos_;
        return true;
      }
      if ((len & 0xC0) == 0xC0) return Skip(2);
      if ((len & 0xC0) != 0) return false;
      if (!Skip(1u + len)) return false;
    }
    return false;
  }
  size_t pos() const { return pos_; }

 private:
  const unsigned char* data_;
  size_t length_;
  size_t pos_ = 0;
};

// RFC 2181 8: a TTL with the top bit set is treated as zero.
uint32_t SaneTtl(uint32_t ttl) { return (ttl & 0x80000000u) ? 0 : ttl; }

struct MessageTtls {
  std::optional<uint32_t> answer;    // min TTL over the answer section
  std::optional<uint32_t> negative;  // RFC 2308: min(SOA TTL, SOA MINIMUM) from authority
};

MessageTtls ScanTtls(const unsigned char* abuf, int alen) {
  MessageTtls ttls;
  if (abuf == nullptr) return ttls;
  DnsReader reader(abuf, alen);
  uint16_t id, flags, qdcount, ancount, nscount, arcount;
  if (!reader.ReadU16(&id) || !reader.ReadU16(&flags) || !reader.ReadU16(&qdcount) ||
      !reader.ReadU16(&ancount) || !reader.ReadU16(&nscount) || !reader.ReadU16(&arcount)) {
    return ttls;
  }
  for (uint16_t i = 0; i < qdcount; ++i) {
    if (!reader.SkipName() || !reader.Skip(4)) return ttls;
  }
  for (uint32_t i = 0; i < static_cast<uint32_t>(ancount) + nscount; ++i) {
    uint16_t type, rclass, rdlength;
    uint32_t ttl;
    if (!reader.SkipName() || !reader.ReadU16(&type) || !reader.ReadU16(&rclass) ||
        !reader.ReadU32(&ttl) || !reader.ReadU16(&rdlength)) {
      return ttls;
    }
    size_t rdata_end = reader.pos() + rdlength;
    ttl = SaneTtl(ttl);
    if (i < ancount) {
      ttls.answer = ttls.answer ? std::min(*ttls.answer, ttl) : ttl;
    } else if (type == ns_t_soa) {
      uint32_t serial, refresh, retry, expire, minimum;
      if (reader.SkipName() && reader.SkipName() && reader.ReadU32(&serial) &&
          reader.ReadU32(&refresh) && reader.ReadU32(&retry) && reader.ReadU32(&expire) &&
          reader.ReadU32(&minimum)) {
        ttls.negative = std::min(ttl, SaneTtl(minimum));
      }
      return ttls;
    }
    if (reader.pos() > rdata_end || !reader.Skip(rdata_end - reader.pos())) return ttls;
  }
  return ttls;
}

NetAddress AddressFromV4(const in_addr& ip) {
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr = ip;
  return NetAddress::FromSockaddr(reinterpret_cast<const sockaddr*>(&sin), sizeof(sin));
}

NetAddress AddressFromV6(const ares_in6_addr& ip) {
  sockaddr_in6 sin6{};
  sin6.sin6_family = AF_INET6;
  static_assert(sizeof(sin6.sin6_addr) == sizeof(ip));
  std::memcpy(&sin6.sin6_addr, &ip, sizeof(ip));
  return NetAddress::FromSockaddr(reinterpret_cast<const sockaddr*>(&sin6), sizeof(sin6));
}

std::string CopyString(const unsigned char* s) {
  return s == nullptr ? std::string() : std::string(reinterpret_cast<const char*>(s));
}

// Parses a successful answer of `type`. Sets `*ttl` (seconds) from the records.
// Returns kNoData when the answer holds no record of the type (e.g. only a CNAME).
LookupStatus ParseRecords(uint16_t type, const unsigned char* abuf, int alen, RecordSet* set,
                          uint32_t* ttl) {
  if (type == ns_t_a) {
    ares_addrttl ttls[kMaxAddressesPerAnswer];
    int count = kMaxAddressesPerAnswer;
    int rc = ares_parse_a_reply(abuf, alen, nullptr, ttls, &count);
    if (rc == ARES_ENODATA || (rc == ARES_SUCCESS && count == 0)) return LookupStatus::kNoData;
    if (rc != ARES_SUCCESS) return LookupStatus::kError;
    *ttl = UINT32_MAX;
    for (int i = 0; i < count; ++i) {
      set->addresses.push_back(AddressFromV4(ttls[i].ipaddr));
      *ttl = std::min(*ttl, SaneTtl(static_cast<uint32_t>(std::max(ttls[i].ttl, 0))));
    }
    return LookupStatus::kOk;
  }
  if (type == ns_t_aaaa) {
    ares_addr6ttl ttls[kMaxAddressesPerAnswer];
    int count = kMaxAddressesPerAnswer;
    int rc = ares_parse_aaaa_reply(abuf, alen, nullptr, ttls, &count);
    if (rc == ARES_ENODATA || (rc == ARES_SUCCESS && count == 0)) return LookupStatus::kNoData;
    if (rc != ARES_SUCCESS) return LookupStatus::kError;
    *ttl = UINT32_MAX;
    for (int i = 0; i < count; ++i) {
      set->addresses.push_back(AddressFromV6(ttls[i].ip6addr));
      *ttl = std::min(*ttl, SaneTtl(static_cast<uint32_t>(std::max(ttls[i].ttl, 0))));
    }
    return LookupStatus::kOk;
  }
  if (type == ns_t_srv) {
    ares_srv_reply* head = nullptr;
    int rc = ares_parse_srv_reply(abuf, alen, &head);
    if (rc == ARES_ENODATA) return LookupStatus::kNoData;
    if (rc != ARES_SUCCESS) return LookupStatus::kError;
    for (ares_srv_reply* r = head; r != nullptr; r = r->next) {
      SrvRecord record;
      record.target = NormalizeName(r->host == nullptr ? "" : r->host);
      record.priority = r->priority;
      record.weight = r->weight;
      record.port = r->port;
      set->srv.push_back(std::move(record));
    }
    ares_free_data(head);
    if (set->srv.empty()) return LookupStatus::kNoData;
  } else if (type == ns_t_naptr) {
    ares_naptr_reply* head = nullptr;
    int rc = ares_parse_naptr_reply(abuf, alen, &head);
    if (rc == ARES_ENODATA) return LookupStatus::kNoData;
    if (rc != ARES_SUCCESS) return LookupStatus::kError;
    for (ares_naptr_reply* r = head; r != nullptr; r = r->next) {
      NaptrRecord record;
      record.order = r->order;
      record.preference = r->preference;
      record.flags = CopyString(r->flags);
      record.service = CopyString(r->service);
      record.has_regexp = r->regexp != nullptr && r->regexp[0] != '\0';
      record.replacement = NormalizeName(r->replacement == nullptr ? "" : r->replacement);
      set->naptr.push_back(std::move(record));
    }
    ares_free_data(head);
    if (set->naptr.empty()) return LookupStatus::kNoData;
    std::stable_sort(set->naptr.begin(), set->naptr.end(),
                     [](const NaptrRecord& a, const NaptrRecord& b) {
                       return a.order != b.order ? a.order < b.order : a.preference < b.preference;
                     });
  } else {
    return LookupStatus::kError;
  }
  MessageTtls ttls = ScanTtls(abuf, alen);
  *ttl = ttls.answer.value_or(0);
  return LookupStatus::kOk;
}

// Maps a NAPTR service field (RFC 3263 4.1) to a transport; false for services a SIP
// client over UDP/TCP/TLS cannot use (SCTP, WebSocket, ...).
bool ServiceTransport(std::string_view service, TransportKind* transport, bool* tls) {
  if (EqualsIgnoreCase(service, "SIP+D2U")) {
    *transport = TransportKind::kUdp;
    *tls = false;
    return true;
  }
  if (EqualsIgnoreCase(service, "SIP+D2T")) {
    *transport = TransportKind::kTcp;
    *tls = false;
    return true;
  }
  if (EqualsIgnoreCase(service, "SIPS+D2T")) {
    *transport = TransportKind::kTcp;
    *tls = true;
    return true;
  }
  return false;
}

}  // namespace

std::string_view ResolveStatusName(ResolveStatus status) {
  switch (status) {
    case ResolveStatus::kOk:
      return "OK";
    case ResolveStatus::kNotFound:
      return "NOT_FOUND";
    case ResolveStatus::kTimeout:
      return "TIMEOUT";
    case ResolveStatus::kError:
      return "ERROR";
  }
  return "UNKNOWN";
}

void OrderSrvRecords(std::vector<SrvRecord>* records, std::mt19937_64& rng) {
  std::vector<SrvRecord>& in = *records;
  // Servers may rotate the records of an answer; sorting on every field first makes the
  // draw depend on the RNG alone, so a seeded resolver is reproducible.
  std::sort(in.begin(), in.end(), [](const SrvRecord& a, const SrvRecord& b) {
    return std::tie(a.priority, a.target, a.port, a.weight) <
           std::tie(b.priority, b.target, b.port, b.weight);
  });
  std::vector<SrvRecord> out;
  out.reserve(in.size());
  std::vector<SrvRecord> group;
  for (size_t begin = 0; begin < in.size();) {
    size_t end = begin;
    while (end < in.size() && in[end].priority == in[begin].priority) ++end;
    group.assign(std::make_move_iterator(in.begin() + begin),
                 std::make_move_iterator(in.begin() + end));
    // RFC 2782: weight-0 records go first, so that a draw of 0 picks them; they win only
    // that rare draw while heavier records remain.
    std::stable_partition(group.begin(), group.end(),
                          [](const SrvRecord& r) { return r.weight == 0; });
    while (!group.empty()) {
      uint64_t total = 0;
      for (const SrvRecord& r : group) total += r.weight;
      uint64_t draw = std::uniform_int_distribution<uint64_t>(0, total)(rng);
      size_t pick = group.size() - 1;
      uint64_t running = 0;
      for (size_t i = 0; i < group.size(); ++i) {
        running += group[i].weight;
        if (running >= draw) {
          pick = i;
          break;
        }
      }
      out.push_back(std::move(group[pick]));
      group.erase(group.begin() + static_cast<std::ptrdiff_t>(pick));
    }
    begin = end;
  }
  *records = std::move(out);
}

class SipResolver::Impl : public std::enable_shared_from_this<Impl> {
 public:
  Impl(asio::io_context& io, const Clock& clock, SipResolverOptions options)
      : io_(io),
        clock_(clock),
        options_(std::move(options)),
        rng_(options_.random_seed != 0 ? options_.random_seed : std::random_device{}()),
        timer_(io) {}

  ~Impl() { Shutdown(); }

  absl::Status Init();
  void Shutdown();
  void Resolve(std::string_view host, uint16_t port, std::optional<TransportKind> transport,
               bool sips, ResolveCallback cb);

  const ResolverCounters& counters() const { return counters_; }
  size_t cache_size() const { return cache_index_.size(); }

 private:
  class Resolution;

  // A ResolveCallback and its result, waiting to be called.
  struct Completion {
    ResolveCallback cb;
    ResolvedTargets result;
  };

  // One c-ares socket watched by Asio. Handlers hold it by shared_ptr because c-ares may
  // close the fd, and reuse the number for a new socket, while their waits are queued.
  struct SocketWatch {
    explicit SocketWatch(asio::io_context& io, ares_socket_t socket) : descriptor(io), fd(socket) {}
    asio::posix::stream_descriptor descriptor;
    ares_socket_t fd;
    bool want_read = false;
    bool want_write = false;
    bool read_armed = false;
    bool write_armed = false;
    bool closed = false;  // c-ares is done with the fd; the descriptor no longer holds it
  };

  // One query sent to c-ares, shared by every lookup of the same (name, type) made while it
  // is in flight. Owned by in_flight_; c-ares holds a raw pointer as its callback arg.
  struct InFlight {
    Impl* impl = nullptr;
    CacheKey key;
    std::vector<LookupCallback> waiters;
  };

  struct CacheEntry {
    CacheKey key;
    TimePoint expires;
    RecordSetPtr records;
  };

  // Answers (name, type) from the cache, from a query in flight, or from a new query.
  // `cb` may run before Lookup returns (cache hit, or c-ares failing the query at once),
  // and otherwise runs inside ares_process_fd; it must not call user code.
  void Lookup(const std::string& name, uint16_t type, LookupCallback cb);
  static void OnAresAnswer(void* arg, int status, int timeouts, unsigned char* abuf, int alen);
  void CompleteFlight(InFlight* flight, int status, const unsigned char* abuf, int alen);

  RecordSetPtr CacheFind(const CacheKey& key);
  void CacheInsert(const CacheKey& key, RecordSetPtr records, Duration ttl);

  static void OnSocketStateThunk(void* data, ares_socket_t fd, int readable, int writable);
  void OnSocketState(ares_socket_t fd, bool readable, bool writable);
  void ArmRead(const std::shared_ptr<SocketWatch>& watch);
  void ArmWrite(const std::shared_ptr<SocketWatch>& watch);
  void OnSocketReady(const std::shared_ptr<SocketWatch>& watch, bool readable);
  void CloseWatch(SocketWatch& watch);
  void RearmTimer();
  void OnTimer();

  // Called by a Resolution when it is done; destroys it.
  void Complete(Resolution* resolution, ResolvedTargets result);
  void DrainCompletions();

  asio::io_context& io_;
  const Clock& clock_;
  const SipResolverOptions options_;
  std::mt19937_64 rng_;
  ares_channel channel_ = nullptr;
  bool shut_down_ = false;
  // True while inside ares_process_fd: the caller re-arms the timer once it returns, so
  // queries started from c-ares callbacks need not each do it.
  bool in_ares_ = false;

  absl::flat_hash_map<ares_socket_t, std::shared_ptr<SocketWatch>> watches_;
  asio::steady_timer timer_;  // c-ares retries and timeouts; real time, not the Clock
  uint64_t timer_generation_ = 0;

  absl::flat_hash_map<CacheKey, std::unique_ptr<InFlight>> in_flight_;
  absl::flat_hash_map<Resolution*, std::unique_ptr<Resolution>> resolutions_;
  // Completed resolutions whose callbacks wait for DrainCompletions(); kept here rather
  // than in posted handlers so that destroying the resolver destroys them.
  std::deque<Completion> ready_;
  bool drain_posted_ = false;

  std::list<CacheEntry> lru_;  // front = most recently used
  absl::flat_hash_map<CacheKey, std::list<CacheEntry>::iterator> cache_index_;

  ResolverCounters counters_;
};

// One Resolve() in progress: a small state machine over the RFC 3263 steps. Each step
// issues its lookups as one batch and continues when the last one has answered.
class SipResolver::Impl::Resolution {
 public:
  Resolution(Impl* impl, std::string host, uint16_t port, std::optional<TransportKind> transport,
             bool sips, ResolveCallback cb)
      : impl_(impl),
        host_(std::move(host)),
        port_(port),
        transport_(transport),
        sips_(sips),
        cb_(std::move(cb)) {}

  void Start() {
    const TransportKind default_transport =
        sips_ ? TransportKind::kTcp : transport_.value_or(TransportKind::kUdp);
    if (port_ != 0) {
      // RFC 3263 4.2: an explicit port means A/AAAA only.
      StartHost(port_, default_transport, sips_);
      return;
    }
    if (transport_.has_value()) {
      const char* prefix = sips_                                      ? "_sips._tcp."
                           : default_transport == TransportKind::kUdp ? "_sip._udp."
                                                                      : "_sip._tcp.";
      fallback_transport_ = default_transport;
      fallback_tls_ = sips_;
      StartSrv({SrvQuery{absl::StrCat(prefix, host_), default_transport, sips_}});
      return;
    }
    StartNaptr();
  }

  ResolveCallback TakeCallback() { return std::move(cb_); }

  // Points at the caller's slot while Resolve() is still on the stack, so that a result
  // available at once is handed back to it rather than posted.
  std::optional<Completion>* sync_out = nullptr;

 private:
  struct SrvQuery {
    std::string name;
    TransportKind transport;
    bool tls;
  };
  struct Target {
    std::string name;
    uint16_t port;
    TransportKind transport;
    bool tls;
  };
  using Step = void (Resolution::*)();

  // Batches: pending_ starts at 1 so that lookups answered at once (cache hits) cannot
  // finish the batch before every lookup of it has been issued.
  void BeginBatch(Step on_done) {
    on_done_ = on_done;
    pending_ = 1;
  }
  void Add(const std::string& name, uint16_t type, RecordSetPtr* slot) {
    ++pending_;
    impl_->Lookup(name, type, [this, slot](const RecordSetPtr& records) {
      *slot = records;
      Arrive();
    });
  }
  void EndBatch() { Arrive(); }
  // May destroy `this` (through Finish): callers return right after.
  void Arrive() {
    if (--pending_ == 0) (this->*on_done_)();
  }

  void StartNaptr() {
    BeginBatch(&Resolution::OnNaptrDone);
    Add(host_, ns_t_naptr, &naptr_);
    EndBatch();
  }

  void OnNaptrDone() {
    if (naptr_->status == LookupStatus::kTimeout) return Finish(ResolveStatus::kTimeout);
    if (naptr_->status == LookupStatus::kError) return Finish(ResolveStatus::kError);
    std::vector<SrvQuery> queries;
    for (const NaptrRecord& record : naptr_->naptr) {
      if (queries.size() == kMaxNaptrRecords) break;
      TransportKind transport;
      bool tls;
      // Only "S" records lead to SRV (RFC 3263 4.1); regexp rewriting is not used by SIP.
      if (!EqualsIgnoreCase(record.flags, "s") || record.has_regexp) continue;
      if (!ServiceTransport(record.service, &transport, &tls)) continue;
      if (sips_ && !tls) continue;  // a SIPS URI may only use SIPS+D2T
      if (record.replacement.empty()) continue;
      bool seen = std::any_of(queries.begin(), queries.end(), [&](const SrvQuery& q) {
        return q.name == record.replacement && q.transport == transport && q.tls == tls;
      });
      if (!seen) queries.push_back(SrvQuery{record.replacement, transport, tls});
    }
    if (queries.empty()) {
      // No usable NAPTR: RFC 3263 4.1 says query SRV for each supported transport.
      if (sips_) {
        queries.push_back(SrvQuery{absl::StrCat("_sips._tcp.", host_), TransportKind::kTcp, true});
      } else {
        queries.push_back(SrvQuery{absl::StrCat("_sip._udp.", host_), TransportKind::kUdp, false});
        queries.push_back(SrvQuery{absl::StrCat("_sip._tcp.", host_), TransportKind::kTcp, false});
      }
    }
    fallback_transport_ = queries.front().transport;
    fallback_tls_ = queries.front().tls;
    StartSrv(std::move(queries));
  }

  void StartSrv(std::vector<SrvQuery> queries) {
    srv_queries_ = std::move(queries);
    srv_results_.assign(srv_queries_.size(), nullptr);
    BeginBatch(&Resolution::OnSrvDone);
    for (size_t i = 0; i < srv_queries_.size(); ++i) {
      Add(srv_queries_[i].name, ns_t_srv, &srv_results_[i]);
    }
    EndBatch();
  }

  void OnSrvDone() {
    bool any_records = false;
    for (size_t i = 0; i < srv_queries_.size(); ++i) {
      const RecordSet& set = *srv_results_[i];
      if (set.status != LookupStatus::kOk) continue;
      any_records = true;
      // Order per Resolve(), not per cached answer, so that weights spread the load.
      std::vector<SrvRecord> ordered = set.srv;
      OrderSrvRecords(&ordered, impl_->rng_);
      for (SrvRecord& record : ordered) {
        // A target of "." says the service is decidedly not available (RFC 2782).
        if (record.target.empty() || targets_.size() == kMaxSrvTargets) continue;
        targets_.push_back(Target{std::move(record.target), record.port, srv_queries_[i].transport,
                                  srv_queries_[i].tls});
      }
    }
    if (!targets_.empty()) return StartTargets();
    if (any_records) return Finish(ResolveStatus::kNotFound);
    ResolveStatus failure = FailureOf(srv_results_);
    if (failure != ResolveStatus::kNotFound) return Finish(failure);
    // RFC 3263 4.2: no SRV records, so use the host's A/AAAA on the default port.
    StartHost(fallback_tls_ ? kSipsPort : kSipPort, fallback_transport_, fallback_tls_);
  }

  void StartTargets() {
    target_results_.assign(targets_.size() * 2, nullptr);
    BeginBatch(&Resolution::OnTargetsDone);
    for (size_t i = 0; i < targets_.size(); ++i) {
      Add(targets_[i].name, ns_t_a, &target_results_[2 * i]);
      if (impl_->options_.query_ipv6) Add(targets_[i].name, ns_t_aaaa, &target_results_[2 * i + 1]);
    }
    EndBatch();
  }

  void OnTargetsDone() {
    for (size_t i = 0; i < targets_.size(); ++i) {
      const Target& t = targets_[i];
      AppendAddresses(target_results_[2 * i], target_results_[2 * i + 1], t.port, t.transport,
                      t.tls);
    }
    if (!result_.targets.empty()) return Finish(ResolveStatus::kOk);
    Finish(FailureOf(target_results_));
  }

  void StartHost(uint16_t port, TransportKind transport, bool tls) {
    host_port_ = port;
    host_transport_ = transport;
    host_tls_ = tls;
    host_results_.assign(2, nullptr);
    BeginBatch(&Resolution::OnHostDone);
    Add(host_, ns_t_a, &host_results_[0]);
    if (impl_->options_.query_ipv6) Add(host_, ns_t_aaaa, &host_results_[1]);
    EndBatch();
  }

  void OnHostDone() {
    AppendAddresses(host_results_[0], host_results_[1], host_port_, host_transport_, host_tls_);
    if (!result_.targets.empty()) return Finish(ResolveStatus::kOk);
    Finish(FailureOf(host_results_));
  }

  // Adds one host's addresses, kept together, in the configured family order.
  void AppendAddresses(const RecordSetPtr& v4, const RecordSetPtr& v6, uint16_t port,
                       TransportKind transport, bool tls) {
    const RecordSetPtr& first = impl_->options_.prefer_ipv6 ? v6 : v4;
    const RecordSetPtr& second = impl_->options_.prefer_ipv6 ? v4 : v6;
    for (const RecordSetPtr* set : {&first, &second}) {
      if (*set == nullptr || (*set)->status != LookupStatus::kOk) continue;
      for (NetAddress address : (*set)->addresses) {
        address.set_port(port);
        ResolvedTarget target{address, transport, tls};
        // Two SRV records naming one host and port would otherwise be tried twice.
        if (std::find(result_.targets.begin(), result_.targets.end(), target) ==
            result_.targets.end()) {
          result_.targets.push_back(target);
        }
      }
    }
  }

  // Why a set of lookups produced nothing: a silent server outranks a failing one, and
  // both outrank "no such record" (a retry may succeed; a NXDOMAIN will not).
  static ResolveStatus FailureOf(const std::vector<RecordSetPtr>& results) {
    bool error = false;
    for (const RecordSetPtr& set : results) {
      if (set == nullptr) continue;
      if (set->status == LookupStatus::kTimeout) return ResolveStatus::kTimeout;
      if (set->status == LookupStatus::kError) error = true;
    }
    return error ? ResolveStatus::kError : ResolveStatus::kNotFound;
  }

  // Destroys `this`.
  void Finish(ResolveStatus status) {
    result_.status = status;
    if (status != ResolveStatus::kOk) result_.targets.clear();
    impl_->Complete(this, std::move(result_));
  }

  Impl* impl_;
  const std::string host_;
  const uint16_t port_;
  const std::optional<TransportKind> transport_;
  const bool sips_;
  ResolveCallback cb_;

  Step on_done_ = nullptr;
  int pending_ = 0;

  RecordSetPtr naptr_;
  std::vector<SrvQuery> srv_queries_;
  std::vector<RecordSetPtr> srv_results_;
  TransportKind fallback_transport_ = TransportKind::kUdp;
  bool fallback_tls_ = false;
  std::vector<Target> targets_;
  std::vector<RecordSetPtr> target_results_;  // [2i] = A, [2i+1] = AAAA of targets_[i]
  std::vector<RecordSetPtr> host_results_;    // A, AAAA
  uint16_t host_port_ = 0;
  TransportKind host_transport_ = TransportKind::kUdp;
  bool host_tls_ = false;

  ResolvedTargets result_;
};

absl::Status SipResolver::Impl::Init() {
  static std::once_flag once;
  static int library_status = ARES_SUCCESS;
  std::call_once(once, [] { library_status = ares_library_init(ARES_LIB_INIT_ALL); });
  if (library_status != ARES_SUCCESS) {
    return absl::InternalError(absl::StrCat("ares_library_init: ", ares_strerror(library_status)));
  }

  std::string servers;
  if (!options_.dns_server.empty()) {
    NetAddress server;
    if (!NetAddress::ParseIpPort(options_.dns_server, &server) || server.port() == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("dns_server is not IP:PORT: \"", options_.dns_server, "\""));
    }
    // c-ares wants brackets around IPv6; ToString() writes them.
    servers = server.ToString();
  }
  if (options_.tries < 1) return absl::InvalidArgumentError("tries must be at least 1");
  auto timeout_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(options_.query_timeout).count();
  if (timeout_ms < 1 || timeout_ms > INT32_MAX) {
    return absl::InvalidArgumentError("query_timeout must be between 1 ms and 24 days");
  }

  ares_options ares_opts{};
  int mask = 0;
  ares_opts.flags = ARES_FLAG_EDNS;
  mask |= ARES_OPT_FLAGS;
  ares_opts.ednspsz = kEdnsPayloadSize;
  mask |= ARES_OPT_EDNSPSZ;
  ares_opts.timeout = static_cast<int>(timeout_ms);
  mask |= ARES_OPT_TIMEOUTMS;
  ares_opts.tries = options_.tries;
  mask |= ARES_OPT_TRIES;
  ares_opts.sock_state_cb = &Impl::OnSocketStateThunk;
  ares_opts.sock_state_cb_data = this;
  mask |= ARES_OPT_SOCK_STATE_CB;
  int rc = ares_init_options(&channel_, &ares_opts, mask);
  if (rc != ARES_SUCCESS) {
    channel_ = nullptr;
    return absl::InternalError(absl::StrCat("ares_init_options: ", ares_strerror(rc)));
  }
  if (!servers.empty()) {
    rc = ares_set_servers_ports_csv(channel_, servers.c_str());
    if (rc != ARES_SUCCESS) {
      return absl::InvalidArgumentError(
          absl::StrCat("ares_set_servers_ports_csv(", servers, "): ", ares_strerror(rc)));
    }
  }
  return absl::OkStatus();
}

void SipResolver::Impl::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  if (channel_ != nullptr) {
    // Calls every pending query back with ARES_EDESTRUCTION (ignored: see OnAresAnswer) and
    // reports each socket closed, which releases its descriptor before c-ares closes it.
    ares_destroy(channel_);
    channel_ = nullptr;
  }
  for (auto& [fd, watch] : watches_) CloseWatch(*watch);
  watches_.clear();
  timer_.cancel();
  // Drops, without calling, every waiter and user callback, inside the destructor as the
  // header promises.
  in_flight_.clear();
  resolutions_.clear();
  ready_.clear();
}

void SipResolver::Impl::Resolve(std::string_view host, uint16_t port,
                                std::optional<TransportKind> transport, bool sips,
                                ResolveCallback cb) {
  ++counters_.resolves;
  if (shut_down_) return;
  // A callback called inline may destroy the resolver; keep this object alive until we
  // return.
  std::shared_ptr<Impl> keep_alive = shared_from_this();

  ResolvedTargets result;
  NetAddress address;
  if (NetAddress::ParseIp(host, port != 0 ? port : (sips ? kSipsPort : kSipPort), &address)) {
    // RFC 3263 4.1/4.2: a numeric host needs no DNS; UDP for SIP and TLS for SIPS unless
    // the URI names the transport.
    result.status = ResolveStatus::kOk;
    result.targets.push_back(ResolvedTarget{
        address, sips ? TransportKind::kTcp : transport.value_or(TransportKind::kUdp), sips});
    cb(result);
    return;
  }
  std::string name = NormalizeName(host);
  if (name.empty()) {
    ++counters_.failures;
    result.status = ResolveStatus::kError;
    cb(result);
    return;
  }

  auto owned =
      std::make_unique<Resolution>(this, std::move(name), port, transport, sips, std::move(cb));
  Resolution* resolution = owned.get();
  resolutions_.emplace(resolution, std::move(owned));
  std::optional<Completion> done;
  resolution->sync_out = &done;
  resolution->Start();
  if (!done.has_value()) {
    // Still waiting on the network; it will complete through DrainCompletions().
    resolution->sync_out = nullptr;
    if (!in_ares_) RearmTimer();
    return;
  }
  done->cb(done->result);
}

void SipResolver::Impl::Complete(Resolution* resolution, ResolvedTargets result) {
  if (result.status != ResolveStatus::kOk) ++counters_.failures;
  Completion completion{resolution->TakeCallback(), std::move(result)};
  if (resolution->sync_out != nullptr) {
    *resolution->sync_out = std::move(completion);
  } else {
    // User code never runs inside c-ares (which forbids ares_destroy from its callbacks)
    // nor deep inside our own stack: it runs from a handler of its own.
    ready_.push_back(std::move(completion));
    if (!drain_posted_) {
      drain_posted_ = true;
      asio::post(io_, [weak = weak_from_this()] {
        std::shared_ptr<Impl> self = weak.lock();
        if (self != nullptr && !self->shut_down_) self->DrainCompletions();
      });
    }
  }
  resolutions_.erase(resolution);
}

void SipResolver::Impl::DrainCompletions() {
  drain_posted_ = false;
  // One at a time from the member queue: a callback may destroy the resolver, which must
  // then destroy the callbacks not yet run.
  while (!shut_down_ && !ready_.empty()) {
    Completion completion = std::move(ready_.front());
    ready_.pop_front();
    completion.cb(completion.result);
  }
}

void SipResolver::Impl::Lookup(const std::string& name, uint16_t type, LookupCallback cb) {
  CacheKey key{name, type};
  if (RecordSetPtr hit = CacheFind(key)) {
    ++counters_.cache_hits;
    cb(hit);
    return;
  }
  ++counters_.cache_misses;
  auto it = in_flight_.find(key);
  if (it != in_flight_.end()) {
    ++counters_.coalesced;
    it->second->waiters.push_back(std::move(cb));
    return;
  }
  auto flight = std::make_unique<InFlight>();
  flight->impl = this;
  flight->key = std::move(key);
  flight->waiters.push_back(std::move(cb));
  InFlight* raw = flight.get();
  in_flight_.emplace(raw->key, std::move(flight));
  ++counters_.queries_sent;
  // c-ares may call back before returning (bad name, no servers); `raw` is not touched
  // after this call.
  ares_query(channel_, raw->key.name.c_str(), ns_c_in, type, &Impl::OnAresAnswer, raw);
}

void SipResolver::Impl::OnAresAnswer(void* arg, int status, int /*timeouts*/, unsigned char* abuf,
                                     int alen) {
  auto* flight = static_cast<InFlight*>(arg);
  // On ARES_EDESTRUCTION the resolver is shutting down and owns the waiters it is about to
  // drop; nothing else may be touched.
  if (status == ARES_EDESTRUCTION || status == ARES_ECANCELLED || flight->impl->shut_down_) {
    return;
  }
  flight->impl->CompleteFlight(flight, status, abuf, alen);
}

void SipResolver::Impl::CompleteFlight(InFlight* flight, int status, const unsigned char* abuf,
                                       int alen) {
  auto set = std::make_shared<RecordSet>();
  std::optional<Duration> ttl;  // unset: not cached
  const uint16_t type = flight->key.type;
  auto negative_ttl = [&] {
    MessageTtls ttls = ScanTtls(abuf, alen);
    Duration soa =
        ttls.negative ? Duration(std::chrono::seconds(*ttls.negative)) : options_.negative_ttl;
    return std::min(soa, options_.negative_ttl);
  };
  switch (status) {
    case ARES_SUCCESS: {
      uint32_t seconds = 0;
      set->status = ParseRecords(type, abuf, alen, set.get(), &seconds);
      if (set->status == LookupStatus::kOk) {
        ttl = std::min<Duration>(std::chrono::seconds(seconds), options_.max_ttl);
      } else if (set->status == LookupStatus::kNoData) {
        ttl = negative_ttl();
      } else {
        ++counters_.query_errors;
      }
      break;
    }
    case ARES_ENODATA:
      set->status = LookupStatus::kNoData;
      ttl = negative_ttl();
      break;
    case ARES_ENOTFOUND:
      set->status = LookupStatus::kNxDomain;
      ttl = negative_ttl();
      break;
    case ARES_ETIMEOUT:
    case ARES_ECONNREFUSED:
      // Refused means no server listens on the port: as unreachable as a timeout.
      set->status = LookupStatus::kTimeout;
      ++counters_.query_timeouts;
      break;
    default:
      set->status = LookupStatus::kError;
      ++counters_.query_errors;
      break;
  }
  if (ttl.has_value()) CacheInsert(flight->key, set, *ttl);

  // Take the entry out first: a waiter may look up the same key again.
  auto node = in_flight_.extract(flight->key);
  if (node.empty()) return;  // can't happen: every flight stays in the map until here
  std::unique_ptr<InFlight> owned = std::move(node.mapped());
  RecordSetPtr shared = std::move(set);
  for (LookupCallback& waiter : owned->waiters) waiter(shared);
}

RecordSetPtr SipResolver::Impl::CacheFind(const CacheKey& key) {
  auto it = cache_index_.find(key);
  if (it == cache_index_.end()) return nullptr;
  if (clock_.Now() >= it->second->expires) {
    lru_.erase(it->second);
    cache_index_.erase(it);
    return nullptr;
  }
  lru_.splice(lru_.begin(), lru_, it->second);
  return it->second->records;
}

void SipResolver::Impl::CacheInsert(const CacheKey& key, RecordSetPtr records, Duration ttl) {
  // A TTL of 0 says "use once" (RFC 1035 3.2.1).
  if (options_.cache_entries == 0 || ttl <= Duration::zero()) return;
  const TimePoint expires = clock_.Now() + ttl;
  auto it = cache_index_.find(key);
  if (it != cache_index_.end()) {
    it->second->expires = expires;
    it->second->records = std::move(records);
    lru_.splice(lru_.begin(), lru_, it->second);
    return;
  }
  lru_.push_front(CacheEntry{key, expires, std::move(records)});
  cache_index_.emplace(key, lru_.begin());
  while (lru_.size() > options_.cache_entries) {
    ++counters_.cache_evictions;
    cache_index_.erase(lru_.back().key);
    lru_.pop_back();
  }
}

void SipResolver::Impl::OnSocketStateThunk(void* data, ares_socket_t fd, int readable,
                                           int writable) {
  static_cast<Impl*>(data)->OnSocketState(fd, readable != 0, writable != 0);
}

void SipResolver::Impl::OnSocketState(ares_socket_t fd, bool readable, bool writable) {
  auto it = watches_.find(fd);
  if (!readable && !writable) {
    // c-ares is about to close the fd: stop watching it now, while it is still open.
    if (it != watches_.end()) {
      CloseWatch(*it->second);
      watches_.erase(it);
    }
    return;
  }
  if (shut_down_) return;
  if (it == watches_.end()) {
    auto watch = std::make_shared<SocketWatch>(io_, fd);
    boost::system::error_code ec;
    watch->descriptor.assign(fd, ec);
    // Unwatched, the socket's queries still end, by timeout, through the timer.
    if (ec) return;
    it = watches_.emplace(fd, std::move(watch)).first;
  }
  std::shared_ptr<SocketWatch> watch = it->second;
  watch->want_read = readable;
  watch->want_write = writable;
  ArmRead(watch);
  ArmWrite(watch);
}

void SipResolver::Impl::ArmRead(const std::shared_ptr<SocketWatch>& watch) {
  if (!watch->want_read || watch->read_armed || watch->closed) return;
  watch->read_armed = true;
  watch->descriptor.async_wait(
      asio::posix::stream_descriptor::wait_read,
      [weak = weak_from_this(), watch](const boost::system::error_code& ec) {
        watch->read_armed = false;
        if (ec || watch->closed) return;
        std::shared_ptr<Impl> self = weak.lock();
        if (self == nullptr || self->shut_down_) return;
        self->OnSocketReady(watch, /*readable=*/true);
      });
}

void SipResolver::Impl::ArmWrite(const std::shared_ptr<SocketWatch>& watch) {
  if (!watch->want_write || watch->write_armed || watch->closed) return;
  watch->write_armed = true;
  watch->descriptor.async_wait(
      asio::posix::stream_descriptor::wait_write,
      [weak = weak_from_this(), watch](const boost::system::error_code& ec) {
        watch->write_armed = false;
        if (ec || watch->closed) return;
        std::shared_ptr<Impl> self = weak.lock();
        if (self == nullptr || self->shut_down_) return;
        // A write wait can outlive c-ares' interest in writing (asio cancels only all
        // waits of a descriptor at once); then there is nothing to do.
        if (!watch->want_write) return;
        self->OnSocketReady(watch, /*readable=*/false);
      });
}

void SipResolver::Impl::OnSocketReady(const std::shared_ptr<SocketWatch>& watch, bool readable) {
  const ares_socket_t fd = watch->fd;
  in_ares_ = true;
  if (readable) {
    ares_process_fd(channel_, fd, ARES_SOCKET_BAD);
    // Asio's epoll reactor is edge-triggered: bytes c-ares left unread (it reads one TCP
    // message per call) would raise no new event, so read until the socket is empty.
    for (int round = 0; round < kMaxDrainRounds && !watch->closed; ++round) {
      pollfd pfd{fd, POLLIN, 0};
      if (::poll(&pfd, 1, 0) <= 0 || (pfd.revents & (POLLIN | POLLERR | POLLHUP)) == 0) break;
      ares_process_fd(channel_, fd, ARES_SOCKET_BAD);
    }
  } else {
    ares_process_fd(channel_, ARES_SOCKET_BAD, fd);
  }
  in_ares_ = false;
  ArmRead(watch);
  ArmWrite(watch);
  RearmTimer();
}

void SipResolver::Impl::CloseWatch(SocketWatch& watch) {
  if (watch.closed) return;
  watch.closed = true;
  // release(), not close(): c-ares owns the fd and closes it itself. release() also
  // cancels the pending waits, whose handlers then see `closed`.
  watch.descriptor.release();
}

void SipResolver::Impl::RearmTimer() {
  if (shut_down_ || channel_ == nullptr) return;
  timeval buffer{};
  timeval* next = ares_timeout(channel_, nullptr, &buffer);
  ++timer_generation_;
  if (next == nullptr) {
    timer_.cancel();
    return;
  }
  timer_.expires_after(std::chrono::seconds(next->tv_sec) +
                       std::chrono::microseconds(next->tv_usec));
  timer_.async_wait([weak = weak_from_this(),
                     generation = timer_generation_](const boost::system::error_code& ec) {
    if (ec) return;
    std::shared_ptr<Impl> self = weak.lock();
    // A newer arming supersedes this one even if this expiry was already queued.
    if (self == nullptr || self->shut_down_ || generation != self->timer_generation_) return;
    self->OnTimer();
  });
}

void SipResolver::Impl::OnTimer() {
  in_ares_ = true;
  ares_process_fd(channel_, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
  in_ares_ = false;
  RearmTimer();
}

SipResolver::SipResolver(boost::asio::io_context& io, const Clock& clock,
                         SipResolverOptions options)
    : impl_(std::make_shared<Impl>(io, clock, std::move(options))) {}

SipResolver::~SipResolver() {
  // Other owners are only handlers running right now; they see shut_down_ and stop.
  impl_->Shutdown();
}

absl::StatusOr<std::unique_ptr<SipResolver>> SipResolver::Create(boost::asio::io_context& io,
                                                                 const Clock& clock,
                                                                 SipResolverOptions options) {
  std::unique_ptr<SipResolver> resolver(new SipResolver(io, clock, std::move(options)));
  absl::Status status = resolver->impl_->Init();
  if (!status.ok()) return status;
  return resolver;
}

void SipResolver::Resolve(std::string_view host, uint16_t port,
                          std::optional<TransportKind> transport, bool sips, ResolveCallback cb) {
  impl_->Resolve(host, port, transport, sips, std::move(cb));
}

const ResolverCounters& SipResolver::counters() const { return impl_->counters(); }

size_t SipResolver::cache_size() const { return impl_->cache_size(); }

}  // namespace b2bua::proto
