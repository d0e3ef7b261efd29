#!/usr/bin/env python3
"""The cluster, end to end: SIPp callers -> the Kamailio front -> three B2BUA instances ->
SIPp callees, with the calls kept in a Redis, every piece a real process on loopback.

    python3 tests/integration/test_cluster.py --binary build/release/b2bua/b2bua [-k name]

    caller(s) 127.0.0.1 -> front 127.0.0.1:F (deploy/cluster/kamailio-front.cfg, started by
    deploy/cluster/run-cluster.sh) -> instances "1", "2", "3" on 127.0.0.2/.3/.4:P (the same
    free port on each) -> callee(s) 127.0.0.1; Redis on 127.0.0.1:R. Every port is picked
    free at run time.

An instance dies (test_instance_killed_*): 20 new calls a second throughout, each held
20 s: the callee re-INVITEs 10 s after its answer and the call ends 10 s later. Instance
"2" gets kill -9 at 10 s and is started again at 14 s. Calls placed in the first 8.5 s,
each up at least 1 s before the kill (checked), and calls placed from 12 s (2 s after the
kill) to 16 s must all complete. Calls placed from 8.5 s to 12 s keep
the load going: those up 1 s before the kill must complete too, the others may fail (one
in set-up on the dying instance does) and are reported. The caller hangs up in one test
and the callee in the other. From the SIPp message traces (both legs of a call joined by
the routing token of their Contact) the tests check, call by call:

- both legs end: the BYE a UA sent through the front got 200, the far end got the
  B2BUA's BYE once (never retransmitted: its 200 reached the instance) and answered 200;
- every re-INVITE the callee sent through the front got its 200 and its ACK reached the
  caller, whichever instance had the call by then;
- the requests of the dead instance's calls sent after the kill (or still unanswered at
  it) are answered within 2 s (the tests print when the first one was answered and the
  slowest), and all of one call's requests after the kill are relayed by one instance: a
  survivor, or the restarted instance if none took the call before its restart;
- the survivors' calls do not move: their requests reach the far ends from the instance
  that set the call up, and each request of theirs is answered within 1 s (the front
  gives up on an instance after 1 s);
- the restarted instance takes a new call within 2 s of its start;
- at the end Redis holds no dialog key, every instance reports b2bua_calls_active 0 (and
  no internal bug), and both survivors b2bua_cluster_dialogs_adopted_total > 0.

The SIPp scenarios answer a request of the B2BUA at its Via sent-by (setdest): it comes
straight from an instance, perhaps another one than the instance that set the call up,
and the front relays only requests that carry a routing token.

Redis stops (test_redis_stopped_*): calls placed while Redis is down complete on every
instance, each instance counts b2bua_redis_command_failures_total and stays ready, and
once Redis is back (empty) and the instances have reconnected, new calls are replicated
again: b2bua_cluster_dialogs_replicated_total grows on every instance and dialog keys of
every instance appear in Redis, with no new failure.

Needs sipp, kamailio (5.6), redis-server and redis-cli, and curl and ss (run-cluster.sh);
skips without them. About 75 s on a 2-core machine; take `flock /tmp/b2bua-cpu.lock`
around a run on a shared one. Logs (every instance, the front, Redis, every SIPp) are kept
in the test's directory when it fails.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (REPO_ROOT, B2buaTestCase, Harness, Metrics, _spawn, _tail,  # noqa: E402
                     free_port, main, parse_metrics, route, via_sent_by)

RUN_CLUSTER = os.path.join(REPO_ROOT, "deploy", "cluster", "run-cluster.sh")
FRONT_IP = "127.0.0.1"
INSTANCE_IPS = {"1": "127.0.0.2", "2": "127.0.0.3", "3": "127.0.0.4"}
KILLED = "2"
KEY_PREFIX = "b2bua:dialog:"
SHARDS = 2

# The timeline of the kill tests, in seconds from the start of the first caller.
RATE = 20                 # new calls a second, throughout
HALF_HOLD_MS = 10000      # answer -> callee re-INVITE -> hang-up: a call lasts 20 s
FIRST_CALLS = 170         # placed in [0, 8.5): must all complete
GAP_CALLS = 70            # placed in [8.5, 12): may fail (set-up on the dead instance)
KILL_AT = 10.0
LATE_START = KILL_AT + 2  # placed in [12, 16): must all complete
LATE_CALLS = 80
RESTART_AT = 14.0

# A request the front sends to a dead instance is given up after 1 s (IN_DIALOG_FR_TIMER
# of kamailio-front.cfg): answered in less, a request did not need the failover.
NO_FAILOVER_S = 1.0
FAILOVER_BOUND_S = 2.0

# Never send test traffic to an HTTP proxy from the environment.
_http = urllib.request.build_opener(urllib.request.ProxyHandler({}))

_TOKEN = re.compile(r"sip:b2b-(([a-z0-9]+)\.([0-9a-f]+)\.[0-9]+\.[0-9a-f]+)@")


def free_port_on(ips):
    """A port free for UDP and TCP on every address of `ips` right now."""
    for _ in range(100):
        port = free_port()
        held = []
        try:
            for ip in ips:
                for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                    s = socket.socket(socket.AF_INET, kind)
                    held.append(s)
                    s.bind((ip, port))
            return port
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError("no port free on all of %s" % (ips,))


def loopback_aliases_usable():
    """True when 127.0.0.2 to .4 can be bound (Linux routes all of 127/8 to lo)."""
    try:
        for ip in INSTANCE_IPS.values():
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind((ip, 0))
        return True
    except OSError:
        return False


def token_of(value):
    """(key, instance id, boot epoch) of the routing token in a Contact, or None."""
    m = _TOKEN.search(value or "")
    return (m.group(1), m.group(2), m.group(3)) if m else None


# ---------------------------------------------------------------------------------
# The pieces
# ---------------------------------------------------------------------------------

class Instance:
    """One B2BUA instance: its id, address, metrics endpoint and process."""

    def __init__(self, h, instance_id, port, metrics_port, config_path):
        self.h = h
        self.id = instance_id
        self.ip = INSTANCE_IPS[instance_id]
        self.port = port
        self.metrics_port = metrics_port
        self.config_path = config_path
        self.proc = None
        self.log = None
        self.starts = 0
        self.killed = False  # the current process was killed on purpose

    @property
    def addr(self):
        return "%s:%d" % (self.ip, self.port)

    def start(self, ready_timeout=15):
        """Starts the process and waits for /readyz 200; returns the start time (wall)."""
        self.starts += 1
        self.log = self.h.path("b2bua-%s-run%d.log" % (self.id, self.starts))
        args = [self.h.binary, "--listen=%s" % self.addr,
                "--metrics_listen=%s:%d" % (self.ip, self.metrics_port),
                "--shards=%d" % SHARDS, "--config=%s" % self.config_path, "--log_level=info"]
        started = time.time()
        self.proc = _spawn(args, self.log, self.h.dir)
        self.killed = False
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("instance %s exited with %s at start:\n%s"
                                     % (self.id, self.proc.returncode, _tail(self.log, 30)))
            try:
                if self.http_get("/readyz", timeout=1)[0] == 200:
                    return started
            except OSError:
                pass
            time.sleep(0.02)
        raise AssertionError("instance %s not ready after %d s" % (self.id, ready_timeout))

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        """kill -9; returns the time it was sent (wall)."""
        when = time.time()
        self.proc.send_signal(signal.SIGKILL)
        self.killed = True
        self.proc.wait(5)
        return when

    def stop(self, timeout=15):
        """SIGTERM (the instance drains and exits 0); returns its exit code, None if it
        had to be killed."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                return None
        return self.proc.returncode

    def http_get(self, path, timeout=5):
        url = "http://%s:%d%s" % (self.ip, self.metrics_port, path)
        try:
            with _http.open(url, timeout=timeout) as resp:
                return resp.status, resp.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode("utf-8", "replace")

    def metrics(self):
        status, body = self.http_get("/metrics")
        if status != 200:
            raise AssertionError("instance %s: GET /metrics answered %d" % (self.id, status))
        return Metrics(parse_metrics(body))

    def report(self):
        rc = None if self.proc is None else self.proc.poll()
        return "==== instance %s on %s (metrics %d, rc %s%s)\n---- log %s\n%s" % (
            self.id, self.addr, self.metrics_port, rc, ", killed on purpose" if self.killed
            else "", self.log, _tail(self.log, 40) if self.log else "")


