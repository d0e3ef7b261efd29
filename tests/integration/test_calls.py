#!/usr/bin/env python3
"""B2BUA core, end to end: SIPp caller -> b2bua -> SIPp callee(s) on 127.0.0.1.

    python3 tests/integration/test_calls.py --binary build/release/b2bua/b2bua [-k name]

Every test starts its own b2bua (2 shards) and SIPp processes on free ports; the
scenarios are in tests/sipp and are named after their outcome. Skips when sipp is
missing or no binary is given. See harness.py for logs and environment variables.
"""

import time
import os
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (B2buaTestCase, free_port, main, route, tag_of, udp_port_bound,  # noqa: E402
                     uri_hostport, via_sent_by)
from harness import (SIPP_BUFF_SIZE, SIPP_DIR, SIPP_RC_BIND_FAILED, Sipp,  # noqa: E402
                     next_hop, sipp_path)

# -- IPv6 on ::1 ----------------------------------------------------------------------
# The harness puts every process on 127.0.0.1; these few helpers run one call on ::1.

IPV6_LOOPBACK = "::1"
_v6_ports = set()


def ipv6_loopback_available():
    """True when a UDP socket can be bound to [::1] (IPv6 enabled on lo)."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind((IPV6_LOOPBACK, 0))
        return True
    except OSError:
        return False


def free_port_v6():
    """A port on [::1] that is free for both UDP and TCP right now (bind port 0)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as udp:
            udp.bind((IPV6_LOOPBACK, 0))
            port = udp.getsockname()[1]
            with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((IPV6_LOOPBACK, port))
                except OSError:
                    continue
        if port not in _v6_ports:
            _v6_ports.add(port)
            return port
    raise RuntimeError("no free port on [::1] found")


def v6_hostport(port):
    return "[%s]:%d" % (IPV6_LOOPBACK, port)


