#!/usr/bin/env python3
"""Load harness: sipp callers and callees around the b2bua, Kamailio, or nothing at all.

Started by bench/sipp/run.sh (which installs sipp and Kamailio first); standard library
only. For each target and workload it starts the sipp callee(s), the target and one sipp
caller per rate step on 127.0.0.1 (ports picked at run time), and measures:

  from sipp    completed and failed calls, retransmissions, achieved calls per second,
               call set-up time (RTD, INVITE sent to 200 received) p50/p99 from the
               per-call -trace_rtt file (sipp's clock ticks in whole milliseconds);
  from /proc   the target's CPU time (utime+stime of every process of the target) per
               completed call, its peak memory, and for the "long" workload the memory
               added per live call (sum of PSS over the target's processes, read once N
               calls are answered and held and their set-up transactions have expired).

Targets:   sipp-alone (caller straight to the callee: the ceiling), b2bua-1 and b2bua-2
           (--shards=1/2), kamailio (bench/sipp/kamailio/*.cfg, stateful + dialogs).
Workloads: basic (INVITE/100/180/200/ACK/BYE/200, BYE 10 ms after the ACK), redirect (the
           first callee answers 302 naming a second callee that answers 200), long (N calls
           held).

See bench/README.md, section "Load harness (sipp)", for every column.
"""

import argparse
import datetime
import glob
import math
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))
# The end-to-end tests' harness knows how to tell that a peer has bound its port.
sys.path.insert(0, os.path.join(REPO_ROOT, "tests", "integration"))
from harness import udp_port_bound  # noqa: E402
LOOPBACK = "127.0.0.1"
BUFF_SIZE = "4194304"  # every sipp: -buff_size; net.core.rmem_max must allow it
CLK_TCK = os.sysconf("SC_CLK_TCK")

ALL_TARGETS = ["sipp-alone", "b2bua-1", "b2bua-2", "kamailio"]
ALL_WORKLOADS = ["basic", "redirect", "long"]

_http = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_handed_out_ports = set()


