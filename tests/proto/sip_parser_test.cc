// Tests proto/sip_parser.{h,cc} (and the header tables of proto/sip_message.h) one grammar
// element at a time.

#include "proto/sip_parser.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/proto/sip_test_messages.h"
#include "proto/sip_message.h"
#include "proto/sip_uri.h"

namespace b2bua::proto {
namespace {

using test::Request;
using test::Response;

using ::testing::AnyOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string Options(std::string_view headers = "") { return Request("OPTIONS", headers); }

constexpr std::string_view kSdp =
    "v=0\r\n"
    "o=alice 2890844526 2890844526 IN IP4 pc33.atlanta.example.com\r\n"
    "s=-\r\n"
    "c=IN IP4 192.0.2.101\r\n"
    "t=0 0\r\n"
    "m=audio 49172 RTP/AVP 0\r\n"
    "a=rtpmap:0 PCMU/8000\r\n";

std::string Invite() {
  return Request("INVITE",
                 "Contact: <sip:alice@pc33.atlanta.example.com>\r\n"
                 "Content-Type: application/sdp\r\n",
                 kSdp);
}

// Replaces the whole line that starts with `prefix` (without its CRLF) by `line`.
void ReplaceLine(std::string& message, std::string_view prefix, std::string_view line) {
  size_t at = message.find(prefix);
  message.replace(at, message.find("\r\n", at) - at, line);
}

class SipParserTest : public ::testing::Test {
 protected:
  ParseResult Parse(std::string_view input, Framing framing = Framing::kDatagram) {
    return parser_.Parse(input, framing, msg_.get());
  }
  const SipMessage& msg() const { return *msg_; }

  SipParser parser_;
  std::unique_ptr<SipMessage> msg_ = std::make_unique<SipMessage>();
};

// Places inputs so that their last byte sits right before a PROT_NONE page: any read past
// the end of the input faults (picohttpparser's test.c trick).
class GuardedBuffer {
 public:
  GuardedBuffer() : page_(static_cast<size_t>(sysconf(_SC_PAGESIZE))) {
    void* mem =
        mmap(nullptr, 2 * page_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) return;
    base_ = static_cast<char*>(mem);
    if (mprotect(base_ + page_, page_, PROT_NONE) != 0) {
      munmap(base_, 2 * page_);
      base_ = nullptr;
    }
  }
  ~GuardedBuffer() {
    if (base_) munmap(base_, 2 * page_);
  }
  GuardedBuffer(const GuardedBuffer&) = delete;
  GuardedBuffer& operator=(const GuardedBuffer&) = delete;

  bool ok() const { return base_ != nullptr; }
  size_t capacity() const { return page_; }

  /// Copies `bytes` to end exactly at the guard page; the view is valid until the next call.
  std::string_view Place(std::string_view bytes) {
    char* dst = base_ + page_ - bytes.size();
    if (!bytes.empty()) std::memcpy(dst, bytes.data(), bytes.size());
    return {dst, bytes.size()};
  }

