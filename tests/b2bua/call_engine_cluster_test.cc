// Tests b2bua/call_cluster.cc: in cluster mode both legs' Contact names the front with the
// call's routing token, a confirmed call is written to the dialog store (and removed when it
// ends), and another instance takes a call over when one of its in-dialog requests arrives
// there. The store is a fake with the contract of b2bua/dialog_store.h; the harness is in
// call_engine_harness.h.

#include <deque>
#include <functional>
#include <map>

#include "tests/b2bua/call_engine_harness.h"

namespace b2bua::engine_test {
namespace {

constexpr std::string_view kFront = "192.0.2.100:5060";

// The store's contract, in memory: adoption answers are queued (never inline) until the
// test runs them, as a real store answers on a later turn of the loop.
class FakeDialogStore final : public DialogStore {
 public:
  void Save(const DialogRecord& record, proto::Duration ttl) override {
    ++saves;
    if (!available) return;
    records[record.key] = record;
    ttls[record.key] = ttl;
  }
  void Remove(std::string_view key) override {
    ++removes;
    if (available) records.erase(std::string(key));
  }
  void Adopt(std::string_view key, std::string_view self, proto::Duration,
             std::function<void(AdoptOutcome, std::optional<DialogRecord>)> done) override {
    ++adoptions;
    pending.push_back([this, key = std::string(key), self = std::string(self),
                       done = std::move(done)] {
      if (!available) return done(AdoptOutcome::kUnavailable, std::nullopt);
      auto it = records.find(key);
      if (it == records.end()) return done(AdoptOutcome::kNotFound, std::nullopt);
      if (it->second.owner != self && it->second.owner != OwnerOfKey(key))
        return done(AdoptOutcome::kOwnedByOther, std::nullopt);
      it->second.owner = self;
      done(AdoptOutcome::kAdopted, it->second);
    });
  }
  bool connected() const override { return available; }

  void RunPending() {
    while (!pending.empty()) {
      std::function<void()> next = std::move(pending.front());
      pending.pop_front();
      next();
    }
  }

  bool available = true;
  std::map<std::string, DialogRecord> records;
  std::map<std::string, proto::Duration> ttls;
  std::deque<std::function<void()>> pending;
  int saves = 0;
  int removes = 0;
  int adoptions = 0;
};

class FakeWallClock final : public WallClock {
 public:
  int64_t NowUnixMs() const override { return now_ms; }
  int64_t now_ms = 1'800'000'000'000;
};

class ClusterTest : public CallEngineTest {
 protected:
  void StartInstance(std::string instance, uint64_t epoch, std::string_view yaml = {}) {
    dialog_store_ = &store_;
    wall_clock_ = &wall_;
    instance_id_ = std::move(instance);
    boot_epoch_ = epoch;
    front_ = std::string(kFront);
    ASSERT_NO_FATAL_FAILURE(Start(yaml));
  }
  // On instance "1": a confirmed call from `caller_` to `bob_`, whose in-dialog requests
  // carry its routing token; returns the B-leg INVITE.
  std::optional<Sent> EstablishOnFirstInstance(std::string_view yaml = {}) {
    StartInstance("1", 0x5f, yaml);
    caller_.remote_target = "sip:b2b-1.5f.0.1@192.0.2.100:5060";
    return EstablishCall(caller_, bob_);
  }
  // The instance dies: its engine and transactions go, without ending anything; the store
  // keeps what it had. The test's clocks go on.
  void Crash() {
    layer_.reset();
    engine_.reset();
  }

