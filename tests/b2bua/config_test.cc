// Tests b2bua/config.{h,cc} and b2bua/default_config.h: the YAML loader and its errors,
// the route table's prefix matching, the header policy and the redirect settings.

#include "b2bua/config.h"

#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "b2bua/default_config.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace b2bua {
namespace {

// The prefixes of a parsed list, as ToString() writes them.
std::vector<std::string> Texts(const proto::CidrList& list) {
  std::vector<std::string> out;
  for (const proto::Cidr& cidr : list.cidrs()) out.push_back(cidr.ToString());
  return out;
}

using std::chrono::milliseconds;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// The example config is read from the source tree; CMake passes the tree's root.
std::string SourceDir() {
#ifdef B2BUA_SOURCE_DIR
  return B2BUA_SOURCE_DIR;
#else
  // Built by hand: this file's own path gives the root ("" when compiled from the root
  // with a relative path, which then reads relative to the working directory).
  std::string file = __FILE__;
  constexpr std::string_view kSelf = "tests/b2bua/config_test.cc";
  return file.size() >= kSelf.size() ? file.substr(0, file.size() - kSelf.size()) : "";
#endif
}

std::shared_ptr<const Config> MustParse(std::string_view yaml) {
  absl::StatusOr<std::shared_ptr<const Config>> config = ParseConfig(yaml, "b2bua.yaml");
  EXPECT_TRUE(config.ok()) << config.status().ToString();
  if (!config.ok()) return std::make_shared<const Config>();
  return *config;
}

// The error message for a config that must not load.
std::string ErrorOf(std::string_view yaml) {
  absl::StatusOr<std::shared_ptr<const Config>> config = ParseConfig(yaml, "b2bua.yaml");
  if (config.ok()) {
    ADD_FAILURE() << "loaded, but should not have:\n" << yaml;
    return "";
  }
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(config.status().message());
}


// ---------------------------------------------------------------------------------------
// Whole files.

TEST(ConfigTest, DefaultConfigParsesToTheBuiltInDefaults) {
  absl::StatusOr<std::shared_ptr<const Config>> config = DefaultConfig();
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  const Config& c = **config;
  const Config built_in;
  EXPECT_EQ(c.limits, built_in.limits);
  EXPECT_EQ(c.timers, built_in.timers);
  EXPECT_EQ(c.udp, built_in.udp);
  EXPECT_EQ(c.redirect, built_in.redirect);
  EXPECT_EQ(c.failover_on, built_in.failover_on);
  EXPECT_EQ(c.probe, built_in.probe);
  EXPECT_EQ(c.headers.pass(), HeaderPolicy::DefaultPass());
  EXPECT_TRUE(c.headers.strip().empty());
  EXPECT_FALSE(c.headers.pass_unknown());
  EXPECT_EQ(c.source, "<built-in default>");
  EXPECT_TRUE(ParseConfig(kDefaultConfigYaml, "default.yaml").ok());
  // No routes: the Request-URI is the next hop. Redirects are followed.
  EXPECT_TRUE(c.routes.empty());
  EXPECT_EQ(c.routes.Match("+15551234"), nullptr);
  EXPECT_EQ(c.redirect.mode, RedirectMode::kFollow);
}

TEST(ConfigTest, BuiltInDefaultsMatchTheSchema) {
  const Config c;
  EXPECT_EQ(c.limits.max_calls, 100000u);
  EXPECT_EQ(c.limits.max_call_duration, std::chrono::hours(4));
  EXPECT_EQ(c.limits.no_answer_timeout, std::chrono::seconds(180));
  EXPECT_EQ(c.limits.drain_timeout, std::chrono::seconds(30));
  EXPECT_EQ(c.timers.t1, milliseconds(500));
  EXPECT_EQ(c.timers.t2, std::chrono::seconds(4));
  EXPECT_EQ(c.timers.t4, std::chrono::seconds(5));
  EXPECT_EQ(c.udp.socket_buffer_bytes, 4194304u);
  EXPECT_EQ(c.udp.max_datagram_bytes, 65535u);
  EXPECT_TRUE(c.redirect.send_181);
  EXPECT_EQ(c.redirect.max_depth, 5);
  EXPECT_EQ(c.redirect.max_targets, 16);
  EXPECT_EQ(c.redirect.target_timeout, std::chrono::seconds(8));
  EXPECT_EQ(c.redirect.to_uri, RedirectToUri::kKeep);
  EXPECT_TRUE(c.redirect.history_info);
  EXPECT_FALSE(c.redirect.diversion);
  EXPECT_FALSE(c.redirect.relay_last_3xx);
  EXPECT_EQ(c.redirect.fork, RedirectFork::kSerial);
  EXPECT_EQ(c.redirect.max_parallel, 8);
  EXPECT_EQ(c.redirect.early_media, EarlyMedia::kFirst);
  EXPECT_EQ(c.redirect.cache_301.entries, 1000u);
  EXPECT_EQ(c.redirect.cache_301.ttl, std::chrono::hours(1));
  EXPECT_THAT(c.redirect.allow.schemes, ElementsAre("sip", "sips"));
  EXPECT_TRUE(c.redirect.deny_self);
  for (int code : {408, 500, 502, 503, 504}) EXPECT_TRUE(c.failover_on.Contains(code)) << code;
  EXPECT_FALSE(c.failover_on.Contains(501));
  EXPECT_EQ(c.probe.options_interval, std::chrono::seconds(30));
}

TEST(ConfigTest, EmptyDocumentGivesTheDefaults) {
  for (std::string_view text : {"", "\n", "# only a comment\n", "~\n"}) {
    std::shared_ptr<const Config> c = MustParse(text);
    EXPECT_EQ(c->redirect, RedirectSettings{}) << text;
    EXPECT_TRUE(c->routes.empty());
  }
}

TEST(ConfigTest, EmptySectionsGiveTheDefaults) {
  std::shared_ptr<const Config> c = MustParse("limits:\ntimers:\nredirect:\nroutes:\n");
  EXPECT_EQ(c->limits, LimitsConfig{});
  EXPECT_EQ(c->redirect, RedirectSettings{});
  EXPECT_TRUE(c->routes.empty());
}

TEST(ConfigTest, ExampleFileParses) {
  std::string path = SourceDir();
  if (!path.empty() && path.back() != '/') path += '/';
  path += "deploy/b2bua.example.yaml";
  absl::StatusOr<std::shared_ptr<const Config>> config = LoadConfigFile(path);
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  const Config& c = **config;
  EXPECT_EQ(c.source, path);

  // Security deny lists of a public edge.
  EXPECT_THAT(
      Texts(c.redirect.deny.cidrs),
      ::testing::IsSupersetOf({"127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                               "169.254.0.0/16", "fe80::/10", "::1/128"}));
  EXPECT_TRUE(c.redirect.deny_self);
  EXPECT_FALSE(c.headers.IsPassed("Server"));
  EXPECT_FALSE(c.headers.IsPassed("X-Internal"));
  EXPECT_TRUE(c.headers.IsPassed("P-Asserted-Identity"));

  ASSERT_GE(c.routes.size(), 4u);
  // Failover next hops.
  const Route* na = c.routes.Match("+12125550100");
  ASSERT_NE(na, nullptr);
  EXPECT_EQ(na->prefix, "+1");
  ASSERT_EQ(na->next_hops.size(), 2u);
  EXPECT_EQ(na->next_hops[0].transport, proto::TransportKind::kUdp);
  EXPECT_EQ(na->next_hops[1].transport, proto::TransportKind::kTcp);
  // A per-route redirect override.
  const Route* relayed = c.routes.Match("+15550100");
  ASSERT_NE(relayed, nullptr);
  EXPECT_EQ(relayed->redirect.mode, RedirectMode::kRelay);
  EXPECT_EQ(relayed->redirect.deny, c.redirect.deny);
  // A redirect action.
  const Route* freephone = c.routes.Match("8005550100");
  ASSERT_NE(freephone, nullptr);
  EXPECT_EQ(freephone->action, Route::Action::kRedirect);
  EXPECT_EQ(freephone->redirect_code, 302);
  EXPECT_EQ(freephone->contacts.size(), 2u);
  // A default route.
  const Route* other = c.routes.Match("4420");
  ASSERT_NE(other, nullptr);
  EXPECT_EQ(other->prefix, "");
}

TEST(ConfigTest, TheSchemaSketchParses) {
  std::shared_ptr<const Config> c = MustParse(R"yaml(limits:
  max_calls: 100000          # over it: 503 + Retry-After
  max_call_duration: 4h
  no_answer_timeout: 180s    # Timer C
  drain_timeout: 30s
timers: { t1: 500ms, t2: 4s, t4: 5s }
udp: { socket_buffer_bytes: 4194304, max_datagram_bytes: 65535 }
headers:
  pass: [P-Asserted-Identity, Privacy, Allow, Supported]
  strip: [Server, X-Internal]
  pass_unknown: false
redirect:
  mode: follow
  send_181: true
  max_depth: 5
  max_targets: 16
  target_timeout: 8s
  to_uri: keep
  try_next_on: ["4xx", "5xx"]
  history_info: true
  diversion: false
  relay_last_3xx: false
  fork: serial
  cache_301: { entries: 1000, ttl: 1h }
  allow: { domains: [], cidrs: [], schemes: [sip, sips] }
  deny:  { domains: [], cidrs: [] }
  deny_self: true
failover_on: [408, 500, 502, 503, 504]
probe: { options_interval: 30s }
routes:
  - prefix: "+1555"
    next_hops: ["sip:127.0.0.1:5070;transport=udp", "sip:10.0.0.2:5060;transport=tcp"]
    redirect: { mode: relay }
  - prefix: "800"
    action: redirect
    redirect_code: 302
    contacts: ["<sip:1001@10.0.0.5>;q=0.9", "<sip:1001@10.0.0.6>;q=0.5"]
)yaml");
  ASSERT_EQ(c->routes.size(), 2u);
  const Route& first = c->routes.routes()[0];
  EXPECT_EQ(first.line, 31);
  ASSERT_EQ(first.next_hops.size(), 2u);
  EXPECT_EQ(first.next_hops[0].uri, "sip:127.0.0.1:5070;transport=udp");
  EXPECT_EQ(first.next_hops[0].host, "127.0.0.1");
  EXPECT_EQ(first.next_hops[0].port, 5070);
  EXPECT_EQ(first.next_hops[0].transport, proto::TransportKind::kUdp);
  EXPECT_EQ(first.next_hops[1].host, "10.0.0.2");
  EXPECT_EQ(first.next_hops[1].port, 5060);
  EXPECT_EQ(first.next_hops[1].transport, proto::TransportKind::kTcp);
  const Route& second = c->routes.routes()[1];
  EXPECT_EQ(second.line, 34);
  EXPECT_EQ(second.action, Route::Action::kRedirect);
  EXPECT_THAT(second.contacts,
              ElementsAre("<sip:1001@10.0.0.5>;q=0.9", "<sip:1001@10.0.0.6>;q=0.5"));
  EXPECT_TRUE(second.next_hops.empty());
}

TEST(ConfigTest, LoadConfigFileReportsAMissingFile) {
  absl::StatusOr<std::shared_ptr<const Config>> config = LoadConfigFile("/nonexistent/b2bua.yaml");
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(config.status().message()), HasSubstr("/nonexistent/b2bua.yaml"));
}

TEST(ConfigTest, LoadConfigFileRefusesADirectory) {
  absl::StatusOr<std::shared_ptr<const Config>> config = LoadConfigFile(::testing::TempDir());
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(std::string(config.status().message()), HasSubstr("cannot read"));
}

TEST(ConfigTest, LoadConfigFileNamesThePathInErrors) {
  std::string path = ::testing::TempDir() + "config_test_bad.yaml";
  {
    std::ofstream out(path);
    out << "limits:\n  max_calls: 0\n";
  }
  absl::StatusOr<std::shared_ptr<const Config>> config = LoadConfigFile(path);
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(std::string(config.status().message()),
            path + ":2: limits.max_calls: 0 is out of range (1..10000000)");
  std::remove(path.c_str());
}

// ---------------------------------------------------------------------------------------
// Syntax, unknown keys and types.

TEST(ConfigErrorTest, YamlSyntaxErrorHasItsLine) {
  EXPECT_THAT(ErrorOf("limits:\n  max_calls: 5\ntimers: [t1\n"),
              StartsWith("b2bua.yaml:4: YAML syntax error: "));
  EXPECT_THAT(ErrorOf("limits:\n\tmax_calls: 5\n"), StartsWith("b2bua.yaml:2: YAML syntax error"));
}

TEST(ConfigErrorTest, UnknownTopLevelKey) {
  EXPECT_EQ(ErrorOf("limits: {}\nlimit:\n  max_calls: 5\n"),
            "b2bua.yaml:2: unknown key 'limit' (did you mean 'limits'?)");
  EXPECT_EQ(ErrorOf("listen: 0.0.0.0\n"),
            "b2bua.yaml:1: unknown key 'listen' (known keys: access, limits, timers, udp, tcp, "
            "tls, headers, redirect, failover_on, probe, cluster, routes)");
}

TEST(ConfigErrorTest, UnknownNestedKeys) {
  EXPECT_EQ(ErrorOf("limits:\n  max_calls: 5\n  max_call: 6\n"),
            "b2bua.yaml:3: limits: unknown key 'max_call' (did you mean 'max_calls'?)");
  EXPECT_EQ(ErrorOf("timers: { t1: 1s, t3: 2s }\n"),
            "b2bua.yaml:1: timers: unknown key 't3' (did you mean 't1'?)");
  EXPECT_EQ(ErrorOf("redirect:\n  cache_301:\n    size: 10\n"),
            "b2bua.yaml:3: redirect.cache_301: unknown key 'size' (known keys: entries, ttl)");
  EXPECT_EQ(ErrorOf("redirect:\n  deny:\n    cidr: [10.0.0.0/8]\n"),
            "b2bua.yaml:3: redirect.deny: unknown key 'cidr' (did you mean 'cidrs'?)");
  EXPECT_EQ(ErrorOf("routes:\n  - prefix: '1'\n    next_hop: ['sip:192.0.2.1']\n"),
            "b2bua.yaml:3: routes[0]: unknown key 'next_hop' (did you mean 'next_hops'?)");
  EXPECT_EQ(ErrorOf("routes:\n  - prefix: '1'\n    next_hops: ['sip:192.0.2.1']\n"
                    "    redirect: { max_dept: 2 }\n"),
            "b2bua.yaml:4: routes[0].redirect: unknown key 'max_dept' (did you mean "
            "'max_depth'?)");
}

TEST(ConfigErrorTest, DuplicateKeyNamesBothLines) {
  EXPECT_EQ(ErrorOf("limits:\n  max_calls: 5\n  drain_timeout: 1s\n  max_calls: 6\n"),
            "b2bua.yaml:4: limits.max_calls: appears twice (first on line 2)");
}

TEST(ConfigErrorTest, WrongShapes) {
  EXPECT_EQ(ErrorOf("limits: 5\n"),
            "b2bua.yaml:1: limits: expected a mapping (key: value), found a single value");
  EXPECT_EQ(ErrorOf("- a\n- b\n"), "b2bua.yaml:1: expected a mapping (key: value), found a list");
  EXPECT_EQ(ErrorOf("routes: {prefix: '1'}\n"),
            "b2bua.yaml:1: routes: expected a list, found a mapping");
  EXPECT_EQ(ErrorOf("routes:\n  - '1'\n"),
            "b2bua.yaml:2: routes[0]: expected a mapping (key: value), found a single value");
  EXPECT_EQ(ErrorOf("limits:\n  max_calls: [1]\n"),
            "b2bua.yaml:2: limits.max_calls: expected a number, found a list");
  EXPECT_EQ(ErrorOf("limits:\n  max_calls: lots\n"),
            "b2bua.yaml:2: limits.max_calls: 'lots' is not a whole number");
  EXPECT_EQ(ErrorOf("redirect:\n  send_181: maybe\n"),
            "b2bua.yaml:2: redirect.send_181: 'maybe' is not true or false");
  EXPECT_EQ(ErrorOf("redirect:\n  mode: bounce\n"),
            "b2bua.yaml:2: redirect.mode: 'bounce' is not one of: follow, relay");
  EXPECT_EQ(ErrorOf("redirect:\n  fork: parallel\n"),
            "b2bua.yaml:2: redirect.fork: 'parallel' is not one of: serial, parallel_equal_q");
  EXPECT_EQ(ErrorOf("redirect:\n  early_media: some\n"),
            "b2bua.yaml:2: redirect.early_media: 'some' is not one of: first, none");
  EXPECT_EQ(ErrorOf("redirect:\n  max_parallel: 0\n"),
            "b2bua.yaml:2: redirect.max_parallel: 0 is out of range (1..64)");
  EXPECT_EQ(ErrorOf("redirect:\n  to_uri: change\n"),
            "b2bua.yaml:2: redirect.to_uri: 'change' is not one of: keep, replace");
}

TEST(ConfigTest, ClusterSectionIsOptionalAndChecked) {
  EXPECT_FALSE(MustParse("")->cluster.enabled()) << "a single box by default";
  std::shared_ptr<const Config> c = MustParse(
      "cluster:\n  instance_id: b7\n  front: \"192.0.2.10:5060\"\n"
      "  redis: \"127.0.0.1:6380\"\n  redis_timeout: 250ms\n  dialog_ttl_margin: 2m\n"
      "  ready_without_redis: false\n");
  EXPECT_TRUE(c->cluster.enabled());
  EXPECT_EQ(c->cluster.instance_id, "b7");
  EXPECT_EQ(c->cluster.front, "192.0.2.10:5060");
  EXPECT_EQ(c->cluster.redis, "127.0.0.1:6380");
  EXPECT_EQ(c->cluster.key_prefix, "b2bua:dialog:");
  EXPECT_EQ(c->cluster.redis_timeout, std::chrono::milliseconds(250));
  EXPECT_EQ(c->cluster.dialog_ttl_margin, std::chrono::minutes(2));
  EXPECT_FALSE(c->cluster.ready_without_redis);
  EXPECT_EQ(MustParse("cluster: {instance_id: '3', front: 'front.example.net:5060'}\n")
                ->cluster.front,
            "front.example.net:5060");

  EXPECT_EQ(ErrorOf("cluster:\n  instance_id: B_1\n  front: '192.0.2.1:5060'\n"),
            "b2bua.yaml:2: cluster.instance_id: 'B_1' must be 1 to 16 of a-z and 0-9");
  EXPECT_EQ(ErrorOf("cluster:\n  instance_id: '1'\n"),
            "b2bua.yaml:2: cluster: needs instance_id and front (or remove the section)");
  EXPECT_EQ(ErrorOf("cluster:\n  instance_id: '1'\n  front: 192.0.2.1\n"),
            "b2bua.yaml:3: cluster.front: '192.0.2.1' is not HOST:PORT (e.g. 192.0.2.10:5060)");
  EXPECT_EQ(ErrorOf("cluster:\n  instance_id: '1'\n  front: '192.0.2.1:5060'\n"
                    "  redis: localhost\n"),
            "b2bua.yaml:4: cluster.redis: 'localhost' is not IP:PORT");
}

TEST(ConfigTest, ParallelForkingIsReadGloballyAndPerRoute) {
  std::shared_ptr<const Config> c = MustParse(
      "redirect:\n  fork: parallel_equal_q\n  max_parallel: 3\n  early_media: none\n"
      "routes:\n  - prefix: \"+44\"\n    next_hops: [\"sip:127.0.0.1:5090\"]\n"
      "    redirect: {fork: serial}\n");
  EXPECT_EQ(c->redirect.fork, RedirectFork::kParallelEqualQ);
  EXPECT_EQ(c->redirect.max_parallel, 3);
  EXPECT_EQ(c->redirect.early_media, EarlyMedia::kNone);
  const Route* route = c->routes.Match("+441234");
  ASSERT_NE(route, nullptr);
  EXPECT_EQ(route->redirect.fork, RedirectFork::kSerial);
  EXPECT_EQ(route->redirect.max_parallel, 3) << "a route inherits what it does not set";
}

TEST(ConfigTest, BooleansAndEnumsAcceptCommonSpellings) {
  std::shared_ptr<const Config> c = MustParse(
      "redirect:\n  send_181: no\n  diversion: True\n  mode: Relay\n"
      "  fork: Serial\n  to_uri: replace\n  allow: {schemes: [SIP, tel]}\n");
  EXPECT_FALSE(c->redirect.send_181);
  EXPECT_TRUE(c->redirect.diversion);
  EXPECT_EQ(c->redirect.mode, RedirectMode::kRelay);
  EXPECT_EQ(c->redirect.fork, RedirectFork::kSerial);
  EXPECT_EQ(c->redirect.to_uri, RedirectToUri::kReplace);
  EXPECT_THAT(c->redirect.allow.schemes, ElementsAre("sip", "tel"));
  EXPECT_TRUE(c->redirect.AllowsScheme("TEL"));
  EXPECT_FALSE(c->redirect.AllowsScheme("sips"));
}

// ---------------------------------------------------------------------------------------
// Durations.

TEST(ConfigTest, DurationsTakeUnitsOrPlainSeconds) {
  std::shared_ptr<const Config> c = MustParse(
      "limits: { max_call_duration: 2m, no_answer_timeout: 90, drain_timeout: 0 }\n"
      "timers: { t1: 250ms, t2: 8s, t4: 5 }\n"
      "redirect: { target_timeout: 1500ms, cache_301: { ttl: 4h } }\n"
      "probe: { options_interval: 0 }\n");
  EXPECT_EQ(c->limits.max_call_duration, std::chrono::minutes(2));
  EXPECT_EQ(c->limits.no_answer_timeout, std::chrono::seconds(90));
  EXPECT_EQ(c->limits.drain_timeout, milliseconds(0));
  EXPECT_EQ(c->timers.t1, milliseconds(250));
  EXPECT_EQ(c->timers.t2, std::chrono::seconds(8));
  EXPECT_EQ(c->timers.t4, std::chrono::seconds(5));
  EXPECT_EQ(c->redirect.target_timeout, milliseconds(1500));
  EXPECT_EQ(c->redirect.cache_301.ttl, std::chrono::hours(4));
  EXPECT_EQ(c->probe.options_interval, milliseconds(0));
}

TEST(ConfigErrorTest, BadDurations) {
  const std::string kHint = "' is not a duration (use 500ms, 8s, 2m, 4h, or a number of seconds)";
  for (std::string_view bad : {"5x", "-1s", "1.5s", "s", "8 s", "1h30m", "99999999999999h"}) {
    EXPECT_EQ(ErrorOf("limits:\n  drain_timeout: \"" + std::string(bad) + "\"\n"),
              "b2bua.yaml:2: limits.drain_timeout: '" + std::string(bad) + kHint)
        << bad;
  }
  EXPECT_EQ(ErrorOf("limits:\n  max_call_duration: 200h\n"),
            "b2bua.yaml:2: limits.max_call_duration: '200h' is out of range (1s..168h)");
  EXPECT_EQ(ErrorOf("timers:\n  t1: 0ms\n"),
            "b2bua.yaml:2: timers.t1: '0ms' is out of range (1ms..1m)");
  EXPECT_EQ(ErrorOf("probe:\n  options_interval: 500ms\n"),
            "b2bua.yaml:2: probe.options_interval: must be 0 (off) or at least 1s");
}

TEST(ConfigErrorTest, T1MustNotExceedT2) {
  EXPECT_EQ(ErrorOf("timers:\n  t1: 2s\n  t2: 1s\n"),
            "b2bua.yaml:3: timers.t2: t1 (2s) must not exceed t2 (1s)");
  // With t2 left at its default, the error points at t1.
  EXPECT_EQ(ErrorOf("timers:\n  t1: 5s\n"),
            "b2bua.yaml:2: timers.t1: t1 (5s) must not exceed t2 (4s)");
}

// ---------------------------------------------------------------------------------------
// Ranges.

TEST(ConfigErrorTest, RangesOfNumbers) {
  EXPECT_EQ(ErrorOf("redirect:\n  max_depth: 21\n"),
            "b2bua.yaml:2: redirect.max_depth: 21 is out of range (0..20)");
  EXPECT_EQ(ErrorOf("redirect:\n  max_depth: -1\n"),
            "b2bua.yaml:2: redirect.max_depth: -1 is out of range (0..20)");
  EXPECT_EQ(ErrorOf("redirect:\n  max_targets: 0\n"),
            "b2bua.yaml:2: redirect.max_targets: 0 is out of range (1..64)");
  EXPECT_EQ(ErrorOf("redirect:\n  max_targets: 65\n"),
            "b2bua.yaml:2: redirect.max_targets: 65 is out of range (1..64)");
  EXPECT_EQ(ErrorOf("udp:\n  max_datagram_bytes: 70000\n"),
            "b2bua.yaml:2: udp.max_datagram_bytes: 70000 is out of range (1500..65535)");
  EXPECT_EQ(ErrorOf("limits:\n  max_calls: 0\n"),
            "b2bua.yaml:2: limits.max_calls: 0 is out of range (1..10000000)");
  std::shared_ptr<const Config> c = MustParse("redirect: { max_depth: 0, max_targets: 64 }\n");
  EXPECT_EQ(c->redirect.max_depth, 0);
  EXPECT_EQ(c->redirect.max_targets, 64);
}

TEST(ConfigErrorTest, StatusCodeLists) {
  EXPECT_EQ(ErrorOf("failover_on: [408, 700]\n"),
            "b2bua.yaml:1: failover_on[1]: '700' is not a status code (100..699) or class "
            "(\"5xx\")");
  EXPECT_EQ(ErrorOf("failover_on:\n  - 503\n  - 99\n"),
            "b2bua.yaml:3: failover_on[1]: '99' is not a status code (100..699) or class "
            "(\"5xx\")");
  EXPECT_EQ(ErrorOf("failover_on: [302]\n"),
            "b2bua.yaml:1: failover_on[0]: 302 is not a failure (use 400..699)");
  EXPECT_EQ(ErrorOf("redirect:\n  try_next_on: [\"3xx\"]\n"),
            "b2bua.yaml:2: redirect.try_next_on[0]: '3xx' is not a failure class (4xx, 5xx "
            "or 6xx)");
  EXPECT_EQ(ErrorOf("redirect:\n  try_next_on: [busy]\n"),
            "b2bua.yaml:2: redirect.try_next_on[0]: 'busy' is not a status code (100..699) or "
            "class (\"5xx\")");
}

// ---------------------------------------------------------------------------------------
// Next hops.

TEST(ConfigErrorTest, NextHopUris) {
  auto hop_error = [](std::string_view hop) {
    return ErrorOf(
        "routes:\n  - prefix: '1'\n    next_hops: ['sip:192.0.2.1']\n"
        "  - prefix: '2'\n    next_hops:\n      - '" +
        std::string(hop) + "'\n");
  };
  EXPECT_EQ(hop_error("sip:foo:99999"),
            "b2bua.yaml:6: routes[1].next_hops[0]: 'sip:foo:99999' is not a valid SIP URI "
            "(bad port)");
  EXPECT_EQ(hop_error("sip:"),
            "b2bua.yaml:6: routes[1].next_hops[0]: 'sip:' is not a valid SIP URI (bad host)");
  EXPECT_EQ(hop_error("192.0.2.1:5060"),
            "b2bua.yaml:6: routes[1].next_hops[0]: '192.0.2.1:5060' is not a valid SIP URI (bad "
            "scheme)");
  EXPECT_EQ(hop_error("tel:+15551234"),
            "b2bua.yaml:6: routes[1].next_hops[0]: 'tel:+15551234' is not a sip: or sips: URI");
  EXPECT_EQ(hop_error("sips:gw.example.net"),
            "b2bua.yaml:6: routes[1].next_hops[0]: 'sips:gw.example.net' goes over TLS: "
            "configure the tls: section (listen, certificate, private_key, ca)");
  EXPECT_EQ(hop_error("sip:192.0.2.1;transport=tls"),
            "b2bua.yaml:6: routes[1].next_hops[0]: 'sip:192.0.2.1;transport=tls' goes over "
            "TLS: configure the tls: section (listen, certificate, private_key, ca)");
  EXPECT_EQ(hop_error("sip:192.0.2.1;transport=sctp"),
            "b2bua.yaml:6: routes[1].next_hops[0]: 'sip:192.0.2.1;transport=sctp': transport "
            "'sctp' is not supported (udp, tcp or tls)");
  EXPECT_EQ(hop_error("sip:gw@192.0.2.1"),
            "b2bua.yaml:6: routes[1].next_hops[0]: 'sip:gw@192.0.2.1': a next hop names a "
            "host; remove the user part");
  EXPECT_EQ(hop_error("sip:192.0.2.1;maddr=192.0.2.9"),
            "b2bua.yaml:6: routes[1].next_hops[0]: 'sip:192.0.2.1;maddr=192.0.2.9': maddr is "
            "not supported");
  EXPECT_EQ(hop_error("sip:192.0.2.1?Subject=x"),
            "b2bua.yaml:6: routes[1].next_hops[0]: 'sip:192.0.2.1?Subject=x': a next hop "
            "cannot carry headers ('?')");
}

TEST(ConfigTest, NextHopFields) {
  std::shared_ptr<const Config> c = MustParse(
      "routes:\n  - next_hops: ['sip:[2001:db8::1]:5070;transport=TCP;lr', "
      "'SIP:gw.example.net', 'sip:192.0.2.7;transport=udp']\n");
  const std::vector<NextHop>& hops = c->routes.routes().at(0).next_hops;
  ASSERT_EQ(hops.size(), 3u);
  EXPECT_EQ(hops[0].host, "2001:db8::1");
  EXPECT_EQ(hops[0].port, 5070);
  EXPECT_EQ(hops[0].transport, proto::TransportKind::kTcp);
  EXPECT_EQ(hops[1].uri, "SIP:gw.example.net");
  EXPECT_EQ(hops[1].host, "gw.example.net");
  EXPECT_EQ(hops[1].port, 5060);
  EXPECT_EQ(hops[1].transport, proto::TransportKind::kUdp);
  EXPECT_EQ(hops[2].transport, proto::TransportKind::kUdp);
}

// ---------------------------------------------------------------------------------------
// Routes.

TEST(ConfigErrorTest, RoutePrefixes) {
  EXPECT_EQ(ErrorOf("routes:\n  - prefix: '12a'\n    next_hops: ['sip:192.0.2.1']\n"),
            "b2bua.yaml:2: routes[0].prefix: '12a' is not a prefix (digits with an optional "
            "leading '+')");
  EXPECT_EQ(ErrorOf("routes:\n  - prefix: '++1'\n    next_hops: ['sip:192.0.2.1']\n"),
            "b2bua.yaml:2: routes[0].prefix: '++1' is not a prefix (digits with an optional "
            "leading '+')");
  EXPECT_EQ(ErrorOf("routes:\n  - prefix: '1-555'\n    next_hops: ['sip:192.0.2.1']\n"),
            "b2bua.yaml:2: routes[0].prefix: '1-555' is not a prefix (digits with an optional "
            "leading '+')");
}

TEST(ConfigErrorTest, DuplicatePrefixNamesBothLines) {
  EXPECT_EQ(ErrorOf("routes:\n"
                    "  - prefix: '+1555'\n"
                    "    next_hops: ['sip:192.0.2.1']\n"
                    "  - prefix: '44'\n"
                    "    next_hops: ['sip:192.0.2.2']\n"
                    "  - next_hops: ['sip:192.0.2.3']\n"
                    "    prefix: \"+1555\"\n"),
            "b2bua.yaml:7: routes[2].prefix: duplicate prefix '+1555': already used by the "
            "route on line 2");
  // Two default routes: one without a prefix key, one with an empty one.
  EXPECT_EQ(ErrorOf("routes:\n"
                    "  - next_hops: ['sip:192.0.2.1']\n"
                    "  - prefix: ''\n"
                    "    next_hops: ['sip:192.0.2.2']\n"),
            "b2bua.yaml:3: routes[1].prefix: duplicate the default route (empty prefix): "
            "already used by the route on line 2");
  // "+1" and "1" are different prefixes.
  MustParse(
      "routes:\n  - prefix: '+1'\n    next_hops: ['sip:192.0.2.1']\n"
      "  - prefix: '1'\n    next_hops: ['sip:192.0.2.2']\n");
}

TEST(ConfigErrorTest, RouteActions) {
  EXPECT_EQ(ErrorOf("routes:\n  - prefix: '1'\n"),
            "b2bua.yaml:2: routes[0]: needs at least one entry in next_hops (or action: "
            "redirect)");
  EXPECT_EQ(ErrorOf("routes:\n  - prefix: '1'\n    next_hops: []\n"),
            "b2bua.yaml:3: routes[0]: needs at least one entry in next_hops (or action: "
            "redirect)");
  EXPECT_EQ(ErrorOf("routes:\n  - prefix: '800'\n    action: redirect\n"),
            "b2bua.yaml:2: routes[0]: action: redirect needs at least one entry in contacts");
  EXPECT_EQ(ErrorOf("routes:\n  - prefix: '800'\n    action: forward\n"),
            "b2bua.yaml:3: routes[0].action: 'forward' is not one of: route, redirect");
  EXPECT_EQ(ErrorOf("routes:\n  - prefix: '800'\n    next_hops: ['sip:192.0.2.1']\n"
                    "    contacts: ['<sip:a@192.0.2.5>']\n"),
            "b2bua.yaml:4: routes[0].contacts: only applies to a route with action: redirect");
  EXPECT_EQ(ErrorOf("routes:\n  - prefix: '800'\n    action: redirect\n"
                    "    contacts: ['<sip:a@192.0.2.5>']\n    next_hops: ['sip:192.0.2.1']\n"),
            "b2bua.yaml:5: routes[0].next_hops: does not apply to a route with action: redirect");
  EXPECT_EQ(ErrorOf("routes:\n  - prefix: '800'\n    action: redirect\n"
                    "    contacts: ['<sip:a@192.0.2.5>']\n    redirect: {mode: relay}\n"),
            "b2bua.yaml:5: routes[0].redirect: does not apply to a route with action: redirect");
  EXPECT_EQ(ErrorOf("routes:\n  - prefix: '800'\n    action: redirect\n    redirect_code: 303\n"
                    "    contacts: ['<sip:a@192.0.2.5>']\n"),
            "b2bua.yaml:4: routes[0].redirect_code: 303 is not 301 or 302");
  std::shared_ptr<const Config> c = MustParse(
      "routes:\n  - prefix: '800'\n    action: redirect\n    redirect_code: 301\n"
      "    contacts: ['<sip:a@192.0.2.5>', 'sip:b@example.com;q=0.1', "
      "'\"Help Desk\" <tel:+15550100>']\n");
  const Route& route = c->routes.routes().at(0);
  EXPECT_EQ(route.redirect_code, 301);
  EXPECT_EQ(route.contacts.size(), 3u);
}

TEST(ConfigErrorTest, Contacts) {
  auto contact_error = [](std::string_view contact) {
    return ErrorOf(
        "routes:\n  - prefix: '800'\n    action: redirect\n"
        "    contacts:\n      - '" +
        std::string(contact) + "'\n");
  };
  EXPECT_EQ(contact_error("<sip:1001@>"),
            "b2bua.yaml:5: routes[0].contacts[0]: '<sip:1001@>' is not a valid Contact value");
  EXPECT_EQ(contact_error("<sip:1001@192.0.2.5"),
            "b2bua.yaml:5: routes[0].contacts[0]: '<sip:1001@192.0.2.5' is not a valid Contact "
            "value");
  EXPECT_EQ(contact_error("<sip:a@192.0.2.5>, <sip:b@192.0.2.6>"),
            "b2bua.yaml:5: routes[0].contacts[0]: '<sip:a@192.0.2.5>, <sip:b@192.0.2.6>' holds "
            "2 Contact values; give each its own list item");
  EXPECT_EQ(contact_error("<sip:a@192.0.2.5>;q=2"),
            "b2bua.yaml:5: routes[0].contacts[0]: '<sip:a@192.0.2.5>;q=2' has a bad q-value (0 "
            "to 1, 3 decimals)");
  EXPECT_EQ(contact_error("<http://example.com/>"),
            "b2bua.yaml:5: routes[0].contacts[0]: '<http://example.com/>' is not a sip:, sips: "
            "or tel: URI");
  EXPECT_EQ(contact_error("*"),
            "b2bua.yaml:5: routes[0].contacts[0]: '*' is not a redirect target");
  EXPECT_EQ(ErrorOf("routes:\n  - prefix: '800'\n    action: redirect\n"
                    "    contacts: [\"<sip:a@192.0.2.5>\\r\\nX: y\"]\n"),
            "b2bua.yaml:4: routes[0].contacts[0]: a Contact value cannot hold control "
            "characters or line breaks");
}

// ---------------------------------------------------------------------------------------
// Redirect allow and deny lists.

TEST(ConfigErrorTest, Cidrs) {
  auto cidr_error = [](std::string_view cidr) {
    return ErrorOf("redirect:\n  deny:\n    cidrs: ['" + std::string(cidr) + "']\n");
  };
  EXPECT_EQ(cidr_error("10.0.0.0/33"),
            "b2bua.yaml:3: redirect.deny.cidrs[0]: '10.0.0.0/33': the prefix length must be 0..32");
  EXPECT_EQ(cidr_error("fe80::/129"),
            "b2bua.yaml:3: redirect.deny.cidrs[0]: 'fe80::/129': the prefix length must be 0..128");
  EXPECT_EQ(cidr_error("10.0.0.0/"),
            "b2bua.yaml:3: redirect.deny.cidrs[0]: '10.0.0.0/': the prefix length must be 0..32");
  EXPECT_EQ(cidr_error("10.0.0.0/-8"),
            "b2bua.yaml:3: redirect.deny.cidrs[0]: '10.0.0.0/-8': the prefix length must be 0..32");
  EXPECT_EQ(cidr_error("[10.0.0.0]/8"),
            "b2bua.yaml:3: redirect.deny.cidrs[0]: '[10.0.0.0]/8' is not a CIDR (expected an IPv4 "
            "or IPv6 address, then '/' and a prefix length)");
  EXPECT_EQ(cidr_error("10.0.0/8"),
            "b2bua.yaml:3: redirect.deny.cidrs[0]: '10.0.0/8' is not a CIDR (expected an IPv4 or "
            "IPv6 address, then '/' and a prefix length)");
  EXPECT_EQ(cidr_error("example.com/24"),
            "b2bua.yaml:3: redirect.deny.cidrs[0]: 'example.com/24' is not a CIDR (expected an "
            "IPv4 or IPv6 address, then '/' and a prefix length)");
  EXPECT_EQ(cidr_error("10.0.0.1/8"),
            "b2bua.yaml:3: redirect.deny.cidrs[0]: '10.0.0.1/8' has bits set after the /8 prefix "
            "(host bits must be zero)");
  EXPECT_EQ(cidr_error("fe80::1/10"),
            "b2bua.yaml:3: redirect.deny.cidrs[0]: 'fe80::1/10' has bits set after the /10 "
            "prefix (host bits must be zero)");
  EXPECT_EQ(ErrorOf("redirect:\n  allow:\n    cidrs:\n      - 192.0.2.0/24\n      - bogus\n"),
            "b2bua.yaml:5: redirect.allow.cidrs[1]: 'bogus' is not a CIDR (expected an IPv4 or "
            "IPv6 address, then '/' and a prefix length)");
}

TEST(ConfigTest, CidrsAreStoredWithTheirLength) {
  std::shared_ptr<const Config> c = MustParse(
      "redirect:\n  deny:\n    cidrs: [127.0.0.0/8, 192.0.2.7, '::1', fe80::/10, 0.0.0.0/0, "
      "'::/0', 172.16.0.0/12, '[2001:db8::]/32']\n");
  EXPECT_THAT(Texts(c->redirect.deny.cidrs),
              ElementsAre("127.0.0.0/8", "192.0.2.7/32", "::1/128", "fe80::/10", "0.0.0.0/0",
                          "::/0", "172.16.0.0/12", "2001:db8::/32"));
}

TEST(ConfigErrorTest, Domains) {
  EXPECT_EQ(ErrorOf("redirect:\n  deny:\n    domains: ['*.example.com']\n"),
            "b2bua.yaml:3: redirect.deny.domains[0]: '*.example.com': write 'example.com', "
            "which covers its subdomains too");
  EXPECT_EQ(ErrorOf("redirect:\n  allow:\n    domains: [10.0.0.1]\n"),
            "b2bua.yaml:3: redirect.allow.domains[0]: '10.0.0.1' is an address; list addresses "
            "under cidrs");
  EXPECT_EQ(ErrorOf("redirect:\n  allow:\n    domains: ['2001:db8::1']\n"),
            "b2bua.yaml:3: redirect.allow.domains[0]: '2001:db8::1' is an address; list "
            "addresses under cidrs");
  EXPECT_EQ(ErrorOf("redirect:\n  allow:\n    domains: ['exa mple.com']\n"),
            "b2bua.yaml:3: redirect.allow.domains[0]: 'exa mple.com' is not a domain name");
  std::shared_ptr<const Config> c =
      MustParse("redirect:\n  deny:\n    domains: [Internal.Example.NET, .corp.example]\n");
  EXPECT_THAT(c->redirect.deny.domains, ElementsAre("internal.example.net", ".corp.example"));
}

TEST(ConfigErrorTest, Schemes) {
  EXPECT_EQ(ErrorOf("redirect:\n  allow:\n    schemes: [sip, http]\n"),
            "b2bua.yaml:3: redirect.allow.schemes[1]: 'http' is not one of: sip, sips, tel");
  EXPECT_EQ(ErrorOf("redirect:\n  allow:\n    schemes: []\n"),
            "b2bua.yaml:3: redirect.allow.schemes: allows no scheme; use mode: relay to stop "
            "following");
}

// ---------------------------------------------------------------------------------------
// Header policy.

TEST(ConfigErrorTest, HeaderNames) {
  EXPECT_EQ(ErrorOf("headers:\n  pass: [Privacy, Via]\n"),
            "b2bua.yaml:2: headers.pass[1]: 'Via' is built by the B2BUA for each leg and cannot "
            "be passed");
  EXPECT_EQ(ErrorOf("headers:\n  pass:\n    - Privacy\n    - f\n"),
            "b2bua.yaml:4: headers.pass[1]: 'f' is built by the B2BUA for each leg and cannot be "
            "passed");
  EXPECT_EQ(ErrorOf("headers:\n  strip: ['X Bad']\n"),
            "b2bua.yaml:2: headers.strip[0]: 'X Bad' is not a header name");
  // Stripping a dialog header is pointless but harmless.
  MustParse("headers:\n  strip: [Via]\n");
}

TEST(HeaderPolicyTest, DefaultPassesTheDefaultListOnly) {
  HeaderPolicy policy;
  for (const std::string& name : HeaderPolicy::DefaultPass()) EXPECT_TRUE(policy.IsPassed(name));
  EXPECT_FALSE(policy.IsPassed("X-Custom"));
  EXPECT_FALSE(policy.IsPassed("Server"));
  EXPECT_FALSE(policy.IsPassed(""));
}

TEST(HeaderPolicyTest, NamesCompareCaseInsensitively) {
  std::shared_ptr<const Config> c = MustParse(
      "headers:\n  pass: [p-asserted-identity, SUPPORTED, X-Carrier]\n"
      "  strip: [x-INTERNAL]\n");
  const HeaderPolicy& h = c->headers;
  EXPECT_TRUE(h.IsPassed("P-Asserted-Identity"));
  EXPECT_TRUE(h.IsPassed("P-ASSERTED-IDENTITY"));
  EXPECT_TRUE(h.IsPassed("supported"));
  EXPECT_TRUE(h.IsPassed("x-carrier"));
  EXPECT_FALSE(h.IsPassed("X-Internal"));
  // The configured spelling is kept for display.
  EXPECT_THAT(h.pass(), ElementsAre("p-asserted-identity", "SUPPORTED", "X-Carrier"));
  // Not in the list any more: the file's list replaces the default one.
  EXPECT_FALSE(h.IsPassed("Privacy"));
}

TEST(HeaderPolicyTest, CompactFormsCountAsTheirLongNames) {
  HeaderPolicy policy({"Supported", "c"}, {"Subject"}, true);
  EXPECT_TRUE(policy.IsPassed("k"));  // Supported
  EXPECT_TRUE(policy.IsPassed("K"));
  EXPECT_TRUE(policy.IsPassed("Content-Type"));  // listed as "c"
  EXPECT_FALSE(policy.IsPassed("s"));            // Subject is stripped
  EXPECT_TRUE(policy.IsPassed("q"));             // no such compact form: an unknown header
}

TEST(HeaderPolicyTest, StripWinsAndPassUnknownOpensTheRest) {
  HeaderPolicy closed({"Server", "Privacy"}, {"server"}, false);
  EXPECT_FALSE(closed.IsPassed("Server"));
  EXPECT_TRUE(closed.IsPassed("Privacy"));
  EXPECT_FALSE(closed.IsPassed("X-Foo"));

  HeaderPolicy open({"Privacy"}, {"X-Internal"}, true);
  EXPECT_TRUE(open.IsPassed("X-Foo"));
  EXPECT_TRUE(open.IsPassed("Privacy"));
  EXPECT_FALSE(open.IsPassed("x-internal"));
}









// ---------------------------------------------------------------------------------------
// Per-route redirect settings.

TEST(ConfigTest, RouteRedirectOverrideMergesOverGlobal) {
  // The redirect: section may come after the routes; it still is their base.
  std::shared_ptr<const Config> c = MustParse(
      "routes:\n"
      "  - prefix: '1'\n"
      "    next_hops: ['sip:192.0.2.1']\n"
      "    redirect:\n"
      "      mode: relay\n"
      "      try_next_on: [486]\n"
      "      cache_301: { ttl: 5m }\n"
      "      allow: { cidrs: [192.0.2.0/24] }\n"
      "  - prefix: '2'\n"
      "    next_hops: ['sip:192.0.2.2']\n"
      "redirect:\n"
      "  max_depth: 7\n"
      "  send_181: false\n"
      "  cache_301: { entries: 5, ttl: 2h }\n"
      "  allow: { domains: [example.com], cidrs: [198.51.100.0/24] }\n"
      "  deny: { cidrs: [10.0.0.0/8] }\n");
  const Route* overridden = c->routes.Match("1");
  const Route* plain = c->routes.Match("2");
  ASSERT_NE(overridden, nullptr);
  ASSERT_NE(plain, nullptr);

  EXPECT_EQ(plain->redirect, c->redirect);

  RedirectSettings expected = c->redirect;
  expected.mode = RedirectMode::kRelay;
  expected.try_next_on = StatusCodeSet::Codes({486});
  expected.cache_301.ttl = std::chrono::minutes(5);  // entries stays 5
  expected.allow.cidrs = *proto::CidrList::Parse({"192.0.2.0/24"});           // replaced; domains stay
  EXPECT_EQ(overridden->redirect, expected);
  EXPECT_EQ(overridden->redirect.max_depth, 7);
  EXPECT_FALSE(overridden->redirect.send_181);
  EXPECT_EQ(overridden->redirect.cache_301.entries, 5u);
  EXPECT_THAT(overridden->redirect.allow.domains, ElementsAre("example.com"));
  EXPECT_THAT(Texts(overridden->redirect.deny.cidrs), ElementsAre("10.0.0.0/8"));
  // The global settings are untouched by the override.
  EXPECT_EQ(c->redirect.mode, RedirectMode::kFollow);
  EXPECT_TRUE(c->redirect.TryNextOn(404));
}

TEST(ConfigErrorTest, RouteOverrideIsValidatedLikeTheGlobalSection) {
  EXPECT_EQ(ErrorOf("routes:\n  - prefix: '1'\n    next_hops: ['sip:192.0.2.1']\n"
                    "    redirect:\n      max_targets: 100\n"),
            "b2bua.yaml:5: routes[0].redirect.max_targets: 100 is out of range (1..64)");
}

// ---------------------------------------------------------------------------------------
// Status code sets.

TEST(RedirectSettingsTest, TryNextOnDefaultsToClientAndServerErrors) {
  RedirectSettings settings;
  EXPECT_TRUE(settings.TryNextOn(400));
  EXPECT_TRUE(settings.TryNextOn(404));
  EXPECT_TRUE(settings.TryNextOn(486));
  EXPECT_TRUE(settings.TryNextOn(499));
  EXPECT_TRUE(settings.TryNextOn(500));
  EXPECT_TRUE(settings.TryNextOn(503));
  EXPECT_FALSE(settings.TryNextOn(600));
  EXPECT_FALSE(settings.TryNextOn(603));
  EXPECT_FALSE(settings.TryNextOn(302));
  EXPECT_FALSE(settings.TryNextOn(200));
  EXPECT_FALSE(settings.TryNextOn(0));
  EXPECT_FALSE(settings.TryNextOn(-1));
  EXPECT_FALSE(settings.TryNextOn(1000));
}

TEST(RedirectSettingsTest, TryNextOnMixesClassesAndCodes) {
  std::shared_ptr<const Config> c =
      MustParse("redirect:\n  try_next_on: [\"6xx\", 486, 5XX, 408]\n");
  const RedirectSettings& r = c->redirect;
  EXPECT_TRUE(r.TryNextOn(486));
  EXPECT_TRUE(r.TryNextOn(408));
  EXPECT_FALSE(r.TryNextOn(487));
  EXPECT_FALSE(r.TryNextOn(404));
  EXPECT_TRUE(r.TryNextOn(500));
  EXPECT_TRUE(r.TryNextOn(603));
  EXPECT_TRUE(r.TryNextOn(699));
  std::shared_ptr<const Config> none = MustParse("redirect:\n  try_next_on: []\n");
  EXPECT_FALSE(none->redirect.TryNextOn(486));
  EXPECT_TRUE(none->redirect.try_next_on.empty());
}

TEST(StatusCodeSetTest, IgnoresCodesOutOfRange) {
  StatusCodeSet set = StatusCodeSet::Codes({99, 700, 486});
  EXPECT_FALSE(set.Contains(99));
  EXPECT_FALSE(set.Contains(700));
  EXPECT_TRUE(set.Contains(486));
  set.AddClass(7);
  EXPECT_FALSE(set.Contains(700));
}

TEST(ConfigTest, FailoverOnReplacesTheDefaultList) {
  std::shared_ptr<const Config> c = MustParse("failover_on: [503, \"6xx\"]\n");
  EXPECT_TRUE(c->failover_on.Contains(503));
  EXPECT_TRUE(c->failover_on.Contains(603));
  EXPECT_FALSE(c->failover_on.Contains(408));
}

}  // namespace
}  // namespace b2bua

namespace b2bua {
namespace {

proto::NetAddress Address(std::string_view text) {
  proto::NetAddress address;
  EXPECT_TRUE(proto::NetAddress::ParseIp(text, 5060, &address)) << text;
  return address;
}

TEST(AccessConfigTest, DefaultTextTrustsLoopbackOnly) {
  absl::StatusOr<std::shared_ptr<const Config>> config = DefaultConfig();
  ASSERT_TRUE(config.ok()) << config.status();
  const AccessConfig& access = (*config)->access;
  EXPECT_EQ(access, AccessConfig{});
  EXPECT_TRUE(access.IsTrusted(Address("127.0.0.1")));
  EXPECT_FALSE(access.IsCaller(Address("192.0.2.1")));
  EXPECT_EQ(access.unknown_source, UnknownSourceAction::kReject);
  EXPECT_EQ(access.relay_to_request_uri, RequestUriRelay::kTrusted);
  EXPECT_EQ(access.scanner_user_agents.patterns(), ScannerList::Defaults());
  EXPECT_EQ(access.flood, FloodSettings{});
  EXPECT_EQ(access.max_calls_per_source, 0u);
  EXPECT_EQ((*config)->limits.calls_per_second, 0u);
  EXPECT_EQ((*config)->limits.max_request_uri_bytes, 1024u);
  // A signed call keeps its signature (RFC 8224).
  EXPECT_TRUE((*config)->headers.IsPassed("Identity"));
  EXPECT_EQ((*config)->tcp, TcpConfig{});
  EXPECT_EQ((*config)->tcp.first_byte_timeout, std::chrono::seconds(10));
  EXPECT_EQ((*config)->tcp.message_timeout, std::chrono::seconds(10));
  EXPECT_EQ((*config)->tcp.max_connections_per_source, 64u);
}

TEST(TcpConfigTest, EveryKeyIsRead) {
  std::shared_ptr<const Config> c = MustParse(
      "tcp: { max_message_bytes: 131072, max_connections: 500, max_connections_per_source: 8,\n"
      "       idle_timeout: 2m, first_byte_timeout: 3s, message_timeout: 4s,\n"
      "       connect_timeout: 2s }\n");
  EXPECT_EQ(c->tcp.max_message_bytes, 131072u);
  EXPECT_EQ(c->tcp.max_connections, 500u);
  EXPECT_EQ(c->tcp.max_connections_per_source, 8u);
  EXPECT_EQ(c->tcp.idle_timeout, std::chrono::minutes(2));
  EXPECT_EQ(c->tcp.first_byte_timeout, std::chrono::seconds(3));
  EXPECT_EQ(c->tcp.message_timeout, std::chrono::seconds(4));
  EXPECT_EQ(c->tcp.connect_timeout, std::chrono::seconds(2));
  EXPECT_THAT(ErrorOf("tcp: { max_connections: 0 }\n"), HasSubstr("tcp.max_connections"));
  EXPECT_THAT(ErrorOf("tcp: { message_timeout: 10ms }\n"), HasSubstr("out of range"));
}

TEST(AccessConfigTest, EveryKeyIsRead) {
  std::shared_ptr<const Config> c = MustParse(R"(
access:
  trusted: [10.0.0.0/8]
  callers: [0.0.0.0/0, "::/0"]
  unknown_source: drop
  relay_to_request_uri: nobody
  scanner_user_agents: [EvilDialer]
  flood: { window: 1s, max_requests: 50, block_for: 5m, max_sources: 5000 }
  max_calls_per_source: 5
limits: { calls_per_second: 300, max_request_uri_bytes: 512 }
routes:
  - prefix: '1900'
    next_hops: ['sip:192.0.2.9']
    callers: [10.0.0.0/8]
    max_calls: 2
    calls_per_second: 1
)");
  const AccessConfig& a = c->access;
  EXPECT_TRUE(a.IsTrusted(Address("10.2.3.4")));
  EXPECT_FALSE(a.IsTrusted(Address("127.0.0.1")));
  EXPECT_TRUE(a.IsCaller(Address("203.0.113.5")));
  EXPECT_TRUE(a.IsCaller(Address("2001:db8::5")));
  EXPECT_EQ(a.unknown_source, UnknownSourceAction::kDrop);
  EXPECT_EQ(a.relay_to_request_uri, RequestUriRelay::kNobody);
  EXPECT_THAT(a.scanner_user_agents.patterns(), ElementsAre("EvilDialer"));
  EXPECT_EQ(a.flood.window, std::chrono::seconds(1));
  EXPECT_EQ(a.flood.max_requests, 50u);
  EXPECT_EQ(a.flood.block_for, std::chrono::minutes(5));
  EXPECT_EQ(a.flood.max_sources, 5000u);
  EXPECT_EQ(a.max_calls_per_source, 5u);
  EXPECT_EQ(c->limits.calls_per_second, 300u);
  EXPECT_EQ(c->limits.max_request_uri_bytes, 512u);
  const Route* route = c->routes.Match("19005551234");
  ASSERT_NE(route, nullptr);
  EXPECT_TRUE(route->callers.Contains(Address("10.0.0.1")));
  EXPECT_FALSE(route->callers.Contains(Address("192.0.2.1")));
  EXPECT_EQ(route->max_calls, 2u);
  EXPECT_EQ(route->calls_per_second, 1u);
}

TEST(AccessConfigTest, Errors) {
  EXPECT_THAT(ErrorOf("access:\n  trusted: [10.0.0.1/8]\n"),
              StartsWith("b2bua.yaml:2: access.trusted[0]: "));
  EXPECT_THAT(ErrorOf("access:\n  unknown_source: ignore\n"),
              HasSubstr("access.unknown_source: 'ignore' is not one of: reject, drop"));
  EXPECT_THAT(ErrorOf("access:\n  relay_to_request_uri: some\n"),
              HasSubstr("is not one of: trusted, nobody, anyone"));
  EXPECT_THAT(ErrorOf("access:\n  scanner_user_agents: ['']\n"),
              HasSubstr("access.scanner_user_agents[0]: is empty"));
  EXPECT_THAT(ErrorOf("access:\n  flood: { windw: 2s }\n"), HasSubstr("did you mean 'window'"));
  EXPECT_THAT(ErrorOf("access:\n  flood: { max_sources: 10 }\n"), HasSubstr("out of range"));
  EXPECT_THAT(ErrorOf("limits: { max_request_uri_bytes: 20 }\n"), HasSubstr("out of range"));
  EXPECT_THAT(ErrorOf("routes:\n  - prefix: '1'\n    next_hops: ['sip:192.0.2.1']\n"
                      "    callers: [nonsense]\n"),
              HasSubstr("routes[0].callers[0]"));
}



}  // namespace
}  // namespace b2bua

namespace b2bua {
namespace {

TEST(ConfigTest, OverflowToNamesAnotherRoute) {
  std::shared_ptr<const Config> c = MustParse(
      "routes:\n  - prefix: '1900'\n    next_hops: ['sip:192.0.2.4']\n    max_calls: 2\n"
      "    overflow_to: '1'\n"
      "  - prefix: '1'\n    next_hops: ['sip:192.0.2.2']\n    overflow_to: ''\n"
      "  - prefix: ''\n    next_hops: ['sip:192.0.2.1']\n");
  const Route* premium = c->routes.Match("19005551234");
  ASSERT_NE(premium, nullptr);
  const Route* next = c->routes.OverflowOf(*premium);
  ASSERT_NE(next, nullptr);
  EXPECT_EQ(next->prefix, "1");
  const Route* last = c->routes.OverflowOf(*next);
  ASSERT_NE(last, nullptr);
  EXPECT_EQ(last->prefix, "");
  EXPECT_EQ(c->routes.OverflowOf(*last), nullptr);
  EXPECT_THAT(ErrorOf("routes:\n  - prefix: '1'\n    next_hops: ['sip:192.0.2.2']\n"
                      "    overflow_to: '44'\n"),
              HasSubstr("routes[0].overflow_to: no route has prefix '44'"));
  EXPECT_THAT(ErrorOf("routes:\n  - prefix: '1'\n    next_hops: ['sip:192.0.2.2']\n"
                      "    overflow_to: '1'\n"),
              HasSubstr("cannot overflow to itself"));
}

}  // namespace
}  // namespace b2bua

namespace b2bua {
namespace {

TEST(TlsConfigTest, SectionAndTlsNextHops) {
  std::shared_ptr<const Config> c = MustParse(R"(
tls:
  listen: "127.0.0.1:5061"
  certificate: /etc/b2bua/cert.pem
  private_key: /etc/b2bua/key.pem
  ca: /etc/b2bua/ca.pem
  verify_peer: true
  min_version: "1.3"
  handshake_timeout: 2s
routes:
  - prefix: ""
    next_hops: ["sips:trunk.example.net", "sip:192.0.2.1;transport=tls",
                "sip:192.0.2.2:5070;transport=TLS"]
)");
  EXPECT_TRUE(c->tls.enabled());
  EXPECT_EQ(c->tls.listen, "127.0.0.1:5061");
  EXPECT_EQ(c->tls.settings.certificate, "/etc/b2bua/cert.pem");
  EXPECT_EQ(c->tls.settings.private_key, "/etc/b2bua/key.pem");
  EXPECT_EQ(c->tls.settings.ca, "/etc/b2bua/ca.pem");
  EXPECT_TRUE(c->tls.settings.verify_peer);
  EXPECT_EQ(c->tls.settings.min_version, "1.3");
  EXPECT_EQ(c->tls.handshake_timeout, std::chrono::seconds(2));
  const std::vector<NextHop>& hops = c->routes.routes().at(0).next_hops;
  ASSERT_EQ(hops.size(), 3u);
  for (const NextHop& hop : hops) EXPECT_EQ(hop.transport, proto::TransportKind::kTls) << hop.uri;
  EXPECT_EQ(hops[0].port, 5061);
  EXPECT_EQ(hops[1].port, 5061);
  EXPECT_EQ(hops[2].port, 5070);
  EXPECT_FALSE(MustParse("")->tls.enabled());
  EXPECT_THAT(ErrorOf("tls: { certificate: a.pem, private_key: b.pem }\n"),
              HasSubstr("tls: needs listen"));
  EXPECT_THAT(ErrorOf("tls: { listen: '127.0.0.1:5061', certificate: a.pem }\n"),
              HasSubstr("tls: needs private_key"));
  EXPECT_THAT(ErrorOf("tls: { listen: 'localhost', certificate: a, private_key: b }\n"),
              HasSubstr("is not IP:PORT"));
  EXPECT_THAT(ErrorOf("tls: { listen: '127.0.0.1:5061', certificate: a, private_key: b, "
                      "min_version: '1.1' }\n"),
              HasSubstr("is not one of: 1.2, 1.3"));
}

}  // namespace
}  // namespace b2bua