 private:
  size_t page_;
  char* base_ = nullptr;
};

bool IsPureCrlf(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (c != '\r' && c != '\n') return false;
  return true;
}

// ---------------------------------------------------------------------------------------
// Header and method tables.

struct CompactForm {
  std::string_view compact;
  HeaderId id;
  std::string_view long_name;
  std::string_view sample_value;  // a value valid for that header
};

const CompactForm kCompactForms[] = {
    {"i", HeaderId::kCallId, "Call-ID", "f81d4fae@example.com"},
    {"m", HeaderId::kContact, "Contact", "<sip:alice@example.com>"},
    {"e", HeaderId::kContentEncoding, "Content-Encoding", "gzip"},
    {"l", HeaderId::kContentLength, "Content-Length", "0"},
    {"c", HeaderId::kContentType, "Content-Type", "text/plain"},
    {"f", HeaderId::kFrom, "From", "<sip:alice@example.com>;tag=88sja8x"},
    {"s", HeaderId::kSubject, "Subject", "lunch"},
    {"k", HeaderId::kSupported, "Supported", "timer"},
    {"t", HeaderId::kTo, "To", "<sip:bob@example.com>"},
    {"v", HeaderId::kVia, "Via", "SIP/2.0/UDP host.example.com;branch=z9hG4bKnashds8"},
    {"o", HeaderId::kEvent, "Event", "presence"},
    {"r", HeaderId::kReferTo, "Refer-To", "<sip:carol@example.com>"},
    {"u", HeaderId::kAllowEvents, "Allow-Events", "presence"},
    {"x", HeaderId::kSessionExpires, "Session-Expires", "1800"},
    {"y", HeaderId::kIdentity, "Identity", "abc"},
    {"a", HeaderId::kAcceptContact, "Accept-Contact", "*;audio"},
    {"b", HeaderId::kReferredBy, "Referred-By", "<sip:dave@example.com>"},
    {"d", HeaderId::kRequestDisposition, "Request-Disposition", "proxy"},
    {"j", HeaderId::kRejectContact, "Reject-Contact", "*;video"},
    {"n", HeaderId::kIdentityInfo, "Identity-Info", "<https://example.com/cert>;alg=rsa-sha1"},
};

std::string Upper(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 32);
  return out;
}

TEST(HeaderIdTest, CompactFormsMapToLongForms) {
  for (const CompactForm& f : kCompactForms) {
    SCOPED_TRACE(f.compact);
    EXPECT_EQ(LookupHeaderId(f.compact), f.id);
    EXPECT_EQ(LookupHeaderId(Upper(f.compact)), f.id);
    EXPECT_EQ(LookupHeaderId(f.long_name), f.id);
    EXPECT_EQ(HeaderName(f.id), f.long_name);
  }
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
  return out;
}

TEST(HeaderIdTest, EveryKnownNameRoundTrips) {
  for (unsigned i = 1; i < static_cast<unsigned>(HeaderId::kCount); ++i) {
    const auto id = static_cast<HeaderId>(i);
    std::string_view name = HeaderName(id);
    SCOPED_TRACE(name);
    ASSERT_FALSE(name.empty()) << "HeaderId " << i << " has no name";
    EXPECT_EQ(LookupHeaderId(name), id);
    EXPECT_EQ(LookupHeaderId(Upper(name)), id);
    EXPECT_EQ(LookupHeaderId(Lower(name)), id);
    // One letter more or less is another header ("T" is the compact form of To).
    EXPECT_EQ(LookupHeaderId(std::string(name) + "s"), HeaderId::kOther);
    if (name.size() > 2) {
      EXPECT_EQ(LookupHeaderId(name.substr(0, name.size() - 1)), HeaderId::kOther);
    }
  }
  EXPECT_EQ(LookupHeaderId("user-agent"), HeaderId::kUserAgent);
  EXPECT_EQ(LookupHeaderId("WWW-Authenticate"), HeaderId::kWwwAuthenticate);
  EXPECT_EQ(LookupHeaderId("RSeq"), HeaderId::kRSeq);
}

TEST(HeaderIdTest, NamesAreCaseInsensitive) {
  EXPECT_EQ(LookupHeaderId("call-id"), HeaderId::kCallId);
  EXPECT_EQ(LookupHeaderId("CALL-ID"), HeaderId::kCallId);
  EXPECT_EQ(LookupHeaderId("cAlL-iD"), HeaderId::kCallId);
  EXPECT_EQ(LookupHeaderId("VIA"), HeaderId::kVia);
  EXPECT_EQ(LookupHeaderId("ViA"), HeaderId::kVia);
  EXPECT_EQ(LookupHeaderId("cseq"), HeaderId::kCSeq);
  EXPECT_EQ(LookupHeaderId("max-FORWARDS"), HeaderId::kMaxForwards);
  EXPECT_EQ(LookupHeaderId("content-LENGTH"), HeaderId::kContentLength);
  EXPECT_EQ(LookupHeaderId("p-asserted-identity"), HeaderId::kPAssertedIdentity);
  EXPECT_EQ(LookupHeaderId("record-route"), HeaderId::kRecordRoute);
}

TEST(HeaderIdTest, UnknownNamesAreOther) {
  EXPECT_EQ(LookupHeaderId(""), HeaderId::kOther);
  EXPECT_EQ(LookupHeaderId("X-Custom"), HeaderId::kOther);
  EXPECT_EQ(LookupHeaderId("Vias"), HeaderId::kOther);
  EXPECT_EQ(LookupHeaderId("Vi"), HeaderId::kOther);
  EXPECT_EQ(LookupHeaderId("vv"), HeaderId::kOther);
  EXPECT_EQ(LookupHeaderId("g"), HeaderId::kOther);
  EXPECT_EQ(LookupHeaderId("z"), HeaderId::kOther);
  EXPECT_EQ(LookupHeaderId("C%6Fntact"), HeaderId::kOther);
  EXPECT_EQ(LookupHeaderId("Contact "), HeaderId::kOther);
  EXPECT_TRUE(HeaderName(HeaderId::kOther).empty());
}

TEST(HeaderIdTest, FoldsTheCaseOfLettersOnly) {
  // A byte 0x20 away from a name's '-' or digit is another byte, not another case.
  EXPECT_EQ(LookupHeaderId("Call\rID"), HeaderId::kOther);
  EXPECT_EQ(LookupHeaderId("Max\rForwards"), HeaderId::kOther);
  EXPECT_EQ(LookupHeaderId("Call-iD"), HeaderId::kCallId);
  // Same length and hash inputs (first, middle, last letter) as a known name.
  EXPECT_EQ(LookupHeaderId("Fxom"), HeaderId::kOther);
  EXPECT_EQ(LookupHeaderId("Cxxxxxx-xxxxxh"), HeaderId::kOther);
  // Longer than every known name, and one byte short of or past a known one.
  EXPECT_EQ(LookupHeaderId("Request-Dispositions"), HeaderId::kOther);
  EXPECT_EQ(LookupHeaderId("P-Asserted-Identity-Extra"), HeaderId::kOther);
  EXPECT_EQ(LookupHeaderId("Content-Lengt"), HeaderId::kOther);
  EXPECT_EQ(LookupHeaderId(std::string_view("V\0a", 3)), HeaderId::kOther);
  EXPECT_EQ(LookupHeaderId("@"), HeaderId::kOther);
  EXPECT_EQ(LookupHeaderId("["), HeaderId::kOther);
  EXPECT_EQ(LookupHeaderId("\xC1"), HeaderId::kOther);
}

TEST(HeaderIdTest, EveryKnownIdRoundTripsThroughItsName) {
  for (int i = 1; i < static_cast<int>(HeaderId::kCount); ++i) {
    HeaderId id = static_cast<HeaderId>(i);
    std::string_view name = HeaderName(id);
    SCOPED_TRACE(name);
    ASSERT_FALSE(name.empty()) << "id " << i;
    EXPECT_EQ(LookupHeaderId(name), id);
    EXPECT_EQ(LookupHeaderId(Upper(name)), id);
  }
  EXPECT_EQ(HeaderName(HeaderId::kCallId), "Call-ID");
  EXPECT_EQ(HeaderName(HeaderId::kCSeq), "CSeq");
  EXPECT_EQ(HeaderName(HeaderId::kMaxForwards), "Max-Forwards");
}

TEST(MethodTest, KnownMethodsAreCaseSensitive) {
  const std::pair<std::string_view, Method> kMethods[] = {
      {"INVITE", Method::kInvite},   {"ACK", Method::kAck},
      {"BYE", Method::kBye},         {"CANCEL", Method::kCancel},
      {"OPTIONS", Method::kOptions}, {"REGISTER", Method::kRegister},
      {"PRACK", Method::kPrack},     {"SUBSCRIBE", Method::kSubscribe},
      {"NOTIFY", Method::kNotify},   {"PUBLISH", Method::kPublish},
      {"INFO", Method::kInfo},       {"REFER", Method::kRefer},
      {"MESSAGE", Method::kMessage}, {"UPDATE", Method::kUpdate},
  };
  for (const auto& [name, method] : kMethods) {
    EXPECT_EQ(LookupMethod(name), method) << name;
    EXPECT_EQ(MethodName(method), name);
  }
  EXPECT_EQ(LookupMethod("invite"), Method::kUnknown);
  EXPECT_EQ(LookupMethod("Invite"), Method::kUnknown);
  EXPECT_EQ(LookupMethod("INVITEX"), Method::kUnknown);
  EXPECT_EQ(LookupMethod(""), Method::kUnknown);
  EXPECT_EQ(LookupMethod("RE%47IST%45R"), Method::kUnknown);
}

// ---------------------------------------------------------------------------------------
// Start lines.

TEST_F(SipParserTest, ParsesRequestLine) {
  std::string in = Options();
  ParseResult r = Parse(in);
  ASSERT_EQ(r.status, ParseStatus::kComplete);
  EXPECT_TRUE(r.ok());
  EXPECT_FALSE(r.problem);
  EXPECT_EQ(r.consumed, in.size());
  EXPECT_TRUE(msg().is_request());
  EXPECT_FALSE(msg().is_response());
  EXPECT_EQ(msg().method(), Method::kOptions);
  EXPECT_EQ(msg().method_text(), "OPTIONS");
  EXPECT_EQ(msg().request_uri().text, "sip:bob@biloxi.example.com");
  EXPECT_EQ(msg().request_uri().scheme, UriScheme::kSip);
  EXPECT_EQ(msg().request_uri().user, "bob");
  EXPECT_EQ(msg().request_uri().host, "biloxi.example.com");
  EXPECT_EQ(msg().raw(), in);
  EXPECT_TRUE(msg().body().empty());
}

TEST_F(SipParserTest, AcceptsAnyMethodToken) {
  // Every token character: alphanum and - . ! % * _ + ` ' ~
  constexpr std::string_view kMethod = "Xy9-.!%*_+`'~";
  std::string in = Request(kMethod, "");
  ASSERT_EQ(Parse(in).status, ParseStatus::kComplete);
  EXPECT_EQ(msg().method(), Method::kUnknown);
  EXPECT_EQ(msg().method_text(), kMethod);
  EXPECT_EQ(msg().cseq().method_text, kMethod);
}

TEST_F(SipParserTest, LowercaseMethodIsUnknown) {
  std::string in = Request("invite", "");
  ASSERT_EQ(Parse(in).status, ParseStatus::kComplete);
  EXPECT_EQ(msg().method(), Method::kUnknown);
  EXPECT_EQ(msg().method_text(), "invite");
}

TEST_F(SipParserTest, RejectsNonTokenMethod) {
  for (std::string_view method : {"INV(ITE", "INV\"ITE", "INV:ITE", "INV<ITE"}) {
    SCOPED_TRACE(method);
    std::string in = Request(method, "");
    ParseResult r = Parse(in);
    EXPECT_EQ(r.status, ParseStatus::kMalformed);
    EXPECT_EQ(r.problem.response_code, 400);
  }
}

TEST_F(SipParserTest, ParsesRequestUriWithIpv6AndParams) {
  std::string in = Options();
  in.replace(0, in.find(" SIP/2.0"), "OPTIONS sips:bob@[2001:db8::1]:5061;transport=tcp;lr");
  ASSERT_EQ(Parse(in).status, ParseStatus::kComplete);
  const SipUri& uri = msg().request_uri();
  EXPECT_EQ(uri.scheme, UriScheme::kSips);
  EXPECT_EQ(uri.host, "2001:db8::1");
  EXPECT_EQ(uri.host_kind, HostKind::kIpv6);
  EXPECT_EQ(uri.port, 5061);
  EXPECT_EQ(uri.transport, "tcp");
  EXPECT_TRUE(uri.lr);
}

TEST_F(SipParserTest, RejectsBadRequestLines) {
  const std::string_view kBadLines[] = {
      "OPTIONS  sip:bob@biloxi.example.com SIP/2.0",   // two SPs
      "OPTIONS sip:bob@biloxi.example.com SIP/2.0 ",   // trailing SP
      "OPTIONS <sip:bob@biloxi.example.com> SIP/2.0",  // bracketed Request-URI
      "OPTIONS sip:bob@biloxi.example.com; lr SIP/2.0",
      "OPTIONS sip:bob@biloxi.example.com",  // no version
      "OPTIONS",
  };
  for (std::string_view line : kBadLines) {
    SCOPED_TRACE(line);
    std::string in = Options();
    in.replace(0, in.find("\r\n"), line);
    ParseResult r = Parse(in);
    EXPECT_EQ(r.status, ParseStatus::kMalformed);
    EXPECT_EQ(r.problem.response_code, 400);
    EXPECT_TRUE(r.problem);
  }
}

TEST_F(SipParserTest, RejectsUnsupportedVersionWith505) {
  for (std::string_view version : {"SIP/3.0", "SIP/2.1", "SIP/7.0"}) {
    SCOPED_TRACE(version);
    std::string in = Options();
    in.replace(in.find("SIP/2.0"), 7, version);
    ParseResult r = Parse(in);
    EXPECT_EQ(r.status, ParseStatus::kMalformed);
    EXPECT_EQ(r.problem.defect, Defect::kBadVersion);
    EXPECT_EQ(r.problem.response_code, 505);
  }
}

TEST_F(SipParserTest, VersionIsCaseInsensitive) {
  // RFC 3261 7.1: the SIP-Version string is case-insensitive.
  std::string in = Options();
  in.replace(in.find("SIP/2.0"), 7, "sip/2.0");
  EXPECT_EQ(Parse(in).status, ParseStatus::kComplete);
}

TEST_F(SipParserTest, ParsesStatusLine) {
  std::string in = Response("SIP/2.0 180 Ringing");
  ParseResult r = Parse(in);
  ASSERT_EQ(r.status, ParseStatus::kComplete);
  EXPECT_TRUE(msg().is_response());
  EXPECT_EQ(msg().status_code(), 180);
  EXPECT_EQ(msg().reason_phrase(), "Ringing");
  EXPECT_EQ(msg().cseq().method, Method::kInvite);
}

TEST_F(SipParserTest, AcceptsStatusCodes100To699) {
  for (int code : {100, 101, 199, 200, 302, 486, 500, 603, 699}) {
    SCOPED_TRACE(code);
    std::string in = Response("SIP/2.0 " + std::to_string(code) + " Whatever");
    ASSERT_EQ(Parse(in).status, ParseStatus::kComplete);
    EXPECT_EQ(msg().status_code(), code);
  }
}

TEST_F(SipParserTest, DropsResponsesWithBadStatusCodes) {
  // A broken response is never answered: response_code 0 means drop.
  for (std::string_view code :
       {"099", "000", "700", "999", "20", "2000", "4294967301", "2x0", "-20", ""}) {
    SCOPED_TRACE(code);
    std::string in = Response("SIP/2.0 " + std::string(code) + " Reason");
    ParseResult r = Parse(in);
    EXPECT_EQ(r.status, ParseStatus::kMalformed);
    EXPECT_TRUE(r.problem);
    EXPECT_EQ(r.problem.response_code, 0);
  }
  std::string in = Response("SIP/2.0 700 Reason");
  EXPECT_EQ(Parse(in).problem.defect, Defect::kBadStatusCode);
}

TEST_F(SipParserTest, DropsResponsesWithBadVersion) {
  std::string in = Response("SIP/3.0 200 OK");
  ParseResult r = Parse(in);
  EXPECT_EQ(r.status, ParseStatus::kMalformed);
  EXPECT_EQ(r.problem.response_code, 0);
}

TEST_F(SipParserTest, KeepsUtf8AndEmptyReasonPhrases) {
  constexpr std::string_view kReason =
      "Besch\xC3\xA4"
      "ftigt \xE2\x80\x93 = 2**3 * 5**2";
  std::string in = Response("SIP/2.0 486 " + std::string(kReason));
  ASSERT_EQ(Parse(in).status, ParseStatus::kComplete);
  EXPECT_EQ(msg().reason_phrase(), kReason);

  in = Response("SIP/2.0 100 ");
  ASSERT_EQ(Parse(in).status, ParseStatus::kComplete);
  EXPECT_EQ(msg().status_code(), 100);
  EXPECT_TRUE(msg().reason_phrase().empty());
}

// ---------------------------------------------------------------------------------------
// Header lines.

TEST_F(SipParserTest, EveryCompactFormIsRecognisedInAMessage) {
  for (const CompactForm& f : kCompactForms) {
    for (const std::string& name : {std::string(f.compact), Upper(f.compact)}) {
      SCOPED_TRACE(name);
      std::string in = "OPTIONS sip:bob@biloxi.example.com SIP/2.0\r\n" + name + ": " +
                       std::string(f.sample_value) + "\r\n\r\n";
      ParseResult r = Parse(in);
      ASSERT_EQ(r.status, ParseStatus::kComplete) << DefectText(r.problem.defect);
      ASSERT_EQ(msg().header_count(), 1u);
      EXPECT_EQ(msg().headers()[0].id, f.id);
      EXPECT_EQ(msg().headers()[0].name, name);
      EXPECT_EQ(msg().headers()[0].value, f.sample_value);
      EXPECT_EQ(msg().FindHeader(f.id), &msg().headers()[0]);
      EXPECT_EQ(msg().FindHeader(f.long_name), &msg().headers()[0]);
      EXPECT_EQ(msg().FindHeader(f.compact), &msg().headers()[0]);
    }
  }
}

TEST_F(SipParserTest, CompactHeadersFillTheMessage) {
  std::string in =
      "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
      "v: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n"
      "t: <sip:bob@biloxi.example.com>\r\n"
      "f: <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
      "i: a84b4c76e66710\r\n"
      "CSeq: 1 INVITE\r\n"
      "m: <sip:alice@pc33.atlanta.example.com>\r\n"
      "c: application/sdp\r\n"
      "l: 3\r\n"
      "\r\n"
      "abc";
  ASSERT_EQ(Parse(in, Framing::kStream).status, ParseStatus::kComplete);
  EXPECT_EQ(msg().via_count(), 1u);
  EXPECT_TRUE(msg().has_to());
  EXPECT_EQ(msg().to().uri.user, "bob");
  EXPECT_TRUE(msg().has_from());
  EXPECT_EQ(msg().from().tag, "1928301774");
  EXPECT_EQ(msg().call_id(), "a84b4c76e66710");
  EXPECT_EQ(msg().contact_count(), 1u);
  EXPECT_EQ(msg().content_type(), "application/sdp");
  EXPECT_EQ(msg().content_length(), 3);
  EXPECT_EQ(msg().body(), "abc");
}

TEST_F(SipParserTest, HeaderNamesAreCaseInsensitive) {
  std::string in =
      "OPTIONS sip:bob@biloxi.example.com SIP/2.0\r\n"
      "vIA: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n"
      "mAX-forwards: 70\r\n"
      "TO: <sip:bob@biloxi.example.com>\r\n"
      "from: <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
      "cAlL-iD: a84b4c76e66710\r\n"
      "CSEQ: 7 OPTIONS\r\n"
      "EXPIRES: 60\r\n"
      "content-length: 0\r\n"
      "\r\n";
  ASSERT_EQ(Parse(in).status, ParseStatus::kComplete);
  EXPECT_EQ(msg().via_count(), 1u);
  EXPECT_EQ(msg().max_forwards(), 70);
  EXPECT_TRUE(msg().has_to());
  EXPECT_TRUE(msg().has_from());
  EXPECT_EQ(msg().call_id(), "a84b4c76e66710");
  EXPECT_EQ(msg().cseq().number, 7u);
  EXPECT_EQ(msg().expires(), 60);
  EXPECT_EQ(msg().content_length(), 0);
  ASSERT_NE(msg().FindHeader("CALL-ID"), nullptr);
  EXPECT_EQ(msg().FindHeader("CALL-ID")->name, "cAlL-iD");
  EXPECT_EQ(msg().FindHeader("i"), msg().FindHeader(HeaderId::kCallId));
}

TEST_F(SipParserTest, TrimsLwsAroundNamesAndValues) {
  std::string in = Options(
      "Subject   :   lunch at noon   \r\n"
      "X-Tight:value\r\n"
      "X-Empty:\r\n");
  ASSERT_EQ(Parse(in).status, ParseStatus::kComplete);
  const HeaderField* subject = msg().FindHeader(HeaderId::kSubject);
  ASSERT_NE(subject, nullptr);
  EXPECT_EQ(subject->value, "lunch at noon");
  ASSERT_NE(msg().FindHeader("X-Tight"), nullptr);
  EXPECT_EQ(msg().FindHeader("X-Tight")->value, "value");
  ASSERT_NE(msg().FindHeader("x-empty"), nullptr);
  EXPECT_TRUE(msg().FindHeader("x-empty")->value.empty());
}

TEST_F(SipParserTest, UnfoldsContinuationLines) {
  std::string in =
      "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
      "Via: SIP/2.0/UDP\r\n"
      "  pc33.atlanta.example.com\r\n"
      "\t;branch=z9hG4bK776asdhds\r\n"
      "Max-Forwards:\r\n"
      " 70\r\n"
      "To: <sip:bob@biloxi.example.com>\r\n"
      "  ;tag=xyz\r\n"
      "From: <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
      "Call-ID: a84b4c76e66710\r\n"
      "CSeq: 2\r\n"
      "  INVITE\r\n"
      "Subject: first\r\n"
      " second\r\n"
      "\tthird\r\n"
      "Content-Length: 0\r\n"
      "\r\n";
  ASSERT_EQ(Parse(in).status, ParseStatus::kComplete);
  ASSERT_EQ(msg().via_count(), 1u);
  EXPECT_EQ(msg().vias()[0].host, "pc33.atlanta.example.com");
  EXPECT_EQ(msg().vias()[0].branch, "z9hG4bK776asdhds");
  EXPECT_EQ(msg().max_forwards(), 70);
  EXPECT_EQ(msg().to().tag, "xyz");
  EXPECT_EQ(msg().cseq().number, 2u);
  EXPECT_EQ(msg().cseq().method, Method::kInvite);
  const HeaderField* subject = msg().FindHeader(HeaderId::kSubject);
  ASSERT_NE(subject, nullptr);
  // A folded value keeps its inner CRLF + whitespace.
  EXPECT_EQ(subject->value, "first\r\n second\r\n\tthird");
  const HeaderField* max_forwards = msg().FindHeader(HeaderId::kMaxForwards);
  ASSERT_NE(max_forwards, nullptr);
  EXPECT_EQ(max_forwards->value, "70");
}

TEST_F(SipParserTest, KeepsUnknownHeadersVerbatimInOrder) {
  std::string in =
      "OPTIONS sip:bob@biloxi.example.com SIP/2.0\r\n"
      "X-First: one\r\n"
      "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n"
      "P-Weird-Header: ;;,,;;,;\r\n"
      "To: <sip:bob@biloxi.example.com>\r\n"
      "X-First: again\r\n"
      "From: <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
      "UnknownHeaderWithUTF8: \xEF\xBB\xBF\xE5\xA4\xA7\r\n"
      "Call-ID: a84b4c76e66710\r\n"
      "CSeq: 1 OPTIONS\r\n"
      "Content-Length: 0\r\n"
      "\r\n";
  ASSERT_EQ(Parse(in).status, ParseStatus::kComplete);
  std::vector<std::string> lines;
  for (size_t i = 0; i < msg().header_count(); ++i)
    lines.push_back(std::string(msg().headers()[i].name) + "=" +
                    std::string(msg().headers()[i].value));
  EXPECT_THAT(
      lines,
      ElementsAre("X-First=one", "Via=SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds",
                  "P-Weird-Header=;;,,;;,;", "To=<sip:bob@biloxi.example.com>", "X-First=again",
                  "From=<sip:alice@atlanta.example.com>;tag=1928301774",
                  "UnknownHeaderWithUTF8=\xEF\xBB\xBF\xE5\xA4\xA7", "Call-ID=a84b4c76e66710",
                  "CSeq=1 OPTIONS", "Content-Length=0"));
  EXPECT_EQ(msg().headers()[0].id, HeaderId::kOther);
  EXPECT_EQ(msg().headers()[1].id, HeaderId::kVia);
  // FindHeader returns the first of several.
  EXPECT_EQ(msg().FindHeader("x-first"), &msg().headers()[0]);
}

TEST_F(SipParserTest, UnknownHeaderNamesMustBeTokens) {
  // Known names end at the first ':', SP or HT; unknown ones must be tokens up to there.
  for (std::string_view line : {"X{Y: z\r\n", "X/Y: z\r\n", "X-\x01Y: z\r\n", "Vi@: x\r\n",
                                "X-Y Z: z\r\n", "\xC3\xA9: z\r\n"}) {
    SCOPED_TRACE(line);
    ParseResult r = Parse(Request("OPTIONS", line));
    EXPECT_EQ(r.status, ParseStatus::kMalformed);
    EXPECT_EQ(r.problem.defect, Defect::kBadHeaderName);
  }
  // The message views the input: keep it alive while the test reads them.
  std::string in = Request("OPTIONS", "X-Odd.Name!%*_+`'~ \t : value\r\nSubject:\r\n");
  ParseResult r = Parse(in);
  ASSERT_EQ(r.status, ParseStatus::kComplete) << DefectText(r.problem.defect);
  const HeaderField* odd = msg().FindHeader("x-odd.name!%*_+`'~");
  ASSERT_NE(odd, nullptr);
  EXPECT_EQ(odd->name, "X-Odd.Name!%*_+`'~");
  EXPECT_EQ(odd->value, "value");
  const HeaderField* subject = msg().FindHeader(HeaderId::kSubject);
  ASSERT_NE(subject, nullptr);
  EXPECT_EQ(subject->value, "");
}

TEST_F(SipParserTest, EveryCheckedHeaderIsChecked) {
  // The parser skips headers it has no grammar for; each of these must still be looked at.
  struct Case {
    std::string_view line;
    HeaderId id;
  };
  for (const Case& c : std::initializer_list<Case>{
           {"Via: x\r\n", HeaderId::kVia},
           {"Contact: <sip:a@b\r\n", HeaderId::kContact},
           {"Route: <sip:a@b\r\n", HeaderId::kRoute},
           {"Record-Route: <sip:a@b\r\n", HeaderId::kRecordRoute},
           {"From: <sip:a@b>\r\n", HeaderId::kFrom},
           {"To: <sip:a@b>\r\n", HeaderId::kTo},
           {"Call-ID: x\r\n", HeaderId::kCallId},
           {"CSeq: 1 OPTIONS\r\n", HeaderId::kCSeq},
           {"Max-Forwards: 1\r\n", HeaderId::kMaxForwards},
           {"Content-Length: x\r\n", HeaderId::kContentLength},
           {"Content-Type: text\r\n", HeaderId::kContentType},
           {"Expires: x\r\n", HeaderId::kExpires},
           {"Date: x\r\n", HeaderId::kDate},
           {"Require: a b\r\n", HeaderId::kRequire},
           {"Proxy-Require: a b\r\n", HeaderId::kProxyRequire},
           {"Supported: a b\r\n", HeaderId::kSupported},
           {"Unsupported: a b\r\n", HeaderId::kUnsupported},
           {"Allow: a b\r\n", HeaderId::kAllow},
           {"Retry-After: x\r\n", HeaderId::kRetryAfter},
       }) {
    SCOPED_TRACE(c.line);
    ParseResult r = Parse(Request("OPTIONS", c.line));
    EXPECT_EQ(r.status, ParseStatus::kMalformed);
    EXPECT_EQ(r.problem.header, c.id);
  }
}

// RFC 3261 25.1 for Allow, Supported, Require and the like: 1#token, spelled out plainly.
bool IsTokenListReference(std::string_view value) {
  auto lws = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  auto trim = [&](std::string_view s) {
    while (!s.empty() && lws(s.front())) s.remove_prefix(1);
    while (!s.empty() && lws(s.back())) s.remove_suffix(1);
    return s;
  };
  value = trim(value);
  if (value.empty()) return true;
  for (;;) {
    size_t comma = value.find(',');
    std::string_view item = trim(value.substr(0, comma));
    if (!IsTokenString(item)) return false;
    if (comma == std::string_view::npos) return true;
    value.remove_prefix(comma + 1);
  }
}

TEST_F(SipParserTest, TokenListsAreCheckedAsTheGrammarSays) {
  // Lists assembled at random, reproducibly, from tokens, commas, LWS (folding included)
  // and bytes that are none of these.
  constexpr std::string_view kPieces[] = {"timer", "100rel", "a", "x-y.z!", ",", ", ", " ,",
                                          " ",     "\t",     "\r\n ", ",,", "\"", "<",  "@",
                                          "\xc3\xa9", ";"};
  uint64_t state = 42;
  size_t valid = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string list;
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    for (int k = 0, n = static_cast<int>(state >> 61) + 1; k < n; ++k) {
      state = state * 6364136223846793005ULL + 1442695040888963407ULL;
      // Mostly tokens and separators; the odd bytes now and then.
      size_t pick = (state >> 33) % 40;
      list += kPieces[pick < 24 ? pick % 11 : pick - 24];
    }
    const bool expected = IsTokenListReference(list);
    valid += expected;
    ParseResult r = Parse(Options("Supported: " + list + "\r\n"));
    ASSERT_EQ(r.ok(), expected) << "Supported: " << list;
    if (!expected) {
      ASSERT_EQ(r.problem.header, HeaderId::kSupported) << list;
    }
  }
  EXPECT_GT(valid, 2000u);
  EXPECT_LT(valid, 18000u);
}

