// Tests b2bua/target_search.{h,cc}: the decisions of the redirect search (serial and
// parallel), early media ownership and the ranking of final answers. Each scenario is a
// table of events and the SearchStep expected after each; 3xx responses are written as
// text and parsed by the real parser, as in target_set_test.cc.

#include "b2bua/target_search.h"

#include <cstdint>
#include <iterator>
#include <memory>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "b2bua/redirect_settings.h"
#include "b2bua/status_code_set.h"
#include "b2bua/target_set.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/b2bua/parsed_response.h"
#include "proto/sip_message.h"
#include "proto/sip_parser.h"

namespace b2bua {

// Readable failure messages. Internal linkage: found by ADL, clash with no other test.
static void PrintTo(SearchStep::Action action, std::ostream* os) {
  switch (action) {
    case SearchStep::Action::kWait: *os << "kWait"; return;
    case SearchStep::Action::kStart: *os << "kStart"; return;
    case SearchStep::Action::kAnswer: *os << "kAnswer"; return;
    case SearchStep::Action::kRelayResponse: *os << "kRelayResponse"; return;
    case SearchStep::Action::kFinish: *os << "kFinish"; return;
  }
  *os << "Action(" << static_cast<int>(action) << ")";
}

static void PrintTo(TargetState state, std::ostream* os) { *os << TargetStateName(state); }

static void PrintTo(ProvisionalRelay relay, std::ostream* os) {
  *os << (relay == ProvisionalRelay::kRelay ? "kRelay" : "kRelayWithoutBody");
}

namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::IsEmpty;

constexpr auto kWait = SearchStep::Action::kWait;
constexpr auto kStart = SearchStep::Action::kStart;
constexpr auto kAnswer = SearchStep::Action::kAnswer;
constexpr auto kRelayResponse = SearchStep::Action::kRelayResponse;
constexpr auto kFinish = SearchStep::Action::kFinish;

constexpr std::string_view kOriginal = "sip:bob@biloxi.example.com";
// Targets are named in the tables: "orig" is target 0, "a" is sip:a@x.example.
constexpr std::string_view kOrig = "orig";
constexpr std::string_view kDomain = "@x.example";

std::string UriOf(std::string_view name) {
  return "sip:" + std::string(name) + std::string(kDomain);
}

using Response = test::ParsedResponse;

// One Contact header line from short items: "a;q=0.5" is <sip:a@x.example>;q=0.5.
std::string ContactLine(const std::vector<std::string>& items) {
  std::string line = "Contact: ";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) line += ", ";
    const size_t semi = items[i].find(';');
    const std::string name = items[i].substr(0, semi);
    line.append("<").append(UriOf(name)).append(">");
    if (semi != std::string::npos) line += items[i].substr(semi);
  }
  return line;
}

// Index of the target called `name`; an index no target has when there is none.
uint16_t IndexOf(const TargetSearch& search, std::string_view name) {
  if (name == kOrig) return 0;
  const std::string uri = UriOf(name);
  for (const Target& target : search.targets())
    if (target.request_uri == uri) return target.index;
  return 9999;
}

std::string NameOf(const TargetSearch& search, uint16_t index) {
  // Appends rather than operator+: g++ 12 warns falsely (-Wrestrict) on "x" + string.
  if (index >= search.targets().size()) return std::string("#").append(std::to_string(index));
  if (index == 0) return std::string(kOrig);
  std::string_view uri = search.targets().at(index).request_uri;
  if (uri.starts_with("sip:") && uri.ends_with(kDomain)) {
    uri.remove_prefix(4);
    uri.remove_suffix(kDomain.size());
  }
  return std::string(uri);
}

std::vector<std::string> Names(const TargetSearch& search, const TargetIndices& indices) {
  std::vector<std::string> names;
  for (uint16_t index : indices) names.push_back(NameOf(search, index));
  return names;
}

std::vector<std::string> PendingNames(const TargetSearch& search) {
  std::vector<std::string> names;
  for (uint16_t index : search.targets().pending_order()) names.push_back(NameOf(search, index));
  return names;
}

TargetState StateOf(const TargetSearch& search, std::string_view name) {
  const uint16_t index = IndexOf(search, name);
  EXPECT_LT(index, search.targets().size()) << "no target " << name;
  if (index >= search.targets().size()) return TargetState::kPending;
  return search.targets().at(index).state;
}

uint16_t StatusOf(const TargetSearch& search, std::string_view name) {
  const uint16_t index = IndexOf(search, name);
  if (index >= search.targets().size()) return 0;
  return search.targets().at(index).status;
}

// ---------------------------------------------------------------------------------------
// Events and the table runner.

struct Event {
  enum class Kind { kAnswered, kFinal, kTimeout, kRedirect, kNotSent, kCallerGaveUp, kNext };
  Kind kind = Kind::kNext;
  std::string target;
  int status = 0;
  std::vector<std::string> contact_lines;  // kRedirect
  TargetState state = TargetState::kRefused;  // kNotSent
  bool stop = false;                          // kNotSent
};

Event MakeEvent(Event::Kind kind, std::string target, int status = 0) {
  Event event;
  event.kind = kind;
  event.target = std::move(target);
  event.status = status;
  return event;
}
Event Answered(std::string target, int status = 200) {
  return MakeEvent(Event::Kind::kAnswered, std::move(target), status);
}
Event Final(std::string target, int status) {
  return MakeEvent(Event::Kind::kFinal, std::move(target), status);
}
Event Timeout(std::string target) { return MakeEvent(Event::Kind::kTimeout, std::move(target)); }
/// A 3xx from `target` with one Contact header line made of `items` (see ContactLine).
Event Redirect(std::string target, const std::vector<std::string>& items, int status = 302) {
  Event event = MakeEvent(Event::Kind::kRedirect, std::move(target), status);
  event.contact_lines.push_back(ContactLine(items));
  return event;
}
Event NotSent(std::string target, TargetState state = TargetState::kRefused, bool stop = false) {
  Event event = MakeEvent(Event::Kind::kNotSent, std::move(target));
  event.state = state;
  event.stop = stop;
  return event;
}
Event CallerGaveUp() { return MakeEvent(Event::Kind::kCallerGaveUp, ""); }
Event Next() { return MakeEvent(Event::Kind::kNext, ""); }

std::string Describe(const Event& event) {
  switch (event.kind) {
    case Event::Kind::kAnswered:
      return "OnAnswered(" + event.target + ", " + std::to_string(event.status) + ")";
    case Event::Kind::kFinal:
      return "OnFinal(" + event.target + ", " + std::to_string(event.status) + ")";
    case Event::Kind::kTimeout: return "OnTimeout(" + event.target + ")";
    case Event::Kind::kRedirect:
      return "OnRedirect(" + event.target + ", " + std::to_string(event.status) + " " +
             (event.contact_lines.empty() ? "" : event.contact_lines[0]) + ")";
    case Event::Kind::kNotSent:
      return "OnNotSent(" + event.target + ", " + std::string(TargetStateName(event.state)) +
             (event.stop ? ", stop)" : ")");
    case Event::Kind::kCallerGaveUp: return "OnCallerGaveUp()";
    case Event::Kind::kNext: return "Next()";
  }
  return "?";
}

SearchStep Apply(TargetSearch& search, const Event& event, MergeResult* merged = nullptr) {
  const uint16_t target = IndexOf(search, event.target);
  switch (event.kind) {
    case Event::Kind::kAnswered: return search.OnAnswered(target, event.status);
    case Event::Kind::kFinal: return search.OnFinal(target, event.status);
    case Event::Kind::kTimeout: return search.OnTimeout(target);
    case Event::Kind::kRedirect: {
      Response response(event.contact_lines, event.status);
      return search.OnRedirect(target, response.msg(), merged);
    }
    case Event::Kind::kNotSent: return search.OnNotSent(target, event.state, event.stop);
    case Event::Kind::kCallerGaveUp: return search.OnCallerGaveUp();
    case Event::Kind::kNext: return search.Next();
  }
  return {};
}

