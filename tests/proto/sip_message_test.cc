// Tests proto/sip_message.{h,cc}: what a parsed SipMessage offers (start line, header lines
// and their lookups, the typed values of the headers the parser knows), the defaults of its
// value types, the name tables, the list splitter, and the reuse of one instance for many
// messages. The grammar itself, one element at a time, is tested in sip_parser_test.cc.

#include "proto/sip_message.h"

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/proto/sip_test_messages.h"
#include "proto/sip_parser.h"
#include "proto/sip_uri.h"
#include "tests/proto/sip_message_diff.h"

#ifndef B2BUA_TEST_DATA_DIR
#error "B2BUA_TEST_DATA_DIR must name the tests/data folder"
#endif

namespace b2bua::proto {
namespace {

using test::Request;
using test::Response;

using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr std::string_view kSdp =
    "v=0\r\n"
    "o=alice 2890844526 2890844526 IN IP4 pc33.atlanta.example.com\r\n"
    "s=-\r\n"
    "c=IN IP4 192.0.2.101\r\n"
    "t=0 0\r\n"
    "m=audio 49172 RTP/AVP 0\r\n"
    "a=rtpmap:0 PCMU/8000\r\n";

// A request that fills every part of the message: each typed value, several of each list
// header, unknown headers and a body.
std::string RichInvite() {
  std::string m =
      "INVITE sips:bob@[2001:db8::1]:5061;transport=tcp;lr SIP/2.0\r\n"
      "Via: SIP/2.0/TLS [2001:db8::9]:5071;rport=5072;received=192.0.2.7;maddr=224.2.0.1;"
      "ttl=16;branch=z9hG4bKrich1\r\n"
      "v: SIP/2.0/UDP proxy.example.com:5060;branch=z9hG4bKrich2, "
      "SIP/2.0/TCP 192.0.2.9;branch=z9hG4bKrich3;rport\r\n"
      "Max-Forwards: 69\r\n"
      "To: \"Bob \\\"B\\\"\" <sips:bob@biloxi.example.com;transport=tcp>;tag=to-tag\r\n"
      "f: Alice <sip:alice:pw@atlanta.example.com>;tag=from-tag;x=y\r\n"
      "i: rich-call-id@pc33.atlanta.example.com\r\n"
      "CSeq: 4711 INVITE\r\n"
      "Contact: \"Carol, C\" <sip:carol@192.0.2.3:5070;transport=udp>;q=0.7;expires=60;tag=c1\r\n"
      "m: sip:dave@d.example.com;q=0.1234, <sip:erin@e.example.com>;expires=x\r\n"
      "Route: <sip:p1.example.com;lr>, <sip:[2001:db8::2];lr;transport=tcp>\r\n"
      "Record-Route: <sip:rr1.example.com;lr;maddr=192.0.2.50>\r\n"
      "Record-Route: <sips:rr2.example.com:5061;lr>\r\n"
      "Expires: 120\r\n"
      "Supported: timer, 100rel\r\n"
      "X-Rich: one\r\n"
      "Subject: lunch\r\n"
      "c: application/sdp\r\n"
      "Content-Length: ";
  m += std::to_string(kSdp.size());
  m += "\r\n\r\n";
  m += kSdp;
  return m;
}

// The smallest messages of each kind, with no value the rich one leaves to be kept.
constexpr std::string_view kSparseResponse =
    "SIP/2.0 200\r\n"
    "Via: SIP/2.0/UDP h2.example.com\r\n"
    "From: sip:c@c.example.com\r\n"
    "To: sip:d@d.example.com\r\n"
    "Call-ID: x2\r\n"
    "CSeq: 2 BYE\r\n"
    "Content-Length: 0\r\n"
    "\r\n";
constexpr std::string_view kBareRequest = "OPTIONS sip:o.example.com SIP/2.0\r\nX-Only: 1\r\n\r\n";

bool Within(std::string_view view, std::string_view buffer) {
  if (view.empty()) return true;  // an empty view points nowhere in particular
  std::less_equal<const char*> le;
  return le(buffer.data(), view.data()) &&
         le(view.data() + view.size(), buffer.data() + buffer.size());
}

// The first view of `m` that does not lie inside `buffer` ("what: text"), or empty. Every
// field is looked at, also those of absent values (from() without has_from()), whose views
// must then be empty.
std::string ViewOutside(const SipMessage& m, std::string_view buffer) {
  std::string found;
  auto check = [&](const std::string& what, std::string_view v) {
    if (found.empty() && !Within(v, buffer)) found = what + ": \"" + std::string(v) + "\"";
  };
  auto uri = [&](const std::string& w, const SipUri& u) {
    check(w + ".text", u.text);
    check(w + ".scheme_text", u.scheme_text);
    check(w + ".user", u.user);
    check(w + ".password", u.password);
    check(w + ".host", u.host);
    check(w + ".params", u.params);
    check(w + ".headers", u.headers);
    check(w + ".transport", u.transport);
    check(w + ".maddr", u.maddr);
  };
  auto address = [&](const std::string& w, const NameAddr& a) {
    check(w + ".text", a.text);
    check(w + ".display_name", a.display_name);
    check(w + ".params", a.params);
    check(w + ".tag", a.tag);
    uri(w + ".uri", a.uri);
  };
  check("method_text", m.method_text());
  uri("request_uri", m.request_uri());
  check("reason_phrase", m.reason_phrase());
  for (size_t i = 0; i < m.header_count(); ++i) {
    check("header[" + std::to_string(i) + "].name", m.headers()[i].name);
    check("header[" + std::to_string(i) + "].value", m.headers()[i].value);
  }
  for (size_t i = 0; i < m.via_count(); ++i) {
    const Via& v = m.vias()[i];
    std::string w = "via[" + std::to_string(i) + "]";
    check(w + ".text", v.text);
    check(w + ".protocol_name", v.protocol_name);
    check(w + ".protocol_version", v.protocol_version);
    check(w + ".transport", v.transport);
    check(w + ".host", v.host);
    check(w + ".params", v.params);
    check(w + ".branch", v.branch);
    check(w + ".received", v.received);
    check(w + ".maddr", v.maddr);
  }
  address("from", m.from());
  address("to", m.to());
  check("call_id", m.call_id());
  check("cseq.method_text", m.cseq().method_text);
  check("content_type", m.content_type());
  for (size_t i = 0; i < m.contact_count(); ++i)
    address("contact[" + std::to_string(i) + "]", m.contacts()[i].address);
  for (size_t i = 0; i < m.route_count(); ++i)
    address("route[" + std::to_string(i) + "]", m.routes()[i]);
  for (size_t i = 0; i < m.record_route_count(); ++i)
    address("record_route[" + std::to_string(i) + "]", m.record_routes()[i]);
  check("body", m.body());
  check("raw", m.raw());
  return found;
}

void ExpectEmptyAddress(const NameAddr& a) {
  EXPECT_TRUE(a.text.empty());
  EXPECT_TRUE(a.display_name.empty());
  EXPECT_TRUE(a.params.empty());
  EXPECT_TRUE(a.tag.empty());
  EXPECT_TRUE(a.uri.text.empty());
  EXPECT_TRUE(a.uri.host.empty());
  EXPECT_FALSE(a.angle_brackets);
  EXPECT_FALSE(a.quoted_display_name);
}

// What a message holds before its first parse and after Clear().
void ExpectEmpty(const SipMessage& m) {
  EXPECT_FALSE(m.is_request());
  EXPECT_EQ(m.method(), Method::kUnknown);
  EXPECT_TRUE(m.method_text().empty());
  EXPECT_TRUE(m.request_uri().text.empty());
  EXPECT_TRUE(m.request_uri().host.empty());
  EXPECT_EQ(m.request_uri().port, 0);
  EXPECT_FALSE(m.request_uri().lr);
  EXPECT_EQ(m.status_code(), 0);
  EXPECT_TRUE(m.reason_phrase().empty());
  EXPECT_EQ(m.header_count(), 0u);
  EXPECT_EQ(m.FindHeader(HeaderId::kVia), nullptr);
  EXPECT_EQ(m.FindHeader(HeaderId::kOther), nullptr);
  EXPECT_EQ(m.FindHeader("Via"), nullptr);
  EXPECT_EQ(m.FindHeader("X-Rich"), nullptr);
  EXPECT_EQ(m.via_count(), 0u);
  EXPECT_EQ(m.top_via(), nullptr);
  EXPECT_FALSE(m.has_from());
  ExpectEmptyAddress(m.from());
  EXPECT_FALSE(m.has_to());
  ExpectEmptyAddress(m.to());
  EXPECT_TRUE(m.call_id().empty());
  EXPECT_FALSE(m.has_cseq());
  EXPECT_EQ(m.cseq().number, 0u);
  EXPECT_TRUE(m.cseq().method_text.empty());
  EXPECT_EQ(m.cseq().method, Method::kUnknown);
  EXPECT_EQ(m.max_forwards(), -1);
  EXPECT_EQ(m.content_length(), -1);
  EXPECT_TRUE(m.content_type().empty());
  EXPECT_EQ(m.expires(), -1);
  EXPECT_EQ(m.contact_count(), 0u);
  EXPECT_FALSE(m.contact_star());
  EXPECT_EQ(m.route_count(), 0u);
  EXPECT_EQ(m.record_route_count(), 0u);
  EXPECT_TRUE(m.body().empty());
  EXPECT_TRUE(m.raw().empty());
  int tokens = 0;
  m.ForEachToken(HeaderId::kSupported, [&](std::string_view) { ++tokens; });
  EXPECT_EQ(tokens, 0);
}

class SipMessageTest : public ::testing::Test {
 protected:
  // The views in msg() point into `input`, which must outlive the checks.
  ParseResult Parse(std::string_view input, Framing framing = Framing::kDatagram) {
    return parser_.Parse(input, framing, msg_.get());
  }
  const SipMessage& msg() const { return *msg_; }

