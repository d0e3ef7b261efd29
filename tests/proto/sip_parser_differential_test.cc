// Holds SipParser::Parse(), with its fast paths (the common-shape line loop, the one-pass
// value readers), to SipParser::ParseExact() on every message of the test corpora and on
// systematic mutations of each: every truncation, every deleted byte, and a grammar-special
// byte written over every position. Both parses of an input must agree on the result and
// on every field of the message.

#include <cstddef>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "gtest/gtest.h"
#include "proto/sip_message.h"
#include "proto/sip_parser.h"
#include "tests/proto/sip_message_diff.h"

#ifndef B2BUA_TEST_DATA_DIR
#error "B2BUA_TEST_DATA_DIR must name the tests/data folder"
#endif

namespace b2bua::proto {
namespace {

std::vector<std::string> CorpusFiles() {
  std::vector<std::string> files;
  for (const char* dir : {"rfc4475", "rfc5118", "sip"})
    for (const auto& entry :
         std::filesystem::directory_iterator(std::string(B2BUA_TEST_DATA_DIR "/") + dir))
      if (entry.path().extension() == ".sip") files.push_back(entry.path().string());
  return files;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

class ParserDifferentialTest : public ::testing::Test {
 protected:
  // Empty when both parses agree in both framings; else what differs, and where.
  std::string Disagreement(std::string_view input) {
    for (Framing framing : {Framing::kDatagram, Framing::kStream}) {
      ParseResult fast = parser_.Parse(input, framing, fast_.get());
      ParseResult exact = parser_.ParseExact(input, framing, exact_.get());
      std::string diff = testing::MessageDiff::Between(fast, *fast_, exact, *exact_);
      if (!diff.empty())
        return (framing == Framing::kDatagram ? "datagram: " : "stream: ") + diff;
    }
    return {};
  }

  SipParser parser_;
  std::unique_ptr<SipMessage> fast_ = std::make_unique<SipMessage>();
  std::unique_ptr<SipMessage> exact_ = std::make_unique<SipMessage>();
};

TEST_F(ParserDifferentialTest, CorpusMessagesParseTheSameBothWays) {
  std::vector<std::string> files = CorpusFiles();
  ASSERT_GT(files.size(), 50u);
  for (const std::string& file : files) {
    std::string message = ReadFile(file);
    ASSERT_FALSE(message.empty()) << file;
    EXPECT_EQ(Disagreement(message), "") << file;
  }
}

TEST_F(ParserDifferentialTest, WordComparedSpellingsParseTheSameBothWays) {
  // What the one-pass readers match by a word compare (Via transports, well-known
  // parameters), in the spellings that compare must take or leave to the general loop:
  // case, LWS, empty and odd values, a name that only starts like a known one, the end of
  // the buffer right after it.
  constexpr std::string_view kViaParams[] = {
      ";branch=z9hG4bK1",  ";BRANCH=z9hG4bK1", ";Branch=z9hG4bK1;rport", ";branch =z9hG4bK1",
      ";branch= z9hG4bK1", ";branch=",         ";branches=1;branch=z9hG4bK1",
      ";rport=5060;branch=z9hG4bK1",           ";rport=0;branch=z9hG4bK1",
      ";rport=x;branch=z9hG4bK1",              ";received=192.0.2.1;branch=z9hG4bK1",
      ";RECEIVED=[2001:db8::1];branch=z9hG4bK1", ";received=a..b;branch=z9hG4bK1",
      ";receivedx=1;branch=z9hG4bK1",          ";branch=\"q\"",
      ";branch=z9hG4bK1;branch=z9hG4bK2",      ";b\xc3\xa9" "anch=1;branch=z9hG4bK1"};
  constexpr std::string_view kContactParams[] = {
      ";q=0.5", ";Q=1", ";q=1.0000", ";q=", ";q =0.1", ";expires=60;q=0.2", ";EXPIRES=x",
      ";qq=1",  ";tag=x", ";Tag=", ";q=0.5,<sip:b@h>;q=0.7"};
  constexpr std::string_view kViaHeads[] = {
      "SIP/2.0/UDP h.example", "SIP/2.0/udp h.example", "SIP/2.0/UDP  h.example",
      "SIP/2.0/UDP\th.example", "SIP/2.0/UDPX h.example", "SIP/2.0/TLS h.example",
      "SIP/2.0/TCP 192.0.2.1:5060", "SIP/2.0/TCP ", "SIP/2.0/TCP", "SIP/2.0/SCTP h.example"};
  for (std::string_view head : kViaHeads) {
    std::string message = "OPTIONS sip:a@b.example SIP/2.0\r\nVia: ";
    message += head;
    EXPECT_EQ(Disagreement(message + ";branch=z9hG4bK1\r\n\r\n"), "") << head;
    EXPECT_EQ(Disagreement(message), "") << head << " (at the end of the buffer)";
  }
  for (std::string_view param : kViaParams) {
    std::string message = "OPTIONS sip:a@b.example SIP/2.0\r\nVia: SIP/2.0/UDP h.example";
    message += param;
    EXPECT_EQ(Disagreement(message + "\r\n\r\n"), "") << param;
    EXPECT_EQ(Disagreement(message), "") << param << " (at the end of the buffer)";
  }
  for (std::string_view param : kContactParams) {
    std::string message =
        "SIP/2.0 302 Moved\r\nFrom: <sip:a@h>;tag=1\r\nContact: <sip:c@192.0.2.1>";
    message += param;
    EXPECT_EQ(Disagreement(message + "\r\nContent-Length: 0\r\n\r\n"), "") << param;
  }
}

TEST_F(ParserDifferentialTest, StreamBuffersLongerThanTheLimitParseTheSameBothWays) {
  // A TCP read may hold several messages, more bytes in all than one message may have:
  // the first must still parse, and one over the limit must still be refused.
  const std::string first = ReadFile(B2BUA_TEST_DATA_DIR "/sip/redirect302.sip");
  const std::string second = ReadFile(B2BUA_TEST_DATA_DIR "/sip/invite_sdp.sip");
  ASSERT_FALSE(first.empty());
  ASSERT_FALSE(second.empty());
  for (size_t max_bytes : {first.size() - 1, first.size(), first.size() + 1, size_t{1024},
                           first.size() + second.size()}) {
    SipParser parser(ParserLimits{.max_message_bytes = max_bytes});
    for (const std::string& input : {first + second, first + second + first, first}) {
      ParseResult fast = parser.Parse(input, Framing::kStream, fast_.get());
      ParseResult exact = parser.ParseExact(input, Framing::kStream, exact_.get());
      EXPECT_EQ(testing::MessageDiff::Between(fast, *fast_, exact, *exact_), "")
          << "limit " << max_bytes << ", input of " << input.size() << " bytes";
      EXPECT_EQ(fast.ok(), max_bytes >= first.size()) << max_bytes;
      if (fast.ok()) {
        EXPECT_EQ(fast.consumed, first.size());
      }
    }
  }
}

TEST_F(ParserDifferentialTest, MutatedMessagesParseTheSameBothWays) {
  // What the one-pass readers treat specially, and what they must hand to the exact path.
  constexpr std::string_view kSpecial = " \t;,<>\"@:=[]%?\\/\r\n.-_+0\x80";
  size_t inputs = 0;
  size_t complete = 0;
  for (const std::string& file : CorpusFiles()) {
    const std::string message = ReadFile(file);
    // A copy per input, sized exactly, so that ASan sees any read past its end.
    auto check = [&](std::string input) {
      ++inputs;
      std::string diff = Disagreement(input);
      ParseResult r = parser_.Parse(input, Framing::kDatagram, fast_.get());
      if (r.ok()) ++complete;
      ASSERT_EQ(diff, "") << file << " mutated to:\n" << input;
    };
    for (size_t i = 0; i < message.size(); ++i) {
      check(message.substr(0, i));
      check(message.substr(0, i) + message.substr(i + 1));
      std::string replaced = message;
      replaced[i] = kSpecial[i % kSpecial.size()];
      check(replaced);
      if (::testing::Test::HasFatalFailure()) return;
    }
  }
  // The mutations must reach both verdicts, or the test proves little.
  EXPECT_GT(complete, inputs / 10);
  EXPECT_LT(complete, inputs - inputs / 10);
}

}  // namespace
}  // namespace b2bua::proto
