// Tests proto/sip_uri.{h,cc}: ParseUri, host and port helpers, parameter iteration.

#include "proto/sip_uri.h"

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace b2bua::proto {
namespace {

using ::testing::ElementsAre;
using ::testing::Pair;

SipUri Parsed(std::string_view text) {
  SipUri uri;
  UriError error = ParseUri(text, &uri);
  EXPECT_EQ(error, UriError::kNone) << text << ": " << UriErrorText(error);
  return uri;
}

UriError ErrorOf(std::string_view text) {
  SipUri uri;
  return ParseUri(text, &uri);
}

// ---------------------------------------------------------------------------------------
// Schemes.

TEST(ParseUriTest, ParsesPlainSipUri) {
  constexpr std::string_view kText = "sip:alice@atlanta.example.com";
  SipUri uri = Parsed(kText);
  EXPECT_EQ(uri.text, kText);
  EXPECT_EQ(uri.scheme, UriScheme::kSip);
  EXPECT_EQ(uri.scheme_text, "sip");
  EXPECT_TRUE(uri.IsSip());
  EXPECT_TRUE(uri.has_user);
  EXPECT_EQ(uri.user, "alice");
  EXPECT_TRUE(uri.password.empty());
  EXPECT_EQ(uri.host, "atlanta.example.com");
  EXPECT_EQ(uri.host_kind, HostKind::kName);
  EXPECT_EQ(uri.port, 0);
  EXPECT_TRUE(uri.params.empty());
  EXPECT_TRUE(uri.headers.empty());
  EXPECT_TRUE(uri.transport.empty());
  EXPECT_TRUE(uri.maddr.empty());
  EXPECT_FALSE(uri.lr);
}

TEST(ParseUriTest, ParsesEveryPartOfASipsUri) {
  constexpr std::string_view kText =
      "SIPS:bob:secret@192.0.2.4:5061;transport=TCP;lr;maddr=239.255.255.1;x=y"
      "?subject=project%20x&priority=urgent";
  SipUri uri = Parsed(kText);
  EXPECT_EQ(uri.text, kText);
  EXPECT_EQ(uri.scheme, UriScheme::kSips);
  EXPECT_EQ(uri.scheme_text, "SIPS");
  EXPECT_TRUE(uri.IsSip());
  EXPECT_EQ(uri.user, "bob");
  EXPECT_EQ(uri.password, "secret");
  EXPECT_EQ(uri.host, "192.0.2.4");
  EXPECT_EQ(uri.host_kind, HostKind::kIpv4);
  EXPECT_EQ(uri.port, 5061);
  EXPECT_EQ(uri.params, ";transport=TCP;lr;maddr=239.255.255.1;x=y");
  EXPECT_EQ(uri.transport, "TCP");
  EXPECT_EQ(uri.maddr, "239.255.255.1");
  EXPECT_TRUE(uri.lr);
  EXPECT_EQ(uri.headers, "subject=project%20x&priority=urgent");
}

TEST(ParseUriTest, SchemeIsCaseInsensitive) {
  EXPECT_EQ(Parsed("SIP:a@example.com").scheme, UriScheme::kSip);
  EXPECT_EQ(Parsed("Sips:a@example.com").scheme, UriScheme::kSips);
  EXPECT_EQ(Parsed("TEL:+15551234").scheme, UriScheme::kTel);
}

TEST(ParseUriTest, ParsesTelUris) {
  SipUri global = Parsed("tel:+1-201-555-0123");
  EXPECT_EQ(global.scheme, UriScheme::kTel);
  EXPECT_EQ(global.scheme_text, "tel");
  EXPECT_FALSE(global.IsSip());
  EXPECT_EQ(global.user, "+1-201-555-0123");

  SipUri local = Parsed("tel:7042;phone-context=example.com");
  EXPECT_EQ(local.scheme, UriScheme::kTel);
  EXPECT_EQ(local.user, "7042");
  EXPECT_EQ(local.params, ";phone-context=example.com");

  EXPECT_EQ(ErrorOf("tel:"), UriError::kBadTelNumber);
  EXPECT_EQ(ErrorOf("tel:+"), UriError::kBadTelNumber);
  EXPECT_EQ(ErrorOf("tel:call-me"), UriError::kBadTelNumber);
}

TEST(ParseUriTest, AcceptsOtherSchemesOpaquely) {
  // RFC 4475 unkscm/novelsc: these parse; what to do with them is the validator's call.
  SipUri unknown = Parsed("nobodyKnowsThisScheme:totallyopaquecontent");
  EXPECT_EQ(unknown.scheme, UriScheme::kOther);
  EXPECT_EQ(unknown.scheme_text, "nobodyKnowsThisScheme");
  EXPECT_FALSE(unknown.IsSip());

  SipUri beep = Parsed("soap.beep://192.0.2.103:3002");
  EXPECT_EQ(beep.scheme, UriScheme::kOther);
  EXPECT_EQ(beep.scheme_text, "soap.beep");

  EXPECT_EQ(Parsed("http://www.example.com").scheme, UriScheme::kOther);
  EXPECT_EQ(Parsed("mailto:watson@bell.example.com").scheme_text, "mailto");
  EXPECT_EQ(Parsed("isbn:2983792873").scheme, UriScheme::kOther);
}

TEST(ParseUriTest, RejectsMissingOrBadSchemes) {
  EXPECT_EQ(ErrorOf(""), UriError::kEmpty);
  EXPECT_EQ(ErrorOf("alice@example.com"), UriError::kBadScheme);
  EXPECT_EQ(ErrorOf(":alice@example.com"), UriError::kBadScheme);
  EXPECT_EQ(ErrorOf("1sip:alice@example.com"), UriError::kBadScheme);
  EXPECT_EQ(ErrorOf("s_p:alice@example.com"), UriError::kBadScheme);
}

// ---------------------------------------------------------------------------------------
// User and password.

TEST(ParseUriTest, DistinguishesEmptyAndAbsentUser) {
  SipUri none = Parsed("sip:example.com");
  EXPECT_FALSE(none.has_user);
  EXPECT_TRUE(none.user.empty());
  EXPECT_EQ(none.host, "example.com");

  SipUri empty;
  if (ParseUri("sip:@example.com", &empty) == UriError::kNone) {
    EXPECT_TRUE(empty.has_user);
    EXPECT_TRUE(empty.user.empty());
    EXPECT_EQ(empty.host, "example.com");
  }
}

TEST(ParseUriTest, KeepsUserEscapesAndUnreservedCharacters) {
  EXPECT_EQ(Parsed("sip:%75se%72@example.com").user, "%75se%72");
  EXPECT_EQ(Parsed("sips:sips%3Auser%40example.com@example.net").user, "sips%3Auser%40example.com");
  EXPECT_EQ(Parsed("sip:null-%00-null@example.com").user, "null-%00-null");
  // user-unreserved: & = + $ , ; ? /
  SipUri semi = Parsed("sip:user;par=u%40example.net@example.com");
  EXPECT_EQ(semi.user, "user;par=u%40example.net");
  EXPECT_EQ(semi.host, "example.com");
  EXPECT_TRUE(semi.params.empty());
  EXPECT_EQ(Parsed("sip:a&b=c+d$e,f/g@example.com").user, "a&b=c+d$e,f/g");
  EXPECT_EQ(Parsed("sip:+1-212-555-1212:1234@gateway.com;user=phone").user, "+1-212-555-1212");
  EXPECT_EQ(Parsed("sip:+1-212-555-1212:1234@gateway.com;user=phone").password, "1234");
}

TEST(ParseUriTest, UserMayContainQuestionMark) {
  // '?' is user-unreserved; it starts the headers only after the host ('@' cannot appear
  // unescaped in a header value).
  SipUri uri = Parsed("sip:what?now@example.com");
  EXPECT_EQ(uri.user, "what?now");
  EXPECT_EQ(uri.host, "example.com");
  EXPECT_TRUE(uri.headers.empty());
}

TEST(ParseUriTest, RejectsBadEscapes) {
  EXPECT_EQ(ErrorOf("sip:a%4@example.com"), UriError::kBadEscape);
  EXPECT_EQ(ErrorOf("sip:a%zz@example.com"), UriError::kBadEscape);
  EXPECT_EQ(ErrorOf("sip:a%@example.com"), UriError::kBadEscape);
  EXPECT_EQ(ErrorOf("sip:example.com;n%6=v"), UriError::kBadEscape);
  EXPECT_EQ(ErrorOf("sip:example.com;name=v%G1"), UriError::kBadEscape);
}

TEST(ParseUriTest, RejectsBadUsers) {
  EXPECT_NE(ErrorOf("sip:a\"b@example.com"), UriError::kNone);
  EXPECT_NE(ErrorOf("sip:a b@example.com"), UriError::kNone);
  EXPECT_NE(ErrorOf("sip:a<b@example.com"), UriError::kNone);
}

// ---------------------------------------------------------------------------------------
// Hosts.

TEST(ParseUriTest, ParsesHostKinds) {
  EXPECT_EQ(Parsed("sip:a@example.com").host_kind, HostKind::kName);
  EXPECT_EQ(Parsed("sip:a@EXAMPLE.COM.").host_kind, HostKind::kName);
  EXPECT_EQ(Parsed("sip:a@host-1.example.com").host_kind, HostKind::kName);
  EXPECT_EQ(Parsed("sip:a@localhost").host_kind, HostKind::kName);
  EXPECT_EQ(Parsed("sip:a@192.0.2.1").host_kind, HostKind::kIpv4);

  SipUri v6 = Parsed("sip:a@[2001:db8::1]");
  EXPECT_EQ(v6.host, "2001:db8::1");
  EXPECT_EQ(v6.host_kind, HostKind::kIpv6);
  EXPECT_EQ(v6.port, 0);

  SipUri mapped = Parsed("sip:ted@[::ffff:192.0.2.2]");
  EXPECT_EQ(mapped.host, "::ffff:192.0.2.2");
  EXPECT_EQ(mapped.host_kind, HostKind::kIpv6);
}

TEST(ParseUriTest, BracketedIpv6PortIsOutsideTheBrackets) {
  // RFC 5118 4.3/4.4.
  SipUri ambiguous = Parsed("sip:[2001:db8::10:5070]");
  EXPECT_EQ(ambiguous.host, "2001:db8::10:5070");
  EXPECT_EQ(ambiguous.port, 0);
  SipUri unambiguous = Parsed("sip:[2001:db8::10]:5070");
  EXPECT_EQ(unambiguous.host, "2001:db8::10");
  EXPECT_EQ(unambiguous.port, 5070);
  EXPECT_EQ(unambiguous.host_kind, HostKind::kIpv6);
}

TEST(ParseUriTest, ToleratesThreeColonIpv6) {
  // RFC 5118 4.10: admitted by the RFC 3261 ABNF; tolerated.
  SipUri uri = Parsed("sip:user@[2001:db8:::192.0.2.1]");
  EXPECT_EQ(uri.host_kind, HostKind::kIpv6);
  EXPECT_EQ(uri.user, "user");
}

TEST(ParseUriTest, RejectsBadHosts) {
  EXPECT_NE(ErrorOf("sip:2001:db8::10"), UriError::kNone);  // IPv6 needs brackets
  EXPECT_EQ(ErrorOf("sip:a@[2001:db8::1"), UriError::kBadHost);
  EXPECT_EQ(ErrorOf("sip:a@[example.com]"), UriError::kBadHost);
  EXPECT_EQ(ErrorOf("sip:a@[]"), UriError::kBadHost);
  EXPECT_EQ(ErrorOf("sip:a@"), UriError::kBadHost);
  EXPECT_EQ(ErrorOf("sip:"), UriError::kBadHost);
  EXPECT_EQ(ErrorOf("sip:a@exa mple.com"), UriError::kBadHost);
  EXPECT_EQ(ErrorOf("sip:a@-example.com"), UriError::kBadHost);
  EXPECT_EQ(ErrorOf("sip:a@example..com"), UriError::kBadHost);
}

TEST(ClassifyHostTest, TellsTheKind) {
  EXPECT_EQ(ClassifyHost("example.com", false), HostKind::kName);
  EXPECT_EQ(ClassifyHost("a", false), HostKind::kName);
  EXPECT_EQ(ClassifyHost("192.0.2.1", false), HostKind::kIpv4);
  EXPECT_EQ(ClassifyHost("255.255.255.255", false), HostKind::kIpv4);
  EXPECT_EQ(ClassifyHost("2001:db8::1", true), HostKind::kIpv6);
  EXPECT_EQ(ClassifyHost("::1", true), HostKind::kIpv6);
  EXPECT_EQ(ClassifyHost("::ffff:192.0.2.10", true), HostKind::kIpv6);
  EXPECT_EQ(ClassifyHost("", false), HostKind::kNone);
  EXPECT_EQ(ClassifyHost("", true), HostKind::kNone);
  EXPECT_EQ(ClassifyHost("exa mple.com", false), HostKind::kNone);
  EXPECT_EQ(ClassifyHost("example.com", true), HostKind::kNone);
  EXPECT_EQ(ClassifyHost("192.0.2.1", true), HostKind::kNone);
  EXPECT_EQ(ClassifyHost("2001:db8::1:::", true), HostKind::kNone);
  EXPECT_EQ(ClassifyHost("2001:db8::g", true), HostKind::kNone);
}

TEST(ClassifyHostTest, DigitsAndDotsAreIpv4OrNothing) {
  EXPECT_EQ(ClassifyHost("0.0.0.0", false), HostKind::kIpv4);
  EXPECT_EQ(ClassifyHost("01.002.3.4", false), HostKind::kIpv4);
  EXPECT_EQ(ClassifyHost("256.0.0.1", false), HostKind::kNone);
  EXPECT_EQ(ClassifyHost("1.2.3.256", false), HostKind::kNone);
  EXPECT_EQ(ClassifyHost("1.2.3", false), HostKind::kNone);
  EXPECT_EQ(ClassifyHost("1.2.3.4.5", false), HostKind::kNone);
  EXPECT_EQ(ClassifyHost("1.2.3.4.", false), HostKind::kNone);
  EXPECT_EQ(ClassifyHost(".1.2.3.4", false), HostKind::kNone);
  EXPECT_EQ(ClassifyHost("1..2.3", false), HostKind::kNone);
  EXPECT_EQ(ClassifyHost("0001.2.3.4", false), HostKind::kNone);
  EXPECT_EQ(ClassifyHost("99999999999.2.3.4", false), HostKind::kNone);  // no wrap-around
  EXPECT_EQ(ClassifyHost("1234", false), HostKind::kNone);
  EXPECT_EQ(ClassifyHost("1.2.3.4a", false), HostKind::kName);
  EXPECT_EQ(Parsed("sip:a@192.0.2.1:5060").host_kind, HostKind::kIpv4);
  EXPECT_EQ(ErrorOf("sip:a@192.0.2.256"), UriError::kBadHost);
}

// ---------------------------------------------------------------------------------------
// Ports.

TEST(ParseUriTest, ParsesPorts) {
  EXPECT_EQ(Parsed("sip:a@example.com:1").port, 1);
  EXPECT_EQ(Parsed("sip:a@example.com:5060").port, 5060);
  EXPECT_EQ(Parsed("sip:a@example.com:65535").port, 65535);
  EXPECT_EQ(Parsed("sip:example.com:5060;lr").port, 5060);
  EXPECT_EQ(Parsed("sip:192.0.2.1:5080?h=v").port, 5080);
}

TEST(ParseUriTest, RejectsBadPorts) {
  EXPECT_EQ(ErrorOf("sip:a@example.com:0"), UriError::kBadPort);
  EXPECT_EQ(ErrorOf("sip:a@example.com:65536"), UriError::kBadPort);
  EXPECT_EQ(ErrorOf("sip:a@example.com:99999999999"), UriError::kBadPort);
  EXPECT_EQ(ErrorOf("sip:a@example.com:"), UriError::kBadPort);
  EXPECT_EQ(ErrorOf("sip:a@example.com:50a"), UriError::kBadPort);
  EXPECT_EQ(ErrorOf("sip:a@example.com:-1"), UriError::kBadPort);
  EXPECT_EQ(ErrorOf("sip:a@[2001:db8::1]:x"), UriError::kBadPort);
  EXPECT_EQ(ErrorOf("sip:a@example.com:000001"), UriError::kBadPort);  // six digits
  EXPECT_EQ(ErrorOf("sip:a@example.com:00000"), UriError::kBadPort);
  EXPECT_EQ(ErrorOf("sip:a@example.com:4294967297"), UriError::kBadPort);  // 1 in 32 bits
  EXPECT_EQ(Parsed("sip:a@example.com:00080").port, 80);
}

TEST(ParsePortTest, AcceptsOnly1To65535) {
  uint16_t port = 0;
  EXPECT_TRUE(ParsePort("1", &port));
  EXPECT_EQ(port, 1);
  EXPECT_TRUE(ParsePort("5060", &port));
  EXPECT_EQ(port, 5060);
  EXPECT_TRUE(ParsePort("65535", &port));
  EXPECT_EQ(port, 65535);
  EXPECT_FALSE(ParsePort("0", &port));
  EXPECT_FALSE(ParsePort("65536", &port));
  EXPECT_FALSE(ParsePort("4294967297", &port));  // wraps to 1 in 32 bits
  EXPECT_FALSE(ParsePort("", &port));
  EXPECT_FALSE(ParsePort("+5", &port));
  EXPECT_FALSE(ParsePort("-5", &port));
  EXPECT_FALSE(ParsePort(" 5", &port));
  EXPECT_FALSE(ParsePort("5x", &port));
}

// ---------------------------------------------------------------------------------------
// Parameters and headers.

TEST(ParseUriTest, FindsWellKnownParamsCaseInsensitively) {
  SipUri uri = Parsed("sip:proxy.example.com;LR;Transport=udp;MADDR=192.0.2.9");
  EXPECT_TRUE(uri.lr);
  EXPECT_EQ(uri.transport, "udp");
  EXPECT_EQ(uri.maddr, "192.0.2.9");
  EXPECT_EQ(uri.params, ";LR;Transport=udp;MADDR=192.0.2.9");

  SipUri not_lr = Parsed("sip:proxy.example.com;lrx;xlr=1");
  EXPECT_FALSE(not_lr.lr);
}

TEST(ParseUriTest, KeepsEscapedParams) {
  SipUri uri = Parsed("sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31");
  EXPECT_EQ(uri.user, "cal%6Cer");
  EXPECT_EQ(uri.params, ";%6C%72;n%61me=v%61lue%25%34%31");
}

TEST(ParseUriTest, RejectsBadParams) {
  EXPECT_EQ(ErrorOf("sip:example.com;=x"), UriError::kBadParam);
  EXPECT_EQ(ErrorOf("sip:example.com;a=b c"), UriError::kBadParam);
  EXPECT_EQ(ErrorOf("sip:example.com;a\"=b"), UriError::kBadParam);
  EXPECT_EQ(ErrorOf("sip:example.com;a=<b>"), UriError::kBadParam);
}

TEST(ParseUriTest, ParsesHeaders) {
  SipUri uri = Parsed("sip:user@example.com?Route=%3Csip:example.com%3E");
  EXPECT_EQ(uri.host, "example.com");
  EXPECT_EQ(uri.headers, "Route=%3Csip:example.com%3E");
  EXPECT_TRUE(uri.params.empty());

  SipUri both = Parsed("sip:user@example.com;lr?a=1&b=2");
  EXPECT_EQ(both.params, ";lr");
  EXPECT_TRUE(both.lr);
  EXPECT_EQ(both.headers, "a=1&b=2");
}

TEST(ParseUriTest, RejectsBadHeaders) {
  EXPECT_EQ(ErrorOf("sip:user@example.com?"), UriError::kBadHeaders);
  EXPECT_EQ(ErrorOf("sip:user@example.com?=v"), UriError::kBadHeaders);
  EXPECT_EQ(ErrorOf("sip:user@example.com?a=b c"), UriError::kBadHeaders);
  EXPECT_EQ(ErrorOf("sip:user@example.com?a=<b>"), UriError::kBadHeaders);
}

TEST(ParseUriTest, RejectsSurroundingText) {
  // ParseUri takes exactly one URI: no brackets, no LWS.
  EXPECT_NE(ErrorOf("<sip:a@example.com>"), UriError::kNone);
  EXPECT_NE(ErrorOf(" sip:a@example.com"), UriError::kNone);
  EXPECT_NE(ErrorOf("sip:a@example.com "), UriError::kNone);
  EXPECT_NE(ErrorOf("sip:a@example.com; lr"), UriError::kNone);
}

// ---------------------------------------------------------------------------------------
// The one-pass prefix parser behind ParseUri() and the name-addr parser.

TEST(ParseUriPrefixTest, StopsWhereEachContextEndsTheUri) {
  std::string_view angle = "sip:bob@example.com;lr>;tag=1";
  SipUri uri;
  const char* end = angle.data() + angle.size();
  const char* stop = ParseUriPrefix(angle.data(), end, end, UriEnd::kAngle, &uri);
  ASSERT_NE(stop, nullptr);
  EXPECT_EQ(*stop, '>');
  EXPECT_EQ(uri.text, "sip:bob@example.com;lr");
  EXPECT_EQ(uri.params, ";lr");
  EXPECT_TRUE(uri.lr);

  std::string_view addr_spec = "sip:bob@example.com:5060;tag=1";
  end = addr_spec.data() + addr_spec.size();
  stop = ParseUriPrefix(addr_spec.data(), end, end, UriEnd::kAddrSpec, &uri);
  ASSERT_NE(stop, nullptr);
  EXPECT_EQ(uri.text, "sip:bob@example.com:5060");
  EXPECT_EQ(uri.port, 5060);
  EXPECT_TRUE(uri.params.empty());
}

TEST(ParseUriPrefixTest, IgnoresBytesBetweenEndAndLimit) {
  std::string_view buffer = "sip:alice@example.comXYZ@;";
  const char* end = buffer.data() + std::string_view("sip:alice@example.com").size();
  SipUri uri;
  ASSERT_NE(ParseUriPrefix(buffer.data(), end, buffer.data() + buffer.size(), UriEnd::kText, &uri),
            nullptr);
  EXPECT_EQ(uri.host, "example.com");
  EXPECT_EQ(uri.text, "sip:alice@example.com");
}

TEST(ParseUriPrefixTest, LeavesUnusualShapesToParseUri) {
  // Each is valid, and ParseUri() still takes it, by the exact path.
  for (std::string_view text : {"sip:alice:secret@example.com", "sip:%61lice@example.com",
                                "sip:[2001:db8::1]:5060", "sip:example.com?subject=x",
                                "sip:example.com;a=%41", "tel:+15555550123", "sip:h;x@y"}) {
    SipUri uri;
    const char* end = text.data() + text.size();
    EXPECT_EQ(ParseUriPrefix(text.data(), end, end, UriEnd::kText, &uri), nullptr) << text;
    EXPECT_EQ(ParseUri(text, &uri), UriError::kNone) << text;
  }
  EXPECT_EQ(Parsed("sip:h;x@y").user, "h;x");
}

TEST(ScanHostTest, ClassifiesTheRunLikeClassifyHost) {
  for (std::string_view host :
       {"example.com", "example.com.", "a", "1.2.3.4", "1.2.3.256", "1.2.3", "1.2.3.4.",
        "01.2.3.4", "1234.1.1.1", "-a.com", "a-.com", "a..b", ".a", "_sip._udp.example.com",
        "0.0.0.0", "255.255.255.255", "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t.u.v.w.x.y.z",
        "1.2.3.4.example.com", "192.168.100.200.3"}) {
    std::string followed(host);
    followed += ";lr";
    const char* run_end = nullptr;
    HostKind kind =
        ScanHost(followed.data(), followed.data() + followed.size(),
                 followed.data() + followed.size(), &run_end);
    EXPECT_EQ(kind, ClassifyHost(host, false)) << host;
    EXPECT_EQ(static_cast<size_t>(run_end - followed.data()), host.size()) << host;
  }
}

// Dotted IPv4 as RFC 3261 25.1 writes it, one obvious step at a time.
bool IsDottedQuadReference(std::string_view s) {
  int parts = 0;
  size_t start = 0;
  for (;;) {
    size_t dot = s.find('.', start);
    std::string_view part = s.substr(start, dot == std::string_view::npos ? dot : dot - start);
    if (part.empty() || part.size() > 3) return false;
    int value = 0;
    for (char c : part) {
      if (c < '0' || c > '9') return false;
      value = value * 10 + (c - '0');
    }
    if (value > 255 || ++parts > 4) return false;
    if (dot == std::string_view::npos) return parts == 4;
    start = dot + 1;
  }
}

TEST(ScanHostTest, DigitsAndDotsAreIpv4ExactlyWhenTheGrammarSaysSo) {
  // Every string of digits and dots up to 17 bytes long, drawn at random but reproducibly,
  // with the digits weighted towards the edge values around 255.
  constexpr std::string_view kAlphabet = "..0125569";
  uint64_t state = 0x9e3779b97f4a7c15;
  size_t ipv4 = 0;
  for (int i = 0; i < 200000; ++i) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    size_t size = 1 + (state >> 59) % 17;
    std::string host;
    for (size_t k = 0; k < size; ++k)
      host += kAlphabet[(state >> (3 * k % 48)) % kAlphabet.size()];
    state ^= state >> 29;
    std::string followed = host + ">";
    const char* run_end = nullptr;
    HostKind kind = ScanHost(followed.data(), followed.data() + followed.size(),
                             followed.data() + followed.size(), &run_end);
    const bool expected = IsDottedQuadReference(host);
    ipv4 += expected;
    ASSERT_EQ(kind == HostKind::kIpv4, expected) << host;
    if (!expected) {
      ASSERT_EQ(kind, HostKind::kNone) << host;
    }
  }
  EXPECT_GT(ipv4, 500u);
}

TEST(UriErrorTextTest, EveryErrorHasAText) {
  for (int e = static_cast<int>(UriError::kEmpty); e <= static_cast<int>(UriError::kBadEscape); ++e)
    EXPECT_FALSE(UriErrorText(static_cast<UriError>(e)).empty()) << e;
}

std::vector<std::pair<std::string, std::string>> AllParams(std::string_view params) {
  std::vector<std::pair<std::string, std::string>> out;
  ParamIterator it(params);
  std::string_view name, value;
  while (it.Next(&name, &value)) {
    out.emplace_back(name, value);
    if (out.size() > 100) break;  // a broken iterator must not hang the test
  }
  return out;
}

TEST(ParamIteratorTest, WalksNamesAndValues) {
  EXPECT_THAT(AllParams(";transport=tcp;lr;maddr=192.0.2.1"),
              ElementsAre(Pair("transport", "tcp"), Pair("lr", ""), Pair("maddr", "192.0.2.1")));
}

TEST(ParamIteratorTest, TrimsLws) {
  EXPECT_THAT(AllParams(";  tag    = 1918181833n ;\r\n  q = 0.33 ; flag "),
              ElementsAre(Pair("tag", "1918181833n"), Pair("q", "0.33"), Pair("flag", "")));
}

TEST(ParamIteratorTest, HandlesEmptyInput) {
  EXPECT_TRUE(AllParams("").empty());
  ParamIterator it("");
  std::string_view name, value;
  EXPECT_FALSE(it.Next(&name, &value));
  EXPECT_FALSE(it.Next(&name, &value));
}

TEST(FindParamTest, FindsByCaseInsensitiveName) {
  constexpr std::string_view kParams = ";Transport=TCP;lr;branch=z9hG4bK1;received=192.0.2.5";
  std::string_view value = "unchanged";
  EXPECT_TRUE(FindParam(kParams, "transport", &value));
  EXPECT_EQ(value, "TCP");
  EXPECT_TRUE(FindParam(kParams, "LR", &value));
  EXPECT_TRUE(value.empty());
  EXPECT_TRUE(FindParam(kParams, "received", &value));
  EXPECT_EQ(value, "192.0.2.5");
  EXPECT_FALSE(FindParam(kParams, "maddr", &value));
  EXPECT_FALSE(FindParam(kParams, "l", &value));
  EXPECT_FALSE(FindParam(kParams, "branchx", &value));
  EXPECT_FALSE(FindParam("", "lr", &value));
}

TEST(FindParamTest, ReturnsTheFirstOfRepeatedParams) {
  std::string_view value;
  EXPECT_TRUE(FindParam(";q=0.1;q=0.9", "q", &value));
  EXPECT_EQ(value, "0.1");
}

}  // namespace
}  // namespace b2bua::proto
