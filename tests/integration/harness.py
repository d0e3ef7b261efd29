"""End-to-end test harness: the b2bua binary between SIPp callers and callees.

Standard library only. A test case derives from `B2buaTestCase` and gets `self.h`, a
`Harness` that owns every process it starts and a temporary log directory:

    callee = self.h.start_callee("uas-answer-200.xml", calls=1)
    self.h.start_b2bua(self.h.config(routes=[route("1", callee.port)]))
    caller = self.h.run_caller("uac-basic-call-caller-hangup.xml", calls=1)
    self.assertSippsOk(caller, callee)       # both exited 0: every call as scripted
    self.assertMetric("b2bua_calls_total", 1, outcome="answered")

Everything is cleaned up even when a test fails: SIPp processes are killed, the b2bua
gets SIGTERM and must exit 0 (checked in a cleanup, so a bad exit fails the test), and
on failure the tail of every log is printed and the log directory is kept.

Ports are picked at run time (bind port 0), so several test processes can run at once.
SIPp runs in the foreground of a subprocess with stdin from /dev/null, stdout to a file
and -nostdin: it needs no terminal and no -bg. The header comment of each scenario in
tests/sipp names the -key values it needs; callers always get -key dest.

Environment:
  B2BUA_BINARY        path of the b2bua binary (or --binary on the test command line)
  B2BUA_KEEP_LOGS=1   keep the log directory of passing tests too
  B2BUA_READY_TIMEOUT seconds to wait for /readyz (default 15)
  SIPP                sipp executable (default: sipp on PATH)
"""

import datetime
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

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SIPP_DIR = os.path.join(REPO_ROOT, "tests", "sipp")
LOOPBACK = "127.0.0.1"

# Every SIPp gets these: big socket buffers so bursts are not dropped by the kernel.
SIPP_BUFF_SIZE = "4194304"
# SIPp exit codes (sipp(1)): 0 all calls succeeded, 1 at least one failed, 97 stopped
# by an internal command or a -timeout without -timeout_error, 99 no call processed,
# 255 (-1) fatal error or -timeout with -timeout_error, 254 (-2) cannot bind its port.
SIPP_RC_BIND_FAILED = 254

_SIPP = shutil.which(os.environ.get("SIPP") or "sipp")
_handed_out_ports = set()

# Never send test traffic to an HTTP proxy from the environment.
_http = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def sipp_path():
    """Path of the sipp executable, or None when it is not installed."""
    return _SIPP


def binary_from_argv(argv=None):
    """Removes `--binary PATH` (or `--binary=PATH`) from argv and returns PATH.

    Falls back to $B2BUA_BINARY. Returns (binary or None, remaining argv).
    """
    argv = list(sys.argv if argv is None else argv)
    binary = None
    rest = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--binary" and i + 1 < len(argv):
            binary = argv[i + 1]
            i += 2
            continue
        if arg.startswith("--binary="):
            binary = arg.split("=", 1)[1]
            i += 1
            continue
        rest.append(arg)
        i += 1
    return binary or os.environ.get("B2BUA_BINARY"), rest


def main():
    """Entry point of every test file: `python3 test_x.py --binary PATH [-k name] [-v]`."""
    binary, argv = binary_from_argv()
    if binary:
        os.environ["B2BUA_BINARY"] = binary
    unittest.main(module="__main__", argv=argv, verbosity=2)


def free_port():
    """A port on 127.0.0.1 that is free for both UDP and TCP right now.

    Bind port 0 and let the kernel choose; never hands out the same port twice in one
    process. Another process may still take it before we use it: starters retry.
    """
    for _ in range(100):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            udp.bind((LOOPBACK, 0))
            port = udp.getsockname()[1]
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                tcp.bind((LOOPBACK, port))
            except OSError:
                continue
            finally:
                tcp.close()
        finally:
            udp.close()
        if port not in _handed_out_ports:
            _handed_out_ports.add(port)
            return port
    raise RuntimeError("no free port found")


