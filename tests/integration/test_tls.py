#!/usr/bin/env python3
"""SIP over TLS, end to end: the real binary between two peers that are not our code.

    python3 tests/integration/test_tls.py --binary build/release/b2bua/b2bua [-k name]

Debian's sipp has no TLS, so both peers are Python's ssl module (OpenSSL) driving raw SIP:
a caller that connects to the b2bua's TLS listener, and a callee that is a TLS server the
b2bua reaches as a next hop `sip:127.0.0.1:PORT;transport=tls`. The certificates are the
test ones of tests/data/tls (a test CA; every server certificate names 127.0.0.1).

- A call with both legs over TLS: INVITE, 180, 200, ACK, then BYE from the caller; a
  second call hung up by the callee, whose BYE reaches the caller over its connection.
- A next hop whose certificate does not verify (another name; self-signed) gets nothing:
  the caller gets an error and the failure is counted by reason.
- SIGHUP with a new certificate: the next handshake gets it, a live call goes on.
- 1,000 connections from one address meet tcp.max_connections_per_source, and a caller
  from another address still completes its call.
"""

import os
import re
import socket
import ssl
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import LOOPBACK, B2buaTestCase, free_port, main  # noqa: E402

TLS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data",
                       "tls")
CA = os.path.join(TLS_DIR, "ca.pem")


def tls_file(name):
    return os.path.join(TLS_DIR, name)


def read_message(conn, buffer):
    """One SIP message off a stream (Content-Length framing); (message, rest of buffer)."""
    while True:
        head_end = buffer.find(b"\r\n\r\n")
        if head_end >= 0:
            head = buffer[:head_end].decode("utf-8", "replace")
            match = re.search(r"(?im)^(?:content-length|l)\s*:\s*(\d+)", head)
            length = int(match.group(1)) if match else 0
            total = head_end + 4 + length
            if len(buffer) >= total:
                return buffer[:total].decode("utf-8", "replace"), buffer[total:]
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed")
        buffer += chunk


def header(message, name):
    match = re.search(r"(?im)^%s\s*:\s*(.*)$" % re.escape(name), message)
    return match.group(1).strip() if match else ""


def status_of(message):
    match = re.match(r"SIP/2\.0 (\d{3})", message)
    return int(match.group(1)) if match else 0


def response_to(request, status, reason, to_tag, contact=None, body=""):
    """A response to `request`: its Vias, From, Call-ID, CSeq; To with our tag."""
    lines = ["SIP/2.0 %d %s" % (status, reason)]
    for line in request.split("\r\n")[1:]:
        if re.match(r"(?i)^(via|v|from|f|call-id|i|cseq)\s*:", line):
            lines.append(line)
    to = header(request, "To")
    if ";tag=" not in to:
        to += ";tag=" + to_tag
    lines.append("To: " + to)
    if contact:
        lines.append("Contact: " + contact)
    lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


