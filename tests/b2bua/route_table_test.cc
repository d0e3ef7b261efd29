// Tests b2bua/route_table.{h,cc}: longest-prefix routing on the Request-URI user, '+'
// prefixes, visual separators, the default route, overflow and load carried over a reload.

#include "b2bua/route_table.h"

#include <string>
#include <vector>

#include "b2bua/config.h"
#include "gtest/gtest.h"

namespace b2bua {
namespace {

Route Named(std::string prefix, std::string overflow_to = "-") {
  Route route;
  route.prefix = std::move(prefix);
  if (overflow_to != "-") route.overflow_to = std::move(overflow_to);
  return route;
}

// Tables are built the way the product builds them: from a config file.
std::shared_ptr<const Config> MustParse(std::string_view yaml) {
  absl::StatusOr<std::shared_ptr<const Config>> config = ParseConfig(yaml, "b2bua.yaml");
  EXPECT_TRUE(config.ok()) << config.status().ToString();
  if (!config.ok()) return std::make_shared<const Config>();
  return *config;
}

std::string RoutePrefix(const Route* route) { return route ? route->prefix : "<none>"; }

const char kRoutes[] =
    "routes:\n"
    "  - prefix: ''\n    next_hops: ['sip:192.0.2.1']\n"
    "  - prefix: '1'\n    next_hops: ['sip:192.0.2.2']\n"
    "  - prefix: '1555'\n    next_hops: ['sip:192.0.2.3']\n"
    "  - prefix: '+1'\n    next_hops: ['sip:192.0.2.4']\n"
    "  - prefix: '+1555'\n    next_hops: ['sip:192.0.2.5']\n"
    "  - prefix: '44'\n    next_hops: ['sip:192.0.2.6']\n"
    "  - prefix: '+4420'\n    next_hops: ['sip:192.0.2.7']\n";

TEST(RouteTableTest, LongestPrefixWins) {
  std::shared_ptr<const Config> c = MustParse(kRoutes);
  const RouteTable& t = c->routes;
  EXPECT_EQ(RoutePrefix(t.Match("15551234")), "1555");
  EXPECT_EQ(RoutePrefix(t.Match("1212")), "1");
  EXPECT_EQ(RoutePrefix(t.Match("1")), "1");
  EXPECT_EQ(RoutePrefix(t.Match("155")), "1");
  EXPECT_EQ(RoutePrefix(t.Match("4412")), "44");
  EXPECT_EQ(RoutePrefix(t.Match("9")), "");
}

TEST(RouteTableTest, PlusPrefixesMatchOnlyGlobalNumbers) {
  std::shared_ptr<const Config> c = MustParse(kRoutes);
  const RouteTable& t = c->routes;
  EXPECT_EQ(RoutePrefix(t.Match("+15551234")), "+1555");
  EXPECT_EQ(RoutePrefix(t.Match("+12125550100")), "+1");  // "+1" beats the equally long "1"
  EXPECT_EQ(RoutePrefix(t.Match("+4420123")), "+4420");
  // A prefix without '+' matches the digits after the '+'.
  EXPECT_EQ(RoutePrefix(t.Match("+4412")), "44");
  EXPECT_EQ(RoutePrefix(t.Match("+9")), "");
  // Without '+', the '+' prefixes never match.
  EXPECT_EQ(RoutePrefix(t.Match("4420123")), "44");
}

TEST(RouteTableTest, LongerPlainPrefixBeatsShorterPlusPrefix) {
  std::shared_ptr<const Config> c = MustParse(
      "routes:\n  - prefix: '+1'\n    next_hops: ['sip:192.0.2.1']\n"
      "  - prefix: '1555'\n    next_hops: ['sip:192.0.2.2']\n"
      "  - prefix: '+'\n    next_hops: ['sip:192.0.2.3']\n");
  const RouteTable& t = c->routes;
  EXPECT_EQ(RoutePrefix(t.Match("+15550100")), "1555");
  EXPECT_EQ(RoutePrefix(t.Match("+12120100")), "+1");
  EXPECT_EQ(RoutePrefix(t.Match("+4420")), "+");  // "+" alone: any global number
  EXPECT_EQ(RoutePrefix(t.Match("15550100")), "1555");
  EXPECT_EQ(RoutePrefix(t.Match("4420")), "<none>");
}

TEST(RouteTableTest, VisualSeparatorsAreIgnored) {
  std::shared_ptr<const Config> c = MustParse(kRoutes);
  const RouteTable& t = c->routes;
  EXPECT_EQ(RoutePrefix(t.Match("1-555-123-4567")), "1555");
  EXPECT_EQ(RoutePrefix(t.Match("1.555.1234")), "1555");
  EXPECT_EQ(RoutePrefix(t.Match("(1)555-1234")), "1555");
  EXPECT_EQ(RoutePrefix(t.Match("+1-555-123-4567")), "+1555");
  EXPECT_EQ(RoutePrefix(t.Match("+44-20-7946-0000")), "+4420");
}

TEST(RouteTableTest, DigitsEndAtTheFirstOtherCharacter) {
  std::shared_ptr<const Config> c = MustParse(kRoutes);
  const RouteTable& t = c->routes;
  EXPECT_EQ(RoutePrefix(t.Match("15551234;npdi")), "1555");
  EXPECT_EQ(RoutePrefix(t.Match("15a55")), "1");
  EXPECT_EQ(RoutePrefix(t.Match("1+555")), "1");
  EXPECT_EQ(RoutePrefix(t.Match("alice")), "");
  EXPECT_EQ(RoutePrefix(t.Match("")), "");
  EXPECT_EQ(RoutePrefix(t.Match("+")), "");
}

TEST(RouteTableTest, NoMatchWithoutADefaultRoute) {
  std::shared_ptr<const Config> c =
      MustParse("routes:\n  - prefix: '+1555'\n    next_hops: ['sip:192.0.2.1']\n");
  const RouteTable& t = c->routes;
  EXPECT_EQ(t.Match("15551234"), nullptr);
  EXPECT_EQ(t.Match("+1212"), nullptr);
  EXPECT_EQ(t.Match("alice"), nullptr);
  EXPECT_EQ(RoutePrefix(t.Match("+15551234")), "+1555");
  EXPECT_EQ(RouteTable().Match("+15551234"), nullptr);
}

TEST(RouteTableTest, RoutesKeepTheirFileOrderAndLines) {
  std::shared_ptr<const Config> c = MustParse(kRoutes);
  const std::vector<Route>& routes = c->routes.routes();
  ASSERT_EQ(routes.size(), 7u);
  EXPECT_EQ(routes[0].prefix, "");
  EXPECT_EQ(routes[0].line, 2);
  EXPECT_EQ(routes[6].prefix, "+4420");
  EXPECT_EQ(routes[6].line, 14);
  EXPECT_EQ(c->routes.Match("+4420123"), &routes[6]);
}

TEST(RouteTableTest, DeepestMatchWinsOverEveryShorterOne) {
  std::shared_ptr<const Config> c = MustParse(
      "routes:\n  - prefix: ''\n    next_hops: ['sip:192.0.2.1']\n"
      "  - prefix: '1'\n    next_hops: ['sip:192.0.2.2']\n"
      "  - prefix: '+1'\n    next_hops: ['sip:192.0.2.3']\n"
      "  - prefix: '1900'\n    next_hops: ['sip:192.0.2.4']\n");
  EXPECT_EQ(RoutePrefix(c->routes.Match("+19005551234")), "1900");
  EXPECT_EQ(RoutePrefix(c->routes.Match("+12125550100")), "+1");
  EXPECT_EQ(RoutePrefix(c->routes.Match("12125550100")), "1");
  EXPECT_EQ(RoutePrefix(c->routes.Match("2125550100")), "");
}

// A reload hands a route's live call count to the route of the same prefix.
TEST(RouteTableTest, ReloadCarriesRouteLoadOver) {
  const std::string text =
      "routes:\n  - prefix: '1900'\n    next_hops: ['sip:192.0.2.4']\n    max_calls: 2\n";
  std::shared_ptr<const Config> first = MustParse(text);
  ASSERT_TRUE(first->routes.Match("1900")->load->calls.TryAcquire(2));
  absl::StatusOr<std::shared_ptr<const Config>> second =
      ParseConfig(text, "b2bua.yaml", first.get());
  ASSERT_TRUE(second.ok());
  EXPECT_EQ((*second)->routes.Match("1900")->load.get(), first->routes.Match("1900")->load.get());
  EXPECT_EQ((*second)->routes.Match("1900")->load->calls.active(), 1u);
  // Without the previous config, a fresh count.
  EXPECT_EQ(MustParse(text)->routes.Match("1900")->load->calls.active(), 0u);
}

TEST(RouteTableTest, DefaultRouteTakesWhatNothingElseMatches) {
  RouteTable table({Named(""), Named("800")});
  EXPECT_EQ(RoutePrefix(table.Match("8005550100")), "800");
  EXPECT_EQ(RoutePrefix(table.Match("+4420")), "");
  EXPECT_EQ(RoutePrefix(table.Match("alice")), "") << "even a user without digits";
  EXPECT_EQ(RoutePrefix(table.Match("")), "");
  EXPECT_FALSE(table.empty());
  EXPECT_TRUE(RouteTable().empty());
  EXPECT_EQ(RouteTable().Match("1"), nullptr);
}

TEST(RouteTableTest, ALaterDuplicatePrefixIsIgnored) {
  Route first = Named("1");
  first.max_calls = 1;
  Route second = Named("1");
  second.max_calls = 2;
  RouteTable table({first, second});
  ASSERT_NE(table.Match("123"), nullptr);
  EXPECT_EQ(table.Match("123")->max_calls, 1u);
}

TEST(RouteTableTest, OverflowNamesAnotherRouteOrNothing) {
  RouteTable table({Named("9", "99"), Named("99"), Named("7", ""), Named(""), Named("8", "5")});
  const Route* nine = table.Match("9123");
  ASSERT_NE(nine, nullptr);
  ASSERT_NE(table.OverflowOf(*nine), nullptr);
  EXPECT_EQ(table.OverflowOf(*nine)->prefix, "99");
  EXPECT_EQ(table.OverflowOf(*table.Match("7000"))->prefix, "") << "to the default route";
  EXPECT_EQ(table.OverflowOf(*table.Match("8000")), nullptr) << "no route '5'";
  EXPECT_EQ(table.OverflowOf(*table.Match("9912")), nullptr) << "none set";
  const Route stranger = Named("9", "99");
  EXPECT_EQ(table.OverflowOf(stranger), nullptr) << "not a route of this table";
}

}  // namespace
}  // namespace b2bua