TEST_F(SipParserTest, ClearsThePreviousMessage) {
  std::string big = Invite();
  ASSERT_EQ(Parse(big).status, ParseStatus::kComplete);
  ASSERT_EQ(msg().contact_count(), 1u);
  std::string small = "OPTIONS sip:bob@biloxi.example.com SIP/2.0\r\nX-Only: 1\r\n\r\n";
  ASSERT_EQ(Parse(small).status, ParseStatus::kComplete);
  EXPECT_EQ(msg().header_count(), 1u);
  EXPECT_EQ(msg().via_count(), 0u);
  EXPECT_EQ(msg().top_via(), nullptr);
  EXPECT_EQ(msg().contact_count(), 0u);
  EXPECT_FALSE(msg().has_from());
  EXPECT_FALSE(msg().has_to());
  EXPECT_FALSE(msg().has_cseq());
  EXPECT_TRUE(msg().call_id().empty());
  EXPECT_EQ(msg().max_forwards(), -1);
  EXPECT_EQ(msg().content_length(), -1);
  EXPECT_EQ(msg().expires(), -1);
  EXPECT_TRUE(msg().body().empty());
}

TEST_F(SipParserTest, CommaListsDoNotSplitInsideQuotesOrBrackets) {
  std::string in = Options(
      "Contact: \"Doe, John\" <sip:jdoe@example.com>, <sip:a,b@example.net>;q=0.5\r\n"
      "Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n"
      "Route: <sip:p3.example.com;lr>\r\n"
      "Record-Route: <sip:rr1.example.com;lr>,<sip:rr2.example.com;lr>\r\n");
  ASSERT_EQ(Parse(in).status, ParseStatus::kComplete);
  ASSERT_EQ(msg().contact_count(), 2u);
  EXPECT_EQ(msg().contacts()[0].address.display_name, "Doe, John");
  EXPECT_EQ(msg().contacts()[0].address.uri.user, "jdoe");
  EXPECT_EQ(msg().contacts()[1].address.uri.user, "a,b");
  EXPECT_EQ(msg().contacts()[1].q_millis, 500);
  ASSERT_EQ(msg().route_count(), 3u);
  EXPECT_EQ(msg().routes()[0].uri.host, "p1.example.com");
  EXPECT_EQ(msg().routes()[1].uri.host, "p2.example.com");
  EXPECT_EQ(msg().routes()[2].uri.host, "p3.example.com");
  EXPECT_TRUE(msg().routes()[2].uri.lr);
  ASSERT_EQ(msg().record_route_count(), 2u);
  EXPECT_EQ(msg().record_routes()[1].uri.host, "rr2.example.com");
}