def udp_port_bound(port, v6=False, host=LOOPBACK):
    """True when some socket is bound to UDP `host` (an IPv4 address; ::1 for v6) or the
    wildcard on `port` (reads /proc/net/udp, or /proc/net/udp6 for v6).

    Reading, not binding, so it never races with the process that is starting.
    Returns None when the /proc file is not available.
    """
    want = ":%04X" % port
    # /proc/net/udp prints an IPv4 address as the hex of its bytes in host order.
    ipv4 = "%08X" % int.from_bytes(socket.inet_aton(host), sys.byteorder)
    hosts = ("00000000000000000000000001000000", "0" * 32) if v6 else (ipv4, "00000000")
    try:
        with open("/proc/net/udp6" if v6 else "/proc/net/udp") as fh:
            next(fh)
            for line in fh:
                local = line.split()[1]
                if local.endswith(want) and local.split(":")[0] in hosts:
                    return True
    except OSError:
        return None
    return False


# ---------------------------------------------------------------------------------
# Configuration (YAML)
# ---------------------------------------------------------------------------------

def default_redirect():
    """The redirect block of the documented example configuration."""
    return {
        "mode": "follow",
        "send_181": True,
        "max_depth": 5,
        "max_targets": 16,
        "target_timeout": "8s",
        "deny_self": True,
        "relay_last_3xx": False,
        "deny": {"cidrs": []},
    }


def next_hop(port, host=LOOPBACK):
    return "sip:%s:%d;transport=udp" % (host, port)


def contact(port, user, q=None, host=LOOPBACK):
    """A Contact value as a redirecting callee sends it: <sip:user@host:port>;q=..."""
    value = "<sip:%s@%s:%d>" % (user, host, port)
    return value + (";q=%s" % q if q is not None else "")


def route(prefix, *ports, redirect=None, host=LOOPBACK, **extra):
    """A route entry: `prefix` (string of digits) to next hops on `host` (127.0.0.1)
    `ports`; `extra` adds keys of the route (callers, max_calls...)."""
    entry = {"prefix": str(prefix)}
    if ports:
        entry["next_hops"] = [next_hop(p, host=host) for p in ports]
    if redirect:
        entry["redirect"] = dict(redirect)
    entry.update(extra)
    return entry


_PLAIN = re.compile(r"^([A-Za-z_][A-Za-z0-9_.\-]*|\d+(\.\d+)?(ms|s|m|h))$")


def _yaml_scalar(value):
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    # Bare words like follow, 8s, 100ms stay bare (as in the documented example);
    # anything else (digits-only prefixes, URIs, CIDRs) is double-quoted.
    if _PLAIN.match(text) and text not in ("true", "false", "null", "yes", "no", "on", "off"):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _yaml_flow(value):
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{ " + ", ".join("%s: %s" % (k, _yaml_flow(v)) for k, v in value.items()) + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_yaml_flow(v) for v in value) + "]"
    return _yaml_scalar(value)


def to_yaml(config):
    """Renders a config dict in the style of the documented example.

    Top-level keys in block style; a list of mappings (routes) as a block sequence
    whose entries have one key per line; every other nested value in flow style
    (`{ k: v }`, `[a, b]`).
    """
    lines = []
    for key, value in config.items():
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, dict) for v in value):
            lines.append("%s:" % key)
            for item in value:
                first = True
                for k, v in item.items():
                    lines.append("%s%s: %s" % ("  - " if first else "    ", k, _yaml_flow(v)))
                    first = False
        else:
            lines.append("%s: %s" % (key, _yaml_flow(value)))
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------
# Prometheus text format
# ---------------------------------------------------------------------------------

_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+-?\d+)?\s*$")
_LABEL = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')


def _unescape(value):
    return value.replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")


def parse_metrics(text):
    """Parses the Prometheus text format into {(name, frozenset(labels)): value}."""
    samples = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            raise ValueError("metrics line %d unparsable: %r" % (lineno, line))
        name, _, body, value = m.group(1), m.group(2), m.group(3), m.group(4)
        labels = {}
        if body:
            pos = 0
            while pos < len(body):
                lm = _LABEL.match(body, pos)
                if not lm:
                    raise ValueError("metrics line %d: bad labels %r" % (lineno, body))
                labels[lm.group(1)] = _unescape(lm.group(2))
                pos = lm.end()
        samples[(name, frozenset(labels.items()))] = float(value)
    return samples