class ClusterHarness(Harness):
    """A Harness that also owns Redis, the front and the three instances."""

    def __init__(self, name, binary=None):
        super().__init__(name, binary)
        self.instances = {}
        self.redis = None
        self.redis_port = None
        self.redis_log = self.path("redis.log")
        self.front_port = None
        # Kamailio's control socket lives in the run directory, and a Unix socket path
        # may not exceed 104 bytes there: a short directory, linked from the log directory.
        self.front_dir = tempfile.mkdtemp(prefix="b2bua-front-", dir="/tmp")
        os.symlink(self.front_dir, self.path("front"))
        self.front_started = False

    # -- Redis ------------------------------------------------------------------------

    def start_redis(self):
        if self.redis_port is None:
            self.redis_port = free_port()
        args = ["redis-server", "--bind", FRONT_IP, "--port", str(self.redis_port),
                "--save", "", "--appendonly", "no", "--dir", self.dir]
        with open(self.redis_log, "a") as out:
            out.write("$ %s\n" % " ".join(args))
            out.flush()
            self.redis = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out,
                                          stderr=subprocess.STDOUT, cwd=self.dir)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.redis.poll() is not None:
                raise AssertionError("redis-server exited with %s:\n%s"
                                     % (self.redis.returncode, _tail(self.redis_log)))
            if self.redis_cli("PING").strip() == "PONG":
                return
            time.sleep(0.05)
        raise AssertionError("redis-server not answering PING after 10 s")

    def stop_redis(self, sig=signal.SIGKILL):
        if self.redis is not None and self.redis.poll() is None:
            self.redis.send_signal(sig)
            try:
                self.redis.wait(10)
            except subprocess.TimeoutExpired:
                self.redis.kill()
                self.redis.wait(5)

    def redis_cli(self, *args):
        try:
            out = subprocess.run(["redis-cli", "-h", FRONT_IP, "-p", str(self.redis_port)]
                                 + list(args), capture_output=True, text=True, timeout=5)
        except subprocess.TimeoutExpired:
            return ""
        return out.stdout

    def dialog_keys(self):
        out = self.redis_cli("--scan", "--pattern", KEY_PREFIX + "*")
        return [k for k in out.split() if k.startswith(KEY_PREFIX)]

    # -- the instances ----------------------------------------------------------------

    def start_instances(self, routes):
        port = free_port_on(list(INSTANCE_IPS.values()))
        mport = free_port_on(list(INSTANCE_IPS.values()))
        for iid in INSTANCE_IPS:
            cfg = self.config(routes=routes, limits={"drain_timeout": "5s"},
                              cluster={"instance_id": iid,
                                       "front": "%s:%d" % (FRONT_IP, self.front_port),
                                       "redis": "%s:%d" % (FRONT_IP, self.redis_port)})
            self.instances[iid] = Instance(self, iid, port, mport, cfg)
        for inst in self.instances.values():
            inst.start()

    # -- the front --------------------------------------------------------------------

    def start_front(self, callee_port):
        """The front through run-cluster.sh (no Redis, no instances: the test owns them),
        instance i of the dispatcher list being INSTANCE_IPS[i]."""
        ids = sorted(self.instances)
        args = [RUN_CLUSTER, "--run-dir", self.front_dir, "--no-wait", "--no-redis",
                "--no-instances", "--front", "%s:%d" % (FRONT_IP, self.front_port),
                "--instances", ",".join(self.instances[i].addr for i in ids),
                "--metrics", ",".join("%s:%d" % (self.instances[i].ip,
                                                 self.instances[i].metrics_port) for i in ids),
                "--redis", "%s:%d" % (FRONT_IP, self.redis_port),
                "--callee", "%s:%d" % (FRONT_IP, callee_port), "--front-log-level", "2"]
        log = self.path("run-cluster.log")
        with open(log, "w") as out:
            out.write("$ %s\n" % " ".join(args))
            out.flush()
            self.front_started = True
            try:
                rc = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, timeout=60).returncode
            except subprocess.TimeoutExpired:
                rc = "timeout"
        if rc != 0:
            raise AssertionError("run-cluster.sh exited %s:\n%s" % (rc, _tail(log)))

    def stop_front(self):
        if self.front_started:
            self.front_started = False
            subprocess.run([RUN_CLUSTER, "--stop", self.front_dir], stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=60)

    def remove(self):
        super().remove()
        shutil.rmtree(self.front_dir, ignore_errors=True)

    def report(self):
        parts = [super().report()]
        for inst in self.instances.values():
            parts.append(inst.report())
        parts.append("==== front log %s\n%s" % (
            os.path.join(self.front_dir, "kamailio.log"),
            _tail(os.path.join(self.front_dir, "kamailio.log"), 60)))
        parts.append("==== redis log %s\n%s" % (self.redis_log, _tail(self.redis_log, 20)))
        return "\n".join(parts)


