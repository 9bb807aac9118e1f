"""A fleet behind a real balancer: Debian's HAProxy in TCP mode, with
send-proxy-v2 and `option smtpchk` health checks, in front of two tlsfront
instances (host_id mx-a and mx-b) in front of one Postfix backend.

Mail flows through both; a stopped instance is taken out by the health
check while senders keep sending (each retries a 4xx or a lost connection,
as an MTA does) and no message is lost or accepted twice (the backend's
Maildir, by Message-ID); the records carry the senders' real address from
the PROXY v2 header, the balancer's checks are recorded as origin
health_check and are not senders, and `tlsfront report` over both record
files gives one answer."""

import json
import os
import signal
import smtplib
import socket
import ssl
import subprocess
import threading
import time

from .clients import SMTPWithSNI
from .harness import CLIENT_TIMEOUT, Fail, check, free_ports, run, tail, uniq
from .mail import make_message
from .proxy import Proxy

SENDER_IP = "127.0.0.23"     # the senders' address, which only PROXY v2 can tell tlsfront
CHECK_HELO = "haproxy.fleet.test"


class FleetMember(Proxy):
    """tlsfront behind the balancer: one STARTTLS listener that expects a
    PROXY header from 127.0.0.1, its own host_id and record file."""

    def __init__(self, rig, host_id, backend_port, port):
        certs = rig["certs"]
        super().__init__(rig, f"fleet-{host_id}", backend_port, "", "", port, port)
        self.host_id = host_id
        self.conf = os.path.join(self.dir, "tlsfront.toml")
        with open(self.conf, "w") as f:
            f.write("\n".join([
                "[server]", f'hostname = "{rig["proxy_hostname"]}"', f'host_id = "{host_id}"',
                'trusted_proxies = ["127.0.0.1/32"]', 'shutdown_grace = "5s"',
                "[[listener]]", f'address = ["127.0.0.1:{port}"]', "proxy_protocol = true",
                "[backend]", f'address = "127.0.0.1:{backend_port}"',
                "[[tls.certificate]]", f'cert = "{certs}/proxy-ecdsa-fullchain.pem"',
                f'key = "{certs}/proxy-ecdsa-key.pem"',
                "[records]", f'path = "{self.records.path}"']) + "\n")
        self.cmd = [rig["proxy_bin"], "run", "--config", self.conf]

    def start(self):
        """Started when its log says it listens (a probe connection from
        127.0.0.1 would be a trusted peer without a PROXY header)."""
        check(os.access(self.rig["proxy_bin"], os.X_OK), f"proxy binary {self.rig['proxy_bin']} missing")
        logf = open(self.log, "ab")
        env = dict(os.environ, RUST_LOG="info")
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=logf,
                                     stderr=subprocess.STDOUT, env=env)
        logf.close()
        with open(self.pidfile, "w") as f:
            f.write(str(self.proc.pid))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Fail(f"tlsfront {self.host_id} exited early with {self.proc.returncode}\n{tail(self.log)}")
            with open(self.log, "rb") as f:
                if b"listening" in f.read():
                    return
            time.sleep(0.2)
        raise Fail(f"tlsfront {self.host_id} did not listen within 20s\n{tail(self.log)}")