class TlsCallee:
    """A TLS server answering the b2bua's INVITEs 180 then 200, and every other request
    200; with hang_up, it sends BYE itself after the ACK. Runs in a thread."""

    def __init__(self, cert, key, hang_up=False):
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(tls_file(cert), tls_file(key))
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((LOOPBACK, 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.hang_up = hang_up
        self.received = []  # every message, in order
        self.handshakes = 0
        self.handshake_errors = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        self.listener.settimeout(0.2)
        while not self.done.is_set():
            try:
                raw, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                conn = self.context.wrap_socket(raw, server_side=True)
            except (ssl.SSLError, OSError) as error:
                self.handshake_errors.append(str(error))
                raw.close()
                continue
            self.handshakes += 1
            threading.Thread(target=self._converse, args=(conn,), daemon=True).start()

    def _converse(self, conn):
        buffer = b""
        conn.settimeout(10)
        seq = 0
        try:
            while not self.done.is_set():
                message, buffer = read_message(conn, buffer)
                self.received.append(message)
                if message.startswith("SIP/2.0"):
                    continue
                method = message.split(" ", 1)[0]
                contact = "<sip:callee@%s:%d;transport=tls>" % (LOOPBACK, self.port)
                if method == "INVITE":
                    conn.sendall(response_to(message, 180, "Ringing", "callee1", contact))
                    conn.sendall(response_to(message, 200, "OK", "callee1", contact))
                elif method == "ACK":
                    if self.hang_up:
                        seq += 1
                        bye = "\r\n".join([
                            "BYE %s SIP/2.0" % header(message, "Contact").strip("<>")
                            if header(message, "Contact") else "BYE sip:b2bua SIP/2.0",
                            "Via: SIP/2.0/TLS %s:%d;branch=z9hG4bKcalleebye%d"
                            % (LOOPBACK, self.port, seq),
                            "Max-Forwards: 70",
                            "From: " + header(message, "To"),
                            "To: " + header(message, "From"),
                            "Call-ID: " + header(message, "Call-ID"),
                            "CSeq: 1 BYE",
                            "Content-Length: 0", "", ""])
                        conn.sendall(bye.encode())
                elif method != "CANCEL":
                    conn.sendall(response_to(message, 200, "OK", "callee1"))
        except (ConnectionError, OSError, ssl.SSLError):
            pass
        finally:
            conn.close()

    def requests(self, method):
        return [m for m in self.received if m.startswith(method + " ")]

    def close(self):
        self.done.set()
        self.listener.close()


class TlsCaller:
    """A caller over TLS to the b2bua's TLS listener, verifying its certificate."""

    def __init__(self, port, server_name="sip.test.example"):
        context = ssl.create_default_context(cafile=CA)
        raw = socket.create_connection((LOOPBACK, port), timeout=10)
        self.conn = context.wrap_socket(raw, server_hostname=server_name)
        self.local_port = self.conn.getsockname()[1]
        self.buffer = b""
        self.port = port

    def certificate(self):
        return self.conn.getpeercert(binary_form=True)

    def send(self, text):
        self.conn.sendall(text.encode())

    def read(self):
        message, self.buffer = read_message(self.conn, self.buffer)
        return message

    def read_final(self):
        """Responses until a final one; returns it."""
        while True:
            message = self.read()
            if status_of(message) >= 200:
                return message

    def invite(self, call_id, user="1000"):
        lines = [
            "INVITE sip:%s@%s:%d;transport=tls SIP/2.0" % (user, LOOPBACK, self.port),
            "Via: SIP/2.0/TLS %s:%d;branch=z9hG4bK%s" % (LOOPBACK, self.local_port, call_id),
            "Max-Forwards: 70",
            "From: <sip:alice@example.com>;tag=caller-%s" % call_id,
            "To: <sip:%s@example.com>" % user,
            "Call-ID: %s" % call_id,
            "CSeq: 1 INVITE",
            "Contact: <sip:alice@%s:%d;transport=tls>" % (LOOPBACK, self.local_port),
            "Content-Length: 0", "", ""]
        self.send("\r\n".join(lines))

    def in_dialog(self, method, final, cseq, call_id):
        """ACK or BYE inside the dialog `final` (the 200 to our INVITE) set up."""
        target = header(final, "Contact").strip("<>")
        lines = [
            "%s %s SIP/2.0" % (method, target),
            "Via: SIP/2.0/TLS %s:%d;branch=z9hG4bK%s%s" % (LOOPBACK, self.local_port,
                                                           method.lower(), call_id),
            "Max-Forwards: 70",
            "From: <sip:alice@example.com>;tag=caller-%s" % call_id,
            "To: " + header(final, "To"),
            "Call-ID: %s" % call_id,
            "CSeq: %d %s" % (cseq, method),
            "Content-Length: 0", "", ""]
        self.send("\r\n".join(lines))

    def answer(self, request, status=200, reason="OK"):
        self.conn.sendall(response_to(request, status, reason, "callee-side"))

    def close(self):
        try:
            self.conn.close()
        except OSError:
            pass


class TlsTest(B2buaTestCase):
    def tls_config(self, callee_port, cert="server.pem", key="server.key", tls_port=None,
                   extra=""):
        self.tls_port = tls_port or free_port()
        text = """
tls:
  listen: "127.0.0.1:%d"
  certificate: %s
  private_key: %s
  ca: %s
  handshake_timeout: 2s
probe: { options_interval: 0 }
routes:
  - prefix: ""
    next_hops: ["sip:127.0.0.1:%d;transport=tls"]
%s""" % (self.tls_port, tls_file(cert), tls_file(key), CA, callee_port, extra)
        return self.h.config(text=text)

    def start(self, callee, **kwargs):
        config = self.tls_config(callee.port, **kwargs)
        self.addCleanup(callee.close)
        return self.h.start_b2bua(config, shards=2), config

    def call(self, caller, call_id):
        caller.invite(call_id)
        final = caller.read_final()
        self.assertEqual(status_of(final), 200, final)
        caller.in_dialog("ACK", final, 1, call_id)
        return final

    def test_call_with_both_legs_over_tls(self):
        callee = TlsCallee("server.pem", "server.key")
        self.start(callee)
        caller = TlsCaller(self.tls_port)
        self.addCleanup(caller.close)
        final = self.call(caller, "tls-call-1")
        # Our Contact sends the caller's in-dialog requests back to the TLS listener.
        self.assertIn(";transport=tls", header(final, "Contact"))
        self.assertIn(":%d" % self.tls_port, header(final, "Contact"))
        caller.in_dialog("BYE", final, 2, "tls-call-1")
        bye_answer = caller.read_final()
        self.assertEqual(status_of(bye_answer), 200, bye_answer)
        # The callee saw the B-leg over TLS, with a Via naming TLS and our TLS listener.
        invites = callee.requests("INVITE")
        self.assertEqual(len(invites), 1)
        self.assertTrue(header(invites[0], "Via").startswith("SIP/2.0/TLS 127.0.0.1:%d"
                                                             % self.tls_port), invites[0])
        self.assertIn(";transport=tls", header(invites[0], "Contact"))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and (not callee.requests("ACK")
                                               or not callee.requests("BYE")):
            time.sleep(0.05)
        self.assertEqual(len(callee.requests("ACK")), 1)
        self.assertEqual(len(callee.requests("BYE")), 1)
        self.assertMetric("b2bua_calls_total", 1, outcome="answered", wait=5)
        self.assertGreaterEqual(self.h.metrics().value("b2bua_tls_handshakes_total"), 2)
        self.assertNoActiveCalls()

    def test_callee_hangs_up_over_tls(self):
        callee = TlsCallee("server.pem", "server.key", hang_up=True)
        self.start(callee)
        caller = TlsCaller(self.tls_port)
        self.addCleanup(caller.close)
        self.call(caller, "tls-call-2")
        # The callee's BYE reaches the caller on the connection it called on.
        bye = caller.read()
        self.assertTrue(bye.startswith("BYE "), bye)
        self.assertTrue(header(bye, "Via").startswith("SIP/2.0/TLS"), bye)
        caller.answer(bye)
        self.assertMetric("b2bua_calls_total", 1, outcome="answered", wait=5)
        self.assertNoActiveCalls()

    def test_next_hop_certificate_that_does_not_verify_is_refused(self):
        for cert in ("wrongname", "selfsigned"):
            with self.subTest(cert=cert):
                callee = TlsCallee(cert + ".pem", cert + ".key")
                if self.h.b2bua is None:
                    self.h.start_b2bua(self.tls_config(callee.port), shards=1)
                else:
                    self.h.reload_b2bua(self.tls_config(callee.port, tls_port=self.tls_port))
                caller = TlsCaller(self.tls_port)
                caller.invite("tls-bad-" + cert)
                final = caller.read_final()
                caller.close()
                callee.close()
                self.assertGreaterEqual(status_of(final), 400, final)
                self.assertEqual(callee.requests("INVITE"), [])
        self.assertGreaterEqual(
            self.h.metrics().value("b2bua_tls_handshakes_failed_total", reason="verify"), 2)

    def test_reload_serves_the_new_certificate_to_the_next_handshake(self):
        callee = TlsCallee("server.pem", "server.key")
        _, config = self.start(callee)
        first = TlsCaller(self.tls_port)
        self.addCleanup(first.close)
        with open(tls_file("server.pem"), "rb") as fh:
            self.assertEqual(first.certificate(), ssl.PEM_cert_to_DER_cert(fh.read().decode()))
        final = self.call(first, "tls-reload-1")  # a call up across the reload
        self.h.reload_b2bua(self.tls_config(callee.port, cert="server2.pem", key="server2.key",
                                            tls_port=self.tls_port))
        second = TlsCaller(self.tls_port)
        self.addCleanup(second.close)
        with open(tls_file("server2.pem"), "rb") as fh:
            self.assertEqual(second.certificate(), ssl.PEM_cert_to_DER_cert(fh.read().decode()))
        # The live call on the old connection still ends cleanly.
        first.in_dialog("BYE", final, 2, "tls-reload-1")
        self.assertEqual(status_of(first.read_final()), 200)
        # A broken certificate file is refused and the old one stays.
        broken = self.tls_config(callee.port, cert="missing.pem", key="server2.key",
                                 tls_port=self.tls_port)
        with self.assertRaises(AssertionError):
            self.h.reload_b2bua(broken, timeout=2)
        self.assertIn("reload refused", self.h.b2bua.log_text())
        third = TlsCaller(self.tls_port)
        self.addCleanup(third.close)
        final = self.call(third, "tls-reload-3")
        with open(tls_file("server2.pem"), "rb") as fh:
            self.assertEqual(third.certificate(), ssl.PEM_cert_to_DER_cert(fh.read().decode()))
        third.in_dialog("BYE", final, 2, "tls-reload-3")
        self.assertEqual(status_of(third.read_final()), 200)
        self.assertNoActiveCalls()

    def test_connections_from_one_source_meet_the_limit_and_others_still_call(self):
        callee = TlsCallee("server.pem", "server.key")
        self.start(callee, extra="tcp: { max_connections_per_source: 50 }\n")
        flood = []
        try:
            for _ in range(1000):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.bind(("127.0.0.2", 0))
                s.settimeout(5)
                try:
                    s.connect((LOOPBACK, self.tls_port))
                except OSError:
                    s.close()
                    continue
                flood.append(s)
            # Two shards, 50 each: at most 100 of them were kept, the rest reset.
            deadline = time.monotonic() + 10
            refused = 0
            while time.monotonic() < deadline:
                refused = self.h.metrics().value("b2bua_connections_refused_total",
                                                 transport="tls")
                if refused >= 900:
                    break
                time.sleep(0.2)
            self.assertGreaterEqual(refused, 900)
            self.assertLessEqual(self.h.metrics().value("b2bua_connections", transport="tls"),
                                 100 + 2)
            caller = TlsCaller(self.tls_port)
            self.addCleanup(caller.close)
            final = self.call(caller, "tls-limit-1")
            caller.in_dialog("BYE", final, 2, "tls-limit-1")
            self.assertEqual(status_of(caller.read_final()), 200)
            # The idle ones never start a handshake: closed at its deadline (2 s).
            self.assertGreaterEqual(
                self.h.wait_metric("b2bua_tls_handshakes_failed_total", 100, timeout=8,
                                   reason="timeout"), 1)
        finally:
            for s in flood:
                s.close()


if __name__ == "__main__":
    main()