# ---------------------------------------------------------------------------------
# Reading the calls back from the SIPp traces
# ---------------------------------------------------------------------------------

def _cseq(m):
    parts = (m.header("cseq") or "").split()
    return (parts[0], parts[1]) if len(parts) == 2 else (None, None)


class Leg:
    """What one SIPp saw of one call (one Call-ID), from its -trace_msg log."""

    def __init__(self, side, call_id):
        self.side = side  # "caller" or "callee"
        self.call_id = call_id
        self.msgs = []

    def sent_requests(self):
        """The requests this UA sent, ACK aside, as transactions in order: dicts with
        method, cseq, first (first sending), sends, status and answered (first final
        answer received: status and time)."""
        out = {}
        for m in self.msgs:
            if m.direction == "sent" and m.is_request and m.method != "ACK":
                tx = out.setdefault(_cseq(m), {"method": m.method, "cseq": _cseq(m),
                                               "first": m.time, "sends": 0,
                                               "status": None, "answered": None})
                tx["sends"] += 1
            elif m.direction == "received" and not m.is_request and m.status >= 200:
                tx = out.get(_cseq(m))
                if tx is not None and tx["status"] is None:
                    tx["status"], tx["answered"] = m.status, m.time
        return sorted(out.values(), key=lambda tx: tx["first"])

    def received_requests(self, method=None):
        """The requests this UA received, ACK aside: dicts with method, first (first
        arrival), receptions, via (the sent-by of the bottom Via of the first: the instance
        that sent it, also when it reached a caller through the front, which record-routes),
        answer (first final status it sent)."""
        out = {}
        for m in self.msgs:
            if m.direction == "received" and m.is_request and m.method != "ACK" \
                    and not m.lost:
                rx = out.setdefault(_cseq(m), {"method": m.method, "first": m.time,
                                               "receptions": 0, "answer": None,
                                               "via": originator(m)})
                rx["receptions"] += 1
            elif m.direction == "sent" and not m.is_request and m.status >= 200:
                rx = out.get(_cseq(m))
                if rx is not None and rx["answer"] is None:
                    rx["answer"] = m.status
        return [rx for rx in sorted(out.values(), key=lambda rx: rx["first"])
                if method is None or rx["method"] == method]

    def first(self, direction, method=None, status=None, cseq_method=None):
        for m in self.msgs:
            if m.direction != direction:
                continue
            if method is not None and m.method != method:
                continue
            if status is not None and m.status != status:
                continue
            if cseq_method is not None and m.cseq_method != cseq_method:
                continue
            return m
        return None


