/**
 * How the agent is doing, as data: every part reports a typed snapshot, and the status socket
 * (`edge-agent status`), the metrics, `/healthz` and the gateway's health message all read the
 * same `AgentStatus`. Types only: the vocabulary the parts and the ops room share.
 */
import type { CommandResult } from "./command.js";

/** Why entries were deleted without reaching the broker, per reason. */
export interface DropCounters {
  /** Oldest rows deleted to make room (policy drop-oldest). */
  quota_oldest: number;
  /** New rows refused because the store was full (policy drop-newest). */
  quota_newest: number;
  /** Rows deleted because they were older than max_age. */
  max_age: number;
  /** Dead letters deleted by an operator (`edge-agent buffer dead-letters purge`). */
  purged: number;
}

export type StreamName = "telemetry" | "events" | "results";

export interface StreamStats {
  depth: number;
  lastSeq: number;
  dropped: DropCounters;
  deadLetters: number;
  /** Rows delivered and kept for a replay (store.replay_window): not part of depth. */
  kept: number;
}

export interface DeadLetterStats {
  count: number;
  /** How many per reason, most frequent first. */
  reasons: Array<{ reason: string; count: number }>;
}

export interface OutboxStats {
  depth: number;
  firstSeq: number | null;
  lastSeq: number;
  oldestTs: number | null;
  oldestAgeMs: number | null;
  usedBytes: number;
  fileBytes: number;
  quota: number;
  /** Drops of every stream, added up by reason. */
  dropped: DropCounters;
  /** Each stream: how much waits, the last sequence number given, its drops, its dead letters. */
  streams: Record<StreamName, StreamStats>;
  deadLetters: DeadLetterStats;
  /** Rows delivered and kept for a replay, all streams (store.replay_window); not part of depth. */
  kept: number;
  /** store.replay_window, ms (0: off). */
  replayWindowMs: number;
  /** Ranges in the drop ledger (which numbers were dropped, and why), all streams. */
  droppedRanges: number;
  /** The outbox file's format. */
  format: number;
}

export type UplinkState = "stopped" | "connecting" | "online" | "offline";

export interface UplinkStats {
  state: UplinkState;
  broker: string;
  /** The MQTT version of the current (or last) connection. */
  protocol: "5" | "3.1.1";
  /** The broker's Maximum Packet Size (MQTT 5 CONNACK), when it announced one. */
  maxPacketSize: number | null;
  connects: number;
  /** Telemetry messages acknowledged by the broker. */
  messagesAcked: number;
  /** Readings acknowledged by the broker (a reading sent twice counts twice). */
  readingsAcked: number;
  publishFailures: number;
  /** Messages the broker refused (or dropped while acknowledging later ones). */
  refused: number;
  /** Rows set aside as dead letters because the broker refused them one by one. */
  deadLettered: number;
  inflight: number;
  backlogRemaining: number;
  lastError: string | null;
  /** Bytes of telemetry payload acknowledged. */
  payloadBytes: number;
  /** Events and command results acknowledged. */
  otherAcked: number;
  /** The monthly data budget (`uplink.budget`), when there is one. */
  budget?: { month: string; bytes: number; limit: number; forecast: number; saving: boolean };
}

/** A physical bus a source uses: an RS-485 line, a TCP connection, an I²C bus. */
export interface BusStatus {
  name: string;
  open: boolean;
  /** Jobs waiting for the bus. */
  queued: number;
  lastError: string | null;
}

/**
 * One field device behind a source: a Modbus meter, one sensor of an I²C room, a GPIO input.
 * What metrics count as up or down, and `status` prints.
 */
export interface DeviceStatus {
  /** `meter-1`, `room-101/sht4x@0x44`, `pir-hall`. */
  name: string;
  online: boolean;
  lastError: string | null;
  lastOkTs: number | null;
  /** Requests sent (reads, writes), retries included; answered correctly; sent again (absent for inputs that are not asked). */
  requests?: number;
  ok?: number;
  retries?: number;
  /** Failed requests by kind (timeout, crc, nack…). */
  errors: Record<string, number>;
  /** Reads planned per poll (Modbus). */
  requestsPerPoll?: number;
  /** What is not read for now (a point or range the device refused), with when it is tried again. */
  excluded?: string[];
  /** The bus it is on (see SourceStatus.buses). */
  bus?: string;
  /** An input that reports changes (a GPIO pin): those seen, and those dropped for coming too fast. */
  changes?: { seen: number; dropped: number };
  /** A bridged board: who it is and how its link does (docs/firmware-bridge.md). */
  board?: BoardStatus;
}

/** A board on the firmware bridge: identity from its hello, and the link's figures. */
export interface BoardStatus {
  /** Port it is on now (null while looked for). */
  port: string | null;
  /** `connecting` (port open, no hello yet), `online`, `refused` (with the reason), `searching` (by id), `offline`. */
  state: "searching" | "connecting" | "online" | "refused" | "offline";
  refusedReason: string | null;
  id: string | null;
  hardware: string | null;
  firmware: string | null;
  bootId: string | null;
  resetReason: string | null;
  /** Sessions started (hellos accepted) since the agent started. */
  sessions: number;
  framesIn: number;
  framesOut: number;
  retransmits: number;
  crcErrors: number;
  /** Chunks between delimiters that were not frames (log text, boot banners, noise): resyncs. */
  garbage: number;
  oversized: number;
  unknownChannel: number;
  naksSent: number;
  naksReceived: number;
  /** Board readings received again and recognised (already stored). */
  duplicates: number;
  /** Smoothed round-trip time of reliable frames, ms. */
  rttMs: number | null;
  /** Board clock minus UTC (ms; the board's clock counts from its boot) and its drift (ppm), from the time exchanges. */
  clockOffsetMs: number | null;
  clockDriftPpm: number | null;
  /** How far off a board time placed in UTC may be: half the least round trip of the exchanges, ms. */
  clockErrorMs: number | null;
  /** When the board booted, in UTC (ms), as its clock mapping says. */
  bootedAt: number | null;
  /** Readings waiting in the board's buffer, and those it had to overwrite (its last heartbeat). */
  boardBuffered: number | null;
  boardDropped: number | null;
  /** Relayed child nodes present now. */
  children: string[];
}

/** One source: its loop's figures, its devices, its buses, and its own details (for --json only). */
export interface SourceStatus {
  type: string;
  polls: number;
  overruns: number;
  /** Polls that failed as a whole. */
  errors: number;
  lastError: string | null;
  devices: DeviceStatus[];
  buses: BusStatus[];
  /** The type's own figures, as it reports them (printed by --json, never parsed). */
  health?: unknown;
}

/** A long-lived part of the agent and how its start went. */
export interface PartStatus {
  name: string;
  state: "stopped" | "running" | "failed";
  error: string | null;
}

export interface AgentStatus {
  /** The last command results, newest last. */
  commands: CommandResult[];
  stored: number;
  events: number;
  refused: number;
  storeErrors: number;
  /** Readings of non-critical points not stored while the data budget saves. */
  thinned: number;
  outbox: OutboxStats;
  uplink: UplinkStats;
  sources: Record<string, SourceStatus>;
  actuators: Record<string, Record<string, unknown>>;
  parts: PartStatus[];
}
