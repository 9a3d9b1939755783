/**
 * SMP (MCUmgr) packets as the management channel carries them, the SMP client's matching, the
 * simulated board's SMP server against hostile requests, and manifests: parsing, signatures and
 * the checks against image and board.
 */
import { generateKeyPairSync, sign } from "node:crypto";
import { describe, expect, it } from "vitest";
import { parseConfigText } from "../../src/agent/config.js";
import type { LinkClock } from "../../src/bridge/link.js";
import { SmpClient, SmpError } from "../../src/bridge/management.js";
import { decodeSmp, encodeSmp, parseImageState, SMP_GROUP, SMP_IMAGE, SMP_OP, smpError, uploadBody, uploadOverhead } from "../../src/bridge/smp.js";
import { TwoSlotFlash } from "../../src/simulators/board/flash.js";
import { buildTestImage, compareVersions, imageBehaviour, readImageHeader, sha256 } from "../../src/update/image.js";
import { checkBoard, checkImage, checkSignature, ManifestError, parseManifest, publicKey, signedText, signManifest } from "../../src/update/manifest.js";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

describe("SMP packets", () => {
  it("decodes MCUmgr's echo response (bytes from the mcumgr-smp crate's documentation) and re-encodes its header", () => {
    // op 3 (write response), flags 0, length 16, group 0, seq 66, id 0 (echo): {"r": "Hello World"} as an indefinite map.
    const bytes = Uint8Array.from([3, 0, 0, 16, 0, 0, 66, 0, 191, 97, 114, 107, 72, 101, 108, 108, 111, 32, 87, 111, 114, 108, 100, 255]);
    const r = decodeSmp(bytes);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.packet.header).toEqual({ version: 0, op: SMP_OP.WRITE_RSP, flags: 0, group: 0, seq: 66, id: 0 });
    expect(r.packet.body.get("r")).toBe("Hello World");
    // Our encoder writes a definite map: the same header, the same meaning.
    const again = encodeSmp(r.packet.header, r.packet.body);
    expect(hex(again.subarray(0, 2))).toBe("0300");
    expect(hex(again.subarray(4, 8))).toBe("00004200");
    expect(decodeSmp(again)).toEqual(r);
  });

  it("writes an image upload request as MCUmgr expects: header big-endian, version 1, the first chunk with len and sha", () => {
    const sha = new Uint8Array(32).fill(0xab);
    const p = encodeSmp({ version: 1, op: SMP_OP.WRITE, flags: 0, group: SMP_GROUP.IMAGE, seq: 7, id: SMP_IMAGE.UPLOAD }, uploadBody({ off: 0, data: Uint8Array.of(1, 2, 3), len: 70_000, sha }));
    expect(p[0]).toBe(0b000_01_010); // res 0, ver 1, op 2
    expect((p[2]! << 8) | p[3]!).toBe(p.length - 8);
    expect(hex(p.subarray(4, 8))).toBe("00010701");
    const r = decodeSmp(p);
    expect(r.ok && Object.fromEntries(r.packet.body)).toEqual({ len: 70_000, sha, off: 0, data: Uint8Array.of(1, 2, 3) });
    // Later chunks carry only off and data.
    expect([...uploadBody({ off: 512, data: Uint8Array.of(9) }).keys()]).toEqual(["off", "data"]);
    expect(uploadOverhead(true, 0, 900)).toBeGreaterThan(uploadOverhead(false, 900_000, 900));
  });

  it("reads errors of both SMP versions", () => {
    expect(smpError(new Map([["rc", 8]]))).toMatchObject({ rc: 8, text: "not supported" });
    expect(smpError(new Map<string, unknown>([["err", new Map([["group", 1], ["rc", 3]])]]))).toMatchObject({ rc: 3, group: 1 });
    expect(smpError(new Map([["rc", 0]]))).toBeNull();
    expect(smpError(new Map([["off", 5]]))).toBeNull();
  });

  it("hostile packets are errors, never exceptions, and no key reaches a prototype", () => {
    const cases: Uint8Array[] = [
      new Uint8Array(0),
      Uint8Array.of(1, 2, 3),
      Uint8Array.from([3, 0, 0, 50, 0, 1, 0, 0, 0xa0]), // length says 50
      Uint8Array.from([3, 0, 0, 1, 0, 1, 0, 0, 0xff]), // not CBOR
      Uint8Array.from([3, 0, 0, 1, 0, 1, 0, 0, 0x01]), // CBOR, not a map
      encodeSmp({ version: 1, op: 3, flags: 0, group: 1, seq: 0, id: 0 }, new Map<unknown, unknown>([[1, 2]]) as Map<string, unknown>), // key not text
    ];
    for (let i = 0; i < 2000; i++) {
      const n = (i * 7919) % 64;
      const b = new Uint8Array(n);
      for (let j = 0; j < n; j++) b[j] = (i * 31 + j * 17) & 0xff;
      if (n >= 4) {
        b[2] = 0;
        b[3] = Math.max(0, n - 8);
      }
      cases.push(b);
    }
    for (const c of cases) expect(() => decodeSmp(c)).not.toThrow();
    for (const c of cases.slice(0, 6)) expect(decodeSmp(c).ok).toBe(false);
    const proto = encodeSmp({ version: 1, op: 3, flags: 0, group: 1, seq: 0, id: 0 }, new Map<string, unknown>([["__proto__", new Map([["polluted", true]])], ["constructor", 1], ["toString", 2]]));
    const r = decodeSmp(proto);
    expect(r.ok).toBe(true);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    if (r.ok) expect(r.packet.body.get("toString")).toBe(2);
  });

  it("checks an image state list field by field", () => {
    const good = new Map<string, unknown>([["images", [new Map<string, unknown>([["slot", 0], ["version", "1.0.0"], ["hash", new Uint8Array(32)], ["active", true], ["confirmed", true]])]]]);
    const r = parseImageState(good);
    expect(r.ok && r.slots[0]).toMatchObject({ image: 0, slot: 0, version: "1.0.0", active: true, confirmed: true, pending: false });
    for (const bad of [
      new Map(),
      new Map([["images", "no"]]),
      new Map([["images", [1]]]),
      new Map([["images", [new Map<string, unknown>([["slot", 0], ["version", "1"], ["hash", new Uint8Array(31)]])]]]),
      new Map([["images", [new Map<string, unknown>([["slot", -1], ["version", "1"], ["hash", new Uint8Array(32)]])]]]),
      new Map([["images", [new Map<string, unknown>([["slot", 0], ["version", "x".repeat(100)], ["hash", new Uint8Array(32)]])]]]),
      new Map([["images", Array.from({ length: 100 }, () => new Map())]]),
    ]) {
      expect(parseImageState(bad as Map<string, unknown>).ok).toBe(false);
    }
  });
});