// The step a row expects; targets by name. A constructor, not an aggregate, so that rows
// may leave out the trailing fields without -Wmissing-field-initializers.
struct Expect {
  Expect(SearchStep::Action action, std::vector<std::string> start = {},
         std::vector<std::string> cancel = {}, bool new_best = false)
      : action(action), start(std::move(start)), cancel(std::move(cancel)), new_best(new_best) {}

  SearchStep::Action action;
  std::vector<std::string> start;
  std::vector<std::string> cancel;
  bool new_best;
};

struct Row {
  Event event;
  Expect expect;
};

// Applies each event and checks the step against the row, plus what every step must hold.
void RunTable(TargetSearch& search, const std::vector<Row>& rows) {
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& row = rows[i];
    SCOPED_TRACE(::testing::Message() << "row " << i << ": " << Describe(row.event));
    const SearchStep step = Apply(search, row.event);
    EXPECT_EQ(step.action, row.expect.action);
    EXPECT_THAT(Names(search, step.start), ElementsAreArray(row.expect.start));
    EXPECT_THAT(Names(search, step.cancel), ElementsAreArray(row.expect.cancel));
    EXPECT_EQ(step.new_best, row.expect.new_best);

    // Invariants of every step.
    if (step.action != kStart) {
      EXPECT_THAT(step.start, IsEmpty());
    }
    for (uint16_t index : step.start) {
      EXPECT_TRUE(search.IsLive(index)) << NameOf(search, index);
      EXPECT_EQ(search.targets().at(index).state, TargetState::kTrying) << NameOf(search, index);
    }
    for (uint16_t index : step.cancel) EXPECT_FALSE(search.IsLive(index)) << NameOf(search, index);
    if (step.action == kStart) {
      EXPECT_EQ(search.live_count(), step.start.size());
    }
    if (step.action == kAnswer || step.action == kRelayResponse || step.action == kFinish) {
      EXPECT_EQ(search.live_count(), 0u);
    }
  }
}

SearchSettings Parallel() {
  SearchSettings settings;
  settings.fork = RedirectFork::kParallelEqualQ;
  return settings;
}

SearchSettings WithTryNextOn(SearchSettings settings, StatusCodeSet try_next_on) {
  settings.try_next_on = try_next_on;
  return settings;
}

// A search begun on kOriginal.
TargetSearch Begun(const SearchSettings& settings = {}, TargetSetLimits limits = {}) {
  TargetSearch search(settings, limits);
  EXPECT_TRUE(search.Begin(kOriginal));
  return search;
}

// ---------------------------------------------------------------------------------------
// BetterFinal.

struct BetterFinalCase {
  int candidate;
  int best;
  bool better;
};

TEST(BetterFinalTest, Table) {
  const BetterFinalCase cases[] = {
      // Anything beats nothing.
      {486, 0, true}, {503, 0, true}, {600, 0, true}, {401, 0, true},
      // 6xx beats every other class, and the first 6xx stays.
      {600, 486, true}, {603, 401, true}, {604, 503, true}, {606, 500, true},
      {486, 600, false}, {401, 603, false}, {503, 600, false},
      {603, 600, false}, {600, 603, false},
      // Then the answers a caller can act on, over other 4xx and 5xx.
      {401, 486, true}, {407, 404, true}, {415, 500, true}, {420, 480, true}, {484, 503, true},
      {486, 401, false}, {404, 407, false}, {500, 415, false}, {503, 484, false},
      {407, 401, false}, {401, 407, false}, {484, 420, false},
      // Other 4xx over 5xx; equal ranks keep the first.
      {404, 500, true}, {486, 502, true}, {480, 503, true},
      {500, 404, false}, {503, 486, false},
      {404, 486, false}, {486, 404, false}, {403, 480, false},
      // 5xx over 503, which is last.
      {500, 503, true}, {502, 503, true}, {599, 503, true},
      {503, 500, false}, {503, 599, false}, {503, 503, false}, {500, 502, false},
  };
  for (const BetterFinalCase& c : cases) {
    EXPECT_EQ(BetterFinal(c.candidate, c.best), c.better)
        << "BetterFinal(" << c.candidate << ", " << c.best << ")";
  }
}

TEST(BetterFinalTest, NoCodeBeatsItself) {
  for (int status = 400; status <= 699; ++status)
    EXPECT_FALSE(BetterFinal(status, status)) << status;
}

TEST(BetterFinalTest, RanksAreATotalOrder) {
  // One code per rank, best first: each beats every later one and none beats an earlier one.
  const int ranked[] = {600, 401, 404, 500, 503};
  for (size_t i = 0; i < std::size(ranked); ++i) {
    for (size_t j = 0; j < std::size(ranked); ++j) {
      if (i == j) continue;
      EXPECT_EQ(BetterFinal(ranked[i], ranked[j]), i < j) << ranked[i] << " vs " << ranked[j];
    }
  }
}

// ---------------------------------------------------------------------------------------
// SearchSettings::From.

TEST(SearchSettingsTest, FromCopiesTheRedirectSettings) {
  RedirectSettings redirect;
  redirect.fork = RedirectFork::kParallelEqualQ;
  redirect.max_parallel = 3;
  redirect.max_depth = 2;
  redirect.early_media = EarlyMedia::kNone;
  redirect.try_next_on = StatusCodeSet::Codes({486, 503});
  const SearchSettings settings = SearchSettings::From(redirect);
  EXPECT_EQ(settings.fork, RedirectFork::kParallelEqualQ);
  EXPECT_EQ(settings.max_parallel, 3);
  EXPECT_EQ(settings.max_depth, 2);
  EXPECT_EQ(settings.early_media, EarlyMedia::kNone);
  EXPECT_EQ(settings.try_next_on, StatusCodeSet::Codes({486, 503}));
}

TEST(SearchSettingsTest, FromClampsMaxParallel) {
  RedirectSettings redirect;
  redirect.max_parallel = 0;
  EXPECT_EQ(SearchSettings::From(redirect).max_parallel, 1);
  redirect.max_parallel = -5;
  EXPECT_EQ(SearchSettings::From(redirect).max_parallel, 1);
  redirect.max_parallel = 100000;
  EXPECT_EQ(SearchSettings::From(redirect).max_parallel, 0xffff);
}

TEST(SearchSettingsTest, DefaultsAreSerialAndTryNextOn4xx5xx) {
  const SearchSettings settings;
  EXPECT_EQ(settings.fork, RedirectFork::kSerial);
  EXPECT_EQ(settings.early_media, EarlyMedia::kFirst);
  EXPECT_TRUE(settings.try_next_on.Contains(404));
  EXPECT_TRUE(settings.try_next_on.Contains(503));
  EXPECT_FALSE(settings.try_next_on.Contains(603));
}

// ---------------------------------------------------------------------------------------
// Begin.

TEST(TargetSearchTest, BeginMakesTheOriginalLive) {
  TargetSearch search;
  ASSERT_TRUE(search.Begin(kOriginal));
  EXPECT_TRUE(search.IsLive(0));
  EXPECT_EQ(search.live_count(), 1u);
  EXPECT_EQ(search.targets().size(), 1u);
  EXPECT_EQ(search.targets().at(0).request_uri, kOriginal);
  EXPECT_EQ(search.targets().at(0).state, TargetState::kTrying);
  EXPECT_EQ(search.max_depth_seen(), 0);
  EXPECT_EQ(search.loops(), 0);
  EXPECT_EQ(search.best_status(), 0);
  EXPECT_FALSE(search.depth_exceeded());
  EXPECT_FALSE(search.stopped());
  // The original is out: nothing else starts.
  EXPECT_EQ(search.Next().action, kWait);
}

