#!/usr/bin/env python3
"""Metrics, end to end: a real Prometheus server scrapes the b2bua during redirect calls.

    python3 tests/integration/test_prometheus.py --binary build/release/b2bua/b2bua [-k name]

Needs /usr/bin/prometheus and /usr/bin/promtool (Debian package prometheus) besides
sipp; skips with a message when one is missing.
"""

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (B2buaTestCase, LOOPBACK, contact, free_port, main,  # noqa: E402
                     route)

PROMETHEUS = shutil.which(os.environ.get("PROMETHEUS") or "prometheus")
PROMTOOL = shutil.which(os.environ.get("PROMTOOL") or "promtool")
_http = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class PrometheusTest(B2buaTestCase):

    def start_redirect_traffic(self, answered_calls, loop_calls):
        """Route 1: 302 with three Contacts (503, 486, 200); route 2: a ping-pong loop."""
        n, m = answered_calls, loop_calls
        self.loopers = []
        t1 = self.h.start_callee("uas-answer-200.xml", calls=n, name="t1-answers")
        t2 = self.h.start_callee("uas-reject-503.xml", calls=n, name="t2-503")
        t3 = self.h.start_callee("uas-busy-486.xml", calls=n, name="t3-486")
        redirector = self.h.start_callee("uas-redirect-302-contacts.xml", calls=n, keys={
            "c1": contact(t1.port, "t1", "0.2"),
            "c2": contact(t2.port, "t2", "1.0"),
            "c3": contact(t3.port, "t3", "0.5"),
        })
        callees = [t1, t2, t3, redirector]
        routes = [route("1", redirector.port)]
        if m:
            port_a, port_b = free_port(), free_port()
            # Run until stopped: how often A and B are asked depends on how the b2bua
            # compares URIs; their traces tell how many 302s they sent.
            a = self.h.start_callee("uas-redirect-302-single-contact.xml", calls=None,
                                    port=port_a, keys={"contact": contact(port_b, "b")},
                                    name="loop-a")
            b = self.h.start_callee("uas-redirect-302-single-contact.xml", calls=None,
                                    port=port_b, keys={"contact": contact(port_a, "a")},
                                    name="loop-b")
            # The route's next hop hands the call to A, so A and B are both redirect
            # targets and B's Contact is exactly the URI A was tried at: a loop.
            entry = self.h.start_callee("uas-redirect-302-single-contact.xml", calls=None,
                                        keys={"contact": contact(port_a, "a")},
                                        name="loop-entry")
            self.loopers = [entry, a, b]
            routes.append(route("2", entry.port))
        self.h.start_b2bua(self.h.config(routes=routes))
        return callees

    def start_prometheus(self, target_port):
        if not PROMETHEUS:
            self.skipTest("prometheus is not installed (Debian package prometheus)")
        port = free_port()
        config = self.h.path("prometheus.yml")
        with open(config, "w") as fh:
            fh.write("global:\n"
                     "  scrape_interval: 1s\n"
                     "  scrape_timeout: 1s\n"
                     "scrape_configs:\n"
                     "  - job_name: b2bua\n"
                     "    static_configs:\n"
                     "      - targets: [\"%s:%d\"]\n" % (LOOPBACK, target_port))
        self.h.start_process("prometheus", [
            PROMETHEUS, "--config.file=" + config,
            "--storage.tsdb.path=" + self.h.path("prometheus-data"),
            "--web.listen-address=%s:%d" % (LOOPBACK, port),
            "--web.enable-lifecycle", "--log.level=warn"])
        base = "http://%s:%d" % (LOOPBACK, port)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with _http.open(base + "/-/ready", timeout=1) as resp:
                    if resp.status == 200:
                        return base
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.2)
        self.fail("prometheus not ready after 30 s")

    def query(self, base, expr):
        """Value of an instant query, or None when it has no sample (yet)."""
        url = base + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with _http.open(url, timeout=5) as resp:
            doc = json.load(resp)
        self.assertEqual(doc.get("status"), "success", doc)
        result = doc["data"]["result"]
        if not result:
            return None
        return sum(float(r["value"][1]) for r in result)

    def wait_query(self, base, expr, expected, timeout=20):
        deadline = time.monotonic() + timeout
        got = None
        while time.monotonic() < deadline:
            got = self.query(base, expr)
            if got == expected:
                return
            time.sleep(0.5)
        self.fail("Prometheus %s = %s after %d s, expected %s" % (expr, got, timeout, expected))

    def test_prometheus_scrapes_redirect_counters(self):
        """Prometheus stores what /metrics says; then the values are the expected ones.

        Plumbing first (Prometheus == a direct scrape), semantics second, so a failure
        says which side is wrong.
        """
        answered, loops = 4, 2
        callees = self.start_redirect_traffic(answered, loops)
        base = self.start_prometheus(self.h.b2bua.metrics_port)
        ok = self.h.run_caller("uac-expect-200-via-redirect.xml", calls=answered, rate=10,
                               duration_ms=100, timeout=30)
        looped = self.h.run_caller("uac-expect-482.xml", calls=loops, rate=10, service="2000",
                                   timeout=30)
        self.assertSippOk(ok)
        self.assertNoActiveCalls()

        direct = self.h.metrics()
        expressions = {
            'sum(b2bua_redirects_received_total{code="302"})':
                direct.value("b2bua_redirects_received_total", code="302"),
            "sum(b2bua_redirect_loops_detected_total)":
                direct.value("b2bua_redirect_loops_detected_total"),
            "sum(b2bua_redirect_failures_total)":
                direct.value("b2bua_redirect_failures_total"),
            'sum(b2bua_redirect_failures_total{reason="loop"})':
                direct.value("b2bua_redirect_failures_total", reason="loop"),
            'sum(b2bua_redirect_targets_total{outcome="answered"})':
                direct.value("b2bua_redirect_targets_total", outcome="answered"),
            'up{job="b2bua"}': 1,
        }
        for expr, expected in expressions.items():
            self.wait_query(base, expr, expected)

        # Each answered call meets one 302; each loop call the 302s entry, A and B sent.
        loop_302s = 0
        for looper in self.loopers:
            self.assertEqual(looper.stop(), 0, "%s failed a call" % looper.describe())
            # One per INVITE transaction: retransmitted 302s are not counted twice.
            loop_302s += len({(m.call_id, m.header("cseq"), m.header("via"))
                              for m in looper.sent(status=302)})
        self.assertGreaterEqual(loop_302s, 2 * loops)
        for name, labels, expected in [
                ("b2bua_redirects_received_total", {"code": "302"}, answered + loop_302s),
                ("b2bua_redirect_targets_total", {"outcome": "answered"}, answered),
                ("b2bua_redirect_loops_detected_total", {}, loops),
                ("b2bua_redirect_failures_total", {"reason": "loop"}, loops),
                ("b2bua_redirect_failures_total", {}, loops)]:
            self.assertEqual(direct.value(name, **labels), expected,
                             "%s%s (Prometheus agrees with /metrics)" % (name, labels))
        self.assertSippsOk(looped, *callees)

    def test_promtool_accepts_metrics_exposition(self):
        if not PROMTOOL:
            self.skipTest("promtool is not installed (Debian package prometheus)")
        callees = self.start_redirect_traffic(1, 0)
        ok = self.h.run_caller("uac-expect-200-via-redirect.xml", calls=1, duration_ms=100)
        self.assertSippsOk(ok, *callees)
        text = self.h.b2bua.metrics_text()
        for name in ("b2bua_calls_total", "b2bua_redirects_received_total",
                     "b2bua_redirect_targets_total", "b2bua_redirect_loops_detected_total",
                     "b2bua_redirect_failures_total", "b2bua_calls_active",
                     "b2bua_redirects_sent_total", "b2bua_redirect_cache_hits_total"):
            self.assertIn(name, text, "metric %s missing from /metrics" % name)
        check = subprocess.run([PROMTOOL, "check", "metrics"], input=text, text=True,
                               capture_output=True, timeout=30)
        # promtool: 0 clean, 1 unparsable, 3 lint problems (missing HELP, bad names...).
        self.assertEqual(check.returncode, 0, "promtool check metrics (exit %d):\n%s%s"
                         % (check.returncode, check.stdout, check.stderr))


if __name__ == "__main__":
    if not (PROMETHEUS and PROMTOOL):
        print("note: prometheus/promtool missing; their tests will be skipped", file=sys.stderr)
    main()
