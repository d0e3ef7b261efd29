#!/usr/bin/env python3
"""Operations, end to end: deploy/ artefacts, signals, flags and the admin endpoints.

    python3 tests/integration/test_ops.py --binary build/release/b2bua/b2bua [-k name]

- The Prometheus files in deploy/prometheus pass `promtool check config`, `check rules`
  and their own unit tests (`promtool test rules`); the Grafana dashboard's queries are
  valid PromQL.
- Every metric name, label and label value that the dashboard and the alert rules use is
  in a live /metrics scrape of the real binary, and every flag the deploy files pass is a
  flag of the binary; the configs shipped in deploy/ are accepted by it.
- SIGHUP reloads the config (and refuses a broken one); SIGTERM drains: /readyz 503, new
  INVITEs 503, the live call ends normally, exit 0.
- A broken config at start, --help, and GET /healthz, /readyz, /nope.

Needs promtool (Debian package prometheus) for the promtool tests, sipp for the call tests
and systemd-analyze for the unit check; each test skips with a message when its tool is
missing. Standard library only.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (REPO_ROOT, B2buaTestCase, free_port, main, read_text,  # noqa: E402
                     route, sipp_path)

DEPLOY = os.path.join(REPO_ROOT, "deploy")
ALERTS = os.path.join(DEPLOY, "prometheus", "b2bua-alerts.yml")
ALERTS_TEST = os.path.join(DEPLOY, "prometheus", "b2bua-alerts.test.yml")
PROMETHEUS_CONFIG = os.path.join(DEPLOY, "prometheus", "prometheus.yml")
DASHBOARD = os.path.join(DEPLOY, "grafana", "b2bua-dashboard.json")
SYSTEMD_UNIT = os.path.join(DEPLOY, "systemd", "b2bua.service")
DOCKERFILE = os.path.join(DEPLOY, "docker", "Dockerfile")
K8S_DAEMONSET = os.path.join(DEPLOY, "kubernetes", "b2bua-daemonset.yaml")
K8S_CONFIGMAP = os.path.join(DEPLOY, "kubernetes", "b2bua-configmap.yaml")
EXAMPLE_CONFIG = os.path.join(DEPLOY, "b2bua.example.yaml")

PROMTOOL = shutil.which(os.environ.get("PROMTOOL") or "promtool")
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")

# The flags main.cc defines; --help must name each of them.
FLAGS = ("listen", "shards", "config", "metrics_listen", "log_level", "call_records")

# Metric names the deploy files may use that the b2bua does not export: Prometheus' own
# scrape health and the blackbox_exporter's probe of /readyz.
EXTERNAL_METRICS = {"up", "probe_success"}
# Labels Prometheus attaches to every series, not the exporter.
TARGET_LABELS = {"job", "instance"}


# ---------------------------------------------------------------------------------
# PromQL: just enough of a lexer to find the selectors of an expression
# ---------------------------------------------------------------------------------

_PROMQL_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<num>(?:\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)(?:(?:ms|s|m|h|d|w|y)(?:\d+(?:ms|s|m|h|d|w|y))*)?)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>=~|!~|!=|==|>=|<=|[-+*/%^<>=,(){}\[\]@])
""", re.X)
_KEYWORDS = {"and", "or", "unless", "offset", "bool", "inf", "nan"}
_GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_AGGREGATORS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count",
                "count_values", "bottomk", "topk", "quantile"}


def _promql_tokens(expr):
    # Grafana's interval variables stand where a duration goes; the others sit in strings.
    expr = re.sub(r"\$\{?__[A-Za-z_]+\}?", "5m", expr)
    tokens, pos = [], 0
    while pos < len(expr):
        m = _PROMQL_TOKEN.match(expr, pos)
        if not m:
            raise ValueError("cannot lex PromQL at %r in %r" % (expr[pos:pos + 20], expr))
        pos = m.end()
        if m.lastgroup != "ws":
            tokens.append((m.lastgroup, m.group()))
    return tokens


def _unquote(text):
    return text[1:-1].encode().decode("unicode_escape") if text[0] != "`" else text[1:-1]