// List values go through a one-pass parser that hands anything unusual in any item to the
// split-then-parse path; a mix of both kinds in one header must give the same values.
TEST_F(SipParserTest, ListItemsNeedingTheExactPathKeepTheirNeighbours) {
  std::string in = Options(
      "Contact: <sip:a@h1.example.com>;q=0.5 , sip:b@h2.example.com;tag=x, "
      "<sip:c@h3.example.com>;foo=\"x,y\", <sip:d:pw@h4.example.com>;expires=30\r\n"
      "Route: <sip:p1.example.com;lr>, <sip:[2001:db8::1];lr>, <sip:p3.example.com;lr>\r\n");
  ASSERT_EQ(Parse(in).status, ParseStatus::kComplete);
  ASSERT_EQ(msg().contact_count(), 4u);
  EXPECT_EQ(msg().contacts()[0].address.uri.user, "a");
  EXPECT_EQ(msg().contacts()[0].q_millis, 500);
  EXPECT_EQ(msg().contacts()[0].address.text, "<sip:a@h1.example.com>;q=0.5");
  EXPECT_FALSE(msg().contacts()[1].address.angle_brackets);
  EXPECT_EQ(msg().contacts()[1].address.uri.text, "sip:b@h2.example.com");
  EXPECT_EQ(msg().contacts()[1].address.tag, "x");
  EXPECT_EQ(msg().contacts()[1].address.params, ";tag=x");
  EXPECT_EQ(msg().contacts()[2].address.params, ";foo=\"x,y\"");
  EXPECT_EQ(msg().contacts()[3].address.uri.password, "pw");
  EXPECT_EQ(msg().contacts()[3].expires, 30);
  ASSERT_EQ(msg().route_count(), 3u);
  EXPECT_EQ(msg().routes()[1].uri.host, "2001:db8::1");
  EXPECT_EQ(msg().routes()[1].uri.host_kind, HostKind::kIpv6);
  EXPECT_EQ(msg().routes()[2].uri.host, "p3.example.com");
}