  std::vector<std::string> Tokens(HeaderId id) const {
    std::vector<std::string> tokens;
    msg().ForEachToken(id, [&](std::string_view t) { tokens.emplace_back(t); });
    return tokens;
  }

  SipParser parser_;
  std::unique_ptr<SipMessage> msg_ = std::make_unique<SipMessage>();
};

// ---------------------------------------------------------------------------------------
// Value types and constants.

TEST(SipMessageValueTest, EmptyValuesUseTheDocumentedSentinels) {
  EXPECT_EQ(kEmptyVia.port, 0);
  EXPECT_EQ(kEmptyVia.rport, 0);
  EXPECT_EQ(kEmptyVia.ttl, -1);
  EXPECT_FALSE(kEmptyVia.has_rport);
  EXPECT_EQ(kEmptyVia.host_kind, HostKind::kNone);
  EXPECT_TRUE(kEmptyVia.branch.empty());
  EXPECT_EQ(kEmptyContact.expires, -1);
  EXPECT_EQ(kEmptyContact.q_millis, -1);
  EXPECT_EQ(kEmptyContact.defect, ContactDefect::kNone);
  ExpectEmptyAddress(kEmptyContact.address);
  ExpectEmptyAddress(kEmptyNameAddr);
  const CSeq cseq;
  EXPECT_EQ(cseq.number, 0u);
  EXPECT_EQ(cseq.method, Method::kUnknown);
  const HeaderField field;
  EXPECT_EQ(field.id, HeaderId::kOther);
}

TEST(SipMessageValueTest, BranchMagicCookieIsTheRfc3261Literal) {
  // RFC 3261 8.1.1.7, compared case-sensitively (17.2.3): the message keeps a branch as sent.
  EXPECT_EQ(kBranchMagicCookie, "z9hG4bK");
  SipParser parser;
  auto msg = std::make_unique<SipMessage>();
  std::string in = Request("OPTIONS");
  ASSERT_TRUE(parser.Parse(in, Framing::kDatagram, msg.get()).ok());
  ASSERT_NE(msg->top_via(), nullptr);
  EXPECT_TRUE(msg->top_via()->branch.starts_with(kBranchMagicCookie));
  EXPECT_EQ(msg->top_via()->branch.substr(kBranchMagicCookie.size()), "776asdhds");

  in = "OPTIONS sip:a@b.example SIP/2.0\r\n"
       "Via: SIP/2.0/UDP h.example;branch=Z9HG4BK776asdhds\r\n"
       "Via: SIP/2.0/UDP g.example;branch=1\r\n\r\n";
  ASSERT_TRUE(parser.Parse(in, Framing::kDatagram, msg.get()).ok());
  ASSERT_EQ(msg->via_count(), 2u);
  EXPECT_EQ(msg->vias()[0].branch, "Z9HG4BK776asdhds");
  EXPECT_FALSE(msg->vias()[0].branch.starts_with(kBranchMagicCookie));
  EXPECT_EQ(msg->vias()[1].branch, "1");  // an RFC 2543 branch
}

TEST(SipMessageValueTest, DefaultConstructedMessageIsEmpty) {
  auto msg = std::make_unique<SipMessage>();
  ExpectEmpty(*msg);
}

// ---------------------------------------------------------------------------------------
// Name tables.

TEST(SipMessageHeaderNameTest, EveryLetterIsACompactFormOrNothing) {
  // RFC 3261 7.3.3 and the IANA "Header Fields" registry; the other letters name nothing.
  const std::pair<char, HeaderId> kLetters[] = {
      {'a', HeaderId::kAcceptContact},      {'b', HeaderId::kReferredBy},
      {'c', HeaderId::kContentType},        {'d', HeaderId::kRequestDisposition},
      {'e', HeaderId::kContentEncoding},    {'f', HeaderId::kFrom},
      {'g', HeaderId::kOther},              {'h', HeaderId::kOther},
      {'i', HeaderId::kCallId},             {'j', HeaderId::kRejectContact},
      {'k', HeaderId::kSupported},          {'l', HeaderId::kContentLength},
      {'m', HeaderId::kContact},            {'n', HeaderId::kIdentityInfo},
      {'o', HeaderId::kEvent},              {'p', HeaderId::kOther},
      {'q', HeaderId::kOther},              {'r', HeaderId::kReferTo},
      {'s', HeaderId::kSubject},            {'t', HeaderId::kTo},
      {'u', HeaderId::kAllowEvents},        {'v', HeaderId::kVia},
      {'w', HeaderId::kOther},              {'x', HeaderId::kSessionExpires},
      {'y', HeaderId::kIdentity},           {'z', HeaderId::kOther},
  };
  for (const auto& [letter, id] : kLetters) {
    SCOPED_TRACE(letter);
    EXPECT_EQ(LookupHeaderId(std::string(1, letter)), id);
    EXPECT_EQ(LookupHeaderId(std::string(1, static_cast<char>(letter - 32))), id);
  }
  // Bytes next to the letters, and those that differ from one only in bit 0x20.
  for (std::string_view other : {"@", "[", "`", "{", "-", "0", "9", "\x01", "\xC1", "\xE1"})
    EXPECT_EQ(LookupHeaderId(other), HeaderId::kOther) << static_cast<int>(other[0]);
}

TEST(SipMessageHeaderNameTest, EveryMethodRoundTripsThroughItsName) {
  for (unsigned i = static_cast<unsigned>(Method::kInvite);
       i <= static_cast<unsigned>(Method::kUpdate); ++i) {
    const auto method = static_cast<Method>(i);
    std::string_view name = MethodName(method);
    SCOPED_TRACE(i);
    ASSERT_FALSE(name.empty());
    EXPECT_EQ(LookupMethod(name), method);
  }
  EXPECT_TRUE(MethodName(Method::kUnknown).empty());
  EXPECT_EQ(LookupMethod(""), Method::kUnknown);
  EXPECT_EQ(LookupMethod("INVIT"), Method::kUnknown);
  EXPECT_EQ(LookupMethod("IN"), Method::kUnknown);
  EXPECT_EQ(LookupMethod("ACKS"), Method::kUnknown);
}

// ---------------------------------------------------------------------------------------
// ForEachListItem.

TEST(SipMessageListTest, ForEachListItemSplitsOnlyTopLevelCommas) {
  struct Case {
    std::string_view value;
    std::vector<std::string> items;
  };
  const Case kCases[] = {
      {"", {""}},
      {"a", {"a"}},
      {" a ,\tb ", {"a", "b"}},
      {"a,", {"a", ""}},
      {",a", {"", "a"}},
      {"a,,b", {"a", "", "b"}},
      {"a\r\n ,\r\n\tb", {"a", "b"}},  // the CRLF of a folded line is LWS
      {"\"x,y", {"\"x,y"}},            // an unterminated quote runs to the end
      {"\"ab\\", {"\"ab\\"}},          // ... also when it ends in a backslash
      {"\"x\\\",y\", z", {"\"x\\\",y\"", "z"}},
      {"<a,b", {"<a,b"}},  // an unterminated '<' too
      {"a>b,c", {"a>b", "c"}},
      {"<<a>,b>,c", {"<<a>,b>", "c"}},
      {"<sip:a;p=\"x>y,z\">, d", {"<sip:a;p=\"x>y,z\">", "d"}},
      {"\"<\", b", {"\"<\"", "b"}},
  };
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.value);
    std::vector<std::string> items;
    ForEachListItem(c.value, [&](std::string_view item) { items.emplace_back(item); });
    EXPECT_EQ(items, c.items);
  }
}