def log(msg):
    sys.stderr.write("[%s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


# ---------------------------------------------------------------------------------
# Ports and /proc
# ---------------------------------------------------------------------------------

def free_port():
    """A UDP port on 127.0.0.1 free right now (bind port 0); never the same one twice."""
    for _ in range(200):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind((LOOPBACK, 0))
            port = s.getsockname()[1]
        finally:
            s.close()
        if port not in _handed_out_ports:
            _handed_out_ports.add(port)
            return port
    raise RuntimeError("no free port")


def _read(path):
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return None


def proc_tree(root):
    """root and every descendant pid (Kamailio forks its workers from the main process)."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = _read("/proc/%s/stat" % entry)
        if not stat:
            continue
        rest = stat[stat.rfind(")") + 2:].split()
        children.setdefault(int(rest[1]), []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if os.path.exists("/proc/%d" % pid):
            out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cpu_ticks(pids):
    """Sum of utime+stime (clock ticks) over pids; every thread of a process is included."""
    total = 0
    for pid in pids:
        stat = _read("/proc/%d/stat" % pid)
        if not stat:
            continue
        rest = stat[stat.rfind(")") + 2:].split()
        total += int(rest[11]) + int(rest[12])
    return total


def status_kb(pid, field):
    text = _read("/proc/%d/status" % pid) or ""
    m = re.search(r"^%s:\s+(\d+) kB" % field, text, re.M)
    return int(m.group(1)) if m else None


def pss_kb(pids):
    """Sum of PSS (kB) over pids: shared pages (Kamailio's shm pool) are counted once in
    total, split between the processes that touched them. Falls back to VmRSS."""
    total = 0
    for pid in pids:
        text = _read("/proc/%d/smaps_rollup" % pid)
        m = re.search(r"^Pss:\s+(\d+) kB", text or "", re.M)
        if m:
            total += int(m.group(1))
        else:
            total += status_kb(pid, "VmRSS") or 0
    return total


# ---------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------

class Proc:
    """A child process with its log; stopped by pid only (never by name)."""

    def __init__(self, name, args, log_path, cwd):
        self.name = name
        self.args = args
        self.log_path = log_path
        with open(log_path, "w") as out:
            out.write("$ %s\n" % " ".join(args))
            out.flush()
            self.popen = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out,
                                          stderr=subprocess.STDOUT, cwd=cwd)
        self.pid = self.popen.pid
        self.rusage = None

    def running(self):
        return self.popen.poll() is None

    def tree(self):
        return proc_tree(self.pid) if self.running() else []

    def wait_rusage(self, timeout):
        """Waits for the exit (killing it after timeout s); returns (rc, cpu seconds)."""
        timer = threading.Timer(timeout, self._signal_kill)
        timer.start()
        try:
            _, status, ru = os.wait4(self.pid, 0)
        finally:
            timer.cancel()
        self.popen.returncode = os.waitstatus_to_exitcode(status)
        self.rusage = ru
        return self.popen.returncode, ru.ru_utime + ru.ru_stime

    def _signal_kill(self):
        # Only the signal: the thread in wait4() reaps the process.
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def stop(self, timeout=15):
        """SIGTERM, then SIGKILL; children that outlive a killed parent are killed too."""
        if self.popen.poll() is not None:
            return self.popen.returncode
        family = proc_tree(self.pid)
        try:
            self.popen.send_signal(signal.SIGTERM)
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        for pid in family[1:]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return self.popen.returncode

    def kill(self):
        try:
            self.popen.kill()
        except ProcessLookupError:
            pass
        try:
            self.popen.wait(5)
        except subprocess.TimeoutExpired:
            pass

    def tail(self, lines=15):
        text = _read(self.log_path) or ""
        return "\n".join(text.splitlines()[-lines:])


class MemSampler(threading.Thread):
    """Samples the sum of PSS over a process tree every `period` s; keeps the maximum."""

    def __init__(self, root_pid, period=1.0):
        super().__init__(daemon=True)
        self.root = root_pid
        self.period = period
        self.peak_kb = 0
        self._halt = threading.Event()

    def run(self):
        while not self._halt.is_set():
            pids = proc_tree(self.root)
            if pids:
                self.peak_kb = max(self.peak_kb, pss_kb(pids))
            self._halt.wait(self.period)

    def stop(self):
        self._halt.set()
        self.join(5)


# ---------------------------------------------------------------------------------
# sipp
# ---------------------------------------------------------------------------------

class SippRunner:
    def __init__(self, sipp, trace=False):
        self.sipp = sipp
        self.trace = trace

    def base(self, scenario, port):
        args = [self.sipp, "-sf", os.path.join(HERE, scenario), "-i", LOOPBACK,
                "-p", str(port), "-buff_size", BUFF_SIZE, "-nostdin"]
        if self.trace:
            args += ["-trace_msg", "-message_file", "sipp-%d.msg" % port]
        return args

    def start_callee(self, name, scenario, workdir, keys=()):
        """A sipp server (no -m: it runs until stopped); waits until its port is bound."""
        for _ in range(3):
            port = free_port()
            args = self.base(scenario, port)
            for k, v in keys:
                args += ["-key", k, v]
            proc = Proc(name, args, os.path.join(workdir, "%s.log" % name), workdir)
            proc.port = port
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and proc.running():
                if udp_port_bound(port):
                    return proc
                time.sleep(0.02)
            if proc.running():
                proc.stop()
                raise RuntimeError("%s did not bind UDP %d" % (name, port))
            # exit 254 (-2): the port went in the meantime; anything else is fatal
            if proc.popen.returncode != 254:
                raise RuntimeError("%s exited with %s:\n%s"
                                   % (name, proc.popen.returncode, proc.tail()))
        raise RuntimeError("%s could not bind" % name)

    def caller_args(self, scenario, port, remote, dest, calls, rate, limit, hold_ms,
                    recv_timeout_ms, global_timeout_s, extra=()):
        args = self.base(scenario, port)
        args += ["-m", str(calls), "-r", str(rate), "-l", str(limit), "-d", str(hold_ms),
                 "-key", "dest", dest,
                 "-trace_stat", "-stf", "stat.csv", "-fd", "1",
                 # sipp writes the RTDs in batches of -rtt_freq and drops a last, partial
                 # batch: a divisor of the call count keeps every one.
                 "-trace_rtt", "-rtt_freq", str(math.gcd(calls, 200)),
                 "-trace_counts",
                 "-timeout", "%ds" % global_timeout_s]
        if recv_timeout_ms:
            args += ["-recv_timeout", str(recv_timeout_ms)]
        args += list(extra) + [remote]
        return args


def parse_stat(path):
    """The last data line of a sipp -trace_stat file as {column: text}, or {}."""
    text = _read(path)
    if not text:
        return {}
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(lines) < 2:
        return {}
    head = lines[0].rstrip(";").split(";")
    vals = lines[-1].rstrip(";").split(";")
    return dict(zip(head, vals))


def stat_epoch(value):
    """'2026-11-21\t14:33:59.552982\t1795271639.552982' -> 1795271639.552982."""
    try:
        return float(value.split()[-1])
    except (AttributeError, ValueError, IndexError):
        return None


def stat_int(stat, key):
    try:
        return int(stat.get(key, "0") or 0)
    except ValueError:
        return 0


def answered_from_counts(workdir):
    """Calls whose INVITE got its 200 so far (first *_200_Recv column of -trace_counts)."""
    files = glob.glob(os.path.join(workdir, "*_counts.csv"))
    if not files:
        return 0
    text = _read(files[0]) or ""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(lines) < 2:
        return 0
    head = lines[0].rstrip(";").split(";")
    vals = lines[-1].rstrip(";").split(";")
    for i, name in enumerate(head):
        if re.match(r"^\d+_200_Recv$", name) and i < len(vals):
            try:
                return int(vals[i])
            except ValueError:
                return 0
    return 0


def rtd_values(workdir):
    """Every response time (ms) of the -trace_rtt file(s) in workdir."""
    out = []
    for path in glob.glob(os.path.join(workdir, "*_rtt.csv")):
        for line in (_read(path) or "").splitlines()[1:]:
            parts = line.split(";")
            if len(parts) >= 2:
                try:
                    out.append(float(parts[1]))
                except ValueError:
                    pass
    return sorted(out)


def rtd_last_ms(workdir):
    """Date_ms (ms since sipp started) of the last RTD in the -trace_rtt file(s), or 0."""
    last = 0.0
    for path in glob.glob(os.path.join(workdir, "*_rtt.csv")):
        for line in (_read(path) or "").splitlines()[1:]:
            try:
                last = max(last, float(line.split(";")[0]))
            except ValueError:
                pass
    return last


def percentile(values, p):
    if not values:
        return None
    k = max(0, min(len(values) - 1, int(round(p / 100.0 * len(values) + 0.5)) - 1))
    return values[k]


# ---------------------------------------------------------------------------------
# Targets
# ---------------------------------------------------------------------------------

class Target:
    """What the caller talks to. sipp-alone has no process: the caller hits the callee."""

    name = "?"
    proc = None
    port = None
    samples_memory = False  # peak memory from a MemSampler rather than VmHWM

    def start(self, workdir, first_hop_port):
        raise NotImplementedError

    def pids(self):
        return self.proc.tree() if self.proc else []

    def peak_kb(self, sampler):
        return None

    def alive(self):
        return self.proc is None or self.proc.running()

    def live_calls(self):
        """Calls the target says it holds now, or None."""
        return None

    def shm(self):
        """Kamailio's own shared-memory accounting {real_used, max_used, total}, or None."""
        return None

    def stop(self):
        if self.proc:
            self.proc.stop()


class SippAlone(Target):
    name = "sipp-alone"

    def start(self, workdir, first_hop_port):
        self.port = first_hop_port


class B2bua(Target):
    def __init__(self, binary, shards):
        self.binary = binary
        self.shards = shards
        self.name = "b2bua-%d" % shards

    def config_text(self, callee_port):
        # Loopback redirect targets are allowed (the example config denies them); no
        # OPTIONS probes (the sipp callees would count them as unexpected); room for the
        # long workload's N calls; a short drain so that stopping with held calls is quick.
        return ("limits: { max_calls: 10000000, max_call_duration: 24h, drain_timeout: 1s }\n"
                "udp: { socket_buffer_bytes: 4194304, max_datagram_bytes: 65535 }\n"
                "redirect:\n"
                "  mode: follow\n"
                "  send_181: true\n"
                "  deny: { domains: [], cidrs: [] }\n"
                "  deny_self: true\n"
                "probe: { options_interval: 0 }\n"
                "routes:\n"
                "  - prefix: \"\"\n"
                "    next_hops: [\"sip:%s:%d;transport=udp\"]\n" % (LOOPBACK, callee_port))

    def start(self, workdir, first_hop_port):
        cfg = os.path.join(workdir, "%s.yaml" % self.name)
        with open(cfg, "w") as fh:
            fh.write(self.config_text(first_hop_port))
        for attempt in range(3):
            self.port, mport = free_port(), free_port()
            self.metrics_port = mport
            args = [self.binary, "--listen=%s:%d" % (LOOPBACK, self.port),
                    "--shards=%d" % self.shards, "--config=%s" % cfg,
                    "--metrics_listen=%s:%d" % (LOOPBACK, mport),
                    "--log_level=warning", "--call_records=false"]
            self.proc = Proc(self.name, args,
                             os.path.join(workdir, "%s-%d.log" % (self.name, attempt)), workdir)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and self.proc.running():
                try:
                    with _http.open("http://%s:%d/readyz" % (LOOPBACK, mport), timeout=1) as r:
                        if r.status == 200:
                            return
                except (OSError, urllib.error.URLError):
                    pass
                time.sleep(0.05)
            if self.proc.running():
                self.proc.stop()
                raise RuntimeError("%s not ready after 15 s" % self.name)
            if "in use" not in self.proc.tail(30).lower():
                raise RuntimeError("%s exited with %s:\n%s"
                                   % (self.name, self.proc.popen.returncode, self.proc.tail()))
        raise RuntimeError("%s could not bind" % self.name)

    def peak_kb(self, sampler):
        return status_kb(self.proc.pid, "VmHWM") if self.proc.running() else None

    def live_calls(self):
        """Sum of b2bua_calls_active over the shards (GET /metrics)."""
        try:
            url = "http://%s:%d/metrics" % (LOOPBACK, self.metrics_port)
            with _http.open(url, timeout=5) as r:
                text = r.read().decode("utf-8", "replace")
        except (OSError, urllib.error.URLError):
            return None
        total = None
        for line in text.splitlines():
            m = re.match(r"^b2bua_calls_active(\{[^}]*\})?\s+(\S+)", line)
            if m:
                total = (total or 0) + float(m.group(2))
        return int(total) if total is not None else None


class Kamailio(Target):
    name = "kamailio"
    samples_memory = True

    def __init__(self, children, shm_mb, pkg_mb, memory_manager):
        self.children = children
        self.shm_mb = shm_mb
        self.pkg_mb = pkg_mb
        self.memory_manager = memory_manager

    def start(self, workdir, first_hop_port, cfg_name="basic.cfg"):
        with open(os.path.join(HERE, "kamailio", cfg_name)) as fh:
            template = fh.read()
        rundir = os.path.join(workdir, "kamailio-run")
        os.makedirs(rundir, exist_ok=True)
        for attempt in range(3):
            self.port = free_port()
            text = re.sub(r'^#!substdef "!KAM_LISTEN_PORT!\d+!g"$',
                          '#!substdef "!KAM_LISTEN_PORT!%d!g"' % self.port, template, flags=re.M)
            text = re.sub(r'^#!substdef "!CALLEE_PORT!\d+!g"$',
                          '#!substdef "!CALLEE_PORT!%d!g"' % first_hop_port, text, flags=re.M)
            self.ctl = os.path.join(rundir, "kamailio_ctl")
            if len(self.ctl) > 100:  # sun_path holds 108 bytes
                self.ctl = os.path.join(tempfile.mkdtemp(prefix="kam-"), "ctl")
            text = re.sub(r'^#!substdef "!KAM_CTL_SOCKET![^!]*!g"$',
                          '#!substdef "!KAM_CTL_SOCKET!%s!g"' % self.ctl, text, flags=re.M)
            if ("!%d!g" % self.port) not in text or ("!%d!g" % first_hop_port) not in text:
                raise RuntimeError("kamailio/%s lacks the substdef lines" % cfg_name)
            cfg = os.path.join(rundir, cfg_name)
            with open(cfg, "w") as fh:
                fh.write(text)
            pidfile = os.path.join(rundir, "kamailio.pid")
            args = [shutil.which("kamailio") or "kamailio", "-f", cfg, "-DD", "-E",
                    "-n", str(self.children), "-m", str(self.shm_mb), "-M", str(self.pkg_mb),
                    "-x", self.memory_manager, "-X", self.memory_manager,
                    "-Y", rundir, "-P", pidfile, "-w", rundir]
            self.proc = Proc(self.name, args,
                             os.path.join(workdir, "kamailio-%d.log" % attempt), workdir)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and self.proc.running():
                # Bound and every UDP worker forked (main + children + helpers).
                if udp_port_bound(self.port) and os.path.exists(pidfile) \
                        and len(self.proc.tree()) > self.children:
                    time.sleep(0.5)
                    return
                time.sleep(0.05)
            if self.proc.running():
                self.proc.stop()
                raise RuntimeError("kamailio did not come up in 15 s:\n%s" % self.proc.tail())
            if "in use" not in self.proc.tail(30).lower():
                raise RuntimeError("kamailio exited with %s:\n%s"
                                   % (self.proc.popen.returncode, self.proc.tail()))
        raise RuntimeError("kamailio could not bind")

    def peak_kb(self, sampler):
        # Per-process VmHWM would count the shared memory pool once per process: the
        # highest sum of PSS sampled every second, or read now.
        now = pss_kb(self.pids()) if self.proc.running() else 0
        return max(sampler.peak_kb if sampler else 0, now) or None

    def kamcmd(self, *command):
        kamcmd = shutil.which("kamcmd")
        if not kamcmd or not self.proc or not self.proc.running():
            return ""
        try:
            return subprocess.run([kamcmd, "-s", "unix:" + self.ctl] + list(command),
                                  stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired):
            return ""

    def live_calls(self):
        """dialog:active_dialogs through the ctl socket (kamcmd)."""
        # The bare name: "dialog:active_dialogs" sometimes answers nothing.
        out = self.kamcmd("stats.get_statistics", "active_dialogs")
        m = re.search(r"active_dialogs\s*=\s*(\d+)", out)
        return int(m.group(1)) if m else None

    def shm(self):
        out = self.kamcmd("core.shmmem")
        vals = {k: int(v) for k, v in re.findall(r"(\w+):\s*(\d+)", out)}
        if not all(k in vals for k in ("real_used", "max_used", "total")):
            return None
        return vals


# ---------------------------------------------------------------------------------
# One (target, workload) run
# ---------------------------------------------------------------------------------

class Row(dict):
    pass


def run_pair(opts, sipp, target, workload, pairdir, at_rest):
    """Starts callees and target, runs every step; returns a list of Rows.

    at_rest collects, per target name, its idle CPU and memory right after its first start.
    """
    rows = []
    callees = []
    sampler = None
    try:
        if workload == "redirect":
            callee2 = sipp.start_callee("callee2-answer", "uas-answer.xml", pairdir)
            callee1 = sipp.start_callee(
                "callee1-302", "uas-redirect-302.xml", pairdir,
                keys=[("contact", "<sip:callee2@%s:%d>" % (LOOPBACK, callee2.port))])
            callees = [callee2, callee1]
        else:
            callee1 = sipp.start_callee("callee-answer", "uas-answer.xml", pairdir)
            callees = [callee1]
        if isinstance(target, Kamailio):
            target.start(pairdir, callee1.port,
                         "redirect.cfg" if workload == "redirect" else "basic.cfg")
        else:
            target.start(pairdir, callee1.port)
        if target.proc:
            if target.name not in at_rest:
                pids = target.pids()
                c0, t0 = cpu_ticks(pids), time.monotonic()
                time.sleep(opts.idle_seconds)
                ms_per_s = (cpu_ticks(target.pids()) - c0) * 1000.0 / CLK_TCK / (
                    time.monotonic() - t0)
                at_rest[target.name] = (ms_per_s, pss_kb(target.pids()), len(target.pids()))
            if target.samples_memory:
                sampler = MemSampler(target.proc.pid)
                sampler.start()
        if workload == "long":
            rows.append(run_long(opts, sipp, target, callees, pairdir, sampler))
        else:
            for rate in opts.rates:
                calls = opts.calls or int(rate * opts.step_seconds)
                row = run_step(opts, sipp, target, workload, callees, pairdir, rate, calls,
                               sampler)
                rows.append(row)
                log(format_row_text(row))
                if not target.alive():
                    log("%s died: %s" % (target.name, target.proc.tail()))
                    break
    except Exception as err:  # a failed start or step ends this pair, not the run
        log("%s/%s: %s" % (target.name, workload, err))
        rows.append(Row(target=target.name, workload=workload, note="error: %s"
                        % str(err).splitlines()[0]))
    finally:
        if sampler:
            sampler.stop()
        target.stop()
        for c in callees:
            c.stop()
    return rows


def new_row(target, workload, rate, calls):
    return Row(target=target.name, workload=workload, rate=rate, calls=calls)


def run_step(opts, sipp, target, workload, callees, pairdir, rate, calls, sampler):
    stepdir = os.path.join(pairdir, "step-%dcps" % rate)
    os.makedirs(stepdir, exist_ok=True)
    if workload == "redirect":
        scenario = "uac-redirect-self.xml" if isinstance(target, SippAlone) else "uac-redirect.xml"
    else:
        scenario = "uac-basic.xml"
    remote = "%s:%d" % (LOOPBACK, target.port)
    limit = max(100, int(rate * opts.open_seconds))
    global_timeout = int(calls / rate) + 60
    row = new_row(target, workload, rate, calls)

    tpids = target.pids()
    cpu0 = cpu_ticks(tpids)
    callee_cpu0 = cpu_ticks([c.pid for c in callees])
    t0 = time.monotonic()
    caller = None
    for _ in range(3):
        args = sipp.caller_args(scenario, free_port(), remote, remote, calls, rate, limit,
                                opts.bye_after_ms, opts.recv_timeout_ms, global_timeout)
        caller = Proc("caller", args, os.path.join(stepdir, "caller.log"), stepdir)
        try:
            rc, caller_cpu = caller.wait_rusage(global_timeout + 30)
        finally:
            if caller.rusage is None:  # interrupted: do not leave it running
                caller.stop()
        if rc != 254:
            break
    wall = time.monotonic() - t0
    time.sleep(opts.settle)  # let the target finish its timers before reading its CPU
    cpu1 = cpu_ticks(target.pids() or tpids)
    callee_cpu1 = cpu_ticks([c.pid for c in callees])

    stat = parse_stat(os.path.join(stepdir, "stat.csv"))
    fill_from_stat(row, stat)
    row["rc"] = rc
    rtd = rtd_values(stepdir)
    row["p50"], row["p99"] = percentile(rtd, 50), percentile(rtd, 99)
    row["sipp_cpu"] = 100.0 * (caller_cpu + (callee_cpu1 - callee_cpu0) / CLK_TCK) / wall
    if target.proc:
        row["cpu_us"] = ((cpu1 - cpu0) / CLK_TCK * 1e6 / row["completed"]
                         if row.get("completed") else None)
        row["peak_kb"] = target.peak_kb(sampler)
    shm = target.shm()
    if shm:
        row["note"] = "shm max_used %.0f of %.0f MiB" % (shm["max_used"] / 1048576.0,
                                                        shm["total"] / 1048576.0)
    return row


def fill_from_stat(row, stat):
    row["completed"] = stat_int(stat, "SuccessfulCall(C)")
    row["failed"] = stat_int(stat, "FailedCall(C)")
    row["retrans"] = stat_int(stat, "Retransmissions(C)")
    row["created"] = stat_int(stat, "TotalCallCreated")
    start, now = stat_epoch(stat.get("StartTime")), stat_epoch(stat.get("CurrentTime"))
    row["elapsed"] = (now - start) if start and now else None
    row["achieved"] = (row["completed"] / row["elapsed"]) if row["elapsed"] else None


def run_long(opts, sipp, target, callees, pairdir, sampler):
    n, rate = opts.long_calls, opts.long_rate
    stepdir = os.path.join(pairdir, "long-%d" % n)
    os.makedirs(stepdir, exist_ok=True)
    ramp_s = n / float(rate)
    # The calls must still be up when the memory is read after the quiet period.
    hold_ms = max(opts.hold_ms, int((ramp_s + opts.settle + opts.long_quiet + 30) * 1000))
    remote = "%s:%d" % (LOOPBACK, target.port)
    row = new_row(target, "long", rate, n)
    row["hold_ms"] = hold_ms

    time.sleep(1)
    tpids = target.pids()
    mem0 = pss_kb(tpids) if tpids else None
    row["shm0"] = target.shm()
    cpu0 = cpu_ticks(tpids)
    callee_cpu0 = cpu_ticks([c.pid for c in callees])
    global_timeout = int(ramp_s + hold_ms / 1000.0) + 120
    args = sipp.caller_args("uac-long-hold.xml", free_port(), remote, remote, n, rate, n,
                            hold_ms, 0, global_timeout)
    t0 = time.monotonic()
    caller = Proc("caller", args, os.path.join(stepdir, "caller.log"), stepdir)
    try:
        return _measure_long(opts, target, callees, stepdir, sampler, row, caller, t0,
                             ramp_s, mem0, cpu0, callee_cpu0, tpids)
    finally:
        caller.stop()


def _measure_long(opts, target, callees, stepdir, sampler, row, caller, t0, ramp_s, mem0,
                  cpu0, callee_cpu0, tpids):
    """The part of run_long while its caller runs (the caller calls stop() afterwards)."""
    n = row["calls"]
    deadline = t0 + ramp_s + 30 + opts.settle
    answered = 0
    t_all = None
    while time.monotonic() < deadline and caller.running():
        answered = answered_from_counts(stepdir)
        failed = stat_int(parse_stat(os.path.join(stepdir, "stat.csv")), "FailedCall(C)")
        if answered >= n or (answered and answered + failed >= n):
            t_all = time.monotonic()
            break
        time.sleep(0.25)
    # Memory right after the ramp (the set-up transactions are still kept), and again
    # after --long-quiet s, when every transaction timer has run out (the longest, Timer
    # L of the B2BUA's INVITE server transactions, is 64*T1 = 32 s): the calls alone.
    time.sleep(opts.settle)
    tpids_now = target.pids()
    mem_ramp = pss_kb(tpids_now) if tpids_now else None
    cpu1 = cpu_ticks(tpids_now or tpids)
    callee_cpu1 = cpu_ticks([c.pid for c in callees])
    wall = time.monotonic() - t0
    caller_ticks = cpu_ticks([caller.pid]) if caller.running() else 0
    answered = max(answered, answered_from_counts(stepdir))
    if opts.long_quiet > 0:
        log("%s: %d calls up; reading memory again in %g s" % (target.name, answered,
                                                              opts.long_quiet))
        time.sleep(opts.long_quiet)
    tpids_now = target.pids()
    mem1 = pss_kb(tpids_now) if tpids_now else None
    live = target.live_calls()
    shm1 = target.shm()
    stat = parse_stat(os.path.join(stepdir, "stat.csv"))
    caller.stop()

    row["completed"] = answered  # answered and held (not hung up yet)
    row["failed"] = stat_int(stat, "FailedCall(C)")
    row["retrans"] = stat_int(stat, "Retransmissions(C)")
    row["created"] = stat_int(stat, "TotalCallCreated")
    row["current"] = stat_int(stat, "CurrentCall")
    last_answer_s = rtd_last_ms(stepdir) / 1000.0
    row["elapsed"] = last_answer_s or ((t_all - t0) if t_all else None)
    row["achieved"] = (answered / row["elapsed"]) if row["elapsed"] else None
    rtd = rtd_values(stepdir)
    row["p50"], row["p99"] = percentile(rtd, 50), percentile(rtd, 99)
    row["sipp_cpu"] = 100.0 * (caller_ticks + callee_cpu1 - callee_cpu0) / CLK_TCK / wall
    if target.proc:
        row["cpu_us"] = ((cpu1 - cpu0) / CLK_TCK * 1e6 / answered) if answered else None
        row["peak_kb"] = target.peak_kb(sampler)
        row["mem0_kb"], row["mem1_kb"] = mem0, mem1
        if mem0 is not None and mem1 is not None and answered:
            row["bytes_per_call"] = (mem1 - mem0) * 1024.0 / answered
    notes = []
    if mem0 is not None and mem_ramp is not None and answered and opts.long_quiet > 0:
        notes.append("%.0f B/call right after the ramp"
                     % ((mem_ramp - mem0) * 1024.0 / answered))
    if live is not None:
        notes.append("target holds %d calls" % live)
    shm0 = row.pop("shm0")
    if shm0 and shm1 and answered:
        notes.append("shm real_used %.0f B/call, max_used %.0f of %.0f MiB" % (
            (shm1["real_used"] - shm0["real_used"]) / float(answered),
            shm1["max_used"] / 1048576.0, shm1["total"] / 1048576.0))
    if answered < n:
        notes.append("only %d of %d calls answered and held" % (answered, n))
    row["note"] = "; ".join(notes)
    log(format_row_text(row))
    return row


# ---------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------

COLUMNS = [
    ("target", "target"), ("workload", "workload"), ("offered cps", "rate"),
    ("calls", "calls"), ("completed", "completed"), ("failed", "failed"),
    ("retrans", "retrans"), ("achieved cps", "achieved"), ("RTD p50 ms", "p50"),
    ("RTD p99 ms", "p99"), ("target CPU µs/call", "cpu_us"), ("peak mem MiB", "peak_kb"),
    ("mem B/live call", "bytes_per_call"), ("sipp CPU %", "sipp_cpu"), ("note", "note"),
]


def fmt(key, value):
    if value is None or value == "":
        return "-"
    if key in ("p50", "p99"):
        return "<1" if value < 1 else "%g" % value
    if key == "achieved":
        return "%.0f" % value
    if key == "cpu_us":
        return "%.0f" % value
    if key == "peak_kb":
        return "%.1f" % (value / 1024.0)
    if key == "bytes_per_call":
        return "%.0f" % value
    if key == "sipp_cpu":
        return "%.0f" % value
    return str(value)


def row_cells(row):
    cells = [fmt(k, row.get(k)) for _, k in COLUMNS]
    return cells


def format_row_text(row):
    return "  ".join("%s=%s" % (title, fmt(k, row.get(k))) for title, k in COLUMNS
                     if row.get(k) not in (None, ""))


def markdown_table(header, rows, left=2):
    """The first `left` columns and a last "note" column align left, numbers right."""
    def align(i):
        return "---" if i < left or header[i] == "note" else "---:"
    out = ["| " + " | ".join(header) + " |",
           "|" + "|".join(align(i) for i in range(len(header))) + "|"]
    for r in rows:
        out.append("| " + " | ".join(r) + " |")
    return "\n".join(out)


def ratio(a, b):
    if a is None or b is None or not b:
        return "-"
    return "%.2f" % (a / b)


def ratios_table(rows):
    by = {(r["target"], r["workload"], r.get("rate")): r for r in rows if "rate" in r}
    keys = sorted({(r["workload"], r["rate"]) for r in rows if "rate" in r},
                  key=lambda k: (ALL_WORKLOADS.index(k[0]), k[1]))
    header = ["workload", "offered cps",
              "b2bua-1 CPU / kamailio CPU", "b2bua-2 CPU / kamailio CPU",
              "b2bua-1 cps / sipp-alone", "b2bua-2 cps / sipp-alone",
              "kamailio cps / sipp-alone",
              "b2bua-1 mem/call / kamailio", "b2bua-2 mem/call / kamailio"]
    lines = []
    for wl, rate in keys:
        def get(t, k):
            r = by.get((t, wl, rate))
            return r.get(k) if r else None
        cells = [wl, str(rate),
                 ratio(get("b2bua-1", "cpu_us"), get("kamailio", "cpu_us")),
                 ratio(get("b2bua-2", "cpu_us"), get("kamailio", "cpu_us")),
                 ratio(get("b2bua-1", "achieved"), get("sipp-alone", "achieved")),
                 ratio(get("b2bua-2", "achieved"), get("sipp-alone", "achieved")),
                 ratio(get("kamailio", "achieved"), get("sipp-alone", "achieved")),
                 ratio(get("b2bua-1", "bytes_per_call"), get("kamailio", "bytes_per_call")),
                 ratio(get("b2bua-2", "bytes_per_call"), get("kamailio", "bytes_per_call"))]
        lines.append(cells)
    return markdown_table(header, lines)


def machine_lines(opts, sipp):
    cpu = "?"
    for line in (_read("/proc/cpuinfo") or "").splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    def first_line(args):
        try:
            out = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True,
                                 text=True, timeout=10)
            text = (out.stdout + out.stderr).strip()
            return text.splitlines()[0].strip() if text else "?"
        except (OSError, subprocess.TimeoutExpired):
            return "?"
    sipp_v = next((ln.strip() for ln in subprocess.run(
        [sipp, "-v"], stdin=subprocess.DEVNULL, capture_output=True, text=True).stdout
        .splitlines() if "SIPp" in ln), "?")
    kam_v = first_line(["kamailio", "-v"]) if shutil.which("kamailio") else "not installed"
    b = opts.binary
    bstat = ("%s (built %s)" % (b, time.strftime("%Y-%m-%d %H:%M", time.localtime(
        os.path.getmtime(b))))) if b and os.path.exists(b) else "missing"
    return [
        "- machine: %d CPUs (%s), %s %s, load average at start %s" % (
            os.cpu_count(), cpu, platform.system(), platform.release(),
            " ".join((_read("/proc/loadavg") or "? ? ?").split()[:3])),
        "- sipp: %s; kamailio: %s" % (sipp_v, kam_v),
        "- b2bua: %s" % bstat,
        "- net.core.rmem_max %s, wmem_max %s (every sipp asks for -buff_size %s)" % (
            (_read("/proc/sys/net/core/rmem_max") or "?").strip(),
            (_read("/proc/sys/net/core/wmem_max") or "?").strip(), BUFF_SIZE),
    ]


# ---------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="bench/sipp/run.sh",
        description="sipp load harness: sipp alone, the b2bua (1 and 2 shards) and Kamailio "
                    "under the basic, redirect and long workloads.")
    p.add_argument("--targets", default=",".join(ALL_TARGETS),
                   help="comma list of %s (default: all)" % ", ".join(ALL_TARGETS))
    p.add_argument("--workloads", default=",".join(ALL_WORKLOADS),
                   help="comma list of %s (default: all)" % ", ".join(ALL_WORKLOADS))
    p.add_argument("--rates", default="500,1000,2000,4000",
                   help="offered call rates of the steps, cps (default 500,1000,2000,4000)")
    p.add_argument("--step-seconds", type=float, default=10.0,
                   help="each step offers rate x this many seconds of calls (default 10)")
    p.add_argument("--rate", type=int, help="fixed-rate mode: one step at this rate")
    p.add_argument("--calls", type=int, help="fixed-rate mode: calls of that step")
    p.add_argument("--full", action="store_true",
                   help="long workload with 100000 held calls (default 20000), ramped at "
                        "2000 cps")
    p.add_argument("--smoke", action="store_true",
                   help="a proof that everything runs, not a measurement: one step of 200 cps "
                        "for 2 s, long with 500 calls at 250 cps, 1 s settle/quiet/idle")
    p.add_argument("--long-calls", type=int, help="N concurrent calls of the long workload")
    p.add_argument("--long-rate", type=int, help="ramp rate of the long workload, cps")
    p.add_argument("--hold-ms", type=int, default=60000,
                   help="hold of the long workload (-d, default 60000); raised to ramp + "
                        "settle + quiet + 30 s if shorter")
    p.add_argument("--long-quiet", type=float, default=35.0,
                   help="long workload: seconds between the ramp and the memory reading, so "
                        "that set-up transactions have expired (default 35; 1 with --smoke)")
    p.add_argument("--bye-after-ms", type=int, default=10,
                   help="basic and redirect: the caller's pause between ACK and BYE (default "
                        "10). With 0 the BYE can overtake the ACK inside Kamailio, whose "
                        "workers take one call's requests in parallel: its dialog module then "
                        "fails about 0.1%% of calls, each waiting out -recv_timeout")
    p.add_argument("--open-seconds", type=float, default=3.0,
                   help="caller -l = rate x this (at least 100): calls open at once")
    p.add_argument("--recv-timeout-ms", type=int, default=10000,
                   help="caller -recv_timeout: a call waiting longer for an answer fails")
    p.add_argument("--settle", type=float, default=2.0,
                   help="seconds after a step before the target's CPU is read")
    p.add_argument("--idle-seconds", type=float, default=3.0,
                   help="seconds a freshly started target is watched idle (default 3)")
    p.add_argument("--kam-children", type=int, default=os.cpu_count() or 2,
                   help="Kamailio -n, UDP workers (default: one per core, as operators run it)")
    p.add_argument("--kam-shm", type=int, default=1024,
                   help="Kamailio -m, MiB (default 1024: with 256, tm's transactions kept "
                        "for their 5 s wait timer fill the pool from about 2000 cps)")
    p.add_argument("--kam-pkg", type=int, default=32, help="Kamailio -M, MiB")
    p.add_argument("--kam-memory-manager", default="tlsf", choices=["tlsf", "qm", "fm"],
                   help="Kamailio -x and -X: the shared and private memory managers. Default "
                        "tlsf, as Kamailio is tuned for load; Debian's default build uses qm, "
                        "the debugging allocator, which costs it about 2.5x CPU per call")
    p.add_argument("--binary", default=os.environ.get("B2BUA_BINARY") or
                   os.path.join(REPO_ROOT, "build", "release", "b2bua", "b2bua"))
    p.add_argument("--out", help="markdown report (default bench/sipp/results-DATE.md)")
    p.add_argument("--workdir", help="logs and sipp files (default: a new /tmp directory)")
    p.add_argument("--trace", action="store_true",
                   help="every sipp writes its messages (-trace_msg) to the workdir: for "
                        "checking a scenario or a config at a few calls, not for measuring")
    opts = p.parse_args(argv)

    opts.targets = [t.strip() for t in opts.targets.split(",") if t.strip()]
    opts.workloads = [w.strip() for w in opts.workloads.split(",") if w.strip()]
    for t in opts.targets:
        if t not in ALL_TARGETS:
            p.error("unknown target %r" % t)
    for w in opts.workloads:
        if w not in ALL_WORKLOADS:
            p.error("unknown workload %r" % w)
    if opts.smoke:
        opts.rates = "200"
        opts.step_seconds = 2.0
        opts.long_calls = opts.long_calls or 500
        opts.long_rate = opts.long_rate or 250
        opts.settle = min(opts.settle, 1.0)
        opts.long_quiet = min(opts.long_quiet, 1.0)
        opts.idle_seconds = min(opts.idle_seconds, 1.0)
    opts.rates = [int(r) for r in str(opts.rates).split(",") if r.strip()]
    if (opts.rate is None) != (opts.calls is None):
        p.error("--rate and --calls go together")
    if opts.rate is not None:
        opts.rates = [opts.rate]
    opts.long_calls = opts.long_calls or (100000 if opts.full else 20000)
    opts.long_rate = opts.long_rate or (2000 if opts.full else 1000)
    return opts