TEST(TargetSearchTest, BeginRejectsAnUnparsableUri) {
  TargetSearch search;
  EXPECT_FALSE(search.Begin("not a uri"));
  EXPECT_EQ(search.live_count(), 0u);
  EXPECT_FALSE(search.IsLive(0));
  EXPECT_EQ(search.Next().action, kFinish);
}

TEST(TargetSearchTest, BeginStartsOver) {
  SearchSettings settings;
  settings.max_depth = 1;
  TargetSearch search = Begun(settings);
  RunTable(search, {
      {Redirect("orig", {"a", "a", "b"}), {kStart, {"a"}}},
      {Redirect("a", {"c"}), {kStart, {"b"}}},  // past max_depth
      {Final("b", 603), {kRelayResponse, {}, {}, true}},
  });
  ASSERT_TRUE(search.depth_exceeded());
  ASSERT_TRUE(search.stopped());
  ASSERT_EQ(search.loops(), 1);
  ASSERT_EQ(search.best_status(), 603);

  ASSERT_TRUE(search.Begin("sip:carol@chicago.example.com"));
  EXPECT_EQ(search.targets().size(), 1u);
  EXPECT_EQ(search.targets().at(0).request_uri, "sip:carol@chicago.example.com");
  EXPECT_TRUE(search.IsLive(0));
  EXPECT_EQ(search.live_count(), 1u);
  EXPECT_FALSE(search.depth_exceeded());
  EXPECT_FALSE(search.stopped());
  EXPECT_EQ(search.loops(), 0);
  EXPECT_EQ(search.best_status(), 0);
  EXPECT_EQ(search.max_depth_seen(), 0);
  RunTable(search, {
      {Redirect("orig", {"d"}), {kStart, {"d"}}},
      {Final("d", 486), {kFinish, {}, {}, true}},
  });
}

// ---------------------------------------------------------------------------------------
// Serial search (default settings).

TEST(TargetSearchSerialTest, TriesTargetsOneAtATimeInQOrder) {
  TargetSearch search = Begun();
  MergeResult merged;
  SearchStep step = Apply(search, Redirect("orig", {"c;q=0.2", "a;q=1.0", "b;q=0.5"}), &merged);
  EXPECT_EQ(merged.added, 3);
  EXPECT_EQ(step.action, kStart);
  EXPECT_THAT(Names(search, step.start), ElementsAre("a"));
  EXPECT_THAT(step.cancel, IsEmpty());
  EXPECT_FALSE(step.new_best);
  EXPECT_EQ(search.targets().at(0).state, TargetState::kRedirected);
  EXPECT_EQ(search.targets().at(0).status, 302);
  EXPECT_FALSE(search.IsLive(0));
  EXPECT_EQ(search.max_depth_seen(), 1);
  EXPECT_THAT(PendingNames(search), ElementsAre("b", "c"));

  RunTable(search, {
      {Final("a", 486), {kStart, {"b"}, {}, true}},
      {Timeout("b"), {kStart, {"c"}, {"b"}}},
      {Answered("c"), {kAnswer}},
      {Next(), {kFinish}},
  });
  EXPECT_EQ(StateOf(search, "a"), TargetState::kFailed);
  EXPECT_EQ(StatusOf(search, "a"), 486);
  EXPECT_EQ(StateOf(search, "b"), TargetState::kTimedOut);
  EXPECT_EQ(StatusOf(search, "b"), 408);
  EXPECT_EQ(StateOf(search, "c"), TargetState::kAnswered);
  EXPECT_EQ(StatusOf(search, "c"), 200);
  EXPECT_EQ(search.best_status(), 486);
  EXPECT_TRUE(search.stopped());
  const auto order = search.targets().attempt_order();
  EXPECT_THAT(std::vector<uint16_t>(order.begin(), order.end()),
              ElementsAre(0, IndexOf(search, "a"), IndexOf(search, "b"), IndexOf(search, "c")));
}

TEST(TargetSearchSerialTest, ExhaustingTheTargetsFinishes) {
  TargetSearch search = Begun();
  RunTable(search, {
      {Redirect("orig", {"a", "b;q=0.5"}), {kStart, {"a"}}},
      {Final("a", 503), {kStart, {"b"}, {}, true}},
      {Final("b", 480), {kFinish, {}, {}, true}},
      {Next(), {kFinish}},
  });
  EXPECT_EQ(search.best_status(), 480);
  EXPECT_EQ(search.live_count(), 0u);
  EXPECT_FALSE(search.targets().exhausted_by_limit());
}

TEST(TargetSearchSerialTest, TimeoutOfTheLastTargetFinishesAndCancelsIt) {
  TargetSearch search = Begun();
  RunTable(search, {
      {Redirect("orig", {"a"}), {kStart, {"a"}}},
      {Timeout("a"), {kFinish, {}, {"a"}}},
  });
  // A timeout is not a final answer: there is no best failure to relay.
  EXPECT_EQ(search.best_status(), 0);
}

TEST(TargetSearchSerialTest, OriginalAnswersBeforeAnyRedirect) {
  {
    TargetSearch search = Begun();
    RunTable(search, {{Answered("orig", 200), {kAnswer}}});
    EXPECT_EQ(search.targets().at(0).state, TargetState::kAnswered);
  }
  {
    TargetSearch search = Begun();
    RunTable(search, {{Final("orig", 486), {kFinish, {}, {}, true}}});
    EXPECT_EQ(search.targets().at(0).state, TargetState::kFailed);
    EXPECT_EQ(search.best_status(), 486);
  }
  {
    TargetSearch search = Begun();
    RunTable(search, {{Timeout("orig"), {kFinish, {}, {"orig"}}}});
    EXPECT_EQ(search.targets().at(0).state, TargetState::kTimedOut);
  }
  {
    TargetSearch search = Begun();
    RunTable(search, {{Final("orig", 600), {kRelayResponse, {}, {}, true}}});
  }
}

TEST(TargetSearchSerialTest, FinalOutsideTryNextOnIsRelayedAtOnce) {
  TargetSearch search = Begun(WithTryNextOn({}, StatusCodeSet::Codes({486})));
  RunTable(search, {
      {Redirect("orig", {"a", "b", "c"}), {kStart, {"a"}}},
      {Final("a", 486), {kStart, {"b"}, {}, true}},
      // 404 ranks with 486, which came first: relayed, but not the best.
      {Final("b", 404), {kRelayResponse}},
      {Next(), {kFinish}},
  });
  EXPECT_TRUE(search.stopped());
  EXPECT_EQ(StateOf(search, "b"), TargetState::kFailed);
  EXPECT_EQ(StatusOf(search, "b"), 404);
  EXPECT_EQ(StateOf(search, "c"), TargetState::kPending);  // never tried
}

TEST(TargetSearchSerialTest, TryNextOnDecidesPerStatus) {
  // try_next_on {486, 5xx}: a table of one final each, from the first redirect target.
  struct Case {
    int status;
    SearchStep::Action action;
  };
  const Case cases[] = {
      {486, kStart}, {500, kStart}, {503, kStart}, {599, kStart},
      {404, kRelayResponse}, {480, kRelayResponse}, {401, kRelayResponse},
      {600, kRelayResponse}, {603, kRelayResponse},
  };
  StatusCodeSet try_next_on = StatusCodeSet::Classes({5});
  try_next_on.Add(486);
  for (const Case& c : cases) {
    SCOPED_TRACE(c.status);
    TargetSearch search = Begun(WithTryNextOn({}, try_next_on));
    ASSERT_EQ(Apply(search, Redirect("orig", {"a", "b"})).action, kStart);
    const SearchStep step = Apply(search, Final("a", c.status));
    EXPECT_EQ(step.action, c.action);
    EXPECT_TRUE(step.new_best);
    EXPECT_EQ(search.stopped(), c.action != kStart);
  }
}

