#!/usr/bin/env python3
"""Parallel forking of redirect targets, end to end.

    python3 tests/integration/test_forking.py --binary build/release/b2bua/b2bua [-k name]

Every test runs the b2bua with

    redirect: { ..., fork: parallel_equal_q, max_parallel: 8, early_media: first }

The caller dials 1000; route "1" leads to a redirecting SIPp callee whose 302 lists the
Contacts (given with -key) of other SIPp callees on free ports of 127.0.0.1. Contacts of
equal q ring at the same time as one group, the groups go in q order; the first 2xx wins
and every other pending branch gets a CANCEL with Reason: SIP;cause=200;text="Call
completed elsewhere"; a 6xx ends the search; the caller's CANCEL reaches every branch.

What the SIPp scenarios cannot see, the tests read from their -trace_msg logs: when each
callee got its INVITE, what the caller received and how often. Time bounds come from
-timeout (-timeout_error) on every SIPp and from the ring times of the callees, so no
test waits on the b2bua's own timers. Skips when sipp is missing or no binary is given.
See harness.py for logs and environment variables.
"""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (B2buaTestCase, contact, main, route,  # noqa: E402
                     split_header_values)

# Merged over the harness's default redirect block.
FORK = {"fork": "parallel_equal_q", "max_parallel": 8, "early_media": "first"}

# The -timeout of every SIPp in these tests: a branch that never gets its CANCEL fails in
# this many seconds instead of ringing forever.
SIPP_TIMEOUT = 15

# RFC 3326: one value of a Reason header whose protocol is SIP and cause 200.
_SIP_CAUSE_200 = re.compile(r"^\s*SIP\s*;(?:[^;]*;)*?\s*cause\s*=\s*200\s*(?:;|$)", re.I)
_COMPLETED_ELSEWHERE = re.compile(r'text\s*=\s*"Call completed elsewhere"', re.I)

TARGETS = "b2bua_redirect_targets_total"


def reasons(message):
    """Every value of every Reason header of a traced message."""
    return [v for h in message.header_all("reason") for v in split_header_values(h)]


def says_completed_elsewhere(message):
    """True when a Reason value is SIP cause 200 with the text "Call completed elsewhere"."""
    return any(_SIP_CAUSE_200.match(v) and _COMPLETED_ELSEWHERE.search(v)
               for v in reasons(message))


def invite_answers(sipp, status):
    """Responses `status` to an INVITE that `sipp` received (retransmissions included)."""
    return [m for m in sipp.received(status=status) if m.cseq_method == "INVITE"]


