#!/usr/bin/env python3
"""Two tlsfront builds (or configurations) compared at the same moment: both on
CPU 0, each with its own load generator on CPU 1, CPU ms per session of each
from /proc, round after round. On a machine whose speed drifts (this one's
measured CPU per session moves by a third between runs of one build), separate
runs cannot show a change of a few per cent; two servers measured at once see
the same machine, so their ratio can (two runs of one build: within ±2 %).

  python3 integration/ab.py BINARY_A BINARY_B [--rounds 6] [--concurrency 32]
      [--secs 6] [--plain] [--extra-a TOML] [--extra-b TOML]

BINARY_*: tlsfront executables (e.g. a copy of target/profiling/tlsfront
before a change, and the build after it); --extra-*: TOML appended to that
instance's configuration, to compare settings on one build. Needs what
bench.sh installs (smtp-sink) and the profiling build of benches/loadgen.rs.
Prints each round and the median ratio B/A with its range."""
import argparse, os, resource, shutil, statistics, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.argv, argv = [sys.argv[0], ROOT], sys.argv[1:]
import bench  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("a"), ap.add_argument("b")
ap.add_argument("--rounds", type=int, default=6)
ap.add_argument("--concurrency", default="32")
ap.add_argument("--secs", default="6")
ap.add_argument("--plain", action="store_true", help="plaintext sessions instead of STARTTLS")
ap.add_argument("--extra-a", default="")
ap.add_argument("--extra-b", default="")
o = ap.parse_args(argv)

os.sched_setaffinity(0, {int(bench.CLIENT_CPU)})
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
args = (["--tls", "none"] if o.plain else bench.CLIENT_TLS) + \
    ["--size", "10240", "--concurrency", o.concurrency]
b = None
try:
    b = bench.Bench()
    a_srv = b.tlsfront(binary=os.path.abspath(o.a), extra=o.extra_a.replace("\\n", "\n") + "\n")
    b_srv = b.tlsfront(binary=os.path.abspath(o.b), extra=o.extra_b.replace("\\n", "\n") + "\n")
    b.load_at_once([(a_srv, args + ["--duration", "2s"]), (b_srv, args + ["--duration", "2s"])])  # warm-up
    ratios = []
    for r in range(o.rounds):
        ra, rb = b.load_at_once([(a_srv, args + ["--duration", f"{o.secs}s"]),
                                 (b_srv, args + ["--duration", f"{o.secs}s"])])
        ratios.append(rb["cpu_ms"] / ra["cpu_ms"])
        print(f"round {r}: A {ra['cpu_ms']:.3f} ms ({ra['sessions_ok']} sessions), "
              f"B {rb['cpu_ms']:.3f} ms ({rb['sessions_ok']} sessions): B/A {ratios[-1]:.3f}", flush=True)
    print(f"CPU per session, B/A: median {statistics.median(ratios):.3f}, "
          f"range {min(ratios):.3f}-{max(ratios):.3f} over {len(ratios)} rounds")
finally:
    for p in bench.PROCS:
        bench.stop(p)
    if b:
        shutil.rmtree(b.work, ignore_errors=True)
