/* COBS, frames and the streaming receiver (docs/firmware-bridge.md sections 2 and 3). */
#include <string.h>

#include "ebp.h"

size_t ebp_cobs_encode(const uint8_t *src, size_t len, uint8_t *dst, size_t cap) {
  size_t out = 1, code_pos = 0, i;
  uint8_t code = 1;
  if (cap < 1) return 0;
  for (i = 0; i < len; i++) {
    if (src[i] == 0) {
      dst[code_pos] = code;
      if (out >= cap) return 0;
      code_pos = out++;
      code = 1;
    } else {
      if (out >= cap) return 0;
      dst[out++] = src[i];
      code++;
      /* a full block of 254 bytes: close it; a new block only if data follows */
      if (code == 0xFF && i + 1 < len) {
        dst[code_pos] = code;
        if (out >= cap) return 0;
        code_pos = out++;
        code = 1;
      }
    }
  }
  dst[code_pos] = code;
  return out;
}

int ebp_cobs_decode(const uint8_t *src, size_t len, uint8_t *dst, size_t cap) {
  size_t i = 0, o = 0;
  while (i < len) {
    uint8_t code = src[i++], k;
    if (code == 0) return -1;
    for (k = 1; k < code; k++) {
      uint8_t b;
      if (i >= len) return -1;
      b = src[i++];
      if (b == 0 || o >= cap) return -1;
      dst[o++] = b;
    }
    if (code < 0xFF && i < len) {
      if (o >= cap) return -1;
      dst[o++] = 0;
    }
  }
  return (int)o;
}

static void put16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)(v & 0xFF);
  p[1] = (uint8_t)(v >> 8);
}
static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t get32(const uint8_t *p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

size_t ebp_frame_encode(const ebp_hdr_t *h, const uint8_t *payload, size_t plen, uint8_t *out, size_t cap) {
  uint32_t crc;
  size_t n = EBP_HEADER + plen;
  if (n + EBP_TRAILER > cap) return 0;
  out[0] = h->ver;
  out[1] = h->chan;
  out[2] = h->flags;
  put16(out + 3, h->seq);
  put16(out + 5, h->ack);
  if (plen) memmove(out + EBP_HEADER, payload, plen);
  crc = ebp_crc32(0, out, n);
  out[n] = (uint8_t)crc;
  out[n + 1] = (uint8_t)(crc >> 8);
  out[n + 2] = (uint8_t)(crc >> 16);
  out[n + 3] = (uint8_t)(crc >> 24);
  return n + EBP_TRAILER;
}

ebp_frame_status_t ebp_frame_decode(const uint8_t *frame, size_t len, ebp_hdr_t *h, const uint8_t **payload, size_t *plen) {
  if (len < EBP_MIN_FRAME) return EBP_FRAME_SHORT;
  if (ebp_crc32(0, frame, len - EBP_TRAILER) != get32(frame + len - EBP_TRAILER)) return EBP_FRAME_CRC;
  h->ver = frame[0];
  h->chan = frame[1];
  h->flags = frame[2];
  h->seq = get16(frame + 3);
  h->ack = get16(frame + 5);
  if (h->ver != EBP_PROTOCOL) return EBP_FRAME_BAD_VERSION;
  *payload = frame + EBP_HEADER;
  *plen = len - EBP_MIN_FRAME;
  return EBP_FRAME_OK;
}

size_t ebp_wire_encode(const uint8_t *frame, size_t len, int lead_delim, uint8_t *out, size_t cap) {
  size_t o = 0, n;
  if (lead_delim) {
    if (cap < 1) return 0;
    out[o++] = 0;
  }
  n = ebp_cobs_encode(frame, len, out + o, cap - o);
  if (n == 0) return 0;
  o += n;
  if (o >= cap) return 0;
  out[o++] = 0;
  return o;
}

void ebp_rx_set_max_frame(ebp_rx_t *rx, size_t max_frame) {
  size_t limit = EBP_COBS_MAX(max_frame);
  rx->max_frame = max_frame;
  rx->limit = limit < sizeof rx->buf ? limit : sizeof rx->buf;
}

void ebp_rx_init(ebp_rx_t *rx, size_t max_frame) {
  memset(rx, 0, sizeof *rx);
  ebp_rx_set_max_frame(rx, max_frame);
}

ebp_rx_result_t ebp_rx_byte(ebp_rx_t *rx, uint8_t b) {
  int n;
  ebp_frame_status_t st;
  if (b != 0) {
    if (rx->overflow) return EBP_RX_NONE;
    if (rx->len >= rx->limit) { /* dropped as it grows, not buffered */
      rx->overflow = 1;
      rx->len = 0;
      rx->c.oversized++;
      return EBP_RX_DROPPED;
    }
    rx->buf[rx->len++] = b;
    return EBP_RX_NONE;
  }
  if (rx->overflow) {
    rx->overflow = 0;
    return EBP_RX_NONE;
  }
  if (rx->len == 0) return EBP_RX_NONE; /* two delimiters in a row */
  n = ebp_cobs_decode(rx->buf, rx->len, rx->buf, sizeof rx->buf);
  rx->len = 0;
  if (n > 0 && (size_t)n > rx->max_frame) { /* fits the encoded limit but not max_frame */
    rx->c.oversized++;
    return EBP_RX_DROPPED;
  }
  if (n < EBP_MIN_FRAME) {
    rx->c.garbage++;
    return EBP_RX_DROPPED;
  }
  st = ebp_frame_decode(rx->buf, (size_t)n, &rx->hdr, &rx->payload, &rx->plen);
  if (st == EBP_FRAME_CRC) {
    rx->c.crc_errors++;
    return EBP_RX_CRC;
  }
  if (st == EBP_FRAME_BAD_VERSION) {
    rx->c.bad_version++;
    return EBP_RX_DROPPED;
  }
  rx->c.frames++;
  return EBP_RX_FRAME;
}
