// Tests proto/sip_builder.{h,cc}: the MessageWriter and the message/response writers. Output
// is checked by parsing it again with the production SipParser.

#include "proto/sip_builder.h"

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/sip_message.h"
#include "proto/sip_parser.h"
#include "proto/sip_validate.h"

namespace b2bua::proto {
namespace {

using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// ---------------------------------------------------------------------------------------
// MessageWriter.

TEST(MessageWriterTest, FormatsLinesAndBody) {
  std::array<char, 512> buf;
  MessageWriter w(buf.data(), buf.size());
  w.RequestLine("INVITE", "sip:bob@biloxi.example.com");
  w.Header("To", "<sip:bob@biloxi.example.com>");
  w.HeaderParts("Via", {"SIP/2.0/UDP ", "192.0.2.1", ":5060", ";branch=z9hG4bK1"});
  w.HeaderNumber("Max-Forwards", 70);
  w.Body("hello");
  EXPECT_FALSE(w.overflowed());
  EXPECT_EQ(w.view(),
            "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
            "To: <sip:bob@biloxi.example.com>\r\n"
            "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\r\n"
            "Max-Forwards: 70\r\n"
            "Content-Length: 5\r\n"
            "\r\n"
            "hello");
  EXPECT_EQ(w.size(), w.view().size());
}

TEST(MessageWriterTest, FormatsStatusLineAndEmptyBody) {
  std::array<char, 128> buf;
  MessageWriter w(buf.data(), buf.size());
  w.StatusLine(486, "Busy Here");
  w.Body("");
  EXPECT_FALSE(w.overflowed());
  EXPECT_EQ(w.view(), "SIP/2.0 486 Busy Here\r\nContent-Length: 0\r\n\r\n");
}

TEST(MessageWriterTest, AppendsNumbers) {
  std::array<char, 64> buf;
  MessageWriter w(buf.data(), buf.size());
  w.AppendNumber(0);
  w.Append(" ");
  w.AppendNumber(65535);
  w.Append(" ");
  w.AppendNumber(UINT64_MAX);
  EXPECT_FALSE(w.overflowed());
  EXPECT_EQ(w.view(), "0 65535 18446744073709551615");
}

TEST(MessageWriterTest, FillsExactlyToCapacity) {
  std::array<char, 10> buf;
  MessageWriter w(buf.data(), buf.size());
  w.Append("01234");
  w.Append("56789");
  EXPECT_FALSE(w.overflowed());
  EXPECT_EQ(w.size(), 10u);
  EXPECT_EQ(w.view(), "0123456789");
  w.Append("");
  EXPECT_FALSE(w.overflowed());
  w.Append("x");
  EXPECT_TRUE(w.overflowed());
  EXPECT_LE(w.size(), 10u);
}

TEST(MessageWriterTest, StopsAtCapacityAndStaysOverflowed) {
  // The writer gets 16 bytes of a larger array; the rest must stay untouched.
  std::array<char, 64> buf;
  buf.fill('#');
  MessageWriter w(buf.data(), 16);
  w.Header("Subject", "a value far too long for sixteen bytes");
  EXPECT_TRUE(w.overflowed());
  EXPECT_LE(w.size(), 16u);
  for (size_t i = 16; i < buf.size(); ++i) ASSERT_EQ(buf[i], '#') << "wrote at " << i;
  // Later writes, even small ones, change nothing.
  size_t size = w.size();
  w.Append("x");
  w.AppendNumber(7);
  w.Body("");
  EXPECT_TRUE(w.overflowed());
  EXPECT_EQ(w.size(), size);
  for (size_t i = 16; i < buf.size(); ++i) ASSERT_EQ(buf[i], '#') << "wrote at " << i;
}

TEST(MessageWriterTest, OverflowsOnNumbersAndLines) {
  std::array<char, 4> buf;
  MessageWriter numbers(buf.data(), buf.size());
  numbers.AppendNumber(123456);
  EXPECT_TRUE(numbers.overflowed());
  EXPECT_LE(numbers.size(), 4u);

  MessageWriter lines(buf.data(), buf.size());
  lines.StatusLine(200, "OK");
  EXPECT_TRUE(lines.overflowed());

  char none = '#';
  MessageWriter empty(&none, 0);
  empty.Append("");
  EXPECT_FALSE(empty.overflowed());
  empty.Append("a");
  EXPECT_TRUE(empty.overflowed());
  EXPECT_EQ(empty.size(), 0u);
  EXPECT_EQ(none, '#');
}

// ---------------------------------------------------------------------------------------
// Writers that take a parsed message.

// Parses an input and keeps the bytes the message points into.
class Parsed {
 public:
  explicit Parsed(std::string bytes, Framing framing = Framing::kDatagram)
      : bytes_(std::move(bytes)), message_(std::make_unique<SipMessage>()) {
    result_ = SipParser().Parse(bytes_, framing, message_.get());
  }
  const ParseResult& result() const { return result_; }
  const SipMessage& message() const { return *message_; }
  const SipMessage* operator->() const { return message_.get(); }

