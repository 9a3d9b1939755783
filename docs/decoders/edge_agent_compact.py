#!/usr/bin/env python3
"""
Decoder of edge-agent's compact telemetry payload (v2), for a data team: one file, the Python
standard library only (zlib, struct, json). The format is in docs/mqtt-contract.md, "Compact
payload (v2)"; the TypeScript reference is src/uplink/compact.ts; both are tested against the
same golden messages (test/fixtures/compact-golden.json).

    from edge_agent_compact import decode, DecodeError
    msg = decode(payload, dictionaries)          # payload: bytes from <prefix>/telemetry
    # msg = {"v": 2, "gw": "gw-001", "seq": [first, last], "dictionary": 3,
    #        "r": [[point, ts_ms, value], [point, ts_ms, value, "bad"|"uncertain"], ...]}

`dictionaries(version)` returns {id: point} of that dictionary version or a later one (ids are
never reused, so the newest you have works for every older message), or None when you have none
that recent yet — decode then raises DecodeError saying which version it needs. A v1 (JSON)
payload is recognised too: decode() returns json.loads of it. Values: float/int, bool, str, None;
NaN and ±Infinity are Python floats (the v2 format carries them; v1 JSON cannot).

Command line: python3 edge_agent_compact.py --golden test/fixtures/compact-golden.json
prints each golden message decoded as JSON (what the repository's tests compare).
"""
import json
import struct
import zlib

MAGIC = 0xC5
VERSION = 2
MAX_READINGS = 100_000
INFLATED_MAX = 16 * 1024 * 1024
SCALED_MAX = 2 ** 50
QUALITY = ("good", "uncertain", "bad")
K_NUMBER, K_NULL, K_FALSE, K_TRUE, K_TEXT = 0, 1, 2, 3, 4


class DecodeError(ValueError):
    """A payload that cannot be read as it is: the message says why."""


class _Reader:
    def __init__(self, data):
        self.data = data
        self.at = 0

    def byte(self):
        if self.at >= len(self.data):
            raise DecodeError("ends early")
        b = self.data[self.at]
        self.at += 1
        return b

    def uvarint(self):
        v, shift = 0, 0
        for _ in range(8):
            b = self.byte()
            v |= (b & 0x7F) << shift
            if b < 0x80:
                if v > 2 ** 53 - 1:
                    raise DecodeError("a number beyond 2^53")
                return v
            shift += 7
        raise DecodeError("a varint longer than 8 bytes")

    def zigzag(self):
        z = self.uvarint()
        return z // 2 if z % 2 == 0 else -(z + 1) // 2

    def bytes(self, n):
        if n > len(self.data) - self.at:
            raise DecodeError("ends early")
        b = self.data[self.at:self.at + n]
        self.at += n
        return b

    def text(self):
        b = self.bytes(self.uvarint())
        try:
            return b.decode("utf-8")
        except UnicodeDecodeError:
            raise DecodeError("a text that is not UTF-8")


def header(payload):
    """(gw, first, count, dictionary version, deflated, body offset) of a v2 payload."""
    r = _Reader(payload)
    try:
        if r.byte() != MAGIC:
            raise DecodeError("not a compact (v2) payload")
        version = r.byte()
        if version != VERSION:
            raise DecodeError("compact payload version %d (this decoder reads %d)" % (version, VERSION))
        flags = r.byte()
        if flags & ~1:
            raise DecodeError("unknown flags 0x%x" % flags)
        gw, first, count, dictionary = r.text(), r.uvarint(), r.uvarint(), r.uvarint()
    except DecodeError as e:
        if str(e).startswith(("not a", "compact payload", "unknown flags")):
            raise
        raise DecodeError("truncated header: %s" % e)
    if first < 1 or count < 1 or count > MAX_READINGS:
        raise DecodeError("seq %d and count %d out of range" % (first, count))
    return gw, first, count, dictionary, bool(flags & 1), r.at


def decode(payload, dictionaries):
    """The message in `payload` (bytes): v2 decoded, v1 parsed. Raises DecodeError."""
    payload = bytes(payload)
    if payload[:1] == b"{":
        return json.loads(payload)
    gw, first, count, version, deflated, body_at = header(payload)
    names = dictionaries(version)
    if names is None:
        raise DecodeError("needs dictionary version %d, which has not been received" % version)
    body = payload[body_at:]
    if deflated:
        try:
            d = zlib.decompressobj(-15)
            body = d.decompress(body, INFLATED_MAX)
            if d.unconsumed_tail or not d.eof:
                raise DecodeError("body does not inflate (too large or cut)")
        except zlib.error as e:
            raise DecodeError("body does not inflate: %s" % e)
    try:
        return _body(_Reader(body), gw, first, count, version, names)
    except DecodeError as e:
        raise DecodeError("corrupt body: %s" % e)


