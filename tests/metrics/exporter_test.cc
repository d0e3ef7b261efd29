// Tests metrics/exporter.{h,cc}: ShardCountersCollectable and MetricsRegistry, through the
// exposition text they render (what Prometheus actually parses), plus the label names in
// b2bua/shard_counters.cc that the text carries.

#include "metrics/exporter.h"

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "b2bua/shard_counters.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/gauge.h"
#include "prometheus/metric_family.h"
#include "prometheus/registry.h"
#include "proto/sip_message.h"
#include "proto/sip_parser.h"

namespace b2bua::metrics {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kPromtool[] = "/usr/bin/promtool";

size_t Index(auto e) { return static_cast<size_t>(e); }

// The rendered lines, so a test can ask for an exact line rather than a substring that
// might match a longer value ("... 5" inside "... 55").
std::set<std::string> Lines(const std::string& text) {
  std::set<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.insert(line);
  return lines;
}

class ExporterTest : public ::testing::Test {
 protected:
  ExporterTest() : registry_({&shards_[0], &shards_[1]}, "1.2.3-test") {}

  std::string Render() const { return registry_.Render(); }

  void ExpectLine(const std::string& text, const std::string& line) {
    EXPECT_TRUE(Lines(text).contains(line)) << "missing line: " << line << "\nin:\n" << text;
  }