describe("the SMP client", () => {
  function rig() {
    const sent: Uint8Array[] = [];
    const timers: Array<{ fn: () => void; ms: number }> = [];
    const clock: LinkClock = { now: () => 0, setTimeout: (fn, ms) => (timers.push({ fn, ms }), timers.length - 1), clearTimeout: (h) => void (timers[h as number] = { fn: () => {}, ms: 0 }) };
    let open = true;
    const c = new SmpClient({ send: (p) => (open ? (sent.push(p), true) : false) }, 1000, clock);
    const answer = (i: number, body: Record<string, unknown>, over: Partial<{ seq: number; op: number; group: number; id: number }> = {}) => {
      const r = decodeSmp(sent[i]!);
      if (!r.ok) throw new Error(r.error);
      c.receive(encodeSmp({ ...r.packet.header, op: r.packet.header.op + 1, ...over }, body));
    };
    return { c, sent, timers, answer, close: () => (open = false) };
  }

  it("matches responses by sequence, group and id, out of order; a stray or mismatched one changes nothing", async () => {
    const { c, answer } = rig();
    const a = c.request({ group: 1, id: 0, write: false, body: {} });
    const b = c.request({ group: 1, id: 1, write: true, body: { off: 0 } });
    answer(1, { rc: 0, off: 10 }, { id: 0 }); // right seq, wrong id: not b's
    answer(1, { off: 10 });
    answer(0, { images: [] });
    expect(Object.fromEntries(await b)).toEqual({ off: 10 });
    expect(Object.fromEntries(await a)).toEqual({ images: [] });
    expect(c.stats()).toMatchObject({ requests: 2, responses: 2, unmatched: 1 });
    c.receive(Uint8Array.of(1, 2, 3));
    expect(c.stats().bad).toBe(1);
  });

  it("an rc is a refusal; no answer is a timeout; a lost session fails every request; a full window is busy", async () => {
    const { c, answer, timers, close } = rig();
    const a = c.request({ group: 1, id: 1, write: true, body: {} });
    answer(0, { rc: 6 });
    await expect(a).rejects.toMatchObject({ kind: "refused", rc: 6 });
    const t = c.request({ group: 1, id: 0, write: false, body: {} });
    timers.at(-1)!.fn();
    await expect(t).rejects.toMatchObject({ kind: "timeout" });
    const x = c.request({ group: 1, id: 0, write: false, body: {} });
    c.fail("board offline");
    await expect(x).rejects.toBeInstanceOf(SmpError);
    close();
    await expect(c.request({ group: 1, id: 0, write: false, body: {} })).rejects.toMatchObject({ kind: "busy" });
    expect(c.inFlight).toBe(0);
  });
});

