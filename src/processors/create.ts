import type { RoomConfig } from "../config/schema.js";
import type { Processor } from "../model/processor.js";
import { RoomProcessor } from "./room.js";

/** Every processor the config describes: one per `rooms:` entry. */
export function createProcessors(config: { rooms: readonly RoomConfig[] }): Processor[] {
  return config.rooms.map((room) => new RoomProcessor(room));
}
