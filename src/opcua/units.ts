/**
 * Engineering units as OPC UA wants them (EUInformation): the UNECE Recommendation 20 common
 * code as unitId, so a client can tell kWh from kvarh without parsing text. The codes come from
 * UN/CEFACT Rec 20 Rev 17 (Annex I); a unit not listed keeps its text with unitId −1, as the
 * specification allows (Part 8, 5.6.3).
 */
import type { EUInformation } from "node-opcua";
import type { Opcua } from "./load.js";

const REC20: Readonly<Record<string, readonly [code: string, description: string]>> = {
  V: ["VLT", "volt"],
  mV: ["2Z", "millivolt"],
  kV: ["KVT", "kilovolt"],
  A: ["AMP", "ampere"],
  mA: ["4K", "milliampere"],
  W: ["WTT", "watt"],
  kW: ["KWT", "kilowatt"],
  MW: ["MAW", "megawatt"],
  Wh: ["WHR", "watt hour"],
  kWh: ["KWH", "kilowatt hour"],
  MWh: ["MWH", "megawatt hour"],
  VA: ["D46", "volt - ampere"],
  kVA: ["KVA", "kilovolt - ampere"],
  var: ["D44", "var"],
  kvar: ["KVR", "kilovolt ampere (reactive)"],
  kvarh: ["K3", "kilovolt ampere (reactive) hour"],
  Hz: ["HTZ", "hertz"],
  "°C": ["CEL", "degree Celsius"],
  K: ["KEL", "kelvin"],
  "%": ["P1", "percent"],
  ppm: ["59", "part per million"],
  Pa: ["PAL", "pascal"],
  hPa: ["A97", "hectopascal"],
  kPa: ["KPA", "kilopascal"],
  bar: ["BAR", "bar [unit of pressure]"],
  mbar: ["MBR", "millibar"],
  lx: ["LUX", "lux"],
  s: ["SEC", "second [unit of time]"],
  ms: ["C26", "millisecond"],
  min: ["MIN", "minute [unit of time]"],
  h: ["HUR", "hour"],
  "m³": ["MTQ", "cubic metre"],
  "m³/h": ["MQH", "cubic metre per hour"],
  l: ["LTR", "litre"],
  "l/min": ["L2", "litre per minute"],
  "m/s": ["MTS", "metre per second"],
  "°": ["DD", "degree [unit of angle]"],
  rpm: ["RPM", "revolutions per minute"],
};

export function euInformation(ua: Opcua, unit: string): EUInformation {
  const known = REC20[unit];
  if (known) return ua.makeEUInformation(known[0], unit, known[1]);
  const eu = ua.makeEUInformation("", unit, unit);
  eu.unitId = -1;
  return eu;
}
