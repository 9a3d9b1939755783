/* Arduino / ESP32 port of the ebp core over a Stream (Serial, Serial1...). Not compiled in CI. */
#ifndef EBP_ARDUINO_H
#define EBP_ARDUINO_H

#include <Arduino.h>

#include "ebp.h"

struct ebp_arduino_t {
  Stream *serial;
  uint32_t last_micros; /* micros() wraps every 71.6 min: extended to 64 bits here */
  uint32_t high;
  uint8_t id[16];       /* unique id when the chip has none we can read (AVR) */
  size_t id_len;
};

/* Bind `port` to `serial`; `id`/`id_len`: fallback unique id (ignored on ESP32: eFuse MAC). */
void ebp_arduino_port(ebp_arduino_t *a, Stream *serial, const uint8_t *id, size_t id_len, ebp_port_t *port);

#endif