class Metrics(dict):
    """A scrape: {(name, frozenset(labels.items())): value} plus lookups."""

    def value(self, name, **labels):
        """Sum over the series of `name` whose labels include `labels` (0.0 if none).

        value("b2bua_calls_active") sums every shard; value(name, code="302") picks
        the series with that label whatever its other labels are.
        """
        want = set(labels.items())
        return sum(v for (n, ls), v in self.items() if n == name and want <= ls)

    def series(self, name):
        return {ls: v for (n, ls), v in self.items() if n == name}

    def names(self):
        return sorted({n for n, _ in self})


# ---------------------------------------------------------------------------------
# SIPp message traces (-trace_msg)
# ---------------------------------------------------------------------------------

# SIPp writes "----...---- <date time>" before each entry, but a loss note ("UDP message
# lost (recv)." or "UDP message (retrans) lost (recv)." after the message it dropped,
# "UDP message voluntary lost (while sending)." for a send it skipped and did not log)
# is glued in front of the dashes.
_TRACE_SPLIT = re.compile(r"-{40,} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)[ \t]*\n")
_TRACE_HEAD = re.compile(r"^\S+ message (sent|received)[^\n]*\n\n", re.S)
_TRACE_LOSS = re.compile(r"(?:\S+ message [^\n]*?lost \([^)]*\)\.\s*)+$")
_COMPACT = {"i": "call-id", "f": "from", "t": "to", "v": "via", "m": "contact",
            "l": "content-length", "c": "content-type"}


class SipMessage:
    """One message from a SIPp -trace_msg log."""

    def __init__(self, direction, when, text, lost=False):
        self.direction = direction  # "sent" or "received"
        self.time = when
        self.text = text
        self.lost = lost  # received, then dropped by SIPp's -lost: the scenario never saw it
        head, _, self.body = text.replace("\r\n", "\n").partition("\n\n")
        lines = head.split("\n")
        self.start_line = lines[0].strip()
        self.headers = []  # [(lower-case long name, value)] in order
        for line in lines[1:]:
            if line[:1] in (" ", "\t") and self.headers:
                name, value = self.headers[-1]
                self.headers[-1] = (name, value + " " + line.strip())
                continue
            name, sep, value = line.partition(":")
            if not sep:
                continue
            name = name.strip().lower()
            self.headers.append((_COMPACT.get(name, name), value.strip()))

    @property
    def is_request(self):
        return not self.start_line.startswith("SIP/2.0")

    @property
    def method(self):
        return self.start_line.split(" ", 1)[0] if self.is_request else None

    @property
    def request_uri(self):
        return self.start_line.split(" ")[1] if self.is_request else None

    @property
    def status(self):
        return None if self.is_request else int(self.start_line.split(" ")[1])

    def header(self, name):
        """The first value of header `name` (long form, any case), or None."""
        values = self.header_all(name)
        return values[0] if values else None

    def header_all(self, name):
        name = name.lower()
        return [v for n, v in self.headers if n == name]

    @property
    def call_id(self):
        return self.header("call-id")

    @property
    def cseq_method(self):
        cseq = self.header("cseq") or ""
        parts = cseq.split()
        return parts[1] if len(parts) > 1 else None

    def __repr__(self):
        return "<%s %s>" % (self.direction, self.start_line)


def parse_trace(path):
    """Every message of a SIPp -trace_msg file, in order. Missing file: []."""
    try:
        with open(path, errors="replace") as fh:
            text = fh.read()
    except FileNotFoundError:
        return []
    parts = _TRACE_SPLIT.split(text)
    out = []
    # parts: [preamble, ts1, block1, ts2, block2, ...]
    for i in range(1, len(parts) - 1, 2):
        when = datetime.datetime.strptime(parts[i], "%Y-%m-%d %H:%M:%S.%f").timestamp()
        block = parts[i + 1].lstrip("\n")
        m = _TRACE_HEAD.match(block)
        if not m:
            continue  # unexpected-message notes and the like
        body = block[m.end():]
        notes = _TRACE_LOSS.search(body)
        lost = False
        if notes:
            lost = m.group(1) == "received" and "lost (recv)" in notes.group(0)
            body = body[:notes.start()]
        out.append(SipMessage(m.group(1), when, body.rstrip("\n") + "\n", lost))
    return out


