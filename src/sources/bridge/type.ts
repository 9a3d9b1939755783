/**
 * `type: bridge`: one custom board (ESP32, STM32, Arduino…) speaking the firmware bridge protocol
 * (docs/firmware-bridge.md) on a USB-serial or UART port, found by its port or by its unique id.
 * Its points are the ones the board describes, named `<name>/<point>` (children:
 * `<name>/<child>/<point>`); the writable ones the config allows are commands on target `<name>`.
 */
import { z } from "zod";
import { describePort, serialPortId } from "../../buses/ports.js";
import { name } from "../../config/fields.js";
import { DAY, duration, MINUTE, SECOND } from "../../config/units.js";
import type { SourceType } from "../type.js";

const HEX_ID = /^[0-9a-f]{8,32}$/;

const limit = z.strictObject({
  min: z.number().optional(),
  max: z.number().optional(),
});

const schema = z
  .strictObject({
    type: z.literal("bridge"),
    name: name("board name"),
    port: z.string().min(1).optional().meta({ description: "The board's serial port; prefer the stable /dev/serial/by-id/… name (edge-agent ports)." }),
    board_id: z
      .string()
      .transform((s) => s.toLowerCase().replace(/[:-]/g, ""))
      .pipe(z.string().regex(HEX_ID, { error: "expected the board's unique id in hex, 8 to 32 digits (as `edge-agent bridge list` shows it)" }))
      .optional()
      .meta({ description: "The board's unique id (hex): without `port`, the board is looked for on the `probe` ports, and found again when it re-enumerates; with `port`, a board with another id there is refused." }),
    probe: z
      .array(z.string().min(1))
      .min(1)
      .default(["/dev/serial/by-id/*", "/dev/ttyACM*", "/dev/ttyUSB*"])
      .meta({ description: "Ports (glob patterns: * and ?) where a board given by board_id is looked for; ports other sources use are skipped." }),
    simulated: z.enum(["room-node"]).optional().meta({ description: "A simulated board inside the agent (demo, tests): a room node relaying two battery sensors." }),
    baud: z.int().min(1200).max(4_000_000).default(115_200),
    reset_on_open: z.boolean().default(false).meta({ description: "Pulse DTR when the port opens, to reset the board (most boards reset on DTR anyway when a port opens)." }),
    boot_delay: duration({ max: MINUTE, description: "Time a board needs after a reset before it can answer." }).default(1500),
    heartbeat: duration({ min: 100, max: MINUTE, description: "Both sides send a heartbeat this often." }).default(SECOND),
    offline_after: duration({ min: 300, max: 10 * MINUTE, description: "A board silent this long is offline (then looked for again)." }).default(5 * SECOND),
    time_sync: duration({ min: SECOND, max: DAY, description: "How often the board's clock is compared with the gateway's." }).default(MINUTE),
    command_timeout: duration({ min: 100, max: MINUTE }).default(5 * SECOND),
    interval: duration({ min: 10, max: MINUTE, description: "How often the board's readings are committed to the outbox (and acknowledged to it): the board sends them as they come." }).default(100),
    max_frame: z.int().min(256).max(4096).default(1024),
    window: z.int().min(1).max(16).default(8),
    max_pending: z
      .int()
      .min(100)
      .max(1_000_000)
      .default(20_000)
      .meta({ description: "Readings received but not yet committed, at most; beyond it the gateway tells the board it is busy (they wait on the board)." }),
    writable: z.array(name("point name")).default([]).meta({ description: "Points (of the board's description) that commands may write; none by default." }),
    limits: z
      .preprocess((v, ctx) => {
        // zod's record drops a `__proto__` key without a word: say it instead.
        if (v !== null && typeof v === "object" && Object.hasOwn(v, "__proto__")) ctx.issues.push({ code: "custom", message: "unknown key", path: ["__proto__"], input: v });
        return v;
      }, z.record(name("point name"), limit))
      .default({})
      .meta({ description: "Tighter write bounds per point than the board's own: the two are intersected." }),
    bootloader: z
      .string()
      .regex(/^\d{1,3}\.\d{1,3}\.\d{1,5}(\+\d{1,10})?$/, { error: "expected a version like 1.10.0" })
      .optional()
      .meta({ description: "The board's bootloader version, for update manifests that need a minimum one (SMP does not report it)." }),
  })
  .meta({ description: "A custom board on the firmware bridge protocol (docs/firmware-bridge.md): points <name>/<point>." });

export type BridgeSourceConfig = z.output<typeof schema>;

export const bridge: SourceType<BridgeSourceConfig> = {
  type: "bridge",
  schema,
  check(cfg, at, ctx) {
    const ways = [cfg.port !== undefined || cfg.board_id !== undefined ? "port/board_id" : null, cfg.simulated !== undefined ? "simulated" : null].filter((w) => w !== null);
    if (ways.length === 0) ctx.report(at, "needs port, board_id (or both), or simulated");
    if (ways.length > 1) ctx.report([...at, "simulated"], "a simulated board has no port or board_id: choose one");
    for (const point of Object.keys(cfg.limits)) {
      if (!cfg.writable.includes(point)) ctx.report([...at, "limits", point], `'${point}' is not in writable: limits apply to writable points only`);
      const l = cfg.limits[point]!;
      if (l.min !== undefined && l.max !== undefined && l.min > l.max) ctx.report([...at, "limits", point], `min ${l.min} is above max ${l.max}`);
    }
  },
  facts(cfg, at) {
    const claims = [];
    if (cfg.port !== undefined) {
      const id = serialPortId(cfg.port);
      const real = describePort(id);
      claims.push({ key: id, path: [...at, "port"], what: cfg.port === real ? real : `${cfg.port} (→ ${real})`, hint: "one process, one source per port" });
    }
    if (cfg.board_id !== undefined) claims.push({ key: `bridge-board:${cfg.board_id}`, path: [...at, "board_id"], what: `board ${cfg.board_id}` });
    return {
      prefixes: [{ name: cfg.name, path: [...at, "name"] }],
      // The board describes its points at run time.
      points: [{ id: `${cfg.name}/online` }],
      claims,
      devices: [{ name: cfg.name, kind: "bridge board", switches: [], points: cfg.writable }],
    };
  },
  summary: () => ({ devices: 1, deviceKind: "bridge board", points: 0 }),
};
