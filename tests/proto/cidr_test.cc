// Tests proto/cidr.{h,cc}: prefixes of both families, IPv4-mapped addresses, the text
// refused at config load, and the CidrList the access policy asks per packet.

#include "proto/cidr.h"

#include <string>
#include <string_view>
#include <vector>

#include "gtest/gtest.h"
#include "proto/net_address.h"

namespace b2bua::proto {
namespace {

NetAddress Ip(std::string_view text, uint16_t port = 5060) {
  NetAddress address;
  EXPECT_TRUE(NetAddress::ParseIp(text, port, &address)) << text;
  return address;
}

Cidr ParsedCidr(std::string_view text) {
  Cidr cidr;
  EXPECT_TRUE(Cidr::Parse(text, &cidr)) << text;
  return cidr;
}

bool ParseFails(std::string_view text) {
  Cidr cidr;
  return !Cidr::Parse(text, &cidr);
}

TEST(CidrTest, Ipv4Prefixes) {
  Cidr ten = ParsedCidr("10.0.0.0/8");
  EXPECT_FALSE(ten.is_v6());
  EXPECT_EQ(ten.prefix_length(), 8);
  EXPECT_TRUE(ten.Contains(Ip("10.0.0.0")));
  EXPECT_TRUE(ten.Contains(Ip("10.255.255.255")));
  EXPECT_FALSE(ten.Contains(Ip("11.0.0.0")));
  EXPECT_FALSE(ten.Contains(Ip("9.255.255.255")));
  // Not on a byte boundary.
  Cidr cgnat = ParsedCidr("100.64.0.0/10");
  EXPECT_TRUE(cgnat.Contains(Ip("100.127.255.255")));
  EXPECT_FALSE(cgnat.Contains(Ip("100.128.0.0")));
  EXPECT_FALSE(cgnat.Contains(Ip("100.63.255.255")));
  // The port never matters.
  EXPECT_TRUE(ten.Contains(Ip("10.1.2.3", 0)));
  EXPECT_TRUE(ten.Contains(Ip("10.1.2.3", 65535)));
}

TEST(CidrTest, Ipv4ZeroAndHostPrefixes) {
  Cidr all = ParsedCidr("0.0.0.0/0");
  EXPECT_EQ(all.prefix_length(), 0);
  EXPECT_TRUE(all.Contains(Ip("0.0.0.0")));
  EXPECT_TRUE(all.Contains(Ip("255.255.255.255")));
  EXPECT_TRUE(all.Contains(Ip("::ffff:192.0.2.1")));  // IPv4-mapped counts as IPv4
  EXPECT_FALSE(all.Contains(Ip("2001:db8::1")));

  Cidr host = ParsedCidr("192.0.2.1/32");
  EXPECT_TRUE(host.Contains(Ip("192.0.2.1")));
  EXPECT_FALSE(host.Contains(Ip("192.0.2.0")));
  EXPECT_FALSE(host.Contains(Ip("192.0.2.2")));
  EXPECT_EQ(ParsedCidr("192.0.2.1"), host);  // a bare address is a host prefix
}

TEST(CidrTest, Ipv6Prefixes) {
  Cidr doc = ParsedCidr("2001:db8::/32");
  EXPECT_TRUE(doc.is_v6());
  EXPECT_EQ(doc.prefix_length(), 32);
  EXPECT_TRUE(doc.Contains(Ip("2001:db8::1")));
  EXPECT_TRUE(doc.Contains(Ip("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")));
  EXPECT_FALSE(doc.Contains(Ip("2001:db9::")));
  EXPECT_FALSE(doc.Contains(Ip("10.0.0.1")));
  EXPECT_EQ(ParsedCidr("[2001:db8::]/32"), doc);

  Cidr odd = ParsedCidr("2001:db8:8000::/33");
  EXPECT_TRUE(odd.Contains(Ip("2001:db8:8000::1")));
  EXPECT_FALSE(odd.Contains(Ip("2001:db8:7fff::1")));
}

TEST(CidrTest, Ipv6ZeroAndHostPrefixes) {
  Cidr all = ParsedCidr("::/0");
  EXPECT_TRUE(all.Contains(Ip("::")));
  EXPECT_TRUE(all.Contains(Ip("2001:db8::1")));
  EXPECT_TRUE(all.Contains(Ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
  // IPv4, plain or mapped, is not IPv6 here.
  EXPECT_FALSE(all.Contains(Ip("10.0.0.1")));
  EXPECT_FALSE(all.Contains(Ip("::ffff:10.0.0.1")));

  Cidr host = ParsedCidr("2001:db8::1/128");
  EXPECT_TRUE(host.Contains(Ip("2001:db8::1")));
  EXPECT_TRUE(host.Contains(Ip("2001:DB8:0:0::1")));
  EXPECT_FALSE(host.Contains(Ip("2001:db8::2")));
  EXPECT_FALSE(host.Contains(Ip("2001:db8::")));
}

TEST(CidrTest, MappedAddressesAreIpv4) {
  // A deny of 10/8 must catch "sip:x@[::ffff:10.0.0.1]".
  Cidr ten = ParsedCidr("10.0.0.0/8");
  EXPECT_TRUE(ten.Contains(Ip("::ffff:10.0.0.1")));
  EXPECT_FALSE(ten.Contains(Ip("::ffff:11.0.0.1")));
  // A prefix written in mapped form is the IPv4 prefix it denotes.
  Cidr mapped = ParsedCidr("::ffff:10.0.0.0/104");
  EXPECT_FALSE(mapped.is_v6());
  EXPECT_EQ(mapped.prefix_length(), 8);
  EXPECT_EQ(mapped, ten);
  EXPECT_TRUE(mapped.Contains(Ip("10.2.3.4")));
  // The whole mapped block is all of IPv4.
  EXPECT_EQ(ParsedCidr("::ffff:0:0/96"), ParsedCidr("0.0.0.0/0"));
  // Shorter than /96 it reaches past the mapped block and stays IPv6.
  EXPECT_TRUE(ParsedCidr("::/80").is_v6());
}

TEST(CidrTest, RejectsBadText) {
  EXPECT_TRUE(ParseFails(""));
  EXPECT_TRUE(ParseFails("/8"));
  EXPECT_TRUE(ParseFails("example.com/8"));
  EXPECT_TRUE(ParseFails("10.0.0.0/"));
  EXPECT_TRUE(ParseFails("10.0.0.0/x"));
  EXPECT_TRUE(ParseFails("10.0.0.0/-1"));
  EXPECT_TRUE(ParseFails("10.0.0.0/33"));
  EXPECT_TRUE(ParseFails("10.0.0.0/0008"));
  EXPECT_TRUE(ParseFails("10.0.0.0/8/8"));
  EXPECT_TRUE(ParseFails("::/129"));
  // Bits past the length: most likely a typo, refused at load.
  EXPECT_TRUE(ParseFails("10.0.0.1/8"));
  EXPECT_TRUE(ParseFails("2001:db8::1/64"));
  EXPECT_TRUE(ParseFails("10.0.0.0 /8"));
}

// ---------------------------------------------------------------------------------------
// Domains.

TEST(CidrTest, PrintsItself) {
  EXPECT_EQ(ParsedCidr("10.0.0.0/8").ToString(), "10.0.0.0/8");
  EXPECT_EQ(ParsedCidr("192.0.2.1").ToString(), "192.0.2.1/32");
  EXPECT_EQ(ParsedCidr("2001:db8::/32").ToString(), "2001:db8::/32");  // RFC 5952
  EXPECT_EQ(ParsedCidr("[fe80::]/10").ToString(), "fe80::/10");
  EXPECT_EQ(ParsedCidr("::ffff:10.0.0.0/104").ToString(), "10.0.0.0/8");
}

// CidrList answers exactly what the prefixes it holds answer, one by one.
TEST(CidrListTest, AgreesWithItsPrefixes) {
  const std::vector<std::string> texts = {"10.0.0.0/8", "192.0.2.128/25", "100.64.0.0/10",
                                          "2001:db8::/32", "2001:db8:8000::1/128", "fe80::/10"};
  absl::StatusOr<CidrList> list = CidrList::Parse(texts);
  ASSERT_TRUE(list.ok()) << list.status();
  const std::vector<std::string_view> probes = {
      "10.0.0.1",     "11.0.0.1",         "192.0.2.127", "192.0.2.128",  "192.0.2.255",
      "100.127.0.1",  "100.128.0.1",      "2001:db8::1", "2001:db9::1",  "fe80::1",
      "febf::1",      "fec0::1",          "::ffff:10.1.2.3", "::ffff:11.1.2.3", "::1",
      "2001:db8:8000::1", "0.0.0.0", "255.255.255.255"};
  for (std::string_view probe : probes) {
    bool any = false;
    for (const Cidr& c : list->cidrs()) any = any || c.Contains(Ip(probe));
    EXPECT_EQ(list->Contains(Ip(probe)), any) << probe;
  }
  EXPECT_TRUE(list->Contains(Ip("10.9.9.9")));
  EXPECT_FALSE(list->Contains(Ip("9.9.9.9")));
  EXPECT_TRUE(list->Contains(Ip("::ffff:10.1.2.3")));  // mapped counts as IPv4
}

TEST(CidrListTest, EverythingAndNothing) {
  absl::StatusOr<CidrList> all = CidrList::Parse({"0.0.0.0/0", "::/0"});
  ASSERT_TRUE(all.ok());
  EXPECT_TRUE(all->Contains(Ip("203.0.113.9")));
  EXPECT_TRUE(all->Contains(Ip("2001:db8::9")));
  CidrList none;
  EXPECT_TRUE(none.empty());
  EXPECT_FALSE(none.Contains(Ip("127.0.0.1")));
}

TEST(CidrTest, ParseOrExplainSaysWhatIsWrong) {
  struct Case {
    std::string_view text;
    std::string_view error;  // empty: parses
  };
  const Case cases[] = {
      {"10.0.0.0/8", ""},
      {"[2001:db8::]/32", ""},
      {"10.0.0.0/33", "'10.0.0.0/33': the prefix length must be 0..32"},
      {"fe80::/129", "'fe80::/129': the prefix length must be 0..128"},
      {"10.0.0.0/", "'10.0.0.0/': the prefix length must be 0..32"},
      {"[10.0.0.0]/8", "'[10.0.0.0]/8' is not a CIDR (expected an IPv4 or IPv6 address, then "
                       "'/' and a prefix length)"},
      {"10.0.0.1/8", "'10.0.0.1/8' has bits set after the /8 prefix (host bits must be zero)"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<Cidr> cidr = Cidr::ParseOrExplain(c.text);
    if (c.error.empty()) {
      EXPECT_TRUE(cidr.ok()) << c.text << ": " << cidr.status();
    } else {
      ASSERT_FALSE(cidr.ok()) << c.text;
      EXPECT_EQ(std::string(cidr.status().message()), c.error);
    }
    Cidr plain;
    EXPECT_EQ(Cidr::Parse(c.text, &plain), c.error.empty()) << c.text;
  }
}

TEST(CidrListTest, ParseNamesTheBadEntry) {
  absl::StatusOr<CidrList> list = CidrList::Parse({"10.0.0.0/8", "10.0.0.1/8"});
  ASSERT_FALSE(list.ok());
  EXPECT_NE(list.status().message().find("10.0.0.1/8"), std::string_view::npos)
      << list.status();
}

}  // namespace
}  // namespace b2bua::proto
