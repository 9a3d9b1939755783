// The part of i2c-bus 5.2.3 (CommonJS, no bundled types) that NodeI2cBus uses.
declare module "i2c-bus" {
  export interface BytesRead {
    bytesRead: number;
    buffer: Buffer;
  }
  export interface BytesWritten {
    bytesWritten: number;
    buffer: Buffer;
  }
  export interface PromisifiedBus {
    i2cRead(address: number, length: number, buffer: Buffer): Promise<BytesRead>;
    i2cWrite(address: number, length: number, buffer: Buffer): Promise<BytesWritten>;
    writeQuick(address: number, bit: number): Promise<void>;
    receiveByte(address: number): Promise<number>;
    close(): Promise<void>;
  }
  export function openPromisified(busNumber: number, options?: { forceAccess?: boolean }): Promise<PromisifiedBus>;
}
