#include "metrics/exporter.h"

#include <array>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <limits>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "prometheus/client_metric.h"
#include "prometheus/gauge.h"
#include "prometheus/metric_type.h"
#include "prometheus/text_serializer.h"
#include "proto/sip_message.h"

namespace b2bua::metrics {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

// The exporter walks the enum-indexed arrays by index, so a new enumerator must also get a
// label name; these catch an array and its enum drifting apart.
static_assert(ShardCounters::kMethods == static_cast<size_t>(proto::Method::kUpdate) + 1);
static_assert(ShardCounters::kDefects == static_cast<size_t>(proto::Defect::kRequestUriTooLong) + 1);

MetricFamily NewFamily(const char* name, const char* help, MetricType type) {
  MetricFamily family;
  family.name = name;
  family.help = help;
  family.type = type;
  return family;
}

std::vector<ClientMetric::Label> OneLabel(const char* name, std::string_view value) {
  return {ClientMetric::Label{name, std::string(value)}};
}

void AddCounter(MetricFamily& family, uint64_t value, std::vector<ClientMetric::Label> labels = {}) {
  ClientMetric metric;
  metric.label = std::move(labels);
  metric.counter.value = static_cast<double>(value);
  family.metric.push_back(std::move(metric));
}

void AddGauge(MetricFamily& family, double value, std::vector<ClientMetric::Label> labels = {}) {
  ClientMetric metric;
  metric.label = std::move(labels);
  metric.gauge.value = value;
  family.metric.push_back(std::move(metric));
}

// Gauges are Counters driven by Inc/Dec. A Dec without its Inc (a bug) wraps the uint64 to
// ~1.8e19, which would wreck every graph and sum; read as signed it shows as a small
// negative number that points at the bug instead.
double GaugeValue(const Counter& gauge) {
  return static_cast<double>(static_cast<int64_t>(gauge.Get()));
}

std::string_view MethodLabel(proto::Method method) {
  if (method == proto::Method::kUnknown) return "other";
  std::string_view name = proto::MethodName(method);
  return name.empty() ? std::string_view("other") : name;
}

class Summer {
 public:
  explicit Summer(const std::vector<const ShardCounters*>& shards) : shards_(shards) {}

  template <typename Get>
  uint64_t Sum(Get get) const {
    uint64_t total = 0;
    for (const ShardCounters* shard : shards_) total += get(*shard).Get();
    return total;
  }

  // One counter family per enum-indexed array: labels come from `name(index)`, values
  // are summed across shards. `first` skips slots that are never written (index 0 of the
  // status classes, Defect::kNone).
  template <size_t N, typename Name>
  void AddArray(MetricFamily& family, std::array<Counter, N> ShardCounters::*member,
                const char* label, size_t first, Name name) const {
    for (size_t i = first; i < N; ++i) {
      uint64_t total = 0;
      for (const ShardCounters* shard : shards_) total += ((*shard).*member)[i].Get();
      AddCounter(family, total, OneLabel(label, name(i)));
    }
  }

  template <size_t N>
  void AddHistogram(MetricFamily& family, FixedHistogram<N> ShardCounters::*member) const {
    std::array<uint64_t, N + 1> buckets{};  // non-cumulative, index N is +Inf
    uint64_t sum_micro = 0;
    for (const ShardCounters* shard : shards_) {
      const FixedHistogram<N>& histogram = (*shard).*member;
      for (size_t i = 0; i <= N; ++i) buckets[i] += histogram.bucket(i);
      sum_micro += histogram.sum_micro();
    }
    // Every shard uses the same bounds (they are the member's initializer).
    const std::array<double, N>& bounds = ((*shards_.front()).*member).bounds();

    ClientMetric metric;
    uint64_t cumulative = 0;
    metric.histogram.bucket.reserve(N + 1);
    for (size_t i = 0; i <= N; ++i) {
      cumulative += buckets[i];
      ClientMetric::Bucket bucket;
      bucket.cumulative_count = cumulative;
      bucket.upper_bound = i < N ? bounds[i] : std::numeric_limits<double>::infinity();
      metric.histogram.bucket.push_back(bucket);
    }
    // _count is the +Inf bucket by definition; deriving it from the same reads keeps the
    // two equal even while shards keep observing.
    metric.histogram.sample_count = cumulative;
    metric.histogram.sample_sum = static_cast<double>(sum_micro) / 1e6;
    family.metric.push_back(std::move(metric));
  }

 private:
  const std::vector<const ShardCounters*>& shards_;
};

}  // namespace