class CoreCallTest(B2buaTestCase):
    """One caller/callee scenario pair per test, routed by prefix "1" (caller dials 1000)."""

    def start_with_route(self, *callees, **config):
        """Starts the b2bua with route "1" -> the callees as serial next hops."""
        cfg = self.h.config(routes=[route("1", *[c.port for c in callees])], **config)
        return self.h.start_b2bua(cfg)

    # -- scenario pairs -------------------------------------------------------------

    def test_basic_call_caller_hangup(self):
        callee = self.h.start_callee("uas-answer-200.xml", calls=1)
        self.start_with_route(callee)
        caller = self.h.run_caller("uac-basic-call-caller-hangup.xml", duration_ms=200)
        self.assertSippsOk(caller, callee)
        # ACK and BYE crossed end to end (the callee's ACK is optional in its scenario).
        self.assertEqual(len(callee.received("ACK")), 1)
        self.assertEqual(len(callee.received("BYE")), 1)
        self.assertMetric("b2bua_calls_total", 1, outcome="answered")
        self.assertNoActiveCalls()

    def test_basic_call_callee_hangup(self):
        callee = self.h.start_callee("uas-answer-then-hangup.xml", calls=1, duration_ms=200)
        self.start_with_route(callee)
        caller = self.h.run_caller("uac-basic-call-callee-hangup.xml")
        self.assertSippsOk(caller, callee)
        self.assertEqual(len(caller.received("BYE")), 1)
        self.assertMetric("b2bua_calls_total", 1, outcome="answered")
        self.assertNoActiveCalls()

    def test_cancel_before_answer_gets_487(self):
        callee = self.h.start_callee("uas-ring-forever.xml", calls=1)
        self.start_with_route(callee)
        caller = self.h.run_caller("uac-cancel-before-answer.xml")
        self.assertSippsOk(caller, callee)
        self.assertEqual(len(callee.received("CANCEL")), 1)
        self.assertEqual(callee.received("BYE"), [])
        self.assertNoActiveCalls()

    def test_busy_486_relayed_to_caller(self):
        callee = self.h.start_callee("uas-busy-486.xml", calls=1)
        self.start_with_route(callee)
        caller = self.h.run_caller("uac-expect-486.xml")
        self.assertSippsOk(caller, callee)
        self.assertNoActiveCalls()

    def test_183_with_sdp_relayed_then_200(self):
        callee = self.h.start_callee("uas-183-sdp-then-200.xml", calls=1)
        self.start_with_route(callee)
        caller = self.h.run_caller("uac-basic-call-caller-hangup.xml", duration_ms=100)
        self.assertSippsOk(caller, callee)
        early = caller.received(status=183)
        self.assertEqual(len(early), 1, "the caller did not get the 183")
        self.assertIn("s=early-media", early[0].body, "the 183 lost its SDP")
        self.assertNoActiveCalls()

    def test_reinvite_from_caller(self):
        callee = self.h.start_callee("uas-accept-reinvite.xml", calls=1)
        self.start_with_route(callee)
        caller = self.h.run_caller("uac-reinvite-from-caller.xml", duration_ms=100)
        self.assertSippsOk(caller, callee)
        invites = callee.received("INVITE")
        self.assertEqual(len(invites), 2)
        self.assertIn("a=sendonly", invites[1].body, "re-INVITE SDP not relayed")
        answers = [m for m in caller.received(status=200) if m.cseq_method == "INVITE"]
        self.assertIn("a=recvonly", answers[-1].body, "re-INVITE answer SDP not relayed")
        self.assertNoActiveCalls()

    def test_info_in_dialog(self):
        callee = self.h.start_callee("uas-accept-info.xml", calls=1)
        self.start_with_route(callee)
        caller = self.h.run_caller("uac-info-in-dialog.xml", duration_ms=100)
        self.assertSippsOk(caller, callee)
        info = callee.received("INFO")
        self.assertEqual(len(info), 1)
        self.assertEqual(info[0].header("content-type"), "application/dtmf-relay")
        self.assertNoActiveCalls()

    # -- behaviour --------------------------------------------------------------------

    def test_topology_hiding_on_the_wire(self):
        """No Call-ID, tag, Via sent-by or Contact of one side reaches the other."""
        callee = self.h.start_callee("uas-answer-then-hangup.xml", calls=1, duration_ms=200)
        self.start_with_route(callee)
        caller = self.h.run_caller("uac-basic-call-callee-hangup.xml")
        self.assertSippsOk(caller, callee)

        a_invite = caller.sent("INVITE")[0]
        b_invite = callee.received("INVITE")[0]
        b_answer = callee.sent(status=200)[0]
        b_bye = callee.sent("BYE")[0]
        caller_secrets = {
            "caller Call-ID": a_invite.call_id,
            "caller From tag": tag_of(a_invite.header("from")),
            "caller Via sent-by": via_sent_by(a_invite.header("via")),
            "caller Contact host:port": uri_hostport(a_invite.header("contact")),
        }
        callee_secrets = {
            "callee To tag": tag_of(b_answer.header("to")),
            "callee Via sent-by (its BYE)": via_sent_by(b_bye.header("via")),
            "callee Contact host:port": uri_hostport(b_answer.header("contact")),
            # The B-leg Call-ID is the b2bua's, but it must stay on the B side too.
            "B-leg Call-ID": b_invite.call_id,
        }
        for label, secret in caller_secrets.items():
            self.assertTrue(secret, label)
            for m in callee.received():
                self.assertNotIn(secret, m.text, "%s %r leaked to the callee in:\n%s"
                                 % (label, secret, m.text))
        for label, secret in callee_secrets.items():
            self.assertTrue(secret, label)
            for m in caller.received():
                self.assertNotIn(secret, m.text, "%s %r leaked to the caller in:\n%s"
                                 % (label, secret, m.text))
        self.assertNoActiveCalls()

    def test_route_failover_503_then_200(self):
        first = self.h.start_callee("uas-reject-503.xml", calls=1)
        second = self.h.start_callee("uas-answer-200.xml", calls=1)
        self.start_with_route(first, second)
        caller = self.h.run_caller("uac-basic-call-caller-hangup.xml", duration_ms=100)
        self.assertSippsOk(caller, first, second)
        self.assertTrue(first.received("INVITE")[0].time < second.received("INVITE")[0].time)
        self.assertEqual(caller.received(status=503), [], "the 503 must not reach the caller")
        self.assertMetric("b2bua_calls_total", 1, outcome="answered")
        self.assertNoActiveCalls()

    def test_no_route_unreachable_next_hop_gets_408_or_503(self):
        """No route matches 9..., so the Request-URI's host:port (nothing there) is used."""
        dead = free_port()  # nothing listens here
        self.h.start_b2bua(self.h.config(routes=[], timers={"t1": "100ms"}))
        # Timer B = 64*T1 = 6.4 s at most before the b2bua gives up.
        caller = self.h.run_caller("uac-expect-408-or-503.xml", service="9000",
                                   dest="127.0.0.1:%d" % dead, timeout=20)
        self.assertSippOk(caller)
        self.assertNoActiveCalls(wait=8)

    def test_lossy_100_calls_all_complete(self):
        """10 % loss on both SIPp sides: retransmissions recover every call.

        T1 = 100 ms makes the b2bua's Timers F and J 6.4 s; the callee lingers 7 s after
        each call (timewait) so it still answers every BYE retransmission it may need, and
        the caller retransmits its BYE from 100 ms so that every retransmission still finds
        the b2bua's transaction.
        """
        callee = self.h.start_callee("uas-answer-200.xml", calls=100, duration_ms=7000,
                                     lost=10, timeout=60)
        self.start_with_route(callee, timers={"t1": "100ms"})
        caller = self.h.run_caller("uac-basic-call-caller-hangup.xml", calls=100, rate=50,
                                   duration_ms=1000, lost=10, timeout=60)
        self.assertSippsOk(caller, callee)
        self.assertMetric("b2bua_calls_total", 100, outcome="answered")
        self.assertNoActiveCalls(wait=10)

    def test_options_ping_answered_200(self):
        self.h.start_b2bua(self.h.config(routes=[]))
        caller = self.h.run_caller("uac-options-ping.xml")
        self.assertSippOk(caller)

    def test_register_answered_405_with_allow(self):
        self.h.start_b2bua(self.h.config(routes=[]))
        caller = self.h.run_caller("uac-register-405.xml")
        self.assertSippOk(caller)
        allow = caller.received(status=405)[0].header("allow")
        self.assertIn("INVITE", allow)

    def test_2000_calls_then_no_active_calls(self):
        calls = 2000
        callee = self.h.start_callee("uas-answer-200.xml", calls=calls, timeout=60, trace=False)
        self.start_with_route(callee)
        caller = self.h.run_caller("uac-basic-call-caller-hangup.xml", calls=calls, rate=250,
                                   limit=500, timeout=60, trace=False)
        self.assertSippsOk(caller, callee)
        self.assertMetric("b2bua_calls_total", calls, outcome="answered", wait=5)
        self.assertNoActiveCalls(wait=10)

    def test_caller_over_tcp_callee_over_udp(self):
        """The caller's dialog rides one TCP connection; responses and in-dialog requests
        from the callee side go back on it (RFC 3261 18.2.2)."""
        callee = self.h.start_callee("uas-answer-then-hangup.xml", calls=3)
        self.start_with_route(callee)
        caller = self.h.run_caller("uac-basic-call-callee-hangup.xml", calls=3, rate=5,
                                   extra=["-t", "t1"])
        self.assertSippsOk(caller, callee)
        self.assertMetric("b2bua_calls_total", 3, outcome="answered", wait=5)
        self.assertNoActiveCalls()

    def test_100k_calls_leave_no_call_and_flat_memory(self):
        """100,000 calls in five rounds of 20,000: nothing stays behind, memory levels off.

        The allocator and the hash tables grow during the first rounds (each later round
        adds less); over the last 40,000 calls the resident set may grow by less than
        8 MiB, 200 bytes a call, while a leaked call object (kilobytes) would add 80 MiB or
        more."""
        rounds, per_round = 5, 20000
        callee = self.h.start_callee("uas-answer-200.xml", calls=rounds * per_round,
                                     timeout=300, trace=False)
        # T1 = 100 ms: transactions linger 64*T1 = 6.4 s after their call instead of 32 s,
        # so each measurement sees only what the calls left behind.
        self.start_with_route(callee, timers={"t1": "100ms", "t2": "4s", "t4": "5s"})
        rss = []
        for _ in range(rounds):
            caller = self.h.run_caller("uac-basic-call-caller-hangup.xml", calls=per_round,
                                       rate=2000, limit=2000, timeout=90, trace=False)
            self.assertSippOk(caller)
            self.assertNoActiveCalls(wait=10)
            self.assertMetric("b2bua_transactions_active", 0, wait=20)
            rss.append(self.h.b2bua.rss_kib())
        self.assertMetric("b2bua_calls_total", rounds * per_round, outcome="answered")
        self.assertLess(rss[-1] - rss[-3], 8 * 1024,
                        "RSS after each round of %d calls: %s KiB" % (per_round, rss))

    def test_reinvite_from_callee(self):
        """The callee re-INVITEs inside the dialog it answered; the caller accepts it."""
        callee = self.h.start_callee("uas-answer-then-reinvite.xml", calls=1, duration_ms=100)
        self.start_with_route(callee)
        caller = self.h.run_caller("uac-accept-reinvite-then-hangup.xml", duration_ms=100)
        self.assertSippsOk(caller, callee)
        invites = caller.received("INVITE")
        self.assertEqual(len(invites), 1, "the callee's re-INVITE did not reach the caller")
        self.assertIn("a=sendonly", invites[0].body, "re-INVITE SDP not relayed")
        answers = [m for m in callee.received(status=200) if m.cseq_method == "INVITE"]
        self.assertTrue(answers, "the callee got no 200 to its re-INVITE")
        self.assertIn("a=recvonly", answers[-1].body, "re-INVITE answer SDP not relayed")
        self.assertEqual(len(caller.received("ACK")), 1, "the re-INVITE's ACK not relayed")
        self.assertEqual(len(callee.received("BYE")), 1)
        self.assertMetric("b2bua_calls_total", 1, outcome="answered")
        self.assertNoActiveCalls()

    # -- IPv6 ---------------------------------------------------------------------------

    def start_sipp_v6(self, name, scenario, tail, timeout=15, wait_bound=False):
        """Starts SIPp on [::1] (the harness's helpers use 127.0.0.1); returns a Sipp.

        Foreground, stdin from /dev/null, -nostdin, logs in the test's directory. The
        process joins self.h.sipps, so it is killed and reported like the others.
        """
        path = os.path.join(SIPP_DIR, scenario)
        for _ in range(3):
            port = free_port_v6()
            tag = "v6-%02d-%s" % (len(self.h.sipps) + 1, name)
            files = {k: self.h.path("%s.%s" % (tag, k)) for k in ("out", "err", "msg")}
            args = [sipp_path(), "-sf", path, "-i", IPV6_LOOPBACK, "-p", str(port),
                    "-buff_size", SIPP_BUFF_SIZE, "-nostdin",
                    "-timeout", "%ds" % timeout, "-timeout_error",
                    "-trace_err", "-error_file", files["err"],
                    "-trace_msg", "-message_file", files["msg"]] + list(tail)
            with open(files["out"], "w") as out:
                out.write("$ %s\n" % " ".join(args))
                out.flush()
                popen = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, cwd=self.h.dir)
            sipp = Sipp(name, scenario, port, popen, files, timeout)
            self.h.sipps.append(sipp)
            self.addCleanup(sipp.kill)
            if not wait_bound:
                return sipp
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and sipp.running():
                bound = udp_port_bound(port, v6=True)
                if bound:
                    return sipp
                if bound is None:  # no /proc: give it a moment
                    time.sleep(0.3)
                    return sipp
                time.sleep(0.02)
            if sipp.running():
                self.fail("%s did not bind UDP [::1]:%d" % (name, port))
            if sipp.wait() != SIPP_RC_BIND_FAILED:
                self.fail("%s exited with %s at start-up:\n%s" % (name, sipp.rc, sipp.report()))
        self.fail("%s could not bind on [::1] after 3 attempts" % name)

    def start_b2bua_v6(self, config_path):
        """Starts the b2bua with SIP on [::1]; /metrics and /readyz stay on 127.0.0.1.

        start_b2bua() passes --listen=127.0.0.1:PORT; a later occurrence of an absl flag
        wins, so the extra --listen=[::1]:PORT is the one the b2bua binds.
        """
        for attempt in range(3):
            port = free_port_v6()
            try:
                return self.h.start_b2bua(config_path, port=port,
                                          extra_args=["--listen=%s" % v6_hostport(port)])
            except AssertionError:
                b = self.h.b2bua
                if attempt == 2 or b is None or b.running():
                    raise
                with open(b.log, errors="replace") as fh:
                    if "in use" not in fh.read().lower():
                        raise

    def test_ipv6_basic_call(self):
        """Caller, b2bua and callee all on [::1]: the call completes and the b2bua's own
        Via and Contact carry its bracketed IPv6 address."""
        if not ipv6_loopback_available():
            self.skipTest("IPv6 loopback ::1 is not available")
        callee = self.start_sipp_v6("callee-uas-answer-200", "uas-answer-200.xml",
                                    ["-m", "1", "-d", "0"], timeout=30, wait_bound=True)
        cfg = self.h.config(routes=[{"prefix": "1",
                                     "next_hops": [next_hop(callee.port, host="[::1]")]}])
        b2bua = self.start_b2bua_v6(cfg)
        b2bua_v6 = v6_hostport(b2bua.port)
        for _ in range(2):  # once more if its port went in the meantime
            caller = self.start_sipp_v6(
                "caller-uac-basic-call-caller-hangup", "uac-basic-call-caller-hangup.xml",
                ["-s", "1000", "-m", "1", "-r", "10", "-d", "100", "-key", "dest", b2bua_v6,
                 b2bua_v6])
            if caller.wait() != SIPP_RC_BIND_FAILED:
                break
        self.assertSippsOk(caller, callee)
        invite = callee.received("INVITE")[0]
        self.assertEqual(via_sent_by(invite.header("via")), b2bua_v6)
        self.assertEqual(uri_hostport(invite.header("contact")), b2bua_v6)
        self.assertEqual(len(callee.received("BYE")), 1)
        self.assertEqual(uri_hostport(caller.received(status=200)[0].header("contact")),
                         b2bua_v6)
        self.assertMetric("b2bua_calls_total", 1, outcome="answered")
        self.assertNoActiveCalls()

if __name__ == "__main__":
    main()