TEST(SipMessageListTest, ForEachListItemViewsPointIntoTheValue) {
  const std::string value = "alpha , beta";
  std::vector<std::string_view> items;
  ForEachListItem(value, [&](std::string_view item) { items.push_back(item); });
  ASSERT_EQ(items.size(), 2u);
  EXPECT_EQ(items[0].data(), value.data());
  EXPECT_EQ(items[1].data(), value.data() + value.find("beta"));
}

// ---------------------------------------------------------------------------------------
// Start lines.

TEST_F(SipMessageTest, RequestHasRequestLineAndNoStatus) {
  std::string in = Request("INVITE");
  ASSERT_TRUE(Parse(in).ok());
  EXPECT_TRUE(msg().is_request());
  EXPECT_FALSE(msg().is_response());
  EXPECT_EQ(msg().method(), Method::kInvite);
  EXPECT_EQ(msg().method_text(), "INVITE");
  EXPECT_EQ(msg().request_uri().text, "sip:bob@biloxi.example.com");
  EXPECT_EQ(msg().request_uri().scheme, UriScheme::kSip);
  EXPECT_EQ(msg().request_uri().user, "bob");
  EXPECT_EQ(msg().request_uri().host, "biloxi.example.com");
  EXPECT_EQ(msg().status_code(), 0);
  EXPECT_TRUE(msg().reason_phrase().empty());
}

TEST_F(SipMessageTest, RequestUriKeepsItsParts) {
  std::string in = RichInvite();
  ASSERT_TRUE(Parse(in).ok());
  const SipUri& uri = msg().request_uri();
  EXPECT_EQ(uri.text, "sips:bob@[2001:db8::1]:5061;transport=tcp;lr");
  EXPECT_EQ(uri.scheme, UriScheme::kSips);
  EXPECT_EQ(uri.host, "2001:db8::1");
  EXPECT_EQ(uri.host_kind, HostKind::kIpv6);
  EXPECT_EQ(uri.port, 5061);
  EXPECT_EQ(uri.transport, "tcp");
  EXPECT_TRUE(uri.lr);
}

TEST_F(SipMessageTest, ResponseHasStatusLineAndNoRequestLine) {
  std::string in = Response("SIP/2.0 486 Busy Here");
  ASSERT_TRUE(Parse(in).ok());
  EXPECT_TRUE(msg().is_response());
  EXPECT_FALSE(msg().is_request());
  EXPECT_EQ(msg().status_code(), 486);
  EXPECT_EQ(msg().reason_phrase(), "Busy Here");
  EXPECT_EQ(msg().method(), Method::kUnknown);
  EXPECT_TRUE(msg().method_text().empty());
  EXPECT_TRUE(msg().request_uri().text.empty());
  EXPECT_TRUE(msg().request_uri().host.empty());
  // The method of a response is its CSeq's.
  EXPECT_EQ(msg().cseq().method, Method::kInvite);
}

TEST_F(SipMessageTest, ReasonPhraseMayBeAbsentOrHoldSpaces) {
  std::string in = std::string(kSparseResponse);
  ASSERT_TRUE(Parse(in).ok());
  EXPECT_EQ(msg().status_code(), 200);
  EXPECT_TRUE(msg().reason_phrase().empty());
  in = Response("SIP/2.0 603 Decline  it  please");
  ASSERT_TRUE(Parse(in).ok());
  EXPECT_EQ(msg().status_code(), 603);
  EXPECT_EQ(msg().reason_phrase(), "Decline  it  please");
}

TEST_F(SipMessageTest, UnknownMethodKeepsItsText) {
  std::string in = Request("FOO");
  ASSERT_TRUE(Parse(in).ok());
  EXPECT_EQ(msg().method(), Method::kUnknown);
  EXPECT_EQ(msg().method_text(), "FOO");
  EXPECT_EQ(msg().cseq().method, Method::kUnknown);
  EXPECT_EQ(msg().cseq().method_text, "FOO");
}

// ---------------------------------------------------------------------------------------
// Header lines and their lookups.

TEST_F(SipMessageTest, HeadersKeepMessageOrderAndWireSpelling) {
  std::string in =
      "MESSAGE sip:bob@biloxi.example.com SIP/2.0\r\n"
      "X-First: one\r\n"
      "v: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK1\r\n"
      "SUBJECT :   hello there  \r\n"
      "x-first: two\r\n"
      "call-id: c1\r\n"
      "\r\n";
  ASSERT_TRUE(Parse(in).ok());
  ASSERT_EQ(msg().header_count(), 5u);
  const HeaderField* h = msg().headers();
  EXPECT_EQ(h[0].name, "X-First");
  EXPECT_EQ(h[0].value, "one");
  EXPECT_EQ(h[0].id, HeaderId::kOther);
  EXPECT_EQ(h[1].name, "v");
  EXPECT_EQ(h[1].value, "SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK1");
  EXPECT_EQ(h[1].id, HeaderId::kVia);
  EXPECT_EQ(h[2].name, "SUBJECT");
  EXPECT_EQ(h[2].value, "hello there");
  EXPECT_EQ(h[2].id, HeaderId::kSubject);
  EXPECT_EQ(h[3].name, "x-first");
  EXPECT_EQ(h[3].value, "two");
  EXPECT_EQ(h[3].id, HeaderId::kOther);
  EXPECT_EQ(h[4].name, "call-id");
  EXPECT_EQ(h[4].id, HeaderId::kCallId);
}

TEST_F(SipMessageTest, FindHeaderByIdReturnsTheFirstOfItsKind) {
  std::string in = Request("OPTIONS",
                           "Subject: first\r\n"
                           "X-Other: x\r\n"
                           "s: second\r\n");
  ASSERT_TRUE(Parse(in).ok());
  const HeaderField* subject = msg().FindHeader(HeaderId::kSubject);
  ASSERT_NE(subject, nullptr);
  EXPECT_EQ(subject->value, "first");
  // A pointer into headers(), not a copy.
  ASSERT_GE(subject, msg().headers());
  ASSERT_LT(subject, msg().headers() + msg().header_count());
  EXPECT_EQ(msg().headers()[subject - msg().headers()].name, "Subject");
  EXPECT_EQ(msg().FindHeader(HeaderId::kCallId)->value,
            "a84b4c76e66710@pc33.atlanta.example.com");
  EXPECT_EQ(msg().FindHeader(HeaderId::kRoute), nullptr);
  EXPECT_EQ(msg().FindHeader(HeaderId::kContentType), nullptr);
}

TEST_F(SipMessageTest, FindHeaderByNameResolvesCompactFormsAndCase) {
  std::string in =
      "OPTIONS sip:bob@biloxi.example.com SIP/2.0\r\n"
      "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK1\r\n"
      "i: compact-call-id\r\n"
      "Supported: timer\r\n"
      "\r\n";
  ASSERT_TRUE(Parse(in).ok());
  const HeaderField* via = msg().FindHeader(HeaderId::kVia);
  ASSERT_NE(via, nullptr);
  for (std::string_view name : {"Via", "via", "VIA", "vIa", "v", "V"}) {
    EXPECT_EQ(msg().FindHeader(name), via) << name;
  }
  const HeaderField* call_id = msg().FindHeader(HeaderId::kCallId);
  ASSERT_NE(call_id, nullptr);
  EXPECT_EQ(call_id->name, "i");
  for (std::string_view name : {"Call-ID", "call-id", "CALL-ID", "i", "I"}) {
    EXPECT_EQ(msg().FindHeader(name), call_id) << name;
  }
  EXPECT_EQ(msg().FindHeader("k"), msg().FindHeader(HeaderId::kSupported));
  EXPECT_NE(msg().FindHeader("k"), nullptr);
  // Known names the message does not carry.
  for (std::string_view name : {"Contact", "m", "Record-Route", "t", "To"}) {
    EXPECT_EQ(msg().FindHeader(name), nullptr) << name;
  }
  // Only letters fold: '\r' is '-' with bit 0x20 cleared.
  EXPECT_EQ(msg().FindHeader("Call\rID"), nullptr);
  EXPECT_EQ(msg().FindHeader("Call_ID"), nullptr);
}

