// Tests b2bua/target_set.{h,cc}: ordering, merging, loop detection and limits of the redirect
// targets of one call. The 3xx responses are written as text and parsed by the real parser.

#include "b2bua/target_set.h"

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/b2bua/parsed_response.h"
#include "proto/sip_message.h"
#include "proto/sip_parser.h"

namespace b2bua {
namespace {

using ::testing::ElementsAre;

constexpr std::string_view kOriginal = "sip:bob@biloxi.example.com";

using Response = test::ParsedResponse;

// The Request-URIs of the targets NextPending() hands out, until it returns nullptr.
std::vector<std::string> Drain(TargetSet& set) {
  std::vector<std::string> uris;
  while (Target* target = set.NextPending()) uris.push_back(target->request_uri);
  return uris;
}

std::vector<std::string> PendingUris(const TargetSet& set) {
  std::vector<std::string> uris;
  for (uint16_t index : set.pending_order()) uris.push_back(set.at(index).request_uri);
  return uris;
}

// ---------------------------------------------------------------------------------------
// Ordering.

TEST(TargetSetTest, OrdersByQDescending) {
  TargetSet set;
  ASSERT_TRUE(set.SetOriginal(kOriginal));
  Response r({"Contact: <sip:low@x.example>;q=0.2, <sip:high@x.example>;q=1.0, "
              "<sip:mid@x.example>;q=0.5"});
  MergeResult result = set.Merge(r.msg(), 0, 1);
  EXPECT_EQ(result.added, 3);
  EXPECT_THAT(Drain(set),
              ElementsAre("sip:high@x.example", "sip:mid@x.example", "sip:low@x.example"));
}

TEST(TargetSetTest, AbsentQIsOneAndTiesKeepArrivalOrder) {
  TargetSet set;
  ASSERT_TRUE(set.SetOriginal(kOriginal));
  Response r({"Contact: <sip:a@x.example>;q=0.7", "Contact: <sip:b@x.example>;q=1.0",
              "Contact: <sip:c@x.example>", "Contact: <sip:d@x.example>;q=1"});
  set.Merge(r.msg(), 0, 1);
  EXPECT_EQ(set.at(3).request_uri, "sip:c@x.example");
  EXPECT_EQ(set.at(3).q_millis, 1000);
  EXPECT_THAT(Drain(set), ElementsAre("sip:b@x.example", "sip:c@x.example", "sip:d@x.example",
                                      "sip:a@x.example"));
}

TEST(TargetSetTest, ExplicitQZeroComesLast) {
  TargetSet set;
  ASSERT_TRUE(set.SetOriginal(kOriginal));
  Response r({"Contact: <sip:zero1@x.example>;q=0, <sip:small@x.example>;q=0.001, "
              "<sip:zero2@x.example>;q=0.000, <sip:plain@x.example>"});
  set.Merge(r.msg(), 0, 1);
  std::vector<uint16_t> q;
  for (const Target& target : set) q.push_back(target.q_millis);
  EXPECT_THAT(q, ElementsAre(1000, 0, 1, 0, 1000));  // original, then header order
  EXPECT_THAT(Drain(set), ElementsAre("sip:plain@x.example", "sip:small@x.example",
                                      "sip:zero1@x.example", "sip:zero2@x.example"));
}

TEST(TargetSetTest, LaterRedirectMergesAmongPendingByTheSameRule) {
  TargetSet set;
  ASSERT_TRUE(set.SetOriginal(kOriginal));
  Response first({"Contact: <sip:a@x.example>;q=0.9, <sip:b@x.example>;q=0.5, "
                  "<sip:c@x.example>;q=0.3"});
  set.Merge(first.msg(), 0, 1);
  Target* a = set.NextPending();
  ASSERT_NE(a, nullptr);
  ASSERT_EQ(a->request_uri, "sip:a@x.example");
  const uint16_t a_index = a->index;

  // a answers 301 with targets that slot in between and after the pending ones; e ties with b
  // and came later, so it goes after b.
  Response second({"Contact: <sip:e@y.example>;q=0.5, <sip:f@y.example>;q=0.4",
                   "Contact: <sip:g@y.example>"},
                  301);
  MergeResult result = set.Merge(second.msg(), a_index, 2);
  EXPECT_EQ(result.added, 3);
  EXPECT_THAT(PendingUris(set), ElementsAre("sip:g@y.example", "sip:b@x.example",
                                            "sip:e@y.example", "sip:f@y.example",
                                            "sip:c@x.example"));

  const Target& redirector = set.at(a_index);
  EXPECT_EQ(redirector.state, TargetState::kRedirected);
  EXPECT_EQ(redirector.status, 301);
  for (const Target& target : set) {
    if (target.request_uri.find("y.example") == std::string::npos) continue;
    EXPECT_EQ(target.depth, 2);
    EXPECT_EQ(target.from_target, a_index);
    EXPECT_EQ(target.redirect_status, 301);
    EXPECT_FALSE(target.is_original());
  }
  EXPECT_EQ(set.at(a_index).depth, 1);
  EXPECT_EQ(set.at(a_index).from_target, 0);
  EXPECT_EQ(set.at(a_index).redirect_status, 302);

  // The attempt order and the pending order together are the whole search.
  EXPECT_THAT(std::vector<uint16_t>(set.attempt_order().begin(), set.attempt_order().end()),
              ElementsAre(0, a_index));
}

// ---------------------------------------------------------------------------------------
// Loops.

TEST(TargetSetTest, OriginalCountsAsTried) {
  TargetSet set;
  ASSERT_TRUE(set.SetOriginal(kOriginal));
  EXPECT_EQ(set.size(), 1u);
  EXPECT_EQ(set.tried_count(), 1u);
  EXPECT_EQ(set.pending_count(), 0u);
  EXPECT_TRUE(set.at(0).is_original());
  EXPECT_EQ(set.at(0).state, TargetState::kTrying);
  EXPECT_EQ(set.at(0).depth, 0);
  EXPECT_EQ(set.at(0).from_target, -1);
  EXPECT_EQ(set.NextPending(), nullptr);
  EXPECT_FALSE(set.exhausted_by_limit());

  // The same URI spelled differently (host case, explicit-but-ignorable parameter) is the
  // original again: a loop, even when the 3xx did not come from the original.
  Response r({"Contact: <sip:bob@BILOXI.example.com;lr>, <sip:carol@biloxi.example.com>"});
  MergeResult result = set.Merge(r.msg(), -1, 1);
  EXPECT_EQ(result.added, 1);
  EXPECT_EQ(result.duplicates, 1);
  EXPECT_EQ(result.loops, 1);
  EXPECT_EQ(set.at(0).state, TargetState::kTrying);  // not the redirector: unchanged
}

TEST(TargetSetTest, RejectsAnUnparsableOriginal) {
  TargetSet set;
  EXPECT_FALSE(set.SetOriginal("not a uri"));
  EXPECT_EQ(set.size(), 0u);
}

TEST(TargetSetTest, DuplicatesOfTriedAndPendingTargetsAreLoops) {
  TargetSet set;
  ASSERT_TRUE(set.SetOriginal(kOriginal));
  Response first({"Contact: <sip:a@x.example>;q=0.9, <sip:b@x.example>;q=0.5"});
  set.Merge(first.msg(), 0, 1);
  Target* a = set.NextPending();
  ASSERT_NE(a, nullptr);
  const uint16_t a_index = a->index;
  set.MarkResult(a_index, TargetState::kFailed, 486);

  // From b-to-be: lists the tried a, the pending b, the original, one new target twice.
  Response second({"Contact: <sip:a@X.EXAMPLE>, <sip:b@x.example;foo=bar>;q=1",
                   "Contact: <sip:bob@biloxi.example.com>, <sip:n@y.example>, <sip:n@y.example>"});
  MergeResult result = set.Merge(second.msg(), -1, 2);
  EXPECT_EQ(result.added, 1);
  EXPECT_EQ(result.duplicates, 4);
  EXPECT_EQ(result.loops, 4);
  EXPECT_EQ(result.to_sender, 0);
  EXPECT_EQ(set.size(), 4u);
  EXPECT_EQ(set.at(a_index).state, TargetState::kFailed);
  EXPECT_EQ(set.at(a_index).status, 486);
}

TEST(TargetSetTest, GruusOfOneAorAreDistinctTargets) {
  // Same key, not equivalent (;gr in both, different values): the key lookup is confirmed.
  TargetSet set;
  ASSERT_TRUE(set.SetOriginal(kOriginal));
  Response r({"Contact: <sip:bob@biloxi.example.com;gr=urn:uuid:1>, "
              "<sip:bob@biloxi.example.com;gr=urn:uuid:2>"});
  MergeResult result = set.Merge(r.msg(), -1, 1);
  // Each GRUU is equivalent to the original (no gr there), so both are loops of the original.
  EXPECT_EQ(result.duplicates, 2);

  TargetSet other;
  ASSERT_TRUE(other.SetOriginal("sip:bob@biloxi.example.com;gr=urn:uuid:0"));
  MergeResult distinct = other.Merge(r.msg(), -1, 1);
  EXPECT_EQ(distinct.added, 2);
  EXPECT_EQ(other.at(1).key, other.at(2).key);
}

TEST(TargetSetTest, RedirectToTheRedirectingTargetIsALoop) {
  TargetSet set;
  ASSERT_TRUE(set.SetOriginal(kOriginal));
  Response first({"Contact: <sip:a@x.example>"});
  set.Merge(first.msg(), 0, 1);
  Target* a = set.NextPending();
  ASSERT_NE(a, nullptr);
  const uint16_t a_index = a->index;
  Response second({"Contact: <sip:a@x.example;transport=udp>, <sip:a@x.example>"});
  MergeResult result = set.Merge(second.msg(), a_index, 2);
  // transport is significant: with it, it is a different target.
  EXPECT_EQ(result.added, 1);
  EXPECT_EQ(result.to_sender, 1);
  EXPECT_EQ(result.loops, 1);
  EXPECT_EQ(result.duplicates, 0);
}

TEST(TargetSetTest, RedirectToOurselvesIsALoop) {
  TargetSet set;
  ASSERT_TRUE(set.SetOriginal(kOriginal));
  set.AddSelf("B2BUA.example.net", 5060);
  set.AddSelf("192.0.2.10", 5080);
  set.AddSelf("[2001:db8::10]", 0);
  set.AddSelf("tls.example.net", 5061);
  Response r({
      "Contact: <sip:x@b2bua.example.net>",                    // self: default port 5060
      "Contact: <sip:x@b2bua.example.net:5060;transport=tcp>", // self
      "Contact: <sip:y@b2bua.example.net:5070>",               // other port
      "Contact: <sip:x@192.0.2.10:5080>",                      // self
      "Contact: <sip:y@192.0.2.10>",                           // 5060: not ours
      "Contact: <sip:x@[2001:DB8:0::10]:7000>",                // self: any port
      "Contact: <sip:x@elsewhere.example:5080;maddr=192.0.2.10>",  // maddr sends it to us
      "Contact: <sips:x@tls.example.net>",                     // self: sips defaults to 5061
      "Contact: <sip:x@tls.example.net;transport=tls>",        // self: so does transport=tls
      "Contact: <sip:y@tls.example.net>",                      // 5060: not ours
  });
  MergeResult result = set.Merge(r.msg(), 0, 1);
  EXPECT_EQ(result.to_self, 7);
  EXPECT_EQ(result.loops, 7);
  EXPECT_EQ(result.added, 3);
  EXPECT_THAT(PendingUris(set), ElementsAre("sip:y@b2bua.example.net:5070", "sip:y@192.0.2.10",
                                            "sip:y@tls.example.net"));
}

// ---------------------------------------------------------------------------------------
// What is skipped.

TEST(TargetSetTest, SkipsDefectiveContactsAndStar) {
  TargetSet set;
  ASSERT_TRUE(set.SetOriginal(kOriginal));
  Response r({"Contact: <sip:badq@x.example>;q=2.0, <sip:good@x.example>;q=0.5, "
              "<sip:badexp@x.example>;expires=soon"});
  MergeResult result = set.Merge(r.msg(), 0, 1);
  EXPECT_EQ(result.defective, 2);
  EXPECT_EQ(result.added, 1);
  EXPECT_THAT(PendingUris(set), ElementsAre("sip:good@x.example"));

  Response star({"Contact: *"});
  MergeResult star_result = set.Merge(star.msg(), 0, 1);
  EXPECT_TRUE(star_result.star);
  EXPECT_EQ(star_result.added, 0);
}

TEST(TargetSetTest, IgnoresResponsesThatAreNot3xx) {
  TargetSet set;
  ASSERT_TRUE(set.SetOriginal(kOriginal));
  Response busy({"Contact: <sip:a@x.example>"}, 486);
  MergeResult result = set.Merge(busy.msg(), 0, 1);
  EXPECT_TRUE(result.not_redirect);
  EXPECT_EQ(set.size(), 1u);
  EXPECT_EQ(set.at(0).state, TargetState::kTrying);
}

// ---------------------------------------------------------------------------------------
// Limits.

TEST(TargetSetTest, MaxTargetsStopsNextPending) {
  TargetSet set(TargetSetLimits{.max_targets = 2});
  ASSERT_TRUE(set.SetOriginal(kOriginal));
  Response r({"Contact: <sip:a@x.example>, <sip:b@x.example>, <sip:c@x.example>"});
  set.Merge(r.msg(), 0, 1);
  EXPECT_NE(set.NextPending(), nullptr);
  EXPECT_FALSE(set.exhausted_by_limit());
  EXPECT_NE(set.NextPending(), nullptr);
  EXPECT_EQ(set.NextPending(), nullptr);
  EXPECT_TRUE(set.exhausted_by_limit());
  EXPECT_EQ(set.redirects_tried(), 2u);
  EXPECT_EQ(set.tried_count(), 3u);  // the original counts as tried, not against the limit
  EXPECT_EQ(set.pending_count(), 1u);
}

TEST(TargetSetTest, MaxEntriesKeepsTheBestContacts) {
  TargetSet set(TargetSetLimits{.max_targets = 8, .max_entries = 3});
  ASSERT_TRUE(set.SetOriginal(kOriginal));
  Response r({"Contact: <sip:a@x.example>;q=0.1, <sip:b@x.example>;q=0.9, "
              "<sip:c@x.example>;q=0.5"});
  MergeResult result = set.Merge(r.msg(), 0, 1);
  EXPECT_EQ(result.added, 2);
  EXPECT_EQ(result.over_capacity, 1);
  EXPECT_THAT(Drain(set), ElementsAre("sip:b@x.example", "sip:c@x.example"));
}

// ---------------------------------------------------------------------------------------
// What is kept.

TEST(TargetSetTest, KeepsTheContactWholeByteForByte) {
  constexpr std::string_view kContact =
      R"("Alice" <sip:alice@a.example;transport=udp?Subject=hi>;q=0.5;expires=60;foo=bar)";
  TargetSet set;
  ASSERT_TRUE(set.SetOriginal(kOriginal));
  auto r = std::make_unique<Response>(std::vector<std::string>{
      "Contact: " + std::string(kContact),
      "m:  Bob <sip:bob@b.example>;Unknown=\"x, y\" ,<sip:carol@c.example>;q=0.1"});
  MergeResult result = set.Merge(r->msg(), 0, 1);
  ASSERT_EQ(result.added, 3);
  // Everything is owned: the 3xx buffer may be reused at once.
  r->Scribble();
  r.reset();

  const Target& alice = set.at(1);
  EXPECT_EQ(alice.contact, kContact);
  EXPECT_EQ(alice.request_uri, "sip:alice@a.example;transport=udp");
  EXPECT_EQ(alice.uri_headers, "Subject=hi");
  EXPECT_EQ(alice.full_uri(), "sip:alice@a.example;transport=udp?Subject=hi");
  EXPECT_EQ(alice.q_millis, 500);
  EXPECT_EQ(alice.expires, 60);
  EXPECT_EQ(alice.key, "sip:alice@a.example;transport=udp?subject=hi");
  EXPECT_EQ(alice.redirect_status, 302);
  EXPECT_EQ(alice.index, 1);

  const Target& bob = set.at(2);
  EXPECT_EQ(bob.contact, "Bob <sip:bob@b.example>;Unknown=\"x, y\"");
  EXPECT_EQ(bob.request_uri, "sip:bob@b.example");
  EXPECT_TRUE(bob.uri_headers.empty());
  EXPECT_EQ(bob.expires, -1);
  EXPECT_EQ(set.at(3).contact, "<sip:carol@c.example>;q=0.1");

  // Header lines for a relay mode: verbatim, one per line, lists unsplit.
  EXPECT_THAT(set.last_contact_headers(),
              ElementsAre(std::string(kContact),
                          "Bob <sip:bob@b.example>;Unknown=\"x, y\" ,<sip:carol@c.example>;q=0.1"));
  proto::SipUri uri;
  ASSERT_EQ(alice.ParseRequestUri(&uri), proto::UriError::kNone);
  EXPECT_EQ(uri.transport, "udp");
}

TEST(TargetSetTest, ContactsVerbatimPointsIntoTheMessage) {
  Response r({"Contact: <sip:a@x.example>;q=0.5, <sip:b@x.example>", "Contact: <sip:c@x.example>"});
  std::vector<std::string_view> values = TargetSet::ContactsVerbatim(r.msg());
  EXPECT_THAT(values, ElementsAre("<sip:a@x.example>;q=0.5, <sip:b@x.example>",
                                  "<sip:c@x.example>"));
  ASSERT_EQ(values.size(), 2u);
  EXPECT_GE(values[0].data(), r.msg().raw().data());
  EXPECT_LT(values[0].data(), r.msg().raw().data() + r.msg().raw().size());
}

// ---------------------------------------------------------------------------------------
// Results.

TEST(TargetSetTest, MarkResultRecordsOutcomes) {
  TargetSet set;
  ASSERT_TRUE(set.SetOriginal(kOriginal));
  Response r({"Contact: <sip:a@x.example>, <sip:b@x.example>, <sip:c@x.example>"});
  set.Merge(r.msg(), 0, 1);
  EXPECT_EQ(set.at(0).state, TargetState::kRedirected);
  EXPECT_EQ(set.at(0).status, 302);

  // The policy refuses b before it is tried: it leaves the pending list.
  EXPECT_TRUE(set.MarkResult(2, TargetState::kRefused));
  EXPECT_THAT(PendingUris(set), ElementsAre("sip:a@x.example", "sip:c@x.example"));
  Target* a = set.NextPending();
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->state, TargetState::kTrying);
  EXPECT_TRUE(set.MarkResult(a->index, TargetState::kTimedOut, 408));
  EXPECT_EQ(set.at(1).state, TargetState::kTimedOut);
  EXPECT_EQ(set.at(1).status, 408);

