#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "b2bua/shard_counters.h"
#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"
#include "prometheus/registry.h"
#include "proto/sip_parser.h"

namespace b2bua::metrics {

/// The `reason` label of b2bua_sip_parse_errors_total for a parser defect, snake_case after
/// the enumerator ("bad_header_value"); empty for kNone, which is never counted.
/// Static storage. These are label values: keep them stable.
std::string_view DefectLabel(proto::Defect defect);

/// Exposes every shard's ShardCounters to prometheus-cpp. Nothing happens on the data
/// plane: the shards only bump their relaxed atomics, and Collect() reads, sums and labels
/// them when scraped (Seastar's per-shard metrics read by the exporter).
///
/// Counters without a `shard` label are summed across shards; the gauges whose per-shard
/// value shows imbalance (active transactions, calls, dialogs, queue depth) carry `shard`.
/// Every value of every enum label is emitted, zero included, so each series exists from
/// the first scrape and rate() has a starting point.
///
/// One scrape is not a snapshot: each atomic is read once, at slightly different times,
/// while the shards keep writing. Histogram buckets and _count come from the same reads
/// and always agree; _sum is read separately and may be one observation ahead or behind.
class ShardCountersCollectable : public prometheus::Collectable {
 public:
  /// Any thread. `shards[i]` is shard i; every pointer must be non-null and the pointees
  /// must outlive this object (in practice they live for the whole process).
  explicit ShardCountersCollectable(std::vector<const ShardCounters*> shards);

  /// Safe from any thread, concurrently with the shards writing.
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  std::vector<const ShardCounters*> shards_;
  std::vector<std::string> shard_labels_;  // "0", "1", ...: built once, not per scrape
};

/// Serializes families in the Prometheus text exposition format 0.0.4.
std::string RenderMetricsText(const std::vector<prometheus::MetricFamily>& families);

/// Collects `registry` and serializes it in the Prometheus text exposition format 0.0.4.
/// Safe from any thread (prometheus::Registry is internally locked).
std::string RenderMetricsText(const prometheus::Registry& registry);

/// Everything /metrics serves: a prometheus::Registry for process-level metrics
/// (b2bua_build_info, and anything main.cc registers later) plus the shards' counters.
/// Built once on the main thread at startup; not copyable or movable, because the registry
/// hands out references into itself.
class MetricsRegistry {
 public:
  /// Main thread, at startup. `shards` as for ShardCountersCollectable; `version` becomes
  /// the `version` label of b2bua_build_info.
  MetricsRegistry(std::vector<const ShardCounters*> shards, std::string_view version);

  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;

  /// Safe from any thread: the registry locks itself and the shards' counters are atomics.
  /// Returns the whole exposition text, registry families first.
  std::string Render() const;

  /// The registry for process-level metrics. Registering is safe from any thread; the
  /// returned families live as long as this object.
  prometheus::Registry& registry() { return registry_; }

 private:
  prometheus::Registry registry_;
  ShardCountersCollectable shard_counters_;
};

}  // namespace b2bua::metrics