def split_header_values(value):
    """Splits a comma-separated header value, not inside <> or quotes."""
    out, cur, depth, quoted, escaped = [], [], 0, False, False
    for ch in value:
        if escaped:
            escaped = False
        elif quoted and ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif not quoted and ch == "<":
            depth += 1
        elif not quoted and ch == ">":
            depth = max(0, depth - 1)
        elif not quoted and depth == 0 and ch == ",":
            out.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    if "".join(cur).strip():
        out.append("".join(cur).strip())
    return out


def uri_hostport(value):
    """host:port of the first SIP URI in a header value (Contact, Request-URI)."""
    m = re.search(r"sips?:(?:[^@;>\s]*@)?([^;>\s?]+)", value)
    return m.group(1) if m else None


def via_sent_by(value):
    """sent-by (host[:port]) of a Via value."""
    m = re.match(r"\s*SIP\s*/\s*2\.0\s*/\s*\S+\s+([^;\s]+)", value, re.I)
    return m.group(1) if m else None


def tag_of(value):
    m = re.search(r";\s*tag=([^;>\s,]+)", value or "")
    return m.group(1) if m else None


# ---------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------

def read_text(path):
    """The whole text of a log file (undecodable bytes replaced)."""
    with open(path, errors="replace") as fh:
        return fh.read()


def _tail(path, lines=40):
    try:
        with open(path, errors="replace") as fh:
            data = fh.readlines()
    except OSError:
        return "(no %s)" % path
    return "".join(data[-lines:])


def _spawn(args, log, cwd):
    """Starts args with stdin from /dev/null and stdout+stderr to `log` (command first)."""
    with open(log, "w") as out:
        out.write("$ %s\n" % " ".join(args))
        out.flush()
        return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, cwd=cwd)


class Sipp:
    """One SIPp process, its port and its log files."""

    def __init__(self, name, scenario, port, popen, files, timeout, ip=LOOPBACK):
        self.name = name
        self.scenario = scenario
        self.ip = ip  # the address it sends from and listens on (-i)
        self.port = port
        self.proc = popen
        self.files = files  # {"out": screen, "err": errors, "msg": message trace}
        self.timeout = timeout
        self.rc = None

    @property
    def addr(self):
        return "%s:%d" % (self.ip, self.port)

    def uri(self, user="x"):
        return "sip:%s@%s" % (user, self.addr)

    def running(self):
        return self.proc.poll() is None

    def wait(self, timeout=None):
        """Waits for the exit and returns the code; kills it after `timeout` s (rc -9).

        The default bound is the process's own -timeout plus 10 s.
        """
        if timeout is None:
            timeout = self.timeout + 10
        try:
            self.rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self.rc = self.proc.returncode
        return self.rc

    def stop(self, timeout=10):
        """SIGTERM (SIPp quits at once and flushes its logs); returns the exit code."""
        if self.running():
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self):
        if self.running():
            self.proc.kill()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass

    def messages(self):
        return parse_trace(self.files["msg"])

    def received(self, method=None, status=None, include_lost=False):
        """Received messages, optionally only requests of `method` or responses `status`.

        Messages SIPp dropped on purpose (-lost) are left out unless include_lost.
        """
        out = []
        for m in self.messages():
            if m.direction != "received" or (m.lost and not include_lost):
                continue
            if method is not None and m.method != method:
                continue
            if status is not None and m.status != status:
                continue
            out.append(m)
        return out

    def sent(self, method=None, status=None):
        out = []
        for m in self.messages():
            if m.direction != "sent":
                continue
            if method is not None and m.method != method:
                continue
            if status is not None and m.status != status:
                continue
            out.append(m)
        return out

    def calls_received(self):
        """Distinct Call-IDs of the initial INVITEs that reached this process."""
        seen = []
        for m in self.received("INVITE", include_lost=True):
            if tag_of(m.header("to")) is None and m.call_id not in seen:
                seen.append(m.call_id)
        return seen

    def describe(self):
        return "%s (%s, %s, rc %s)" % (self.name, self.scenario, self.addr, self.rc)

    def report(self):
        out = ["==== %s" % self.describe()]
        for key in ("err", "out", "msg"):
            out.append("---- %s: %s" % (key, self.files[key]))
            out.append(_tail(self.files[key], 60 if key == "msg" else 25))
        return "\n".join(out)


