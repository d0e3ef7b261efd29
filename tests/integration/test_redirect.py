#!/usr/bin/env python3
"""Redirect engine, end to end: the b2bua follows (or relays) 3xx from the callee side.

    python3 tests/integration/test_redirect.py --binary build/release/b2bua/b2bua [-k name]

The caller dials 1000; route "1" leads to a redirecting SIPp callee whose Contacts (given
with -key) name other SIPp callees on free ports. Skips when sipp is missing or no binary
is given. See harness.py for logs and environment variables.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (B2buaTestCase, contact, free_port, main, route,  # noqa: E402
                     split_header_values)


class RedirectTest(B2buaTestCase):

    def start_b2bua(self, *routes, port=None, shards=2, **config):
        return self.h.start_b2bua(self.h.config(routes=list(routes), **config), port=port,
                                  shards=shards)

    def test_302_three_contacts_followed_in_q_order(self):
        """q=1.0 answers 503, q=0.5 486, q=0.2 200: two failures, then the call is up."""
        calls = 3
        t1 = self.h.start_callee("uas-answer-200.xml", calls=calls, name="t1-q0.2-answers")
        t2 = self.h.start_callee("uas-reject-503.xml", calls=calls, name="t2-q1.0-503")
        t3 = self.h.start_callee("uas-busy-486.xml", calls=calls, name="t3-q0.5-486")
        redirector = self.h.start_callee("uas-redirect-302-contacts.xml", calls=calls, keys={
            "c1": contact(t1.port, "t1", "0.2"),   # c1, c2 share one Contact header,
            "c2": contact(t2.port, "t2", "1.0"),
            "c3": contact(t3.port, "t3", "0.5"),   # c3 has a header of its own
        })
        self.start_b2bua(route("1", redirector.port))
        # -l 1: one call at a time, so the i-th INVITE of every callee is call i.
        caller = self.h.run_caller("uac-expect-200-via-redirect.xml", calls=calls, rate=10,
                                   limit=1, duration_ms=100, timeout=30)
        self.assertSippsOk(caller, redirector, t1, t2, t3)

        first, second, third = (t.received("INVITE") for t in (t2, t3, t1))
        for i in range(calls):
            self.assertLess(first[i].time, second[i].time, "q=1.0 must be tried before q=0.5")
            self.assertLess(second[i].time, third[i].time, "q=0.5 must be tried before q=0.2")
        # Each target gets the redirect's Request-URI, not the original one.
        self.assertIn("t1@", third[0].request_uri)
        self.assertEqual(caller.received(status=302), [], "the 302 must not be relayed")
        self.assertGreaterEqual(len(caller.received(status=181)), calls, "send_181: true")

        self.assertMetric("b2bua_redirects_received_total", calls, code="302")
        self.assertMetric("b2bua_redirect_targets_total", 2 * calls, outcome="failed")
        self.assertMetric("b2bua_redirect_targets_total", calls, outcome="answered")
        self.assertMetric("b2bua_calls_total", calls, outcome="answered")
        self.assertNoActiveCalls()

    def test_302_chain_followed_to_200(self):
        """302 -> 302 -> 200 through three callees."""
        target = self.h.start_callee("uas-answer-200.xml", calls=1, name="target")
        second = self.h.start_callee("uas-redirect-302-single-contact.xml", calls=1,
                                     keys={"contact": contact(target.port, "target")},
                                     name="second-redirector")
        first = self.h.start_callee("uas-redirect-302-single-contact.xml", calls=1,
                                    keys={"contact": contact(second.port, "second")},
                                    name="first-redirector")
        self.start_b2bua(route("1", first.port))
        caller = self.h.run_caller("uac-expect-200-via-redirect.xml", duration_ms=100)
        self.assertSippsOk(caller, first, second, target)
        self.assertMetric("b2bua_redirects_received_total", 2, code="302")
        self.assertMetric("b2bua_redirect_targets_total", 1, outcome="redirected")
        self.assertMetric("b2bua_redirect_targets_total", 1, outcome="answered")
        self.assertNoActiveCalls()

    def test_retargeted_invite_carries_history_info(self):
        """RFC 7044 by default: the retry names the original target and the new one."""
        target = self.h.start_callee("uas-answer-200.xml", calls=1, name="target")
        redirector = self.h.start_callee("uas-redirect-302-single-contact.xml", calls=1,
                                         keys={"contact": contact(target.port, "target")})
        self.start_b2bua(route("1", redirector.port))
        caller = self.h.run_caller("uac-expect-200-via-redirect.xml", duration_ms=100)
        self.assertSippsOk(caller, redirector, target)
        original = redirector.received("INVITE")[0].request_uri
        retry = target.received("INVITE")[0]
        history = ",".join(retry.header_all("History-Info"))
        self.assertIn("<%s>;index=1" % original, history)
        self.assertIn("target@127.0.0.1:%d" % target.port, history)
        self.assertIsNone(retry.header("Diversion"), "Diversion is off by default")
        self.assertIsNone(redirector.received("INVITE")[0].header("History-Info"),
                          "the first attempt is not retargeted")

    def test_diversion_names_the_original_target_when_configured(self):
        """RFC 5806 for peers that predate History-Info."""
        target = self.h.start_callee("uas-answer-200.xml", calls=1, name="target")
        redirector = self.h.start_callee("uas-redirect-302-single-contact.xml", calls=1,
                                         keys={"contact": contact(target.port, "target")})
        self.start_b2bua(route("1", redirector.port),
                         redirect={"diversion": True, "history_info": False})
        caller = self.h.run_caller("uac-expect-200-via-redirect.xml", duration_ms=100)
        self.assertSippsOk(caller, redirector, target)
        original = redirector.received("INVITE")[0].request_uri
        retry = target.received("INVITE")[0]
        self.assertEqual(retry.header("Diversion"), "<%s>;reason=unconditional" % original)
        self.assertIsNone(retry.header("History-Info"))

    def test_305_use_proxy_retries_the_same_target_through_the_proxy(self):
        """RFC 3261 21.3.6: the Contact of a 305 is a proxy, not a new target."""
        proxy = self.h.start_callee("uas-answer-200.xml", calls=1, name="proxy")
        redirector = self.h.start_callee("uas-use-proxy-305.xml", calls=1,
                                         keys={"contact": "<sip:127.0.0.1:%d>" % proxy.port})
        self.start_b2bua(route("1", redirector.port))
        caller = self.h.run_caller("uac-expect-200-via-redirect.xml", duration_ms=100)
        self.assertSippsOk(caller, redirector, proxy)
        first = redirector.received("INVITE")[0]
        through_proxy = proxy.received("INVITE")[0]
        self.assertEqual(through_proxy.request_uri, first.request_uri, "same target")
        self.assertEqual(through_proxy.header("Route"), "<sip:127.0.0.1:%d;lr>" % proxy.port)
        self.assertEqual(through_proxy.call_id, first.call_id, "same B-leg dialog attempt set")
        self.assertEqual(caller.received(status=305), [], "the 305 must not be relayed")
        self.assertMetric("b2bua_redirects_received_total", 1, code="305")
        self.assertNoActiveCalls()

    def test_chain_longer_than_max_depth_gets_483(self):
        """max_depth 1: the first redirect is followed, the second one is one too many."""
        never = free_port()  # the third hop must never be tried
        second = self.h.start_callee("uas-redirect-302-single-contact.xml", calls=1,
                                     keys={"contact": contact(never, "third")},
                                     name="second-redirector")
        first = self.h.start_callee("uas-redirect-302-single-contact.xml", calls=1,
                                    keys={"contact": contact(second.port, "second")},
                                    name="first-redirector")
        self.start_b2bua(route("1", first.port), redirect={"max_depth": 1})
        caller = self.h.run_caller("uac-expect-483.xml")
        self.assertSippsOk(caller, first, second)
        self.assertMetric("b2bua_redirects_received_total", 2, code="302")
        self.assertMetric("b2bua_redirect_failures_total", 1, reason="depth")
        self.assertNoActiveCalls()

    def test_ping_pong_loop_gets_482(self):
        """A redirects to B, B back to A: A was tried, nothing left but a loop.

        A and B are both redirect targets (the route's next hop hands the call to A), so
        B's Contact is the very URI A was tried at (RFC 3261 19.1.4 comparison)."""
        port_a, port_b = free_port(), free_port()
        a = self.h.start_callee("uas-redirect-302-single-contact.xml", calls=1, port=port_a,
                                keys={"contact": contact(port_b, "b")}, name="a")
        b = self.h.start_callee("uas-redirect-302-single-contact.xml", calls=1, port=port_b,
                                keys={"contact": contact(port_a, "a")}, name="b")
        entry = self.h.start_callee("uas-redirect-302-single-contact.xml", calls=1,
                                    keys={"contact": contact(port_a, "a")}, name="entry")
        self.start_b2bua(route("1", entry.port))
        caller = self.h.run_caller("uac-expect-482.xml")
        self.assertSippsOk(caller, entry, a, b)
        self.assertEqual(len(a.received("INVITE")), 1, "A must not be tried twice")
        self.assertGreater(self.h.metrics().value("b2bua_redirect_loops_detected_total"), 0)
        self.assertMetric("b2bua_redirect_failures_total", 1, reason="loop")
        self.assertGreater(self.h.metrics().value("b2bua_redirect_targets_total",
                                                  outcome="skipped_as_loop"), 0)
        self.assertNoActiveCalls()

    def test_contact_pointing_at_b2bua_skipped_as_loop(self):
        """A Contact naming the b2bua's own address is skipped; the next one answers."""
        b2bua_port = free_port()
        target = self.h.start_callee("uas-answer-200.xml", calls=1, name="target")
        redirector = self.h.start_callee("uas-redirect-302-two-contacts.xml", calls=1, keys={
            "c1": contact(b2bua_port, "self", "1.0"),
            "c2": contact(target.port, "target", "0.5"),
        })
        self.start_b2bua(route("1", redirector.port), port=b2bua_port)
        caller = self.h.run_caller("uac-expect-200-via-redirect.xml", duration_ms=100)
        self.assertSippsOk(caller, redirector, target)
        self.assertMetric("b2bua_redirect_targets_total", 1, outcome="skipped_as_loop")
        self.assertMetric("b2bua_redirect_loops_detected_total", 1)
        self.assertMetric("b2bua_redirect_targets_total", 1, outcome="answered")
        self.assertNoActiveCalls()

    def test_contact_on_denied_cidr_refused_by_policy(self):
        target = self.h.start_callee("uas-answer-200.xml", calls=1, name="target")
        redirector = self.h.start_callee("uas-redirect-302-two-contacts.xml", calls=1, keys={
            "c1": contact(free_port(), "denied", "1.0", host="127.0.0.99"),
            "c2": contact(target.port, "target", "0.5"),
        })
        self.start_b2bua(route("1", redirector.port),
                         redirect={"deny": {"cidrs": ["127.0.0.99/32"]}})
        caller = self.h.run_caller("uac-expect-200-via-redirect.xml", duration_ms=100)
        self.assertSippsOk(caller, redirector, target)
        self.assertMetric("b2bua_redirect_targets_total", 1, outcome="refused_by_policy")
        self.assertMetric("b2bua_redirect_targets_total", 1, outcome="answered")
        self.assertNoActiveCalls()

    def test_tel_contact_rerouted_by_number(self):
        """A tel: Contact has no host: the b2bua routes its number (+4930...) by prefix."""
        target = self.h.start_callee("uas-answer-200.xml", calls=1, name="berlin")
        redirector = self.h.start_callee("uas-redirect-302-single-contact.xml", calls=1,
                                         keys={"contact": "<tel:+4930555001>"})
        self.start_b2bua(route("1", redirector.port), route("4930", target.port))
        caller = self.h.run_caller("uac-expect-200-via-redirect.xml", duration_ms=100)
        self.assertSippsOk(caller, redirector, target)
        self.assertIn("4930555001", target.received("INVITE")[0].request_uri)
        self.assertMetric("b2bua_redirect_targets_total", 1, outcome="answered")
        self.assertNoActiveCalls()

    def test_relay_mode_passes_every_contact_verbatim(self):
        """Per-route redirect.mode relay: the caller gets the 3xx with every Contact as sent."""
        keys = {
            "c1": contact(free_port(), "t1", "0.2"),
            "c2": '"Second, Target" <sip:t2@127.0.0.1:%d;transport=udp>;q=1.0' % free_port(),
            "c3": contact(free_port(), "t3", "0.5") + ";expires=60",
        }
        redirector = self.h.start_callee("uas-redirect-302-contacts.xml", calls=1, keys=keys)
        self.start_b2bua(route("1", redirector.port, redirect={"mode": "relay"}))
        caller = self.h.run_caller("uac-expect-3xx-relayed.xml")
        self.assertSippsOk(caller, redirector)

        sent = redirector.sent(status=302)[0]
        got = caller.received(status=302)
        self.assertEqual(len(got), 1)
        values = lambda m: [v for h in m.header_all("contact") for v in split_header_values(h)]
        self.assertEqual(values(got[0]), values(sent))
        self.assertEqual(values(sent), [keys["c1"], keys["c2"], keys["c3"]])
        self.assertMetric("b2bua_redirects_received_total", 1, code="302")
        self.assertMetric("b2bua_redirects_sent_total", 1)
        self.assertEqual(self.h.metrics().value("b2bua_redirect_targets_total"), 0,
                         "relay mode must not try any target")
        self.assertNoActiveCalls()

    def test_301_cached_second_call_skips_redirector(self):
        """Two calls in a row to the same Request-URI: only the first meets the 301."""
        target = self.h.start_callee("uas-answer-200.xml", calls=2, name="new-home")
        redirector = self.h.start_callee("uas-redirect-301-single-contact.xml", calls=None,
                                         keys={"contact": contact(target.port, "moved")})
        # One shard here; the test below runs two.
        self.start_b2bua(route("1", redirector.port), shards=1)
        caller = self.h.run_caller("uac-expect-200-via-redirect.xml", calls=2, limit=1,
                                   duration_ms=100, timeout=20)
        self.assertSippsOk(caller, target)
        self.assertEqual(redirector.stop(), 0)
        self.assertEqual(len(redirector.calls_received()), 1,
                         "the second call must go straight to the cached target")
        self.assertMetric("b2bua_redirect_cache_hits_total", 1)
        self.assertMetric("b2bua_redirects_received_total", 1, code="301")
        self.assertNoActiveCalls()

    def test_301_learned_on_one_shard_serves_every_shard(self):
        """Six calls in a row to one Request-URI through two shards: the Call-IDs spread
        the calls over both, and only the first meets the 301 (the shards share it)."""
        target = self.h.start_callee("uas-answer-200.xml", calls=6, name="new-home")
        redirector = self.h.start_callee("uas-redirect-301-single-contact.xml", calls=None,
                                         keys={"contact": contact(target.port, "moved")})
        self.start_b2bua(route("1", redirector.port), shards=2)
        caller = self.h.run_caller("uac-expect-200-via-redirect.xml", calls=6, limit=1,
                                   duration_ms=100, timeout=30)
        self.assertSippsOk(caller, target)
        self.assertEqual(redirector.stop(), 0)
        self.assertEqual(len(redirector.calls_received()), 1,
                         "every call after the first must go straight to the cached target")
        self.assertMetric("b2bua_redirect_cache_hits_total", 5)
        self.assertMetric("b2bua_redirects_received_total", 1, code="301")
        self.assertNoActiveCalls()

    def test_cancel_while_second_target_rings_gets_487_no_bye(self):
        busy = self.h.start_callee("uas-busy-486.xml", calls=1, name="t1-busy")
        ringing = self.h.start_callee("uas-ring-forever.xml", calls=1, name="t2-rings")
        redirector = self.h.start_callee("uas-redirect-302-two-contacts.xml", calls=1, keys={
            "c1": contact(busy.port, "t1", "1.0"),
            "c2": contact(ringing.port, "t2", "0.5"),
        })
        self.start_b2bua(route("1", redirector.port))
        caller = self.h.run_caller("uac-cancel-before-answer.xml")
        self.assertSippsOk(caller, redirector, busy, ringing)
        self.assertEqual(len(ringing.received("CANCEL")), 1)
        self.assertEqual(busy.received("BYE"), [])
        self.assertEqual(ringing.received("BYE"), [])
        self.assertMetric("b2bua_redirect_targets_total", 1, outcome="failed")
        self.assertMetric("b2bua_redirect_targets_total", 1, outcome="cancelled")
        self.assertNoActiveCalls()

    def test_all_targets_fail_best_response_486(self):
        """Exhausted: the caller gets the best final response (RFC 3261 16.7): 486 over 503."""
        unavailable = self.h.start_callee("uas-reject-503.xml", calls=1, name="t1-503")
        busy = self.h.start_callee("uas-busy-486.xml", calls=1, name="t2-486")
        redirector = self.h.start_callee("uas-redirect-302-two-contacts.xml", calls=1, keys={
            "c1": contact(unavailable.port, "t1", "1.0"),
            "c2": contact(busy.port, "t2", "0.5"),
        })
        self.start_b2bua(route("1", redirector.port))
        caller = self.h.run_caller("uac-expect-486.xml")
        self.assertSippsOk(caller, redirector, unavailable, busy)
        self.assertMetric("b2bua_redirect_targets_total", 2, outcome="failed")
        self.assertMetric("b2bua_redirect_failures_total", 1, reason="exhausted")
        self.assertNoActiveCalls()

    def test_route_action_redirect_answers_302(self):
        """A route with action: redirect answers the caller itself with its Contacts."""
        listed = '<sip:1001@127.0.0.1:%d>;q=0.9' % free_port()
        self.start_b2bua({"prefix": "800", "action": "redirect", "redirect_code": 302,
                          "contacts": [listed]})
        caller = self.h.run_caller("uac-expect-3xx-relayed.xml", service="800555")
        self.assertSippOk(caller)
        got = caller.received(status=302)[0]
        self.assertEqual([v for h in got.header_all("contact") for v in split_header_values(h)],
                         [listed])
        self.assertMetric("b2bua_redirects_sent_total", 1)
        self.assertNoActiveCalls()


if __name__ == "__main__":
    main()
