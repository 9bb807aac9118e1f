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
    cands = [p for p in glob.glob(f"{ROOT}/target/release/deps/loadgen-*") if not p.endswith(".d")]
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
    start(["smtp-sink", "-u", "nobody", "-c", f"127.0.0.1:{sink}", "5000"], 0)
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
        p = start([f"{ROOT}/target/release/tlsfront", "run", "--config", conf, "--log", "warn"], 0)
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
    def measure(label, port, extra):
        runs = [run_load(["--target", f"127.0.0.1:{port}", "--name", "mx.bench.test"] + extra)
                for _ in range(REPEAT)]
        results[label] = runs
        return runs

    tf, tf_port = tlsfront("ecdsa")
    ng, ng_port = nginx("ecdsa")
    a_args = ["--tls", "1.3", "--concurrency", "8", "--sessions", str(sessions), "--size", "10240"]
    print("A: handshake-heavy (STARTTLS, TLS 1.3, ECDSA P-256, one 10 KB message per session)", flush=True)
    measure("A tlsfront", tf_port, a_args)
    measure("A nginx", ng_port, a_args)
    ceil = [json.loads(subprocess.run(["taskset", "-c", "0", loadgen(), "--ceiling", "5"], capture_output=True,
                                      text=True).stdout)["handshakes_per_s"] for _ in range(REPEAT)]
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
    measure("E tlsfront", tf_rsa_port, a_args)
    measure("E nginx", ng_rsa_port, a_args)
    ceil_rsa = [json.loads(subprocess.run(["taskset", "-c", "0", loadgen(), "--ceiling", "5", "--rsa"],
                                          capture_output=True, text=True).stdout)["handshakes_per_s"]
                for _ in range(REPEAT)]

    def m(label, key="sessions_per_s"):
        return med([r[key] for r in results[label]])

    def lat(label, cmd, p):
        return med([r["latency"].get(cmd, {}).get(p, float("nan")) for r in results[label]])

    rows = []
    a_tf, a_ng, c = m("A tlsfront")[0], m("A nginx")[0], med(ceil)[0]
    rows.append(("A sessions/s (TLS 1.3, ECDSA)", f"{a_tf:.0f} ± {m('A tlsfront')[1]:.0f}", f"{a_ng:.0f}",
                 f"{a_tf / a_ng:.2f}× nginx (target ≥ 2.0); {a_tf / c:.2f}× ceiling {c:.0f}/s (target ≥ 0.6)"))
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
    e_tf, e_ng, cr = m("E tlsfront")[0], m("E nginx")[0], med(ceil_rsa)[0]
    rows.append(("E sessions/s (TLS 1.3, RSA-2048)", f"{e_tf:.0f}", f"{e_ng:.0f}",
                 f"{e_tf / e_ng:.2f}× nginx; {e_tf / cr:.2f}× ceiling {cr:.0f}/s"))
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