class B2bua:
    """The b2bua process under test."""

    def __init__(self, popen, port, metrics_port, log, config_path):
        self.proc = popen
        self.port = port
        self.metrics_port = metrics_port
        self.log = log
        self.config_path = config_path
        self.rc = None

    @property
    def addr(self):
        return "%s:%d" % (LOOPBACK, self.port)

    def running(self):
        return self.proc.poll() is None

    def http_get(self, path, timeout=5):
        """(status, body) of GET http://127.0.0.1:MPORT/path."""
        url = "http://%s:%d%s" % (LOOPBACK, self.metrics_port, path)
        try:
            with _http.open(url, timeout=timeout) as resp:
                return resp.status, resp.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode("utf-8", "replace")

    def metrics_text(self):
        status, body = self.http_get("/metrics")
        if status != 200:
            raise AssertionError("GET /metrics answered %d:\n%s" % (status, body[:2000]))
        return body

    def metrics(self):
        return Metrics(parse_metrics(self.metrics_text()))

    def log_text(self):
        """Everything the b2bua wrote to stdout and stderr so far."""
        return read_text(self.log)

    def rss_kib(self):
        """Resident set size (VmRSS of /proc/PID/status) in KiB; 0 when not readable."""
        try:
            with open("/proc/%d/status" % self.proc.pid) as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def report(self):
        return "==== b2bua (port %d, metrics %d, rc %s)\n---- config %s\n%s---- log %s\n%s" % (
            self.port, self.metrics_port, self.rc, self.config_path,
            _tail(self.config_path, 60), self.log, _tail(self.log, 80))