TEST_F(SipMessageTest, FindHeaderByNameMatchesUnknownNamesIgnoringCase) {
  std::string in = Request("OPTIONS",
                           "X-Custom: first\r\n"
                           "X-A-B: dash\r\n"
                           "x-custom: second\r\n"
                           "X-Via: not a via\r\n"
                           "P-A-Very-Long-Unknown-Header-Name: long\r\n");
  ASSERT_TRUE(Parse(in).ok());
  for (std::string_view name : {"X-Custom", "x-custom", "X-CUSTOM", "x-CuStOm"}) {
    const HeaderField* h = msg().FindHeader(name);
    ASSERT_NE(h, nullptr) << name;
    EXPECT_EQ(h->value, "first") << name;
  }
  ASSERT_NE(msg().FindHeader("p-a-very-long-unknown-header-name"), nullptr);
  EXPECT_EQ(msg().FindHeader("p-a-very-long-unknown-header-name")->value, "long");
  ASSERT_NE(msg().FindHeader("x-a-b"), nullptr);
  EXPECT_EQ(msg().FindHeader("x-a-b")->value, "dash");
  // Near misses, and bytes that equal '-' once bit 0x20 is set.
  for (std::string_view name : {"X-Custo", "X-Customs", "X_Custom", "X-Custom ", " X-Custom",
                                "X\rCustom", "X\rA\rB", "", "X"}) {
    EXPECT_EQ(msg().FindHeader(name), nullptr) << name;
  }
  // "X-Via" is an unknown header, never a Via; the Request() helper's Via is found instead.
  ASSERT_NE(msg().FindHeader("Via"), nullptr);
  EXPECT_EQ(msg().FindHeader("Via")->name, "Via");
  ASSERT_NE(msg().FindHeader("x-via"), nullptr);
  EXPECT_EQ(msg().FindHeader("x-via")->value, "not a via");
}

TEST_F(SipMessageTest, ForEachTokenWalksEveryHeaderOfTheIdInOrder) {
  // Allow-Events has no grammar check in the parser, so empty items reach ForEachToken.
  std::string in = Request("SUBSCRIBE",
                           "Supported: timer, 100rel\r\n"
                           "Require: foo\r\n"
                           "Allow-Events: presence, ,dialog,,\r\n"
                           "k: path,\r\n"
                           "  gruu\r\n"
                           "u: refer\r\n");
  ASSERT_TRUE(Parse(in).ok());
  EXPECT_THAT(Tokens(HeaderId::kSupported), ElementsAre("timer", "100rel", "path", "gruu"));
  EXPECT_THAT(Tokens(HeaderId::kRequire), ElementsAre("foo"));
  EXPECT_THAT(Tokens(HeaderId::kAllowEvents), ElementsAre("presence", "dialog", "refer"));
  EXPECT_THAT(Tokens(HeaderId::kProxyRequire), IsEmpty());
}

// ---------------------------------------------------------------------------------------
// Via.

TEST_F(SipMessageTest, ViasFollowMessageOrderAcrossLinesAndLists) {
  std::string in = RichInvite();
  ASSERT_TRUE(Parse(in).ok());
  ASSERT_EQ(msg().via_count(), 3u);
  ASSERT_EQ(msg().top_via(), msg().vias());
  const Via& top = *msg().top_via();
  EXPECT_EQ(top.text,
            "SIP/2.0/TLS [2001:db8::9]:5071;rport=5072;received=192.0.2.7;maddr=224.2.0.1;"
            "ttl=16;branch=z9hG4bKrich1");
  EXPECT_EQ(top.protocol_name, "SIP");
  EXPECT_EQ(top.protocol_version, "2.0");
  EXPECT_EQ(top.transport, "TLS");
  EXPECT_EQ(top.host, "2001:db8::9");
  EXPECT_EQ(top.host_kind, HostKind::kIpv6);
  EXPECT_EQ(top.port, 5071);
  EXPECT_TRUE(top.has_rport);
  EXPECT_EQ(top.rport, 5072);
  EXPECT_EQ(top.received, "192.0.2.7");
  EXPECT_EQ(top.maddr, "224.2.0.1");
  EXPECT_EQ(top.ttl, 16);
  EXPECT_EQ(top.branch, "z9hG4bKrich1");
  EXPECT_EQ(top.params, ";rport=5072;received=192.0.2.7;maddr=224.2.0.1;ttl=16;branch=z9hG4bKrich1");

  const Via& second = msg().vias()[1];
  EXPECT_EQ(second.text, "SIP/2.0/UDP proxy.example.com:5060;branch=z9hG4bKrich2");
  EXPECT_EQ(second.host_kind, HostKind::kName);
  EXPECT_EQ(second.port, 5060);
  EXPECT_FALSE(second.has_rport);
  EXPECT_EQ(second.branch, "z9hG4bKrich2");
  const Via& third = msg().vias()[2];
  EXPECT_EQ(third.transport, "TCP");
  EXPECT_EQ(third.host, "192.0.2.9");
  EXPECT_EQ(third.host_kind, HostKind::kIpv4);
  EXPECT_TRUE(third.has_rport);  // ";rport" without a value
  EXPECT_EQ(third.rport, 0);
  EXPECT_EQ(third.branch, "z9hG4bKrich3");
}

TEST_F(SipMessageTest, ViaWithoutParametersHasDefaults) {
  std::string in = "OPTIONS sip:a@b.example SIP/2.0\r\nVia: SIP/2.0/UDP h.example\r\n\r\n";
  ASSERT_TRUE(Parse(in).ok());
  ASSERT_NE(msg().top_via(), nullptr);
  const Via& via = *msg().top_via();
  EXPECT_EQ(via.text, "SIP/2.0/UDP h.example");
  EXPECT_EQ(via.host, "h.example");
  EXPECT_EQ(via.port, 0);
  EXPECT_TRUE(via.params.empty());
  EXPECT_TRUE(via.branch.empty());
  EXPECT_TRUE(via.received.empty());
  EXPECT_TRUE(via.maddr.empty());
  EXPECT_FALSE(via.has_rport);
  EXPECT_EQ(via.rport, 0);
  EXPECT_EQ(via.ttl, -1);
}

TEST_F(SipMessageTest, MessageWithoutViaHasNoTopVia) {
  std::string in(kBareRequest);
  ASSERT_TRUE(Parse(in).ok());
  EXPECT_EQ(msg().via_count(), 0u);
  EXPECT_EQ(msg().top_via(), nullptr);
}

// RFC 3261 sets no limit on Vias: past kInitialVias the array grows, in order.
TEST_F(SipMessageTest, ManyViasBeyondTheInitialCapacityKeepTheirOrder) {
  const size_t kVias = 3 * SipMessage::kInitialVias + 1;
  auto via = [](size_t i) {
    return "SIP/2.0/UDP h" + std::to_string(i) + ".example.com;branch=z9hG4bK" + std::to_string(i);
  };
  std::string headers;
  size_t i = 0;
  // Lines of one value, then lists of growing length that straddle each capacity.
  for (; i < SipMessage::kInitialVias - 2; ++i) headers += "Via: " + via(i) + "\r\n";
  for (size_t len = 1; i < kVias; ++len) {
    headers += "v: ";
    for (size_t k = 0; k < len && i < kVias; ++k, ++i) {
      if (k > 0) headers += ", ";
      headers += via(i);
    }
    headers += "\r\n";
  }
  std::string in = "OPTIONS sip:a@b.example SIP/2.0\r\n" + headers + "\r\n";
  ParseResult r = Parse(in);
  ASSERT_TRUE(r.ok()) << DefectText(r.problem.defect);
  ASSERT_EQ(msg().via_count(), kVias);
  EXPECT_EQ(msg().top_via(), msg().vias());
  EXPECT_EQ(msg().top_via()->host, "h0.example.com");
  for (size_t k = 0; k < kVias; ++k) {
    ASSERT_EQ(msg().vias()[k].host, "h" + std::to_string(k) + ".example.com") << k;
    ASSERT_EQ(msg().vias()[k].branch, "z9hG4bK" + std::to_string(k)) << k;
  }

  std::string small = Request("OPTIONS");
  ASSERT_TRUE(Parse(small).ok());
  ASSERT_EQ(msg().via_count(), 1u);
  EXPECT_EQ(msg().top_via()->host, "pc33.atlanta.example.com");
}

