#!/usr/bin/env python3
"""Private syslog sink for the Sendmail rig.

Binds a unix datagram socket (glibc's syslog(3) talks to /dev/log with
SOCK_DGRAM; run.sh bind-mounts this socket onto /dev/log inside Sendmail's
private mount namespace) and appends every message as one line to a log
file, flushed at once so the scenarios can grep it.

    syslog_sink.py SOCKET LOGFILE [MAX_SECONDS]

Stops by itself after MAX_SECONDS (default 1200) so a forgotten sink never
outlives the rig; run.sh stops it by PID on exit anyway.
"""
import os
import re
import signal
import socket
import sys
import time


def main():
    sock_path, log_path = sys.argv[1], sys.argv[2]
    max_seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 1200.0
    try:
        os.unlink(sock_path)
    except FileNotFoundError:
        pass
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(sock_path)
    os.chmod(sock_path, 0o666)  # mailers may log after dropping privileges
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    deadline = time.monotonic() + max_seconds
    # "<PRI>Mmm dd hh:mm:ss tag[pid]: msg" -> keep the facility/severity readable
    pri_re = re.compile(rb"^<(\d{1,3})>")
    with open(log_path, "ab", buffering=0) as out:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            s.settimeout(min(left, 5.0))
            try:
                data = s.recv(65536)
            except socket.timeout:
                continue
            m = pri_re.match(data)
            prefix = b""
            if m:
                pri = int(m.group(1))
                prefix = b"[fac=%d sev=%d] " % (pri >> 3, pri & 7)
                data = data[m.end():]
            out.write(prefix + data.rstrip(b"\0\r\n") + b"\n")


if __name__ == "__main__":
    main()