describe("the simulated board's SMP server against hostile requests", () => {
  const req = (op: number, group: number, id: number, body: unknown) => encodeSmp({ version: 1, op, flags: 0, group, seq: 1, id }, body as Map<string, unknown>);
  const rc = (f: TwoSlotFlash, p: Uint8Array) => {
    const { response } = f.handle(p);
    if (!response) return null;
    const r = decodeSmp(response);
    return r.ok ? (r.packet.body.get("rc") ?? 0) : "bad";
  };

  it("refuses bad offsets, lengths, hashes and unknown commands, and keeps running its image", () => {
    const f = new TwoSlotFlash({ slotSize: 10_000 });
    const running = f.running.version;
    const W = SMP_OP.WRITE;
    expect(rc(f, req(W, 1, 1, { off: -1, data: new Uint8Array(1) }))).toBe(3);
    expect(rc(f, req(W, 1, 1, { off: 0, data: new Uint8Array(1), len: 20_000 }))).toBe(7);
    expect(rc(f, req(W, 1, 1, { off: 0, data: new Uint8Array(1), len: 0 }))).toBe(3);
    expect(rc(f, req(W, 1, 1, { off: 0, data: new Uint8Array(1), len: 10, sha: new Uint8Array(3) }))).toBe(3);
    expect(rc(f, req(W, 1, 1, { off: 1e300, data: new Uint8Array(1) }))).toBe(3);
    expect(rc(f, req(W, 1, 1, { off: 5, data: new Uint8Array(1) }))).toBe(6); // no upload begun
    expect(rc(f, req(W, 1, 0, { hash: new Uint8Array(32), confirm: false }))).toBe(5); // no such image
    expect(rc(f, req(W, 1, 0, { hash: "nope" }))).toBe(3);
    expect(rc(f, req(W, 9, 0, {}))).toBe(8);
    expect(rc(f, req(W, 1, 77, {}))).toBe(8);
    expect(f.handle(Uint8Array.of(1, 2, 3)).response).toBeNull();
    expect(f.handle(req(SMP_OP.READ_RSP, 1, 0, {})).response).toBeNull(); // a response is not a request
    // An upload whose bytes do not hash to its sha: refused at the end, nothing to boot.
    const img = buildTestImage({ version: "2.0.0", size: 100 });
    const off0 = f.handle(req(W, 1, 1, { off: 0, data: img.subarray(0, 50), len: 100, sha: sha256(buildTestImage({ version: "2.0.0", size: 100, seed: 2 })) }));
    expect(off0.response).not.toBeNull();
    expect(rc(f, req(W, 1, 1, { off: 50, data: img.subarray(50) }))).toBe(9);
    expect(f.state.secondary).toBeNull();
    f.boot();
    expect(f.running.version).toBe(running);
  });

  it("an upload written at the wrong offset is answered with where the board is", () => {
    const f = new TwoSlotFlash();
    const img = buildTestImage({ version: "1.1.0", size: 300 });
    f.handle(req(SMP_OP.WRITE, 1, 1, { off: 0, data: img.subarray(0, 100), len: 300, sha: sha256(img) }));
    const r = decodeSmp(f.handle(req(SMP_OP.WRITE, 1, 1, { off: 200, data: img.subarray(200) })).response!);
    expect(r.ok && r.packet.body.get("off")).toBe(100);
  });
});

