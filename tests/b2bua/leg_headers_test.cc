// Tests b2bua/leg_headers.{h,cc}: which headers cross from one leg to the other, the
// identity headers of RFC 3325, and the pieces of a response the B2BUA writes itself.

#include "b2bua/leg_headers.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/sip_parser.h"

namespace b2bua {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr std::string_view kInvite =
    "INVITE sip:bob@example.com SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKleg;rport\r\n"
    "Max-Forwards: 70\r\n"
    "From: \"Alice\" <sip:alice@example.com>;tag=a1;x=y\r\n"
    "To: <sip:bob@example.com>\r\n"
    "Call-ID: leg-1\r\n"
    "CSeq: 1 INVITE\r\n"
    "Contact: <sip:alice@192.0.2.10>\r\n"
    "P-Asserted-Identity: <sip:+12125550100@carrier.example>\r\n"
    "P-Preferred-Identity: <sip:+12125550111@carrier.example>\r\n"
    "Privacy: header; id\r\n"
    "Authorization: Digest username=\"alice\"\r\n"
    "Subject: lunch\r\n"
    "X-Secret: 42\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: 0\r\n\r\n";

class LegHeadersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(proto::SipParser().Parse(kInvite, proto::Framing::kDatagram, &message_).ok());
  }
  proto::SipMessage message_;
  HeaderPolicy policy_;  // the default pass list
};

TEST_F(LegHeadersTest, OneListOfHeadersTheB2buaWritesItself) {
  for (proto::HeaderId id : {proto::HeaderId::kVia, proto::HeaderId::kRoute,
                             proto::HeaderId::kRecordRoute, proto::HeaderId::kCallId,
                             proto::HeaderId::kCSeq, proto::HeaderId::kFrom, proto::HeaderId::kTo,
                             proto::HeaderId::kContact, proto::HeaderId::kMaxForwards,
                             proto::HeaderId::kContentLength}) {
    EXPECT_TRUE(IsDialogHeader(id)) << proto::HeaderName(id);
    EXPECT_TRUE(IsHopByHop(id)) << proto::HeaderName(id);
  }
  for (proto::HeaderId id : {proto::HeaderId::kContentType, proto::HeaderId::kHistoryInfo,
                             proto::HeaderId::kDiversion, proto::HeaderId::kAuthorization,
                             proto::HeaderId::kProxyAuthorization}) {
    EXPECT_FALSE(IsDialogHeader(id)) << proto::HeaderName(id);
    EXPECT_TRUE(IsHopByHop(id)) << proto::HeaderName(id);
  }
  EXPECT_FALSE(IsHopByHop(proto::HeaderId::kSubject));
  EXPECT_FALSE(IsHopByHop(proto::HeaderId::kOther));
}

TEST_F(LegHeadersTest, PassedHeadersFollowThePolicyAndNeverCarryHopByHopOnes) {
  const std::string passed = PassedHeaders(message_, policy_, IdentityHeaders::kAsserted);
  EXPECT_THAT(passed, HasSubstr("Subject: lunch\r\n"));
  EXPECT_THAT(passed, HasSubstr("Privacy: header; id\r\n"));
  EXPECT_THAT(passed, HasSubstr("P-Asserted-Identity: <sip:+12125550100@carrier.example>\r\n"));
  EXPECT_THAT(passed, Not(HasSubstr("X-Secret")));       // unknown: not in the pass list
  EXPECT_THAT(passed, Not(HasSubstr("Authorization")));  // credentials are for one hop
  EXPECT_THAT(passed, Not(HasSubstr("Via:")));
  EXPECT_THAT(passed, Not(HasSubstr("Content-Type")));   // written with the body
  HeaderPolicy open(HeaderPolicy::DefaultPass(), {"Subject"}, /*pass_unknown=*/true);
  const std::string wide = PassedHeaders(message_, open, IdentityHeaders::kAsserted);
  EXPECT_THAT(wide, HasSubstr("X-Secret: 42\r\n"));
  EXPECT_THAT(wide, Not(HasSubstr("Subject")));
}

TEST_F(LegHeadersTest, AssertedIdentityCrossesOnlyFromTheTrustDomain) {
  EXPECT_THAT(PassedHeaders(message_, policy_, IdentityHeaders::kUntrusted),
              Not(HasSubstr("P-Asserted-Identity")));
  const std::string per_hop = PassedHeaders(message_, policy_, IdentityHeaders::kPerNextHop);
  EXPECT_THAT(per_hop, Not(HasSubstr("P-Asserted-Identity")));
  EXPECT_THAT(per_hop, Not(HasSubstr("P-Preferred-Identity")));
  AccessConfig access;
  proto::Peer trunk, stranger;
  proto::NetAddress::ParseIp("127.0.0.5", 5060, &trunk.address);
  proto::NetAddress::ParseIp("192.0.2.5", 5060, &stranger.address);
  EXPECT_EQ(IdentityFrom(access, trunk), IdentityHeaders::kAsserted);
  EXPECT_EQ(IdentityFrom(access, stranger), IdentityHeaders::kUntrusted);
}

TEST_F(LegHeadersTest, CallerIdentityAndPrivacy) {
  CallerIdentity trusted = ExtractIdentity(message_, policy_, /*trusted_source=*/true);
  EXPECT_EQ(trusted.asserted, "P-Asserted-Identity: <sip:+12125550100@carrier.example>\r\n");
  EXPECT_EQ(trusted.preferred, "P-Preferred-Identity: <sip:+12125550111@carrier.example>\r\n");
  EXPECT_TRUE(trusted.privacy_id);  // "header; id": id among the priv-values
  CallerIdentity untrusted = ExtractIdentity(message_, policy_, /*trusted_source=*/false);
  EXPECT_TRUE(untrusted.asserted.empty());
  EXPECT_FALSE(untrusted.preferred.empty());
}

TEST_F(LegHeadersTest, WithoutTagKeepsEveryOtherParameter) {
  EXPECT_EQ(WithoutTag(message_.from()), "\"Alice\" <sip:alice@example.com>;x=y");
  EXPECT_EQ(WithoutTag(message_.to()), "<sip:bob@example.com>");
}

TEST_F(LegHeadersTest, TopViaForResponseFillsRportAndReceived) {
  proto::Peer source;
  proto::NetAddress::ParseIp("198.51.100.7", 40000, &source.address);
  EXPECT_EQ(TopViaForResponse(*message_.top_via(), source),
            "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKleg;rport=40000;received=198.51.100.7");
}

TEST_F(LegHeadersTest, AppendBodyWritesTypeAndLength) {
  std::string out;
  AppendBody(out, "v=0\r\n", "application/sdp");
  EXPECT_EQ(out, "Content-Type: application/sdp\r\nContent-Length: 5\r\n\r\nv=0\r\n");
  out.clear();
  AppendBody(out, "", "application/sdp");
  EXPECT_EQ(out, "Content-Length: 0\r\n\r\n");
}

}  // namespace
}  // namespace b2bua