TEST(TargetSearchSerialTest, SixXxIsRelayedAndEndsTheSearch) {
  TargetSearch search = Begun();
  RunTable(search, {
      {Redirect("orig", {"a", "b"}), {kStart, {"a"}}},
      {Final("a", 603), {kRelayResponse, {}, {}, true}},
      {Next(), {kFinish}},
  });
  EXPECT_EQ(StateOf(search, "b"), TargetState::kPending);
  EXPECT_EQ(search.best_status(), 603);
}

TEST(TargetSearchSerialTest, NewBestFollowsBetterFinal) {
  TargetSearch search = Begun();
  RunTable(search, {
      {Redirect("orig", {"a", "b", "c", "d", "e", "f", "g"}), {kStart, {"a"}}},
      {Final("a", 503), {kStart, {"b"}, {}, true}},
      {Final("b", 486), {kStart, {"c"}, {}, true}},
      {Final("c", 503), {kStart, {"d"}}},
      {Final("d", 500), {kStart, {"e"}}},
      {Final("e", 407), {kStart, {"f"}, {}, true}},
      {Final("f", 486), {kStart, {"g"}}},
      {Final("g", 600), {kRelayResponse, {}, {}, true}},
  });
  EXPECT_EQ(search.best_status(), 600);
}

TEST(TargetSearchSerialTest, BestStatusTracksEachFinal) {
  struct Case {
    int status;
    int best_after;
  };
  const Case cases[] = {{503, 503}, {486, 486}, {503, 486}, {401, 401}, {404, 401}, {500, 401}};
  TargetSearch search = Begun();
  std::vector<std::string> items;
  for (size_t i = 0; i < std::size(cases); ++i)
    items.push_back(std::string("t").append(std::to_string(i)));
  ASSERT_EQ(Apply(search, Redirect("orig", items)).action, kStart);
  for (size_t i = 0; i < std::size(cases); ++i) {
    SCOPED_TRACE(cases[i].status);
    const int before = search.best_status();
    const SearchStep step = Apply(search, Final(items[i], cases[i].status));
    EXPECT_EQ(search.best_status(), cases[i].best_after);
    EXPECT_EQ(step.new_best, cases[i].best_after != before);
  }
}

TEST(TargetSearchSerialTest, RedirectFromARedirectTargetGoesDeeper) {
  TargetSearch search = Begun();
  MergeResult merged;
  RunTable(search, {{Redirect("orig", {"a", "b;q=0.1"}), {kStart, {"a"}}}});
  // a's Contacts slot in among the pending ones by q.
  const SearchStep step = Apply(search, Redirect("a", {"c;q=0.5", "d"}, 301), &merged);
  EXPECT_EQ(merged.added, 2);
  EXPECT_EQ(step.action, kStart);
  EXPECT_THAT(Names(search, step.start), ElementsAre("d"));
  EXPECT_THAT(PendingNames(search), ElementsAre("c", "b"));
  EXPECT_EQ(StateOf(search, "a"), TargetState::kRedirected);
  EXPECT_EQ(StatusOf(search, "a"), 301);
  EXPECT_EQ(search.targets().at(IndexOf(search, "c")).depth, 2);
  EXPECT_EQ(search.targets().at(IndexOf(search, "c")).from_target, IndexOf(search, "a"));
  EXPECT_EQ(search.max_depth_seen(), 2);
  EXPECT_FALSE(search.depth_exceeded());
}

TEST(TargetSearchSerialTest, RedirectPastMaxDepthIsNotMerged) {
  SearchSettings settings;
  settings.max_depth = 2;
  TargetSearch search = Begun(settings);
  RunTable(search, {
      {Redirect("orig", {"a", "z;q=0.1"}), {kStart, {"a"}}},  // depth 1
      {Redirect("a", {"b"}), {kStart, {"b"}}},                // depth 2
  });
  EXPECT_FALSE(search.depth_exceeded());
  EXPECT_EQ(search.max_depth_seen(), 2);

  MergeResult merged;
  merged.added = 99;  // overwritten
  const SearchStep step = Apply(search, Redirect("b", {"c", "d"}), &merged);  // depth 3
  EXPECT_EQ(step.action, kStart);
  EXPECT_THAT(Names(search, step.start), ElementsAre("z"));  // the search goes on
  EXPECT_EQ(merged.added, 0);
  EXPECT_EQ(merged.loops, 0);
  EXPECT_TRUE(search.depth_exceeded());
  EXPECT_EQ(IndexOf(search, "c"), 9999);  // not in the set
  EXPECT_EQ(IndexOf(search, "d"), 9999);
  EXPECT_EQ(StateOf(search, "b"), TargetState::kRedirected);
  EXPECT_EQ(StatusOf(search, "b"), 302);
  EXPECT_FALSE(search.IsLive(IndexOf(search, "b")));
  // The level of the refused 3xx is counted as seen.
  EXPECT_EQ(search.max_depth_seen(), 3);
  EXPECT_EQ(search.best_status(), 0);  // a 3xx is no failure

  RunTable(search, {{Final("z", 404), {kFinish, {}, {}, true}}});
}

TEST(TargetSearchSerialTest, MaxDepthZeroFollowsNoRedirect) {
  SearchSettings settings;
  settings.max_depth = 0;
  TargetSearch search = Begun(settings);
  MergeResult merged;
  const SearchStep step = Apply(search, Redirect("orig", {"a"}), &merged);
  EXPECT_EQ(step.action, kFinish);
  EXPECT_EQ(merged.added, 0);
  EXPECT_TRUE(search.depth_exceeded());
  EXPECT_EQ(search.targets().size(), 1u);
  EXPECT_EQ(search.targets().at(0).state, TargetState::kRedirected);
}

TEST(TargetSearchSerialTest, LoopsCountsSkippedContactsOverEveryRedirect) {
  TargetSearch search = Begun();
  search.targets().AddSelf("b2bua.example", 5060);
  MergeResult merged;
  // a twice: the second is a duplicate.
  Apply(search, Redirect("orig", {"a", "a;q=0.5", "b;q=0.9"}), &merged);
  EXPECT_EQ(merged.added, 2);
  EXPECT_EQ(merged.duplicates, 1);
  EXPECT_EQ(search.loops(), 1);

  Response back({"Contact: <sip:b@x.example>, <sip:bob@biloxi.example.com>, "
                 "<sip:me@b2bua.example>, <sip:a@x.example>, <sip:c@x.example>"});
  // a is live; its 3xx lists b (pending), the original (tried), us (to self), itself (to
  // the sender) and one new target.
  const SearchStep step = search.OnRedirect(IndexOf(search, "a"), back.msg(), &merged);
  EXPECT_EQ(merged.added, 1);
  EXPECT_EQ(merged.to_sender, 1);
  EXPECT_EQ(merged.to_self, 1);
  EXPECT_EQ(merged.duplicates, 2);
  EXPECT_EQ(merged.loops, 4);
  EXPECT_EQ(search.loops(), 5);
  EXPECT_EQ(step.action, kStart);
  EXPECT_THAT(Names(search, step.start), ElementsAre("c"));  // c (q=1) before b (q=0.9)
}

TEST(TargetSearchSerialTest, ARedirectOfOnlyLoopsMovesOn) {
  TargetSearch search = Begun();
  MergeResult merged;
  RunTable(search, {{Redirect("orig", {"a", "b;q=0.5"}), {kStart, {"a"}}}});
  const SearchStep step = Apply(search, Redirect("a", {"a", "b"}), &merged);
  EXPECT_EQ(merged.added, 0);
  EXPECT_EQ(merged.loops, 2);
  EXPECT_EQ(step.action, kStart);
  EXPECT_THAT(Names(search, step.start), ElementsAre("b"));
  EXPECT_EQ(search.loops(), 2);
}

