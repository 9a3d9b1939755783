/** The line's queue: round-robin between devices, and the urgent slot for actuator writes. */
import { describe, expect, it, vi } from "vitest";
import type { ModbusLink } from "../../src/buses/modbus/link.js";
import { ModbusLine } from "../../src/buses/modbus/line.js";

describe("ModbusLine urgent jobs", () => {
  it("runs a write at the next slot, ahead of the round-robin, but never two in a row while polls wait", async () => {
    const order: string[] = [];
    let release: (() => void) | null = null;
    const link = {
      isOpen: true,
      open: async () => {},
      close: async () => {},
    } as unknown as ModbusLink;
    const line = new ModbusLine("l", link, { interFrameMs: 0 });
    const job = (label: string, hold = false) => async () => {
      order.push(label);
      if (hold) await new Promise<void>((r) => (release = r));
    };
    const runs = [line.run("meter-a", job("a1", true))];
    for (const l of ["a2", "a3"]) runs.push(line.run("meter-a", job(l)));
    for (const l of ["b1", "b2", "b3"]) runs.push(line.run("meter-b", job(l)));
    for (const l of ["w1", "w2"]) runs.push(line.run("relays", job(l), { urgent: true }));
    expect(line.stats().queued).toBe(7);
    await vi.waitFor(() => expect(release).not.toBeNull());
    release!();
    await Promise.all(runs);
    // Round-robin alone would run the writes last, after every poll queued before them.
    expect(order).toEqual(["a1", "w1", "a2", "w2", "b1", "a3", "b2", "b3"]);
  });
});