TEST_F(SipParserTest, ListItemsKeepLwsOutOfTheirText) {
  std::string in = Response("SIP/2.0 200 OK",
                            "Via: SIP/2.0/UDP h1.example.com ; branch = z9hG4bK1 ,"
                            "SIP/2.0/TCP h2.example.com : 5070\r\n");
  ASSERT_EQ(Parse(in).status, ParseStatus::kComplete);
  ASSERT_EQ(msg().via_count(), 3u);
  const Via& first = msg().vias()[1];
  EXPECT_EQ(first.text, "SIP/2.0/UDP h1.example.com ; branch = z9hG4bK1");
  EXPECT_EQ(first.params, "; branch = z9hG4bK1");
  EXPECT_EQ(first.branch, "z9hG4bK1");
  const Via& second = msg().vias()[2];
  EXPECT_EQ(second.text, "SIP/2.0/TCP h2.example.com : 5070");
  EXPECT_EQ(second.port, 5070);
  EXPECT_TRUE(second.params.empty());
}

TEST_F(SipParserTest, SingleValueHeadersRejectASecondValue) {
  std::string in = Options();
  ReplaceLine(in, "From: ", "From: <sip:alice@atlanta.example.com>;tag=1, <sip:x@y>");
  ParseResult r = Parse(in);
  EXPECT_EQ(r.status, ParseStatus::kMalformed);
  EXPECT_EQ(r.problem.defect, Defect::kBadHeaderValue);
  EXPECT_EQ(r.problem.header, HeaderId::kFrom);
}

TEST_F(SipParserTest, UserPartRunsToTheFirstAtSign) {
  std::string in = Options("Contact: <sip:a;b=c@host.example.com;lr>\r\n");
  ReplaceLine(in, "OPTIONS ", "OPTIONS sip:x;y@biloxi.example.com SIP/2.0");
  ASSERT_EQ(Parse(in).status, ParseStatus::kComplete);
  EXPECT_EQ(msg().request_uri().user, "x;y");
  EXPECT_EQ(msg().request_uri().host, "biloxi.example.com");
  ASSERT_EQ(msg().contact_count(), 1u);
  EXPECT_EQ(msg().contacts()[0].address.uri.user, "a;b=c");
  EXPECT_TRUE(msg().contacts()[0].address.uri.lr);
}

// ---------------------------------------------------------------------------------------
// Character-class scanners (proto/sip_chars.h), which the SSE2 and table paths implement.

TEST(CharScanTest, EqualsLowerLettersMatchesEqualsIgnoreCaseForEveryByte) {
  for (std::string_view lower : {"q", "lr", "tag", "ttl", "rport", "branch", "expires",
                                 "received", "transport", "abcdefghijklmnopq"}) {
    for (size_t at = 0; at < lower.size(); ++at) {
      for (int c = 0; c < 256; ++c) {
        std::string s(lower);
        s[at] = static_cast<char>(c);
        EXPECT_EQ(EqualsLowerLetters(s, lower), EqualsIgnoreCase(s, lower)) << lower << " " << c;
      }
    }
    EXPECT_FALSE(EqualsLowerLetters(std::string(lower) + "x", lower));
    EXPECT_FALSE(EqualsLowerLetters(lower.substr(1), lower));
  }
}


TEST(CharScanTest, SkipsExactlyTheClassAndNeverReadsPastTheLimit) {
  GuardedBuffer guard;
  ASSERT_TRUE(guard.ok());
  for (int c = 0; c < 256; ++c) {
    for (size_t run = 0; run <= 40; ++run) {
      // `run` class-neutral bytes, then c, then nothing: the buffer ends at the guard page.
      std::string bytes(run, 'a');
      bytes += static_cast<char>(c);
      std::string_view in = guard.Place(bytes);
      const char* begin = in.data();
      const char* end = begin + in.size();
      auto expected = [&](uint16_t cls) {
        return run + (HasClass(static_cast<char>(c), cls) ? 1 : 0);
      };
      EXPECT_EQ(static_cast<size_t>(SkipClass(begin, end, kToken) - begin), expected(kToken)) << c;
      EXPECT_EQ(static_cast<size_t>(SkipClass(begin, end, kParamValue) - begin),
                expected(kParamValue))
          << c;
      EXPECT_EQ(static_cast<size_t>(SkipWordChars(begin, end, end) - begin),
                expected(kToken | kWordExtra))
          << c;
      bool name_end = c == ':' || c == ' ' || c == '\t';
      EXPECT_EQ(static_cast<size_t>(SkipToNameEnd(begin, end, end) - begin),
                run + (name_end ? 0 : 1))
          << c;
      // An end before the buffer's limit stops the run there, whatever follows.
      EXPECT_EQ(SkipWordChars(begin, end - 1, end), end - 1) << c;
      EXPECT_EQ(SkipToNameEnd(begin, end - 1, end), end - 1) << c;
    }
  }
}

TEST(ForEachListItemTest, SplitsOnTopLevelCommasOnly) {
  std::vector<std::string> items;
  ForEachListItem(R"(a, "b,c" , <d,e>;x=1,, "q\",r" <s>,f)",
                  [&](std::string_view item) { items.emplace_back(item); });
  EXPECT_THAT(items, ElementsAre("a", "\"b,c\"", "<d,e>;x=1", "", R"("q\",r" <s>)", "f"));
}

TEST_F(SipParserTest, ForEachTokenWalksEveryHeaderOfAKind) {
  std::string in = Options(
      "Supported: timer, 100rel\r\n"
      "Require: foo\r\n"
      "k: path\r\n");
  ASSERT_EQ(Parse(in).status, ParseStatus::kComplete);
  std::vector<std::string> tokens;
  msg().ForEachToken(HeaderId::kSupported, [&](std::string_view t) { tokens.emplace_back(t); });
  EXPECT_THAT(tokens, ElementsAre("timer", "100rel", "path"));
}

// ---------------------------------------------------------------------------------------
// Via.

TEST_F(SipParserTest, ParsesViaFields) {
  std::string in = Options();
  size_t at = in.find("Via: ");
  in.replace(at, in.find("\r\n", at) - at,
             "Via: SIP/2.0/TCP [2001:db8::9:1]:5070;rport;received=192.0.2.7;"
             "maddr=224.2.0.1;ttl=16;branch=z9hG4bKnashds8");
  ASSERT_EQ(Parse(in).status, ParseStatus::kComplete);
  ASSERT_EQ(msg().via_count(), 1u);
  const Via& via = msg().vias()[0];
  EXPECT_EQ(via.protocol_name, "SIP");
  EXPECT_EQ(via.protocol_version, "2.0");
  EXPECT_EQ(via.transport, "TCP");
  EXPECT_EQ(via.host, "2001:db8::9:1");
  EXPECT_EQ(via.host_kind, HostKind::kIpv6);
  EXPECT_EQ(via.port, 5070);
  EXPECT_TRUE(via.has_rport);
  EXPECT_EQ(via.rport, 0);
  EXPECT_EQ(via.received, "192.0.2.7");
  EXPECT_EQ(via.maddr, "224.2.0.1");
  EXPECT_EQ(via.ttl, 16);
  EXPECT_EQ(via.branch, "z9hG4bKnashds8");
  EXPECT_EQ(via.params, ";rport;received=192.0.2.7;maddr=224.2.0.1;ttl=16;branch=z9hG4bKnashds8");
  EXPECT_EQ(via.text,
            "SIP/2.0/TCP [2001:db8::9:1]:5070;rport;received=192.0.2.7;maddr=224.2.0.1;ttl=16;"
            "branch=z9hG4bKnashds8");
}

TEST_F(SipParserTest, ParsesSeveralViasPerHeaderAndRportValues) {
  std::string in =
      Response("SIP/2.0 200 OK",
               "Via: SIP/2.0/UDP 192.0.2.1:5060;rport=5062;branch=z9hG4bK1,\r\n"
               "     SIP/2.0/TLS proxy.example.com;branch=z9hG4bK2;received=[2001:db8::1]\r\n"
               "v: SIP/2.0/SCTP host.example.com;branch=z9hG4bK3\r\n");
  ASSERT_EQ(Parse(in).status, ParseStatus::kComplete);
  // The Response() helper's own Via comes first.
  ASSERT_EQ(msg().via_count(), 4u);
  const Via& a = msg().vias()[1];
  EXPECT_EQ(a.host, "192.0.2.1");
  EXPECT_EQ(a.host_kind, HostKind::kIpv4);
  EXPECT_EQ(a.port, 5060);
  EXPECT_TRUE(a.has_rport);
  EXPECT_EQ(a.rport, 5062);
  EXPECT_EQ(a.branch, "z9hG4bK1");
  EXPECT_EQ(a.ttl, -1);
  const Via& b = msg().vias()[2];
  EXPECT_EQ(b.transport, "TLS");
  EXPECT_EQ(b.host, "proxy.example.com");
  EXPECT_EQ(b.host_kind, HostKind::kName);
  EXPECT_EQ(b.port, 0);
  EXPECT_FALSE(b.has_rport);
  EXPECT_EQ(b.received, "2001:db8::1");
  const Via& c = msg().vias()[3];
  EXPECT_EQ(c.transport, "SCTP");
  EXPECT_EQ(c.branch, "z9hG4bK3");
  EXPECT_EQ(msg().top_via(), &msg().vias()[0]);
}