std::string_view DefectLabel(proto::Defect defect) {
  using proto::Defect;
  // Named after the enumerator rather than snake_casing DefectText(): that text is prose
  // for reason phrases ("Content-Length missing on a stream transport") and may be
  // reworded, while a label value must stay short and stable for dashboards.
  switch (defect) {
    case Defect::kNone: return {};
    case Defect::kBadStartLine: return "bad_start_line";
    case Defect::kBadMethod: return "bad_method";
    case Defect::kBadRequestUri: return "bad_request_uri";
    case Defect::kBadVersion: return "bad_version";
    case Defect::kBadStatusCode: return "bad_status_code";
    case Defect::kBadHeaderName: return "bad_header_name";
    case Defect::kBadHeaderValue: return "bad_header_value";
    case Defect::kDuplicateHeader: return "duplicate_header";
    case Defect::kTooManyHeaders: return "too_many_headers";
    case Defect::kTooManyValues: return "too_many_values";
    case Defect::kBadContentLength: return "bad_content_length";
    case Defect::kBodyTruncated: return "body_truncated";
    case Defect::kMissingContentLength: return "missing_content_length";
    case Defect::kNoEmptyLine: return "no_empty_line";
    case Defect::kMessageTooLarge: return "message_too_large";
    case Defect::kMissingHeader: return "missing_header";
    case Defect::kCSeqMethodMismatch: return "cseq_method_mismatch";
    case Defect::kMethodNotImplemented: return "method_not_implemented";
    case Defect::kUnsupportedUriScheme: return "unsupported_uri_scheme";
    case Defect::kTooManyHops: return "too_many_hops";
    case Defect::kUnsupportedExtension: return "unsupported_extension";
    case Defect::kBadBranch: return "bad_branch";
    case Defect::kBadAddressOfRecord: return "bad_address_of_record";
    case Defect::kRequestUriTooLong: return "request_uri_too_long";
  }
  return "other";
}

ShardCountersCollectable::ShardCountersCollectable(std::vector<const ShardCounters*> shards)
    : shards_(std::move(shards)) {
  shard_labels_.reserve(shards_.size());
  for (size_t i = 0; i < shards_.size(); ++i) shard_labels_.push_back(std::to_string(i));
}