  FakeDialogStore store_;
  FakeWallClock wall_;
  Caller caller_;
  Callee bob_;
};

TEST_F(ClusterTest, BothLegsContactTheFrontWithTheCallsToken) {
  ASSERT_NO_FATAL_FAILURE(StartInstance("1", 0x5f));
  Caller caller;
  Callee bob;
  std::optional<Sent> invite = Invite(caller);
  ASSERT_TRUE(invite);
  const std::string contact = invite->Header("Contact");
  EXPECT_EQ(contact, "<sip:b2b-1.5f.0.1@192.0.2.100:5060>");
  Deliver(bob.Answer(*invite, 180, "Ringing"), bob.peer());
  Deliver(bob.Answer(*invite, 200, "OK", kAnswerSdp), bob.peer());
  std::vector<Sent> to_caller = ResponsesTo(TakeSent(), kCallerPort);
  ASSERT_EQ(to_caller.size(), 2u);
  EXPECT_EQ(to_caller[0].Header("Contact"), contact);
  EXPECT_EQ(to_caller[1].Header("Contact"), contact);
  EXPECT_TRUE(store_.records.empty()) << "a call is written once confirmed, not before";
}

TEST_F(ClusterTest, ConfirmedCallIsWrittenAndRemovedWhenItEnds) {
  std::optional<Sent> invite = EstablishOnFirstInstance("limits: {max_call_duration: 1h}\n");
  ASSERT_TRUE(invite);
  Caller& caller = caller_;
  Callee& bob = bob_;
  ASSERT_EQ(store_.records.size(), 1u);
  const DialogRecord& record = store_.records.begin()->second;
  EXPECT_EQ(record.key, "1.5f.0.1");
  EXPECT_EQ(record.owner, "1");
  EXPECT_EQ(record.caller.call_id, caller.call_id);
  EXPECT_EQ(record.caller.remote_target, Caller::kContactUri);
  EXPECT_EQ(record.callee.call_id, invite->call_id());
  EXPECT_EQ(record.callee.remote_target, bob.ContactUri());
  EXPECT_EQ(record.callee_invite_cseq, invite->cseq());
  EXPECT_EQ(record.ends_at_unix_ms, wall_.now_ms + 3'600'000);
  EXPECT_EQ(store_.ttls[record.key], 1h + 60s) << "the call's deadline plus the margin";

  // A relayed request moves the CSeqs: written again.
  const int saves = store_.saves;
  Deliver(caller.InDialog("INFO"), caller.peer());
  std::vector<Sent> infos = RequestsTo(TakeSent(), 5070, Method::kInfo);
  ASSERT_EQ(infos.size(), 1u);
  EXPECT_EQ(store_.saves, saves + 1);
  EXPECT_EQ(store_.records.begin()->second.caller.remote_cseq, caller.last_cseq);
  EXPECT_EQ(store_.records.begin()->second.callee.local_cseq, infos[0].cseq() + 1);

  Deliver(caller.Bye(), caller.peer());
  EXPECT_TRUE(store_.records.empty());
  EXPECT_EQ(counters_->dialogs_replicated.Get(), 2u);
}

TEST_F(ClusterTest, SurvivorTakesTheCallOverOnTheCallersBye) {
  std::optional<Sent> invite = EstablishOnFirstInstance();
  ASSERT_TRUE(invite);
  Caller& caller = caller_;
  Callee& bob = bob_;
  ASSERT_EQ(store_.records.size(), 1u);
  Crash();

  ASSERT_NO_FATAL_FAILURE(StartInstance("2", 0x60));
  Deliver(caller.Bye(), caller.peer());
  EXPECT_THAT(TakeSent(), IsEmpty()) << "waiting for the store";
  EXPECT_EQ(store_.adoptions, 1);
  store_.RunPending();
  std::vector<Sent> out = TakeSent();
  std::vector<Sent> byes = RequestsTo(out, 5070, Method::kBye);
  ASSERT_EQ(byes.size(), 1u) << "relayed to the callee";
  EXPECT_EQ(byes[0].call_id(), invite->call_id());
  EXPECT_GT(byes[0].cseq(), invite->cseq() + 100) << "above every number the dead one used";
  EXPECT_EQ(byes[0].request_uri(), bob.ContactUri());
  EXPECT_THAT(byes[0].from_tag(), Not(IsEmpty()));
  EXPECT_EQ(byes[0].from_tag(), invite->from_tag());
  EXPECT_EQ(byes[0].to_tag(), bob.tag);
  std::vector<Sent> to_caller = ResponsesTo(out, kCallerPort);
  ASSERT_EQ(to_caller.size(), 1u);
  EXPECT_EQ(to_caller[0].status(), 200);
  EXPECT_EQ(to_caller[0].cseq(), caller.last_cseq);
  Deliver(bob.Ok(byes[0]), bob.peer());
  EXPECT_TRUE(store_.records.empty()) << "the call ended: its key goes";
  EXPECT_EQ(counters_->dialogs_adopted.Get(), 1u);
  EXPECT_EQ(engine_->active_calls(), 0u);
}

TEST_F(ClusterTest, SurvivorRelaysTheCalleesReInviteAndItsAnswer) {
  std::optional<Sent> invite = EstablishOnFirstInstance();
  ASSERT_TRUE(invite);
  Caller& caller = caller_;
  Callee& bob = bob_;
  Crash();
  ASSERT_NO_FATAL_FAILURE(StartInstance("3", 0x61));

  Deliver(bob.InDialog(*invite, "INVITE", kAnswerSdp), bob.peer());
  store_.RunPending();
  std::vector<Sent> reinvites = RequestsTo(TakeSent(), kCallerPort, Method::kInvite);
  ASSERT_EQ(reinvites.size(), 1u);
  EXPECT_EQ(reinvites[0].call_id(), caller.call_id);
  EXPECT_EQ(reinvites[0].request_uri(), Caller::kContactUri);
  EXPECT_EQ(reinvites[0].to_tag(), caller.from_tag);
  EXPECT_EQ(reinvites[0].Header("Contact"), "<sip:b2b-1.5f.0.1@192.0.2.100:5060>")
      << "the same token: the front keeps routing the dialog to a survivor";
  // The caller answers; the callee gets the 2xx.
  Deliver(ResponseTo(reinvites[0], 200, "OK", caller.from_tag,
                     "Contact: <" + std::string(Caller::kContactUri) + ">\r\n", kOfferSdp),
          caller.peer());
  std::vector<Sent> to_bob = ResponsesTo(TakeSent(), 5070);
  ASSERT_EQ(to_bob.size(), 1u);
  EXPECT_EQ(to_bob[0].status(), 200);
  EXPECT_EQ(to_bob[0].cseq(), bob.last_cseq);
  EXPECT_EQ(store_.records.begin()->second.owner, "3");
}

TEST_F(ClusterTest, RequestsWaitingForTheStoreAreAllServed) {
  std::optional<Sent> invite = EstablishOnFirstInstance();
  ASSERT_TRUE(invite);
  Caller& caller = caller_;
  Callee& bob = bob_;
  Crash();
  ASSERT_NO_FATAL_FAILURE(StartInstance("2", 0x60));
  Deliver(caller.InDialog("INFO"), caller.peer());
  Deliver(bob.InDialog(*invite, "INFO"), bob.peer());
  EXPECT_EQ(store_.adoptions, 1) << "one read for the dialog";
  store_.RunPending();
  std::vector<Sent> out = TakeSent();
  EXPECT_EQ(RequestsTo(out, 5070, Method::kInfo).size(), 1u);
  EXPECT_EQ(RequestsTo(out, kCallerPort, Method::kInfo).size(), 1u);
}

TEST_F(ClusterTest, UnknownDialogGets481AndAnUnreachableStore503) {
  ASSERT_NO_FATAL_FAILURE(StartInstance("2", 0x60));
  Caller caller;
  caller.to_tag = "gone";
  caller.remote_target = "sip:b2b-1.5f.0.9@192.0.2.100:5060";
  Deliver(caller.Bye(), caller.peer());
  store_.RunPending();
  EXPECT_THAT(Statuses(ResponsesTo(TakeSent(), kCallerPort)), ElementsAre(481));
  EXPECT_EQ(counters_->adoptions_failed[static_cast<size_t>(AdoptFailure::kNotFound)].Get(), 1u);

  store_.available = false;
  Deliver(caller.Bye(), caller.peer());
  store_.RunPending();
  std::vector<Sent> to_caller = ResponsesTo(TakeSent(), kCallerPort);
  ASSERT_EQ(to_caller.size(), 1u);
  EXPECT_EQ(to_caller[0].status(), 503);
  EXPECT_EQ(to_caller[0].Header("Retry-After"), "1");

  // A Request-URI without a token is not looked up at all.
  caller.remote_target = "sip:b2bua@127.0.0.1:5060";
  const int adoptions = store_.adoptions;
  Deliver(caller.Bye(), caller.peer());
  EXPECT_THAT(Statuses(ResponsesTo(TakeSent(), kCallerPort)), ElementsAre(481));
  EXPECT_EQ(store_.adoptions, adoptions);
}

TEST_F(ClusterTest, OnlyATrustedSourceCanMakeAnInstanceTakeACallOver) {
  // Only 127.0.0.9 (the front) is trusted; the caller at 127.0.0.1 may call through the
  // default route.
  constexpr std::string_view kYaml =
      "access: {trusted: [127.0.0.9/32], callers: [127.0.0.0/8]}\n"
      "routes:\n  - prefix: ''\n    next_hops: ['sip:127.0.0.1:5070']\n";
  std::optional<Sent> invite = EstablishOnFirstInstance(kYaml);
  ASSERT_TRUE(invite);
  Crash();
  ASSERT_NO_FATAL_FAILURE(StartInstance("2", 0x60, kYaml));
  // The caller at 127.0.0.1 is not the front: its token opens nothing.
  Deliver(caller_.Bye(), caller_.peer());
  EXPECT_EQ(store_.adoptions, 0);
  EXPECT_THAT(Statuses(ResponsesTo(TakeSent(), kCallerPort)), ElementsAre(481));
  EXPECT_EQ(store_.records.begin()->second.owner, "1") << "the call stays its owner's";
}

TEST_F(ClusterTest, TakenOverCallKeepsItsDeadline) {
  std::optional<Sent> invite = EstablishOnFirstInstance("limits: {max_call_duration: 60s}\n");
  ASSERT_TRUE(invite);
  Caller& caller = caller_;
  Crash();
  clock_.Set(clock_.Now() + 40s);  // nothing runs meanwhile: the instance is gone
  wall_.now_ms += 40'000;
  ASSERT_NO_FATAL_FAILURE(StartInstance("2", 0x60, "limits: {max_call_duration: 60s}\n"));
  Deliver(caller.InDialog("INFO"), caller.peer());
  store_.RunPending();
  TakeSent();
  Advance(19900ms);
  EXPECT_THAT(RequestsTo(TakeSent(), 5070, Method::kBye), IsEmpty());
  Advance(200ms);  // a BYE unanswered for 500 ms would be sent again
  std::vector<Sent> out = TakeSent();
  EXPECT_EQ(RequestsTo(out, 5070, Method::kBye).size(), 1u) << "60 s after the answer";
  EXPECT_EQ(RequestsTo(out, kCallerPort, Method::kBye).size(), 1u);
}

TEST_F(ClusterTest, NothingIsWrittenOutsideClusterMode) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Caller caller;
  Callee bob;
  std::optional<Sent> invite = EstablishCall(caller, bob);
  ASSERT_TRUE(invite);
  EXPECT_EQ(invite->Header("Contact"), "<sip:b2bua@127.0.0.1:5060>");
  EXPECT_EQ(store_.saves, 0);
}

}  // namespace
}  // namespace b2bua::engine_test
