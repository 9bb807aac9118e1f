#!/usr/bin/env python3
"""Instructions per session of each part of the benchmark's floor, counted by
valgrind's callgrind (user space only): counts that do not drift with the
machine, where the floor's CPU times do (docs/benchmarks.md, "Instructions
against time").

  python3 integration/instructions.py [TLSFRONT_BINARY] [--sessions 400]

Each server runs under callgrind on loopback, one after the other: tlsfront
(STARTTLS sessions, plaintext ones with STARTTLS's two exchanges, plaintext
ones), the load generator's minimal SMTP responder (STARTTLS, plaintext with
the exchanges) and its bare handshake server (with and without TLS). For each
part: 50 sessions to warm up, the counters zeroed, N sessions at concurrency
4, the counters dumped. Needs valgrind, smtp-sink (what bench.sh installs) and
the profiling build of benches/loadgen.rs. Takes about 5 minutes."""
import argparse, glob, os, resource, shutil, socket, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.argv, argv = [sys.argv[0], ROOT], sys.argv[1:]
import bench  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("binary", nargs="?", default=f"{ROOT}/target/profiling/tlsfront")
ap.add_argument("--sessions", type=int, default=400)
o = ap.parse_args(argv)
if not shutil.which("callgrind_control"):
    sys.exit("instructions.py needs valgrind (apt-get install valgrind)")

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
out = tempfile.mkdtemp(prefix="tlsfront-callgrind.")


def wait_port(port):
    # Programs start slowly under valgrind: up to a minute.
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} under valgrind")


def under_callgrind(name, real):
    """A wrapper that starts `real` under callgrind (bench starts servers by path)."""
    w = f"{out}/{name}.sh"
    with open(w, "w") as f:
        f.write(f"#!/bin/sh\nexec valgrind --tool=callgrind --callgrind-out-file={out}/{name}.%p "
                f"{real} \"$@\"\n")
    os.chmod(w, 0o755)
    return w


def count(b, server, args):
    """User-space instructions per session of `server` under `args`."""
    pid = server.proc.pid
    b.load(server, args + ["--sessions", "50", "--concurrency", "4"])
    subprocess.run(["callgrind_control", "-z", str(pid)], check=True, capture_output=True)
    r = b.load(server, args + ["--sessions", str(o.sessions), "--concurrency", "4"])
    if r.get("sessions_ok") != o.sessions:
        raise RuntimeError(f"{server.name}: {r.get('sessions_ok')} of {o.sessions} sessions ok: {r.get('errors')}")
    before = set(glob.glob(f"{out}/*.{pid}.*"))
    subprocess.run(["callgrind_control", "-d", str(pid)], check=True, capture_output=True)
    for _ in range(100):
        new = set(glob.glob(f"{out}/*.{pid}.*")) - before
        if new:
            break
        time.sleep(0.1)
    (dump,) = new
    time.sleep(0.5)  # written whole
    with open(dump) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1]) / o.sessions
    raise RuntimeError(f"no totals in {dump}")


tls = bench.CLIENT_TLS + ["--size", "10240"]
plain = ["--tls", "none", "--size", "10240"]
steps = plain + ["--starttls-steps"]
b = None
bench.wait_port = wait_port
try:
    b = bench.Bench()
    n = {}
    tf = b.tlsfront(binary=under_callgrind("tlsfront", os.path.abspath(o.binary)))
    for part, args in (("tls", tls), ("steps", steps), ("plain", plain)):
        n[part] = count(b, tf, args)
    bench.stop(tf.proc)
    lg = bench.loadgen()
    for part, extra, loads in (("responder", ["--smtp"], (("r_tls", tls), ("r_steps", steps))),
                               ("bare", [], (("hs", bench.CLIENT_TLS + ["--handshake-only"]),)),
                               ("tcp", ["--plain"], (("tcp", ["--tls", "none", "--handshake-only"]),))):
        port = bench.free_port()
        p = bench.start([under_callgrind(part, lg), "--serve", f"127.0.0.1:{port}"] + extra, bench.SERVER_CPU)
        wait_port(port)
        srv = bench.Server(part, p, port)
        for key, args in loads:
            n[key] = count(b, srv, args)
        bench.stop(p)
finally:
    for p in bench.PROCS:
        bench.stop(p)
    if b:
        shutil.rmtree(b.work, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)

k = {key: v / 1000 for key, v in n.items()}
hs = k["hs"] - k["tcp"]
tf_tls, r_tls = k["tls"] - k["steps"], k["r_tls"] - k["r_steps"]
print(f"Instructions per session (thousands, user space; {o.sessions} sessions each at concurrency 4):\n")
print("| part | k instructions |")
print("|---|---|")
for label, v in (("tlsfront, STARTTLS session", k["tls"]),
                 ("tlsfront, plaintext with STARTTLS's two exchanges", k["steps"]),
                 ("tlsfront, plaintext", k["plain"]),
                 ("minimal SMTP responder, STARTTLS session", k["r_tls"]),
                 ("minimal SMTP responder, plaintext with the exchanges", k["r_steps"]),
                 (f"bare handshake on a socket ({k['hs']:.1f} less {k['tcp']:.1f} without TLS)", hs)):
    print(f"| {label} | {v:.1f} |")
print(f"\nWhat TLS costs tlsfront: {tf_tls:.1f}k; the responder: {r_tls:.1f}k; tlsfront's own TLS work: "
      f"{tf_tls - r_tls:.1f}k, {(tf_tls - r_tls) / k['tls']:.1%} of its STARTTLS session. Overhead beyond the "
      f"plaintext session and the bare handshake: {(k['tls'] - k['plain'] - hs) / k['tls']:.1%} "
      f"(of which STARTTLS's exchanges {(k['steps'] - k['plain']) / k['tls']:.1%}).")
