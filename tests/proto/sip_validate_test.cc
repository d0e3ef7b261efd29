// Tests proto/sip_validate.{h,cc}: the verdicts a request gets after a successful parse,
// the header each 400 names, and the answer the B2BUA writes for it.

#include "proto/sip_validate.h"

#include <string>
#include <string_view>

#include "gtest/gtest.h"
#include "proto/sip_builder.h"
#include "proto/sip_parser.h"

namespace b2bua::proto {
namespace {

std::string Request(std::string_view method, std::string_view request_uri,
                    std::string_view extra) {
  return std::string(method) + " " + std::string(request_uri) + " SIP/2.0\r\n" +
         "Via: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKval\r\n"
         "Max-Forwards: 70\r\n"
         "From: <sip:alice@example.com>;tag=a\r\n"
         "To: <sip:bob@example.com>\r\n"
         "Call-ID: val-1\r\n"
         "CSeq: 1 " + std::string(method) + "\r\n" + std::string(extra) +
         "Content-Length: 0\r\n\r\n";
}

struct Verdict {
  int code = 0;
  HeaderId header = HeaderId::kOther;
  std::string status_line;
};

Verdict Validate(const std::string& text, RequestPolicy policy = {}) {
  SipMessage message;
  ParseResult parsed = SipParser().Parse(text, Framing::kDatagram, &message);
  EXPECT_TRUE(parsed.ok()) << DefectText(parsed.problem.defect) << "\n" << text;
  Problem p = ValidateRequest(message, policy);
  Verdict v{p.response_code, p.header, ""};
  if (p && p.response_code != 0) {
    char buffer[4096];
    MessageWriter writer(buffer, sizeof(buffer));
    EXPECT_TRUE(WriteProblemResponse(message, p, {}, writer));
    std::string_view out = writer.view();
    v.status_line = std::string(out.substr(0, out.find("\r\n")));
  }
  return v;
}

TEST(ValidateRequestTest, ContactStarOnlyInARegisterWithExpiresZero) {
  Verdict v = Validate(Request("INVITE", "sip:bob@example.com", "Contact: *\r\n"));
  EXPECT_EQ(v.code, 400);
  EXPECT_EQ(v.header, HeaderId::kContact);
  EXPECT_EQ(v.status_line, "SIP/2.0 400 Bad Contact Header");
  EXPECT_EQ(Validate(Request("REGISTER", "sip:example.com", "Contact: *\r\nExpires: 0\r\n")).code,
            0);
  EXPECT_EQ(Validate(Request("REGISTER", "sip:example.com", "Contact: *\r\nExpires: 00\r\n")).code,
            0);
  EXPECT_EQ(Validate(Request("REGISTER", "sip:example.com", "Contact: *\r\n")).code, 400);
  EXPECT_EQ(
      Validate(Request("REGISTER", "sip:example.com", "Contact: *\r\nExpires: 3600\r\n")).code,
      400);
}

TEST(ValidateRequestTest, QValuesOutsideTheGrammarNameContact) {
  for (std::string_view q : {"1.5", "0.1234", "2", "-0.5", "1.001", "abc"}) {
    Verdict v = Validate(Request("INVITE", "sip:bob@example.com",
                                 "Contact: <sip:a@192.0.2.10>;q=" + std::string(q) + "\r\n"));
    EXPECT_EQ(v.code, 400) << q;
    EXPECT_EQ(v.header, HeaderId::kContact) << q;
  }
  for (std::string_view q : {"0", "1", "0.5", "0.125", "1.000", "0."}) {
    EXPECT_EQ(Validate(Request("INVITE", "sip:bob@example.com",
                               "Contact: <sip:a@192.0.2.10>;q=" + std::string(q) + "\r\n"))
                  .code,
              0)
        << q;
  }
}

TEST(ValidateRequestTest, RequestUriOverTheLimitGets414) {
  const std::string uri = "sip:" + std::string(1100, '9') + "@example.com";
  Verdict v = Validate(Request("INVITE", uri, ""));
  EXPECT_EQ(v.code, 414);
  EXPECT_EQ(v.status_line, "SIP/2.0 414 Request-URI Too Long");
  RequestPolicy roomy;
  roomy.max_request_uri_bytes = 2048;
  EXPECT_EQ(Validate(Request("INVITE", uri, ""), roomy).code, 0);
  RequestPolicy tight;
  tight.max_request_uri_bytes = 19;
  EXPECT_EQ(Validate(Request("INVITE", "sip:bob@example.com", ""), tight).code, 0);  // 19 bytes
  tight.max_request_uri_bytes = 18;
  EXPECT_EQ(Validate(Request("INVITE", "sip:bob@example.com", ""), tight).code, 414);
}

TEST(ValidateRequestTest, AckIsNeverAnswered) {
  const std::string uri = "sip:" + std::string(1100, '9') + "@example.com";
  SipMessage message;
  const std::string text = Request("ACK", uri, "");
  ASSERT_TRUE(SipParser().Parse(text, Framing::kDatagram, &message).ok());
  Problem p = ValidateRequest(message, RequestPolicy{});
  EXPECT_EQ(p.defect, Defect::kRequestUriTooLong);
  EXPECT_EQ(p.response_code, 0);  // dropped, not answered
}

}  // namespace
}  // namespace b2bua::proto
