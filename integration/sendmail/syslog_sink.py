#!/usr/bin/env python3
"""Private syslog sink for the Sendmail rig.

Binds a unix datagram socket (glibc's syslog(3) talks to /dev/log with
SOCK_DGRAM; run.sh bind-mounts this socket onto /dev/log inside Sendmail's
private mount namespace) and appends every message as one line to a log
file, flushed at once so the scenarios can grep it. Lines are written as
rsyslog writes /var/log/maillog ("Mmm dd hh:mm:ss HOST tag[pid]: msg"), so
`tlsfront report --legacy-log` reads the rig's log as it would a real one.

    syslog_sink.py SOCKET LOGFILE [MAX_SECONDS] [HOSTNAME]

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
    host = (sys.argv[4] if len(sys.argv) > 4 else "legacy").encode()
    try:
        os.unlink(sock_path)
    except FileNotFoundError:
        pass
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(sock_path)
    os.chmod(sock_path, 0o666)  # mailers may log after dropping privileges
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    deadline = time.monotonic() + max_seconds
    # "<PRI>Mmm dd hh:mm:ss tag[pid]: msg" -> "Mmm dd hh:mm:ss HOST tag[pid]: msg"
    pri_re = re.compile(rb"^<(\d{1,3})>")
    stamp_re = re.compile(rb"^[A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d ")
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
            if m:
                data = data[m.end():]
            if stamp_re.match(data):
                data = data[:16] + host + b" " + data[16:]
            out.write(data.rstrip(b"\0\r\n") + b"\n")


if __name__ == "__main__":
    main()