  ShardCounters shards_[2];
  MetricsRegistry registry_;
};

TEST_F(ExporterTest, SumsCountersAcrossShards) {
  shards_[0].requests_received[Index(proto::Method::kInvite)].Inc(3);
  shards_[1].requests_received[Index(proto::Method::kInvite)].Inc(4);
  shards_[0].requests_received[Index(proto::Method::kUnknown)].Inc(2);
  shards_[1].requests_sent[Index(proto::Method::kBye)].Inc();
  shards_[0].responses_received[2].Inc(10);
  shards_[1].responses_received[2].Inc(1);
  shards_[1].responses_sent[4].Inc(6);
  shards_[0].parse_errors[Index(proto::Defect::kBadHeaderValue)].Inc();
  shards_[1].parse_errors[Index(proto::Defect::kBadHeaderValue)].Inc();
  shards_[0].datagrams_dropped[Index(DropReason::kQueueFull)].Inc(9);
  shards_[0].datagrams_received.Inc(100);
  shards_[1].datagrams_received.Inc(23);
  shards_[0].bytes_received.Inc(1000);
  shards_[1].bytes_received.Inc(234);
  shards_[0].transactions_server_created.Inc(7);
  shards_[1].transactions_client_created.Inc(8);
  shards_[0].retransmissions_sent.Inc(2);
  shards_[1].retransmissions_absorbed.Inc(3);
  shards_[1].transaction_timeouts.Inc(4);
  shards_[0].calls_ended[Index(CallOutcome::kAnswered)].Inc(20);
  shards_[1].calls_ended[Index(CallOutcome::kAnswered)].Inc(22);
  shards_[1].calls_ended[Index(CallOutcome::kNoAnswer)].Inc();
  shards_[0].handoffs_sent.Inc(11);
  shards_[1].handoffs_received.Inc(11);
  shards_[0].redirects_received[Index(ToRedirectCode(302))].Inc(2);
  shards_[1].redirects_received[Index(ToRedirectCode(302))].Inc(3);
  shards_[1].redirects_received[Index(ToRedirectCode(399))].Inc();
  shards_[0].redirect_targets[Index(TargetOutcome::kRefusedByPolicy)].Inc(2);
  shards_[1].redirect_loops_detected.Inc();
  shards_[0].redirect_failures[Index(RedirectFailure::kDepth)].Inc();
  shards_[0].redirects_sent.Inc(5);
  shards_[1].redirect_cache_hits.Inc(6);
  shards_[1].internal_bugs.Inc();

  const std::string text = Render();
  ExpectLine(text, R"(b2bua_sip_requests_received_total{method="INVITE"} 7)");
  ExpectLine(text, R"(b2bua_sip_requests_received_total{method="other"} 2)");
  ExpectLine(text, R"(b2bua_sip_requests_sent_total{method="BYE"} 1)");
  ExpectLine(text, R"(b2bua_sip_responses_received_total{class="2xx"} 11)");
  ExpectLine(text, R"(b2bua_sip_responses_sent_total{class="4xx"} 6)");
  ExpectLine(text, R"(b2bua_sip_parse_errors_total{reason="bad_header_value"} 2)");
  ExpectLine(text, R"(b2bua_datagrams_dropped_total{reason="queue_full"} 9)");
  ExpectLine(text, R"(b2bua_datagrams_received_total 123)");
  ExpectLine(text, R"(b2bua_received_bytes_total 1234)");
  ExpectLine(text, R"(b2bua_transactions_created_total{side="server"} 7)");
  ExpectLine(text, R"(b2bua_transactions_created_total{side="client"} 8)");
  ExpectLine(text, R"(b2bua_retransmissions_sent_total 2)");
  ExpectLine(text, R"(b2bua_retransmissions_absorbed_total 3)");
  ExpectLine(text, R"(b2bua_transaction_timeouts_total 4)");
  ExpectLine(text, R"(b2bua_calls_total{outcome="answered"} 42)");
  ExpectLine(text, R"(b2bua_calls_total{outcome="no_answer"} 1)");
  ExpectLine(text, R"(b2bua_shard_handoffs_total{direction="sent"} 11)");
  ExpectLine(text, R"(b2bua_shard_handoffs_total{direction="received"} 11)");
  ExpectLine(text, R"(b2bua_redirects_received_total{code="302"} 5)");
  ExpectLine(text, R"(b2bua_redirects_received_total{code="other"} 1)");
  ExpectLine(text, R"(b2bua_redirect_targets_total{outcome="refused_by_policy"} 2)");
  ExpectLine(text, R"(b2bua_redirect_loops_detected_total 1)");
  ExpectLine(text, R"(b2bua_redirect_failures_total{reason="depth"} 1)");
  ExpectLine(text, R"(b2bua_redirects_sent_total 5)");
  ExpectLine(text, R"(b2bua_redirect_cache_hits_total 6)");
  ExpectLine(text, R"(b2bua_internal_bug_total 1)");
  ExpectLine(text, R"(b2bua_build_info{version="1.2.3-test"} 1)");
}

TEST_F(ExporterTest, EmitsEveryEnumLabelValueWhenZero) {
  const std::string text = Render();
  for (size_t i = 1; i < ShardCounters::kMethods; ++i) {
    const std::string method(proto::MethodName(static_cast<proto::Method>(i)));
    ExpectLine(text, "b2bua_sip_requests_received_total{method=\"" + method + "\"} 0");
    ExpectLine(text, "b2bua_sip_requests_sent_total{method=\"" + method + "\"} 0");
  }
  for (const char* cls : {"1xx", "2xx", "3xx", "4xx", "5xx", "6xx"}) {
    ExpectLine(text, std::string("b2bua_sip_responses_received_total{class=\"") + cls + "\"} 0");
    ExpectLine(text, std::string("b2bua_sip_responses_sent_total{class=\"") + cls + "\"} 0");
  }
  EXPECT_THAT(text, Not(HasSubstr("class=\"0xx\"")));
  for (const char* reason : {"oversized", "unparsable", "bad_response", "queue_full", "send_failed"})
    ExpectLine(text, std::string("b2bua_datagrams_dropped_total{reason=\"") + reason + "\"} 0");
  for (const char* outcome : {"answered", "rejected", "cancelled", "no_answer", "no_route",
                              "unreachable", "overload", "redirect_failed", "redirect_sent"})
    ExpectLine(text, std::string("b2bua_calls_total{outcome=\"") + outcome + "\"} 0");
  for (const char* code : {"300", "301", "302", "305", "380", "other"})
    ExpectLine(text, std::string("b2bua_redirects_received_total{code=\"") + code + "\"} 0");
  for (const char* outcome : {"answered", "failed", "timeout", "refused_by_policy",
                              "skipped_as_loop", "redirected", "cancelled"})
    ExpectLine(text, std::string("b2bua_redirect_targets_total{outcome=\"") + outcome + "\"} 0");
  for (const char* reason : {"exhausted", "depth", "loop", "cancelled", "all_refused"})
    ExpectLine(text, std::string("b2bua_redirect_failures_total{reason=\"") + reason + "\"} 0");

  std::set<std::string> defects;
  for (size_t i = 1; i < ShardCounters::kDefects; ++i) {
    const std::string label(DefectLabel(static_cast<proto::Defect>(i)));
    EXPECT_FALSE(label.empty()) << "defect " << i;
    EXPECT_TRUE(defects.insert(label).second) << "duplicate label " << label;
    ExpectLine(text, "b2bua_sip_parse_errors_total{reason=\"" + label + "\"} 0");
  }
  // kNone is never counted, so it gets no series.
  EXPECT_TRUE(DefectLabel(proto::Defect::kNone).empty());
  EXPECT_EQ(DefectLabel(proto::Defect::kCSeqMethodMismatch), "cseq_method_mismatch");
}

TEST_F(ExporterTest, RedirectCodeMapping) {
  EXPECT_EQ(ToRedirectCode(300), RedirectCode::k300);
  EXPECT_EQ(ToRedirectCode(301), RedirectCode::k301);
  EXPECT_EQ(ToRedirectCode(302), RedirectCode::k302);
  EXPECT_EQ(ToRedirectCode(305), RedirectCode::k305);
  EXPECT_EQ(ToRedirectCode(380), RedirectCode::k380);
  EXPECT_EQ(ToRedirectCode(303), RedirectCode::kOther);
  EXPECT_EQ(ToRedirectCode(200), RedirectCode::kOther);
}

TEST_F(ExporterTest, PerShardGaugesCarryShardLabel) {
  shards_[0].calls_active.Set(3);
  shards_[1].calls_active.Set(5);
  shards_[0].transactions_active.Inc(12);
  shards_[1].transactions_active.Inc(2);
  shards_[0].dialogs_active.Inc(4);
  shards_[1].handoff_queue_depth.Set(17);
  // An unmatched Dec is a bug; the exporter shows it as a negative value rather than
  // wrapping to 1.8e19.
  shards_[1].dialogs_active.Dec();

  const std::string text = Render();
  ExpectLine(text, R"(b2bua_calls_active{shard="0"} 3)");
  ExpectLine(text, R"(b2bua_calls_active{shard="1"} 5)");
  ExpectLine(text, R"(b2bua_transactions_active{shard="0"} 12)");
  ExpectLine(text, R"(b2bua_transactions_active{shard="1"} 2)");
  ExpectLine(text, R"(b2bua_dialogs_active{shard="0"} 4)");
  ExpectLine(text, R"(b2bua_dialogs_active{shard="1"} -1)");
  ExpectLine(text, R"(b2bua_shard_queue_depth{shard="0"} 0)");
  ExpectLine(text, R"(b2bua_shard_queue_depth{shard="1"} 17)");
  ExpectLine(text, "# TYPE b2bua_calls_active gauge");
}

TEST_F(ExporterTest, HistogramsAreCumulativeAndSummedAcrossShards) {
  shards_[0].call_setup_seconds.Observe(0.005);
  shards_[0].call_setup_seconds.Observe(0.3);
  shards_[1].call_setup_seconds.Observe(0.3);
  shards_[1].call_setup_seconds.Observe(20);  // over the last bound: +Inf only
  shards_[0].redirect_depth.Observe(0);
  shards_[1].redirect_depth.Observe(2);
  shards_[1].redirect_depth.Observe(4);

  const std::string text = Render();
  ExpectLine(text, "# TYPE b2bua_call_setup_seconds histogram");
  ExpectLine(text, R"(b2bua_call_setup_seconds_bucket{le="0.01"} 1)");
  ExpectLine(text, R"(b2bua_call_setup_seconds_bucket{le="0.025"} 1)");
  ExpectLine(text, R"(b2bua_call_setup_seconds_bucket{le="0.25"} 1)");
  ExpectLine(text, R"(b2bua_call_setup_seconds_bucket{le="0.5"} 3)");
  ExpectLine(text, R"(b2bua_call_setup_seconds_bucket{le="10"} 3)");
  ExpectLine(text, R"(b2bua_call_setup_seconds_bucket{le="+Inf"} 4)");
  ExpectLine(text, R"(b2bua_call_setup_seconds_count 4)");
  ExpectLine(text, R"(b2bua_call_setup_seconds_sum 20.605)");

  ExpectLine(text, R"(b2bua_redirect_depth_bucket{le="0"} 1)");
  ExpectLine(text, R"(b2bua_redirect_depth_bucket{le="1"} 1)");
  ExpectLine(text, R"(b2bua_redirect_depth_bucket{le="2"} 2)");
  ExpectLine(text, R"(b2bua_redirect_depth_bucket{le="3"} 2)");
  ExpectLine(text, R"(b2bua_redirect_depth_bucket{le="5"} 3)");
  ExpectLine(text, R"(b2bua_redirect_depth_bucket{le="8"} 3)");
  ExpectLine(text, R"(b2bua_redirect_depth_bucket{le="+Inf"} 3)");
  ExpectLine(text, R"(b2bua_redirect_depth_count 3)");
  ExpectLine(text, R"(b2bua_redirect_depth_sum 6)");

  // Empty histograms still expose every bucket.
  ExpectLine(text, R"(b2bua_redirect_extra_delay_seconds_bucket{le="0.01"} 0)");
  ExpectLine(text, R"(b2bua_redirect_extra_delay_seconds_bucket{le="+Inf"} 0)");
  ExpectLine(text, R"(b2bua_redirect_extra_delay_seconds_count 0)");
  ExpectLine(text, R"(b2bua_redirect_extra_delay_seconds_sum 0)");
}

TEST_F(ExporterTest, EveryFamilyHasHelpAndType) {
  const std::string text = Render();
  const std::vector<std::pair<std::string, std::string>> families = {
      {"b2bua_build_info", "gauge"},
      {"b2bua_sip_requests_received_total", "counter"},
      {"b2bua_sip_requests_sent_total", "counter"},
      {"b2bua_sip_responses_received_total", "counter"},
      {"b2bua_sip_responses_sent_total", "counter"},
      {"b2bua_sip_parse_errors_total", "counter"},
      {"b2bua_datagrams_dropped_total", "counter"},
      {"b2bua_datagrams_received_total", "counter"},
      {"b2bua_received_bytes_total", "counter"},
      {"b2bua_connections", "gauge"},
      {"b2bua_connections_accepted_total", "counter"},
      {"b2bua_connections_refused_total", "counter"},
      {"b2bua_connections_closed_total", "counter"},
      {"b2bua_tls_handshakes_total", "counter"},
      {"b2bua_tls_handshakes_failed_total", "counter"},
      {"b2bua_dns_resolutions_total", "counter"},
      {"b2bua_dns_queries_total", "counter"},
      {"b2bua_dns_cache_lookups_total", "counter"},
      {"b2bua_dns_query_failures_total", "counter"},
      {"b2bua_dns_resolution_failures_total", "counter"},
      {"b2bua_requests_rejected_total", "counter"},
      {"b2bua_flood_sources_blocked", "gauge"},
      {"b2bua_flood_requests_untracked_total", "counter"},
      {"b2bua_transactions_created_total", "counter"},
      {"b2bua_transactions_active", "gauge"},
      {"b2bua_retransmissions_sent_total", "counter"},
      {"b2bua_retransmissions_absorbed_total", "counter"},
      {"b2bua_transaction_timeouts_total", "counter"},
      {"b2bua_calls_total", "counter"},
      {"b2bua_calls_active", "gauge"},
      {"b2bua_dialogs_active", "gauge"},
      {"b2bua_call_setup_seconds", "histogram"},
      {"b2bua_shard_handoffs_total", "counter"},
      {"b2bua_shard_queue_depth", "gauge"},
      {"b2bua_redirects_received_total", "counter"},
      {"b2bua_redirect_targets_total", "counter"},
      {"b2bua_redirect_loops_detected_total", "counter"},
      {"b2bua_redirect_failures_total", "counter"},
      {"b2bua_redirects_sent_total", "counter"},
      {"b2bua_redirect_cache_hits_total", "counter"},
      {"b2bua_cluster_dialogs_replicated_total", "counter"},
      {"b2bua_cluster_dialogs_adopted_total", "counter"},
      {"b2bua_cluster_adoptions_failed_total", "counter"},
      {"b2bua_redis_disconnected", "gauge"},
      {"b2bua_redis_reconnects_total", "counter"},
      {"b2bua_redis_command_failures_total", "counter"},
      {"b2bua_redis_round_trip_seconds", "histogram"},
      {"b2bua_redirect_depth", "histogram"},
      {"b2bua_redirect_extra_delay_seconds", "histogram"},
      {"b2bua_internal_bug_total", "counter"},
  };
  const std::set<std::string> lines = Lines(text);
  size_t help_lines = 0;
  for (const std::string& line : lines) help_lines += line.starts_with("# HELP ");
  EXPECT_EQ(help_lines, families.size()) << "a family was added or dropped:\n" << text;
  for (const auto& [name, type] : families) {
    EXPECT_TRUE(lines.contains("# TYPE " + name + " " + type)) << name;
    EXPECT_THAT(text, HasSubstr("# HELP " + name + " ")) << name;
  }
}

TEST_F(ExporterTest, RenderMetricsTextSerializesARegistry) {
  prometheus::Registry registry;
  prometheus::BuildGauge().Name("x_gauge").Help("x").Register(registry).Add({}).Set(2);
  const std::string text = RenderMetricsText(registry);
  ExpectLine(text, "# TYPE x_gauge gauge");
  ExpectLine(text, "x_gauge 2");
}

TEST_F(ExporterTest, PromtoolAcceptsTheText) {
  if (access(kPromtool, X_OK) != 0) GTEST_SKIP() << kPromtool << " not installed";
  shards_[0].call_setup_seconds.Observe(0.2);
  shards_[1].calls_active.Set(1);
  const std::string text = Render();

  char path[] = "/tmp/b2bua_exporter_test_XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  {
    std::ofstream out(path, std::ios::binary);
    out << text;
  }
  const std::string command = std::string(kPromtool) + " check metrics < " + path + " 2>&1";
  std::string output;
  FILE* pipe = popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  char buf[512];
  while (size_t n = fread(buf, 1, sizeof buf, pipe)) output.append(buf, n);
  const int status = pclose(pipe);
  unlink(path);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << output;
}

