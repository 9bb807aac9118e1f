"""tlsfront report --legacy-log on the real Postfix backend's own maillog: a
session through tlsfront and two sessions straight to the backend from other
addresses (one plaintext, one with its weak STARTTLS), then the report must
name exactly the two direct peers and not tlsfront's address; and every
record this proxy wrote matches docs/record.schema.json."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
import legacylog  # noqa: E402  (integration/lib, shared with the Sendmail rig)

from .clients import smtplib_deliver  # noqa: E402
from .harness import Fail, uniq  # noqa: E402
from .mail import make_message, wait_delivered  # noqa: E402

PLAIN_SOURCE = "127.0.0.9"
TLS_SOURCE = "127.0.0.10"


def legacy_log_catches_direct_sessions(rig, proxy, backend):
    try:
        since = legacylog.utc_now_floor()
        lp = uniq("legacylog-" + backend["name"])
        rcpt = f"{lp}@tlsfront.test"
        mid, data = make_message(lp, rcpt)
        smtplib_deliver(rig, proxy.port, "via.tlsfront.test", "sender@client.test", rcpt, data)
        wait_delivered(backend, mid)
        legacylog.direct_session(backend["port"], PLAIN_SOURCE)
        legacylog.direct_session(backend["port"], TLS_SOURCE, tls=True)
        legacylog.wait_log(backend["maillog"], f"[{TLS_SOURCE}] ehlo=")
        rep = legacylog.report(rig["proxy_bin"], [proxy.records.path], backend["maillog"],
                               ["127.0.0.1"], since)
        legacylog.check_direct(rep, {PLAIN_SOURCE: "plain", TLS_SOURCE: "tls"}, ["127.0.0.1"],
                               backend["maillog"])
        legacylog.check_schema([proxy.records.path])
    except legacylog.Problem as e:
        raise Fail(str(e))