  EXPECT_FALSE(set.MarkResult(99, TargetState::kFailed, 500));
  EXPECT_FALSE(set.MarkResult(3, TargetState::kPending));
  EXPECT_EQ(set.at(3).state, TargetState::kPending);
  EXPECT_THAT(std::vector<uint16_t>(set.attempt_order().begin(), set.attempt_order().end()),
              ElementsAre(0, 2, 1));
  EXPECT_EQ(TargetStateName(TargetState::kTimedOut), "timed-out");
}

TEST(TargetSetTest, SetOriginalResetsTheSetButKeepsSelves) {
  TargetSet set;
  set.AddSelf("b2bua.example.net", 5060);
  ASSERT_TRUE(set.SetOriginal(kOriginal));
  Response r({"Contact: <sip:a@x.example>"});
  set.Merge(r.msg(), 0, 1);
  ASSERT_TRUE(set.SetOriginal("sip:carol@chicago.example.com"));
  EXPECT_EQ(set.size(), 1u);
  EXPECT_EQ(set.pending_count(), 0u);
  EXPECT_TRUE(set.last_contact_headers().empty());
  Response self({"Contact: <sip:x@b2bua.example.net>"});
  EXPECT_EQ(set.Merge(self.msg(), 0, 1).to_self, 1);
}

}  // namespace
}  // namespace b2bua