def promql_selectors(expr):
    """([(metric or None, [(label, op, value)])], {grouping label names}) of an expression."""
    tokens = _promql_tokens(expr)
    selectors, grouping = [], set()
    i = 0

    def matchers(start):  # tokens[start] is "{"; returns (matchers, index after "}")
        out, j = [], start + 1
        while tokens[j][1] != "}":
            if tokens[j][1] == ",":
                j += 1
                continue
            name, op, value = tokens[j], tokens[j + 1], tokens[j + 2]
            if name[0] != "ident" or op[0] != "op" or value[0] != "str":
                raise ValueError("bad label matcher near %r in %r" % (name[1], expr))
            out.append((name[1], op[1], _unquote(value[1])))
            j += 3
        return out, j + 1

    while i < len(tokens):
        kind, text = tokens[i]
        nxt = tokens[i + 1][1] if i + 1 < len(tokens) else None
        if kind == "ident" and text.lower() in _GROUPING:
            i += 1
            if nxt == "(":
                i += 1
                while tokens[i][1] != ")":
                    if tokens[i][0] == "ident":
                        grouping.add(tokens[i][1])
                    i += 1
                i += 1
            continue
        if kind == "ident" and (text.lower() in _KEYWORDS or text in _AGGREGATORS or nxt == "("):
            i += 1  # keyword, aggregation or function call
            continue
        if kind == "ident":
            if nxt == "{":
                ms, i = matchers(i + 1)
            else:
                ms, i = [], i + 1
            selectors.append((text, ms))
            continue
        if text == "{":  # a selector without a metric name: {__name__="..."}
            ms, i = matchers(i)
            names = [v for n, op, v in ms if n == "__name__" and op == "="]
            selectors.append((names[0] if names else None,
                              [m for m in ms if m[0] != "__name__"]))
            continue
        i += 1
    return selectors, grouping


def alert_rule_exprs(path):
    """{alert name: expr} of a Prometheus rule file, without a YAML library.

    Handles `expr: one line` and `expr: |` block scalars, which is how the file is written.
    """
    exprs, alert = {}, None
    lines = read_text(path).splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r"^\s*-\s*(alert|record):\s*(\S+)", line)
        if m:
            alert = m.group(2)
        m = re.match(r"^(\s*)expr:\s*(.*)$", line)
        if m:
            indent, rest = len(m.group(1)), m.group(2).strip()
            if rest in ("|", ">", "|-", ">-"):
                body = []
                i += 1
                while i < len(lines) and (not lines[i].strip() or
                                          len(lines[i]) - len(lines[i].lstrip()) > indent):
                    body.append(lines[i].strip())
                    i += 1
                exprs[alert] = " ".join(b for b in body if b)
                continue
            exprs[alert] = rest
        i += 1
    return exprs


def dashboard_queries(path):
    """[(where, PromQL)] of a Grafana dashboard: panel targets and variable queries."""
    with open(path) as fh:
        doc = json.load(fh)
    out = []

    def walk(node, where):
        if isinstance(node, dict):
            title = node.get("title") or node.get("name") or where
            if isinstance(node.get("expr"), str):
                out.append(("panel %r" % title, node["expr"]))
            for key, value in node.items():
                walk(value, title)
        elif isinstance(node, list):
            for item in node:
                walk(item, where)

    walk(doc.get("panels", []), "dashboard")
    for var in doc.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        query = var.get("query")
        query = query.get("query") if isinstance(query, dict) else query
        # label_values(SELECTOR, label) is Grafana's, not PromQL: check the selector.
        m = re.match(r"^\s*label_values\((.*),\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$", query or "")
        out.append(("variable %r" % var["name"], m.group(1) if m else query))
    return out


def scrape_index(metrics):
    """{metric name: {label: set(values)}} of a parsed scrape (harness.Metrics)."""
    index = {}
    for (name, labels), _ in metrics.items():
        entry = index.setdefault(name, {})
        for label, value in labels:
            entry.setdefault(label, set()).add(value)
    return index


