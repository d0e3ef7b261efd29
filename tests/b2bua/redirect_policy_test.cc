// Tests b2bua/redirect_policy.{h,cc}: domain rules, schemes, and the decisions of the
// shipped ConfiguredRedirectPolicy.

#include "b2bua/redirect_policy.h"

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "b2bua/target_set.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/net_address.h"
#include "proto/sip_message.h"
#include "proto/sip_parser.h"

namespace b2bua {
namespace {

using ::testing::ElementsAre;

proto::NetAddress Ip(std::string_view text, uint16_t port = 5060) {
  proto::NetAddress address;
  EXPECT_TRUE(proto::NetAddress::ParseIp(text, port, &address)) << text;
  return address;
}

Cidr ParsedCidr(std::string_view text) {
  Cidr cidr;
  EXPECT_TRUE(Cidr::Parse(text, &cidr)) << text;
  return cidr;
}

// A one-target set whose original is `uri`: the Target the policy sees, built by the
// production code.
class OneTarget {
 public:
  explicit OneTarget(std::string_view uri) { EXPECT_TRUE(set_.SetOriginal(uri)) << uri; }
  const Target& operator*() const { return set_.at(0); }

 private:
  TargetSet set_;
};

PolicyDecision DecideFor(ConfiguredRedirectPolicy& policy, std::string_view uri) {
  OneTarget target(uri);
  return policy.Decide(*target, 42);
}

TEST(DomainMatchesTest, ExactOrSuffixOnADotBoundary) {
  EXPECT_TRUE(DomainMatches("example.com", "example.com"));
  EXPECT_TRUE(DomainMatches("a.example.com", "example.com"));
  EXPECT_TRUE(DomainMatches("a.b.example.com", "example.com"));
  EXPECT_FALSE(DomainMatches("badexample.com", "example.com"));
  EXPECT_FALSE(DomainMatches("example.com.evil.net", "example.com"));
  EXPECT_FALSE(DomainMatches("com", "example.com"));
  EXPECT_FALSE(DomainMatches("example.org", "example.com"));
}

TEST(DomainMatchesTest, CaseAndDots) {
  EXPECT_TRUE(DomainMatches("A.Example.COM", "example.com"));
  EXPECT_TRUE(DomainMatches("a.example.com", "EXAMPLE.com"));
  EXPECT_TRUE(DomainMatches("a.example.com.", "example.com"));
  EXPECT_TRUE(DomainMatches("a.example.com", "example.com."));
  EXPECT_TRUE(DomainMatches("a.example.com", ".example.com"));
  EXPECT_TRUE(DomainMatches("example.com", ".example.com"));
  // An empty entry matches nothing rather than everything.
  EXPECT_FALSE(DomainMatches("example.com", ""));
  EXPECT_FALSE(DomainMatches("example.com", "."));
}

// ---------------------------------------------------------------------------------------
// Schemes and classification.

TEST(ConfiguredRedirectPolicyTest, DefaultSchemesAreSipAndSips) {
  ConfiguredRedirectPolicy policy(RedirectSecurity{}, false);
  EXPECT_EQ(DecideFor(policy, "sip:a@example.com"), PolicyDecision::kAccept);
  EXPECT_EQ(DecideFor(policy, "SIPS:a@example.com"), PolicyDecision::kAccept);
  EXPECT_EQ(DecideFor(policy, "tel:+15551234"), PolicyDecision::kReject);
  EXPECT_EQ(DecideFor(policy, "http://example.com/"), PolicyDecision::kReject);
  EXPECT_EQ(DecideFor(policy, "mailto:a@example.com"), PolicyDecision::kReject);
  EXPECT_TRUE(policy.SchemeAllowed("SIP"));
  EXPECT_FALSE(policy.SchemeAllowed("tel"));
}

TEST(ConfiguredRedirectPolicyTest, TelIsAcceptedWhenMapped) {
  RedirectSecurity security;
  security.allowed_schemes = {"sip", "tel"};
  security.allow_domains = {"example.com"};  // a number has no host to check
  ConfiguredRedirectPolicy policy(std::move(security), false);
  EXPECT_EQ(DecideFor(policy, "TEL:+1-555-1234"), PolicyDecision::kAccept);
  EXPECT_EQ(DecideFor(policy, "sips:a@example.com"), PolicyDecision::kReject);
}

// ---------------------------------------------------------------------------------------
// Hosts.

TEST(ConfiguredRedirectPolicyTest, DenyCidrRejectsIpLiterals) {
  RedirectSecurity security;
  security.deny_cidrs = proto::CidrList({ParsedCidr("10.0.0.0/8"), ParsedCidr("fd00::/8")});
  ConfiguredRedirectPolicy policy(std::move(security), false);
  EXPECT_EQ(DecideFor(policy, "sip:a@10.1.2.3"), PolicyDecision::kReject);
  EXPECT_EQ(DecideFor(policy, "sip:a@10.1.2.3:5070;transport=tcp"), PolicyDecision::kReject);
  EXPECT_EQ(DecideFor(policy, "sip:a@[::ffff:10.0.0.1]"), PolicyDecision::kReject);
  EXPECT_EQ(DecideFor(policy, "sip:a@[fd12::1]"), PolicyDecision::kReject);
  EXPECT_EQ(DecideFor(policy, "sip:a@192.0.2.1"), PolicyDecision::kAccept);
  EXPECT_EQ(DecideFor(policy, "sip:a@[2001:db8::1]"), PolicyDecision::kAccept);
  // CIDRs say nothing about names: the engine vets what they resolve to.
  EXPECT_EQ(DecideFor(policy, "sip:a@example.com"), PolicyDecision::kAccept);
  EXPECT_FALSE(policy.AddressAllowed(Ip("10.9.9.9")));
  EXPECT_TRUE(policy.AddressAllowed(Ip("192.0.2.1")));
}

TEST(ConfiguredRedirectPolicyTest, AllowCidrsRejectEverythingElse) {
  RedirectSecurity security;
  security.allow_cidrs = proto::CidrList({ParsedCidr("192.0.2.0/24"), ParsedCidr("2001:db8::/32")});
  security.deny_cidrs = proto::CidrList({ParsedCidr("192.0.2.128/25")});
  ConfiguredRedirectPolicy policy(std::move(security), false);
  EXPECT_EQ(DecideFor(policy, "sip:a@192.0.2.5"), PolicyDecision::kAccept);
  EXPECT_EQ(DecideFor(policy, "sip:a@[2001:db8::5]"), PolicyDecision::kAccept);
  EXPECT_EQ(DecideFor(policy, "sip:a@198.51.100.1"), PolicyDecision::kReject);
  EXPECT_EQ(DecideFor(policy, "sip:a@[2001:db9::5]"), PolicyDecision::kReject);
  EXPECT_EQ(DecideFor(policy, "sip:a@192.0.2.200"), PolicyDecision::kReject);  // deny wins
  EXPECT_EQ(DecideFor(policy, "sip:a@example.com"), PolicyDecision::kAccept);
}

TEST(ConfiguredRedirectPolicyTest, DenyDomainsRejectNamesAndSubdomains) {
  RedirectSecurity security;
  security.deny_domains = {"evil.example"};
  ConfiguredRedirectPolicy policy(std::move(security), false);
  EXPECT_EQ(DecideFor(policy, "sip:a@evil.example"), PolicyDecision::kReject);
  EXPECT_EQ(DecideFor(policy, "sip:a@EVIL.Example"), PolicyDecision::kReject);
  EXPECT_EQ(DecideFor(policy, "sip:a@pbx.evil.example:5080"), PolicyDecision::kReject);
  EXPECT_EQ(DecideFor(policy, "sip:a@notevil.example"), PolicyDecision::kAccept);
  EXPECT_EQ(DecideFor(policy, "sip:a@192.0.2.1"), PolicyDecision::kAccept);
}

TEST(ConfiguredRedirectPolicyTest, AllowDomainsRejectOtherNames) {
  RedirectSecurity security;
  security.allow_domains = {"example.com", "partner.example.net"};
  security.deny_domains = {"lab.example.com"};
  ConfiguredRedirectPolicy policy(std::move(security), false);
  EXPECT_EQ(DecideFor(policy, "sip:a@example.com"), PolicyDecision::kAccept);
  EXPECT_EQ(DecideFor(policy, "sip:a@pbx.example.com"), PolicyDecision::kAccept);
  EXPECT_EQ(DecideFor(policy, "sips:a@gw.partner.example.net"), PolicyDecision::kAccept);
  EXPECT_EQ(DecideFor(policy, "sip:a@example.org"), PolicyDecision::kReject);
  EXPECT_EQ(DecideFor(policy, "sip:a@example.net"), PolicyDecision::kReject);
  EXPECT_EQ(DecideFor(policy, "sip:a@pbx.lab.example.com"), PolicyDecision::kReject);  // deny wins
  // Domain lists say nothing about IP literals.
  EXPECT_EQ(DecideFor(policy, "sip:a@192.0.2.1"), PolicyDecision::kAccept);
  EXPECT_TRUE(policy.DomainAllowed("x.example.com"));
  EXPECT_FALSE(policy.DomainAllowed("x.example.org"));
}

TEST(ConfiguredRedirectPolicyTest, MaddrIsCheckedLikeTheHost) {
  RedirectSecurity security;
  security.deny_cidrs = proto::CidrList({ParsedCidr("10.0.0.0/8")});
  security.deny_domains = {"evil.example"};
  ConfiguredRedirectPolicy policy(std::move(security), false);
  EXPECT_EQ(DecideFor(policy, "sip:a@good.example;maddr=10.0.0.1"), PolicyDecision::kReject);
  EXPECT_EQ(DecideFor(policy, "sip:a@good.example;maddr=relay.evil.example"),
            PolicyDecision::kReject);
  EXPECT_EQ(DecideFor(policy, "sip:a@good.example;maddr=[::ffff:10.0.0.1]"),
            PolicyDecision::kReject);
  EXPECT_EQ(DecideFor(policy, "sip:a@good.example;maddr=192.0.2.1"), PolicyDecision::kAccept);
}

TEST(ConfiguredRedirectPolicyTest, RefusesAddressesItCannotRead) {
  // "010.0.0.1" parses as a URI host but means 8.0.0.1 to some stacks: never vetted, refused.
  ConfiguredRedirectPolicy policy(RedirectSecurity{}, false);
  EXPECT_EQ(DecideFor(policy, "sip:a@010.0.0.1"), PolicyDecision::kReject);
}

TEST(ConfiguredRedirectPolicyTest, ReplaceToTurnsAcceptIntoAcceptReplace) {
  RedirectSecurity security;
  security.deny_domains = {"evil.example"};
  ConfiguredRedirectPolicy policy(std::move(security), true);
  EXPECT_TRUE(policy.replace_to());
  EXPECT_EQ(DecideFor(policy, "sip:a@example.com"), PolicyDecision::kAcceptReplace);
  EXPECT_EQ(DecideFor(policy, "sip:a@evil.example"), PolicyDecision::kReject);
}

// ---------------------------------------------------------------------------------------
// End to end: targets learned from a parsed 3xx, decided through the interface.

TEST(ConfiguredRedirectPolicyTest, DecidesTheTargetsOfA3xx) {
  const std::string bytes =
      "SIP/2.0 302 Moved Temporarily\r\n"
      "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds\r\n"
      "From: <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
      "To: <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n"
      "Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
      "CSeq: 314159 INVITE\r\n"
      "Contact: <sip:bob@pbx.example.com>;q=0.9, <sip:bob@10.0.0.7>;q=0.8\r\n"
      "Contact: <tel:+15551234>;q=0.7, \"Bob\" <sips:bob@evil.example?Subject=x>;q=0.6\r\n"
      "Content-Length: 0\r\n"
      "\r\n";
  auto message = std::make_unique<proto::SipMessage>();
  ASSERT_TRUE(proto::SipParser().Parse(bytes, proto::Framing::kDatagram, message.get()).ok());
  TargetSet set;
  ASSERT_TRUE(set.SetOriginal("sip:bob@biloxi.example.com"));
  ASSERT_EQ(set.Merge(*message, 0, 1).added, 4);

  RedirectSecurity security;
  security.deny_cidrs = proto::CidrList({ParsedCidr("10.0.0.0/8")});
  security.deny_domains = {"evil.example"};
  security.allowed_schemes = {"sip", "sips", "tel"};
  std::unique_ptr<RedirectPolicy> policy =
      std::make_unique<ConfiguredRedirectPolicy>(std::move(security), false);

  std::vector<PolicyDecision> decisions;
  while (Target* target = set.NextPending()) decisions.push_back(policy->Decide(*target, 7));
  EXPECT_THAT(decisions, ElementsAre(PolicyDecision::kAccept, PolicyDecision::kReject,
                                     PolicyDecision::kAccept, PolicyDecision::kReject));
}

TEST(PolicyDecisionNameTest, NamesEveryDecision) {
  EXPECT_EQ(PolicyDecisionName(PolicyDecision::kAccept), "accept");
  EXPECT_EQ(PolicyDecisionName(PolicyDecision::kAcceptReplace), "accept-replace");
  EXPECT_EQ(PolicyDecisionName(PolicyDecision::kReject), "reject");
  EXPECT_EQ(PolicyDecisionName(PolicyDecision::kStop), "stop");
  EXPECT_EQ(PolicyDecisionName(PolicyDecision::kPending), "pending");
}

}  // namespace
}  // namespace b2bua