TEST(TargetSearchSerialTest, MaxTargetsEndsTheSearch) {
  TargetSearch search = Begun({}, TargetSetLimits{.max_targets = 2});
  RunTable(search, {
      {Redirect("orig", {"a", "b", "c"}), {kStart, {"a"}}},
      {Final("a", 486), {kStart, {"b"}, {}, true}},
      {Final("b", 486), {kFinish}},
      {Next(), {kFinish}},
  });
  EXPECT_TRUE(search.targets().exhausted_by_limit());
  EXPECT_EQ(search.targets().redirects_tried(), 2u);
  EXPECT_EQ(StateOf(search, "c"), TargetState::kPending);
}

TEST(TargetSearchSerialTest, MaxTargetsCountsEveryLevel) {
  TargetSearch search = Begun({}, TargetSetLimits{.max_targets = 2});
  RunTable(search, {
      {Redirect("orig", {"a", "b;q=0.5"}), {kStart, {"a"}}},
      {Redirect("a", {"c"}), {kStart, {"c"}}},
      {Final("c", 404), {kFinish, {}, {}, true}},
  });
  EXPECT_TRUE(search.targets().exhausted_by_limit());
  EXPECT_EQ(StateOf(search, "b"), TargetState::kPending);
}

TEST(TargetSearchSerialTest, NotSentMovesOnOrStops) {
  {
    TargetSearch search = Begun();
    RunTable(search, {
        {Redirect("orig", {"a", "b", "c"}), {kStart, {"a"}}},
        {NotSent("a", TargetState::kRefused), {kStart, {"b"}}},
        {NotSent("b", TargetState::kFailed), {kStart, {"c"}}},
        {NotSent("c", TargetState::kRefused), {kFinish}},
    });
    EXPECT_EQ(StateOf(search, "a"), TargetState::kRefused);
    EXPECT_EQ(StateOf(search, "b"), TargetState::kFailed);
    EXPECT_EQ(StatusOf(search, "b"), 0);
    EXPECT_EQ(search.best_status(), 0);  // nothing answered
  }
  {
    TargetSearch search = Begun();
    RunTable(search, {
        {Redirect("orig", {"a", "b"}), {kStart, {"a"}}},
        {NotSent("a", TargetState::kRefused, /*stop=*/true), {kFinish}},
        {Next(), {kFinish}},
    });
    EXPECT_TRUE(search.stopped());
    EXPECT_EQ(StateOf(search, "b"), TargetState::kPending);
  }
}

TEST(TargetSearchSerialTest, CallerGaveUpCancelsTheLiveAttempt) {
  TargetSearch search = Begun();
  RunTable(search, {
      {Redirect("orig", {"a", "b"}), {kStart, {"a"}}},
      {CallerGaveUp(), {kWait, {}, {"a"}}},
      {Next(), {kFinish}},
      {Final("a", 487), {kWait}},  // the CANCELled attempt's answer
      {Next(), {kFinish}},
  });
  EXPECT_EQ(StateOf(search, "a"), TargetState::kCancelled);
  EXPECT_EQ(StateOf(search, "b"), TargetState::kPending);
  EXPECT_EQ(search.best_status(), 0);
}

TEST(TargetSearchSerialTest, CallerGaveUpBeforeAnyRedirect) {
  TargetSearch search = Begun();
  RunTable(search, {
      {CallerGaveUp(), {kWait, {}, {"orig"}}},
      {Next(), {kFinish}},
      {Final("orig", 487), {kWait}},
  });
  EXPECT_EQ(search.targets().at(0).state, TargetState::kCancelled);
  EXPECT_EQ(search.best_status(), 0);
}

// Events for targets that are not live (already ended, never started, unknown) change
// nothing and say wait.
TEST(TargetSearchSerialTest, EventsForTargetsNotLiveChangeNothing) {
  TargetSearch search = Begun();
  RunTable(search, {
      {Redirect("orig", {"a", "b", "c"}), {kStart, {"a"}}},
      {Final("a", 486), {kStart, {"b"}, {}, true}},
      {Final("a", 600), {kWait}},       // ended
      {Answered("a"), {kWait}},         // ended
      {Timeout("a"), {kWait}},          // ended: no cancel
      {NotSent("a"), {kWait}},          // ended
      {Final("c", 404), {kWait}},       // still pending
      {Answered("c"), {kWait}},         // still pending
      {Timeout("c"), {kWait}},          // still pending
      {NotSent("c"), {kWait}},          // still pending
      {Final("nobody", 404), {kWait}},  // unknown index
      {Answered("orig"), {kWait}},      // redirected
  });
  EXPECT_EQ(StateOf(search, "a"), TargetState::kFailed);
  EXPECT_EQ(StatusOf(search, "a"), 486);
  EXPECT_EQ(StateOf(search, "c"), TargetState::kPending);
  EXPECT_EQ(search.targets().at(0).state, TargetState::kRedirected);
  EXPECT_EQ(search.best_status(), 486);
  EXPECT_FALSE(search.stopped());
  EXPECT_TRUE(search.IsLive(IndexOf(search, "b")));
  EXPECT_EQ(search.live_count(), 1u);
  EXPECT_THAT(PendingNames(search), ElementsAre("c"));
}

TEST(TargetSearchSerialTest, LateRedirectWhileAnotherIsLiveIsNotMerged) {
  TargetSearch search = Begun();
  RunTable(search, {
      {Redirect("orig", {"a", "b"}), {kStart, {"a"}}},
      {Timeout("a"), {kStart, {"b"}, {"a"}}},
  });
  MergeResult merged;
  merged.added = 99;
  const SearchStep step = Apply(search, Redirect("a", {"c"}), &merged);
  EXPECT_EQ(step.action, kWait);
  EXPECT_THAT(step.start, IsEmpty());
  EXPECT_EQ(merged.added, 0);
  EXPECT_EQ(IndexOf(search, "c"), 9999);
  EXPECT_EQ(StateOf(search, "a"), TargetState::kTimedOut);
}

// A 3xx for an attempt that is no longer live (the CANCEL crossed the 3xx, or it came after
// the search ended) is like any other late event: wait, merge nothing. In particular it
// must not turn an answered call into a failure.
TEST(TargetSearchTest, LateRedirectAfterTheSearchEndedSaysWait) {
  {
    SCOPED_TRACE("after an answer");
    TargetSearch search = Begun(Parallel());
    RunTable(search, {
        {Redirect("orig", {"a", "b"}), {kStart, {"a", "b"}}},
        {Answered("a"), {kAnswer, {}, {"b"}}},
        {Redirect("b", {"c"}), {kWait}},
    });
    EXPECT_EQ(StateOf(search, "b"), TargetState::kCancelled);
    EXPECT_EQ(IndexOf(search, "c"), 9999);
  }
  {
    SCOPED_TRACE("after the last target failed");
    TargetSearch search = Begun();
    RunTable(search, {
        {Redirect("orig", {"a"}), {kStart, {"a"}}},
        {Final("a", 404), {kFinish, {}, {}, true}},
        {Redirect("a", {"c"}), {kWait}},
    });
    EXPECT_EQ(IndexOf(search, "c"), 9999);
  }
  {
    SCOPED_TRACE("after the caller gave up");
    TargetSearch search = Begun();
    RunTable(search, {
        {CallerGaveUp(), {kWait, {}, {"orig"}}},
        {Redirect("orig", {"a"}), {kWait}},
    });
    EXPECT_EQ(search.targets().at(0).state, TargetState::kCancelled);
    EXPECT_EQ(IndexOf(search, "a"), 9999);
  }
}