TEST_F(SipParserTest, RejectsBadViaNamingTheHeader) {
  const std::string_view kBadVias[] = {
      "Via: SIP/2.0/UDP",                       // no sent-by
      "Via: SIP/2.0 pc33.atlanta.example.com",  // no transport
      "Via: SIP/2.0/UDP host:99999;branch=z9hG4bK1",
      "Via: SIP/2.0/UDP host:;branch=z9hG4bK1",
      "Via: SIP/2.0/UDP [2001:db8::1;branch=z9hG4bK1",
      "Via: SIP/2.0/UDP host;;branch=z9hG4bK1",  // empty parameter (badinv01)
      "Via: SIP/2.0/UDP host;branch=z9hG4bK1,",  // empty list item
  };
  for (std::string_view via : kBadVias) {
    SCOPED_TRACE(via);
    std::string in = Options();
    ReplaceLine(in, "Via: ", via);
    ParseResult r = Parse(in);
    EXPECT_EQ(r.status, ParseStatus::kMalformed);
    EXPECT_EQ(r.problem.response_code, 400);
    EXPECT_EQ(r.problem.header, HeaderId::kVia);
    EXPECT_EQ(r.problem.header_name, "Via");
  }
}

// ---------------------------------------------------------------------------------------
// name-addr / addr-spec.

TEST_F(SipParserTest, ParsesQuotedDisplayNameWithEscapes) {
  std::string in = Response("SIP/2.0 200 OK");
  size_t at = in.find("From: ");
  in.replace(
      at, in.find("\r\n", at) - at,
      R"(From: "Alice \"Al\" Smith" <sip:alice@atlanta.example.com;transport=tcp>;tag=88sja8x;x=y)");
  ASSERT_EQ(Parse(in).status, ParseStatus::kComplete);
  const NameAddr& from = msg().from();
  EXPECT_TRUE(from.quoted_display_name);
  EXPECT_TRUE(from.angle_brackets);
  EXPECT_EQ(from.display_name, R"(Alice \"Al\" Smith)");
  EXPECT_EQ(from.uri.user, "alice");
  EXPECT_EQ(from.uri.transport, "tcp");
  EXPECT_EQ(from.uri.params, ";transport=tcp");
  EXPECT_EQ(from.params, ";tag=88sja8x;x=y");
  EXPECT_EQ(from.tag, "88sja8x");
  EXPECT_EQ(
      from.text,
      R"("Alice \"Al\" Smith" <sip:alice@atlanta.example.com;transport=tcp>;tag=88sja8x;x=y)");
}

TEST_F(SipParserTest, ParsesTokenAndEmptyDisplayNames) {
  std::string in = Response("SIP/2.0 200 OK");
  size_t at = in.find("From: ");
  in.replace(at, in.find("\r\n", at) - at,
             "From: Alice Liddell <sip:alice@atlanta.example.com>;tag=1");
  at = in.find("To: ");
  in.replace(at, in.find("\r\n", at) - at, "To: \"\" <sip:bob@biloxi.example.com>");
  ASSERT_EQ(Parse(in).status, ParseStatus::kComplete);
  EXPECT_FALSE(msg().from().quoted_display_name);
  EXPECT_EQ(msg().from().display_name, "Alice Liddell");
  EXPECT_TRUE(msg().from().angle_brackets);
  EXPECT_TRUE(msg().to().quoted_display_name);
  EXPECT_TRUE(msg().to().display_name.empty());
  EXPECT_TRUE(msg().to().tag.empty());
  EXPECT_TRUE(msg().to().params.empty());
}

TEST_F(SipParserTest, AddrSpecParamsBelongToTheHeader) {
  // Without <>, everything after the URI's host is a header parameter (RFC 3261 20.10).
  std::string in = Response("SIP/2.0 200 OK");
  size_t at = in.find("To: ");
  in.replace(at, in.find("\r\n", at) - at, "To: sip:bob@biloxi.example.com;tag=a6c85cf;unknown");
  ASSERT_EQ(Parse(in).status, ParseStatus::kComplete);
  const NameAddr& to = msg().to();
  EXPECT_FALSE(to.angle_brackets);
  EXPECT_TRUE(to.display_name.empty());
  EXPECT_EQ(to.uri.host, "biloxi.example.com");
  EXPECT_TRUE(to.uri.params.empty());
  EXPECT_EQ(to.params, ";tag=a6c85cf;unknown");
  EXPECT_EQ(to.tag, "a6c85cf");
}

TEST_F(SipParserTest, RejectsBadNameAddrsNamingTheHeader) {
  const std::string_view kBadTos[] = {
      "To: \"Bob <sip:bob@biloxi.example.com>",  // unterminated quote
      "To: <sip:bob@biloxi.example.com",         // no '>'
      "To: Bob, Alexander <sip:bob@biloxi.example.com>",
      "To: < sip:bob@biloxi.example.com >",
      "To: <>",
  };
  for (std::string_view to : kBadTos) {
    SCOPED_TRACE(to);
    std::string in = Options();
    ReplaceLine(in, "To: ", to);
    ParseResult r = Parse(in);
    EXPECT_EQ(r.status, ParseStatus::kMalformed);
    EXPECT_EQ(r.problem.response_code, 400);
    EXPECT_EQ(r.problem.header, HeaderId::kTo);
    EXPECT_EQ(r.problem.header_name, "To");
  }
}

// ---------------------------------------------------------------------------------------
// Contact.

TEST_F(SipParserTest, ParsesValidQValuesAndExpires) {
  std::string in = Response("SIP/2.0 302 Moved Temporarily",
                            "Contact: <sip:a@example.com>;q=0\r\n"
                            "Contact: <sip:b@example.com>;q=0.5\r\n"
                            "Contact: <sip:c@example.com>;q=1\r\n"
                            "Contact: <sip:d@example.com>;q=1.000\r\n"
                            "Contact: <sip:e@example.com>;q=0.001;expires=3600\r\n"
                            "Contact: <sip:f@example.com>\r\n");
  ASSERT_EQ(Parse(in).status, ParseStatus::kComplete);
  ASSERT_EQ(msg().contact_count(), 6u);
  const int16_t kExpected[] = {0, 500, 1000, 1000, 1, -1};
  for (size_t i = 0; i < 6; ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(msg().contacts()[i].q_millis, kExpected[i]);
    EXPECT_EQ(msg().contacts()[i].defect, ContactDefect::kNone);
  }
  EXPECT_EQ(msg().contacts()[4].expires, 3600);
  EXPECT_EQ(msg().contacts()[5].expires, -1);
}

TEST_F(SipParserTest, BadQValueMarksOnlyThatContact) {
  std::string in = Response("SIP/2.0 302 Moved Temporarily",
                            "Contact: <sip:good@example.com>;q=0.7\r\n"
                            "Contact: <sip:a@example.com>;q=1.5\r\n"
                            "Contact: <sip:b@example.com>;q=0.1234\r\n"
                            "Contact: <sip:c@example.com>;q=2\r\n"
                            "Contact: <sip:d@example.com>;q=abc\r\n"
                            "Contact: <sip:e@example.com>;q=1.001\r\n");
  ParseResult r = Parse(in);
  // A broken q-value spoils one redirect target, not the response.
  ASSERT_EQ(r.status, ParseStatus::kComplete);
  ASSERT_EQ(msg().contact_count(), 6u);
  EXPECT_EQ(msg().contacts()[0].defect, ContactDefect::kNone);
  EXPECT_EQ(msg().contacts()[0].q_millis, 700);
  for (size_t i = 1; i < 6; ++i) {
    SCOPED_TRACE(msg().contacts()[i].address.text);
    EXPECT_EQ(msg().contacts()[i].defect, ContactDefect::kBadQValue);
  }
}

TEST_F(SipParserTest, ParsesContactStar) {
  std::string in = Request("REGISTER", "Contact: *\r\nExpires: 0\r\n");
  ASSERT_EQ(Parse(in).status, ParseStatus::kComplete);
  EXPECT_TRUE(msg().contact_star());
  EXPECT_EQ(msg().contact_count(), 0u);
  EXPECT_EQ(msg().expires(), 0);
}

TEST_F(SipParserTest, ParsesContactListWithDisplayNames) {
  std::string in =
      Request("REGISTER",
              "Contact: \"Mr. Watson\" <sip:watson@worcester.example.com>;q=0.7;"
              "expires=3600, \"Mr. Watson\" <mailto:watson@bell.example.com>;q=0.1\r\n");
  ASSERT_EQ(Parse(in).status, ParseStatus::kComplete);
  EXPECT_FALSE(msg().contact_star());
  ASSERT_EQ(msg().contact_count(), 2u);
  EXPECT_EQ(msg().contacts()[0].address.display_name, "Mr. Watson");
  EXPECT_EQ(msg().contacts()[0].q_millis, 700);
  EXPECT_EQ(msg().contacts()[0].expires, 3600);
  EXPECT_EQ(msg().contacts()[1].address.uri.scheme, UriScheme::kOther);
  EXPECT_EQ(msg().contacts()[1].address.uri.scheme_text, "mailto");
  EXPECT_EQ(msg().contacts()[1].q_millis, 100);
}

// ---------------------------------------------------------------------------------------
// Scalars.