// ---------------------------------------------------------------------------------------
// From, To, Call-ID, CSeq, Max-Forwards, Expires.

TEST_F(SipMessageTest, FromAndToCarryDisplayNamesUrisAndTags) {
  std::string in = RichInvite();
  ASSERT_TRUE(Parse(in).ok());
  ASSERT_TRUE(msg().has_from());
  const NameAddr& from = msg().from();
  EXPECT_EQ(from.text, "Alice <sip:alice:pw@atlanta.example.com>;tag=from-tag;x=y");
  EXPECT_EQ(from.display_name, "Alice");
  EXPECT_FALSE(from.quoted_display_name);
  EXPECT_TRUE(from.angle_brackets);
  EXPECT_EQ(from.uri.user, "alice");
  EXPECT_EQ(from.uri.password, "pw");
  EXPECT_EQ(from.params, ";tag=from-tag;x=y");
  EXPECT_EQ(from.tag, "from-tag");

  ASSERT_TRUE(msg().has_to());
  const NameAddr& to = msg().to();
  EXPECT_EQ(to.display_name, "Bob \\\"B\\\"");  // escapes kept as on the wire
  EXPECT_TRUE(to.quoted_display_name);
  EXPECT_EQ(to.uri.scheme, UriScheme::kSips);
  EXPECT_EQ(to.uri.transport, "tcp");
  EXPECT_EQ(to.tag, "to-tag");
}

TEST_F(SipMessageTest, ToWithoutTagHasAnEmptyTag) {
  std::string in = Request("INVITE");
  ASSERT_TRUE(Parse(in).ok());
  ASSERT_TRUE(msg().has_to());
  EXPECT_TRUE(msg().to().tag.empty());
  EXPECT_TRUE(msg().to().params.empty());
  EXPECT_EQ(msg().to().display_name, "Bob");
  EXPECT_EQ(msg().from().tag, "1928301774");
}

TEST_F(SipMessageTest, AbsentFromToCallIdCSeqAreReportedAsAbsent) {
  std::string in(kBareRequest);
  ASSERT_TRUE(Parse(in).ok());
  EXPECT_FALSE(msg().has_from());
  ExpectEmptyAddress(msg().from());
  EXPECT_FALSE(msg().has_to());
  ExpectEmptyAddress(msg().to());
  EXPECT_TRUE(msg().call_id().empty());
  EXPECT_FALSE(msg().has_cseq());
  EXPECT_EQ(msg().cseq().number, 0u);
  EXPECT_EQ(msg().cseq().method, Method::kUnknown);
  EXPECT_TRUE(msg().cseq().method_text.empty());
}

TEST_F(SipMessageTest, CallIdAndCSeqAreKeptAsSent) {
  std::string in = RichInvite();
  ASSERT_TRUE(Parse(in).ok());
  EXPECT_EQ(msg().call_id(), "rich-call-id@pc33.atlanta.example.com");
  ASSERT_TRUE(msg().has_cseq());
  EXPECT_EQ(msg().cseq().number, 4711u);
  EXPECT_EQ(msg().cseq().method, Method::kInvite);
  EXPECT_EQ(msg().cseq().method_text, "INVITE");

  std::string response = Response("SIP/2.0 200 OK");
  size_t at = response.find("CSeq: ");
  response.replace(at, response.find("\r\n", at) - at, "CSeq: 4294967295 PRACK");
  ASSERT_TRUE(Parse(response).ok());
  EXPECT_EQ(msg().cseq().number, 4294967295u);
  EXPECT_EQ(msg().cseq().method, Method::kPrack);
}

TEST_F(SipMessageTest, MaxForwardsIsMinusOneWhenAbsent) {
  const std::pair<std::string_view, int> kCases[] = {
      {"Max-Forwards: 70\r\n", 70},
      {"Max-Forwards: 0\r\n", 0},
      {"Max-Forwards: 255\r\n", 255},
      {"", -1},
  };
  for (const auto& [line, expected] : kCases) {
    SCOPED_TRACE(line);
    std::string in = "OPTIONS sip:a@b.example SIP/2.0\r\n" + std::string(line) + "\r\n";
    ASSERT_TRUE(Parse(in).ok());
    EXPECT_EQ(msg().max_forwards(), expected);
  }
}

TEST_F(SipMessageTest, ExpiresIsMinusOneWhenAbsent) {
  const std::pair<std::string_view, int64_t> kCases[] = {
      {"Expires: 3600\r\n", 3600},
      {"Expires: 0\r\n", 0},
      {"Expires: 4294967295\r\n", 4294967295},
      {"", -1},
  };
  for (const auto& [line, expected] : kCases) {
    SCOPED_TRACE(line);
    std::string in = Request("REGISTER", line);
    ASSERT_TRUE(Parse(in).ok());
    EXPECT_EQ(msg().expires(), expected);
  }
}

// Single-valued headers may appear once: a second line is a defect, and the message still
// holds both lines for the error answer (SipParser::Parse()).
TEST_F(SipMessageTest, RepeatedSingleValueHeadersAreKeptAsLinesAndRefused) {
  struct Repeat {
    std::string_view lines;  // added after the Request() helper's own
    HeaderId id;
    std::string_view first_value;
  };
  const Repeat kRepeats[] = {
      {"From: <sip:x@x.example>;tag=2\r\n", HeaderId::kFrom,
       "Alice <sip:alice@atlanta.example.com>;tag=1928301774"},
      {"t: <sip:y@y.example>\r\n", HeaderId::kTo, "Bob <sip:bob@biloxi.example.com>"},
      {"Call-ID: other\r\n", HeaderId::kCallId, "a84b4c76e66710@pc33.atlanta.example.com"},
      {"CSeq: 1 OPTIONS\r\n", HeaderId::kCSeq, "314159 OPTIONS"},
      {"Max-Forwards: 10\r\n", HeaderId::kMaxForwards, "70"},
      {"Content-Type: text/plain\r\nc: text/html\r\n", HeaderId::kContentType, "text/plain"},
      {"Expires: 1\r\nExpires: 2\r\n", HeaderId::kExpires, "1"},
  };
  for (const auto& [lines, id, first_value] : kRepeats) {
    SCOPED_TRACE(lines);
    std::string in = Request("OPTIONS", lines);
    ParseResult r = Parse(in);
    EXPECT_EQ(r.status, ParseStatus::kMalformed);
    EXPECT_EQ(r.problem.defect, Defect::kDuplicateHeader);
    EXPECT_EQ(r.problem.header, id);
    size_t count = 0;
    for (size_t i = 0; i < msg().header_count(); ++i) count += msg().headers()[i].id == id;
    EXPECT_EQ(count, 2u);
    ASSERT_NE(msg().FindHeader(id), nullptr);
    EXPECT_EQ(msg().FindHeader(id)->value, first_value);
  }
}

// ---------------------------------------------------------------------------------------
// Content.

TEST_F(SipMessageTest, BodyAndContentTypeOfAnInvite) {
  std::string in = Request("INVITE", "Content-Type: application/sdp\r\n", kSdp);
  ASSERT_TRUE(Parse(in).ok());
  EXPECT_EQ(msg().content_type(), "application/sdp");
  EXPECT_EQ(msg().content_length(), static_cast<int64_t>(kSdp.size()));
  EXPECT_EQ(msg().body(), kSdp);
  EXPECT_EQ(msg().raw(), in);
}

TEST_F(SipMessageTest, ContentTypeKeepsItsParameters) {
  std::string in = Request("MESSAGE", "c: text/plain ; charset=UTF-8\r\n", "hi");
  ASSERT_TRUE(Parse(in).ok());
  EXPECT_EQ(msg().content_type(), "text/plain ; charset=UTF-8");
  EXPECT_EQ(msg().body(), "hi");
}