class CallView:
    """Both legs of one call, joined by the routing token both legs' Contact carry."""

    def __init__(self, key, owner, epoch):
        self.key = key
        self.owner = owner  # the instance that set the call up
        self.epoch = epoch
        self.caller = None
        self.callee = None
        self.group = None  # "first", "gap", "late": which caller placed it

    @property
    def invite_sent(self):
        m = self.caller.first("sent", "INVITE")
        return m.time if m else None

    @property
    def established(self):
        """When the caller ACKed the 200 (None if it never did)."""
        m = self.caller.first("sent", "ACK")
        return m.time if m else None

    def client_requests(self):
        """Every request a UA sent through the front after the INVITE: (side, tx)."""
        out = []
        for leg in (self.caller, self.callee):
            if leg is None:
                continue
            for tx in leg.sent_requests():
                if leg.side == "caller" and tx["cseq"] == ("1", "INVITE"):
                    continue  # the call's own INVITE, not an in-dialog request
                out.append((leg.side, tx))
        return out

    def relayed_requests(self):
        """Every in-dialog request the B2BUA relayed to a UA: (side, rx)."""
        out = []
        for leg in (self.caller, self.callee):
            if leg is None:
                continue
            rxs = leg.received_requests()
            if leg.side == "callee":
                rxs = rxs[1:]  # the INVITE that set the call up
            out.extend((leg.side, rx) for rx in rxs)
        return out

    def __repr__(self):
        return "<call %s (%s, caller %s)>" % (self.key, self.group,
                                               self.caller.call_id if self.caller else None)


def originator(message):
    """sent-by of the bottom Via of `message`: whoever sent the request first."""
    values = [v for line in message.header_all("via") for v in line.split(",")]
    return via_sent_by(values[-1]) if values else None


def legs_of(sipp, side):
    legs = {}
    for m in sipp.messages():
        if m.call_id:
            legs.setdefault(m.call_id, Leg(side, m.call_id)).msgs.append(m)
    return legs