// ---------------------------------------------------------------------------------------
// Parallel search (fork: parallel_equal_q).

TEST(TargetSearchParallelTest, StartsTheBestQGroupInHeaderOrder) {
  TargetSearch search = Begun(Parallel());
  Response r({"Contact: <sip:d@x.example>;q=0.5, <sip:a@x.example>;q=1.0",
              "Contact: <sip:b@x.example>, <sip:c@x.example>;q=1"});
  MergeResult merged;
  const SearchStep step = search.OnRedirect(0, r.msg(), &merged);
  EXPECT_EQ(merged.added, 4);
  EXPECT_EQ(step.action, kStart);
  EXPECT_THAT(Names(search, step.start), ElementsAre("a", "b", "c"));
  EXPECT_THAT(step.cancel, IsEmpty());
  EXPECT_EQ(search.live_count(), 3u);
  EXPECT_THAT(PendingNames(search), ElementsAre("d"));

  RunTable(search, {
      {Final("a", 486), {kWait, {}, {}, true}},
      {Final("c", 480), {kWait}},
      {Final("b", 404), {kStart, {"d"}}},
      {Final("d", 503), {kFinish}},
  });
  EXPECT_EQ(search.best_status(), 486);
}

TEST(TargetSearchParallelTest, AnAnswerCancelsTheOthers) {
  TargetSearch search = Begun(Parallel());
  RunTable(search, {
      {Redirect("orig", {"a", "b", "c", "d;q=0.5"}), {kStart, {"a", "b", "c"}}},
      {Answered("b", 200), {kAnswer, {}, {"a", "c"}}},
      {Next(), {kFinish}},
  });
  EXPECT_EQ(StateOf(search, "a"), TargetState::kCancelled);
  EXPECT_EQ(StateOf(search, "b"), TargetState::kAnswered);
  EXPECT_EQ(StatusOf(search, "b"), 200);
  EXPECT_EQ(StateOf(search, "c"), TargetState::kCancelled);
  EXPECT_EQ(StateOf(search, "d"), TargetState::kPending);
  EXPECT_EQ(search.live_count(), 0u);
  EXPECT_TRUE(search.stopped());
}

TEST(TargetSearchParallelTest, AnAnswerAfterSomeFailuresCancelsOnlyTheLive) {
  TargetSearch search = Begun(Parallel());
  RunTable(search, {
      {Redirect("orig", {"a", "b", "c"}), {kStart, {"a", "b", "c"}}},
      {Final("a", 486), {kWait, {}, {}, true}},
      {Answered("c", 202), {kAnswer, {}, {"b"}}},
  });
  EXPECT_EQ(StateOf(search, "a"), TargetState::kFailed);
  EXPECT_EQ(StateOf(search, "b"), TargetState::kCancelled);
  EXPECT_EQ(StatusOf(search, "c"), 202);
}

TEST(TargetSearchParallelTest, WhenTheGroupFailsTheNextGroupStarts) {
  TargetSearch search = Begun(Parallel());
  RunTable(search, {
      {Redirect("orig", {"a", "b", "c", "d;q=0.5", "e;q=0.5", "f;q=0.2"}),
       {kStart, {"a", "b", "c"}}},
      {Final("a", 503), {kWait, {}, {}, true}},
      {Final("b", 486), {kWait, {}, {}, true}},
      {Next(), {kWait}},
      {Final("c", 503), {kStart, {"d", "e"}}},
      {Timeout("e"), {kWait, {}, {"e"}}},
      {Final("d", 480), {kStart, {"f"}}},
      {Final("f", 401), {kFinish, {}, {}, true}},
  });
  EXPECT_EQ(search.best_status(), 401);
}

TEST(TargetSearchParallelTest, SixXxCancelsTheOthersAndIsRelayed) {
  TargetSearch search = Begun(Parallel());
  RunTable(search, {
      {Redirect("orig", {"a", "b", "c", "d;q=0.5"}), {kStart, {"a", "b", "c"}}},
      {Final("b", 603), {kRelayResponse, {}, {"a", "c"}, true}},
      {Next(), {kFinish}},
      {Answered("a"), {kWait}},  // too late: it was cancelled
  });
  EXPECT_EQ(StateOf(search, "a"), TargetState::kCancelled);
  EXPECT_EQ(StateOf(search, "b"), TargetState::kFailed);
  EXPECT_EQ(StateOf(search, "c"), TargetState::kCancelled);
  EXPECT_EQ(StateOf(search, "d"), TargetState::kPending);
  EXPECT_TRUE(search.stopped());
}

TEST(TargetSearchParallelTest, FinalOutsideTryNextOnEndsTheSearchWhenTheGroupIsOver) {
  TargetSearch search = Begun(WithTryNextOn(Parallel(), StatusCodeSet::Codes({486})));
  RunTable(search, {
      {Redirect("orig", {"a", "b", "c", "d;q=0.5"}), {kStart, {"a", "b", "c"}}},
      {Final("a", 404), {kWait, {}, {}, true}},
      {Final("b", 486), {kWait}},
      {Next(), {kWait}},
      {Final("c", 486), {kFinish}},  // not the next group
      {Next(), {kFinish}},
  });
  EXPECT_TRUE(search.stopped());
  EXPECT_EQ(StateOf(search, "d"), TargetState::kPending);
  EXPECT_EQ(search.best_status(), 404);
}

TEST(TargetSearchParallelTest, AfterAFinalOutsideTryNextOnTheOthersMayStillAnswer) {
  TargetSearch search = Begun(WithTryNextOn(Parallel(), StatusCodeSet::Codes({486})));
  RunTable(search, {
      {Redirect("orig", {"a", "b", "c", "d;q=0.5"}), {kStart, {"a", "b", "c"}}},
      {Final("a", 404), {kWait, {}, {}, true}},
      {Answered("c"), {kAnswer, {}, {"b"}}},
  });
  EXPECT_EQ(StateOf(search, "b"), TargetState::kCancelled);
}

TEST(TargetSearchParallelTest, ARedirectAfterTheSearchStoppedAddsNothing) {
  TargetSearch search = Begun(WithTryNextOn(Parallel(), StatusCodeSet::Codes({486})));
  MergeResult merged;
  RunTable(search, {
      {Redirect("orig", {"a", "b"}), {kStart, {"a", "b"}}},
      {Final("a", 404), {kWait, {}, {}, true}},
  });
  SearchStep step = Apply(search, Redirect("b", {"c"}), &merged);
  EXPECT_EQ(step.action, kFinish);
  EXPECT_EQ(merged.added, 0u) << "its Contacts would wait for ever";
  EXPECT_EQ(StateOf(search, "b"), TargetState::kRedirected);
  EXPECT_EQ(search.targets().pending_count(), 0u);
}

TEST(TargetSearchParallelTest, FinalOutsideTryNextOnInAGroupOfOneFinishes) {
  // Unlike serial search (kRelayResponse), the best failure goes to the caller.
  TargetSearch search = Begun(WithTryNextOn(Parallel(), StatusCodeSet::Codes({486})));
  RunTable(search, {
      {Redirect("orig", {"a", "b;q=0.5"}), {kStart, {"a"}}},
      {Final("a", 404), {kFinish, {}, {}, true}},
  });
  EXPECT_EQ(StateOf(search, "b"), TargetState::kPending);
}

TEST(TargetSearchParallelTest, MaxParallelSplitsAGroupOfEqualQ) {
  SearchSettings settings = Parallel();
  settings.max_parallel = 2;
  TargetSearch search = Begun(settings);
  RunTable(search, {
      {Redirect("orig", {"a", "b", "c", "d;q=0.5"}), {kStart, {"a", "b"}}},
      {Final("b", 486), {kWait, {}, {}, true}},
      {Final("a", 486), {kStart, {"c"}}},
      {Final("c", 486), {kStart, {"d"}}},
      {Final("d", 486), {kFinish}},
  });
}