def main(argv=None):
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    sipp_bin = shutil.which("sipp")
    if not sipp_bin:
        sys.exit("sipp is not installed (Debian package sip-tester): run bench/sipp/run.sh")
    if any(t.startswith("b2bua") for t in opts.targets) and not os.access(opts.binary, os.X_OK):
        sys.exit("no b2bua binary at %s" % opts.binary)
    if "kamailio" in opts.targets and not shutil.which("kamailio"):
        sys.exit("kamailio is not installed: run bench/sipp/run.sh")

    workdir = opts.workdir or tempfile.mkdtemp(prefix="b2bua-sipp-bench-")
    os.makedirs(workdir, exist_ok=True)
    started = datetime.datetime.now()
    log("logs in %s" % workdir)
    sipp = SippRunner(sipp_bin, opts.trace)

    def make_target(name):
        if name == "sipp-alone":
            return SippAlone()
        if name.startswith("b2bua-"):
            return B2bua(opts.binary, int(name.split("-")[1]))
        return Kamailio(opts.kam_children, opts.kam_shm, opts.kam_pkg, opts.kam_memory_manager)

    rows = []
    at_rest = {}
    interrupted = False

    def on_signal(signum, _frame):
        # Unwinds like Ctrl-C: every finally stops its processes, then the report is written.
        raise KeyboardInterrupt()

    signal.signal(signal.SIGTERM, on_signal)
    try:
        for workload in opts.workloads:
            for tname in opts.targets:
                log("=== %s / %s" % (tname, workload))
                pairdir = os.path.join(workdir, "%s-%s" % (tname, workload))
                os.makedirs(pairdir, exist_ok=True)
                rows.extend(run_pair(opts, sipp, make_target(tname), workload, pairdir,
                                     at_rest))
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted: reporting what was measured")

    header = [title for title, _ in COLUMNS]
    table = markdown_table(header, [row_cells(r) for r in rows])
    ratios = ratios_table(rows)
    rest = markdown_table(
        ["target", "processes", "idle CPU ms/s", "memory at start MiB (sum of PSS)"],
        [[name, str(n), "%.1f" % ms, "%.1f" % (kb / 1024.0)]
         for name, (ms, kb, n) in sorted(at_rest.items(),
                                         key=lambda kv: ALL_TARGETS.index(kv[0]))],
        left=1)
    cmd = "bench/sipp/run.sh " + " ".join(sys.argv[1:] if argv is None else argv)
    settings = (
        "- steps: rates %s cps, %s; caller -l = rate x %g s, -recv_timeout %d ms; "
        "long: %d calls ramped at %d cps, hold >= %d ms, memory read %g s after the "
        "ramp; Kamailio -n %d -m %d -M %d -x %s -X %s" % (
            ",".join(map(str, opts.rates)),
            ("%d calls each" % opts.calls) if opts.calls else
            ("%g s of calls each" % opts.step_seconds),
            opts.open_seconds, opts.recv_timeout_ms, opts.long_calls, opts.long_rate,
            opts.hold_ms, opts.long_quiet, opts.kam_children, opts.kam_shm, opts.kam_pkg,
            opts.kam_memory_manager, opts.kam_memory_manager))
    doc = "\n".join(
        ["# sipp load harness results, %s" % started.strftime("%Y-%m-%d %H:%M"), "",
         "Command: `%s`%s" % (cmd.strip(), " (interrupted before the end)" if interrupted
                               else ""), ""] + machine_lines(opts, sipp_bin) +
        [settings, "- logs: %s" % workdir, "",
         "Columns are explained in bench/README.md, section \"Load harness (sipp)\". "
         "RTD has sipp's 1 ms resolution (<1: under a millisecond). CPU per call of "
         "`long` rows covers the set-up only (the calls are still held); `completed` "
         "there counts answered and held calls.", "",
         "## Results", "", table, "",
         "## Ratios (same workload, same offered rate)", "", ratios, "",
         "## Targets at rest (after start, before any call; idle CPU over %g s)"
         % opts.idle_seconds, "", rest, ""])
    print(doc)
    out = opts.out
    if not out:
        out = os.path.join(HERE, "results-%s.md" % started.strftime("%Y-%m-%d"))
        if os.path.exists(out):
            out = os.path.join(HERE, "results-%s.md" % started.strftime("%Y-%m-%d-%H%M%S"))
    with open(out, "w") as fh:
        fh.write(doc)
    log("report saved to %s" % out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