def join_calls(callers, callees):
    """{key: CallView} from caller SIPps {group: Sipp} and callee SIPps, by the routing
    token of the caller's 200 and of the callee's INVITE; plus caller legs without a 200
    ({group: [Leg]})."""
    calls, unanswered = {}, {}
    for group, sipp in callers.items():
        for leg in legs_of(sipp, "caller").values():
            ok = leg.first("received", status=200, cseq_method="INVITE")
            tok = token_of(ok.header("contact") if ok else None)
            if tok is None:
                unanswered.setdefault(group, []).append(leg)
                continue
            view = calls.setdefault(tok[0], CallView(*tok))
            view.caller, view.group = leg, group
    for sipp in callees:
        for leg in legs_of(sipp, "callee").values():
            invite = leg.first("received", "INVITE")
            tok = token_of(invite.header("contact") if invite else None)
            if tok is None:
                continue
            calls.setdefault(tok[0], CallView(*tok)).callee = leg
    return calls, unanswered


# ---------------------------------------------------------------------------------
# The tests
# ---------------------------------------------------------------------------------

class ClusterTestCase(B2buaTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        for tool in ("kamailio", "redis-server", "redis-cli", "curl", "ss"):
            if not shutil.which(tool):
                raise unittest.SkipTest("%s is not installed (deploy/install-deps.sh)" % tool)
        if not loopback_aliases_usable():
            raise unittest.SkipTest("127.0.0.2-4 cannot be bound here")

    def setUp(self):
        self.h = ClusterHarness(self.id().split(".", 1)[-1])
        self.addCleanup(self._cleanup)
        self.addCleanup(self._stop_cluster)

    def _stop_cluster(self):
        """Front first (no new request reaches an instance going away), then the
        instances (each must exit 0 on SIGTERM, unless killed on purpose), then Redis."""
        self.h.stop_front()
        bad = []
        for inst in self.h.instances.values():
            rc = inst.stop()
            if rc != 0 and not (inst.killed and rc == -signal.SIGKILL):
                bad.append("instance %s: %s" % (inst.id, rc))
        self.h.stop_redis(signal.SIGTERM)
        if bad:
            raise AssertionError("instance exit codes on SIGTERM (expected 0): %s" % bad)

    def setup_front_port(self):
        """Picks the front's port (callees need it before the cluster starts)."""
        if self.h.front_port is None:
            self.h.front_port = free_port()
        return self.h.front_port

    def start_cluster(self, routes_to):
        """Redis, the three instances (routes: prefix -> callee port) and the front."""
        self.setup_front_port()
        self.h.start_redis()
        self.h.start_instances([route(prefix, port) for prefix, port in routes_to.items()])
        self.h.start_front(next(iter(routes_to.values())))

    def front(self):
        return "%s:%d" % (FRONT_IP, self.h.front_port)

    def scrape(self):
        return {i: inst.metrics() for i, inst in self.h.instances.items()}

    def poll(self, predicate, timeout):
        """Polls predicate() until true or timeout; returns its last value."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value or time.monotonic() >= deadline:
                return value
            time.sleep(0.1)

    def assertClusterIdle(self):
        """No live call on any instance and no dialog key in Redis (a few seconds allowed
        for the last BYEs)."""
        def active():
            return {i: m.value("b2bua_calls_active") for i, m in self.scrape().items()}
        idle = self.poll(lambda: not any(active().values()), 5)
        self.assertTrue(idle, "b2bua_calls_active at the end: %s" % active())
        keys = self.poll(lambda: not self.h.dialog_keys(), 5)
        self.assertTrue(keys, "dialog keys left in Redis: %s" % self.h.dialog_keys()[:10])
        for i, m in self.scrape().items():
            self.assertEqual(m.value("b2bua_internal_bug_total"), 0, "instance %s" % i)


class InstanceKilledTest(ClusterTestCase):
    """kill -9 of one instance under load, then its restart (see the module doc)."""

    def run_timeline(self, callee_scenario, caller_scenario, caller_d_ms):
        callee_keys = {"front_host": FRONT_IP, "front_port": self.setup_front_port()}
        # A call that waits longer than this for a message fails (and its SIPp moves on).
        recv_timeout = ["-recv_timeout", str(HALF_HOLD_MS + 4000)]
        callee = self.h.start_callee(callee_scenario, calls=FIRST_CALLS + LATE_CALLS,
                                     keys=callee_keys, duration_ms=HALF_HOLD_MS, timeout=2 * HALF_HOLD_MS // 1000 + 48,
                                     extra=recv_timeout, name="callee-main")
        gap_callee = self.h.start_callee(callee_scenario, keys=callee_keys,
                                         duration_ms=HALF_HOLD_MS, timeout=2 * HALF_HOLD_MS // 1000 + 48,
                                         extra=recv_timeout, name="callee-gap")
        self.start_cluster({"1": callee.port, "2": gap_callee.port})

        # sipp caps the calls it keeps open by the pause it knows (-d); when the callee
        # ends the calls that cap is near zero and sipp falls behind its rate: set it.
        open_calls = ["-l", str(RATE * (2 * HALF_HOLD_MS // 1000 + 10))]
        # Long enough for the last call placed, its hold and the BYE's answer.
        caller_timeout = 2 * HALF_HOLD_MS // 1000 + 33

        def caller(name, service, calls):
            return self.h.start_caller(caller_scenario, calls=calls, rate=RATE,
                                       remote=self.front(), service=service,
                                       duration_ms=caller_d_ms, timeout=caller_timeout,
                                       extra=recv_timeout + open_calls, name=name)

        t0 = time.monotonic()

        def at(offset):
            time.sleep(max(0.0, t0 + offset - time.monotonic()))

        first = caller("caller-first", "1000", FIRST_CALLS)
        at(FIRST_CALLS / RATE)
        gap = caller("caller-gap", "2000", GAP_CALLS)
        at(KILL_AT)
        victim = self.h.instances[KILLED]
        kill_time = victim.kill9()
        # From the kill as it happened: the late calls start 2 s after it, not before.
        t0 = time.monotonic() - KILL_AT - (time.time() - kill_time)
        at(LATE_START)
        late = caller("caller-late", "1000", LATE_CALLS)
        at(RESTART_AT)
        restart_time = victim.start()
        ready_time = time.time()

        self.assertSippOk(first)
        self.assertSippOk(late)
        self.assertSippOk(callee)
        gap.wait()
        gap_callee.stop(timeout=10)  # it may wait for calls that died with the instance
        calls, unanswered = join_calls({"first": first, "late": late, "gap": gap},
                                       [callee, gap_callee])
        self.check_calls(calls, unanswered, kill_time, restart_time, ready_time)

    def check_calls(self, calls, unanswered, kill_time, restart_time, ready_time):
        def rel(t):
            return "%+.3f s" % (t - kill_time)

        by_group = {}
        for view in calls.values():
            by_group.setdefault(view.group, []).append(view)
        # Every call up at least 1 s before the kill (the first calls and the gap's earliest
        # ones) and every call placed from 2 s after it must complete.
        early_gap = [v for v in by_group.get("gap", [])
                     if v.established and v.established <= kill_time - 1.0]
        must = by_group.get("first", []) + early_gap + by_group.get("late", [])
        self.assertEqual(len(by_group.get("first", [])), FIRST_CALLS)
        self.assertEqual(len(by_group.get("late", [])), LATE_CALLS)
        for group in ("first", "late"):
            self.assertNotIn(group, unanswered, "calls of %s never answered" % group)

        # The first calls were all up at least 1 s before the kill.
        latest = max(v.established for v in by_group["first"])
        self.assertLessEqual(latest, kill_time - 1.0,
                             "a first call was ACKed at %s, under 1 s before the kill"
                             % rel(latest))
        # Calls of the late caller were all placed 2 s or more after the kill.
        self.assertGreaterEqual(min(v.invite_sent for v in by_group["late"]), kill_time + 2.0)

        dead_ip = INSTANCE_IPS[KILLED]
        old_epochs = {v.epoch for v in must if v.owner == KILLED and v.invite_sent < kill_time}
        self.assertEqual(len(old_epochs), 1, "the killed instance's calls: %s" % old_epochs)
        dead_calls = [v for v in must if v.owner == KILLED and v.epoch in old_epochs]
        survivor_calls = [v for v in must if v.owner != KILLED]
        self.assertTrue(dead_calls, "no call was set up by instance %s" % KILLED)

        problems = []
        waits = []  # (answered, waited, what) of the dead instance's requests
        for view in must:
            if view.caller is None or view.callee is None:
                problems.append("%r: a leg is missing (caller %s, callee %s)"
                                % (view, view.caller is not None, view.callee is not None))
                continue
            # Both legs end: each UA's own requests answered 200...
            for side, tx in view.client_requests():
                if tx["status"] != 200:
                    problems.append("%r: %s's %s (CSeq %s) got %s" % (
                        view, side, tx["method"], tx["cseq"][0], tx["status"]))
            # ...and the B2BUA's requests each reached the far end once and got its 200.
            relayed = view.relayed_requests()
            for side, rx in relayed:
                if rx["answer"] != 200 or (rx["method"] == "BYE" and rx["receptions"] != 1):
                    problems.append("%r: %s got %s %d time(s), answered %s" % (
                        view, side, rx["method"], rx["receptions"], rx["answer"]))
            methods = sorted((side, rx["method"]) for side, rx in relayed)
            if methods.count(("caller", "INVITE")) != 1 or not any(
                    m == "BYE" for _, m in methods):
                problems.append("%r: relayed requests %s" % (view, methods))
            if view.caller.first("received", "ACK") is None:
                problems.append("%r: the re-INVITE's ACK never reached the caller" % view)

            if view in dead_calls:
                for side, tx in view.client_requests():
                    if tx["answered"] is None or tx["answered"] < kill_time:
                        continue
                    waited = tx["answered"] - max(tx["first"], kill_time)
                    waits.append((tx["answered"], waited, "%s %s of %s" % (
                        side, tx["method"], view.key)))
                # One instance took the call over: a survivor, or the restarted instance
                # if none had before its restart.
                after = [(side, rx) for side, rx in relayed if rx["first"] > kill_time]
                adopters = {rx["via"] for _, rx in after}
                if len(adopters) > 1 or any(
                        (rx["via"] or "").split(":")[0] == dead_ip and rx["first"] < restart_time
                        for _, rx in after):
                    problems.append("%r: requests after the kill relayed by %s" % (view, [
                        (side, rx["method"], rx["via"], rel(rx["first"])) for side, rx in after]))
            else:
                owner_addr = self.h.instances[view.owner].addr
                for side, rx in relayed:
                    if rx["via"] != owner_addr:
                        problems.append("%r: %s got %s from %s, not from its instance %s"
                                        % (view, side, rx["method"], rx["via"], owner_addr))
                for side, tx in view.client_requests():
                    if tx["answered"] is not None and \
                            tx["answered"] - tx["first"] >= NO_FAILOVER_S:
                        problems.append("%r: %s's %s answered after %.3f s" % (
                            view, side, tx["method"], tx["answered"] - tx["first"]))
        self.assertFalse(problems, "%d problem(s):\n  %s" % (
            len(problems), "\n  ".join(problems[:30])))

        # The dead instance's requests: answered within 2 s of the kill or of their sending.
        self.assertTrue(waits, "no request of the dead instance's calls after the kill")
        waits.sort()
        slowest = max(waits, key=lambda w: w[1])
        through_timeout = sum(1 for w in waits if w[1] >= NO_FAILOVER_S - 0.1)
        sys.stderr.write(
            "\n  instance %s killed: %d calls of it, %d of the survivors; %d of its requests "
            "after the kill, the first answered at %s (%s), the slowest waited %.3f s (%s); "
            "%d waited for the front's 1 s timeout\n"
            % (KILLED, len(dead_calls), len(survivor_calls), len(waits), rel(waits[0][0]),
               waits[0][2], slowest[1], slowest[2], through_timeout))
        self.assertLessEqual(slowest[1], FAILOVER_BOUND_S,
                             "%s waited %.3f s" % (slowest[2], slowest[1]))

        # The restarted instance takes new calls within 2 s.
        new_calls = sorted(v.invite_sent for v in by_group["late"]
                           if v.owner == KILLED and v.epoch not in old_epochs)
        self.assertTrue(new_calls, "the restarted instance took no new call")
        sys.stderr.write("  restarted: ready %.3f s after its start, first new call %.3f s "
                         "after its start\n" % (ready_time - restart_time,
                                                new_calls[0] - restart_time))
        self.assertLessEqual(new_calls[0] - restart_time, 2.0)

        gap_views = by_group.get("gap", [])
        gap_done = [v for v in gap_views if v.caller and v.callee and all(
            tx["status"] == 200 for _, tx in v.client_requests())]
        sys.stderr.write("  calls placed 1.5 s before to 2 s after the kill: %d of %d "
                         "completed (%d of them up 1 s before the kill, checked)\n"
                         % (len(gap_done), len(gap_views) + len(unanswered.get("gap", [])),
                            len(early_gap)))

        # The end: nothing left, and both survivors took calls over.
        self.assertClusterIdle()
        adopted = {i: m.value("b2bua_cluster_dialogs_adopted_total")
                   for i, m in self.scrape().items()}
        failed = {i: {dict(ls).get("reason"): v for ls, v in
                      m.series("b2bua_cluster_adoptions_failed_total").items() if v}
                  for i, m in self.scrape().items()}
        sys.stderr.write("  adopted per instance %s (the restarted one counts since its "
                         "restart); adoptions failed %s\n" % (adopted, failed))
        for i in INSTANCE_IPS:
            if i != KILLED:
                self.assertGreater(adopted[i], 0, "survivor %s adopted nothing" % i)
        self.assertGreaterEqual(sum(adopted.values()), len(dead_calls))

    def test_instance_killed_caller_hangs_up(self):
        self.run_timeline("uas-answer-then-reinvite-via-front.xml",
                          "uac-accept-reinvite-then-hangup-via-front.xml", HALF_HOLD_MS)

    def test_instance_killed_callee_hangs_up(self):
        self.run_timeline("uas-answer-reinvite-then-hangup-via-front.xml",
                          "uac-accept-reinvite-and-bye-via-front.xml", 0)


class RedisStoppedTest(ClusterTestCase):
    """Redis goes away during a run and comes back empty."""

    def test_redis_stopped_calls_complete_then_replicate_again(self):
        callee = self.h.start_callee("uas-answer-200.xml", timeout=60, name="callee")
        self.start_cluster({"1": callee.port})
        t0 = time.monotonic()

        def at(offset):
            time.sleep(max(0.0, t0 + offset - time.monotonic()))

        # 8 s of calls at 20/s, each held 3 s; Redis is down from 2 s to 5 s.
        caller = self.h.start_caller("uac-basic-call-caller-hangup.xml", calls=8 * RATE,
                                     rate=RATE, remote=self.front(), duration_ms=3000,
                                     timeout=40, name="caller-outage")
        at(2.0)
        before = self.scrape()
        down = time.time()
        self.h.stop_redis(signal.SIGKILL)
        at(3.5)
        readyz = {i: inst.http_get("/readyz")[0] for i, inst in self.h.instances.items()}
        noticed = {i: sorted(m.series("b2bua_redis_disconnected").values())
                   for i, m in self.scrape().items()}
        at(5.0)
        up = time.time()
        self.h.start_redis()

        # Every shard of every instance reconnects (backoff: at most 5 s between tries).
        def disconnected():
            return {i: sorted(m.series("b2bua_redis_disconnected").values())
                    for i, m in self.scrape().items()}
        self.assertTrue(self.poll(lambda: all(
            v == [0] * SHARDS for v in disconnected().values()), 12),
                        "b2bua_redis_disconnected per shard: %s" % disconnected())
        reconnected = time.time()
        self.assertSippOk(caller)
        self.assertEqual(readyz, {i: 200 for i in INSTANCE_IPS},
                         "/readyz while Redis was down (ready_without_redis: true)")
        self.assertEqual(noticed, {i: [1] * SHARDS for i in INSTANCE_IPS},
                         "b2bua_redis_disconnected per shard while Redis was down")

        # Calls set up while Redis was down completed on every instance.
        calls, _ = join_calls({"outage": caller}, [])
        owners = {}
        for view in calls.values():
            if view.established and down < view.established < up:
                owners[view.owner] = owners.get(view.owner, 0) + 1
        self.assertEqual(sorted(owners), sorted(INSTANCE_IPS),
                         "calls up during the outage per instance: %s" % owners)
        after = self.scrape()
        failures = {i: after[i].value("b2bua_redis_command_failures_total")
                    - before[i].value("b2bua_redis_command_failures_total")
                    for i in INSTANCE_IPS}
        for i in INSTANCE_IPS:
            self.assertGreater(failures[i], 0, "instance %s counted no Redis failure" % i)

        self.assertClusterIdle()

        # New calls are replicated again.
        before = self.scrape()
        caller2 = self.h.start_caller("uac-basic-call-caller-hangup.xml", calls=30, rate=RATE,
                                      remote=self.front(), duration_ms=4000, timeout=30,
                                      name="caller-after")
        seen = set()
        deadline = time.monotonic() + 10
        while caller2.running() and time.monotonic() < deadline:
            seen.update(self.h.dialog_keys())
            time.sleep(0.2)
        self.assertSippOk(caller2)
        after = self.scrape()
        owners_seen = sorted({k[len(KEY_PREFIX):].split(".")[0] for k in seen})
        sys.stderr.write("\n  Redis down %.1f s; failures counted %s; reconnected %.1f s after "
                         "its return; %d dialog keys seen afterwards, of instances %s\n"
                         % (up - down, failures, reconnected - up, len(seen), owners_seen))
        self.assertEqual(owners_seen, sorted(INSTANCE_IPS))
        for i in INSTANCE_IPS:
            grew = (after[i].value("b2bua_cluster_dialogs_replicated_total")
                    - before[i].value("b2bua_cluster_dialogs_replicated_total"))
            self.assertGreater(grew, 0, "instance %s replicated nothing after Redis returned"
                               % i)
            self.assertEqual(after[i].value("b2bua_redis_command_failures_total"),
                             before[i].value("b2bua_redis_command_failures_total"),
                             "instance %s: Redis failures after the reconnection" % i)
        self.assertClusterIdle()


if __name__ == "__main__":
    main()