def unknown_names(queries, index):
    """Problems of (where, PromQL) queries against a scrape index; [] when all is known."""
    problems = []
    all_labels = set(TARGET_LABELS)
    for labels in index.values():
        all_labels |= set(labels)
    for where, expr in queries:
        try:
            selectors, grouping = promql_selectors(expr)
        except (ValueError, IndexError) as err:
            problems.append("%s: %s" % (where, err))
            continue
        if not selectors:
            problems.append("%s: no metric selector in %r" % (where, expr))
        for name, matchers in selectors:
            if name is None:
                problems.append("%s: selector without a metric name in %r" % (where, expr))
                continue
            if name in EXTERNAL_METRICS:
                continue
            if name not in index:
                problems.append("%s: metric %s is not in /metrics" % (where, name))
                continue
            for label, op, value in matchers:
                if label in TARGET_LABELS:
                    continue
                known = index[name].get(label)
                if known is None:
                    problems.append("%s: %s has no label %r" % (where, name, label))
                    continue
                # A plain value or an alternation of plain values must each exist: a typo
                # in a != or !~ matcher would silently match everything.
                if op in ("=", "!=") or re.fullmatch(r"[A-Za-z0-9_]+(\|[A-Za-z0-9_]+)*", value):
                    for alternative in value.split("|") if op in ("=~", "!~") else [value]:
                        if alternative not in known:
                            problems.append("%s: %s{%s} has no value %r (has %s)"
                                            % (where, name, label, alternative,
                                               ", ".join(sorted(known))))
        for label in sorted(grouping - all_labels):
            problems.append("%s: grouping label %r is on no exported series" % (where, label))
    return problems


def deploy_flags():
    """{(file, flag name)} of every --flag=value the deploy files pass to the binary.

    Only where the binary's command line is: ExecStart of the unit (with its continuation
    lines), ENTRYPOINT and CMD of the Dockerfile, list items of the DaemonSet.
    """
    found = set()

    def add(path, text):
        for flag in re.findall(r"(?<![\w-])--([a-z_]+)=", text):
            found.add((os.path.relpath(path, REPO_ROOT), flag))

    for path, start in ((SYSTEMD_UNIT, r"ExecStart="), (DOCKERFILE, r"(ENTRYPOINT|CMD) ")):
        lines = read_text(path).splitlines()
        i = 0
        while i < len(lines):
            if re.match(start, lines[i]):
                add(path, lines[i])
                while lines[i].rstrip().endswith("\\") and i + 1 < len(lines):
                    i += 1
                    add(path, lines[i])
            i += 1
    for line in read_text(K8S_DAEMONSET).splitlines():
        if re.match(r"^\s*-\s+--", line):
            add(K8S_DAEMONSET, line)
    return found


def configmap_config(path):
    """The b2bua.yaml block scalar of the ConfigMap, dedented (no YAML library)."""
    lines = read_text(path).splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)b2bua\.yaml:\s*\|\s*$", line)
        if not m:
            continue
        body = []
        for follow in lines[i + 1:]:
            if follow.strip() and len(follow) - len(follow.lstrip()) <= len(m.group(1)):
                break
            body.append(follow)
        indent = min(len(b) - len(b.lstrip()) for b in body if b.strip())
        return "\n".join(b[indent:] for b in body) + "\n"
    raise AssertionError("%s has no b2bua.yaml key" % path)


def run(args, timeout=60, **kwargs):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, **kwargs)


# ---------------------------------------------------------------------------------
# The deploy files on their own
# ---------------------------------------------------------------------------------

