"""What both rigs (Postfix in realpeers/, Sendmail in sendmail/) check of
`tlsfront report --legacy-log` and of the records: plain sessions made from a
chosen source address, the report run on the rig's own MTA log, and the
record files checked against docs/record.schema.json.

Python stdlib only (the schema check runs Debian's python3-jsonschema, which
the rigs install). Every call has a timeout."""

import datetime
import json
import os
import smtplib
import ssl
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCHEMA = os.path.join(ROOT, "docs", "record.schema.json")
TIMEOUT = 30


class Problem(Exception):
    """A failed expectation; each rig turns it into its own failure."""


def expect(cond, msg):
    if not cond:
        raise Problem(msg)


def utc_now_floor():
    """Now, UTC, cut to the second: MTA logs have seconds only."""
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def direct_session(port, source, tls=False, helo="direct.client.test"):
    """An SMTP session straight to the MTA on 127.0.0.1:port from `source`
    (a loopback address other than tlsfront's): EHLO, STARTTLS if `tls`
    (accepting the legacy MTA's weak certificate, as old senders do), QUIT."""
    with smtplib.SMTP("127.0.0.1", port, local_hostname=helo, timeout=TIMEOUT,
                      source_address=(source, 0)) as s:
        s.ehlo()
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            ctx.set_ciphers("DEFAULT@SECLEVEL=0")
            s.starttls(context=ctx)
            s.ehlo()
        s.noop()


def wait_log(path, needle, timeout=20):
    """Waits (bounded) until the log at `path` holds `needle`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(path, errors="replace") as f:
                if needle in f.read():
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise Problem(f"{needle!r} not in {path} after {timeout}s")


def report(proxy_bin, records, log, sources, since):
    """`tlsfront report --json` over the records with the MTA's log."""
    cmd = [proxy_bin, "report", "--json", "--since", since, "--legacy-log", log]
    for s in sources:
        cmd += ["--tlsfront-source", s]
    cmd += records
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    expect(p.returncode == 0, f"{' '.join(cmd)} exited {p.returncode}: {p.stderr.decode()}")
    return json.loads(p.stdout)


def check_direct(rep, direct, via, log):
    """The report names exactly the `direct` peers ({ip: "tls"|"plain"}) as
    direct sessions, none of tlsfront's (`via`), and says NO."""
    legacy = rep.get("legacy_log") or {}
    peers = {p["ip"]: p for p in legacy.get("direct_peers", [])}
    context = f"\nlegacy_log: {json.dumps(legacy)}\nlog tail:\n{tail(log)}"
    expect(set(peers) == set(direct), f"direct peers {sorted(peers)}, want {sorted(direct)}{context}")
    for ip, kind in direct.items():
        p = peers[ip]
        want = (1, 0) if kind == "tls" else (0, 1)
        expect((p["tls"], p["plaintext"]) == want,
               f"{ip}: tls={p['tls']} plaintext={p['plaintext']}, want a {kind} session{context}")
    expect(not any(ip in peers for ip in via), f"tlsfront's source {via} listed as direct{context}")
    expect(legacy.get("via_tlsfront", 0) >= 1, f"no session through tlsfront seen{context}")
    expect(rep["verdict"] == "no", f"verdict {rep['verdict']}, want no{context}")
    reasons = {e["reason"] for e in rep["exceptions"] if e["tls"] == "legacy_log"}
    want = {"direct_tls" if k == "tls" else "direct_plaintext" for k in direct.values()}
    expect(reasons == want, f"legacy-log exceptions {reasons}, want {want}")


def tail(path, n=12):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError as e:
        return f"({path}: {e})"


def check_schema(paths):
    """Every record of the record files at `paths` against the schema, with
    Debian's python3 and its jsonschema (Draft 2020-12). Returns the count."""
    script = (
        "import json, sys, jsonschema\n"
        "schema = json.load(open(sys.argv[1]))\n"
        "v = jsonschema.Draft202012Validator(schema)\n"
        "n = 0\n"
        "for path in sys.argv[2:]:\n"
        "    for i, line in enumerate(open(path), 1):\n"
        "        if not line.strip(): continue\n"
        "        errs = sorted(v.iter_errors(json.loads(line)), key=str)\n"
        "        if errs:\n"
        "            print(f'{path}:{i}: {errs[0].message}'); sys.exit(1)\n"
        "        n += 1\n"
        "print(n)\n"
    )
    p = subprocess.run(["/usr/bin/python3", "-c", script, SCHEMA, *paths],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    out = p.stdout.decode(errors="replace").strip()
    expect(p.returncode == 0, f"records do not match docs/record.schema.json: {out}")
    return int(out.splitlines()[-1])
