"""tlsfront as a process (started from flags or from a configuration file,
stopped by PID with SIGTERM and a checked exit status) and its records (one
JSON line per connection) with the assertions on them."""

import json
import os
import signal
import socket
import subprocess
import time

from .harness import Fail, FileTail, RECORD_TIMEOUT, check, tail


ECDHE_GROUPS = {"X25519MLKEM768", "X25519", "secp256r1", "secp384r1"}


class Records(FileTail):
    def since(self, offset):
        data = self.read_since(offset)
        out = []
        for line in data.split(b"\n")[:-1]:  # only complete lines
            if line.strip():
                try:
                    out.append(json.loads(line))
                except ValueError as e:
                    raise Fail(f"record line is not JSON ({e}): {line[:300]!r}")
        return out

    def wait_one(self, offset, timeout=RECORD_TIMEOUT):
        """Exactly one new record since offset (one connection per scenario)."""
        deadline = time.monotonic() + timeout
        recs = []
        while time.monotonic() < deadline:
            recs = self.since(offset)
            if recs:
                time.sleep(0.5)  # an unexpected extra connection would show up now
                recs = self.since(offset)
                break
            time.sleep(0.2)
        check(recs, f"no record written to {self.path} within {timeout}s")
        check(len(recs) == 1, f"expected 1 new record, got {len(recs)}: "
              + "; ".join(json.dumps(r) for r in recs))
        return recs[0]


def assert_record(rec, **want):
    """Assert fields; special keys: kx_ecdhe=True, failure_reason_nonempty=True."""
    problems = []
    for k, v in want.items():
        if k == "kx_ecdhe":
            if rec.get("kx_group") not in ECDHE_GROUPS:
                problems.append(f"kx_group={rec.get('kx_group')!r} not an ECDHE group")
        elif k == "failure_reason_nonempty":
            if not (isinstance(rec.get("failure_reason"), str) and rec["failure_reason"].strip()):
                problems.append(f"failure_reason={rec.get('failure_reason')!r} is empty")
        elif rec.get(k) != v:
            problems.append(f"{k}={rec.get(k)!r}, want {v!r}")
    if problems:
        raise Fail("record mismatch: " + "; ".join(problems) + "\n    record: " + json.dumps(rec))


def proxied_want(rig, helo, **extra):
    want = dict(tls="established", tls_version="TLSv1.3", kx_ecdhe=True, client_ip="127.0.0.1",
                starttls_used=True, mode="starttls", messages_accepted=1,
                backend_contacted=True, helo=helo, sni=rig["proxy_hostname"])
    want.update(extra)
    return want


class Proxy:
    def __init__(self, rig, name, backend_port, cert, key, port, implicit_port, host="127.0.0.1"):
        self.rig, self.name, self.host = rig, name, host
        self.port, self.implicit_port = port, implicit_port
        hp = f"[{host}]" if ":" in host else host
        self.dir = os.path.join(rig["work"], "proxy-" + name)
        os.makedirs(self.dir, exist_ok=True)
        self.records = Records(os.path.join(self.dir, "records.jsonl"))
        self.log = os.path.join(self.dir, "tlsfront.log")
        self.cmd = [rig["proxy_bin"], "run",
                    "--listen", f"{hp}:{port}",
                    "--implicit-listen", f"{hp}:{implicit_port}",
                    "--backend", f"127.0.0.1:{backend_port}",
                    "--cert", cert, "--key", key,
                    "--hostname", rig["proxy_hostname"],
                    "--records", self.records.path]
        self.proc = None
        self.exit_note = ""
        self.cert_desc = "RSA" if "rsa" in os.path.basename(cert) else "ECDSA"
        self.pidfile = os.path.join(rig["pid_dir"], f"tlsfront-{name}.pid")

    def start(self):
        check(os.access(self.rig["proxy_bin"], os.X_OK),
              f"proxy binary {self.rig['proxy_bin']} missing (did cargo build --release fail?)")
        logf = open(self.log, "ab")
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "info"))
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=logf,
                                     stderr=subprocess.STDOUT, env=env)
        logf.close()
        with open(self.pidfile, "w") as f:  # run.sh's trap kills it if we die
            f.write(str(self.proc.pid))
        deadline = time.monotonic() + 20
        ready = set()
        while time.monotonic() < deadline and len(ready) < 2:
            if self.proc.poll() is not None:
                raise Fail(f"tlsfront exited early with {self.proc.returncode}: {' '.join(self.cmd)}\n"
                           + tail(self.log))
            for p in (self.port, self.implicit_port):
                if p not in ready:
                    try:
                        socket.create_connection((self.host, p), timeout=1).close()
                        ready.add(p)
                    except OSError:
                        pass
            time.sleep(0.2)
        check(len(ready) == 2, f"tlsfront did not accept on both ports within 20s\n{tail(self.log)}")
        # The readiness probes above are connections too: let their records
        # (if any) land so they are not attributed to the first scenario.
        time.sleep(1.0)

    def stop(self):
        """SIGTERM, then verify it exits; returns None or a failure message."""
        if self.proc is None:
            return None
        msg = None
        if self.proc.poll() is not None and self.exit_note:
            pass  # already stopped by a scenario (sigterm_with_idle_session)
        elif self.proc.poll() is not None:
            msg = f"tlsfront had already exited with {self.proc.returncode} before SIGTERM\n{tail(self.log)}"
        else:
            # tlsfront handles SIGTERM (graceful stop, 30 s grace for sessions
            # in flight) and must exit with status 0; dying from the signal
            # itself means the handler is missing.
            t0 = time.monotonic()
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout=45)
                self.exit_note = f"exit status {rc} after {time.monotonic() - t0:.1f}s"
                if rc != 0:
                    how = "killed by SIGTERM (no graceful handler)" if rc == -signal.SIGTERM else f"status {rc}"
                    msg = f"tlsfront exited with {how} on SIGTERM\n{tail(self.log)}"
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                msg = f"tlsfront did not exit within 45s of SIGTERM (killed)\n{tail(self.log)}"
        try:
            os.unlink(self.pidfile)
        except FileNotFoundError:
            pass
        self.proc = None
        return msg


class ConfigProxy(Proxy):
    """tlsfront started from a configuration file (for what flags cannot
    say: several certificates)."""

    def __init__(self, rig, name, backend_port, certs, port, implicit_port):
        super().__init__(rig, name, backend_port, "", "", port, implicit_port)
        self.conf = os.path.join(self.dir, "tlsfront.toml")
        lines = ['[server]', f'hostname = "{rig["proxy_hostname"]}"',
                 '[[listener]]', 'mode = "starttls"', f'address = ["127.0.0.1:{port}"]',
                 '[[listener]]', 'mode = "implicit"', f'address = ["127.0.0.1:{implicit_port}"]',
                 '[backend]', f'address = "127.0.0.1:{backend_port}"',
                 '[tls]', 'generate_self_signed = false']
        for cert, key in certs:
            lines += ['[[tls.certificate]]', f'cert = "{cert}"', f'key = "{key}"', 'default = true']
        lines += ['[records]', f'path = "{self.records.path}"']
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.cmd = [rig["proxy_bin"], "run", "--config", self.conf]

