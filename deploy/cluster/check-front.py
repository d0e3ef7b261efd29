#!/usr/bin/env python3
"""Checks the cluster front (kamailio-front.cfg) on its own, without the B2BUA.

Stand-ins take the instances' places: UDP responders that answer every request (and the
front's OPTIONS probes) and record what reached them. A caller sends requests to the
front, retransmitting as a UA does, and times the answers. Killing an instance is closing
its stand-in's socket, as a dead process leaves a closed port.

    flock /tmp/b2bua-cpu.lock deploy/cluster/check-front.py [--front IP:PORT]
        [--instances IP:PORT,IP:PORT,...] [--keep]

The front runs through run-cluster.sh (--no-redis --no-instances --no-wait). By default
every piece gets a free port: the front on 127.0.0.1, instance i on 127.0.0.(i+1); at
least 3 instances are needed. Prints one line per check, with the failover times it
measured, and exits 0 when every check passed. The run directory (with the front's log)
is kept when a check failed; --keep also leaves the front running.
"""

import argparse
import itertools
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
T1, T2 = 0.5, 4.0
ALL_SET = 100


def free_udp_port(ip):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def parse(data):
    """(start line, [(name, value)]) of a SIP message; header names in lower case."""
    head = data.decode(errors="replace").split("\r\n\r\n", 1)[0]
    lines = head.split("\r\n")
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip().lower(), value.strip()))
    return lines[0], headers


def header(headers, name):
    return next((v for n, v in headers if n == name), None)


