// Tests b2bua/call_record.{h,cc}: the call record line of a redirected call.

#include "b2bua/call_record.h"

#include <chrono>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/b2bua/parsed_response.h"

namespace b2bua {
namespace {

using namespace std::chrono_literals;

TEST(CallRecordTest, ListsEveryHopWithItsOutcomeAndTimes) {
  TargetSearch search(SearchSettings{}, TargetSetLimits{});
  ASSERT_TRUE(search.Begin("sip:bob@biloxi.example.com"));
  test::ParsedResponse redirect({"Contact: <sip:a@x.example>;q=0.5, <sip:b@x.example>"});
  SearchStep step = search.OnRedirect(0, redirect.msg(), nullptr);
  ASSERT_EQ(step.action, SearchStep::Action::kStart);
  ASSERT_EQ(step.start.size(), 1u);
  const uint16_t b = step.start[0];
  step = search.OnFinal(b, 486);
  ASSERT_EQ(step.action, SearchStep::Action::kStart);
  const uint16_t a = step.start[0];
  search.OnAnswered(a, 200);

  const proto::TimePoint call_started = proto::TimePoint{} + 10s;
  const std::vector<BranchRecord> branches = {
      {b, call_started + 100ms, call_started + 350ms},
      {a, call_started + 350ms, call_started + 1350ms},
  };
  const std::string fields = RedirectRecordFields("sip:bob@biloxi.example.com", search, 0,
                                                  branches, call_started);
  EXPECT_EQ(fields,
            " request_uri=\"sip:bob@biloxi.example.com\" depth=1 loops=0 refused=0 hops=["
            "{target=\"sip:b@x.example\" q=1.000 state=failed status=486 answer_ms=250 "
            "start_ms=100},"
            "{target=\"sip:a@x.example\" q=0.500 state=answered status=200 answer_ms=1000 "
            "start_ms=350}]");
  EXPECT_EQ(CallRecordLine("c1@example", "answered", 8123ms, fields),
            "call-record call_id=\"c1@example\" outcome=answered duration_ms=8123" + fields);
}

TEST(CallRecordTest, ABranchStillRingingHasNoAnswerTimeAndAnUnsentTargetNoTimes) {
  TargetSearch search(SearchSettings{}, TargetSetLimits{});
  ASSERT_TRUE(search.Begin("sip:bob@biloxi.example.com"));
  test::ParsedResponse redirect({"Contact: <sip:a@x.example>, <sip:b@x.example>;q=0.1"});
  SearchStep step = search.OnRedirect(0, redirect.msg(), nullptr);
  const uint16_t a = step.start[0];
  step = search.OnNotSent(a, TargetState::kRefused, false);
  const uint16_t b = step.start[0];
  const proto::TimePoint started{};
  const std::vector<BranchRecord> branches = {{b, started + 2s, {}}};
  const std::string fields =
      RedirectRecordFields("sip:bob@biloxi.example.com", search, 1, branches, started);
  EXPECT_THAT(fields, ::testing::HasSubstr(
                          "{target=\"sip:a@x.example\" q=1.000 state=refused status=0}"));
  EXPECT_THAT(fields, ::testing::HasSubstr(
                          "{target=\"sip:b@x.example\" q=0.100 state=trying status=0 "
                          "start_ms=2000}"));
  EXPECT_THAT(fields, ::testing::HasSubstr("refused=1"));
}

}  // namespace
}  // namespace b2bua