def _body(r, gw, first, count, version, names):
    n_series = r.uvarint()
    if n_series < 1 or n_series > count:
        raise DecodeError("%d series for %d readings" % (n_series, count))
    series, total = [], 0
    for _ in range(n_series):
        pid, n = r.uvarint(), r.uvarint()
        name = names.get(pid, names.get(str(pid)))
        if name is None:
            raise DecodeError("point id %d is not in dictionary version %d" % (pid, version))
        if n < 1:
            raise DecodeError("an empty series")
        total += n
        if total > count:
            raise DecodeError("the series hold more than %d readings" % count)
        series.append({"name": name, "n": n, "ts": [], "values": [], "q": []})
    if total != count:
        raise DecodeError("the series hold %d readings, the header says %d" % (total, count))
    order = []
    if n_series > 1:
        seen = [0] * n_series
        for _ in range(count):
            s = r.uvarint()
            if s >= n_series:
                raise DecodeError("the order column does not match the series")
            seen[s] += 1
            if seen[s] > series[s]["n"]:
                raise DecodeError("the order column does not match the series")
            order.append(s)
    else:
        order = [0] * count
    base = r.uvarint()
    for s in series:
        prev = prev_delta = 0
        for i in range(s["n"]):
            if i == 0:
                ts = base + r.zigzag()
            else:
                delta = r.zigzag() if i == 1 else prev_delta + r.zigzag()
                ts = prev + delta
                prev_delta = delta
            if ts < 0 or ts > 2 ** 53 - 1:
                raise DecodeError("a time out of range")
            s["ts"].append(ts)
            prev = ts
        kinds = []
        for _ in range(s["n"]):
            b = r.byte()
            kind, q = b >> 2, b & 3
            if kind > K_TEXT or q > 2:
                raise DecodeError("kind byte 0x%x" % b)
            kinds.append(kind)
            s["q"].append(QUALITY[q])
        n_numbers = kinds.count(K_NUMBER)
        numbers = []
        if n_numbers:
            mode = r.byte()
            if mode == 0:
                d = r.byte()
                if d > 9:
                    raise DecodeError("scale %d" % d)
                p, n = 10 ** d, 0
                for _ in range(n_numbers):
                    n += r.zigzag()
                    if abs(n) >= SCALED_MAX:
                        raise DecodeError("a scaled number out of range")
                    # int / int is correctly rounded, as the encoder's division is: the same double.
                    numbers.append(n / p if d else n)
            elif mode == 1:
                prev_bits = 0
                for _ in range(n_numbers):
                    bits = struct.unpack("<Q", r.bytes(8))[0] ^ prev_bits
                    numbers.append(struct.unpack("<d", struct.pack("<Q", bits))[0])
                    prev_bits = bits
            else:
                raise DecodeError("number mode %d" % mode)
        texts = [r.text() for _ in range(kinds.count(K_TEXT))]
        ni = ti = 0
        for k in kinds:
            if k == K_NUMBER:
                s["values"].append(numbers[ni])
                ni += 1
            elif k == K_TEXT:
                s["values"].append(texts[ti])
                ti += 1
            else:
                s["values"].append({K_NULL: None, K_TRUE: True, K_FALSE: False}[k])
    if r.at != len(r.data):
        raise DecodeError("%d bytes left over" % (len(r.data) - r.at))
    at = [0] * n_series
    rows = []
    for si in order:
        s, i = series[si], at[si]
        at[si] += 1
        row = [s["name"], s["ts"][i], s["values"][i]]
        if s["q"][i] != "good":
            row.append(s["q"][i])
        rows.append(row)
    return {"v": 2, "gw": gw, "seq": [first, first + count - 1], "dictionary": version, "r": rows}


def _jsonable(v):
    if isinstance(v, float) and (v != v or v in (float("inf"), float("-inf")) or (v == 0 and str(v) == "-0.0")):
        return {"num": "NaN" if v != v else "-0" if v == 0 else ("Infinity" if v > 0 else "-Infinity")}
    return v


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 3 or sys.argv[1] != "--golden":
        sys.exit("usage: edge_agent_compact.py --golden FILE")
    golden = json.load(open(sys.argv[2]))["messages"]
    # The newest dictionary decodes every message (ids are never reused).
    newest = max(golden, key=lambda m: m["dictionary"]["version"])["dictionary"]
    names = {int(k): v for k, v in newest["points"].items()}
    out = []
    for m in golden:
        msg = decode(bytes.fromhex(m["hex"]), lambda ver: names if ver <= newest["version"] else None)
        msg["r"] = [[row[0], row[1], _jsonable(row[2])] + row[3:] for row in msg["r"]]
        out.append({"name": m["name"], "msg": msg})
    json.dump(out, sys.stdout)
