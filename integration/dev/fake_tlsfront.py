#!/usr/bin/env python3
"""DEVELOPMENT STAND-IN for `tlsfront run`, used only to develop the rig
while the Rust proxy did not exist yet (TLSFRONT_IT_PROXY_BIN=.../fake_tlsfront.py).
It is never used by run.sh by default and proves nothing about tlsfront.

Accepts the same flags as `tlsfront run`, terminates STARTTLS / implicit TLS
with Python's ssl module, relays the SMTP dialogue in plaintext to the backend
(contacted on MAIL FROM only) and writes one JSON record per connection.
kx_group is a placeholder: Python's ssl module cannot report it.
"""
import argparse
import asyncio
import json
import ssl
import time


def parse():
    p = argparse.ArgumentParser()
    p.add_argument("cmd")
    p.add_argument("--listen", required=True)
    p.add_argument("--implicit-listen")
    p.add_argument("--backend", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--hostname", required=True)
    p.add_argument("--records", required=True)
    return p.parse_args()


def split(hp):
    h, p = hp.rsplit(":", 1)
    return h, int(p)


async def reply(reader):
    lines = []
    while True:
        l = await asyncio.wait_for(reader.readline(), 30)
        if not l:
            raise ConnectionError("backend closed")
        lines.append(l)
        if l[3:4] != b"-":
            return b"".join(lines)


async def session(args, ctx, reader, writer, implicit):
    peer = writer.get_extra_info("peername")
    rec = {"ts": time.time(), "mode": "implicit" if implicit else "starttls",
           "client_ip": peer[0], "client_port": peer[1], "tls": "none",
           "starttls_used": False, "messages_accepted": 0, "backend_contacted": False,
           "helo": None, "sni": None, "failure_reason": None}
    sni = {}

    def sni_cb(sslobj, name, c):
        sni["name"] = name

    if not implicit:
        ctx.sni_callback = sni_cb  # (shared context: fine for a serial test rig)
    br = bw = None

    def tls_info():
        so = writer.get_extra_info("ssl_object")
        rec.update(tls="established", tls_version=so.version(), cipher_suite=so.cipher()[0],
                   kx_group="X25519", sni=sni.get("name"))

    try:
        if implicit:
            sni["name"] = getattr(ctx, "_last_sni", None)
            tls_info()
        writer.write(f"220 {args.hostname} ESMTP fake\r\n".encode())
        await writer.drain()
        while True:
            line = await asyncio.wait_for(reader.readline(), 60)
            if not line:
                break
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                rec["helo"] = line[5:].strip().decode()
                caps = [args.hostname, "SIZE 20000000", "8BITMIME", "ENHANCEDSTATUSCODES"]
                if rec["tls"] != "established":
                    caps.append("STARTTLS")
                writer.write(("".join(f"250-{c}\r\n" for c in caps[:-1]) + f"250 {caps[-1]}\r\n").encode())
            elif line.upper().startswith(b"STARTTLS"):
                writer.write(b"220 2.0.0 go ahead\r\n")
                await writer.drain()
                rec["starttls_used"] = True
                try:
                    await writer.start_tls(ctx)
                except Exception as e:
                    rec.update(tls="failed", failure_reason=str(e))
                    break
                tls_info()
                continue
            elif verb in (b"MAIL", b"RCPT", b"DATA", b"RSET"):
                if br is None:
                    br, bw = await asyncio.open_connection(*split(args.backend))
                    rec["backend_contacted"] = True
                    await reply(br)
                    bw.write(f"EHLO {args.hostname}\r\n".encode())
                    await reply(br)
                bw.write(line)
                r = await reply(br)
                writer.write(r)
                if verb == b"DATA" and r.startswith(b"354"):
                    await writer.drain()
                    while True:
                        l = await asyncio.wait_for(reader.readline(), 60)
                        bw.write(l)
                        if l == b".\r\n" or not l:
                            break
                    r = await reply(br)
                    writer.write(r)
                    if r.startswith(b"250"):
                        rec["messages_accepted"] += 1
            elif verb == b"QUIT":
                if bw:
                    bw.write(b"QUIT\r\n")
                    await reply(br)
                writer.write(b"221 2.0.0 bye\r\n")
                await writer.drain()
                break
            else:
                writer.write(b"250 2.0.0 ok\r\n")
            await writer.drain()
    except Exception as e:
        rec.setdefault("close_reason", str(e))
    finally:
        for w in (writer, bw):
            if w:
                w.close()
        with open(args.records, "a") as f:
            f.write(json.dumps(rec) + "\n")


async def main():
    args = parse()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(args.cert, args.key)
    ictx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ictx.load_cert_chain(args.cert, args.key)
    s1 = await asyncio.start_server(lambda r, w: session(args, ctx, r, w, False), *split(args.listen))
    # Implicit TLS: the handshake happens before session() runs, so SNI is
    # captured by a context-level callback stored on the context object.
    ictx.sni_callback = lambda so, name, c: setattr(ictx, "_last_sni", name)
    servers = [s1]
    if args.implicit_listen:
        servers.append(await asyncio.start_server(lambda r, w: session(args, ictx, r, w, True),
                                                  *split(args.implicit_listen), ssl=ictx))
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    import signal
    import sys
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # like tlsfront: exit 0
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
