#!/usr/bin/env python3
"""The soak (see soak.sh): tlsfront under mixed sessions for SOAK_SECONDS
(default 600), its memory and descriptors sampled every 2 s; after a
warm-up they must stay flat.

The mix, all at once, from many loopback addresses (so the per-client cap
of 50 applies as it would to many senders):
  good     the load generator: STARTTLS, TLS 1.3, one or two 10 KB messages
           per session, at a steady rate (an open load)
  idle     300 TLS sessions held open, each replaced every 20 s after one
           message (the load generator's --idle/--trickle)
  slow     40 slow clients at a time: a byte of an EHLO line every 200 ms,
           or a message trickled in a line at a time
  hostile  junk, an over-long line, a broken TLS hello, talking before the
           greeting, a smuggling attempt, a storm of NOOPs and unknown verbs,
           AUTH before TLS, a vanished client in DATA
Checked: RSS and open descriptors after the warm-up (the last third of the
samples against the first third), every good message delivered without an
error, every session closed at the end (tlsfront_active_sessions back to 0),
tlsfront still serving. Prints the samples' summary; exit 1 on a failed
check. Python stdlib only; every process it starts is stopped by PID."""

import json, os, random, socket, statistics, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from procs import free_port, wait_port  # noqa: E402
import procs  # noqa: E402

ROOT = sys.argv[1]
SECONDS = int(os.environ.get("SOAK_SECONDS", "600"))
WARMUP = max(15, min(90, SECONDS // 5))
GOOD_RATE = os.environ.get("SOAK_GOOD_RATE", "40")
IDLE = int(os.environ.get("SOAK_IDLE", "300"))
SLOW = 40
PROCS = []
STOP = threading.Event()
COUNTS = {"slow": 0, "hostile": 0, "hostile_errors": 0}
LOCK = threading.Lock()


def log(msg):
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def loadgen():
    return procs.loadgen(ROOT, "release")


def rss_kib(pid):
    return procs.rss_kib([pid])


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def metric(port, name):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
    except OSError:
        return None
    for l in data.decode(errors="replace").splitlines():
        if l.startswith(name + " "):
            return float(l.split()[1])
    return None


def source(i):
    return f"127.3.{(i // 250) % 250}.{i % 250 + 1}"


def connect(port, i):
    s = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source(i), 0))
    s.settimeout(30)
    return s


def slow_client(port, i):
    """A byte every 200 ms: of an EHLO line, or (after TLS-less MAIL/RCPT/DATA)
    of a message; ends at the command or data timeout, or when it is done."""
    try:
        s = connect(port, i)
        s.recv(1024)
        if i % 2 == 0:
            payload = b"EHLO slow.loris.test\r\nQUIT\r\n"
        else:
            payload = (b"EHLO slow.data.test\r\nMAIL FROM:<s@slow.test>\r\nRCPT TO:<r@sink.test>\r\nDATA\r\n"
                       + b"Subject: slow\r\n\r\n" + b"a slow line of text\r\n" * 4 + b".\r\nQUIT\r\n")
        for k in range(len(payload)):
            if STOP.is_set():
                break
            s.sendall(payload[k:k + 1])
            time.sleep(0.2)
        s.close()
    except OSError:
        pass
    with LOCK:
        COUNTS["slow"] += 1


HOSTILE = [
    lambda: b"A" * 100_000 + b"\r\n",
    lambda: b"EHLO x\r\nSTARTTLS\r\n\x16\x03\x01\x00\x05garbage",
    lambda: bytes(random.getrandbits(8) for _ in range(3000)),
    lambda: b"NOOP\r\n" * 500 + b"XYZZY\r\n" * 50 + b"QUIT\r\n",
    lambda: b"EHLO x\r\nAUTH PLAIN AGI=\r\nVRFY root\r\nEXPN all\r\nQUIT\r\n",
    lambda: (b"EHLO x\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@sink.test>\r\nDATA\r\n"
             b"Subject: smuggle\r\n\r\nx\n.\nMAIL FROM:<evil@x.test>\r\n.\r\nQUIT\r\n"),
    lambda: b"EHLO x\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@sink.test>\r\nDATA\r\nhalf a message",
]


def hostile_client(port, i):
    try:
        s = connect(port, 1000 + i)
        kind = i % (len(HOSTILE) + 1)
        if kind == len(HOSTILE):
            s.sendall(b"EHLO early.talker\r\n")  # before the greeting
        else:
            s.recv(1024)
            s.sendall(HOSTILE[kind]())
        s.settimeout(3)
        try:
            while s.recv(65536):
                pass
        except OSError:
            pass
        s.close()
    except OSError:
        with LOCK:
            COUNTS["hostile_errors"] += 1
    with LOCK:
        COUNTS["hostile"] += 1


def slow_pool(port):
    i = 0
    running = []
    while not STOP.is_set():
        running = [t for t in running if t.is_alive()]
        while len(running) < SLOW and not STOP.is_set():
            t = threading.Thread(target=slow_client, args=(port, i), daemon=True)
            t.start(); running.append(t); i += 1
        time.sleep(0.2)


def hostile_loop(port):
    i = 0
    while not STOP.is_set():
        hostile_client(port, i)
        i += 1
        time.sleep(0.05)


