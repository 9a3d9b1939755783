/**
 * What to do when the broker does not take a message. Three kinds, each with its own answer:
 *
 * - The broker said why (an MQTT 5 PUBACK with a reason code of 0x80 or more). A refusal of the
 *   topic or a passing limit (not authorized, topic invalid, quota exceeded) is retried later:
 *   the rows stay in the outbox and the channel pauses. Any other refusal is about this message:
 *   it is split and the halves are sent again; a single reading the broker still refuses is set
 *   aside as a dead letter (kept, counted, resendable — never silently dropped).
 * - The broker broke the connection over it (a DISCONNECT "packet too large", or a PUBACK our
 *   MQTT library cannot even parse, as Mosquitto 2.0's reply to a message over
 *   `message_size_limit`): the oldest unacknowledged message is the suspect; it is sent in halves
 *   on the next connection, and a single reading suspected twice becomes a dead letter.
 * - A connection that had carried messages closes while a message is the oldest in flight: a weak
 *   suspicion (it may be the network), three strikes for a single reading.
 * - No PUBACK for a message while later ones were acknowledged: the broker dropped it; treated
 *   like the case above.
 * A plain timeout or a lost connection is none of these: the network, not the message.
 */

/** PUBACK reason codes of MQTT 5 (3.4.2.1) a broker may send for a QoS 1 publish. */
export const PUBACK_REASONS: ReadonlyMap<number, string> = new Map([
  [0x80, "unspecified error"],
  [0x83, "implementation specific error"],
  [0x87, "not authorized"],
  [0x90, "topic name invalid"],
  [0x91, "packet identifier in use"],
  [0x97, "quota exceeded"],
  [0x99, "payload format invalid"],
]);

/** Refusals that say nothing about the message itself: retry it later, unchanged. */
const RETRY_LATER: ReadonlySet<number> = new Set([0x87, 0x90, 0x91, 0x97]);

export type Refusal =
  | { kind: "retry-later"; reason: string }
  /** A single reading is set aside once it was refused this many times (1: the broker said so). */
  | { kind: "message"; reason: string; strikesToSetAside: number };

/** The reason code of a publish error, when the broker gave one. */
export function pubackReason(err: unknown): number | null {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "number" && code >= 0x80 && code <= 0xff ? code : null;
}

export function describeReason(code: number): string {
  return `${PUBACK_REASONS.get(code) ?? "refused"} (0x${code.toString(16)})`;
}

/** How to treat a PUBACK refusal. */
export function classifyPuback(code: number): Refusal {
  const reason = `refused by the broker: ${describeReason(code)}`;
  return RETRY_LATER.has(code) ? { kind: "retry-later", reason } : { kind: "message", reason, strikesToSetAside: 1 };
}

/** A client error that means the broker's reply to a publish could not be read, or was a refusal of the connection over a message. */
export function isProtocolRefusal(err: Error): boolean {
  return /invalid (puback|disconnect) reason code|malformed|packet too large|protocol error/i.test(err.message);
}

/** MQTT 5 DISCONNECT reason codes that blame the last message sent (3.14.2.1). */
export function disconnectBlamesMessage(code: number | undefined): string | null {
  if (code === 0x95) return "the broker disconnected: packet too large (0x95)";
  if (code === 0x99) return "the broker disconnected: payload format invalid (0x99)";
  if (code === 0x81) return "the broker disconnected: malformed packet (0x81)";
  return null;
}

/** CONNACK codes that mean "this broker does not speak the MQTT version asked for". */
export function refusesProtocolVersion(err: { code?: unknown }): boolean {
  return err.code === 1 || err.code === 0x84;
}
