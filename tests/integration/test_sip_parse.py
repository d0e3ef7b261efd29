#!/usr/bin/env python3
"""sip-parse, the command-line checker, on the corpora with a MANIFEST.tsv.

    python3 tests/integration/test_sip_parse.py --sip-parse build/release/proto/sip-parse

For each row of tests/data/edge/MANIFEST.tsv the tool must say what the B2BUA does with
the message: `valid` for a valid one (exit 0), otherwise not valid with the response code
the manifest names (exit 1); a 400 names the header at fault. The same files run through
the parser and validator in tests/proto/torture_test.cc: this checks the tool tells an
operator the same.
"""

import argparse
import json
import os
import subprocess
import sys
import unittest

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data")
SIP_PARSE = None


def manifest(corpus):
    rows = []
    with open(os.path.join(DATA, corpus, "MANIFEST.tsv")) as fh:
        next(fh)
        for line in fh:
            fields = line.rstrip("\n").split("\t")
            if len(fields) >= 4:
                rows.append((fields[0], fields[2], fields[3], fields[4] if len(fields) > 4 else ""))
    return rows


class SipParseTest(unittest.TestCase):
    def run_tool(self, path):
        result = subprocess.run([SIP_PARSE, path], capture_output=True, text=True, timeout=20)
        lines = result.stdout.strip().splitlines()
        self.assertEqual(len(lines), 1, result.stdout + result.stderr)
        return result.returncode, json.loads(lines[0])

    def test_edge_corpus_verdicts(self):
        rows = manifest("edge")
        self.assertEqual(len(rows), 8)
        for name, verdict, expected, note in rows:
            with self.subTest(file=name):
                rc, out = self.run_tool(os.path.join(DATA, "edge", name))
                if verdict == "valid":
                    self.assertEqual((rc, out["valid"]), (0, True), out)
                    continue
                self.assertEqual(rc, 1, out)
                self.assertFalse(out["valid"], out)
                self.assertEqual(out["response_code"], int(expected), out)
                if "naming Contact" in note:
                    self.assertIn("Contact", out["error"], out)

    def test_many_vias_are_all_listed(self):
        rc, out = self.run_tool(os.path.join(DATA, "edge", "four-hundred-vias.sip"))
        self.assertEqual(rc, 0, out)
        self.assertEqual(len(out["via"]), 400)
        self.assertEqual(out["via"][399]["branch"], "z9hG4bKhop399")


def main():
    global SIP_PARSE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sip-parse", required=True, help="path of the sip-parse binary")
    opts, rest = parser.parse_known_args()
    SIP_PARSE = os.path.abspath(opts.sip_parse)
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=1)


if __name__ == "__main__":
    main()