TEST_F(SipParserTest, RejectsBadScalarsNamingTheHeader) {
  struct Case {
    std::string_view line;
    HeaderId id;
    std::string_view name;
  };
  const Case kCases[] = {
      {"Max-Forwards: abc", HeaderId::kMaxForwards, "Max-Forwards"},
      {"Max-Forwards: -1", HeaderId::kMaxForwards, "Max-Forwards"},
      {"CSeq: abc OPTIONS", HeaderId::kCSeq, "CSeq"},
      {"CSeq: 4294967296 OPTIONS", HeaderId::kCSeq, "CSeq"},
      {"CSeq: 1", HeaderId::kCSeq, "CSeq"},
      {"CSeq: 1 OPT IONS", HeaderId::kCSeq, "CSeq"},
      {"CSeq: 1OPTIONS", HeaderId::kCSeq, "CSeq"},
      {"CSeq: 1 ", HeaderId::kCSeq, "CSeq"},
      {"CSeq: OPTIONS", HeaderId::kCSeq, "CSeq"},
      {"CSeq: 99999999999999999999 OPTIONS", HeaderId::kCSeq, "CSeq"},
      {"CSeq: 1 OPTIONS\"", HeaderId::kCSeq, "CSeq"},
  };
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.line);
    std::string in = Options();
    size_t at = in.find(c.id == HeaderId::kCSeq ? "CSeq: " : "Max-Forwards: ");
    in.replace(at, in.find("\r\n", at) - at, c.line);
    ParseResult r = Parse(in);
    EXPECT_EQ(r.status, ParseStatus::kMalformed);
    EXPECT_EQ(r.problem.response_code, 400);
    EXPECT_EQ(r.problem.header, c.id);
    EXPECT_EQ(r.problem.header_name, c.name);
  }
}

TEST_F(SipParserTest, NamesTheHeaderAsSpelledOnTheWire) {
  std::string in = Options("v: not a via\r\n");
  ParseResult r = Parse(in);
  EXPECT_EQ(r.status, ParseStatus::kMalformed);
  EXPECT_EQ(r.problem.response_code, 400);
  EXPECT_EQ(r.problem.header, HeaderId::kVia);
  EXPECT_EQ(r.problem.header_name, "v");
}

TEST_F(SipParserTest, ParsesLeadingZeroScalars) {
  std::string in = Options();
  ReplaceLine(in, "Max-Forwards: ", "Max-Forwards: 0068");
  ReplaceLine(in, "CSeq: ", "CSeq: 0009 OPTIONS");
  ASSERT_EQ(Parse(in).status, ParseStatus::kComplete);
  EXPECT_EQ(msg().max_forwards(), 68);
  EXPECT_EQ(msg().cseq().number, 9u);
  EXPECT_EQ(msg().cseq().method, Method::kOptions);
  EXPECT_EQ(msg().cseq().method_text, "OPTIONS");
  ReplaceLine(in, "CSeq: ", "CSeq: 0000000000000000004294967295 \t OPTIONS");
  ASSERT_EQ(Parse(in).status, ParseStatus::kComplete);
  EXPECT_EQ(msg().cseq().number, 4294967295u);
  EXPECT_EQ(msg().cseq().method_text, "OPTIONS");
}

TEST_F(SipParserTest, RejectsBadHeaderNames) {
  for (std::string_view line : {"Bad Name: x", "NoColonHere", "X-Bad\"Name: x", ": no name"}) {
    SCOPED_TRACE(line);
    std::string in = Options(std::string(line) + "\r\n");
    ParseResult r = Parse(in);
    EXPECT_EQ(r.status, ParseStatus::kMalformed);
    EXPECT_EQ(r.problem.response_code, 400);
    EXPECT_TRUE(r.problem);
  }
}

TEST_F(SipParserTest, KeepsHeadersReadBeforeAnError) {
  // Enough for a server to copy Via, From, To, Call-ID and CSeq into its 400.
  std::string in = Options("Max-Forwards: many\r\n");
  ParseResult r = Parse(in);
  ASSERT_EQ(r.status, ParseStatus::kMalformed);
  EXPECT_NE(msg().FindHeader(HeaderId::kVia), nullptr);
  EXPECT_NE(msg().FindHeader(HeaderId::kFrom), nullptr);
  EXPECT_NE(msg().FindHeader(HeaderId::kTo), nullptr);
  EXPECT_NE(msg().FindHeader(HeaderId::kCallId), nullptr);
  EXPECT_NE(msg().FindHeader(HeaderId::kCSeq), nullptr);
}

// RFC 3261 sets no limit on header lines, Vias, Routes or Record-Routes: only the message
// size bounds them. The same parser instance takes the next small message as before.
TEST_F(SipParserTest, ManyHeadersAndValuesAreLimitedOnlyByTheMessageSize) {
  std::string headers;
  for (size_t i = 0; i < 3 * SipMessage::kInitialHeaders; ++i)
    headers += "X-H: " + std::to_string(i) + "\r\n";
  std::string in = Options(headers);
  ParseResult r = Parse(in);
  ASSERT_EQ(r.status, ParseStatus::kComplete) << DefectText(r.problem.defect);
  EXPECT_GT(msg().header_count(), 3 * SipMessage::kInitialHeaders);

  // 1,000 Vias on lines of their own and in one comma list, and 300 Record-Routes.
  std::string vias = "Via: SIP/2.0/UDP h0.example.com;branch=z9hG4bK0";
  for (size_t i = 1; i < 500; ++i)
    vias += ",SIP/2.0/UDP h" + std::to_string(i) + ".example.com;branch=z9hG4bK" + std::to_string(i);
  vias += "\r\n";
  for (size_t i = 500; i < 1000; ++i)
    vias += "Via: SIP/2.0/UDP h" + std::to_string(i) + ".example.com;branch=z9hG4bK" +
            std::to_string(i) + "\r\n";
  for (size_t i = 0; i < 300; ++i)
    vias += "Record-Route: <sip:p" + std::to_string(i) + ".example.com;lr>\r\n";
  in = Options(vias);
  ASSERT_LT(in.size(), 64u * 1024);
  r = Parse(in);
  ASSERT_EQ(r.status, ParseStatus::kComplete) << DefectText(r.problem.defect);
  ASSERT_EQ(msg().via_count(), 1001u);  // Options() brings one of its own
  EXPECT_EQ(msg().vias()[1000].host, "h999.example.com");
  EXPECT_EQ(msg().record_route_count(), 300u);

  r = Parse(Options());
  ASSERT_EQ(r.status, ParseStatus::kComplete);
  EXPECT_EQ(msg().via_count(), 1u);
}

TEST_F(SipParserTest, ContactsStayCapped) {
  std::string contacts;
  for (size_t i = 0; i < SipMessage::kMaxContacts + 1; ++i)
    contacts += "Contact: <sip:c" + std::to_string(i) + "@example.com>\r\n";
  ParseResult r = Parse(Options(contacts));
  EXPECT_EQ(r.status, ParseStatus::kMalformed);
  EXPECT_EQ(r.problem.defect, Defect::kTooManyValues);
  EXPECT_NE(r.problem.response_code, 0);
}

// ---------------------------------------------------------------------------------------
// Framing and Content-Length.

TEST_F(SipParserTest, StreamNeedsContentLength) {
  std::string in = Options();
  size_t at = in.find("Content-Length: ");
  in.erase(at, in.find("\r\n", at) + 2 - at);
  ParseResult r = Parse(in, Framing::kStream);
  EXPECT_EQ(r.status, ParseStatus::kMalformed);
  EXPECT_EQ(r.problem.defect, Defect::kMissingContentLength);
  EXPECT_EQ(r.problem.response_code, 400);
}

TEST_F(SipParserTest, StreamWaitsForTheWholeBody) {
  std::string in = Invite();
  ParseResult r = Parse(std::string_view(in).substr(0, in.size() - 1), Framing::kStream);
  EXPECT_EQ(r.status, ParseStatus::kIncomplete);
  r = Parse(in, Framing::kStream);
  ASSERT_EQ(r.status, ParseStatus::kComplete);
  EXPECT_EQ(r.consumed, in.size());
  EXPECT_EQ(msg().body(), kSdp);
  EXPECT_EQ(msg().content_length(), static_cast<int64_t>(kSdp.size()));
  EXPECT_EQ(msg().content_type(), "application/sdp");
}

TEST_F(SipParserTest, StreamBodyStopsAtContentLength) {
  std::string in = Invite() + "OPTIONS sip:next";
  ParseResult r = Parse(in, Framing::kStream);
  ASSERT_EQ(r.status, ParseStatus::kComplete);
  EXPECT_EQ(r.consumed, Invite().size());
  EXPECT_EQ(msg().body(), kSdp);
  EXPECT_EQ(msg().raw(), Invite());
}

TEST_F(SipParserTest, DatagramWithShortBodyIsTruncated) {
  std::string in = Invite();
  in.resize(in.size() - 10);
  ParseResult r = Parse(in, Framing::kDatagram);
  EXPECT_EQ(r.status, ParseStatus::kMalformed);
  EXPECT_EQ(r.problem.defect, Defect::kBodyTruncated);
  EXPECT_EQ(r.problem.response_code, 400);
}

TEST_F(SipParserTest, DatagramIgnoresBytesAfterContentLength) {
  std::string message = Invite();
  std::string in = message + "\r\nINVITE sip:trailing@example.com SIP/2.0\r\n\r\n";
  ASSERT_EQ(Parse(in, Framing::kDatagram).status, ParseStatus::kComplete);
  EXPECT_EQ(msg().body(), kSdp);
  EXPECT_EQ(msg().raw(), message);
}

TEST_F(SipParserTest, DatagramWithoutContentLengthTakesTheRest) {
  std::string in = Invite();
  size_t at = in.find("Content-Length: ");
  in.erase(at, in.find("\r\n", at) + 2 - at);
  ASSERT_EQ(Parse(in, Framing::kDatagram).status, ParseStatus::kComplete);
  EXPECT_EQ(msg().content_length(), -1);
  EXPECT_EQ(msg().body(), kSdp);
}

