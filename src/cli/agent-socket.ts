/**
 * For the commands that talk to a running agent (`status`, `light`, `charger`): the agent's
 * control socket is found from its config. Without loading the agent itself.
 */
import { loadConfig } from "../agent/config.js";
import { UserError } from "../model/errors.js";
import { askAgent, type ControlRequest, controlSocketPath } from "../ops/control-socket.js";

export async function askRunningAgent(configFile: string, req: ControlRequest): Promise<unknown> {
  const path = controlSocketPath(loadConfig(configFile));
  if (!path) throw new UserError("store.path is :memory:, so the agent has no control socket");
  return askAgent(path, req);
}
