#!/usr/bin/env python3
"""Smoke test of build/ebp-host over a socat pty pair against a minimal gateway written here
(Python, zlib CRC-32, protobuf from protoc --python_out). Not the real gateway: the integration
tests run the host against the TypeScript side. Usage: smoke_host.py BUILD_DIR PROTO"""
import os, select, signal, subprocess, sys, tempfile, termios, time, tty, zlib

build, proto = sys.argv[1], sys.argv[2]
tmp = tempfile.mkdtemp(prefix="ebp-smoke-")
subprocess.check_call(["protoc", "-I", os.path.dirname(os.path.abspath(proto)), "--python_out", tmp, os.path.abspath(proto)])
sys.path.insert(0, tmp)
import bridge_pb2 as pb  # noqa: E402


def cobs_enc(b):
    out, block = bytearray(), bytearray()
    for i, x in enumerate(b):
        if x == 0:
            out += bytes([len(block) + 1]) + block
            block = bytearray()
        else:
            block.append(x)
            if len(block) == 254:
                out += b"\xff" + block
                block = bytearray()
                if i + 1 == len(b):
                    return bytes(out)
    return bytes(out + bytes([len(block) + 1]) + block)


def cobs_dec(b):
    out, i = bytearray(), 0
    while i < len(b):
        c = b[i]
        i += 1
        if c == 0 or i + c - 1 > len(b):
            return None
        out += b[i:i + c - 1]
        i += c - 1
        if c < 0xFF and i < len(b):
            out.append(0)
    return bytes(out)


def frame(chan, flags, seq, ack, payload):
    body = bytes([1, chan, flags]) + seq.to_bytes(2, "little") + ack.to_bytes(2, "little") + payload
    return b"\x00" + cobs_enc(body + zlib.crc32(body).to_bytes(4, "little")) + b"\x00"