def main():
    work = tempfile.mkdtemp(prefix="tlsfront-soak.")
    os.chmod(work, 0o755)
    cert, key = f"{work}/cert.pem", f"{work}/key.pem"
    subprocess.run(["openssl", "req", "-x509", "-nodes", "-days", "2", "-subj", "/CN=mx.soak.test",
                    "-addext", "subjectAltName=DNS:mx.soak.test", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-keyout", key, "-out", cert], check=True, capture_output=True)
    sink_port, port, metrics = free_port(), free_port(), free_port()
    sink = subprocess.Popen(["smtp-sink", "-u", "nobody", "-c", f"127.0.0.1:{sink_port}", "2000"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    PROCS.append(sink)
    wait_port(sink_port)
    conf = f"{work}/tlsfront.toml"
    with open(conf, "w") as f:
        f.write(f"[server]\nhostname = \"mx.soak.test\"\nshutdown_grace = \"2s\"\n"
                f"[[listener]]\naddress = [\"127.0.0.1:{port}\"]\n"
                f"[backend]\naddress = \"127.0.0.1:{sink_port}\"\n"
                f"[smtp]\ncommand_timeout = \"60s\"\ndata_timeout = \"20s\"\n"
                f"[tls]\nhandshake_timeout = \"10s\"\n"
                f"[[tls.certificate]]\ncert = \"{cert}\"\nkey = \"{key}\"\n"
                f"[records]\npath = \"{work}/records.jsonl\"\n"
                f"[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n")
    tf = subprocess.Popen([f"{ROOT}/target/release/tlsfront", "run", "--config", conf, "--log", "warn"],
                          stdout=subprocess.DEVNULL, stderr=open(f"{work}/tlsfront.log", "wb"))
    PROCS.append(tf)
    wait_port(port)
    log(f"tlsfront pid {tf.pid} on :{port}; {SECONDS}s, warm-up {WARMUP}s; work {work}")

    common = ["--target", f"127.0.0.1:{port}", "--name", "mx.soak.test", "--sources", "200", "--json"]
    good = subprocess.Popen([loadgen()] + common + ["--tls", "1.3", "--rate", GOOD_RATE,
                                                    "--duration", f"{SECONDS}s", "--messages", "2",
                                                    "--size", "10240"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    PROCS.append(good)
    idle = subprocess.Popen([loadgen()] + common + ["--tls", "1.3", "--idle", str(IDLE), "--hold",
                                                    f"{SECONDS}s", "--trickle", "20s", "--concurrency", "16"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    PROCS.append(idle)
    threads = [threading.Thread(target=slow_pool, args=(port,), daemon=True),
               threading.Thread(target=hostile_loop, args=(port,), daemon=True)]
    for t in threads:
        t.start()

    samples = []  # (seconds since start, RSS KiB, open descriptors)
    t0 = time.monotonic()
    while time.monotonic() - t0 < SECONDS:
        if tf.poll() is not None:
            raise SystemExit(f"FAIL: tlsfront exited with {tf.returncode} during the soak")
        samples.append((time.monotonic() - t0, rss_kib(tf.pid), fds(tf.pid)))
        time.sleep(2)
    STOP.set()
    good_out, good_err = good.communicate(timeout=120)
    idle_out, idle_err = idle.communicate(timeout=120)
    for t in threads:
        t.join(60)

    # Every session ends once the load is gone (idle ones at the command timeout).
    deadline = time.monotonic() + 60
    active = None
    while time.monotonic() < deadline:
        active = metric(metrics, "tlsfront_active_sessions")
        if active == 0:
            break
        time.sleep(1)
    failures = []
    steady = [s for s in samples if s[0] >= WARMUP]
    third = max(1, len(steady) // 3)
    first, last = steady[:third], steady[-third:]
    rss_first = statistics.mean(s[1] for s in first)
    rss_last = statistics.mean(s[1] for s in last)
    fd_first = statistics.mean(s[2] for s in first)
    fd_last = statistics.mean(s[2] for s in last)
    growth = rss_last - rss_first
    allowed = max(0.10 * rss_first, 4096)
    rec = json.loads([l for l in good_out.splitlines() if l.startswith("{")][-1])
    held = json.loads([l for l in idle_out.splitlines() if l.startswith("{")][-1])
    log(f"RSS KiB: start {samples[0][1]}, after warm-up {rss_first:.0f} (first third), "
        f"{rss_last:.0f} (last third), max {max(s[1] for s in steady)}; growth {growth:+.0f} KiB "
        f"(allowed {allowed:.0f})")
    log(f"descriptors: {fd_first:.0f} (first third), {fd_last:.0f} (last third)")
    log(f"good: {rec['sessions_ok']} sessions, {rec['messages_ok']} messages, errors {rec['errors']}; "
        f"held: {held['sessions_ok']} sessions, {held['messages_ok']} messages, errors {held['errors']}; "
        f"slow: {COUNTS['slow']}; hostile: {COUNTS['hostile']}")
    if growth > allowed:
        failures.append(f"RSS grew {growth:.0f} KiB after the warm-up (allowed {allowed:.0f})")
    if fd_last > fd_first * 1.5 + 50:
        failures.append(f"open descriptors grew from {fd_first:.0f} to {fd_last:.0f}")
    if rec["errors"] or rec["messages_ok"] == 0:
        failures.append(f"good sessions failed: {rec['errors']}")
    if held["errors"]:
        failures.append(f"held sessions failed: {held['errors']}")
    if active != 0:
        failures.append(f"{active} sessions still active a minute after the load stopped")
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        greeting = s.recv(1024)
        s.close()
        if not greeting.startswith(b"220 "):
            failures.append(f"no greeting after the soak: {greeting!r}")
    except OSError as e:
        failures.append(f"not serving after the soak: {e}")
    with open(f"{work}/samples.json", "w") as f:
        json.dump(samples, f)
    if failures:
        for f_ in failures:
            log("FAIL: " + f_)
        sys.exit(1)
    log(f"PASS: RSS flat after the warm-up over {SECONDS}s of mixed sessions")


try:
    main()
finally:
    STOP.set()
    for p in PROCS:
        procs.stop(p)