std::vector<MetricFamily> ShardCountersCollectable::Collect() const {
  std::vector<MetricFamily> out;
  if (shards_.empty()) return out;
  out.reserve(32);
  const Summer s(shards_);
  auto add = [&out](MetricFamily family) { out.push_back(std::move(family)); };

  // Per-shard gauges: one series per shard, so an imbalanced shard stands out.
  auto per_shard = [&](const char* name, const char* help, const Counter ShardCounters::*member) {
    MetricFamily family = NewFamily(name, help, MetricType::Gauge);
    for (size_t i = 0; i < shards_.size(); ++i)
      AddGauge(family, GaugeValue((*shards_[i]).*member), OneLabel("shard", shard_labels_[i]));
    add(std::move(family));
  };
  auto summed = [&](const char* name, const char* help, const Counter ShardCounters::*member) {
    MetricFamily family = NewFamily(name, help, MetricType::Counter);
    AddCounter(family, s.Sum([member](const ShardCounters& c) -> const Counter& { return c.*member; }));
    add(std::move(family));
  };
  auto method_name = [](size_t i) { return MethodLabel(static_cast<proto::Method>(i)); };
  auto class_name = [](size_t i) { return std::string(1, static_cast<char>('0' + i)) + "xx"; };

  // SIP traffic.
  {
    MetricFamily f = NewFamily("b2bua_sip_requests_received_total",
                               "SIP requests received, by method (unknown methods as \"other\").",
                               MetricType::Counter);
    s.AddArray(f, &ShardCounters::requests_received, "method", 0, method_name);
    add(std::move(f));
  }
  {
    MetricFamily f = NewFamily("b2bua_sip_requests_sent_total",
                               "SIP requests sent, by method, retransmissions excluded.",
                               MetricType::Counter);
    s.AddArray(f, &ShardCounters::requests_sent, "method", 0, method_name);
    add(std::move(f));
  }
  {
    MetricFamily f = NewFamily("b2bua_sip_responses_received_total",
                               "SIP responses received, by status class.", MetricType::Counter);
    s.AddArray(f, &ShardCounters::responses_received, "class", 1, class_name);
    add(std::move(f));
  }
  {
    MetricFamily f = NewFamily("b2bua_sip_responses_sent_total",
                               "SIP responses sent, by status class.", MetricType::Counter);
    s.AddArray(f, &ShardCounters::responses_sent, "class", 1, class_name);
    add(std::move(f));
  }
  {
    MetricFamily f = NewFamily("b2bua_sip_parse_errors_total",
                               "SIP messages rejected by the parser or request validator, by defect.",
                               MetricType::Counter);
    s.AddArray(f, &ShardCounters::parse_errors, "reason", 1,
               [](size_t i) { return DefectLabel(static_cast<proto::Defect>(i)); });
    add(std::move(f));
  }
  {
    MetricFamily f = NewFamily("b2bua_datagrams_dropped_total",
                               "Datagrams dropped without being processed, by reason.",
                               MetricType::Counter);
    s.AddArray(f, &ShardCounters::datagrams_dropped, "reason", 0,
               [](size_t i) { return DropReasonName(static_cast<DropReason>(i)); });
    add(std::move(f));
  }
  summed("b2bua_datagrams_received_total", "Datagrams received on the SIP transports.",
         &ShardCounters::datagrams_received);
  summed("b2bua_received_bytes_total", "Bytes received on the SIP transports.",
         &ShardCounters::bytes_received);

  // Stream connections, by transport.
  auto by_transport = [&](const char* name, const char* help, MetricType type,
                          const std::array<Counter, 2> ShardCounters::*member) {
    MetricFamily f = NewFamily(name, help, type);
    for (size_t t : {kTcpIndex, kTlsIndex}) {
      const double value = static_cast<double>(
          s.Sum([member, t](const ShardCounters& c) -> const Counter& { return (c.*member)[t]; }));
      const auto label = OneLabel("transport", t == kTlsIndex ? "tls" : "tcp");
      if (type == MetricType::Gauge)
        AddGauge(f, value, label);
      else
        AddCounter(f, static_cast<uint64_t>(value), label);
    }
    add(std::move(f));
  };
  by_transport("b2bua_connections", "Open stream connections, by transport.", MetricType::Gauge,
               &ShardCounters::stream_connections);
  by_transport("b2bua_connections_accepted_total", "Stream connections accepted, by transport.",
               MetricType::Counter, &ShardCounters::stream_accepted);
  by_transport("b2bua_connections_refused_total",
               "Stream connections refused at accept for the connection limits "
               "(tcp.max_connections, tcp.max_connections_per_source), by transport.",
               MetricType::Counter, &ShardCounters::stream_refused);
  {
    MetricFamily f = NewFamily("b2bua_connections_closed_total",
                               "TCP and TLS connections the B2BUA closed, by reason.",
                               MetricType::Counter);
    s.AddArray(f, &ShardCounters::stream_closed, "reason", 0,
               [](size_t i) { return ConnectionCloseName(static_cast<ConnectionClose>(i)); });
    add(std::move(f));
  }
  summed("b2bua_tls_handshakes_total", "TLS handshakes completed, both directions.",
         &ShardCounters::tls_handshakes);
  {
    MetricFamily f = NewFamily("b2bua_tls_handshakes_failed_total",
                               "TLS handshakes that failed, by reason: timeout, verify (the "
                               "peer's certificate), error (anything else).",
                               MetricType::Counter);
    s.AddArray(f, &ShardCounters::tls_handshakes_failed, "reason", 0,
               [](size_t i) { return HandshakeFailureName(static_cast<HandshakeFailure>(i)); });
    add(std::move(f));
  }

  // RFC 3263 resolution.
  summed("b2bua_dns_resolutions_total", "Next hops and redirect targets resolved by name.",
         &ShardCounters::dns_resolves);
  summed("b2bua_dns_queries_total", "DNS queries sent (NAPTR, SRV, A, AAAA).",
         &ShardCounters::dns_queries_sent);
  {
    MetricFamily f = NewFamily("b2bua_dns_cache_lookups_total",
                               "DNS cache lookups, by result.", MetricType::Counter);
    AddCounter(f, s.Sum([](const ShardCounters& c) -> const Counter& { return c.dns_cache_hits; }),
               OneLabel("result", "hit"));
    AddCounter(f, s.Sum([](const ShardCounters& c) -> const Counter& { return c.dns_cache_misses; }),
               OneLabel("result", "miss"));
    add(std::move(f));
  }
  {
    MetricFamily f = NewFamily("b2bua_dns_query_failures_total",
                               "DNS queries that ended without an answer (timeout) or with an "
                               "error rcode (error).",
                               MetricType::Counter);
    AddCounter(f, s.Sum([](const ShardCounters& c) -> const Counter& { return c.dns_query_timeouts; }),
               OneLabel("reason", "timeout"));
    AddCounter(f, s.Sum([](const ShardCounters& c) -> const Counter& { return c.dns_query_errors; }),
               OneLabel("reason", "error"));
    add(std::move(f));
  }
  summed("b2bua_dns_resolution_failures_total",
         "Resolutions that found no usable target (NXDOMAIN, no records, timeouts).",
         &ShardCounters::dns_failures);

  // The edge.
  {
    MetricFamily f = NewFamily("b2bua_requests_rejected_total",
                               "Requests refused by the access policy or a call limit, by reason: "
                               "untrusted source, relay denied, scanner, flood, calls per "
                               "source, route limit, call rate.",
                               MetricType::Counter);
    s.AddArray(f, &ShardCounters::requests_rejected, "reason", 0,
               [](size_t i) { return RejectReasonName(static_cast<RejectReason>(i)); });
    add(std::move(f));
  }
  per_shard("b2bua_flood_sources_blocked",
            "Source addresses serving a flood block, per shard (each shard counts the "
            "requests it receives).",
            &ShardCounters::flood_sources_blocked);
  summed("b2bua_flood_requests_untracked_total",
         "Requests let through without flood counting because the per-source table was full.",
         &ShardCounters::flood_requests_untracked);

  // Transactions.
  {
    MetricFamily f = NewFamily("b2bua_transactions_created_total",
                               "SIP transactions created, by side (server: from a request we "
                               "received; client: for a request we sent).",
                               MetricType::Counter);
    AddCounter(f, s.Sum([](const ShardCounters& c) -> const Counter& { return c.transactions_server_created; }),
               OneLabel("side", "server"));
    AddCounter(f, s.Sum([](const ShardCounters& c) -> const Counter& { return c.transactions_client_created; }),
               OneLabel("side", "client"));
    add(std::move(f));
  }
  per_shard("b2bua_transactions_active", "SIP transactions currently alive, per shard.",
            &ShardCounters::transactions_active);
  summed("b2bua_retransmissions_sent_total",
         "SIP retransmissions sent: requests and responses the transaction timers re-send, "
         "and the 2xx the core re-sends until its ACK.",
         &ShardCounters::retransmissions_sent);
  summed("b2bua_retransmissions_absorbed_total",
         "Retransmitted SIP messages received and absorbed by an existing transaction.",
         &ShardCounters::retransmissions_absorbed);
  summed("b2bua_transaction_timeouts_total", "SIP transactions ended by a transaction timer expiring.",
         &ShardCounters::transaction_timeouts);

  // Calls.
  {
    MetricFamily f = NewFamily("b2bua_calls_total", "Calls ended, by outcome.", MetricType::Counter);
    s.AddArray(f, &ShardCounters::calls_ended, "outcome", 0,
               [](size_t i) { return CallOutcomeName(static_cast<CallOutcome>(i)); });
    add(std::move(f));
  }
  per_shard("b2bua_calls_active", "Calls in progress, per shard.", &ShardCounters::calls_active);
  per_shard("b2bua_dialogs_active", "SIP dialogs alive, per shard.", &ShardCounters::dialogs_active);
  {
    MetricFamily f = NewFamily("b2bua_call_setup_seconds",
                               "Call setup time, from the caller's INVITE to the final response relayed to it.",
                               MetricType::Histogram);
    s.AddHistogram(f, &ShardCounters::call_setup_seconds);
    add(std::move(f));
  }

  // Cross-shard handoff.
  {
    MetricFamily f = NewFamily("b2bua_shard_handoffs_total",
                               "Messages handed from one shard to another, by direction.",
                               MetricType::Counter);
    AddCounter(f, s.Sum([](const ShardCounters& c) -> const Counter& { return c.handoffs_sent; }),
               OneLabel("direction", "sent"));
    AddCounter(f, s.Sum([](const ShardCounters& c) -> const Counter& { return c.handoffs_received; }),
               OneLabel("direction", "received"));
    add(std::move(f));
  }
  per_shard("b2bua_shard_queue_depth", "Envelopes waiting in a shard's inbound rings.",
            &ShardCounters::handoff_queue_depth);

  // Redirect engine.
  {
    MetricFamily f = NewFamily("b2bua_redirects_received_total",
                               "3xx responses received, by status code.", MetricType::Counter);
    s.AddArray(f, &ShardCounters::redirects_received, "code", 0,
               [](size_t i) { return RedirectCodeName(static_cast<RedirectCode>(i)); });
    add(std::move(f));
  }
  {
    MetricFamily f = NewFamily("b2bua_redirect_targets_total",
                               "Redirect targets attempted or skipped, by outcome.",
                               MetricType::Counter);
    s.AddArray(f, &ShardCounters::redirect_targets, "outcome", 0,
               [](size_t i) { return TargetOutcomeName(static_cast<TargetOutcome>(i)); });
    add(std::move(f));
  }
  summed("b2bua_redirect_loops_detected_total", "Redirect loops detected.",
         &ShardCounters::redirect_loops_detected);
  {
    MetricFamily f = NewFamily("b2bua_redirect_failures_total",
                               "Redirect searches that ended without an answer, by reason.",
                               MetricType::Counter);
    s.AddArray(f, &ShardCounters::redirect_failures, "reason", 0,
               [](size_t i) { return RedirectFailureName(static_cast<RedirectFailure>(i)); });
    add(std::move(f));
  }
  summed("b2bua_redirects_sent_total", "3xx responses sent to callers.",
         &ShardCounters::redirects_sent);
  summed("b2bua_redirect_cache_hits_total", "Redirect lookups answered from the cache.",
         &ShardCounters::redirect_cache_hits);

  // The cluster (zero on a single box).
  summed("b2bua_cluster_dialogs_replicated_total",
         "Writes of confirmed calls to the dialog store (at confirmation and after in-dialog "
         "changes), sent or dropped.",
         &ShardCounters::dialogs_replicated);
  summed("b2bua_cluster_dialogs_adopted_total",
         "Calls of another instance taken over from the dialog store.",
         &ShardCounters::dialogs_adopted);
  {
    MetricFamily f = NewFamily("b2bua_cluster_adoptions_failed_total",
                               "Takeovers that did not happen, by reason: not in the store, "
                               "owned by another instance, store unavailable, overload.",
                               MetricType::Counter);
    s.AddArray(f, &ShardCounters::adoptions_failed, "reason", 0,
               [](size_t i) { return AdoptFailureName(static_cast<AdoptFailure>(i)); });
    add(std::move(f));
  }
  per_shard("b2bua_redis_disconnected",
            "1 while the shard's Redis connection is down (cluster mode; always 0 on a single "
            "box).",
            &ShardCounters::store_disconnected);
  summed("b2bua_redis_reconnects_total", "Redis connection attempts after the first.",
         &ShardCounters::store_reconnects);
  {
    MetricFamily f = NewFamily("b2bua_redis_command_failures_total",
                               "Redis commands that failed (replication skipped), by reason: "
                               "disconnected, timeout, error.",
                               MetricType::Counter);
    s.AddArray(f, &ShardCounters::store_failures, "reason", 0,
               [](size_t i) { return StoreFailureName(static_cast<StoreFailure>(i)); });
    add(std::move(f));
  }
  {
    MetricFamily f = NewFamily("b2bua_redis_round_trip_seconds",
                               "Time from sending a Redis command to its reply.",
                               MetricType::Histogram);
    s.AddHistogram(f, &ShardCounters::store_round_trip_seconds);
    add(std::move(f));
  }
  {
    MetricFamily f = NewFamily("b2bua_redirect_depth",
                               "Redirects followed per redirect search (the chain length).",
                               MetricType::Histogram);
    s.AddHistogram(f, &ShardCounters::redirect_depth);
    add(std::move(f));
  }
  {
    MetricFamily f = NewFamily("b2bua_redirect_extra_delay_seconds",
                               "Setup time added by following redirects.", MetricType::Histogram);
    s.AddHistogram(f, &ShardCounters::redirect_extra_delay_seconds);
    add(std::move(f));
  }

  summed("b2bua_internal_bug_total",
         "Survived cases that should be impossible; any increase is a bug to report.",
         &ShardCounters::internal_bugs);
  return out;
}

std::string RenderMetricsText(const std::vector<MetricFamily>& families) {
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, families);
  return std::move(out).str();
}

std::string RenderMetricsText(const prometheus::Registry& registry) {
  return RenderMetricsText(registry.Collect());
}

MetricsRegistry::MetricsRegistry(std::vector<const ShardCounters*> shards, std::string_view version)
    : shard_counters_(std::move(shards)) {
  // The conventional info metric: a constant 1 whose labels carry the data, so
  // `b2bua_build_info * on(instance) group_left(version)` can annotate other series.
  prometheus::BuildGauge()
      .Name("b2bua_build_info")
      .Help("Build information; the value is always 1.")
      .Register(registry_)
      .Add({{"version", std::string(version)}})
      .Set(1);
}

std::string MetricsRegistry::Render() const {
  std::vector<MetricFamily> families = registry_.Collect();
  std::vector<MetricFamily> shard_families = shard_counters_.Collect();
  families.insert(families.end(), std::make_move_iterator(shard_families.begin()),
                  std::make_move_iterator(shard_families.end()));
  return RenderMetricsText(families);
}

}  // namespace b2bua::metrics
