#pragma once

// A 3xx response written as text and parsed by the real parser, for the tests of the
// redirect target set and search.

#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "proto/sip_message.h"
#include "proto/sip_parser.h"

namespace b2bua::test {

/// A parsed response together with the bytes its views point into.
class ParsedResponse {
 public:
  /// `contact_lines` are whole header lines without CRLF, e.g. "Contact: <sip:a@x>;q=0.5".
  explicit ParsedResponse(const std::vector<std::string>& contact_lines, int status = 302) {
    bytes_ = "SIP/2.0 " + std::to_string(status) + " Whatever\r\n";
    bytes_ +=
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds\r\n"
        "From: <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
        "To: <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n"
        "Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
        "CSeq: 314159 INVITE\r\n";
    for (const std::string& line : contact_lines) bytes_ += line + "\r\n";
    bytes_ += "Content-Length: 0\r\n\r\n";
    proto::ParseResult result =
        proto::SipParser().Parse(bytes_, proto::Framing::kDatagram, &*msg_);
    EXPECT_EQ(result.status, proto::ParseStatus::kComplete)
        << proto::DefectText(result.problem.defect) << "\n" << bytes_;
  }
  const proto::SipMessage& msg() const { return *msg_; }

  /// Overwrites the bytes the message points into, to show that a copy was kept.
  void Scribble() { bytes_.assign(bytes_.size(), '#'); }

 private:
  std::string bytes_;
  std::unique_ptr<proto::SipMessage> msg_ = std::make_unique<proto::SipMessage>();
};

}  // namespace b2bua::test