class PromtoolTest(unittest.TestCase):
    """(a) promtool accepts the rules, their unit tests and the scrape config."""

    def setUp(self):
        if not PROMTOOL:
            self.skipTest("promtool is not installed (Debian package prometheus)")

    def promtool(self, *args):
        result = run([PROMTOOL] + list(args))
        self.assertEqual(result.returncode, 0, "promtool %s (exit %d):\n%s%s"
                         % (" ".join(args), result.returncode, result.stdout, result.stderr))
        return result.stdout + result.stderr

    def test_check_rules(self):
        out = self.promtool("check", "rules", ALERTS)
        self.assertIn("SUCCESS", out)
        self.assertIn("%d rules found" % len(alert_rule_exprs(ALERTS)), out,
                      "the test's rule extractor and promtool disagree on the rule count")

    def test_alert_rule_unit_tests(self):
        out = self.promtool("test", "rules", ALERTS_TEST)
        self.assertIn("SUCCESS", out)
        # Each alert is exercised by the unit tests, firing at least once.
        with open(ALERTS_TEST) as fh:
            tests = fh.read()
        for alert in alert_rule_exprs(ALERTS):
            self.assertRegex(tests, r"alertname: %s\n\s+exp_alerts:\n\s+- exp_labels" % alert,
                             "%s never fires in %s" % (alert, ALERTS_TEST))

    def test_check_config(self):
        out = self.promtool("check", "config", PROMETHEUS_CONFIG)
        self.assertIn("is valid prometheus config file syntax", out)

    def test_dashboard_queries_are_valid_promql(self):
        """Each dashboard query, Grafana variables filled in, parses as a rule expression."""
        queries = dashboard_queries(DASHBOARD)
        self.assertGreater(len(queries), 10)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "dashboard-queries.yml")
            with open(path, "w") as fh:
                fh.write("groups:\n  - name: dashboard\n    rules:\n")
                for n, (where, expr) in enumerate(queries):
                    expr = re.sub(r"\$\{?__[A-Za-z_]+\}?", "5m", expr)
                    expr = re.sub(r"\$\{?(job|instance)\}?", ".*", expr)
                    fh.write("      - record: dashboard:query_%d\n        expr: %s\n"
                             % (n, json.dumps(expr)))
            self.promtool("check", "rules", path)


class DeployFilesTest(unittest.TestCase):
    """Syntax of the other deploy files (no binary needed)."""

    def test_dashboard_is_grafana_json_with_datasource_variable(self):
        with open(DASHBOARD) as fh:
            doc = json.load(fh)
        self.assertGreaterEqual(doc["schemaVersion"], 36)
        variables = {v["name"]: v for v in doc["templating"]["list"]}
        self.assertEqual(variables["datasource"]["type"], "datasource")
        ids = [p["id"] for p in doc["panels"]]
        self.assertEqual(len(ids), len(set(ids)), "duplicate panel ids")
        for panel in doc["panels"]:
            if panel["type"] == "row":
                continue
            self.assertEqual(panel["datasource"]["uid"], "${datasource}", panel["title"])
            for target in panel["targets"]:
                self.assertEqual(target["datasource"]["uid"], "${datasource}", panel["title"])

    def test_systemd_unit_verifies(self):
        if not SYSTEMD_ANALYZE:
            self.skipTest("systemd-analyze is not installed")
        binary = os.environ.get("B2BUA_BINARY")
        if not binary:
            self.skipTest("no b2bua binary: pass --binary PATH or set B2BUA_BINARY")
        with open(SYSTEMD_UNIT) as fh:
            unit = fh.read()
        # verify checks that ExecStart exists: point it at the binary under test.
        unit = unit.replace("ExecStart=/usr/local/bin/b2bua ",
                            "ExecStart=%s " % os.path.abspath(binary))
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "b2bua.service")
            with open(path, "w") as fh:
                fh.write(unit)
            result = run([SYSTEMD_ANALYZE, "verify", path])
        self.assertEqual(result.returncode, 0, "systemd-analyze verify:\n%s%s"
                         % (result.stdout, result.stderr))
        self.assertEqual(result.stderr.strip(), "", "systemd-analyze verify warnings")


# ---------------------------------------------------------------------------------
# The deploy files against the real binary
# ---------------------------------------------------------------------------------

class BinaryTestCase(B2buaTestCase):
    """B2buaTestCase for tests that need the binary but no sipp."""

    @classmethod
    def setUpClass(cls):
        if not os.environ.get("B2BUA_BINARY"):
            raise unittest.SkipTest("no b2bua binary: pass --binary PATH or set B2BUA_BINARY")