TEST_F(SipMessageTest, EmptyBodyWithContentLengthZero) {
  std::string in = Request("OPTIONS");
  for (Framing framing : {Framing::kDatagram, Framing::kStream}) {
    ASSERT_TRUE(Parse(in, framing).ok());
    EXPECT_TRUE(msg().body().empty());
    EXPECT_EQ(msg().content_length(), 0);
    EXPECT_TRUE(msg().content_type().empty());
    EXPECT_EQ(msg().raw(), in);
  }
}

TEST_F(SipMessageTest, ContentLengthIsMinusOneWhenAbsent) {
  // Over UDP the body is then the rest of the datagram (RFC 3261 18.3).
  std::string in = "MESSAGE sip:a@b.example SIP/2.0\r\nc: text/plain\r\n\r\nrest of it";
  ASSERT_TRUE(Parse(in).ok());
  EXPECT_EQ(msg().content_length(), -1);
  EXPECT_EQ(msg().body(), "rest of it");
  in = std::string(kBareRequest);
  ASSERT_TRUE(Parse(in).ok());
  EXPECT_EQ(msg().content_length(), -1);
  EXPECT_TRUE(msg().body().empty());
}

TEST_F(SipMessageTest, RepeatedEqualContentLengthsAreOne) {
  std::string in = Request("MESSAGE", "l: 3\r\n", "abc");
  ASSERT_TRUE(Parse(in).ok());
  EXPECT_EQ(msg().content_length(), 3);
  EXPECT_EQ(msg().body(), "abc");
}

TEST_F(SipMessageTest, RawExcludesLeadingCrlfsAndBytesAfterTheMessage) {
  const std::string message = Request("MESSAGE", "", "abc");
  std::string in = "\r\n\r\n" + message + "trailing junk";
  ASSERT_TRUE(Parse(in).ok());
  EXPECT_EQ(msg().raw(), message);
  EXPECT_EQ(msg().raw().data(), in.data() + 4);
  EXPECT_EQ(msg().body(), "abc");

  // On a stream, the next message is not part of this one.
  in = message + Request("OPTIONS");
  ParseResult r = Parse(in, Framing::kStream);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.consumed, message.size());
  EXPECT_EQ(msg().raw(), message);
  EXPECT_EQ(msg().method(), Method::kMessage);
}

// ---------------------------------------------------------------------------------------
// Contact.

TEST_F(SipMessageTest, ContactsKeepOrderAddressesAndParameters) {
  std::string in = RichInvite();
  ASSERT_TRUE(Parse(in).ok());
  EXPECT_FALSE(msg().contact_star());
  ASSERT_EQ(msg().contact_count(), 3u);
  const Contact& carol = msg().contacts()[0];
  EXPECT_EQ(carol.address.text,
            "\"Carol, C\" <sip:carol@192.0.2.3:5070;transport=udp>;q=0.7;expires=60;tag=c1");
  EXPECT_EQ(carol.address.display_name, "Carol, C");
  EXPECT_EQ(carol.address.uri.host, "192.0.2.3");
  EXPECT_EQ(carol.address.uri.port, 5070);
  EXPECT_EQ(carol.address.uri.transport, "udp");
  EXPECT_EQ(carol.address.params, ";q=0.7;expires=60;tag=c1");
  EXPECT_EQ(carol.address.tag, "c1");
  EXPECT_EQ(carol.q_millis, 700);
  EXPECT_EQ(carol.expires, 60);
  EXPECT_EQ(carol.defect, ContactDefect::kNone);

  // Per-value defects spoil one contact, not the message.
  const Contact& dave = msg().contacts()[1];
  EXPECT_FALSE(dave.address.angle_brackets);
  EXPECT_EQ(dave.address.uri.user, "dave");
  EXPECT_EQ(dave.defect, ContactDefect::kBadQValue);
  EXPECT_EQ(dave.q_millis, -1);
  EXPECT_EQ(dave.expires, -1);
  const Contact& erin = msg().contacts()[2];
  EXPECT_EQ(erin.address.uri.user, "erin");
  EXPECT_EQ(erin.defect, ContactDefect::kBadExpires);
  EXPECT_EQ(erin.expires, -1);
  EXPECT_EQ(erin.q_millis, -1);
}

TEST_F(SipMessageTest, ContactStarIsNotAContact) {
  for (std::string_view line : {"Contact: *\r\n", "m:   *  \r\n"}) {
    SCOPED_TRACE(line);
    std::string in = Request("REGISTER", std::string(line) + "Expires: 0\r\n");
    ASSERT_TRUE(Parse(in).ok());
    EXPECT_TRUE(msg().contact_star());
    EXPECT_EQ(msg().contact_count(), 0u);
    EXPECT_NE(msg().FindHeader(HeaderId::kContact), nullptr);
  }
  std::string in = Request("REGISTER", "Contact: <sip:alice@192.0.2.4>\r\n");
  ASSERT_TRUE(Parse(in).ok());
  EXPECT_FALSE(msg().contact_star());
  EXPECT_EQ(msg().contact_count(), 1u);
}

TEST_F(SipMessageTest, ContactsUpToTheCapFitInOneList) {
  std::string list = "Contact: ";
  for (size_t i = 0; i < SipMessage::kMaxContacts; ++i) {
    if (i > 0) list += ", ";
    list += "<sip:c";
    list += std::to_string(i);
    list += "@example.com>";
  }
  std::string in = Response("SIP/2.0 300 Multiple Choices", list + "\r\n");
  ParseResult r = Parse(in);
  ASSERT_TRUE(r.ok()) << DefectText(r.problem.defect);
  ASSERT_EQ(msg().contact_count(), SipMessage::kMaxContacts);
  for (size_t i = 0; i < SipMessage::kMaxContacts; ++i) {
    std::string user = "c";
    user += std::to_string(i);
    EXPECT_EQ(msg().contacts()[i].address.uri.user, user);
  }
}

// ---------------------------------------------------------------------------------------
// Route and Record-Route.

TEST_F(SipMessageTest, RoutesAndRecordRoutesKeepTheirOwnOrder) {
  std::string in = RichInvite();
  ASSERT_TRUE(Parse(in).ok());
  ASSERT_EQ(msg().route_count(), 2u);
  EXPECT_EQ(msg().routes()[0].text, "<sip:p1.example.com;lr>");
  EXPECT_EQ(msg().routes()[0].uri.host, "p1.example.com");
  EXPECT_TRUE(msg().routes()[0].uri.lr);
  EXPECT_EQ(msg().routes()[1].uri.host, "2001:db8::2");
  EXPECT_EQ(msg().routes()[1].uri.transport, "tcp");
  ASSERT_EQ(msg().record_route_count(), 2u);
  EXPECT_EQ(msg().record_routes()[0].uri.host, "rr1.example.com");
  EXPECT_EQ(msg().record_routes()[0].uri.maddr, "192.0.2.50");
  EXPECT_EQ(msg().record_routes()[1].uri.scheme, UriScheme::kSips);
  EXPECT_EQ(msg().record_routes()[1].uri.port, 5061);
  EXPECT_TRUE(msg().record_routes()[1].uri.lr);
}

TEST_F(SipMessageTest, ManyRoutesBeyondTheInitialCapacityKeepTheirOrder) {
  const size_t kRoutes = 3 * SipMessage::kInitialRoutes + 1;
  // Pairs in one list value; the odd count leaves one alone on the last lines.
  std::string headers;
  for (size_t i = 0; i < kRoutes; i += 2) {
    std::string route = "<sip:p" + std::to_string(i) + ".example.com;lr>";
    std::string rr = "<sip:r" + std::to_string(i) + ".example.com;lr>";
    if (i + 1 < kRoutes) {
      route += ", <sip:p" + std::to_string(i + 1) + ".example.com;lr>";
      rr += ",<sip:r" + std::to_string(i + 1) + ".example.com;lr>";
    }
    headers += "Route: " + route + "\r\nRecord-Route: " + rr + "\r\n";
  }
  std::string in = Request("INVITE", headers);
  ParseResult r = Parse(in);
  ASSERT_TRUE(r.ok()) << DefectText(r.problem.defect);
  ASSERT_EQ(msg().route_count(), kRoutes);
  ASSERT_EQ(msg().record_route_count(), kRoutes);
  for (size_t i = 0; i < kRoutes; ++i) {
    ASSERT_EQ(msg().routes()[i].uri.host, "p" + std::to_string(i) + ".example.com") << i;
    ASSERT_EQ(msg().record_routes()[i].uri.host, "r" + std::to_string(i) + ".example.com") << i;
  }
}