class HAProxy:
    def __init__(self, rig, port, members):
        self.dir = os.path.join(rig["work"], "haproxy")
        os.makedirs(self.dir, exist_ok=True)
        self.port, self.sock = port, os.path.join(self.dir, "admin.sock")
        self.cfg = os.path.join(self.dir, "haproxy.cfg")
        self.log = os.path.join(self.dir, "haproxy.log")
        self.pidfile = os.path.join(rig["pid_dir"], "haproxy.pid")
        servers = "\n".join(f"    server {m.host_id} 127.0.0.1:{m.port}" for m in members)
        with open(self.cfg, "w") as f:
            f.write(f"""global
    stats socket {self.sock} mode 600 level admin
    maxconn 2000
defaults
    mode tcp
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout check 2s
    # A refused connection (a stopped instance) is tried again on the other.
    retries 3
    option redispatch
frontend mx
    bind 127.0.0.1:{port}
    default_backend fronts
backend fronts
    balance roundrobin
    option smtpchk EHLO {CHECK_HELO}
    default-server check inter 500ms fastinter 250ms downinter 500ms fall 2 rise 2 send-proxy-v2 check-send-proxy
{servers}
""")
        self.proc = None

    def start(self):
        rc, out = run(["haproxy", "-c", "-f", self.cfg])
        check(rc == 0, f"haproxy -c refused the configuration:\n{out}")
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(["haproxy", "-db", "-f", self.cfg], stdin=subprocess.DEVNULL,
                                     stdout=logf, stderr=subprocess.STDOUT)
        logf.close()
        with open(self.pidfile, "w") as f:
            f.write(str(self.proc.pid))

    def states(self):
        """{server: status} from the stats socket (UP, DOWN, ...)."""
        try:
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(5)
            s.connect(self.sock)
            s.sendall(b"show stat\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            s.close()
        except OSError:
            return {}
        lines = data.decode().splitlines()
        if not lines or not lines[0].startswith("# "):
            return {}
        head = lines[0][2:].split(",")
        out = {}
        for l in lines[1:]:
            row = dict(zip(head, l.split(",")))
            if row.get("pxname") == "fronts" and row.get("svname") not in ("FRONTEND", "BACKEND"):
                out[row["svname"]] = row.get("status", "")
        return out

    def wait_state(self, server, want, timeout=20):
        deadline = time.monotonic() + timeout
        seen = {}
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Fail(f"haproxy exited with {self.proc.returncode}\n{tail(self.log)}")
            seen = self.states()
            if seen.get(server, "").startswith(want):
                return time.monotonic()
            time.sleep(0.1)
        raise Fail(f"haproxy did not see {server} {want} within {timeout}s: {seen}\n{tail(self.log)}")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        try:
            os.unlink(self.pidfile)
        except FileNotFoundError:
            pass


def deliver(rig, port, helo, rcpt, data, attempts=30, park=None):
    """Delivers one message through the balancer as an MTA would: a 4xx
    (at any step) or a lost connection means trying again a little later on
    a new connection; 250 after the end of data means done. Returns the
    number of tries; a 5xx is a failure. `park`: (ready, go) events: on the
    first try, after TLS and EHLO, say ready and wait for go."""
    ctx = ssl.create_default_context(cafile=rig["ca"])
    last = None
    for attempt in range(1, attempts + 1):
        s = SMTPWithSNI(rig["proxy_hostname"], local_hostname=helo, timeout=CLIENT_TIMEOUT,
                        source_address=(SENDER_IP, 0))
        try:
            s.connect("127.0.0.1", port)
            s.ehlo()
            s.starttls(context=ctx)
            s.ehlo()
            if park and attempt == 1:
                park[0].set()
                park[1].wait(CLIENT_TIMEOUT * 2)
            refused = s.sendmail("sender@client.test", [rcpt], data)
            check(not refused, f"recipient refused: {refused}")
            try:
                s.quit()
            except (smtplib.SMTPException, OSError):
                pass  # accepted already; the goodbye does not matter
            return attempt
        except smtplib.SMTPResponseException as e:
            if 400 <= e.smtp_code < 500:
                last = f"{e.smtp_code} {e.smtp_error!r}"
            else:
                raise Fail(f"{rcpt}: permanent failure {e.smtp_code} {e.smtp_error!r}")
        except (smtplib.SMTPServerDisconnected, smtplib.SMTPRecipientsRefused, OSError) as e:
            if isinstance(e, smtplib.SMTPRecipientsRefused) and any(
                    c >= 500 for c, _ in e.recipients.values()):
                raise Fail(f"{rcpt}: recipient refused {e.recipients}")
            last = f"{type(e).__name__}: {e}"
        finally:
            try:
                s.close()
            except Exception:
                pass
        time.sleep(0.2)
    raise Fail(f"{rcpt}: not delivered after {attempts} tries (last: {last})")


def stored_ids(backend, mids, timeout=60):
    """How many times each Message-ID in `mids` is in the backend's Maildir,
    once every one is there (and a second later, for a late duplicate)."""
    newdir = os.path.join(backend["dir"], "mail", "inbox", "new")
    found = {}
    seen = set()
    deadline = time.monotonic() + timeout

    def scan():
        for name in os.listdir(newdir) if os.path.isdir(newdir) else []:
            if name in seen:
                continue
            seen.add(name)
            with open(os.path.join(newdir, name), "rb") as f:
                head = f.read().split(b"\n\n", 1)[0]
            for line in head.split(b"\n"):
                if line.lower().startswith(b"message-id:"):
                    mid = line.split(b":", 1)[1].strip().decode()
                    if mid in mids:
                        found[mid] = found.get(mid, 0) + 1
    while time.monotonic() < deadline:
        scan()
        if len(found) == len(mids):
            time.sleep(1)
            scan()
            return found
        time.sleep(0.25)
    missing = sorted(mids - set(found))
    raise Fail(f"{len(missing)} of {len(mids)} messages not delivered within {timeout}s: {missing[:5]}\n"
               f"{tail(backend['maillog'])}")


def fleet_scenario(rig, backend):
    pa, pb, ph = free_ports(3)
    a = FleetMember(rig, "mx-a", backend["port"], pa)
    b = FleetMember(rig, "mx-b", backend["port"], pb)
    lb = HAProxy(rig, ph, [a, b])
    try:
        a.start()
        b.start()
        lb.start()
        for m in (a, b):
            lb.wait_state(m.host_id, "UP")
        sent = []  # (message id, data, tries)

        def send(tag, park=None):
            lp = uniq(tag)
            rcpt = f"{lp}@tlsfront.test"
            mid, data = make_message(lp, rcpt)
            tries = deliver(rig, ph, f"{tag}.client.test", rcpt, data, park=park)
            sent.append((mid, data, tries))

        # 1. Mail flows through both (round robin).
        for i in range(6):
            send(f"fleet-rr{i}")
        for m in (a, b):
            recs = [r for r in m.records.since(0) if r.get("messages_accepted")]
            check(recs, f"no message went through {m.host_id}")

        # 2. Senders keep sending while mx-a stops; two more sit between
        # EHLO and MAIL (one on each host, by round robin) when it does.
        stop_senders = threading.Event()
        go = threading.Event()
        errors = []

        def sender(k):
            i = 0
            while not stop_senders.is_set():
                try:
                    send(f"fleet-s{k}-{i}")
                except Exception as e:  # a Fail in a thread is reported below
                    errors.append(f"sender {k}: {e}")
                    return
                i += 1
                time.sleep(0.05)

        def parked(k, ready):
            try:
                send(f"fleet-p{k}", park=(ready, go))
            except Exception as e:
                errors.append(f"parked sender {k}: {e}")
                ready.set()

        threads = []
        for k in range(2):
            ready = threading.Event()
            threads.append(threading.Thread(target=parked, args=(k, ready), daemon=True))
            threads[-1].start()
            check(ready.wait(CLIENT_TIMEOUT), "a parked sender did not get its session")
        threads += [threading.Thread(target=sender, args=(k,), daemon=True) for k in range(3)]
        for t in threads[2:]:
            t.start()
        time.sleep(1.5)
        stopped_at = time.monotonic()
        a.proc.send_signal(signal.SIGTERM)
        down_at = lb.wait_state("mx-a", "DOWN")
        try:
            rc = a.proc.wait(timeout=30)
            check(rc == 0, f"mx-a exited with {rc} on SIGTERM\n{tail(a.log)}")
        except subprocess.TimeoutExpired:
            raise Fail(f"mx-a did not exit within 30s of SIGTERM\n{tail(a.log)}")
        a.exit_note = "stopped by the scenario"
        go.set()
        after_down = len(sent)
        time.sleep(2)
        stop_senders.set()
        for t in threads:
            t.join(CLIENT_TIMEOUT * 3)
        check(not any(t.is_alive() for t in threads), "a sender did not finish")
        check(not errors, "; ".join(errors))
        check(len(sent) > after_down, "no message was sent after mx-a was taken out")

        # 3. Nothing lost, nothing accepted twice.
        stored = stored_ids(backend, {mid for mid, _, _ in sent})
        twice = {mid: n for mid, n in stored.items() if n != 1}
        check(not twice, f"messages not stored exactly once: {twice}")
        retried = sum(1 for _, _, tries in sent if tries > 1)
        check(retried >= 1, "the sender parked on mx-a did not have to try again")

        # 4. Records: the senders' real address, the host, health checks apart.
        time.sleep(1)
        recs = {m.host_id: m.records.since(0) for m in (a, b)}
        for host, rs in recs.items():
            check(all(r.get("host") == host for r in rs), f"{host}: a record with another host")
            senders = [r for r in rs if r.get("origin") == "proxied"]
            checks = [r for r in rs if r.get("origin") == "health_check"]
            check(senders and all(r.get("client_ip") == SENDER_IP for r in senders),
                  f"{host}: proxied records without the sender's address: "
                  f"{sorted({r.get('client_ip') for r in senders})}")
            check(checks, f"{host}: no health check recorded")
            bad = [r for r in checks if r.get("client_ip") != "127.0.0.1" or r.get("helo") != CHECK_HELO
                   or r.get("backend_contacted")]
            check(not bad, f"{host}: health check records: {json.dumps(bad[:2])}")
            others = [r for r in rs if r.get("origin") not in ("proxied", "health_check")]
            check(not others, f"{host}: records of another origin: {json.dumps(others[:2])}")
        accepted = sum(r.get("messages_accepted", 0) for rs in recs.values() for r in rs)
        check(accepted == len(sent), f"records count {accepted} accepted messages, {len(sent)} were sent")

        # 5. One report over both files.
        rep = subprocess.run([rig["proxy_bin"], "report", "--json", a.records.path, b.records.path],
                             capture_output=True, text=True, timeout=CLIENT_TIMEOUT)
        check(rep.returncode == 0, f"report failed ({rep.returncode}): {rep.stderr[-2000:]}")
        summary = json.loads(rep.stdout)
        n_checks = sum(1 for rs in recs.values() for r in rs if r.get("origin") == "health_check")
        n_sessions = sum(len(rs) for rs in recs.values()) - n_checks
        check(summary["health_checks"] == n_checks and summary["sessions"] == n_sessions,
              f"report: {summary['sessions']} sessions, {summary['health_checks']} health checks; "
              f"records: {n_sessions}, {n_checks}")
        check(summary["sources"] == [a.records.path, b.records.path], f"sources {summary['sources']}")
        check(all(c["ip"] != "127.0.0.1" for c in summary["plaintext_senders"] + summary["top_senders"]),
              f"the balancer counted as a sender: {summary['plaintext_senders']} {summary['top_senders']}")
        per_host = {h["host"]: h["messages"] for h in summary["hosts"]}
        check(sorted(per_host) == ["mx-a", "mx-b"] and sum(per_host.values()) == accepted,
              f"report per host {per_host}, {accepted} messages accepted in the records")
        print(f"    fleet: {len(sent)} messages ({retried} retried after mx-a stopped), mx-a out "
              f"{down_at - stopped_at:.1f}s after SIGTERM, {n_checks} health checks recorded apart",
              flush=True)
    finally:
        lb.stop()
        for m in (a, b):
            msg = m.stop()
            if msg and m.exit_note != "stopped by the scenario":
                print(f"    (fleet cleanup: {msg.splitlines()[0]})")


def scenarios(runner, rig):
    backend = rig["backends"]["legacy-rsa"]
    runner.scenario("fleet: HAProxy (send-proxy-v2, smtpchk) in front of two tlsfront hosts; "
                    "one stopped without a lost or doubled message; records and report merged",
                    fleet_scenario, rig, backend)
