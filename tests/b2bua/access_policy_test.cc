// Tests b2bua/access_policy.{h,cc}: the trust domain, callers, Request-URI relay and the
// scanner list.

#include "b2bua/access_policy.h"

#include <string>
#include <string_view>

#include "gtest/gtest.h"

namespace b2bua {
namespace {

proto::NetAddress Ip(std::string_view text, uint16_t port = 5060) {
  proto::NetAddress address;
  EXPECT_TRUE(proto::NetAddress::ParseIp(text, port, &address)) << text;
  return address;
}

proto::CidrList List(std::vector<std::string> texts) {
  absl::StatusOr<proto::CidrList> list = proto::CidrList::Parse(texts);
  EXPECT_TRUE(list.ok()) << list.status();
  return list.ok() ? *list : proto::CidrList();
}

TEST(AccessConfigTest, DefaultsTrustLoopbackOnly) {
  AccessConfig access;
  EXPECT_TRUE(access.IsTrusted(Ip("127.0.0.1")));
  EXPECT_TRUE(access.IsTrusted(Ip("127.8.9.10")));
  EXPECT_TRUE(access.IsTrusted(Ip("::1")));
  EXPECT_FALSE(access.IsTrusted(Ip("192.0.2.1")));
  EXPECT_FALSE(access.IsCaller(Ip("192.0.2.1")));
  EXPECT_FALSE(access.IsCaller(Ip("2001:db8::1")));
  EXPECT_TRUE(access.MayRelayToRequestUri(Ip("127.0.0.1")));
  EXPECT_FALSE(access.MayRelayToRequestUri(Ip("192.0.2.1")));
}

TEST(AccessConfigTest, TrustedSourcesAreAlwaysCallers) {
  AccessConfig access;
  access.trusted = List({"10.0.0.0/8"});
  access.callers = List({"192.0.2.0/24"});
  EXPECT_TRUE(access.IsCaller(Ip("10.1.1.1")));
  EXPECT_TRUE(access.IsCaller(Ip("192.0.2.7")));
  EXPECT_FALSE(access.IsCaller(Ip("198.51.100.1")));
  EXPECT_FALSE(access.IsTrusted(Ip("192.0.2.7")));
}

TEST(AccessConfigTest, RelayModes) {
  AccessConfig access;
  access.trusted = List({"127.0.0.1/32"});
  access.callers = List({"127.0.0.0/8"});
  access.relay_to_request_uri = RequestUriRelay::kTrusted;
  EXPECT_TRUE(access.MayRelayToRequestUri(Ip("127.0.0.1")));
  EXPECT_FALSE(access.MayRelayToRequestUri(Ip("127.0.0.2")));
  access.relay_to_request_uri = RequestUriRelay::kNobody;
  EXPECT_FALSE(access.MayRelayToRequestUri(Ip("127.0.0.1")));
  access.relay_to_request_uri = RequestUriRelay::kAnyone;
  EXPECT_TRUE(access.MayRelayToRequestUri(Ip("127.0.0.2")));
}

TEST(ScannerListTest, DefaultListMatchesTheKnownToolsInAnyCase) {
  ScannerList list;
  std::string scratch;
  EXPECT_TRUE(list.Matches("friendly-scanner", &scratch));
  EXPECT_TRUE(list.Matches("Friendly-Scanner 1.0", &scratch));
  EXPECT_TRUE(list.Matches("sipvicious/0.3.3", &scratch));
  EXPECT_TRUE(list.Matches("SIPVicious", &scratch));
  EXPECT_TRUE(list.Matches("VaxSIPUserAgent/3.1", &scratch));
  EXPECT_TRUE(list.Matches("pplsip", &scratch));
  EXPECT_TRUE(list.Matches("x sundayddr y", &scratch));
  EXPECT_FALSE(list.Matches("Linphone/5.0", &scratch));
  EXPECT_FALSE(list.Matches("sipp", &scratch));
  EXPECT_FALSE(list.Matches("", &scratch));
  EXPECT_EQ(list.patterns().size(), 11u);
}

TEST(ScannerListTest, OwnListAndEmptyList) {
  ScannerList own({"EvilDialer"});
  std::string scratch;
  EXPECT_TRUE(own.Matches("the evildialer 2", &scratch));
  EXPECT_FALSE(own.Matches("friendly-scanner", &scratch));
  ScannerList none(std::vector<std::string>{});
  EXPECT_TRUE(none.empty());
  EXPECT_FALSE(none.Matches("friendly-scanner", &scratch));
}

}  // namespace
}  // namespace b2bua