class StandIn(threading.Thread):
    """An instance: 200 to everything, 180 and then 487 on CANCEL to INVITE sip:ring@;
    503 to INVITE and BYE while reject_503 is set, and to any request for a user in
    not_mine (a call another instance has); nothing at all while down."""

    def __init__(self, instance_id, addr):
        super().__init__(daemon=True)
        self.id = instance_id
        self.addr = addr
        self.lock = threading.Lock()
        self.received = []  # (monotonic time, method, request URI)
        self.reject_503 = False
        self.not_mine = set()
        self.sock = None
        self.pending = {}  # Call-ID of a ringing INVITE -> (headers, source)
        self.up()
        self.start()

    def up(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(self.addr)
        s.settimeout(0.05)
        self.sock = s

    def down(self):
        s, self.sock = self.sock, None
        s.close()

    def requests(self, method=None, since=0.0, uri=""):
        """(time, method, request URI) of what arrived since `since`, the request URI
        starting with `uri`."""
        with self.lock:
            return [r for r in self.received if r[0] >= since and method in (None, r[1])
                    and r[2].startswith(uri)]

    def run(self):
        while True:
            s = self.sock
            if s is None:
                time.sleep(0.01)
                continue
            try:
                data, source = s.recvfrom(65535)
            except (socket.timeout, OSError):
                continue
            start, headers = parse(data)
            if start.startswith("SIP/2.0"):
                continue
            method, uri = start.split()[:2]
            with self.lock:
                self.received.append((time.monotonic(), method, uri))
            self.answer(s, method, uri, headers, source)

    def answer(self, s, method, uri, headers, source):
        def reply(code, reason, hdrs=headers):
            lines = [f"SIP/2.0 {code} {reason}"]
            for name, value in hdrs:
                if name == "to" and ";tag=" not in value and code > 100:
                    value += ";tag=standin" + self.id
                if name in ("via", "from", "to", "call-id", "cseq"):
                    lines.append(f"{name}: {value}")
            lines += [f"Contact: <sip:standin{self.id}@{self.addr[0]}:{self.addr[1]}>",
                      "Content-Length: 0", "", ""]
            s.sendto("\r\n".join(lines).encode(), source)

        call_id = header(headers, "call-id")
        if method == "ACK":
            return
        if method == "CANCEL":
            reply(200, "OK")
            ringing = self.pending.pop(call_id, None)
            if ringing:
                reply(487, "Request Terminated", ringing[0])
            return
        user = uri[4:].split("@")[0]
        if self.reject_503 and method in ("INVITE", "BYE") or user in self.not_mine:
            reply(503, "Service Unavailable")
        elif method == "INVITE" and uri.startswith("sip:ring@"):
            self.pending[call_id] = (headers, source)
            reply(180, "Ringing")
        else:
            reply(200, "OK")


class Caller:
    """Sends requests to the front from its own port and waits for their final answers,
    retransmitting as RFC 3261 17.1 does (T1 doubling; up to T2 for non-INVITE; an INVITE
    stops once it got a provisional answer)."""

    def __init__(self, ip, front):
        self.front = front
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((ip, 0))
        self.local = self.sock.getsockname()
        self.cseq = itertools.count(1)

    def start(self, method, user, to_tag=None, invite=None):
        """Sends a request and returns its client transaction (a dict). With `invite`: the
        CANCEL of that INVITE transaction (same branch, Call-ID, From, To, CSeq number)."""
        if invite:
            tx = dict(invite, method=method, final=None, provisional=False)
            tx["cseq"] = f"{tx['cseq'].split()[0]} CANCEL"
        else:
            uri = f"sip:{user}@{self.front[0]}:{self.front[1]}" if user else \
                f"sip:{self.front[0]}:{self.front[1]}"
            tx = dict(method=method, uri=uri, final=None, provisional=False,
                      branch=f"z9hG4bK{random.getrandbits(64):x}",
                      call_id=f"{random.getrandbits(64):x}@check-front",
                      to=f"<{uri}>" + (f";tag={to_tag}" if to_tag else ""),
                      cseq=f"{next(self.cseq)} {method}")
        tx["msg"] = "\r\n".join([
            f"{method} {tx['uri']} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.local[0]}:{self.local[1]};branch={tx['branch']};rport",
            "Max-Forwards: 70",
            f"From: <sip:check@{self.local[0]}>;tag=caller",
            f"To: {tx['to']}",
            f"Call-ID: {tx['call_id']}",
            f"CSeq: {tx['cseq']}",
            f"Contact: <sip:check@{self.local[0]}:{self.local[1]}>",
            "Content-Length: 0", "", ""]).encode()
        tx["start"] = time.monotonic()
        tx["interval"], tx["next_send"] = T1, tx["start"] + T1
        self.sock.sendto(tx["msg"], self.front)
        return tx

    def pump(self, txs, done, timeout):
        """Receives answers for `txs` and retransmits them until done() or timeout."""
        deadline = time.monotonic() + timeout
        while not done() and time.monotonic() < deadline:
            now = time.monotonic()
            for tx in txs:
                if tx["final"] is None and not tx["provisional"] and now >= tx["next_send"]:
                    self.sock.sendto(tx["msg"], self.front)
                    tx["interval"] = tx["interval"] * 2 if tx["method"] == "INVITE" \
                        else min(tx["interval"] * 2, T2)
                    tx["next_send"] = now + tx["interval"]
            wake = min([tx["next_send"] for tx in txs if tx["final"] is None] + [deadline])
            self.sock.settimeout(max(0.005, min(wake, deadline) - now))
            try:
                data, _ = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            line, headers = parse(data)
            via, cseq = header(headers, "via") or "", header(headers, "cseq") or ""
            for tx in txs:
                if tx["branch"] in via and cseq.split()[-1] == tx["method"]:
                    code = int(line.split()[1])
                    if code < 200:
                        tx["provisional"] = tx["method"] == "INVITE"
                    elif tx["final"] is None:
                        tx["final"] = code
                        tx["retry_after"] = header(headers, "retry-after")
                        tx["took"] = time.monotonic() - tx["start"]
                        if tx["method"] == "INVITE" and code >= 300:
                            self.ack_negative(tx, header(headers, "to"))

    def request(self, method, user, to_tag=None, timeout=8.0):
        """The final status and seconds it took; (None, timeout) without one. An ACK
        is sent and not waited for."""
        tx = self.start(method, user, to_tag)
        self.last = tx
        if method == "ACK":
            return None, 0.0
        self.pump([tx], lambda: tx["final"] is not None, timeout)
        return tx["final"], tx.get("took", timeout)

    def ack_negative(self, tx, to):
        msg = tx["msg"].decode().replace(f"INVITE {tx['uri']}", f"ACK {tx['uri']}", 1)
        msg = msg.replace(f"To: {tx['to']}", f"To: {to}").replace(
            f"CSeq: {tx['cseq']}", f"CSeq: {tx['cseq'].split()[0]} ACK")
        self.sock.sendto(msg.encode(), self.front)


class Checks:
    def __init__(self, caller, instances):
        self.caller = caller
        self.inst = instances  # id -> StandIn
        self.failed = 0

    def check(self, ok, what):
        print(("ok    " if ok else "FAIL  ") + what, flush=True)
        if not ok:
            self.failed += 1
        return ok

    def landed(self, method, since, user=None):
        """Ids of the stand-ins that got `method` for `user` (None: for the front itself)
        since `since`."""
        uri = f"sip:{user}@" if user else "sip:%s:%d" % self.caller.front
        return [i for i, s in self.inst.items() if s.requests(method, since, uri)]

    def send(self, method, user, **kw):
        """(status, seconds, ids of the stand-ins it reached, in id order)."""
        since = time.monotonic()
        code, took = self.caller.request(method, user, **kw)
        if method == "ACK":
            time.sleep(0.2)
        return code, took, self.landed(method, since, user)

    def wait_probed(self, ids, timeout=5.0):
        since = time.monotonic()
        deadline = since + timeout
        while time.monotonic() < deadline:
            if all(self.inst[i].requests("OPTIONS", since) for i in ids):
                return True
            time.sleep(0.05)
        return False

    def until_routed_to(self, instance_id, key, timeout=6.0):
        """Seconds until a BYE for `key` reaches instance_id (None after timeout)."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            code, _, where = self.send("BYE", key, to_tag="x", timeout=3)
            if code == 200 and where == [instance_id]:
                return time.monotonic() - start
            time.sleep(0.05)
        return None


def dispatcher_flags(run_dir):
    """{(set, uri): flags} from the front's dispatcher.list RPC (A active, I inactive)."""
    out = subprocess.run(["kamcmd", "-s", f"unix:{run_dir}/kamailio.ctl", "dispatcher.list"],
                         capture_output=True, text=True).stdout
    flags, current = {}, None
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("ID:"):
            current = int(line.split()[1])
        elif line.startswith("URI:"):
            uri = line.split()[1]
        elif line.startswith("FLAGS:"):
            flags[(current, uri)] = line.split()[1]
    return flags


def probe_times(c, run_dir, instance_id, rounds=3):
    """Seconds from killing the instance (no traffic) until the probes have taken it out
    of both its sets, and from its restart until they have put it back, per round."""
    a = c.inst[instance_id].addr
    uri = f"sip:{a[0]}:{a[1]}"

    def wait_state(state, timeout=5.0):
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            f = dispatcher_flags(run_dir)
            mine = [v for (_, u), v in f.items() if u == uri]
            if len(mine) == 2 and all(v.startswith(state) for v in mine):
                return time.monotonic() - start
            time.sleep(0.02)
        return None

    out, back = [], []
    for _ in range(rounds):
        c.inst[instance_id].down()
        out.append(wait_state("I"))
        time.sleep(random.uniform(0, 1))
        c.inst[instance_id].up()
        back.append(wait_state("A"))
        time.sleep(random.uniform(0, 1))
    return out, back


def run_checks(c, ids, run_dir):
    a, b, dead = ids[0], ids[1], ids[2]
    key = f"b2b-{dead}.5f3a9c.0.1f"

    code, took, where = c.send("OPTIONS", None)
    c.check(code == 200 and not where, f"OPTIONS to the front: {code} from the front itself")
    code, _, _ = c.send("REGISTER", "alice")
    c.check(code == 403, f"REGISTER: {code}")
    code, _, where = c.send("BYE", "alice", to_tag="x")
    c.check(code == 404 and not where, f"in-dialog BYE without routing token: {code}")
    c.check(c.wait_probed(ids), "every instance is probed with OPTIONS")

    order = []
    for _ in range(2 * len(ids)):
        code, _, where = c.send("INVITE", "1000")
        order.append(where[0] if code == 200 and len(where) == 1 else None)
    rotation = all(order[k] == order[k % len(ids)] for k in range(len(order)))
    c.check(rotation and sorted(order[:len(ids)]) == sorted(ids),
            f"new calls round robin: instances {order}")

    for i in ids:
        code, _, where = c.send("BYE", f"b2b-{i}.5f3a9c.0.1f", to_tag="x")
        c.check(code == 200 and where == [i], f"BYE b2b-{i}.*: {code} from instance {where}")
    _, _, where = c.send("ACK", key, to_tag="x")
    c.check(where == [dead], f"ACK {key} (stateless): instance {where}")
    code, _, where = c.send("BYE", "b2b-zz9.5f3a9c.0.1", to_tag="x")
    c.check(code == 200 and len(where) == 1,
            f"BYE for an id that names no set: to instance {where} by hash")

    since = time.monotonic()
    invite = c.caller.start("INVITE", "ring")
    c.caller.pump([invite], lambda: invite["provisional"], 3)
    cancel = c.caller.start("CANCEL", None, invite=invite)
    c.caller.pump([invite, cancel], lambda: invite["final"] and cancel["final"], 5)
    where = c.landed("CANCEL", since, "ring")
    c.check(cancel["final"] == 200 and invite["final"] == 487 and len(where) == 1
            and c.landed("INVITE", since, "ring") == where,
            f"CANCEL follows its INVITE to instance {where}: CANCEL {cancel['final']}, "
            f"INVITE {invite['final']}")

    # An instance dies: each of its calls goes on on one survivor, always the same.
    c.inst[dead].down()
    keys = [key] + [f"b2b-{dead}.5f3a9c.1.{k:x}" for k in range(12)]
    since = time.monotonic()
    txs = [c.caller.start("BYE", k, to_tag="x") for k in keys]
    c.caller.pump(txs, lambda: all(tx["final"] for tx in txs), 8)
    first = {k: c.landed("BYE", since, k) for k in keys}
    slowest = max(tx.get("took", 99) for tx in txs)
    c.check(all(tx["final"] == 200 for tx in txs) and slowest < 1.5
            and all(len(w) == 1 and w[0] != dead for w in first.values()),
            f"instance {dead} killed: BYEs of 13 of its calls sent at once, all answered "
            f"by survivors within {slowest:.2f} s")
    survivor = first[key][0]
    again = []
    for k in keys:
        since = time.monotonic()
        code, took, _ = c.send("BYE", k, to_tag="x")
        again.append(code == 200 and c.landed("BYE", since, k) == first[k] and took < 0.3)
    _, _, ack_where = c.send("ACK", key, to_tag="x")
    c.check(all(again) and ack_where == [survivor],
            f"and again: each call on the same survivor, at once; ACK {key} to "
            f"{ack_where}; spread over {sorted({w[0] for w in first.values()})}")

    order = []
    for _ in range(4):
        code, took, where = c.send("INVITE", "1000")
        order.append((code, where, round(took, 2)))
    c.check(all(x[0] == 200 and x[1] and dead not in x[1] for x in order),
            f"new calls skip instance {dead}: {[(x[1], x[2]) for x in order]}")

    # It comes back.
    c.inst[dead].up()
    back = c.until_routed_to(dead, key)
    c.check(back is not None and back < 3.0,
            f"instance {dead} restarted: its BYEs reach it again after "
            f"{back if back is None else round(back, 2)} s")
    time.sleep(1.5)
    order = [c.send("INVITE", "1000")[2] for _ in range(len(ids))]
    c.check(sorted(w[0] for w in order if len(w) == 1) == sorted(ids),
            f"and it takes new calls again: {order}")

    # Death found by the probes alone: the request goes straight to the survivor.
    c.inst[dead].down()
    time.sleep(2.5)
    code, took, where = c.send("BYE", key, to_tag="x")
    c.check(code == 200 and where == [survivor] and took < 0.3,
            f"instance {dead} dead for 2.5 s: BYE {key} to instance {where} in {took:.3f} s")
    c.inst[dead].up()
    c.until_routed_to(dead, key)

    # A new call to an instance that just died waits NEW_CALL_FR_TIMER, then the next.
    c.inst[a].down()
    results = [c.send("INVITE", "1000") for _ in range(len(ids))]
    c.check(all(r[0] == 200 and r[2] and a not in r[2] for r in results)
            and max(r[1] for r in results) < 2.6,
            f"instance {a} killed: new calls {[(r[2], round(r[1], 2)) for r in results]}")
    c.inst[a].up()
    c.until_routed_to(a, f"b2b-{a}.1.0.1")

    # 503 from an instance: new calls go on to the next; its in-dialog requests too.
    c.inst[b].reject_503 = True
    results = [c.send("INVITE", "1000") for _ in range(len(ids))]
    c.check(all(r[0] == 200 and (len(r[2]) == 1 and b not in r[2] or
                                 len(r[2]) == 2 and b in r[2]) for r in results)
            and any(b in r[2] for r in results),
            f"instance {b} answers 503: new calls go on to the next: "
            f"{[(r[0], r[2]) for r in results]}")
    code, took, where = c.send("BYE", f"b2b-{b}.5f3a9c.0.2", to_tag="x")
    c.check(code == 200 and b in where and len(where) == 2,
            f"BYE for instance {b}, which answers 503: {code} via instances {where}")
    c.inst[b].reject_503 = False

    # An instance came back, but another one took its call over meanwhile: the owner and
    # the instances that do not have the call answer 503, the request goes on until the
    # one that has it.
    taken = f"b2b-{dead}.5f3a9c.2.7"
    for holder in (i for i in ids if i != dead):
        for i in ids:
            c.inst[i].not_mine = {taken} if i != holder else set()
        code, took, where = c.send("BYE", taken, to_tag="x")
        c.check(code == 200 and holder in where and dead in where,
                f"call of instance {dead} held by instance {holder}: BYE {code} via "
                f"instances {where}")
    for i in ids:
        c.inst[i].not_mine = {taken}
    code, took, where = c.send("BYE", taken, to_tag="x")
    # tm turns a 503 it would relay into 500 (RFC 3261 16.7).
    c.check(code == 500 and sorted(where) == ids,
            f"a call no instance will take: BYE {code} after instances {where}")
    for i in ids:
        c.inst[i].not_mine = set()

    # The probes alone, without traffic.
    out, back = probe_times(c, run_dir, dead)
    fmt = lambda xs: ", ".join("-" if x is None else f"{x:.2f}" for x in xs)
    c.check(None not in out and None not in back and max(out) < 2.3 and max(back) < 1.5,
            f"probes take a killed instance out after {fmt(out)} s, put it back "
            f"{fmt(back)} s after its restart")

    # None left.
    for i in ids:
        c.inst[i].down()
    time.sleep(2.5)
    code, took, _ = c.send("INVITE", "1000")
    retry = c.caller.last.get("retry_after")
    c.check(code == 503 and took < 0.3 and retry == "5",
            f"every instance dead: new call {code}, Retry-After {retry}")
    code, took, _ = c.send("BYE", key, to_tag="x")
    retry = c.caller.last.get("retry_after")
    c.check(code == 503 and took < 0.3 and retry == "5",
            f"every instance dead: BYE {code}, Retry-After {retry}")
    for i in ids:
        c.inst[i].up()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--front", help="IP:PORT (default 127.0.0.1, a free port)")
    parser.add_argument("--instances", help="IP:PORT,... (default 127.0.0.2.. free ports)")
    parser.add_argument("--keep", action="store_true", help="leave the front running")
    args = parser.parse_args()

    def addr(text):
        ip, port = text.rsplit(":", 1)
        return ip, int(port)

    front = addr(args.front) if args.front else ("127.0.0.1", free_udp_port("127.0.0.1"))
    if args.instances:
        inst_addrs = [addr(x) for x in args.instances.split(",")]
    else:
        inst_addrs = [(f"127.0.0.{i + 1}", free_udp_port(f"127.0.0.{i + 1}")) for i in (1, 2, 3)]
    if len(inst_addrs) < 3:
        sys.exit("check-front.py: needs at least 3 instances")
    ids = list(range(1, len(inst_addrs) + 1))
    standins = {i: StandIn(str(i), a) for i, a in zip(ids, inst_addrs)}

    run_dir = tempfile.mkdtemp(prefix="b2bua-front-check.")
    fmt = lambda a: f"{a[0]}:{a[1]}"
    start = subprocess.run(
        [os.path.join(HERE, "run-cluster.sh"), "--no-redis", "--no-instances", "--no-wait",
         "--run-dir", run_dir, "--front", fmt(front), "--children", "2",
         "--instances", ",".join(fmt(a) for a in inst_addrs), "--front-log-level", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if start.returncode != 0:
        sys.exit(f"check-front.py: the front did not start:\n{start.stdout}")
    print(f"front {fmt(front)}, instances "
          + ", ".join(f"{i}={fmt(a)}" for i, a in zip(ids, inst_addrs)) + f", run dir {run_dir}")
    c = Checks(Caller("127.0.0.1", front), standins)
    try:
        run_checks(c, ids, run_dir)
    finally:
        if not args.keep:
            subprocess.run([os.path.join(HERE, "run-cluster.sh"), "--stop", run_dir])
    if c.failed or args.keep:
        print(f"{c.failed} failed; front log: {run_dir}/kamailio.log")
    else:
        shutil.rmtree(run_dir)
        print("passed")
    sys.exit(1 if c.failed else 0)


if __name__ == "__main__":
    main()
