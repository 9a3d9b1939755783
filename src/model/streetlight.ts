/** The sun events a streetlight switches on (dusk) and off (dawn) at: config and control both speak them. */
export const ON_EVENTS = ["sunset", "civil_dusk"] as const;
export const OFF_EVENTS = ["sunrise", "civil_dawn"] as const;
export type OnEvent = (typeof ON_EVENTS)[number];
export type OffEvent = (typeof OFF_EVENTS)[number];