describe("images and manifests", () => {
  const { privateKey, publicKey: pub } = generateKeyPairSync("ed25519");
  const pem = privateKey.export({ format: "pem", type: "pkcs8" }).toString();
  const keys = new Map([["release", pub]]);
  const image = buildTestImage({ version: "1.4.3+7", size: 2048, behaviour: "silent" });

  it("reads the MCUboot header and a test image's behaviour", () => {
    expect(readImageHeader(image)).toMatchObject({ version: "1.4.3+7", headerSize: 32, imageSize: 2048 - 32 });
    expect(readImageHeader(new Uint8Array(100))).toBeNull();
    expect(imageBehaviour(image)).toBe("silent");
    expect(imageBehaviour(new Uint8Array(10))).toBe("ok");
    expect(compareVersions("1.4.3", "1.4.3+7")).toBe(-1);
    expect(compareVersions("1.10.0", "1.9.9")).toBe(1);
  });

  it("signs and verifies; the signed text is reproducible by any ed25519 tool", () => {
    const m = signManifest(image, { version: "1.4.3+7", hardware: "room-node/rev-c" }, { name: "release", privatePem: pem });
    expect(() => checkSignature(m, keys)).not.toThrow();
    expect(signedText(m.image).toString()).toBe(
      `edge-agent-manifest/1\nsha256=${sha256(image).toString("hex")}\nsize=2048\nversion=1.4.3+7\nhardware=room-node/rev-c\nmin_bootloader=\nimage_hash=\n`,
    );
    // Any tool signing those bytes makes a signature we accept.
    const sig = sign(null, signedText(m.image), privateKey).toString("base64");
    expect(() => checkSignature({ ...m, signature: sig }, keys)).not.toThrow();
    // A changed field breaks it.
    expect(() => checkSignature({ ...m, image: { ...m.image, version: "9.9.9" } }, keys)).toThrow(/does not verify/);
    expect(() => checkImage(m, image)).not.toThrow();
    // Keys from the config in each form we take.
    const raw = pub.export({ format: "jwk" }).x!;
    for (const text of [Buffer.from(raw, "base64url").toString("base64"), pub.export({ format: "der", type: "spki" }).toString("base64"), pub.export({ format: "pem", type: "spki" }).toString()]) {
      expect(() => checkSignature(m, new Map([["release", publicKey(text)]]))).not.toThrow();
    }
    const rsa = generateKeyPairSync("rsa", { modulusLength: 1024 }).publicKey.export({ format: "pem", type: "spki" }).toString();
    expect(() => publicKey(rsa)).toThrow(/not ed25519/);
  });

  it("malformed manifests are refused naming the field", () => {
    const m = signManifest(image, { version: "1.4.3+7", hardware: "room-node/rev-c" }, { name: "release", privatePem: pem });
    const j = JSON.parse(JSON.stringify(m)) as Record<string, unknown>;
    const cases: Array<[unknown, RegExp]> = [
      ["not json", /not JSON/],
      [[], /expected an object/],
      [{ ...j, format: "x" }, /format/],
      [{ ...j, extra: 1 }, /extra: unknown field/],
      [{ ...j, key: "a b" }, /key/],
      [{ ...j, signature: "short" }, /signature/],
      [{ ...j, image: { ...(j.image as object), size: -1 } }, /image\.size/],
      [{ ...j, image: { ...(j.image as object), size: 1e300 } }, /image\.size/],
      [{ ...j, image: { ...(j.image as object), size: Number.NaN } }, /image\.size/],
      [{ ...j, image: { ...(j.image as object), sha256: "AB" } }, /image\.sha256/],
      [{ ...j, image: { ...(j.image as object), version: "one" } }, /image\.version/],
      [{ ...j, image: { ...(j.image as object), hardware: "" } }, /image\.hardware/],
      [{ ...j, image: { ...(j.image as object), hardware: "<script>\u0000" } }, /image\.hardware/],
      [{ ...j, image: { ...(j.image as object), constructor: 1 } }, /image\.constructor: unknown field/],
      [JSON.parse(`{"__proto__": {"polluted": 1}, "format": "edge-agent-manifest/1"}`), /__proto__: unknown field/],
    ];
    for (const [input, re] of cases) {
      let err: unknown;
      try {
        parseManifest(typeof input === "string" ? input : JSON.stringify(input));
      } catch (e) {
        err = e;
      }
      expect(err, JSON.stringify(input)).toBeInstanceOf(ManifestError);
      expect((err as Error).message).toMatch(re);
    }
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(() => parseManifest("x".repeat(10_000))).toThrow(/at most 8192/);
  });

  it("checks the board: hardware, downgrade (unless allowed), bootloader", () => {
    const m = signManifest(image, { version: "1.4.3+7", hardware: "room-node/rev-c", minBootloader: "2.0.0" }, { name: "release", privatePem: pem });
    const board = { hardware: "room-node/rev-c", firmware: "1.4.0", bootloader: "2.1.0" };
    expect(() => checkBoard(m, board, { allowDowngrade: false })).not.toThrow();
    expect(() => checkBoard(m, { ...board, hardware: "x" }, { allowDowngrade: true })).toThrow(/hardware/);
    expect(() => checkBoard(m, { ...board, firmware: "1.5.0" }, { allowDowngrade: false })).toThrow(/downgrade/);
    expect(() => checkBoard(m, { ...board, firmware: "1.5.0" }, { allowDowngrade: true })).not.toThrow();
    expect(() => checkBoard(m, { ...board, bootloader: "1.9.9" }, { allowDowngrade: false })).toThrow(/bootloader 2\.0\.0 or later, the board has 1\.9\.9/);
    expect(() => checkBoard(m, { ...board, bootloader: null }, { allowDowngrade: false })).toThrow(/does not report its bootloader/);
  });

  it("an image whose header says another version than its manifest is refused", () => {
    const other = buildTestImage({ version: "1.5.0", size: 2048 });
    const m = signManifest(other, { version: "1.6.0", hardware: "h" }, { name: "release", privatePem: pem });
    expect(() => checkImage(m, other)).toThrow(/header says version 1\.5\.0/);
  });
});

