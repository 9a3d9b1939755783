/**
 * src/buses/modbus/modbus-serial.ts loads modbus-serial with a stand-in for serialport (its serial
 * classes are never used). In a fresh process: the stand-in leaves no trace — serialport, loaded
 * afterwards from anywhere (modbus-serial's getPorts included), is the real module.
 */
import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";

describe("modbus-serial without serialport", () => {
  it("loads the client without serialport, and serialport afterwards is the real one", () => {
    const script = `
      import { createRequire } from "node:module";
      const { modbusSerial } = await import("./dist/src/buses/modbus/modbus-serial.js");
      const require = createRequire(import.meta.url);
      const loadedEarly = Object.keys(require.cache).filter((k) => /node_modules\\/(serialport|@serialport)\\//.test(k)).length;
      const client = new modbusSerial();
      const fromModbusSerial = createRequire(require.resolve("modbus-serial"));
      const viaCjs = fromModbusSerial("serialport");
      const viaEsm = await import("serialport");
      // modbus-serial's own serial port (tests and tools use it): a real SerialPort underneath.
      const buffered = new modbusSerial.RTUBufferedPort("/nonexistent/tty", { autoOpen: false, baudRate: 9600 });
      console.log(JSON.stringify({
        loadedEarly,
        client: typeof client.readHoldingRegisters,
        tcpPort: typeof modbusSerial.TcpPort,
        cjs: typeof viaCjs.SerialPort,
        esm: typeof viaEsm.SerialPort,
        same: viaCjs.SerialPort === viaEsm.SerialPort,
        getPorts: typeof modbusSerial.getPorts,
        bufferedIsReal: buffered._client instanceof viaEsm.SerialPort,
      }));
    `;
    const out = execFileSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" });
    expect(JSON.parse(out)).toEqual({ loadedEarly: 0, client: "function", tcpPort: "function", cjs: "function", esm: "function", same: true, getPorts: "function", bufferedIsReal: true });
  });
});