TEST_F(SipParserTest, RejectsBadContentLength) {
  for (std::string_view value : {"-999", "abc", "1 2", "12abc", ""}) {
    SCOPED_TRACE(value);
    std::string in = Options();
    ReplaceLine(in, "Content-Length: ", "Content-Length: " + std::string(value));
    for (Framing framing : {Framing::kDatagram, Framing::kStream}) {
      ParseResult r = Parse(in, framing);
      EXPECT_EQ(r.status, ParseStatus::kMalformed);
      EXPECT_EQ(r.problem.defect, Defect::kBadContentLength);
      EXPECT_EQ(r.problem.response_code, 400);
      EXPECT_EQ(r.problem.header, HeaderId::kContentLength);
    }
  }
}

TEST_F(SipParserTest, RejectsContentLengthThatOverflows) {
  std::string in = Options();
  ReplaceLine(in, "Content-Length: ", "Content-Length: 99999999999999999999999");
  // Never wrapped into a small count; over a stream it may equally be "too large".
  ParseResult r = Parse(in, Framing::kDatagram);
  EXPECT_EQ(r.status, ParseStatus::kMalformed);
  EXPECT_EQ(r.problem.response_code, 400);
  r = Parse(in, Framing::kStream);
  EXPECT_THAT(r.status, AnyOf(ParseStatus::kMalformed, ParseStatus::kTooLarge));
  EXPECT_NE(r.problem.response_code, 0);
}

TEST_F(SipParserTest, StreamSkipsLeadingCrlfs) {
  std::string message = Invite();
  std::string in = "\r\n\r\n\r\n" + message;
  ParseResult r = Parse(in, Framing::kStream);
  ASSERT_EQ(r.status, ParseStatus::kComplete);
  // consumed covers the skipped CRLFs too, so the caller advances past all of it.
  EXPECT_EQ(r.consumed, in.size());
  EXPECT_EQ(msg().raw(), message);
  EXPECT_EQ(msg().method(), Method::kInvite);
}

TEST_F(SipParserTest, StreamParsesBackToBackMessages) {
  std::string first = Invite();
  std::string second = Request("BYE", "");
  std::string in = first + second;
  std::string_view rest = in;

  ParseResult r = Parse(rest, Framing::kStream);
  ASSERT_EQ(r.status, ParseStatus::kComplete);
  EXPECT_EQ(r.consumed, first.size());
  EXPECT_EQ(msg().method(), Method::kInvite);
  EXPECT_EQ(msg().body(), kSdp);
  rest.remove_prefix(r.consumed);

  r = Parse(rest, Framing::kStream);
  ASSERT_EQ(r.status, ParseStatus::kComplete);
  EXPECT_EQ(r.consumed, second.size());
  EXPECT_EQ(msg().method(), Method::kBye);
  EXPECT_TRUE(msg().body().empty());
  rest.remove_prefix(r.consumed);
  EXPECT_TRUE(rest.empty());

  EXPECT_EQ(Parse(rest, Framing::kStream).status, ParseStatus::kIncomplete);
}

TEST_F(SipParserTest, CrlfOnlyIsKeepAlive) {
  ParseResult r = Parse("\r\n\r\n", Framing::kStream);
  EXPECT_EQ(r.status, ParseStatus::kKeepAlive);
  EXPECT_EQ(r.consumed, 4u);
  EXPECT_FALSE(r.problem);
}

TEST_F(SipParserTest, RejectsOversizedMessagesWith513) {
  std::string in = Invite();
  SipParser small(ParserLimits{.max_message_bytes = in.size() - 1});
  for (Framing framing : {Framing::kDatagram, Framing::kStream}) {
    ParseResult r = small.Parse(in, framing, msg_.get());
    EXPECT_EQ(r.status, ParseStatus::kTooLarge);
    EXPECT_EQ(r.problem.defect, Defect::kMessageTooLarge);
    EXPECT_EQ(r.problem.response_code, 513);
  }
  // Exactly at the limit is fine: only what is over it is too large.
  SipParser exact(ParserLimits{.max_message_bytes = in.size()});
  EXPECT_EQ(exact.limits().max_message_bytes, in.size());
  EXPECT_EQ(exact.Parse(in, Framing::kStream, msg_.get()).status, ParseStatus::kComplete);
}

TEST_F(SipParserTest, StreamGivesUpOnEndlessHeaders) {
  // A peer that never ends its header section must not be waited for forever.
  SipParser small(ParserLimits{.max_message_bytes = 512});
  std::string in = "OPTIONS sip:bob@biloxi.example.com SIP/2.0\r\n";
  while (in.size() < 1024) in += "X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
  ParseResult r = small.Parse(in, Framing::kStream, msg_.get());
  EXPECT_EQ(r.status, ParseStatus::kTooLarge);
  EXPECT_EQ(r.problem.response_code, 513);

  // So must a Content-Length that announces more than the limit.
  std::string big = Options();
  ReplaceLine(big, "Content-Length: ", "Content-Length: 100000");
  r = small.Parse(big, Framing::kStream, msg_.get());
  EXPECT_EQ(r.status, ParseStatus::kTooLarge);
  EXPECT_EQ(r.problem.response_code, 513);
}

// Every strict prefix of a message is incomplete over a stream, and nothing reads past the
// end of the input (the guard page faults if anything does).
TEST_F(SipParserTest, EveryStrictPrefixIsIncomplete) {
  GuardedBuffer guard;
  ASSERT_TRUE(guard.ok());
  for (const std::string& full : {Invite(), "\r\n" + Invite(), Response("SIP/2.0 200 OK")}) {
    ASSERT_LE(full.size(), guard.capacity());
    for (size_t n = 0; n < full.size(); ++n) {
      std::string_view prefix = guard.Place(std::string_view(full).substr(0, n));
      ParseResult r = Parse(prefix, Framing::kStream);
      if (IsPureCrlf(prefix) && r.status == ParseStatus::kKeepAlive) {
        EXPECT_GT(r.consumed, 0u) << "prefix length " << n;
        EXPECT_LE(r.consumed, n) << "prefix length " << n;
        continue;
      }
      ASSERT_EQ(r.status, ParseStatus::kIncomplete)
          << "prefix length " << n << " of " << full.size() << ": " << DefectText(r.problem.defect);
    }
    std::string_view whole = guard.Place(full);
    ParseResult r = Parse(whole, Framing::kStream);
    ASSERT_EQ(r.status, ParseStatus::kComplete);
    EXPECT_EQ(r.consumed, full.size());
  }
}

// Datagram parsing of any truncation must not crash or over-read either; whatever it
// decides, it decides from the bytes it was given.
TEST_F(SipParserTest, DatagramPrefixesNeverOverRead) {
  GuardedBuffer guard;
  ASSERT_TRUE(guard.ok());
  std::string full = Invite();
  for (size_t n = 0; n <= full.size(); ++n) {
    std::string_view prefix = guard.Place(std::string_view(full).substr(0, n));
    ParseResult r = Parse(prefix, Framing::kDatagram);
    EXPECT_NE(r.status, ParseStatus::kIncomplete) << "prefix length " << n;
    EXPECT_LE(r.consumed, n);
  }
}

// ---------------------------------------------------------------------------------------
// Reason phrases.

std::string Phrase(const Problem& problem, size_t capacity = 128) {
  std::vector<char> buf(capacity + 1, '#');
  size_t n = WriteReasonPhrase(problem, buf.data(), capacity);
  EXPECT_LE(n, capacity);
  EXPECT_EQ(buf[capacity], '#') << "wrote past capacity";
  return std::string(buf.data(), n);
}

TEST_F(SipParserTest, ReasonPhraseNamesTheBadHeader) {
  std::string in = Options();
  ReplaceLine(in, "Via: ", "Via: SIP/2.0/UDP");
  ParseResult r = Parse(in);
  ASSERT_EQ(r.status, ParseStatus::kMalformed);
  EXPECT_THAT(Phrase(r.problem), HasSubstr("Via"));

  in = Options("Max-Forwards: many\r\n");
  size_t at = in.find("Max-Forwards: 70");
  in.erase(at, in.find("\r\n", at) + 2 - at);
  r = Parse(in);
  ASSERT_EQ(r.status, ParseStatus::kMalformed);
  EXPECT_THAT(Phrase(r.problem), HasSubstr("Max-Forwards"));
}

TEST(ReasonPhraseTest, DescribesVersionProblems) {
  Problem p{.defect = Defect::kBadVersion,
            .header = HeaderId::kOther,
            .header_name = {},
            .response_code = 505};
  EXPECT_THAT(Phrase(p), HasSubstr("Version"));
}

TEST(ReasonPhraseTest, NamesAHeaderGivenOnlyById) {
  Problem p{.defect = Defect::kBadHeaderValue,
            .header = HeaderId::kVia,
            .header_name = {},
            .response_code = 400};
  EXPECT_THAT(Phrase(p), HasSubstr("Via"));
}

TEST(ReasonPhraseTest, TruncatesAtCapacity) {
  Problem p{.defect = Defect::kBadHeaderValue,
            .header = HeaderId::kVia,
            .header_name = "Via",
            .response_code = 400};
  std::string whole = Phrase(p);
  ASSERT_GT(whole.size(), 4u);
  EXPECT_EQ(Phrase(p, 4), whole.substr(0, 4));
  EXPECT_EQ(Phrase(p, 0), "");
}

TEST(ReasonPhraseTest, EveryDefectHasAText) {
  for (int d = static_cast<int>(Defect::kBadStartLine);
       d <= static_cast<int>(Defect::kRequestUriTooLong); ++d) {
    Defect defect = static_cast<Defect>(d);
    EXPECT_FALSE(DefectText(defect).empty()) << "defect " << d;
    Problem p{
        .defect = defect, .header = HeaderId::kOther, .header_name = {}, .response_code = 400};
    EXPECT_FALSE(Phrase(p).empty()) << "defect " << d;
  }
}

}  // namespace
}  // namespace b2bua::proto