class DeployAgainstBinaryTest(BinaryTestCase):

    def test_metric_names_in_dashboard_and_rules_exist(self):
        """(b) Every name, label and label value used in deploy/ is in a live scrape."""
        self.h.start_b2bua(self.h.config(routes=[]))
        scrape = self.h.metrics()
        index = scrape_index(scrape)
        queries = [("alert %s" % name, expr) for name, expr in alert_rule_exprs(ALERTS).items()]
        self.assertGreaterEqual(len(queries), 6)
        queries += dashboard_queries(DASHBOARD)
        problems = unknown_names(queries, index)
        self.assertEqual(problems, [], "deploy files use names /metrics does not have:\n  "
                         + "\n  ".join(problems))
        # The list: each of these families is on the dashboard.
        dashboard_names = set()
        for _, expr in dashboard_queries(DASHBOARD):
            dashboard_names |= {name for name, _ in promql_selectors(expr)[0]}
        for name in ("b2bua_calls_total", "b2bua_calls_active", "b2bua_call_setup_seconds_bucket",
                     "b2bua_redirects_received_total", "b2bua_redirect_targets_total",
                     "b2bua_redirect_loops_detected_total", "b2bua_redirect_failures_total",
                     "b2bua_redirect_extra_delay_seconds_bucket", "b2bua_sip_parse_errors_total",
                     "b2bua_datagrams_dropped_total", "b2bua_shard_queue_depth",
                     "b2bua_retransmissions_sent_total"):
            self.assertIn(name, dashboard_names, "the dashboard has no panel on %s" % name)

    def test_name_check_catches_unknown_names(self):
        """The check above fails on a misspelt metric, label or label value."""
        self.h.start_b2bua(self.h.config(routes=[]))
        index = scrape_index(self.h.metrics())
        for bad in ('rate(b2bua_call_total[5m])',
                    'sum by (outcome) (rate(b2bua_calls_total{outcom="answered"}[5m]))',
                    'rate(b2bua_calls_total{outcome=~"answered|unreachabel"}[5m])',
                    'rate(b2bua_redirect_failures_total{reason!="canceled"}[5m])',
                    'sum by (reson) (rate(b2bua_redirect_failures_total[5m]))',
                    'b2bua_redirect_depth > 1',
                    'node_load1 > 1'):
            self.assertNotEqual(unknown_names([("probe", bad)], index), [], bad)
        self.assertEqual(unknown_names([("probe", 'up{job="b2bua"} == 0')], index), [])

    def test_flags_in_deploy_files_exist(self):
        """Every --flag= in the unit, the Dockerfile and the DaemonSet is a b2bua flag."""
        result = run([self.h.binary, "--helpfull"], timeout=10)
        defined = set(re.findall(r"^\s+--([a-z_]+) ", result.stdout + result.stderr, re.M))
        self.assertTrue(set(FLAGS) <= defined, "--helpfull lists %s" % sorted(defined))
        used = deploy_flags()
        self.assertTrue({flag for _, flag in used} >= {"listen", "metrics_listen", "config"})
        unknown = sorted("%s: --%s" % pair for pair in used if pair[1] not in defined)
        self.assertEqual(unknown, [], "flags the binary does not define")

    def test_shipped_configs_are_accepted(self):
        """deploy/b2bua.example.yaml and the Kubernetes ConfigMap's config both load."""
        configmap = self.h.config(text=configmap_config(K8S_CONFIGMAP))
        # The example's TLS section ships commented out (the certificates are the
        # operator's): here it is switched on with a free loopback port and the test
        # certificates, everything else as shipped.
        tls_dir = os.path.join(REPO_ROOT, "tests", "data", "tls")
        lines = read_text(EXAMPLE_CONFIG).split("\n")
        start = lines.index("#tls:")
        end = start + 1
        while end < len(lines) and lines[end].startswith("#  "):
            end += 1
        self.assertGreater(end - start, 5, "the commented tls: block")
        lines[start:end] = [line[1:] for line in lines[start:end]]
        example = "\n".join(lines)
        for shipped, local in (('"203.0.113.1:5061"', '"127.0.0.1:%d"' % free_port()),
                               ("/etc/b2bua/tls/edge.pem", os.path.join(tls_dir, "server.pem")),
                               ("/etc/b2bua/tls/edge.key", os.path.join(tls_dir, "server.key")),
                               ("/etc/b2bua/tls/trunk-ca.pem", os.path.join(tls_dir, "ca.pem"))):
            self.assertIn(shipped, example)
            example = example.replace(shipped, local)
        for path in (self.h.config(text=example), configmap):
            b = self.h.start_b2bua(path, shards=1)
            self.assertIn("config %s" % path, read_text(b.log))
            self.assertEqual(self.h.stop_b2bua(), 0, "exit code on SIGTERM")


