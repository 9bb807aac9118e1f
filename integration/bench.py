#!/usr/bin/env python3
"""Runs the benchmark (see bench.sh): every server on CPU 0, the load
generator on CPU 1, each figure repeated, ratios measured in this one run.
Every process started here is stopped by PID."""

import glob, json, os, signal, socket, statistics, subprocess, sys, tempfile, textwrap, threading, time
from http.server import BaseHTTPRequestHandler, HTTPServer

ROOT = sys.argv[1]
QUICK = os.environ.get("BENCH_QUICK") == "1"
REPEAT = 1 if QUICK else 3
PROCS = []


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def start(cmd, cpu, **kw):
    p = subprocess.Popen(["taskset", "-c", str(cpu)] + cmd, stdout=subprocess.DEVNULL,
                         stderr=kw.pop("stderr", subprocess.DEVNULL), **kw)
    PROCS.append(p)
    return p


def wait_port(port, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close(); return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"port {port} never answered")


def loadgen():
    cands = [p for p in glob.glob(f"{ROOT}/target/profiling/deps/loadgen-*") if not p.endswith(".d")]
    return max(cands, key=os.path.getmtime)


def run_load(args, timeout=600):
    out = subprocess.run(["taskset", "-c", "1", loadgen(), "--json"] + args, capture_output=True,
                         text=True, timeout=timeout)
    line = [l for l in out.stdout.splitlines() if l.startswith("{")]
    if not line:
        raise SystemExit(f"loadgen failed: {out.stdout}\n{out.stderr}")
    r = json.loads(line[-1])
    if r.get("errors"):
        print(f"  errors: {r['errors']}", flush=True)
    return r


