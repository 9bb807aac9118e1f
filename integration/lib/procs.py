"""Process and port helpers shared by the standalone rigs (bench.py,
soak.py): a free loopback port, waiting (bounded) for a port to answer, the
load generator built under a cargo profile, a process group's RSS, stopping
every process a rig started."""

import glob, os, signal, socket, subprocess, time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=30):
    """Returns once 127.0.0.1:port accepts a connection; exits after `timeout` s."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"port {port} never answered")


def loadgen(root, profile):
    """The newest load generator binary of `cargo build --profile PROFILE --bench loadgen`."""
    cands = [p for p in glob.glob(f"{root}/target/{profile}/deps/loadgen-*") if not p.endswith(".d")]
    if not cands:
        raise SystemExit(f"no load generator under {root}/target/{profile}: build it first: cargo build --profile {profile} --bench loadgen")
    return max(cands, key=os.path.getmtime)


def rss_kib(pids):
    """Resident memory of these processes together, KiB (a gone process counts 0)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def stop(p, timeout=10):
    """SIGTERM, then SIGKILL after `timeout` s, for one process still running."""
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)