// ---------------------------------------------------------------------------------------
// Header lines beyond the initial capacity.

TEST_F(SipMessageTest, ManyHeaderLinesBeyondTheInitialCapacityStayFindable) {
  std::string in = "OPTIONS sip:a@b.example SIP/2.0\r\n";
  const size_t kFiller = 2 * SipMessage::kInitialHeaders + 7;
  for (size_t i = 0; i < kFiller; ++i) in += "X-Filler: " + std::to_string(i) + "\r\n";
  in += "X-Needle: found\r\nCall-ID: late@example.com\r\nX-Filler: last\r\n\r\n";
  ParseResult r = Parse(in);
  ASSERT_TRUE(r.ok()) << DefectText(r.problem.defect);
  ASSERT_EQ(msg().header_count(), kFiller + 3);
  for (size_t i = 0; i < kFiller; ++i)
    ASSERT_EQ(msg().headers()[i].value, std::to_string(i)) << i;
  EXPECT_EQ(msg().FindHeader("x-needle"), msg().headers() + kFiller);
  EXPECT_EQ(msg().FindHeader(HeaderId::kCallId), msg().headers() + kFiller + 1);
  EXPECT_EQ(msg().call_id(), "late@example.com");
  EXPECT_EQ(msg().FindHeader("X-Filler"), msg().headers());
  EXPECT_EQ(msg().headers()[kFiller + 2].value, "last");
}

// ---------------------------------------------------------------------------------------
// Zero copy: views into the caller's buffer.

TEST_F(SipMessageTest, EveryViewPointsIntoTheParsedBuffer) {
  std::string in = RichInvite();
  ASSERT_TRUE(Parse(in).ok());
  EXPECT_EQ(ViewOutside(msg(), in), "");
  EXPECT_EQ(msg().raw().data(), in.data());
  EXPECT_EQ(msg().body().data(), in.data() + in.size() - kSdp.size());
}

TEST_F(SipMessageTest, ViewsSeeChangesToTheBuffer) {
  // Nothing is copied: the message reads the caller's bytes, so they must stay put.
  std::string in = Request("OPTIONS");
  ASSERT_TRUE(Parse(in).ok());
  size_t at = in.find("a84b4c76e66710");
  ASSERT_NE(at, std::string::npos);
  in[at] = 'Z';
  EXPECT_EQ(msg().call_id(), "Z84b4c76e66710@pc33.atlanta.example.com");
  in[in.find("Alice")] = 'M';
  EXPECT_EQ(msg().from().display_name, "Mlice");
}

// ---------------------------------------------------------------------------------------
// Clear() and reuse of one instance.

TEST_F(SipMessageTest, ClearForgetsEverything) {
  std::string in = RichInvite();
  ASSERT_TRUE(Parse(in).ok());
  ASSERT_GT(msg_->header_count(), 0u);
  msg_->Clear();
  ExpectEmpty(msg());
  // The cleared instance takes the next message as a new one would.
  ASSERT_TRUE(Parse(in).ok());
  EXPECT_EQ(msg().via_count(), 3u);
  EXPECT_EQ(msg().contact_count(), 3u);
}

// The parameter picks SipParser::ParseExact() (true) or SipParser::Parse() (false): they
// fill the list slots by different code, and each must reset what it reuses.
class SipMessageReuseTest : public ::testing::TestWithParam<bool> {
 protected:
  ParseResult Parse(std::string_view input, SipMessage* m,
                    Framing framing = Framing::kDatagram) const {
    return GetParam() ? parser_.ParseExact(input, framing, m) : parser_.Parse(input, framing, m);
  }
  SipParser parser_;
};

INSTANTIATE_TEST_SUITE_P(SipMessageBothParsers, SipMessageReuseTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return std::string(info.param ? "ParseExact" : "Parse");
                         });

TEST_P(SipMessageReuseTest, ASparseResponseKeepsNothingOfARichRequest) {
  auto reused = std::make_unique<SipMessage>();
  const std::string rich = RichInvite();
  ASSERT_TRUE(Parse(rich, reused.get()).ok());
  const std::string sparse(kSparseResponse);
  ASSERT_TRUE(Parse(sparse, reused.get()).ok());
  const SipMessage& m = *reused;

  EXPECT_EQ(ViewOutside(m, sparse), "");
  EXPECT_TRUE(m.is_response());
  EXPECT_EQ(m.method(), Method::kUnknown);
  EXPECT_TRUE(m.method_text().empty());
  EXPECT_TRUE(m.request_uri().text.empty());
  EXPECT_EQ(m.request_uri().port, 0);
  EXPECT_FALSE(m.request_uri().lr);
  EXPECT_EQ(m.header_count(), 6u);
  EXPECT_EQ(m.FindHeader("X-Rich"), nullptr);
  EXPECT_EQ(m.FindHeader(HeaderId::kSubject), nullptr);
  ASSERT_EQ(m.via_count(), 1u);
  const Via& via = *m.top_via();
  EXPECT_EQ(via.host, "h2.example.com");
  EXPECT_EQ(via.transport, "UDP");
  EXPECT_EQ(via.port, 0);
  EXPECT_TRUE(via.branch.empty());
  EXPECT_TRUE(via.received.empty());
  EXPECT_TRUE(via.maddr.empty());
  EXPECT_FALSE(via.has_rport);
  EXPECT_EQ(via.rport, 0);
  EXPECT_EQ(via.ttl, -1);
  EXPECT_EQ(via.host_kind, HostKind::kName);
  EXPECT_TRUE(via.params.empty());
  for (const NameAddr* a : {&m.from(), &m.to()}) {
    EXPECT_TRUE(a->display_name.empty());
    EXPECT_FALSE(a->quoted_display_name);
    EXPECT_FALSE(a->angle_brackets);
    EXPECT_TRUE(a->tag.empty());
    EXPECT_TRUE(a->params.empty());
    EXPECT_TRUE(a->uri.password.empty());
    EXPECT_TRUE(a->uri.transport.empty());
    EXPECT_EQ(a->uri.scheme, UriScheme::kSip);
  }
  EXPECT_EQ(m.from().uri.user, "c");
  EXPECT_EQ(m.to().uri.user, "d");
  EXPECT_EQ(m.call_id(), "x2");
  EXPECT_EQ(m.cseq().number, 2u);
  EXPECT_EQ(m.cseq().method, Method::kBye);
  EXPECT_EQ(m.max_forwards(), -1);
  EXPECT_EQ(m.expires(), -1);
  EXPECT_TRUE(m.content_type().empty());
  EXPECT_EQ(m.content_length(), 0);
  EXPECT_EQ(m.contact_count(), 0u);
  EXPECT_FALSE(m.contact_star());
  EXPECT_EQ(m.route_count(), 0u);
  EXPECT_EQ(m.record_route_count(), 0u);
  EXPECT_TRUE(m.body().empty());
  EXPECT_EQ(m.raw(), sparse);
  std::vector<std::string> supported;
  m.ForEachToken(HeaderId::kSupported, [&](std::string_view t) { supported.emplace_back(t); });
  EXPECT_THAT(supported, IsEmpty());
}

TEST_P(SipMessageReuseTest, ARequestKeepsNothingOfAResponseOrAWildcardRegister) {
  auto reused = std::make_unique<SipMessage>();
  const std::string response = Response("SIP/2.0 302 Moved", "Contact: <sip:x@y.example>\r\n");
  ASSERT_TRUE(Parse(response, reused.get()).ok());
  ASSERT_EQ(reused->status_code(), 302);
  const std::string request(kBareRequest);
  ASSERT_TRUE(Parse(request, reused.get()).ok());
  EXPECT_TRUE(reused->is_request());
  EXPECT_EQ(reused->status_code(), 0);
  EXPECT_TRUE(reused->reason_phrase().empty());
  EXPECT_EQ(reused->contact_count(), 0u);
  EXPECT_EQ(ViewOutside(*reused, request), "");

  const std::string wildcard = Request("REGISTER", "Contact: *\r\nExpires: 0\r\n");
  ASSERT_TRUE(Parse(wildcard, reused.get()).ok());
  ASSERT_TRUE(reused->contact_star());
  const std::string with_contact = Request("REGISTER", "Contact: <sip:a@192.0.2.1>\r\n");
  ASSERT_TRUE(Parse(with_contact, reused.get()).ok());
  EXPECT_FALSE(reused->contact_star());
  EXPECT_EQ(reused->expires(), -1);
  EXPECT_EQ(reused->contact_count(), 1u);
}