class ForkingTest(B2buaTestCase):

    def start_b2bua(self, *routes, redirect=None, **config):
        """Starts the b2bua with parallel forking (plus `redirect` overrides) and takes
        the scrape the counter deltas are measured from."""
        settings = dict(FORK, **(redirect or {}))
        b2bua = self.h.start_b2bua(self.h.config(routes=list(routes), redirect=settings,
                                                 **config))
        self.baseline = self.h.metrics()
        return b2bua

    def redirector(self, *contacts, name="redirector", calls=1):
        """A callee answering 302 with the three Contacts c1, c2 (one header) and c3."""
        keys = {"c%d" % i: c for i, c in enumerate(contacts, 1)}
        self.assertEqual(len(keys), 3, "uas-redirect-302-contacts.xml takes three Contacts")
        return self.h.start_callee("uas-redirect-302-contacts.xml", calls=calls, keys=keys,
                                   timeout=SIPP_TIMEOUT, name=name)

    def callee(self, scenario, name, calls=1, **kwargs):
        return self.h.start_callee(scenario, calls=calls, timeout=SIPP_TIMEOUT, name=name,
                                   **kwargs)

    def assertMoved(self, name, delta, **labels):
        """`name{labels}` moved by `delta` since the scrape taken at start-up."""
        self.assertMetric(name, self.baseline.value(name, **labels) + delta, **labels)

    def assertTargetOutcomes(self, **deltas):
        """b2bua_redirect_targets_total{outcome=K} moved by deltas[K] since start-up."""
        for outcome, delta in deltas.items():
            self.assertMoved(TARGETS, delta, outcome=outcome)

    def assertCancelledNotCompletedElsewhere(self, callee):
        """Exactly one CANCEL, and it does not claim that another branch answered (a phone
        would then hide the missed call)."""
        cancels = callee.received("CANCEL")
        self.assertEqual(len(cancels), 1, "%s: one CANCEL expected" % callee.name)
        self.assertFalse(any(_SIP_CAUSE_200.match(v) for v in reasons(cancels[0])),
                         "%s: no branch answered, yet the CANCEL says %s"
                         % (callee.name, reasons(cancels[0])))

    # -- the first 2xx wins ---------------------------------------------------------

    def test_equal_q_ring_together_first_200_wins_others_cancelled_completed_elsewhere(self):
        """Three q=0.8 Contacts: A answers after 1 s, B and C ring. All three got their
        INVITE long before A answered; B and C get a CANCEL saying "Call completed
        elsewhere" (their scenario checks cause=200); the caller gets one 200 after about
        1 s, not after a target_timeout per target as serial forking would take."""
        ring_s = 1.0
        b = self.callee("uas-ring-cancelled-call-completed-elsewhere.xml", "b-rings")
        c = self.callee("uas-ring-cancelled-call-completed-elsewhere.xml", "c-rings")
        a = self.callee("uas-ring-then-answer-200.xml", "a-answers-after-1s",
                        duration_ms=int(ring_s * 1000))
        # A is listed last: trying the Contacts one by one would ring B first, until
        # target_timeout.
        redirector = self.redirector(contact(b.port, "b", "0.8"), contact(c.port, "c", "0.8"),
                                     contact(a.port, "a", "0.8"))
        self.start_b2bua(route("1", redirector.port), redirect={"target_timeout": "4s"})
        caller = self.h.run_caller("uac-expect-200-via-redirect.xml", duration_ms=100,
                                   timeout=SIPP_TIMEOUT)
        self.assertSippsOk(caller, redirector, a, b, c)

        answered = [m for m in a.sent(status=200) if m.cseq_method == "INVITE"][0].time
        invites = {t.name: t.received("INVITE")[0].time for t in (a, b, c)}
        self.assertLess(max(invites.values()) - min(invites.values()), ring_s / 2,
                        "the three equal-q targets must be tried at once: %s" % invites)
        for loser in (b, c):
            self.assertLess(invites[loser.name], answered - ring_s / 2,
                            "%s must ring before A answers" % loser.name)
            cancels = loser.received("CANCEL")
            self.assertEqual(len(cancels), 1, "%s: one CANCEL expected" % loser.name)
            # Two processes' trace clocks: a little slack, far below the ring time.
            self.assertGreater(cancels[0].time, answered - 0.1, "CANCEL only once A answered")
            self.assertTrue(says_completed_elsewhere(cancels[0]),
                            '%s: Reason must be SIP;cause=200;text="Call completed elsewhere",'
                            " got %s" % (loser.name, reasons(cancels[0])))
            self.assertEqual(loser.received("BYE"), [], "%s never answered" % loser.name)
        self.assertTrue(a.received("ACK"), "the winner's 200 must be ACKed")
        self.assertEqual(len(a.received("BYE")), 1)

        oks = invite_answers(caller, 200)
        self.assertEqual(len(oks), 1, "the caller must get exactly one 200: %s" % oks)
        setup = oks[0].time - caller.sent("INVITE")[0].time
        self.assertGreater(setup, ring_s * 0.9, "A rings %.1f s before it answers" % ring_s)
        self.assertLess(setup, ring_s + 1.5,
                        "the call took %.2f s: the branches were not tried at once" % setup)
        self.assertEqual(caller.received(status=487), [])

        self.assertMoved("b2bua_redirects_received_total", 1, code="302")
        self.assertTargetOutcomes(answered=1, cancelled=2, failed=0)
        self.assertMoved("b2bua_calls_total", 1, outcome="answered")
        self.assertNoActiveCalls()

    # -- groups in q order ----------------------------------------------------------

    def test_groups_in_q_order_next_group_once_every_branch_failed(self):
        """q=1.0 twice (one busy at once, one after ringing 0.5 s) and q=0.5 once (answers):
        both q=1.0 ring together; the q=0.5 target is tried only after the slower one's
        486, not at the first 486; the caller gets the 200 and none of the 486s."""
        slow_s = 0.5
        low = self.callee("uas-answer-200.xml", "q0.5-answers")
        slow = self.callee("uas-ring-then-busy-486.xml", "q1.0-busy-after-ringing",
                           duration_ms=int(slow_s * 1000))
        fast = self.callee("uas-busy-486.xml", "q1.0-busy-at-once")
        # The lowest q is listed first, so only the q order can put it last; the slow one
        # before the fast one, so serial forking would start the fast one 0.5 s late.
        redirector = self.redirector(contact(low.port, "low", "0.5"),
                                     contact(slow.port, "slow", "1.0"),
                                     contact(fast.port, "fast", "1.0"))
        self.start_b2bua(route("1", redirector.port))
        caller = self.h.run_caller("uac-expect-200-via-redirect.xml", duration_ms=100,
                                   timeout=SIPP_TIMEOUT)
        self.assertSippsOk(caller, redirector, low, slow, fast)

        t_slow, t_fast, t_low = (t.received("INVITE")[0].time for t in (slow, fast, low))
        self.assertLess(abs(t_fast - t_slow), slow_s / 2,
                        "the two q=1.0 targets must ring at the same time")
        self.assertGreater(t_low - t_slow, slow_s * 0.8,
                           "the q=0.5 group must wait for every q=1.0 branch's final answer")
        self.assertGreater(t_low, t_fast)
        self.assertEqual(len(invite_answers(caller, 200)), 1)
        self.assertEqual(invite_answers(caller, 486), [], "a 486 must not reach the caller")
        for t in (low, slow, fast):
            self.assertEqual(len(t.calls_received()), 1, "%s tried once" % t.name)

        self.assertTargetOutcomes(failed=2, answered=1, cancelled=0)
        self.assertMoved("b2bua_calls_total", 1, outcome="answered")
        self.assertNoActiveCalls()

    def test_group_larger_than_max_parallel_is_split(self):
        """max_parallel 2 and three q=1.0 targets that each ring 0.5 s and then are busy:
        two INVITEs go out together, the third only after both of those answered 486;
        the caller gets 486 (best failure) once everything failed."""
        ring_s = 0.5
        busy = [self.callee("uas-ring-then-busy-486.xml", "q1.0-busy-%d" % i,
                            duration_ms=int(ring_s * 1000)) for i in (1, 2, 3)]
        redirector = self.redirector(*(contact(t.port, "t%d" % i, "1.0")
                                       for i, t in enumerate(busy, 1)))
        self.start_b2bua(route("1", redirector.port), redirect={"max_parallel": 2})
        caller = self.h.run_caller("uac-expect-486.xml", timeout=SIPP_TIMEOUT)
        self.assertSippsOk(caller, redirector, *busy)

        first, second, third = sorted(t.received("INVITE")[0].time for t in busy)
        self.assertLess(second - first, ring_s / 2, "two branches ring together")
        self.assertGreater(third - second, ring_s * 0.8,
                           "the third waits for the first two finals (max_parallel 2)")
        self.assertEqual(len(invite_answers(caller, 486)), 1)

        self.assertTargetOutcomes(failed=3, answered=0, cancelled=0)
        self.assertNoActiveCalls()

    # -- a 6xx ends the search ------------------------------------------------------

    def test_603_from_one_branch_cancels_the_others_and_reaches_the_caller(self):
        """q=1.0 twice: one declines at once, the other rings and must get a CANCEL; the
        q=0.5 target is never tried; the caller gets the 603."""
        declines = self.callee("uas-decline-603.xml", "q1.0-declines")
        rings = self.callee("uas-ring-until-cancelled.xml", "q1.0-rings")
        # Runs until stopped; answers 200 if it is wrongly tried, which fails the caller.
        never = self.callee("uas-answer-200.xml", "q0.5-never-tried", calls=None)
        redirector = self.redirector(contact(rings.port, "rings", "1.0"),
                                     contact(never.port, "never", "0.5"),
                                     contact(declines.port, "declines", "1.0"))
        # The ringing target is listed first: one by one, it would ring until
        # target_timeout before the other one is tried.
        self.start_b2bua(route("1", redirector.port), redirect={"target_timeout": "4s"})
        caller = self.h.run_caller("uac-expect-603.xml", timeout=SIPP_TIMEOUT)
        self.assertSippsOk(caller, redirector, declines, rings)

        self.assertCancelledNotCompletedElsewhere(rings)
        rang = rings.received("CANCEL")[0].time - rings.received("INVITE")[0].time
        self.assertLess(rang, 1.0, "the 603 must end the ringing branch at once, not "
                        "after %.2f s" % rang)
        declined = invite_answers(caller, 603)
        self.assertEqual(len(declined), 1)
        setup = declined[0].time - caller.sent("INVITE")[0].time
        self.assertLess(setup, 2.0, "the caller waited %.2f s for the 603" % setup)
        self.assertEqual(invite_answers(caller, 487), [], "the caller hears the 603 only")

        # The ringing branch lost to the 6xx; the 6xx branch itself failed.
        self.assertTargetOutcomes(cancelled=1, failed=1, answered=0)
        self.assertNoActiveCalls()
        self.assertEqual(never.calls_received(), [], "a 6xx ends the whole search")

    # -- the caller's CANCEL --------------------------------------------------------

    def test_caller_cancel_reaches_every_ringing_branch_caller_gets_one_487(self):
        """Three q=1.0 targets ring; the caller CANCELs at the first 180: each target gets
        a CANCEL (not "completed elsewhere") and answers 487, the caller gets one 487."""
        ringing = [self.callee("uas-ring-until-cancelled.xml", "q1.0-rings-%d" % i) for i in (1, 2, 3)]
        redirector = self.redirector(*(contact(t.port, "t%d" % i, "1.0")
                                       for i, t in enumerate(ringing, 1)))
        self.start_b2bua(route("1", redirector.port))
        caller = self.h.run_caller("uac-cancel-forked-call-before-answer.xml",
                                   timeout=SIPP_TIMEOUT)
        self.assertSippsOk(caller, redirector, *ringing)

        for t in ringing:
            self.assertCancelledNotCompletedElsewhere(t)
            self.assertEqual(t.received("BYE"), [])
        self.assertEqual(len(invite_answers(caller, 487)), 1, "one 487 for the caller")
        self.assertEqual(invite_answers(caller, 200), [])

        self.assertTargetOutcomes(cancelled=3, answered=0)
        self.assertMoved("b2bua_calls_total", 1, outcome="cancelled")
        self.assertNoActiveCalls()

    # -- counters over several calls -----------------------------------------------

    def test_outcome_counters_move_per_branch_over_several_forked_calls(self):
        """One b2bua, two won races in a row (route 1) and then one call cancelled by the
        caller (route 2): every branch is counted once, whatever ended it."""
        won = 2
        a = self.callee("uas-ring-then-answer-200.xml", "a-answers", calls=won,
                        duration_ms=300)
        losers = [self.callee("uas-ring-cancelled-call-completed-elsewhere.xml",
                              "rings-%s" % n, calls=won) for n in ("b", "c")]
        race = self.redirector(contact(a.port, "a", "1.0"),
                               *(contact(t.port, "l%d" % i, "1.0")
                                 for i, t in enumerate(losers, 1)),
                               calls=won, name="redirector-race")
        ringing = [self.callee("uas-ring-until-cancelled.xml", "rings-%d" % i) for i in (1, 2, 3)]
        cancelled = self.redirector(*(contact(t.port, "t%d" % i, "1.0")
                                      for i, t in enumerate(ringing, 1)),
                                    name="redirector-cancelled")
        self.start_b2bua(route("1", race.port), route("2", cancelled.port))

        caller = self.h.run_caller("uac-expect-200-via-redirect.xml", calls=won, limit=1,
                                   duration_ms=100, timeout=SIPP_TIMEOUT + 5)
        self.assertSippsOk(caller, race, a, *losers)
        self.assertTargetOutcomes(answered=won, cancelled=2 * won)

        caller = self.h.run_caller("uac-cancel-forked-call-before-answer.xml", service="2000",
                                   timeout=SIPP_TIMEOUT)
        self.assertSippsOk(caller, cancelled, *ringing)
        self.assertTargetOutcomes(answered=won, cancelled=2 * won + 3, failed=0)
        self.assertMoved("b2bua_calls_total", won, outcome="answered")
        self.assertMoved("b2bua_calls_total", 1, outcome="cancelled")
        self.assertNoActiveCalls()


if __name__ == "__main__":
    main()