class ReadmeMetricsTest(BinaryTestCase):
    def test_every_family_the_readme_names_is_exported(self):
        """Every b2bua_* family README.md names is on /metrics of a freshly started binary
        (every family is exported from the start, zero or not)."""
        readme = read_text(os.path.join(REPO_ROOT, "README.md"))
        named = set(re.findall(r"\b(b2bua_[a-z0-9_]+)", readme))
        self.assertGreater(len(named), 25)
        self.h.start_b2bua(self.h.config(), shards=1)
        exported = self.h.metrics().names()
        # Histograms and counters show under their series names.
        series = set(exported) | {n.rsplit("_bucket", 1)[0] for n in exported} | {
            n.rsplit("_count", 1)[0] for n in exported}
        missing = sorted(n for n in named if n not in series)
        self.assertEqual(missing, [], "families README.md names that /metrics lacks")


# ---------------------------------------------------------------------------------
# The binary: flags, start-up errors, admin endpoints
# ---------------------------------------------------------------------------------

class BinaryOpsTest(BinaryTestCase):

    def test_broken_config_at_start_exits_nonzero_naming_file_and_line(self):
        """(e) An unknown key on line 3: exit non-zero, `FILE:3:` in the message."""
        path = self.h.config(text="limits:\n  max_calls: 10\n  max_callz: 20\nroutes: []\n")
        args = [self.h.binary, "--config=%s" % path, "--listen=127.0.0.1:%d" % free_port(),
                "--metrics_listen=127.0.0.1:%d" % free_port(), "--shards=1"]
        result = run(args, timeout=15)
        self.assertNotEqual(result.returncode, 0, "started on a broken config:\n%s"
                            % result.stderr)
        self.assertIn("%s:3:" % path, result.stderr, "the message names no file:line")
        self.assertIn("max_callz", result.stderr, "the message names no key")

        missing = self.h.path("no-such-config.yaml")
        result = run(args[:1] + ["--config=%s" % missing] + args[2:], timeout=15)
        self.assertNotEqual(result.returncode, 0, "started without its config file")
        self.assertIn(missing, result.stderr, "the message names no file")

    def test_help_exits_0_and_names_every_flag(self):
        """(f) --help: exit 0, each flag named."""
        result = run([self.h.binary, "--help"], timeout=10)
        out = result.stdout + result.stderr
        missing = [flag for flag in FLAGS if "--%s" % flag not in out]
        self.assertEqual((result.returncode, missing), (0, []),
                         "--help: (exit code, flags it does not mention); its output:\n%s" % out)

    def test_version_exits_0_and_names_the_build(self):
        """--version: exit 0, one line with the version and the build type; the same text
        opens the start-up line, so that a log says what ran."""
        result = run([self.h.binary, "--version"], timeout=10)
        self.assertEqual(result.returncode, 0, result.stderr)
        line = result.stdout.strip()
        self.assertRegex(line, r"^b2bua \d+\.\d+\.\d+ \(\w+ build\)$")
        b = self.h.start_b2bua(self.h.config(routes=[]))
        deadline = time.monotonic() + 10
        text = ""
        while time.monotonic() < deadline and line + " listening on" not in text:
            with open(b.log, encoding="utf-8", errors="replace") as fh:
                text = fh.read()
            time.sleep(0.05)
        self.assertIn(line + " listening on", text)

    def test_admin_endpoints(self):
        """(g) /healthz 200, /readyz 200, unknown paths 404; /metrics is the text format."""
        b = self.h.start_b2bua(self.h.config(routes=[]))
        self.assertEqual(b.http_get("/healthz")[0], 200)
        self.assertEqual(b.http_get("/readyz")[0], 200)
        self.assertEqual(b.http_get("/nope")[0], 404)
        status, body = b.http_get("/metrics")
        self.assertEqual(status, 200)
        self.assertIn("# TYPE b2bua_calls_total counter", body)


