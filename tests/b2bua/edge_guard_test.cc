// Tests b2bua/edge_guard.{h,cc}: the verdict for each kind of source and request, as a
// table, on a fake clock.

#include "b2bua/edge_guard.h"

#include <string>
#include <string_view>
#include <vector>

#include "gtest/gtest.h"
#include "proto/clock.h"
#include "proto/sip_parser.h"

namespace b2bua {
namespace {

proto::NetAddress Ip(std::string_view text) {
  proto::NetAddress address;
  EXPECT_TRUE(proto::NetAddress::ParseIp(text, 5060, &address)) << text;
  return address;
}

std::string Request(std::string_view method, std::string_view user_agent, bool to_tag) {
  std::string text = std::string(method) + " sip:bob@example.com SIP/2.0\r\n"
                     "Via: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKedge\r\n"
                     "Max-Forwards: 70\r\n"
                     "From: <sip:alice@example.com>;tag=a1\r\n"
                     "To: <sip:bob@example.com>" + std::string(to_tag ? ";tag=b1" : "") + "\r\n"
                     "Call-ID: edge-1\r\n"
                     "CSeq: 1 " + std::string(method) + "\r\n";
  if (!user_agent.empty()) text += "User-Agent: " + std::string(user_agent) + "\r\n";
  return text + "Content-Length: 0\r\n\r\n";
}

AccessConfig Edge(UnknownSourceAction unknown) {
  AccessConfig access;
  access.trusted = *proto::CidrList::Parse({"10.0.0.0/8"});
  access.callers = *proto::CidrList::Parse({"192.0.2.0/24"});
  access.unknown_source = unknown;
  access.flood.max_requests = 3;
  return access;
}

struct Case {
  std::string_view name;
  std::string_view source;
  std::string_view method;
  std::string_view user_agent;
  bool to_tag;
  UnknownSourceAction unknown;
  EdgeVerdict expected;
};

TEST(EdgeGuardTest, VerdictTable) {
  using U = UnknownSourceAction;
  const std::vector<Case> cases = {
      {"trusted", "10.1.2.3", "INVITE", "", false, U::kReject, EdgeVerdict::kAccept},
      {"trusted scanner UA passes", "10.1.2.3", "OPTIONS", "friendly-scanner", false,
       U::kReject, EdgeVerdict::kAccept},
      {"caller", "192.0.2.7", "INVITE", "Linphone", false, U::kReject, EdgeVerdict::kAccept},
      {"caller scanner", "192.0.2.7", "OPTIONS", "friendly-scanner", false, U::kReject,
       EdgeVerdict::kDropScanner},
      {"stranger rejected", "203.0.113.5", "INVITE", "", false, U::kReject,
       EdgeVerdict::kRejectUntrusted},
      {"stranger dropped", "203.0.113.5", "INVITE", "", false, U::kDrop,
       EdgeVerdict::kDropUntrusted},
      {"stranger ACK never answered", "203.0.113.5", "ACK", "", false, U::kReject,
       EdgeVerdict::kDropUntrusted},
      {"stranger in dialog goes on to the dialog lookup", "203.0.113.5", "BYE", "", true,
       U::kReject, EdgeVerdict::kAccept},
      {"stranger scanner is silent, not 403", "203.0.113.5", "REGISTER", "sipvicious",
       false, U::kReject, EdgeVerdict::kDropScanner},
  };
  proto::FakeClock clock;
  for (const Case& c : cases) {
    EdgeGuard guard;
    const std::string text = Request(c.method, c.user_agent, c.to_tag);
    proto::SipMessage message;
    ASSERT_TRUE(proto::SipParser().Parse(text, proto::Framing::kDatagram, &message).ok()) << c.name;
    EXPECT_EQ(guard.Admit(Edge(c.unknown), message, Ip(c.source), clock.Now()), c.expected)
        << c.name;
  }
}

TEST(EdgeGuardTest, FloodBlocksUntrustedSourcesOnlyAndLogsOnce) {
  proto::FakeClock clock;
  EdgeGuard guard;
  const AccessConfig access = Edge(UnknownSourceAction::kReject);
  const std::string text = Request("OPTIONS", "", false);
  proto::SipMessage message;
  ASSERT_TRUE(proto::SipParser().Parse(text, proto::Framing::kDatagram, &message).ok());
  std::vector<EdgeVerdict> verdicts;
  for (int i = 0; i < 6; ++i)
    verdicts.push_back(guard.Admit(access, message, Ip("192.0.2.7"), clock.Now()));
  EXPECT_EQ(verdicts, (std::vector<EdgeVerdict>{EdgeVerdict::kAccept, EdgeVerdict::kAccept,
                                                EdgeVerdict::kAccept, EdgeVerdict::kBlockFlood,
                                                EdgeVerdict::kDropFlood,
                                                EdgeVerdict::kDropFlood}));
  // Another caller, and the trusted trunk at any rate, are unaffected.
  EXPECT_EQ(guard.Admit(access, message, Ip("192.0.2.8"), clock.Now()), EdgeVerdict::kAccept);
  for (int i = 0; i < 100; ++i)
    ASSERT_EQ(guard.Admit(access, message, Ip("10.0.0.1"), clock.Now()), EdgeVerdict::kAccept);
  EXPECT_EQ(guard.flood().blocked(), 1u);
  // The block ends after block_for.
  clock.Advance(access.flood.block_for);
  EXPECT_EQ(guard.Admit(access, message, Ip("192.0.2.7"), clock.Now()), EdgeVerdict::kAccept);
  EXPECT_EQ(guard.flood().blocked(), 0u);
}

}  // namespace
}  // namespace b2bua