TEST(ShardCountersCollectableTest, ScrapeWhileShardsWrite) {
  // Consistency under concurrent writes: _count equals the +Inf bucket and counters never
  // go backwards between scrapes. Run under TSan to check the reads are race-free.
  auto shard = std::make_unique<ShardCounters>();
  ShardCountersCollectable collectable({shard.get()});
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    while (!stop.load(std::memory_order_relaxed)) {
      shard->datagrams_received.Inc();
      shard->call_setup_seconds.Observe(0.07);
    }
  });
  // Start scraping once the writer runs, so the scrapes overlap its writes.
  while (shard->datagrams_received.Get() == 0) std::this_thread::yield();
  double last = 0;
  for (int i = 0; i < 200; ++i) {
    for (const prometheus::MetricFamily& family : collectable.Collect()) {
      if (family.name == "b2bua_datagrams_received_total") {
        EXPECT_GE(family.metric.at(0).counter.value, last);
        last = family.metric.at(0).counter.value;
      }
      if (family.name == "b2bua_call_setup_seconds") {
        const auto& h = family.metric.at(0).histogram;
        EXPECT_EQ(h.sample_count, h.bucket.back().cumulative_count);
      }
    }
  }
  stop = true;
  writer.join();
  EXPECT_GT(last, 0);
}

TEST(ShardCountersCollectableTest, NoShardsRendersNothing) {
  ShardCountersCollectable collectable({});
  EXPECT_TRUE(collectable.Collect().empty());
}

}  // namespace
}  // namespace b2bua::metrics
