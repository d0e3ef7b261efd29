// Tests proto/sip_uri_compare.{h,cc}: RFC 3261 19.1.4 equivalence and the canonical key.

#include "proto/sip_uri_compare.h"

#include <string>
#include <string_view>
#include <vector>

#include "gtest/gtest.h"
#include "proto/sip_uri.h"

namespace b2bua::proto {
namespace {

SipUri Parsed(std::string_view text) {
  SipUri uri;
  UriError error = ParseUri(text, &uri);
  EXPECT_EQ(error, UriError::kNone) << text << ": " << UriErrorText(error);
  return uri;
}

bool Equivalent(std::string_view a, std::string_view b) {
  return SipUriEquivalent(Parsed(a), Parsed(b));
}

std::string Key(std::string_view text) { return NormalizeSipUri(Parsed(text)); }

// Checks both directions: equivalence is symmetric.
void ExpectEquivalent(std::string_view a, std::string_view b) {
  EXPECT_TRUE(Equivalent(a, b)) << a << " vs " << b;
  EXPECT_TRUE(Equivalent(b, a)) << b << " vs " << a;
  // The key is never finer than equivalence.
  EXPECT_EQ(Key(a), Key(b)) << a << " vs " << b;
}

void ExpectNotEquivalent(std::string_view a, std::string_view b) {
  EXPECT_FALSE(Equivalent(a, b)) << a << " vs " << b;
  EXPECT_FALSE(Equivalent(b, a)) << b << " vs " << a;
}

// ---------------------------------------------------------------------------------------
// The examples of RFC 3261 19.1.4.

TEST(SipUriEquivalentTest, Rfc3261EquivalentExamples) {
  ExpectEquivalent("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp");
  // Parameters present in only one URI are ignored (and the relation is not transitive:
  // the two with a parameter are each equivalent to the bare one).
  ExpectEquivalent("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5");
  ExpectEquivalent("sip:carol@chicago.com", "sip:carol@chicago.com;security=on");
  ExpectEquivalent("sip:carol@chicago.com;newparam=5", "sip:carol@chicago.com;security=on");
  ExpectEquivalent("sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
                   "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com");
  ExpectEquivalent("sip:alice@atlanta.com?subject=project%20x&priority=urgent",
                   "sip:alice@atlanta.com?priority=urgent&subject=project%20x");
}

TEST(SipUriEquivalentTest, Rfc3261NonEquivalentExamples) {
  // Different usernames: userinfo is case-sensitive.
  ExpectNotEquivalent("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP");
  // Can resolve to different ports.
  ExpectNotEquivalent("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060");
  // Can resolve to different transports.
  ExpectNotEquivalent("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp");
  // Can resolve to different ports and transports.
  ExpectNotEquivalent("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp");
  // Different header component.
  ExpectNotEquivalent("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting");
  // Even though that is what phone21.boxesbybob.com resolves to.
  ExpectNotEquivalent("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4");
}

TEST(SipUriEquivalentTest, Rfc3261NonEquivalentExamplesHaveDifferentKeys) {
  // Every non-equivalent pair of 19.1.4 differs in a component the key holds.
  EXPECT_NE(Key("SIP:ALICE@AtLanTa.CoM;Transport=udp"), Key("sip:alice@AtLanTa.CoM;Transport=UDP"));
  EXPECT_NE(Key("sip:bob@biloxi.com"), Key("sip:bob@biloxi.com:5060"));
  EXPECT_NE(Key("sip:bob@biloxi.com"), Key("sip:bob@biloxi.com;transport=udp"));
  EXPECT_NE(Key("sip:bob@biloxi.com"), Key("sip:bob@biloxi.com:6000;transport=tcp"));
  EXPECT_NE(Key("sip:carol@chicago.com"), Key("sip:carol@chicago.com?Subject=next%20meeting"));
  EXPECT_NE(Key("sip:bob@phone21.boxesbybob.com"), Key("sip:bob@192.0.2.4"));
}

// ---------------------------------------------------------------------------------------
// Components.

TEST(SipUriEquivalentTest, SipNeverEqualsSips) {
  ExpectNotEquivalent("sip:alice@atlanta.com", "sips:alice@atlanta.com");
  ExpectEquivalent("SIPS:alice@atlanta.com", "sips:alice@atlanta.com");
}

TEST(SipUriEquivalentTest, UserinfoIsCaseSensitiveAfterUnescaping) {
  ExpectEquivalent("sip:%61%6C%69ce@h.example", "sip:alice@h.example");
  ExpectEquivalent("sip:%61lice@h.example", "sip:%61lice@h.example");
  ExpectNotEquivalent("sip:Alice@h.example", "sip:alice@h.example");
  ExpectEquivalent("sip:alice:secret@h.example", "sip:alice:%73ecret@h.example");
  ExpectNotEquivalent("sip:alice:secret@h.example", "sip:alice:Secret@h.example");
  ExpectNotEquivalent("sip:alice:secret@h.example", "sip:alice@h.example");
  ExpectNotEquivalent("sip:h.example", "sip:alice@h.example");
}

TEST(SipUriEquivalentTest, ReservedCharactersDifferFromTheirEscapes) {
  // ";" is reserved: "a%3Bb" is not "a;b" (RFC 3261 19.1.4); hex digits are case-free.
  ExpectNotEquivalent("sip:a%3Bb@h.example", "sip:a;b@h.example");
  EXPECT_NE(Key("sip:a%3Bb@h.example"), Key("sip:a;b@h.example"));
  ExpectEquivalent("sip:a%3bb@h.example", "sip:a%3Bb@h.example");
  // '%' itself stays escaped, so "%2541" never collides with "%41" ("A").
  ExpectNotEquivalent("sip:%2541@h.example", "sip:%41@h.example");
  EXPECT_NE(Key("sip:%2541@h.example"), Key("sip:%41@h.example"));
}

TEST(SipUriEquivalentTest, IpLiteralsCompareByValue) {
  // RFC 5118 4.3.
  ExpectEquivalent("sip:bob@[2001:db8::9:1]", "sip:bob@[2001:db8::9:01]");
  ExpectEquivalent("sip:bob@[2001:DB8::9:1]", "sip:bob@[2001:0db8:0:0:0:0:9:1]");
  ExpectEquivalent("sip:bob@192.0.2.1", "sip:bob@192.0.2.01");
  ExpectNotEquivalent("sip:bob@[::ffff:192.0.2.1]", "sip:bob@192.0.2.1");
  ExpectNotEquivalent("sip:bob@[2001:db8::1]", "sip:bob@[2001:db8::2]");
}

TEST(SipUriEquivalentTest, AbsentPortDiffersFromEveryPort) {
  ExpectNotEquivalent("sips:bob@biloxi.com", "sips:bob@biloxi.com:5061");
  ExpectEquivalent("sip:bob@biloxi.com:5070", "sip:bob@BILOXI.com:5070");
  ExpectNotEquivalent("sip:bob@biloxi.com:5070", "sip:bob@biloxi.com:5071");
}

TEST(SipUriEquivalentTest, SignificantParametersMustBeInBoth) {
  for (std::string_view param : {";user=phone", ";ttl=15", ";method=INVITE",
                                 ";maddr=239.255.255.1", ";transport=tcp"}) {
    std::string with = "sip:+15551234@gw.example" + std::string(param);
    ExpectNotEquivalent("sip:+15551234@gw.example", with);
    ExpectEquivalent(with, with);
  }
  ExpectNotEquivalent("sip:b@h.example;ttl=1", "sip:b@h.example;ttl=2");
  ExpectEquivalent("sip:b@h.example;METHOD=invite;lr", "sip:b@h.example;lr;method=INVITE");
  // A flag never equals a valued parameter of the same name.
  ExpectNotEquivalent("sip:b@h.example;x", "sip:b@h.example;x=1");
}

TEST(SipUriEquivalentTest, OtherParametersCompareOnlyWhenInBoth) {
  ExpectEquivalent("sip:b@h.example;lr", "sip:b@h.example");
  ExpectEquivalent("sip:b@h.example;foo=Bar", "sip:b@h.example;FOO=bar");
  ExpectNotEquivalent("sip:b@h.example;foo=1", "sip:b@h.example;foo=2");
  // The first occurrence of a repeated name counts.
  ExpectEquivalent("sip:b@h.example;transport=tcp;transport=udp", "sip:b@h.example;transport=tcp");
}

TEST(SipUriEquivalentTest, HeadersCompareAsMultisets) {
  ExpectEquivalent("sip:b@h.example?Subject=hi&Priority=urgent",
                   "sip:b@h.example?priority=urgent&subject=hi");
  ExpectEquivalent("sip:b@h.example?s=hi", "sip:b@h.example?Subject=hi");
  ExpectEquivalent("sip:b@h.example?subject=h%69", "sip:b@h.example?subject=hi");
  // Values keep their case.
  ExpectNotEquivalent("sip:b@h.example?subject=Hi", "sip:b@h.example?subject=hi");
  ExpectNotEquivalent("sip:b@h.example?a=1&a=1&b=2", "sip:b@h.example?a=1&b=2&b=2");
  ExpectNotEquivalent("sip:b@h.example?a=1", "sip:b@h.example?a=1&a=1");
  EXPECT_NE(Key("sip:b@h.example?a=1&a=1&b=2"), Key("sip:b@h.example?a=1&b=2&b=2"));
}

TEST(SipUriEquivalentTest, TelUrisFollowRfc3966) {
  ExpectEquivalent("tel:+1-201-555-0123", "tel:+12015550123");
  ExpectEquivalent("tel:+1(201)555.0123", "TEL:+12015550123");
  ExpectEquivalent("tel:7042;phone-context=Example.com;ext=1",
                   "tel:7042;ext=1;phone-context=example.com");
  ExpectNotEquivalent("tel:7042;phone-context=example.com", "tel:7042");
  ExpectNotEquivalent("tel:+12015550123", "tel:+12015550124");
  ExpectNotEquivalent("tel:+12015550123", "sip:+12015550123@gw.example");
}

TEST(SipUriEquivalentTest, OtherSchemesCompareTextually) {
  ExpectEquivalent("HTTP://www.example.com/a", "http://www.example.com/a");
  ExpectNotEquivalent("http://www.example.com/a", "http://www.example.com/A");
  ExpectNotEquivalent("http://www.example.com/a", "mailto://www.example.com/a");
}

// ---------------------------------------------------------------------------------------
// NormalizeSipUri.

TEST(NormalizeSipUriTest, ProducesTheCanonicalForm) {
  EXPECT_EQ(Key("SIP:%61lice@AtLanTa.CoM:5070;lr;Transport=TCP;x=1;maddr=[2001:DB8::1]"
                "?Subject=Hi&s=a%3db"),
            "sip:alice@atlanta.com:5070;maddr=[2001:db8::1];transport=tcp?subject=Hi&subject=a%3Db");
  EXPECT_EQ(Key("sip:bob@[2001:0db8:0:0::9:01]"), "sip:bob@[2001:db8::9:1]");
  EXPECT_EQ(Key("sip:bob@192.0.2.010"), "sip:bob@192.0.2.10");
  EXPECT_EQ(Key("sips:example.com"), "sips:example.com");
  EXPECT_EQ(Key("tel:+1-201-555-0123;Ext=12;isub=AB"), "tel:+12015550123;ext=12;isub=ab");
  EXPECT_EQ(Key("Mailto:Watson@bell.example.com"), "mailto:Watson@bell.example.com");
}

TEST(NormalizeSipUriTest, IsCoarserOnlyForParametersOutsideTheSignificantFive) {
  // Two GRUUs of one AOR share a key but are not equivalent: a tried-target memory must
  // confirm a key hit with SipUriEquivalent.
  EXPECT_EQ(Key("sip:a@x.example;gr=urn:uuid:1"), Key("sip:a@x.example;gr=urn:uuid:2"));
  ExpectNotEquivalent("sip:a@x.example;gr=urn:uuid:1", "sip:a@x.example;gr=urn:uuid:2");
}

TEST(NormalizeSipUriTest, EquivalentUrisAlwaysShareTheKey) {
  const std::vector<std::string_view> uris = {
      "sip:alice@atlanta.com",
      "sip:%61lice@ATLANTA.com",
      "sip:alice@atlanta.com;lr",
      "sip:alice@atlanta.com;foo=1",
      "sip:alice@atlanta.com;foo=2",
      "sip:alice@atlanta.com;transport=tcp",
      "sip:alice@atlanta.com;Transport=TCP;foo=3",
      "sip:alice@atlanta.com:5060",
      "sip:alice@atlanta.com?subject=x",
      "sip:alice@atlanta.com?s=x",
      "sips:alice@atlanta.com",
      "sip:alice@192.0.2.1",
      "sip:alice@192.0.2.01;user=ip",
      "sip:alice@[2001:db8::1]",
      "sip:alice@[2001:DB8:0::1];ttl=3",
      "sip:a%3Bb@h.example",
      "sip:a;b@h.example",
      "tel:+1-201-555-0123",
      "tel:+12015550123;ext=1",
  };
  for (std::string_view a : uris) {
    SipUri ua;
    if (ParseUri(a, &ua) != UriError::kNone) continue;
    for (std::string_view b : uris) {
      SipUri ub;
      if (ParseUri(b, &ub) != UriError::kNone) continue;
      if (SipUriEquivalent(ua, ub)) {
        EXPECT_EQ(NormalizeSipUri(ua), NormalizeSipUri(ub)) << a << " vs " << b;
      }
      EXPECT_EQ(SipUriEquivalent(ua, ub), SipUriEquivalent(ub, ua)) << a << " vs " << b;
    }
  }
}

TEST(NormalizeSipHostTest, CanonicalisesNamesAndAddresses) {
  EXPECT_EQ(NormalizeSipHost("B2BUA.Example.COM"), "b2bua.example.com");
  EXPECT_EQ(NormalizeSipHost("[2001:DB8:0::1]"), "2001:db8::1");
  EXPECT_EQ(NormalizeSipHost("2001:db8:0:0::1"), "2001:db8::1");
  EXPECT_EQ(NormalizeSipHost("192.0.2.001"), "192.0.2.1");
}

}  // namespace
}  // namespace b2bua::proto