# ---------------------------------------------------------------------------------
# Signals, with calls
# ---------------------------------------------------------------------------------

class SignalTest(B2buaTestCase):

    def call(self):
        """One call from a new caller to 1000; returns the caller after it ended."""
        return self.h.run_caller("uac-basic-call-caller-hangup.xml", duration_ms=100)

    def test_sighup_reloads_routes_and_refuses_a_broken_file(self):
        """(c) Route 1 -> A; reload to B; a broken file is refused and B stays."""
        a = self.h.start_callee("uas-answer-200.xml", calls=1, name="callee-a")
        b = self.h.start_callee("uas-answer-200.xml", calls=2, name="callee-b")
        config_path = self.h.config(routes=[route("1", a.port)])
        b2bua = self.h.start_b2bua(config_path)

        self.assertSippOk(self.call())
        self.assertEqual(len(a.calls_received()), 1, "the first call did not reach A")

        # Replace the file the way an editor or a config manager does (rename over it).
        os.replace(self.h.config(routes=[route("1", b.port)]), config_path)
        b2bua.proc.send_signal(signal.SIGHUP)
        log = self.h.wait_log("config reloaded from %s" % config_path, 1)
        self.assertIn("config reloaded from %s" % config_path, log)
        self.assertSippOk(self.call())
        self.assertEqual(len(b.calls_received()), 1, "the call after SIGHUP did not reach B")
        self.assertEqual(len(a.calls_received()), 1, "A got a call after the reload")

        with open(config_path, "w") as fh:
            fh.write("limits:\n  drain_timeout: 30s\n  no_such_key: 1\nroutes:\n"
                     '  - prefix: "1"\n    next_hops: ["sip:127.0.0.1:%d"]\n' % a.port)
        b2bua.proc.send_signal(signal.SIGHUP)
        log = self.h.wait_log("reload refused", 1)
        self.assertRegex(log, r"reload refused[^\n]*%s:3:[^\n]*no_such_key"
                         % re.escape(config_path))
        self.assertTrue(b2bua.running(), "the b2bua exited on a broken config reload")
        self.assertEqual(b2bua.http_get("/readyz")[0], 200)
        self.assertSippOk(self.call())
        self.assertEqual(len(b.calls_received()), 2, "the call after the refused reload "
                         "did not reach B")
        self.assertSippsOk(a, b)
        self.assertMetric("b2bua_calls_total", 3, outcome="answered")
        self.assertNoActiveCalls()

    def test_sigterm_drains_live_call_then_exits_0(self):
        """(d) SIGTERM mid-call: /readyz 503, new INVITE 503, the call ends, exit 0."""
        callee = self.h.start_callee("uas-answer-200.xml", calls=1)
        b2bua = self.h.start_b2bua(self.h.config(
            routes=[route("1", callee.port)],
            limits={"drain_timeout": "20s"}))
        # The caller talks for 3 s before its BYE.
        live = self.h.start_caller("uac-basic-call-caller-hangup.xml", duration_ms=3000,
                                   name="caller-live")
        self.assertEqual(self.h.wait_metric("b2bua_dialogs_active", 2, timeout=5), 2,
                         "the call was not answered")
        term_sent = time.monotonic()
        b2bua.proc.send_signal(signal.SIGTERM)

        deadline = time.monotonic() + 2
        while b2bua.http_get("/readyz", timeout=1)[0] != 503 and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertEqual(b2bua.http_get("/readyz", timeout=1)[0], 503,
                         "/readyz still ready after SIGTERM")
        self.assertTrue(b2bua.running(), "exited with a call still up")

        refused = self.h.run_caller("uac-expect-408-or-503.xml", name="caller-refused",
                                    timeout=5)
        self.assertSippOk(refused)
        finals = [m for m in refused.received() if m.status and m.status >= 200]
        self.assertEqual([m.status for m in finals][:1], [503], "the new INVITE got %s"
                         % [m.start_line for m in finals])
        self.assertIsNotNone(finals[0].header("retry-after"), "503 without Retry-After")
        self.assertEqual(len(callee.calls_received()), 1, "the refused call reached the callee")
        self.assertEqual(self.h.metrics().value("b2bua_calls_total", outcome="overload"), 1)
        self.assertTrue(b2bua.running(), "exited with a call still up")

        # The live call ends as scripted: its BYE gets its 200 through the draining b2bua.
        self.assertSippsOk(live, callee)
        self.assertTrue([m for m in live.received(status=200) if m.cseq_method == "BYE"],
                        "the live call's BYE got no 200")
        try:
            rc = b2bua.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.fail("still running 10 s after its last call ended")
        self.assertEqual(rc, 0, "exit code after the drain")
        self.assertLess(time.monotonic() - term_sent, 15, "the drain waited for its limit")
        log = read_text(b2bua.log)
        self.assertIn("stopping with 0 calls still up", log)

    def start_long_call(self, b2bua_config, talk_ms=8000):
        """b2bua on `b2bua_config`, then one call answered and kept up for `talk_ms`."""
        callee = self.h.start_callee("uas-answer-200.xml", calls=1)
        config_path = self.h.config(routes=[route("1", callee.port)], **b2bua_config)
        b2bua = self.h.start_b2bua(config_path)
        return callee, b2bua, config_path

    def wait_answered(self):
        self.assertEqual(self.h.wait_metric("b2bua_dialogs_active", 2, timeout=5), 2,
                         "the call was not answered")

    def stop_within(self, b2bua, seconds, why):
        """SIGTERM; the b2bua must exit 0 within `seconds`."""
        start = time.monotonic()
        b2bua.proc.send_signal(signal.SIGTERM)
        try:
            rc = b2bua.proc.wait(seconds + 15)
        except subprocess.TimeoutExpired:
            self.fail("still running %d s after SIGTERM" % (seconds + 15))
        took = time.monotonic() - start
        self.assertEqual(rc, 0, "exit code after the drain")
        self.assertLess(took, seconds, "exited %.1f s after SIGTERM: %s" % (took, why))

    def test_drain_timeout_tears_down_calls_still_up(self):
        """A call outlasting limits.drain_timeout gets BYE on both legs; exit 0 at the limit.

        deploy/b2bua.example.yaml: "On shutdown, calls still up after this long are torn
        down", and a torn-down call is BYEd on both legs (as for max_call_duration), so
        neither peer keeps a call nobody relays.
        """
        callee, b2bua, _ = self.start_long_call({"limits": {"drain_timeout": "1s"}})
        live = self.h.start_caller("uac-basic-call-caller-hangup.xml", duration_ms=8000,
                                   name="caller-live")
        self.wait_answered()
        self.stop_within(b2bua, 5, "drain_timeout is 1s")
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and not (live.received("BYE") and
                                                   callee.received("BYE")):
            time.sleep(0.1)
        self.assertEqual((len(live.received("BYE")), len(callee.received("BYE"))), (1, 1),
                         "BYEs (to the caller, to the callee) for the call still up when "
                         "drain_timeout passed; log:\n%s" % read_text(b2bua.log))

    def test_sighup_reloaded_drain_timeout_applies_to_sigterm(self):
        """limits.drain_timeout changed by SIGHUP is the one the next SIGTERM waits for."""
        callee, b2bua, config_path = self.start_long_call({"limits": {"drain_timeout": "30s"}})
        os.replace(self.h.config(routes=[route("1", callee.port)],
                                 limits={"drain_timeout": "1s"}), config_path)
        b2bua.proc.send_signal(signal.SIGHUP)
        self.assertIn("config reloaded", self.h.wait_log("config reloaded", 1))
        self.h.start_caller("uac-basic-call-caller-hangup.xml", duration_ms=8000,
                            name="caller-live")
        self.wait_answered()
        self.stop_within(b2bua, 5, "the reloaded drain_timeout is 1s (30s at start-up; "
                         "the call itself lasts 8s)")


if __name__ == "__main__":
    if not PROMTOOL:
        print("note: promtool missing; its tests will be skipped", file=sys.stderr)
    if not sipp_path():
        print("note: sipp missing; the signal tests will be skipped", file=sys.stderr)
    main()