def rss_kib(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for l in f:
                    if l.startswith("VmRSS:"):
                        total += int(l.split()[1])
        except OSError:
            pass
    return total


def cpu_s(pids):
    """User+system CPU seconds used so far by these processes (all threads)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / os.sysconf("SC_CLK_TCK")


def children(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


class Auth(BaseHTTPRequestHandler):
    """nginx's auth_http: every session may pass, to the sink."""
    sink = 0
    def do_GET(self):
        self.send_response(200)
        self.send_header("Auth-Status", "OK")
        self.send_header("Auth-Server", "127.0.0.1")
        self.send_header("Auth-Port", str(self.sink))
        self.end_headers()
    def log_message(self, *a):
        pass


def med(xs):
    return statistics.median(xs), (max(xs) - min(xs)) / 2 if len(xs) > 1 else 0.0


def main():
    work = tempfile.mkdtemp(prefix="tlsfront-bench.")
    os.chmod(work, 0o755)
    pki = {}
    for kind, args in (("ecdsa", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]),
                       ("rsa", ["-newkey", "rsa:2048"])):
        cert, key = f"{work}/{kind}.pem", f"{work}/{kind}.key"
        subprocess.run(["openssl", "req", "-x509", "-nodes", "-days", "2", "-subj", "/CN=mx.bench.test",
                        "-addext", "subjectAltName=DNS:mx.bench.test", "-keyout", key, "-out", cert] + args,
                       check=True, capture_output=True)
        os.chmod(key, 0o644)
        pki[kind] = (cert, key)
    sink = free_port()
    sink_proc = start(["smtp-sink", "-u", "nobody", "-c", f"127.0.0.1:{sink}", "5000"], 0)
    wait_port(sink)
    Auth.sink = sink
    auth_port = free_port()
    httpd = HTTPServer(("127.0.0.1", auth_port), Auth)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()

    def tlsfront(kind):
        port = free_port()
        # Every bench client comes from 127.0.0.1: lift the per-client cap.
        conf = f"{work}/tlsfront-{kind}.toml"
        with open(conf, "w") as f:
            f.write(f"[server]\nhostname = \"mx.bench.test\"\nmax_connections = 30000\n"
                    f"max_connections_per_client = 30000\n[[listener]]\naddress = [\"127.0.0.1:{port}\"]\n"
                    f"[backend]\naddress = \"127.0.0.1:{sink}\"\n"
                    f"[[tls.certificate]]\ncert = \"{pki[kind][0]}\"\nkey = \"{pki[kind][1]}\"\n")
        p = start([f"{ROOT}/target/profiling/tlsfront", "run", "--config", conf, "--log", "warn"], 0)
        wait_port(port)
        return p, port

    def nginx(kind):
        port = free_port()
        conf = f"{work}/nginx-{kind}.conf"
        with open(conf, "w") as f:
            f.write(textwrap.dedent(f"""\
                load_module /usr/lib/nginx/modules/ngx_mail_module.so;
                worker_processes 1;
                worker_cpu_affinity 01;
                worker_rlimit_nofile 30000;
                daemon off;
                pid {work}/nginx-{kind}.pid;
                error_log {work}/nginx-{kind}.log warn;
                events {{ worker_connections 25000; }}
                mail {{
                    server_name mx.bench.test;
                    auth_http 127.0.0.1:{auth_port}/auth;
                    proxy_pass_error_message on;
                    xclient off;
                    ssl_certificate {pki[kind][0]};
                    ssl_certificate_key {pki[kind][1]};
                    ssl_protocols TLSv1.3 TLSv1.2;
                    server {{ listen 127.0.0.1:{port}; protocol smtp; smtp_auth none; starttls on; }}
                }}
                """))
        p = start(["nginx", "-c", conf, "-e", f"{work}/nginx-{kind}.err"], 0)
        wait_port(port)
        return p, port

    sessions = 300 if QUICK else 2000
    results = {}
    def measure(label, port, extra, proc=None):
        """Runs the load REPEAT times; with `proc`, also the CPU time that
        server (and the sink) spent per session, from /proc."""
        runs = []
        for _ in range(REPEAT):
            pids = ([proc.pid] + children(proc.pid)) if proc else []
            before, sink_before = cpu_s(pids), cpu_s([sink_proc.pid])
            r = run_load(["--target", f"127.0.0.1:{port}", "--name", "mx.bench.test"] + extra)
            n = max(r.get("sessions_ok", 0), 1)
            r["cpu_ms_per_session"] = (cpu_s(pids) - before) * 1000 / n
            r["sink_cpu_ms_per_session"] = (cpu_s([sink_proc.pid]) - sink_before) * 1000 / n
            runs.append(r)
        results[label] = runs
        return runs

    def ceiling(extra):
        runs = [json.loads(subprocess.run(["taskset", "-c", "0", loadgen(), "--ceiling", "5"] + extra,
                                          capture_output=True, text=True).stdout) for _ in range(REPEAT)]
        return runs

    tf, tf_port = tlsfront("ecdsa")
    ng, ng_port = nginx("ecdsa")
    a_args = ["--tls", "1.3", "--concurrency", "8", "--sessions", str(sessions), "--size", "10240"]
    print("A: handshake-heavy (STARTTLS, TLS 1.3, ECDSA P-256, one 10 KB message per session)", flush=True)
    measure("A tlsfront", tf_port, a_args, tf)
    measure("A nginx", ng_port, a_args, ng)
    ceil = ceiling([])
    # The same session without TLS: what the SMTP relay itself costs.
    measure("A plain tlsfront", tf_port, [a for a in a_args if a not in ("--tls", "1.3")] + ["--tls", "none"], tf)
    print("A': the same with TLS session resumption (senders with a session cache)", flush=True)
    measure("A' tlsfront", tf_port, a_args + ["--resume"], tf)
    measure("A' nginx", ng_port, a_args + ["--resume"], ng)
    ceil_resume = ceiling(["--resume"])
    print("B: message-heavy (1 MB messages over long sessions)", flush=True)
    b_args = ["--concurrency", "4", "--sessions", "8" if QUICK else "20", "--messages", "5", "--size", str(1 << 20)]
    measure("B tlsfront", tf_port, b_args + ["--tls", "1.3"])
    measure("B nginx", ng_port, b_args + ["--tls", "1.3"])
    measure("B direct", sink, b_args + ["--tls", "none"])
    print("D: per-command latency, concurrency 1", flush=True)
    d_args = ["--concurrency", "1", "--sessions", "200" if QUICK else "1000", "--size", "1024"]
    measure("D tlsfront", tf_port, d_args + ["--tls", "none"])
    measure("D direct", sink, d_args + ["--tls", "none"])
    measure("D tlsfront tls", tf_port, d_args + ["--tls", "1.3"])
    print("C: memory per idle TLS session", flush=True)
    mem = {}
    for n in ([1000] if QUICK else [1000, 10000]):
        for label, proc, port in (("tlsfront", tf, tf_port), ("nginx", ng, ng_port)):
            pids = [proc.pid] + children(proc.pid)
            before = rss_kib(pids)
            holder = subprocess.Popen(["taskset", "-c", "1", loadgen(), "--target", f"127.0.0.1:{port}",
                                       "--name", "mx.bench.test", "--tls", "1.3", "--idle", str(n), "--hold",
                                       "8s", "--concurrency", "64"], stdout=subprocess.PIPE, text=True)
            PROCS.append(holder)
            line = holder.stdout.readline()  # "holding N idle sessions"
            held = int(line.split()[1]) if line.startswith("holding") else 0
            time.sleep(2)
            after = rss_kib(pids)
            holder.wait(timeout=120)
            mem[(label, n)] = ((after - before) / max(held, 1), held)
    for p in (tf, ng):
        p.terminate(); p.wait(timeout=30)
    tf_rsa, tf_rsa_port = tlsfront("rsa")
    ng_rsa, ng_rsa_port = nginx("rsa")
    print("E: A with an RSA-2048 certificate", flush=True)
    measure("E tlsfront", tf_rsa_port, a_args, tf_rsa)
    measure("E nginx", ng_rsa_port, a_args, ng_rsa)
    ceil_rsa = ceiling(["--rsa"])

    def m(label, key="sessions_per_s"):
        return med([r[key] for r in results[label]])

    def lat(label, cmd, p):
        return med([r["latency"].get(cmd, {}).get(p, float("nan")) for r in results[label]])

    rows = []

    def handshake_rows(tag, title, ceil_runs):
        tf_, ng_ = m(f"{tag} tlsfront"), m(f"{tag} nginx")
        c = med([r["handshakes_per_s"] for r in ceil_runs])[0]
        pairs = med([r["pairs_per_s"] for r in ceil_runs])[0]
        rows.append((f"{title} sessions/s", f"{tf_[0]:.0f} ± {tf_[1]:.0f}", f"{ng_[0]:.0f}",
                     f"{tf_[0] / ng_[0]:.2f}× nginx (target ≥ 2.0); {tf_[0] / c:.2f}× ceiling "
                     f"{c:.0f} server handshakes/s (target ≥ 0.6); client+server pairs on one core: "
                     f"{pairs:.0f}/s"))
        cpu_tf, cpu_ng = m(f"{tag} tlsfront", "cpu_ms_per_session")[0], m(f"{tag} nginx", "cpu_ms_per_session")[0]
        sink_tf = m(f"{tag} tlsfront", "sink_cpu_ms_per_session")[0]
        rows.append((f"{title} CPU ms per session (server; sink)", f"{cpu_tf:.3f}; {sink_tf:.3f}",
                     f"{cpu_ng:.3f}", f"the ceiling's server handshake: {1000 / c:.3f} ms "
                     f"({1000 / c / cpu_tf:.2f} of tlsfront's CPU per session)"))

    handshake_rows("A", "A (TLS 1.3, ECDSA, full handshakes)", ceil)
    plain_cpu = m("A plain tlsfront", "cpu_ms_per_session")[0]
    tls_cpu = m("A tlsfront", "cpu_ms_per_session")[0]
    hs = 1000 / med([r["handshakes_per_s"] for r in ceil])[0]
    rows.append(("A where tlsfront's CPU per session goes", f"{tls_cpu:.3f} ms", "–",
                 f"the same SMTP session in plaintext through tlsfront: {plain_cpu:.3f} ms "
                 f"({m('A plain tlsfront')[0]:.0f} sessions/s); STARTTLS + TLS add {tls_cpu - plain_cpu:.3f} ms, "
                 f"of which the bare rustls server handshake is {hs:.3f} ms"))
    handshake_rows("A'", "A' (TLS 1.3, ECDSA, resumed)", ceil_resume)
    b_tf, b_ng, b_d = m("B tlsfront", "mb_per_s")[0], m("B nginx", "mb_per_s")[0], m("B direct", "mb_per_s")[0]
    rows.append(("B MB/s (1 MB messages)", f"{b_tf:.1f}", f"{b_ng:.1f}",
                 f"{b_tf / b_d:.2f}× direct {b_d:.1f} MB/s (target ≥ 0.8); {b_tf / b_ng:.2f}× nginx"))
    for n in sorted({k[1] for k in mem}):
        t, g = mem[("tlsfront", n)][0], mem[("nginx", n)][0]
        rows.append((f"C KiB per idle TLS session ({mem[('tlsfront', n)][1]} held)", f"{t:.1f}", f"{g:.1f}",
                     f"target ≤ 40 and below nginx"))
    for cmd in ("MAIL", "RCPT", "DATA", "end-of-data"):
        t50, t99 = lat("D tlsfront", cmd, "p50_ms")[0], lat("D tlsfront", cmd, "p99_ms")[0]
        d50, d99 = lat("D direct", cmd, "p50_ms")[0], lat("D direct", cmd, "p99_ms")[0]
        rows.append((f"D {cmd} latency ms p50/p99", f"{t50:.3f}/{t99:.3f}", "–",
                     f"added p50 {t50 - d50:+.3f} p99 {t99 - d99:+.3f} ms vs direct (target p99 added ≤ 0.2)"))
    sess_ms = {k: 1000 / m(k)[0] for k in ("D tlsfront tls", "D tlsfront", "D direct")}
    rows.append(("D whole session ms, concurrency 1 (STARTTLS + TLS 1.3 through tlsfront; plaintext "
                 "through tlsfront)", f"{sess_ms['D tlsfront tls']:.2f}; {sess_ms['D tlsfront']:.2f}", "–",
                 f"{sess_ms['D tlsfront tls'] - sess_ms['D direct']:+.2f} ms vs plaintext straight to the "
                 f"sink ({sess_ms['D direct']:.2f} ms; target: within a few ms)"))
    handshake_rows("E", "E (TLS 1.3, RSA-2048, full handshakes)", ceil_rsa)
    print(f"\n## Benchmark ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, "
          f"{REPEAT} repeat(s), medians ± half-range)\n")
    print("| figure | tlsfront | nginx | ratio |")
    print("|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


try:
    main()
finally:
    for p in PROCS:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
