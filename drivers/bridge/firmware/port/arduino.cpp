/* Arduino / ESP32 port: Serial for the bytes, micros() extended to 64 bits, esp_random() or ADC
 * noise for the boot id, the eFuse MAC (ESP32) or a configured id as the unique id.
 * Not compiled in CI (no Arduino toolchain there); kept small and close to the POSIX port. */
#include "ebp_arduino.h"

#include <string.h>

static int ard_read(void *user, uint8_t *buf, size_t n) {
  ebp_arduino_t *a = (ebp_arduino_t *)user;
  size_t got = 0;
  while (got < n && a->serial->available() > 0) {
    int c = a->serial->read();
    if (c < 0) break;
    buf[got++] = (uint8_t)c;
  }
  return (int)got;
}

static int ard_write(void *user, const uint8_t *buf, size_t n) {
  ebp_arduino_t *a = (ebp_arduino_t *)user;
  size_t done = 0;
  while (done < n) done += a->serial->write(buf + done, n - done); /* blocks while the TX buffer is full */
  return (int)n;
}

static uint64_t ard_now(void *user) {
  ebp_arduino_t *a = (ebp_arduino_t *)user;
  uint32_t m = micros();
  if (m < a->last_micros) a->high++;
  a->last_micros = m;
  return ((uint64_t)a->high << 32) | m;
}

static uint32_t ard_random(void *user) {
  (void)user;
#if defined(ESP32)
  return esp_random();
#else
  uint32_t x = 0;
  for (int i = 0; i < 32; i++) x = (x << 1) ^ (uint32_t)(analogRead(A0) & 1) ^ (uint32_t)micros();
  return x;
#endif
}

static size_t ard_unique_id(void *user, uint8_t *buf, size_t max) {
  ebp_arduino_t *a = (ebp_arduino_t *)user;
#if defined(ESP32)
  uint64_t mac = ESP.getEfuseMac();
  size_t n = max < 6 ? max : 6;
  for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)(mac >> (8 * i));
  (void)a;
  return n;
#else
  size_t n = a->id_len < max ? a->id_len : max;
  memcpy(buf, a->id, n);
  return n;
#endif
}

void ebp_arduino_port(ebp_arduino_t *a, Stream *serial, const uint8_t *id, size_t id_len, ebp_port_t *port) {
  a->serial = serial;
  a->last_micros = micros();
  a->high = 0;
  a->id_len = id_len < sizeof a->id ? id_len : sizeof a->id;
  if (id && a->id_len) memcpy(a->id, id, a->id_len);
  port->user = a;
  port->read = ard_read;
  port->write = ard_write;
  port->now_us = ard_now;
  port->random32 = ard_random;
  port->unique_id = ard_unique_id;
}