class Harness:
    """Starts and always cleans up the b2bua, SIPp processes and helpers of one test."""

    def __init__(self, name, binary=None):
        self.name = name
        self.binary = binary or os.environ.get("B2BUA_BINARY")
        if self.binary:
            self.binary = os.path.abspath(self.binary)  # processes run in the log directory
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[-80:]
        self.dir = tempfile.mkdtemp(prefix="b2bua-it-%s-" % safe)
        self.sipps = []
        self.others = []  # (name, Popen, log) of helper processes (prometheus)
        self.b2bua = None
        self._seq = 0

    # -- files --------------------------------------------------------------------

    def path(self, name):
        return os.path.join(self.dir, name)

    def config(self, routes=(), redirect=None, timers=None, text=None, **extra):
        """Writes a config file and returns its path.

        `redirect` is merged over default_redirect(); `extra` adds top-level keys.
        `text` writes that YAML verbatim instead.
        """
        if text is None:
            cfg = {"redirect": default_redirect()}
            if redirect:
                merged = cfg["redirect"]
                for key, value in redirect.items():
                    if isinstance(value, dict) and isinstance(merged.get(key), dict):
                        merged[key] = dict(merged[key], **value)
                    else:
                        merged[key] = value
            if timers:
                cfg["timers"] = dict(timers)
            # sipp callees answer only their scenario: an OPTIONS probe from the b2bua
            # would be an unexpected message to them. Tests of probing turn it on.
            cfg["probe"] = {"options_interval": 0}
            cfg.update(extra)
            cfg["routes"] = list(routes)
            text = to_yaml(cfg)
        self._seq += 1
        path = self.path("b2bua-%d.yaml" % self._seq)
        with open(path, "w") as fh:
            fh.write(text)
        return path

    # -- the b2bua ----------------------------------------------------------------

    def start_b2bua(self, config_path, port=None, metrics_port=None, shards=2,
                    log_level="info", extra_args=(), ready_timeout=None):
        """Starts the b2bua and waits for /readyz; retries on a port taken meanwhile."""
        if not self.binary:
            raise unittest.SkipTest("no b2bua binary: pass --binary PATH or set B2BUA_BINARY")
        if not (os.path.isfile(self.binary) and os.access(self.binary, os.X_OK)):
            raise AssertionError("b2bua binary %r is not an executable file" % self.binary)
        if self.b2bua is not None and self.b2bua.running():
            raise AssertionError("a b2bua is already running in this test")
        ready_timeout = ready_timeout or float(os.environ.get("B2BUA_READY_TIMEOUT", "15"))
        fixed = port is not None
        for attempt in range(3):
            sip_port = port if fixed else free_port()
            mport = metrics_port or free_port()
            log = self.path("b2bua-%d.log" % attempt)
            args = [self.binary, "--listen=%s:%d" % (LOOPBACK, sip_port),
                    "--metrics_listen=%s:%d" % (LOOPBACK, mport), "--shards=%d" % shards,
                    "--config=%s" % config_path, "--log_level=%s" % log_level]
            args += list(extra_args)
            popen = _spawn(args, log, self.dir)
            self.b2bua = B2bua(popen, sip_port, mport, log, config_path)
            if self._wait_ready(self.b2bua, ready_timeout):
                return self.b2bua
            if self.b2bua.running():
                raise AssertionError("b2bua not ready on /readyz after %.0fs" % ready_timeout)
            self.b2bua.rc = popen.returncode
            text = _tail(log, 50).lower()
            if not fixed and ("in use" in text or "eaddrinuse" in text):
                continue  # someone took a port between free_port() and bind: try others
            raise AssertionError("b2bua exited with %s during start-up" % popen.returncode)
        raise AssertionError("b2bua could not bind after 3 attempts")

    def _wait_ready(self, b2bua, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not b2bua.running():
                return False
            try:
                status, _ = b2bua.http_get("/readyz", timeout=1)
                if status == 200:
                    return True
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.05)
        return False

    def stop_b2bua(self, timeout=15):
        """SIGTERM, wait for the drain; returns the exit code (None: had to be killed)."""
        b = self.b2bua
        if b is None:
            return 0
        if b.running():
            b.proc.send_signal(signal.SIGTERM)
            try:
                b.rc = b.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                b.proc.kill()
                b.proc.wait(5)
                b.rc = None
        else:
            b.rc = b.proc.returncode
        return b.rc

    def metrics(self):
        return self.b2bua.metrics()

    def wait_log(self, text, count=1, timeout=5.0):
        """Waits until `text` occurs `count` times in the b2bua log; returns the log."""
        deadline = time.monotonic() + timeout
        while True:
            log = self.b2bua.log_text()
            if log.count(text) >= count or time.monotonic() >= deadline:
                return log
            time.sleep(0.05)

    def reload_b2bua(self, config_path, timeout=5.0):
        """Puts `config_path` in place of the running b2bua's config file (renamed over it,
        as an editor or a config manager does), sends SIGHUP and waits for the log line
        of the reload. Raises AssertionError when the reload is refused or never logged.
        """
        b = self.b2bua
        done = "config reloaded from %s" % b.config_path
        before = b.log_text().count(done)
        os.replace(config_path, b.config_path)
        b.proc.send_signal(signal.SIGHUP)
        log = self.wait_log(done, before + 1, timeout)
        if log.count(done) <= before:
            raise AssertionError("no %r in the log %.0f s after SIGHUP:\n%s"
                                 % (done, timeout, _tail(b.log, 20)))
        return log

    def wait_metric(self, name, expected, timeout=5.0, **labels):
        """Polls /metrics until value(name, **labels) == expected; returns the last value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.metrics().value(name, **labels)
            if value == expected or time.monotonic() >= deadline:
                return value
            time.sleep(0.1)

    # -- SIPp -----------------------------------------------------------------------

    def _sipp_args(self, scenario, port, tag, timeout, trace, local_ip=LOOPBACK):
        path = scenario if os.path.isabs(scenario) else os.path.join(SIPP_DIR, scenario)
        if not os.path.isfile(path):
            raise AssertionError("no scenario %s" % path)
        files = {k: self.path("%s.%s" % (tag, k)) for k in ("out", "err", "msg")}
        args = [_SIPP, "-sf", path, "-i", local_ip, "-p", str(port),
                "-buff_size", SIPP_BUFF_SIZE, "-nostdin",
                "-timeout", "%ds" % timeout, "-timeout_error",
                "-trace_err", "-error_file", files["err"]]
        if trace:
            args += ["-trace_msg", "-message_file", files["msg"]]
        return args, files

    def _spawn_sipp(self, name, scenario, port, timeout, trace, tail_args, wait_bound,
                    local_ip=LOOPBACK):
        if not _SIPP:
            raise unittest.SkipTest("sipp is not installed (Debian package sip-tester)")
        fixed = port is not None
        for attempt in range(3):
            p = port if fixed else free_port()
            self._seq += 1
            tag = "%02d-%s" % (self._seq, name)
            args, files = self._sipp_args(scenario, p, tag, timeout, trace, local_ip)
            args += tail_args
            popen = _spawn(args, files["out"], self.dir)
            sipp = Sipp(name, os.path.basename(scenario), p, popen, files, timeout, local_ip)
            self.sipps.append(sipp)
            if not wait_bound:
                return sipp
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                if not sipp.running():
                    break
                bound = udp_port_bound(p, host=local_ip)
                if bound or bound is None:
                    if bound is None:
                        time.sleep(0.3)
                    return sipp
                time.sleep(0.02)
            if sipp.running():
                raise AssertionError("%s did not bind UDP %s" % (name, sipp.addr))
            sipp.rc = popen.returncode
            if sipp.rc == SIPP_RC_BIND_FAILED and not fixed:
                continue
            raise AssertionError("%s exited with %s at start-up:\n%s"
                                 % (name, sipp.rc, sipp.report()))
        raise AssertionError("%s could not bind after 3 attempts" % name)

    def start_callee(self, scenario, calls=None, port=None, keys=None, duration_ms=0,
                     lost=None, timeout=30, trace=True, name=None, extra=(),
                     local_ip=LOOPBACK):
        """Starts a SIPp callee (server mode) in the background.

        calls: exit after that many calls (`-m`); None: run until stopped (counting).
        duration_ms: -d, the timewait/pause of the scenario (see its header).
        keys: {name: value} for the scenario's [name] keywords (-key).
        local_ip: the loopback address it listens on (any of 127.0.0.0/8).
        """
        tail = ["-d", str(duration_ms)]
        if calls is not None:
            tail += ["-m", str(calls)]
        if lost is not None:
            tail += ["-lost", str(lost)]
        for k, v in (keys or {}).items():
            tail += ["-key", k, str(v)]
        tail += list(extra)
        name = name or "callee-" + os.path.splitext(os.path.basename(scenario))[0]
        return self._spawn_sipp(name, scenario, port, timeout, trace, tail, wait_bound=True,
                                local_ip=local_ip)

    def start_caller(self, scenario, calls=1, rate=10, dest=None, remote=None, service="1000",
                     keys=None, duration_ms=0, lost=None, limit=None, timeout=15, trace=True,
                     name=None, extra=(), local_ip=LOOPBACK):
        """Starts a SIPp caller towards the b2bua (or `remote`) without waiting.

        dest: host:port for the Request-URI and To (-key dest); default the b2bua.
        local_ip: the loopback address it sends from (any of 127.0.0.0/8), the source
        address the b2bua's access policy sees.
        """
        if remote is None:
            if self.b2bua is None:
                raise AssertionError("start the b2bua before a caller, or pass remote=")
            remote = self.b2bua.addr
        tail = ["-s", service, "-m", str(calls), "-r", str(rate), "-d", str(duration_ms),
                "-key", "dest", dest or remote]
        if lost is not None:
            tail += ["-lost", str(lost)]
        if limit is not None:
            tail += ["-l", str(limit)]
        for k, v in (keys or {}).items():
            tail += ["-key", k, str(v)]
        tail += list(extra) + [remote]
        name = name or "caller-" + os.path.splitext(os.path.basename(scenario))[0]
        return self._spawn_sipp(name, scenario, None, timeout, trace, tail, wait_bound=False,
                                local_ip=local_ip)

    def run_caller(self, scenario, **kwargs):
        """start_caller() and wait for its exit (bounded by its -timeout plus 10 s)."""
        caller = self.start_caller(scenario, **kwargs)
        caller.wait()
        if caller.rc == SIPP_RC_BIND_FAILED:  # the port went in the meantime: once more
            caller = self.start_caller(scenario, **kwargs)
            caller.wait()
        return caller

    # -- helpers --------------------------------------------------------------------

    def start_process(self, name, args, cwd=None):
        """Starts a helper process (e.g. prometheus), cleaned up like the others."""
        log = self.path("%s.log" % name)
        popen = _spawn(args, log, cwd or self.dir)
        self.others.append((name, popen, log))
        return popen

    def close(self):
        """Stops everything still running. Safe to call twice."""
        for sipp in self.sipps:
            if sipp.running():
                sipp.kill()
        for _, popen, _ in self.others:
            if popen.poll() is None:
                popen.send_signal(signal.SIGTERM)
                try:
                    popen.wait(10)
                except subprocess.TimeoutExpired:
                    popen.kill()
                    popen.wait(5)
        if self.b2bua is not None and self.b2bua.running():
            self.stop_b2bua()

    def report(self):
        parts = ["######## logs of %s in %s" % (self.name, self.dir)]
        if self.b2bua is not None:
            parts.append(self.b2bua.report())
        for sipp in self.sipps:
            parts.append(sipp.report())
        for name, popen, log in self.others:
            parts.append("==== %s (rc %s) %s\n%s" % (name, popen.returncode, log, _tail(log, 30)))
        return "\n".join(parts)

    def remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)


class B2buaTestCase(unittest.TestCase):
    """Base class: `self.h` is a fresh Harness; processes end whatever happens.

    A cleanup stops the b2bua with SIGTERM and fails the test unless it exits 0. On any
    failure the log tails are printed to stderr and the directory is kept.
    """

    @classmethod
    def setUpClass(cls):
        if not sipp_path():
            raise unittest.SkipTest("sipp is not installed (Debian package sip-tester); "
                                    "the end-to-end tests need it")
        if not os.environ.get("B2BUA_BINARY"):
            raise unittest.SkipTest("no b2bua binary: pass --binary PATH or set B2BUA_BINARY")

    def setUp(self):
        self.h = Harness(self.id().split(".", 1)[-1])
        self.addCleanup(self._cleanup)

    def _cleanup(self):
        rc = self.h.stop_b2bua() if self.h.b2bua is not None else 0
        self.h.close()
        if rc != 0:
            raise AssertionError("b2bua exit code on SIGTERM: %s (expected 0)" % rc)

    def run(self, result=None):
        result = result or self.defaultTestResult()
        before = len(result.failures) + len(result.errors)
        super().run(result)
        h = getattr(self, "h", None)
        if h is None:
            return result
        if len(result.failures) + len(result.errors) > before:
            sys.stderr.write("\n" + h.report() + "\n")
        elif not os.environ.get("B2BUA_KEEP_LOGS"):
            h.remove()
        return result

    # -- assertions -----------------------------------------------------------------

    def assertSippOk(self, sipp, timeout=None):
        """SIPp exited 0: every call followed its scenario."""
        rc = sipp.wait(timeout)
        if rc != 0:
            self.fail("%s did not complete every call (exit %s)\n%s"
                      % (sipp.describe(), rc, _tail(sipp.files["err"], 30)))

    def assertSippsOk(self, *sipps, timeout=None):
        for s in sipps:
            self.assertSippOk(s, timeout)

    def assertMetric(self, name, expected, wait=3.0, **labels):
        """value(name, **labels) == expected, polling up to `wait` s for late updates."""
        got = self.h.wait_metric(name, expected, timeout=wait, **labels)
        if got != expected:
            shown = "\n".join("  %s%s %s" % (n, dict(ls), v)
                              for (n, ls), v in sorted(self.h.metrics().items(),
                                                       key=lambda kv: kv[0][0])
                              if n.startswith(name.rsplit("_total", 1)[0]))
            self.fail("%s%s = %s, expected %s\n%s" % (name, labels or "", got, expected, shown))

    def assertNoActiveCalls(self, wait=5.0):
        """Every shard's b2bua_calls_active gauge is back to 0 (and the gauge exists)."""
        self.assertTrue(self.h.metrics().series("b2bua_calls_active"),
                        "/metrics has no b2bua_calls_active series")
        self.assertMetric("b2bua_calls_active", 0, wait=wait)