TEST(TargetSearchParallelTest, MaxParallelOneIsSerial) {
  SearchSettings settings = Parallel();
  settings.max_parallel = 1;
  TargetSearch search = Begun(settings);
  RunTable(search, {
      {Redirect("orig", {"a", "b"}), {kStart, {"a"}}},
      {Final("a", 486), {kStart, {"b"}, {}, true}},
      {Final("b", 486), {kFinish}},
  });
}

TEST(TargetSearchParallelTest, MaxTargetsCutsAGroup) {
  TargetSearch search = Begun(Parallel(), TargetSetLimits{.max_targets = 2});
  RunTable(search, {
      {Redirect("orig", {"a", "b", "c"}), {kStart, {"a", "b"}}},
      {Final("a", 486), {kWait, {}, {}, true}},
      {Final("b", 486), {kFinish}},
  });
  EXPECT_TRUE(search.targets().exhausted_by_limit());
  EXPECT_EQ(StateOf(search, "c"), TargetState::kPending);
}

TEST(TargetSearchParallelTest, ARedirectWhileOthersAreLiveWaitsAndKeepsItsContacts) {
  TargetSearch search = Begun(Parallel());
  RunTable(search, {{Redirect("orig", {"a", "b", "c;q=0.5"}), {kStart, {"a", "b"}}}});
  MergeResult merged;
  const SearchStep step = Apply(search, Redirect("a", {"e;q=0.7", "f;q=0.7", "g;q=0.1"}),
                                &merged);
  EXPECT_EQ(step.action, kWait);
  EXPECT_THAT(step.start, IsEmpty());
  EXPECT_THAT(step.cancel, IsEmpty());
  EXPECT_EQ(merged.added, 3);
  EXPECT_EQ(StateOf(search, "a"), TargetState::kRedirected);
  EXPECT_FALSE(search.IsLive(IndexOf(search, "a")));
  EXPECT_EQ(search.live_count(), 1u);
  EXPECT_THAT(PendingNames(search), ElementsAre("e", "f", "c", "g"));
  EXPECT_EQ(search.targets().at(IndexOf(search, "e")).depth, 2);
  EXPECT_EQ(search.max_depth_seen(), 2);

  RunTable(search, {
      {Final("b", 486), {kStart, {"e", "f"}, {}, true}},
      {Final("e", 486), {kWait}},
      {Final("f", 486), {kStart, {"c"}}},
      {Final("c", 486), {kStart, {"g"}}},
      {Final("g", 486), {kFinish}},
  });
}

TEST(TargetSearchParallelTest, ARedirectFromTheLastLiveStartsTheNextGroup) {
  TargetSearch search = Begun(Parallel());
  RunTable(search, {
      {Redirect("orig", {"a", "b", "c;q=0.5"}), {kStart, {"a", "b"}}},
      {Final("b", 486), {kWait, {}, {}, true}},
      // d at q=1.0 goes before c.
      {Redirect("a", {"d", "e"}), {kStart, {"d", "e"}}},
  });
  EXPECT_THAT(PendingNames(search), ElementsAre("c"));
}

TEST(TargetSearchParallelTest, CallerGaveUpCancelsEveryLiveAttempt) {
  TargetSearch search = Begun(Parallel());
  RunTable(search, {
      {Redirect("orig", {"a", "b", "c", "d;q=0.5"}), {kStart, {"a", "b", "c"}}},
      {Final("b", 486), {kWait, {}, {}, true}},
      {CallerGaveUp(), {kWait, {}, {"a", "c"}}},
      {Next(), {kFinish}},
      // The cancelled attempts answer late; nothing changes.
      {Final("a", 487), {kWait}},
      {Answered("c"), {kWait}},
      {Timeout("c"), {kWait}},
      {Next(), {kFinish}},
  });
  EXPECT_EQ(search.live_count(), 0u);
  EXPECT_TRUE(search.stopped());
  EXPECT_EQ(StateOf(search, "a"), TargetState::kCancelled);
  EXPECT_EQ(StateOf(search, "b"), TargetState::kFailed);
  EXPECT_EQ(StateOf(search, "c"), TargetState::kCancelled);
  EXPECT_EQ(StateOf(search, "d"), TargetState::kPending);
  EXPECT_EQ(search.best_status(), 486);
  // Said twice, it cancels nothing more.
  const SearchStep again = search.OnCallerGaveUp();
  EXPECT_THAT(again.cancel, IsEmpty());
}

TEST(TargetSearchParallelTest, LateEventsForEndedAttemptsChangeNothing) {
  TargetSearch search = Begun(Parallel());
  RunTable(search, {
      {Redirect("orig", {"a", "b", "c"}), {kStart, {"a", "b", "c"}}},
      {Timeout("a"), {kWait, {}, {"a"}}},
      {Final("a", 600), {kWait}},   // would end the search if live
      {Answered("a"), {kWait}},     // would win if live
      {Timeout("a"), {kWait}},      // no second cancel
      {NotSent("a", TargetState::kRefused, true), {kWait}},  // would stop
      {Final("b", 486), {kWait, {}, {}, true}},
      {Final("b", 401), {kWait}},   // would be a new best if live
  });
  EXPECT_EQ(StateOf(search, "a"), TargetState::kTimedOut);
  EXPECT_EQ(StatusOf(search, "a"), 408);
  EXPECT_EQ(StatusOf(search, "b"), 486);
  EXPECT_EQ(search.best_status(), 486);
  EXPECT_FALSE(search.stopped());
  EXPECT_EQ(search.live_count(), 1u);
  EXPECT_TRUE(search.IsLive(IndexOf(search, "c")));
}

TEST(TargetSearchParallelTest, NotSentOnEveryMemberMovesOnAtTheLast) {
  TargetSearch search = Begun(Parallel());
  RunTable(search, {
      {Redirect("orig", {"a", "b", "c", "d;q=0.5"}), {kStart, {"a", "b", "c"}}},
      {NotSent("a", TargetState::kRefused), {kWait}},
      {NotSent("c", TargetState::kFailed), {kWait}},
      {NotSent("b", TargetState::kRefused), {kStart, {"d"}}},
      {NotSent("d", TargetState::kRefused), {kFinish}},
  });
  EXPECT_EQ(StateOf(search, "a"), TargetState::kRefused);
  EXPECT_EQ(StateOf(search, "b"), TargetState::kRefused);
  EXPECT_EQ(StateOf(search, "c"), TargetState::kFailed);
  EXPECT_EQ(search.best_status(), 0);
}

TEST(TargetSearchParallelTest, NotSentWithStopLetsTheGroupFinish) {
  TargetSearch search = Begun(Parallel());
  RunTable(search, {
      {Redirect("orig", {"a", "b", "c", "d;q=0.5"}), {kStart, {"a", "b", "c"}}},
      {NotSent("a", TargetState::kRefused, /*stop=*/true), {kWait}},
      {Final("b", 486), {kWait, {}, {}, true}},
      {Final("c", 486), {kFinish}},
  });
  EXPECT_TRUE(search.stopped());
  EXPECT_EQ(StateOf(search, "d"), TargetState::kPending);
}

TEST(TargetSearchParallelTest, TimeoutListsOnlyThatAttempt) {
  TargetSearch search = Begun(Parallel());
  RunTable(search, {
      {Redirect("orig", {"a", "b", "c;q=0.5"}), {kStart, {"a", "b"}}},
      {Timeout("b"), {kWait, {}, {"b"}}},
      {Timeout("a"), {kStart, {"c"}, {"a"}}},
      {Timeout("c"), {kFinish, {}, {"c"}}},
  });
  EXPECT_EQ(search.best_status(), 0);
}