a, b = os.path.join(tmp, "board"), os.path.join(tmp, "gw")
socat = subprocess.Popen(["socat", f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"], stderr=subprocess.DEVNULL)
for _ in range(100):
    if os.path.exists(a) and os.path.exists(b):
        break
    time.sleep(0.05)
fd = os.open(b, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
tty.setraw(fd)
COUNT = 90
host = subprocess.Popen([os.path.join(build, "ebp-host"), "--port", a, "--id", "a4cf12345678", "--interval-ms", "20",
                         "--count", str(COUNT), "--log-every", "5", "--boot-id", "5eed0001"],
                        stderr=subprocess.PIPE, text=True)
os.set_blocking(host.stderr.fileno(), False)
lines = []
state = dict(expected=0, have_rel=False, next_seq=0, out=[], up=False, got={}, described=0, result=None, logs=0,
             cmd_sent=False, boot=None, schema=None)


def send(chan, flags, seq, payload=b""):
    ack = 0
    if state["have_rel"]:
        flags |= 0x02
        ack = (state["expected"] - 1) & 0xFFFF
    os.write(fd, frame(chan, flags, seq, ack, payload))


def send_rel(chan, msg):
    p = msg.SerializeToString()
    seq = state["next_seq"]
    state["next_seq"] += 1
    state["out"].append((chan, seq, p, time.time()))
    send(chan, 0x01, seq, p)


def on_frame(f):
    chan, flags, seq, ack = f[1], f[2], int.from_bytes(f[3:5], "little"), int.from_bytes(f[5:7], "little")
    payload = f[7:-4]
    if flags & 0x02:
        state["out"] = [o for o in state["out"] if ((ack - o[1]) & 0xFFFF) >= 32768]  # keep those after ack
    if chan == 0 and payload:
        link = pb.Link.FromString(payload)
        if link.HasField("hello"):
            h = link.hello
            state.update(boot=h.boot_id, schema=h.schema_hash, expected=1, have_rel=True, next_seq=0, out=[], up=True)
            send_rel(0, pb.Link(hello_reply=pb.HelloReply(accepted=True, utc_us=int(time.time() * 1e6), max_frame=1024,
                                                          window=8, heartbeat_ms=1000)))
            send(0, 0, 0, pb.Link(time_request=pb.TimeRequest(t1_us=int(time.time() * 1e6))).SerializeToString())
        return
    if not (flags & 0x01) or not state["up"]:
        if chan == 3:
            state["logs"] += 1
        return
    if seq != state["expected"]:
        send(0, 0, 0)
        return
    state["expected"] = (state["expected"] + 1) & 0xFFFF
    if chan == 1:
        t = pb.Telemetry.FromString(payload)
        if t.HasField("describe"):
            state["described"] += len(t.describe.points)
        elif t.HasField("readings"):
            for i, r in enumerate(t.readings.readings):
                s = t.readings.first_seq + i
                state["got"][s] = state["got"].get(s, 0) + 1
            upto = 0
            while upto + 1 in state["got"]:
                upto += 1
            send_rel(1, pb.Telemetry(ack=pb.ReadingsAck(boot_id=t.readings.boot_id, upto_seq=upto)))
            return
    elif chan == 2:
        state["result"] = pb.Commands.FromString(payload).result
    send(0, 0, 0)


buf = bytearray()
deadline = time.time() + 30
hreq = 0
ok = False
try:
    while time.time() < deadline:
        if not state["up"] and time.time() - hreq > 1:
            hreq = time.time()
            send(0, 0, 0, pb.Link(hello_request=pb.HelloRequest(protocol=1)).SerializeToString())
        r, _, _ = select.select([fd], [], [], 0.01)
        if r:
            for x in os.read(fd, 4096):
                if x:
                    buf.append(x)
                    continue
                f = cobs_dec(bytes(buf)) if buf else None
                buf.clear()
                if f and len(f) >= 11 and zlib.crc32(f[:-4]) == int.from_bytes(f[-4:], "little"):
                    on_frame(f)
        for o in list(state["out"]):
            if time.time() - o[3] > 0.3:
                send(o[0], 0x01, o[1], o[2])
        if state["described"] == 5 and not state["cmd_sent"]:
            state["cmd_sent"] = True
            send_rel(2, pb.Commands(command=pb.Command(id=7, point=4, number=23.5)))
        try:
            chunk = host.stderr.read()
            if chunk:
                lines.extend(chunk.splitlines())
        except (BlockingIOError, TypeError):
            pass
        if any("all acked" in l for l in lines) and state["result"] is not None and any("command id=7" in l for l in lines):
            ok = True
            break
finally:
    host.send_signal(signal.SIGTERM)
    try:
        rest = host.communicate(timeout=5)[1]
    except subprocess.TimeoutExpired:
        host.kill()
        rest = host.communicate()[1]
    lines.extend((rest or "").splitlines())
    socat.terminate()
    socat.wait()

for l in lines:
    print("  " + l)
res = state["result"]
checks = [
    ("schema hash from Hello", state["schema"] is not None),
    ("boot id 0x5eed0001", state["boot"] == 0x5EED0001),
    ("5 points described", state["described"] == 5),
    (f"readings 1..{COUNT} each once", sorted(state["got"]) == list(range(1, COUNT + 1)) and set(state["got"].values()) == {1}),
    ("command ok, readback 23.5", res is not None and res.status == 0 and res.readback.number == 23.5),
    ("log frames on channel 3", state["logs"] > 0),
    ("host exits 0 on SIGTERM", host.returncode == 0),
    ("stderr: session up / acked / command / all acked / stopped",
     all(any(k in l for l in lines) for k in ["session up", "acked boot_id=0x5eed0001", "command id=7 point=setpoint status=ok value=23.5 readback=23.5", "all acked", "stopped"])),
]
for name, good in checks:
    print(("ok   " if good else "FAIL ") + name)
sys.exit(0 if ok and all(g for _, g in checks) else 1)
