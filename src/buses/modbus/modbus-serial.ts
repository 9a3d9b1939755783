/**
 * modbus-serial's client class, loaded without serialport.
 *
 * modbus-serial's index.js requires every port and server it ships, and two of them (its
 * buffered serial port and its serial server) require `serialport`, whose native binding and
 * stream stack cost ~4 MiB of resident memory at import. We use neither: our client hands
 * ModbusRTU a port of its own (client-port.ts), which opens serialport itself, lazily, only for
 * an RTU line. So while modbus-serial's index.js runs, `serialport` resolves (for modbus-serial
 * alone) to a stand-in, taken out of the require cache as soon as it has loaded: every later
 * `require`/`import` of serialport, including modbus-serial's own `getPorts()`, gets the real
 * module. The stand-in's `SerialPort` loads the real one when something constructs it (a test, a
 * tool using modbus-serial's own serial port in the same process) and returns a real instance.
 *
 * If serialport is already loaded (a process that opened an RTU line first), it is left alone.
 */
import { createRequire } from "node:module";
import type ModbusSerial from "modbus-serial";

const require = createRequire(import.meta.url);

function load(): typeof ModbusSerial {
  const fromModbusSerial = createRequire(require.resolve("modbus-serial"));
  let standIn: string | null = null;
  try {
    const path = fromModbusSerial.resolve("serialport");
    if (!require.cache[path]) {
      standIn = path;
      /** Constructs the real SerialPort (loaded then, not now); `new` returns that instance. */
      const real = () => (require(path) as typeof import("serialport")).SerialPort;
      class SerialPortOnDemand {
        constructor(...args: unknown[]) {
          const SerialPort = real() as unknown as new (...a: unknown[]) => object;
          return new SerialPort(...args);
        }
        static list() {
          return real().list();
        }
      }
      const stub = { id: path, filename: path, loaded: true, exports: { SerialPort: SerialPortOnDemand }, children: [], paths: [] };
      require.cache[path] = stub as unknown as NodeJS.Module;
    }
  } catch {
    // serialport not installed: modbus-serial copes (its serial classes are optional).
  }
  try {
    return require("modbus-serial") as typeof ModbusSerial;
  } finally {
    if (standIn) delete require.cache[standIn];
  }
}

/** modbus-serial's module (its export is the ModbusRTU class). */
export const modbusSerial = load();