// ---------------------------------------------------------------------------------------
// Early media.

TEST(TargetSearchEarlyMediaTest, FirstBodyWinsUntilItsAttemptEnds) {
  TargetSearch search = Begun(Parallel());
  ASSERT_EQ(Apply(search, Redirect("orig", {"a", "b", "c"})).action, kStart);
  const uint16_t a = IndexOf(search, "a");
  const uint16_t b = IndexOf(search, "b");
  const uint16_t c = IndexOf(search, "c");
  struct Case {
    uint16_t target;
    bool has_body;
    ProvisionalRelay relay;
  };
  const Case before[] = {
      {a, false, ProvisionalRelay::kRelay},  // 180 without SDP: owns nothing
      {b, true, ProvisionalRelay::kRelay},   // first body: b owns the early media
      {a, true, ProvisionalRelay::kRelayWithoutBody},
      {c, true, ProvisionalRelay::kRelayWithoutBody},
      {b, true, ProvisionalRelay::kRelay},
      {c, false, ProvisionalRelay::kRelay},
  };
  for (const Case& k : before) {
    SCOPED_TRACE(::testing::Message() << NameOf(search, k.target) << " body=" << k.has_body);
    EXPECT_EQ(search.OnProvisional(k.target, k.has_body), k.relay);
  }
  ASSERT_EQ(search.OnFinal(b, 486).action, kWait);
  const Case after[] = {
      {b, true, ProvisionalRelay::kRelayWithoutBody},  // ended: never owns again
      {c, true, ProvisionalRelay::kRelay},             // the next body takes it
      {a, true, ProvisionalRelay::kRelayWithoutBody},
      {c, true, ProvisionalRelay::kRelay},
  };
  for (const Case& k : after) {
    SCOPED_TRACE(::testing::Message() << NameOf(search, k.target) << " body=" << k.has_body);
    EXPECT_EQ(search.OnProvisional(k.target, k.has_body), k.relay);
  }
}

// Each way an attempt can end frees the early media for another.
TEST(TargetSearchEarlyMediaTest, EveryEndOfTheOwnerFreesTheEarlyMedia) {
  const Event ends[] = {
      Final("a", 486),
      Timeout("a"),
      Redirect("a", {"z;q=0.1"}),
      NotSent("a", TargetState::kFailed),
  };
  for (const Event& end : ends) {
    SCOPED_TRACE(Describe(end));
    TargetSearch search = Begun(Parallel());
    ASSERT_EQ(Apply(search, Redirect("orig", {"a", "b"})).action, kStart);
    const uint16_t a = IndexOf(search, "a");
    const uint16_t b = IndexOf(search, "b");
    ASSERT_EQ(search.OnProvisional(a, true), ProvisionalRelay::kRelay);
    ASSERT_EQ(search.OnProvisional(b, true), ProvisionalRelay::kRelayWithoutBody);
    EXPECT_EQ(Apply(search, end).action, kWait);
    EXPECT_EQ(search.OnProvisional(b, true), ProvisionalRelay::kRelay);
    EXPECT_EQ(search.OnProvisional(a, true), ProvisionalRelay::kRelayWithoutBody);
  }
}

TEST(TargetSearchEarlyMediaTest, SerialTargetsTakeTheEarlyMediaInTurn) {
  TargetSearch search = Begun();
  EXPECT_EQ(search.OnProvisional(0, true), ProvisionalRelay::kRelay);
  ASSERT_EQ(Apply(search, Redirect("orig", {"a", "b"})).action, kStart);
  EXPECT_EQ(search.OnProvisional(0, true), ProvisionalRelay::kRelayWithoutBody);
  EXPECT_EQ(search.OnProvisional(IndexOf(search, "a"), true), ProvisionalRelay::kRelay);
  ASSERT_EQ(Apply(search, Final("a", 486)).action, kStart);
  EXPECT_EQ(search.OnProvisional(IndexOf(search, "b"), true), ProvisionalRelay::kRelay);
  EXPECT_EQ(search.OnProvisional(IndexOf(search, "a"), true),
            ProvisionalRelay::kRelayWithoutBody);
}

TEST(TargetSearchEarlyMediaTest, BodiesOfTargetsNotLiveNeverTakeTheEarlyMedia) {
  TargetSearch search = Begun(Parallel());
  ASSERT_EQ(Apply(search, Redirect("orig", {"a", "b", "c;q=0.5"})).action, kStart);
  EXPECT_EQ(search.OnProvisional(IndexOf(search, "c"), true),
            ProvisionalRelay::kRelayWithoutBody);  // pending
  EXPECT_EQ(search.OnProvisional(0, true), ProvisionalRelay::kRelayWithoutBody);  // redirected
  EXPECT_EQ(search.OnProvisional(9999, true), ProvisionalRelay::kRelayWithoutBody);  // unknown
  EXPECT_EQ(search.OnProvisional(IndexOf(search, "b"), true), ProvisionalRelay::kRelay);
}

TEST(TargetSearchEarlyMediaTest, CancelledOwnerFreesTheEarlyMediaForNothing) {
  TargetSearch search = Begun(Parallel());
  ASSERT_EQ(Apply(search, Redirect("orig", {"a", "b"})).action, kStart);
  const uint16_t a = IndexOf(search, "a");
  const uint16_t b = IndexOf(search, "b");
  ASSERT_EQ(search.OnProvisional(a, true), ProvisionalRelay::kRelay);
  ASSERT_EQ(search.OnCallerGaveUp().cancel.size(), 2u);
  // Nothing is live: no attempt may take the early media.
  EXPECT_EQ(search.OnProvisional(a, true), ProvisionalRelay::kRelayWithoutBody);
  EXPECT_EQ(search.OnProvisional(b, true), ProvisionalRelay::kRelayWithoutBody);
  EXPECT_EQ(search.OnProvisional(b, false), ProvisionalRelay::kRelay);
}

TEST(TargetSearchEarlyMediaTest, BodylessProvisionalsAreAlwaysRelayed) {
  for (EarlyMedia mode : {EarlyMedia::kFirst, EarlyMedia::kNone}) {
    SearchSettings settings = Parallel();
    settings.early_media = mode;
    TargetSearch search = Begun(settings);
    ASSERT_EQ(Apply(search, Redirect("orig", {"a", "b", "c;q=0.5"})).action, kStart);
    ASSERT_EQ(search.OnProvisional(IndexOf(search, "a"), true),
              mode == EarlyMedia::kFirst ? ProvisionalRelay::kRelay
                                         : ProvisionalRelay::kRelayWithoutBody);
    for (uint16_t target : {IndexOf(search, "a"), IndexOf(search, "b"), IndexOf(search, "c"),
                            uint16_t{0}, uint16_t{9999}}) {
      EXPECT_EQ(search.OnProvisional(target, false), ProvisionalRelay::kRelay) << target;
    }
  }
}

TEST(TargetSearchEarlyMediaTest, NoneStripsEveryBody) {
  SearchSettings settings = Parallel();
  settings.early_media = EarlyMedia::kNone;
  TargetSearch search = Begun(settings);
  EXPECT_EQ(search.OnProvisional(0, true), ProvisionalRelay::kRelayWithoutBody);
  ASSERT_EQ(Apply(search, Redirect("orig", {"a", "b"})).action, kStart);
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(search.OnProvisional(IndexOf(search, "a"), true),
              ProvisionalRelay::kRelayWithoutBody);
    EXPECT_EQ(search.OnProvisional(IndexOf(search, "b"), true),
              ProvisionalRelay::kRelayWithoutBody);
  }
}

}  // namespace
}  // namespace b2bua
