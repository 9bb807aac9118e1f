#!/usr/bin/env python3
"""Checks a screenshot of the HTML report: not blank, and the charts' colours
are there in some quantity (the per-day bars' green, the failures' red, the
TLS share line's and the version bars' blue, the plaintext amber).

    check_png.py SHOT.png

A PNG decoder in the standard library's terms (zlib, the five row filters),
for 8-bit RGB or RGBA without interlacing: what Chromium writes."""

import struct
import sys
import zlib

# Colours of src/tools/report/html.rs, and the fewest pixels each must cover.
COLOURS = {
    "green (TLS)": ((0x2E, 0x7D, 0x32), 2000),
    "red (failures)": ((0xC6, 0x28, 0x28), 300),
    "blue (versions, TLS share)": ((0x15, 0x65, 0xC0), 2000),
    "amber (plaintext)": ((0xF9, 0xA8, 0x25), 300),
}


def decode(path):
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        sys.exit(f"{path}: not a PNG")
    pos, idat, header = 8, [], None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        pos += 12 + length
    width, height, depth, ctype, _, _, interlace = header
    if depth != 8 or ctype not in (2, 6) or interlace:
        sys.exit(f"{path}: unsupported PNG (depth {depth}, colour type {ctype}, interlace {interlace})")
    bpp = 3 if ctype == 2 else 4
    raw = zlib.decompress(b"".join(idat))
    stride = width * bpp
    rows, prev = [], bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if f == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif f == 2:
            for i in range(stride):
                line[i] = (line[i] + prev[i]) & 0xFF
        elif f == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif f == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b = prev[i]
                c = prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, height, bpp, rows


def main():
    width, height, bpp, rows = decode(sys.argv[1])
    counts = {name: 0 for name in COLOURS}
    non_white = 0
    for row in rows:
        for x in range(0, len(row), bpp):
            px = row[x:x + 3]
            if px != b"\xff\xff\xff":
                non_white += 1
            for name, (rgb, _) in COLOURS.items():
                if all(abs(px[k] - rgb[k]) <= 3 for k in range(3)):
                    counts[name] += 1
    total = width * height
    print(f"  screenshot {width}x{height}: {100 * non_white / total:.1f}% not white; "
          + ", ".join(f"{n} {c} px" for n, c in counts.items()))
    problems = [f"{n}: {counts[n]} px < {least}" for n, (_, least) in COLOURS.items()
                if counts[n] < least]
    if non_white < total // 50:
        problems.append("the page is (almost) blank")
    if problems:
        sys.exit("; ".join(problems))


if __name__ == "__main__":
    main()
