"""The proxy's stop: SIGTERM while a TLS session sits idle ends the process
cleanly within the shutdown grace and still writes the session's record.
(Every other proxy's stop is checked by Proxy.stop.)"""

import signal
import smtplib
import ssl
import subprocess
import time

from .clients import smtplib_session
from .harness import Fail, check, tail
from .proxy import assert_record


def sigterm_with_idle_session(rig, proxy, backend, bound=45):
    """SIGTERM while a verified TLS session sits idle after EHLO: the proxy
    must exit by itself within its shutdown grace (30 s default) + margin,
    with status 0, end the idle session, and still write its record."""
    helo = "idle-at-shutdown.client.test"
    mark = proxy.records.mark()
    s = smtplib_session(rig, proxy.port, helo)
    try:
        t0 = time.monotonic()
        proxy.proc.send_signal(signal.SIGTERM)
        try:
            rc = proxy.proc.wait(timeout=bound)
        except subprocess.TimeoutExpired:
            proxy.proc.kill()
            proxy.proc.wait(timeout=10)
            proxy.exit_note = "killed"
            raise Fail(f"tlsfront still running {bound}s after SIGTERM with one idle session\n{tail(proxy.log)}")
        took = time.monotonic() - t0
        proxy.exit_note = f"exit status {rc} after {took:.1f}s"
        check(rc == 0, f"tlsfront exited with status {rc} on SIGTERM\n{tail(proxy.log)}")
        # The client's connection must be gone (or answer 421), not hang.
        try:
            code, text = s.noop()
            check(code == 421, f"idle session still answered {code} {text!r} after the proxy exited")
        except (smtplib.SMTPServerDisconnected, ConnectionError, ssl.SSLError, OSError):
            pass
    finally:
        try:
            s.close()
        except Exception:
            pass
    recs = [r for r in proxy.records.since(mark) if r.get("helo") == helo]
    check(len(recs) == 1, f"idle session's record not written on shutdown "
          f"(records since mark: {proxy.records.since(mark)})")
    assert_record(recs[0], tls="established", messages_accepted=0, backend_contacted=False)
    print(f"    (info) exited {took:.1f}s after SIGTERM; idle session record: "
          f"close_reason={recs[0].get('close_reason')!r}", flush=True)