 private:
  std::string bytes_;
  std::unique_ptr<SipMessage> message_;
  ParseResult result_;
};

// Output must be a complete stream message: Content-Length present and right.
std::unique_ptr<Parsed> Reparse(std::string_view out) {
  auto parsed = std::make_unique<Parsed>(std::string(out), Framing::kStream);
  EXPECT_EQ(parsed->result().status, ParseStatus::kComplete)
      << DefectText(parsed->result().problem.defect) << " in '"
      << parsed->result().problem.header_name << "' of:\n"
      << out;
  EXPECT_EQ(parsed->result().consumed, out.size());
  return parsed;
}

// (id, value) of every header except Content-Length, in order.
std::vector<std::pair<HeaderId, std::string>> HeadersWithoutContentLength(const SipMessage& m) {
  std::vector<std::pair<HeaderId, std::string>> out;
  for (size_t i = 0; i < m.header_count(); ++i)
    if (m.headers()[i].id != HeaderId::kContentLength)
      out.emplace_back(m.headers()[i].id, std::string(m.headers()[i].value));
  return out;
}

size_t CountHeaders(const SipMessage& m, HeaderId id) {
  size_t n = 0;
  for (size_t i = 0; i < m.header_count(); ++i) n += m.headers()[i].id == id;
  return n;
}

constexpr std::string_view kInvite =
    "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    "Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bK2d4790.1, "
    "SIP/2.0/UDP 192.0.2.8:5070;branch=z9hG4bKnashds8;received=192.0.2.9\r\n"
    "v: SIP/2.0/TCP [2001:db8::1]:5061;branch=z9hG4bK77ef4c2312983.1\r\n"
    "Max-Forwards: 69\r\n"
    "To: Bob <sip:bob@biloxi.example.com>\r\n"
    "f: \"Alice\" <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
    "Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    "CSeq: 314159 INVITE\r\n"
    "X-Unknown: keep ;me, as-is\r\n"
    "Content-Length: 5\r\n"
    "Contact: <sip:alice@pc33.atlanta.example.com>\r\n"
    "Subject: lunch\r\n"
    "Content-Type: text/plain\r\n"
    "\r\n"
    "hello";

TEST(WriteMessageTest, KeepsHeaderOrderAndRecomputesContentLength) {
  Parsed in{std::string(kInvite)};
  ASSERT_TRUE(in.result().ok());
  std::array<char, 4096> buf;
  MessageWriter w(buf.data(), buf.size());
  constexpr std::string_view kNewBody = "a longer replacement body";
  WriteMessage(in.message(), kNewBody, w);
  ASSERT_FALSE(w.overflowed());

  std::unique_ptr<Parsed> out = Reparse(w.view());
  const SipMessage& m = out->message();
  EXPECT_THAT(std::string(w.view()), StartsWith("INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"));
  EXPECT_EQ(m.method(), Method::kInvite);
  EXPECT_EQ(m.request_uri().text, "sip:bob@biloxi.example.com");
  EXPECT_THAT(HeadersWithoutContentLength(m),
              ElementsAreArray(HeadersWithoutContentLength(in.message())));
  EXPECT_EQ(CountHeaders(m, HeaderId::kContentLength), 1u);
  ASSERT_GT(m.header_count(), 0u);
  EXPECT_EQ(m.headers()[m.header_count() - 1].id, HeaderId::kContentLength);
  EXPECT_EQ(m.content_length(), static_cast<int64_t>(kNewBody.size()));
  EXPECT_EQ(m.body(), kNewBody);
  EXPECT_EQ(m.via_count(), 3u);
}

TEST(WriteMessageTest, WritesEmptyBodyAndResponses) {
  Parsed in{
      "SIP/2.0 180 Ringing\r\n"
      "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n"
      "To: <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n"
      "From: <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
      "Call-ID: a84b4c76e66710\r\n"
      "CSeq: 1 INVITE\r\n"
      "l: 3\r\n"
      "\r\n"
      "abc"};
  ASSERT_TRUE(in.result().ok());
  std::array<char, 1024> buf;
  MessageWriter w(buf.data(), buf.size());
  WriteMessage(in.message(), "", w);
  ASSERT_FALSE(w.overflowed());
  std::unique_ptr<Parsed> out = Reparse(w.view());
  EXPECT_TRUE(out->message().is_response());
  EXPECT_EQ(out->message().status_code(), 180);
  EXPECT_EQ(out->message().reason_phrase(), "Ringing");
  EXPECT_EQ(out->message().content_length(), 0);
  EXPECT_TRUE(out->message().body().empty());
  EXPECT_THAT(HeadersWithoutContentLength(out->message()),
              ElementsAreArray(HeadersWithoutContentLength(in.message())));
}

TEST(WriteMessageTest, ReportsOverflow) {
  Parsed in{std::string(kInvite)};
  ASSERT_TRUE(in.result().ok());
  std::array<char, 64> buf;
  MessageWriter w(buf.data(), buf.size());
  WriteMessage(in.message(), in->body(), w);
  EXPECT_TRUE(w.overflowed());
  EXPECT_LE(w.size(), buf.size());
}

TEST(WriteResponseTest, CopiesDialogHeadersAndAddsToTag) {
  Parsed in{std::string(kInvite)};
  ASSERT_TRUE(in.result().ok());
  std::array<char, 4096> buf;
  MessageWriter w(buf.data(), buf.size());
  WriteResponse(in.message(), 180, "Ringing", "8321234356", "Retry-After: 60\r\n", w);
  ASSERT_FALSE(w.overflowed());
  EXPECT_THAT(std::string(w.view()), StartsWith("SIP/2.0 180 Ringing\r\n"));

  std::unique_ptr<Parsed> out = Reparse(w.view());
  const SipMessage& m = out->message();
  ASSERT_TRUE(m.is_response());
  EXPECT_EQ(m.status_code(), 180);
  EXPECT_EQ(m.reason_phrase(), "Ringing");
  ASSERT_EQ(m.via_count(), in->via_count());
  for (size_t i = 0; i < m.via_count(); ++i) EXPECT_EQ(m.vias()[i].text, in->vias()[i].text) << i;
  EXPECT_EQ(m.from().text, in->from().text);
  EXPECT_EQ(m.from().tag, "1928301774");
  EXPECT_EQ(m.to().uri.text, in->to().uri.text);
  EXPECT_EQ(m.to().display_name, "Bob");
  EXPECT_EQ(m.to().tag, "8321234356");
  EXPECT_EQ(m.call_id(), in->call_id());
  EXPECT_EQ(m.cseq().number, 314159u);
  EXPECT_EQ(m.cseq().method, Method::kInvite);
  const HeaderField* retry = m.FindHeader("Retry-After");
  ASSERT_NE(retry, nullptr);
  EXPECT_EQ(retry->value, "60");
  EXPECT_EQ(m.content_length(), 0);
  EXPECT_TRUE(m.body().empty());
  // Nothing else of the request leaks into the response.
  EXPECT_EQ(m.FindHeader(HeaderId::kMaxForwards), nullptr);
  EXPECT_EQ(m.FindHeader(HeaderId::kContact), nullptr);
  EXPECT_EQ(m.FindHeader(HeaderId::kSubject), nullptr);
  EXPECT_EQ(m.FindHeader(HeaderId::kContentType), nullptr);
  EXPECT_EQ(m.FindHeader("X-Unknown"), nullptr);
}

TEST(WriteResponseTest, KeepsAnExistingToTag) {
  std::string request(kInvite);
  request.replace(request.find("To: Bob <sip:bob@biloxi.example.com>"),
                  sizeof("To: Bob <sip:bob@biloxi.example.com>") - 1,
                  "To: Bob <sip:bob@biloxi.example.com>;tag=existing");
  Parsed in{request};
  ASSERT_TRUE(in.result().ok());
  std::array<char, 4096> buf;
  MessageWriter w(buf.data(), buf.size());
  WriteResponse(in.message(), 200, "OK", "fresh", "", w);
  ASSERT_FALSE(w.overflowed());
  std::unique_ptr<Parsed> out = Reparse(w.view());
  EXPECT_EQ(out->message().to().tag, "existing");
  EXPECT_THAT(std::string(w.view()), ::testing::Not(HasSubstr("fresh")));
}

TEST(WriteResponseTest, AddsNoTagWhenNoneIsGiven) {
  Parsed in{std::string(kInvite)};
  ASSERT_TRUE(in.result().ok());
  std::array<char, 4096> buf;
  MessageWriter w(buf.data(), buf.size());
  WriteResponse(in.message(), 100, "Trying", "", "", w);
  ASSERT_FALSE(w.overflowed());
  std::unique_ptr<Parsed> out = Reparse(w.view());
  EXPECT_EQ(out->message().status_code(), 100);
  EXPECT_TRUE(out->message().to().tag.empty());
}

TEST(WriteResponseTest, ReportsOverflow) {
  Parsed in{std::string(kInvite)};
  ASSERT_TRUE(in.result().ok());
  std::array<char, 100> buf;
  MessageWriter w(buf.data(), buf.size());
  WriteResponse(in.message(), 180, "Ringing", "8321234356", "", w);
  EXPECT_TRUE(w.overflowed());
}

// ---------------------------------------------------------------------------------------
// WriteProblemResponse.

constexpr std::string_view kOptionsWithRequire =
    "OPTIONS sip:user@example.com SIP/2.0\r\n"
    "To: sip:j_user@example.com\r\n"
    "From: sip:caller@example.net;tag=242etr\r\n"
    "Max-Forwards: 6\r\n"
    "Call-ID: bext01.0ha0isndaksdj\r\n"
    "Require: nothingSupportsThis, nothingSupportsThisEither\r\n"
    "CSeq: 8 OPTIONS\r\n"
    "Via: SIP/2.0/TLS fold-and-staple.example.com;branch=z9hG4bKkdjuw\r\n"
    "Content-Length: 0\r\n"
    "\r\n";

TEST(WriteProblemResponseTest, Writes420WithUnsupported) {
  Parsed in{std::string(kOptionsWithRequire)};
  ASSERT_TRUE(in.result().ok());
  Problem problem{.defect = Defect::kUnsupportedExtension,
                  .header = HeaderId::kRequire,
                  .header_name = "Require",
                  .response_code = 420};
  std::array<char, 2048> buf;
  MessageWriter w(buf.data(), buf.size());
  ASSERT_TRUE(WriteProblemResponse(in.message(), problem, "nothingSupportsThis", w));
  ASSERT_FALSE(w.overflowed());
  std::unique_ptr<Parsed> out = Reparse(w.view());
  const SipMessage& m = out->message();
  EXPECT_EQ(m.status_code(), 420);
  EXPECT_FALSE(m.reason_phrase().empty());
  const HeaderField* unsupported = m.FindHeader(HeaderId::kUnsupported);
  ASSERT_NE(unsupported, nullptr);
  EXPECT_THAT(std::string(unsupported->value), HasSubstr("nothingSupportsThis"));
  ASSERT_EQ(m.via_count(), 1u);
  EXPECT_EQ(m.vias()[0].host, "fold-and-staple.example.com");
  EXPECT_EQ(m.call_id(), "bext01.0ha0isndaksdj");
  EXPECT_EQ(m.cseq().number, 8u);
  EXPECT_EQ(m.from().tag, "242etr");
}

TEST(WriteProblemResponseTest, AnswersWhatTheValidatorRejects) {
  Parsed in{std::string(kOptionsWithRequire)};
  ASSERT_TRUE(in.result().ok());
  std::string_view unsupported;
  Problem problem =
      ValidateRequest(in.message(), RequestPolicy{.supported_option_tags = "timer"}, &unsupported);
  ASSERT_EQ(problem.response_code, 420);
  std::array<char, 2048> buf;
  MessageWriter w(buf.data(), buf.size());
  ASSERT_TRUE(WriteProblemResponse(in.message(), problem, unsupported, w));
  std::unique_ptr<Parsed> out = Reparse(w.view());
  const HeaderField* header = out->message().FindHeader(HeaderId::kUnsupported);
  ASSERT_NE(header, nullptr);
  EXPECT_THAT(std::string(header->value), HasSubstr("nothingSupportsThis"));
}

TEST(WriteProblemResponseTest, AnswersAParseFailureWithTheHeadersReadSoFar) {
  // The bad header comes after Via, From, To, Call-ID and CSeq, so those were read.
  std::string request(kOptionsWithRequire);
  request.erase(request.find("Max-Forwards: 6\r\n"), sizeof("Max-Forwards: 6\r\n") - 1);
  request.insert(request.find("Content-Length: 0"), "Max-Forwards: six\r\n");
  Parsed in{request};
  ASSERT_EQ(in.result().status, ParseStatus::kMalformed);
  ASSERT_EQ(in.result().problem.response_code, 400);
  std::array<char, 2048> buf;
  MessageWriter w(buf.data(), buf.size());
  ASSERT_TRUE(WriteProblemResponse(in.message(), in.result().problem, "", w));
  ASSERT_FALSE(w.overflowed());
  std::unique_ptr<Parsed> out = Reparse(w.view());
  const SipMessage& m = out->message();
  EXPECT_EQ(m.status_code(), 400);
  EXPECT_THAT(std::string(m.reason_phrase()), HasSubstr("Max-Forwards"));
  EXPECT_EQ(m.via_count(), 1u);
  EXPECT_EQ(m.call_id(), "bext01.0ha0isndaksdj");
  EXPECT_EQ(m.FindHeader(HeaderId::kUnsupported), nullptr);
}

TEST(WriteProblemResponseTest, RefusesARequestWithoutVia) {
  Parsed in{
      "OPTIONS sip:user@example.com SIP/2.0\r\n"
      "To: sip:j_user@example.com\r\n"
      "From: sip:caller@example.net;tag=242etr\r\n"
      "Max-Forwards: 6\r\n"
      "Call-ID: novia.0ha0isndaksdj\r\n"
      "CSeq: 8 OPTIONS\r\n"
      "Content-Length: 0\r\n"
      "\r\n"};
  ASSERT_EQ(in.result().status, ParseStatus::kComplete);
  Problem problem{.defect = Defect::kMissingHeader,
                  .header = HeaderId::kVia,
                  .header_name = {},
                  .response_code = 400};
  std::array<char, 2048> buf;
  MessageWriter w(buf.data(), buf.size());
  EXPECT_FALSE(WriteProblemResponse(in.message(), problem, "", w));
}

}  // namespace
}  // namespace b2bua::proto