// The same slots hold the next message's values: each must be reset, not only overwritten
// where the next value has a parameter. Both the one-pass readers (first message plain, the
// second odd enough to need the exact path) and the reverse are covered.
TEST_P(SipMessageReuseTest, ListSlotsAreResetBeforeTheyAreReused) {
  const std::string full =
      "SIP/2.0 302 Moved\r\n"
      "Via: SIP/2.0/UDP h1.example.com:5070;rport=1;received=192.0.2.1;maddr=224.0.0.1;ttl=2;"
      "branch=z9hG4bK1\r\n"
      "Contact: \"A \\\"q\\\"\" <sip:a:pw@h.example.com;transport=tcp;lr>;q=0.5;expires=60;tag=t\r\n"
      "Contact: <sip:b@h.example.com>;q=7\r\n"
      "Route: Proxy <sip:p1.example.com;lr;transport=tcp;maddr=192.0.2.9>;x=1\r\n"
      "Record-Route: \"R\" <sips:[2001:db8::1]:5061;lr>;y=2\r\n"
      "Content-Length: 0\r\n\r\n";
  const std::string plain =
      "SIP/2.0 302 Moved\r\n"
      "Via: SIP/2.0/UDP h2.example.com\r\n"
      "Contact: sip:c@h.example.com\r\n"
      "Contact: sip:d@h.example.com\r\n"
      "Route: <sip:p2.example.com>\r\n"
      "Record-Route: <sip:r2.example.com>\r\n"
      "Content-Length: 0\r\n\r\n";
  for (const auto& [first, second] :
       {std::pair{&full, &plain}, std::pair{&plain, &full}, std::pair{&full, &full}}) {
    SCOPED_TRACE(first == &full ? "full first" : "plain first");
    auto reused = std::make_unique<SipMessage>();
    auto fresh = std::make_unique<SipMessage>();
    ParseResult before = Parse(*first, reused.get());
    ASSERT_TRUE(before.ok()) << DefectText(before.problem.defect);
    ParseResult a = Parse(*second, reused.get());
    ParseResult b = Parse(*second, fresh.get());
    ASSERT_TRUE(a.ok()) << DefectText(a.problem.defect);
    EXPECT_EQ(testing::MessageDiff::Between(a, *reused, b, *fresh), "");
    EXPECT_EQ(ViewOutside(*reused, *second), "");
  }
  // The plain values after the full ones, spelled out.
  auto reused = std::make_unique<SipMessage>();
  ASSERT_TRUE(Parse(full, reused.get()).ok());
  ASSERT_TRUE(Parse(plain, reused.get()).ok());
  ASSERT_EQ(reused->contact_count(), 2u);
  const Contact& c = reused->contacts()[0];
  EXPECT_EQ(c.q_millis, -1);
  EXPECT_EQ(c.expires, -1);
  EXPECT_EQ(c.defect, ContactDefect::kNone);
  EXPECT_TRUE(c.address.tag.empty());
  EXPECT_TRUE(c.address.display_name.empty());
  EXPECT_FALSE(c.address.quoted_display_name);
  EXPECT_TRUE(c.address.uri.password.empty());
  EXPECT_FALSE(c.address.uri.lr);
  EXPECT_EQ(reused->contacts()[1].defect, ContactDefect::kNone);
  ASSERT_EQ(reused->route_count(), 1u);
  EXPECT_TRUE(reused->routes()[0].display_name.empty());
  EXPECT_TRUE(reused->routes()[0].params.empty());
  EXPECT_FALSE(reused->routes()[0].uri.lr);
  EXPECT_TRUE(reused->routes()[0].uri.transport.empty());
  EXPECT_TRUE(reused->routes()[0].uri.maddr.empty());
  ASSERT_EQ(reused->record_route_count(), 1u);
  EXPECT_EQ(reused->record_routes()[0].uri.scheme, UriScheme::kSip);
  EXPECT_EQ(reused->record_routes()[0].uri.host_kind, HostKind::kName);
  EXPECT_EQ(reused->record_routes()[0].uri.port, 0);
  EXPECT_FALSE(reused->record_routes()[0].quoted_display_name);
}

TEST_P(SipMessageReuseTest, AMessageAfterAMalformedOneIsWhole) {
  auto reused = std::make_unique<SipMessage>();
  // Fails on its last header, after everything else has been read.
  std::string bad = RichInvite();
  bad.insert(bad.find("Content-Length"), "Max-Forwards: many\r\n");
  ASSERT_EQ(Parse(bad, reused.get()).status, ParseStatus::kMalformed);
  ASSERT_GT(reused->header_count(), 10u);
  const std::string good(kSparseResponse);
  ParseResult a = Parse(good, reused.get());
  auto fresh = std::make_unique<SipMessage>();
  ParseResult b = Parse(good, fresh.get());
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(testing::MessageDiff::Between(a, *reused, b, *fresh), "");
  EXPECT_EQ(ViewOutside(*reused, good), "");
}

TEST_P(SipMessageReuseTest, AMessageAfterAnIncompleteOneIsWhole) {
  auto reused = std::make_unique<SipMessage>();
  const std::string rich = RichInvite();
  const std::string partial = rich.substr(0, rich.size() - 5);  // body not all there yet
  ASSERT_EQ(Parse(partial, reused.get(), Framing::kStream).status, ParseStatus::kIncomplete);
  const std::string good(kSparseResponse);
  ParseResult a = Parse(good, reused.get(), Framing::kStream);
  auto fresh = std::make_unique<SipMessage>();
  ParseResult b = Parse(good, fresh.get(), Framing::kStream);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(testing::MessageDiff::Between(a, *reused, b, *fresh), "");
  EXPECT_EQ(ViewOutside(*reused, good), "");
}

std::vector<std::string> CorpusMessages() {
  std::vector<std::string> messages;
  for (const char* dir : {"rfc4475", "rfc5118", "sip", "edge"}) {
    for (const auto& entry :
         std::filesystem::directory_iterator(std::string(B2BUA_TEST_DATA_DIR "/") + dir)) {
      if (entry.path().extension() != ".sip") continue;
      std::ifstream in(entry.path(), std::ios::binary);
      messages.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
  }
  return messages;
}

// Any message after any other, in both framings, reads exactly as on a new instance, and
// no view of the reused one points into the earlier buffer.
TEST_P(SipMessageReuseTest, EveryCorpusMessageAfterEveryOtherReadsAsOnANewInstance) {
  std::vector<std::string> messages = CorpusMessages();
  ASSERT_GT(messages.size(), 50u);
  messages.push_back(RichInvite());
  messages.emplace_back(kSparseResponse);
  messages.emplace_back(kBareRequest);
  auto reused = std::make_unique<SipMessage>();
  size_t complete = 0;
  for (Framing framing : {Framing::kDatagram, Framing::kStream}) {
    for (size_t j = 0; j < messages.size(); ++j) {
      const std::string& second = messages[j];
      auto fresh = std::make_unique<SipMessage>();
      const ParseResult expected = Parse(second, fresh.get(), framing);
      complete += expected.ok();
      for (size_t i = 0; i < messages.size(); ++i) {
        Parse(messages[i], reused.get(), framing);
        const ParseResult got = Parse(second, reused.get(), framing);
        std::string diff = testing::MessageDiff::Between(got, *reused, expected, *fresh);
        if (diff.empty()) diff = ViewOutside(*reused, second);
        ASSERT_EQ(diff, "") << "message " << j << " after message " << i << " ("
                            << (framing == Framing::kDatagram ? "datagram" : "stream") << ")";
      }
    }
  }
  // Both verdicts must be reached for the test to mean much.
  EXPECT_GT(complete, messages.size() / 2);
  EXPECT_LT(complete, 2 * messages.size());
}

}  // namespace
}  // namespace b2bua::proto
