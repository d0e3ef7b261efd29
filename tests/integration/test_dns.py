#!/usr/bin/env python3
"""Next hops and redirect targets named by host name, end to end (RFC 3263 over c-ares).

    python3 tests/integration/test_dns.py --binary build/release/b2bua/b2bua [-k name]

Every test starts its own dnsmasq on 127.0.0.1 (a free port) serving example.test:
trunk.example.test and moved.example.test are 127.0.0.1, every other name under
example.test is NXDOMAIN. The b2bua asks it through --dns_server; the SIPp callees
listen on 127.0.0.1, so a call only completes when the b2bua really resolved the name.
Skips when /usr/sbin/dnsmasq (Debian package dnsmasq-base) or sipp is missing, or no
binary is given. See harness.py for logs and environment variables.
"""

import ctypes
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (LOOPBACK, B2buaTestCase, _tail, free_port, main,  # noqa: E402
                     route)

DNSMASQ = "/usr/sbin/dnsmasq"
DNS_READY_TIMEOUT = 5.0
PR_SET_PDEATHSIG = 1


def _die_with_parent():
    """preexec_fn: the kernel kills dnsmasq if the test process dies first."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


def dns_query(name, qtype=1):
    """A wire-format query for `name` (type A by default) with a random id."""
    qid = random.randrange(1 << 16)
    out = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode("ascii")
    return qid, out + b"\x00" + struct.pack("!HH", qtype, 1)


def dns_ask(port, name, timeout=0.2):
    """(rcode, answer count) of an A query for `name` at 127.0.0.1:port; None: no answer."""
    qid, query = dns_query(name)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.settimeout(timeout)
        sock.sendto(query, (LOOPBACK, port))
        reply = sock.recv(512)
    except OSError:  # timeout, or ICMP port unreachable before dnsmasq has bound
        return None
    finally:
        sock.close()
    if len(reply) < 12:
        return None
    rid, flags, _, ancount, _, _ = struct.unpack("!HHHHHH", reply[:12])
    if rid != qid:
        return None
    return flags & 0x000F, ancount


class DnsTest(B2buaTestCase):
    """The caller dials 1000; route "1" leads to a callee or a redirector."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if not os.access(DNSMASQ, os.X_OK):
            raise unittest.SkipTest("%s is not installed (Debian package dnsmasq-base)" % DNSMASQ)

    def setUp(self):
        super().setUp()
        self.dnsmasq, self.dns_port = self.start_dnsmasq()
        # Runs before the harness cleanup (LIFO), so dnsmasq is gone whatever happens.
        self.addCleanup(self.stop_dnsmasq)

    # -- dnsmasq --------------------------------------------------------------------

    def dnsmasq_args(self, port):
        args = [DNSMASQ, "--no-daemon", "--port=%d" % port, "--listen-address=%s" % LOOPBACK,
                "--bind-interfaces", "--no-resolv", "--no-hosts", "--conf-file=/dev/null",
                "--pid-file=%s" % self.h.path("dnsmasq-%d.pid" % port),
                "--log-queries", "--log-facility=-",
                "--local=/example.test/",
                "--host-record=trunk.example.test,127.0.0.1",
                "--host-record=moved.example.test,127.0.0.1"]
        if os.geteuid() == 0:
            # As root dnsmasq would switch to "nobody" and lose its pid file.
            args += ["--user=root", "--group=root"]
        return args

    def start_dnsmasq(self):
        """Starts dnsmasq on a free port and polls until it answers; (Popen, port)."""
        for _ in range(3):
            port = free_port()
            log = self.h.path("dnsmasq-%d.log" % port)
            with open(log, "w") as out:
                out.write("$ %s\n" % " ".join(self.dnsmasq_args(port)))
                out.flush()
                proc = subprocess.Popen(self.dnsmasq_args(port), stdin=subprocess.DEVNULL,
                                        stdout=out, stderr=subprocess.STDOUT, cwd=self.h.dir,
                                        preexec_fn=_die_with_parent)
            # Listed with the harness helpers: its log is printed when a test fails.
            self.h.others.append(("dnsmasq", proc, log))
            deadline = time.monotonic() + DNS_READY_TIMEOUT
            while time.monotonic() < deadline and proc.poll() is None:
                answer = dns_ask(port, "trunk.example.test")
                if answer is not None:
                    rcode, ancount = answer
                    if rcode != 0 or ancount < 1:
                        raise AssertionError("dnsmasq answered trunk.example.test with rcode "
                                             "%d, %d answers\n%s" % (rcode, ancount, _tail(log)))
                    return proc, port
                time.sleep(0.05)
            if proc.poll() is None:
                raise AssertionError("dnsmasq did not answer within %.0f s\n%s"
                                     % (DNS_READY_TIMEOUT, _tail(log)))
            if "in use" not in _tail(log).lower():
                raise AssertionError("dnsmasq exited with %s\n%s" % (proc.returncode, _tail(log)))
        raise AssertionError("dnsmasq could not bind after 3 attempts")

    def stop_dnsmasq(self):
        proc = self.dnsmasq
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def dns_log(self):
        with open(self.h.path("dnsmasq-%d.log" % self.dns_port), errors="replace") as fh:
            return fh.read()

    # -- the b2bua ------------------------------------------------------------------

    def start_b2bua(self, *routes, **config):
        return self.h.start_b2bua(self.h.config(routes=list(routes), **config),
                                  extra_args=["--dns_server=%s:%d" % (LOOPBACK, self.dns_port)])

    # -- tests ----------------------------------------------------------------------

    def test_next_hop_named_by_host_basic_call(self):
        """Route next hop sip:trunk.example.test:PORT: resolved, the call goes through."""
        callee = self.h.start_callee("uas-answer-200.xml", calls=1, name="trunk")
        self.start_b2bua({"prefix": "1",
                          "next_hops": ["sip:trunk.example.test:%d" % callee.port]})
        caller = self.h.run_caller("uac-basic-call-caller-hangup.xml", duration_ms=200)
        self.assertSippsOk(caller, callee)
        self.assertEqual(len(callee.received("INVITE")), 1)
        self.assertEqual(len(callee.received("ACK")), 1)
        self.assertEqual(len(callee.received("BYE")), 1)
        self.assertIn("trunk.example.test", self.dns_log(), "the b2bua asked dnsmasq")
        self.assertMetric("b2bua_calls_total", 1, outcome="answered")
        self.assertNoActiveCalls()

    def test_302_contact_named_by_host_followed_to_200(self):
        """Contact <sip:bob@moved.example.test:PORT>: resolved, the target answers."""
        target = self.h.start_callee("uas-answer-200.xml", calls=1, name="moved")
        redirector = self.h.start_callee(
            "uas-redirect-302-single-contact.xml", calls=1,
            keys={"contact": "<sip:bob@moved.example.test:%d>" % target.port})
        self.start_b2bua(route("1", redirector.port))
        caller = self.h.run_caller("uac-expect-200-via-redirect.xml", duration_ms=100)
        self.assertSippsOk(caller, redirector, target)
        invites = target.received("INVITE")
        self.assertEqual(len(invites), 1)
        self.assertIn("bob@moved.example.test", invites[0].request_uri,
                      "the target gets the Contact as Request-URI")
        self.assertEqual(caller.received(status=302), [], "the 302 must not be relayed")
        self.assertMetric("b2bua_redirects_received_total", 1, code="302")
        self.assertMetric("b2bua_redirect_targets_total", 1, outcome="answered")
        self.assertMetric("b2bua_calls_total", 1, outcome="answered")
        self.assertNoActiveCalls()

    def test_nxdomain_contact_skipped_next_contact_answers(self):
        """q=1.0 names nowhere.example.test (NXDOMAIN), q=0.5 moved.example.test answers."""
        target = self.h.start_callee("uas-answer-200.xml", calls=1, name="moved")
        redirector = self.h.start_callee("uas-redirect-302-two-contacts.xml", calls=1, keys={
            "c1": "<sip:ghost@nowhere.example.test:%d>;q=1.0" % free_port(),
            "c2": "<sip:bob@moved.example.test:%d>;q=0.5" % target.port,
        })
        self.start_b2bua(route("1", redirector.port))
        caller = self.h.run_caller("uac-expect-200-via-redirect.xml", duration_ms=100)
        self.assertSippsOk(caller, redirector, target)
        self.assertEqual(len(target.received("INVITE")), 1)
        self.assertIn("nowhere.example.test", self.dns_log(), "the first Contact was looked up")
        failed = self.h.metrics().value("b2bua_redirect_targets_total", outcome="failed")
        self.assertGreaterEqual(failed, 1, "the NXDOMAIN target counts as failed")
        self.assertMetric("b2bua_redirect_targets_total", 1, outcome="answered")
        self.assertMetric("b2bua_calls_total", 1, outcome="answered")
        self.assertNoActiveCalls()


if __name__ == "__main__":
    main()