namespace b2bua::proto {
namespace {

// A stateless answer carries a To tag (RFC 3261 8.2.6.2), the same for a retransmission
// of the request, so the caller's ACK can name it.
TEST(WriteStatelessResponseTest, ToTagIsStableAcrossRetransmissions) {
  const std::string request =
      "INVITE sip:bob@example.com SIP/2.0\r\n"
      "Via: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKst1\r\n"
      "Max-Forwards: 70\r\n"
      "From: <sip:alice@example.com>;tag=a\r\n"
      "To: <sip:bob@example.com>\r\n"
      "Call-ID: stateless-1\r\n"
      "CSeq: 1 INVITE\r\n"
      "Content-Length: 0\r\n\r\n";
  auto answer = [&] {
    SipMessage message;
    EXPECT_TRUE(SipParser().Parse(request, Framing::kDatagram, &message).ok());
    char buffer[2048];
    MessageWriter writer(buffer, sizeof(buffer));
    WriteStatelessResponse(message, 403, "Forbidden", "Reason: SIP;cause=403\r\n", writer);
    EXPECT_FALSE(writer.overflowed());
    return std::string(writer.view());
  };
  const std::string first = answer();
  EXPECT_TRUE(first.starts_with("SIP/2.0 403 Forbidden\r\n")) << first;
  const size_t to = first.find("\r\nTo: <sip:bob@example.com>;tag=");
  ASSERT_NE(to, std::string::npos) << first;
  EXPECT_NE(first.find("\r\nReason: SIP;cause=403\r\n"), std::string::npos) << first;
  EXPECT_EQ(answer(), first);
}

}  // namespace
}  // namespace b2bua::proto
