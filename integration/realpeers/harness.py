"""The harness every scenario module shares: the Runner (the
TLSFRONT_IT_SCENARIOS filter, "PASS name" / "FAIL name: why" lines, one JSON
line per scenario in the results file run.sh counts), failures, bounded
subprocesses, free ports, and the timeouts. Python stdlib only; every
network call and subprocess has a timeout, every wait loop is bounded."""

import json
import os
import re
import socket
import subprocess
import time
import traceback
import uuid


CLIENT_TIMEOUT = 30  # seconds, per SMTP client operation


DELIVERY_TIMEOUT = 60  # seconds to wait for a message to show up in a Maildir


RECORD_TIMEOUT = 15  # seconds to wait for the proxy's per-connection record


MATRIX = []  # one dict per delivery cell, filled by Runner.scenario(matrix=...)


SCANS = []  # sslscan findings, one dict per scan, for MATRIX.md


class Fail(Exception):
    """A scenario assertion failed; the message is reported verbatim."""


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def tail(path, n=15):
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
        return "\n".join("      | " + l for l in lines[-n:])
    except OSError as e:
        return f"      | ({path}: {e})"


def run(cmd, timeout=CLIENT_TIMEOUT, input_bytes=None, env=None):
    """subprocess.run with a timeout; returns (rc, stdout+stderr as text)."""
    try:
        p = subprocess.run(cmd, input=input_bytes if input_bytes is not None else b"",
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=timeout, env=env)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode("utf-8", "replace")
        raise Fail(f"timed out after {timeout}s: {' '.join(cmd)}\n{out[-2000:]}")
    return p.returncode, p.stdout.decode("utf-8", "replace")


def uniq(tag):
    return f"{tag}-{uuid.uuid4().hex[:8]}"


def free_ports(n, family=socket.AF_INET, host="127.0.0.1"):
    socks = []
    for _ in range(n):
        so = socket.socket(family)
        so.bind((host, 0))
        socks.append(so)
    ports = [so.getsockname()[1] for so in socks]
    for so in socks:
        so.close()
    return ports


class FileTail:
    """A file that grows (a log, a record file): its size now, and what
    was appended since a mark."""

    def __init__(self, path):
        self.path = path

    def mark(self):
        try:
            return os.path.getsize(self.path)
        except FileNotFoundError:
            return 0

    def read_since(self, offset):
        try:
            with open(self.path, "rb") as f:
                f.seek(offset)
                return f.read()
        except FileNotFoundError:
            return b""


def start_or_fail(runner, proxy, prefix, names):
    """Starts a proxy for a group of scenarios; if it will not start, reports
    the start and every scenario of the group as failed (so the scenario
    count stays stable) and returns False."""
    try:
        proxy.start()
    except Fail as e:
        proxy.stop()
        runner.report(f"{prefix} start", "FAIL", str(e))
        for n in names:
            runner.report(n, "FAIL", "proxy did not start")
        return False
    runner.report(f"{prefix} start", "PASS")
    return True


class Runner:
    def __init__(self, rig):
        self.rig = rig
        self.results = open(rig["results"], "a")
        flt = os.environ.get("TLSFRONT_IT_SCENARIOS")
        self.filter = re.compile(flt) if flt else None

    def scenario(self, name, fn, *args, matrix=None, **kw):
        """matrix: a dict describing the cell (sender, offered, sni, listener,
        backend); fn's return value, if a record dict, fills in what was
        negotiated. The row goes into MATRIX whatever the outcome."""
        if self.filter and not self.filter.search(name):
            return
        t0 = time.monotonic()
        ret = None
        try:
            ret = fn(*args, **kw)
            status, detail = "PASS", ""
        except Fail as e:
            status, detail = "FAIL", str(e)
        except Exception as e:  # a crash in a scenario is a failure, not a rig abort
            status, detail = "FAIL", f"{type(e).__name__}: {e}\n{traceback.format_exc()}"
        self.report(name, status, detail, time.monotonic() - t0)
        if matrix is not None:
            rec = ret if isinstance(ret, dict) else {}
            if status == "PASS" and matrix.get("known_bug"):
                status = "FAIL (known tlsfront bug, asserted: " + matrix["known_bug"] + ")"
            MATRIX.append(dict(matrix, result=status, scenario=name,
                               **{k: rec.get(k) for k in ("tls_version", "cipher_suite",
                                                          "kx_group", "cert_key_type")}))
        if status == "FAIL":
            # A failed scenario may leave a session closing in the proxy; let
            # its record land before the next scenario marks the record file.
            time.sleep(2)

    def report(self, name, status, detail="", secs=0.0):
        line = f"{status} {name} ({secs:.1f}s)"
        if detail:
            line += ": " + detail.rstrip().replace("\n", "\n    ")
        print(line, flush=True)
        self.results.write(json.dumps({"name": name, "status": status, "detail": detail}) + "\n")
        self.results.flush()