describe("the `updates:` config section", () => {
  const base = `site: s
gateway: g
uplink: { url: "mqtt://127.0.0.1:1883" }
`;
  const raw = Buffer.from(generateKeyPairSync("ed25519").publicKey.export({ format: "jwk" }).x!, "base64url").toString("base64");

  it("takes trusted keys (raw base64, SPKI, PEM) with defaults for the rest", () => {
    const r = parseConfigText(`${base}updates:\n  keys: [{ name: release, key: "${raw}" }]\n`, "/etc/edge-agent");
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.config.updates).toMatchObject({ allow_downgrade: false, images_max: 64 * 1024 * 1024, health: { heartbeats: 5, window: 30_000, boot_timeout: 120_000 }, offline_timeout: 3_600_000 });
  });

  it("refuses a key that is not ed25519, an empty key list, unknown and prototype keys, each naming the place", () => {
    const errors = (text: string) => {
      const r = parseConfigText(`${base}${text}`, "/etc/edge-agent");
      return r.ok ? [] : r.errors;
    };
    const rsa = generateKeyPairSync("rsa", { modulusLength: 1024 }).publicKey.export({ format: "der", type: "spki" }).toString("base64");
    expect(errors(`updates:\n  keys: [{ name: a, key: "${rsa}" }]\n`).join("\n")).toMatch(/updates\.keys\[0\]\.key: expected an ed25519 public key.*not ed25519/);
    expect(errors(`updates:\n  keys: [{ name: a, key: "AAAA" }]\n`).join("\n")).toMatch(/updates\.keys\[0\]\.key: .*3 bytes after base64/);
    expect(errors(`updates:\n  keys: []\n`).join("\n")).toMatch(/updates\.keys: an update needs at least one trusted key/);
    expect(errors(`updates:\n  keys: [{ name: "a b", key: "${raw}" }]\n`).join("\n")).toMatch(/updates\.keys\[0\]\.name/);
    expect(errors(`updates:\n  keys: [{ name: a, key: "${raw}" }]\n  __proto__: { polluted: 1 }\n`).join("\n")).toMatch(/updates/);
    expect(errors(`updates:\n  keys: [{ name: a, key: "${raw}" }]\n  health: { window: -5s }\n`).join("\n")).toMatch(/updates\.health\.window/);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});
