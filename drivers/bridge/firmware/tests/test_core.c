/*
 * Tests of the ebp core: CRC, COBS, frames, the streaming receiver, the golden frames of
 * drivers/bridge/golden.json (decoded and re-encoded byte-exact), and a loopback of a board
 * context against a minimal gateway peer over an in-memory lossy channel with a simulated clock.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pb_decode.h>
#include <pb_encode.h>

#include "bridge.pb.h"
#include "ebp.h"
#include "ebp_schema.h"
#include "golden_vectors.h"

static int failures, checks;
#define CHECK(cond)                                                                                                    \
  do {                                                                                                                 \
    checks++;                                                                                                          \
    if (!(cond)) {                                                                                                     \
      failures++;                                                                                                      \
      fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                                                  \
    }                                                                                                                  \
  } while (0)

static uint32_t lcg_state = 12345;
static uint32_t rnd(void) {
  lcg_state = lcg_state * 1664525u + 1013904223u;
  return lcg_state >> 8;
}

static size_t unhex(const char *s, uint8_t *out, size_t cap) {
  size_t n = 0;
  while (s[0] && s[1] && n < cap) {
    unsigned v;
    if (sscanf(s, "%2x", &v) != 1) break;
    out[n++] = (uint8_t)v;
    s += 2;
  }
  return n;
}

/* ---- CRC ---------------------------------------------------------------------------------------- */
static void test_crc(void) {
  const uint8_t v[] = "123456789";
  CHECK(ebp_crc32(0, v, 9) == 0xCBF43926u);
  CHECK(ebp_crc32(ebp_crc32(0, v, 4), v + 4, 5) == 0xCBF43926u);
  CHECK(ebp_crc32(0, v, 0) == 0);
}

/* ---- COBS --------------------------------------------------------------------------------------- */
static void cobs_vector(const uint8_t *in, size_t n, const uint8_t *expect, size_t en) {
  uint8_t enc[600], dec[600];
  size_t m = ebp_cobs_encode(in, n, enc, sizeof enc);
  int d;
  CHECK(m == en && memcmp(enc, expect, en) == 0);
  d = ebp_cobs_decode(enc, m, dec, sizeof dec);
  CHECK(d == (int)n && memcmp(dec, in, n) == 0);
}

static void test_cobs(void) {
  uint8_t in[600], exp[600], enc[1200], dec[1200];
  size_t i, n;
  /* Wikipedia's examples */
  { const uint8_t a[] = {0x00}, e[] = {0x01, 0x01}; cobs_vector(a, 1, e, 2); }
  { const uint8_t a[] = {0x00, 0x00}, e[] = {0x01, 0x01, 0x01}; cobs_vector(a, 2, e, 3); }
  { const uint8_t a[] = {0x00, 0x11, 0x00}, e[] = {0x01, 0x02, 0x11, 0x01}; cobs_vector(a, 3, e, 4); }
  { const uint8_t a[] = {0x11, 0x22, 0x00, 0x33}, e[] = {0x03, 0x11, 0x22, 0x02, 0x33}; cobs_vector(a, 4, e, 5); }
  { const uint8_t a[] = {0x11, 0x22, 0x33, 0x44}, e[] = {0x05, 0x11, 0x22, 0x33, 0x44}; cobs_vector(a, 4, e, 5); }
  { const uint8_t a[] = {0x11, 0x00, 0x00, 0x00}, e[] = {0x02, 0x11, 0x01, 0x01, 0x01}; cobs_vector(a, 4, e, 5); }
  { const uint8_t e[] = {0x01}; cobs_vector(in, 0, e, 1); }
  /* 254 non-zero bytes 01..FE: FF 01..FE, no trailing code */
  for (i = 0; i < 254; i++) in[i] = (uint8_t)(i + 1);
  exp[0] = 0xFF;
  memcpy(exp + 1, in, 254);
  cobs_vector(in, 254, exp, 255);
  /* 00 01..FE (255 bytes): 01 FF 01..FE */
  in[0] = 0;
  for (i = 1; i < 255; i++) in[i] = (uint8_t)i;
  exp[0] = 0x01;
  exp[1] = 0xFF;
  memcpy(exp + 2, in + 1, 254);
  cobs_vector(in, 255, exp, 256);
  /* 01..FF (255 bytes): FF 01..FE 02 FF */
  for (i = 0; i < 255; i++) in[i] = (uint8_t)(i + 1);
  exp[0] = 0xFF;
  memcpy(exp + 1, in, 254);
  exp[255] = 0x02;
  exp[256] = 0xFF;
  cobs_vector(in, 255, exp, 257);
  /* 02..FF 00 (255 bytes): FF 02..FF 01 01 */
  for (i = 0; i < 254; i++) in[i] = (uint8_t)(i + 2);
  in[254] = 0;
  exp[0] = 0xFF;
  memcpy(exp + 1, in, 254);
  exp[255] = 0x01;
  exp[256] = 0x01;
  cobs_vector(in, 255, exp, 257);
  /* 03..FF 00 01 (255 bytes): FE 03..FF 02 01 */
  for (i = 0; i < 253; i++) in[i] = (uint8_t)(i + 3);
  in[253] = 0;
  in[254] = 1;
  exp[0] = 0xFE;
  memcpy(exp + 1, in, 253);
  exp[254] = 0x02;
  exp[255] = 0x01;
  cobs_vector(in, 255, exp, 256);
  /* the decoder also takes the long form FF .. 01 of a final 254-byte block */
  for (i = 0; i < 254; i++) in[i] = (uint8_t)(i + 1);
  enc[0] = 0xFF;
  memcpy(enc + 1, in, 254);
  enc[255] = 0x01;
  CHECK(ebp_cobs_decode(enc, 256, dec, sizeof dec) == 254 && memcmp(dec, in, 254) == 0);
  /* all-zero data of every length, and random data (zero-heavy and zero-free), round trip */
  for (n = 0; n <= 1100; n += (n < 520 ? 1 : 7)) {
    int kind;
    for (kind = 0; kind < 3; kind++) {
      static uint8_t src[1200];
      size_t m;
      for (i = 0; i < n; i++) src[i] = kind == 0 ? 0 : kind == 1 ? (uint8_t)(rnd() % 4 ? rnd() : 0) : (uint8_t)(1 + rnd() % 255);
      m = ebp_cobs_encode(src, n, enc, sizeof enc);
      CHECK(m > 0 && m <= EBP_COBS_MAX(n) && memchr(enc, 0, m) == NULL);
      CHECK(ebp_cobs_decode(enc, m, dec, sizeof dec) == (int)n && memcmp(dec, src, n) == 0);
      CHECK(ebp_cobs_decode(enc, m, enc, sizeof enc) == (int)n && memcmp(enc, src, n) == 0); /* in place */
    }
  }
  /* invalid: a code running past the end, a zero inside, too small a buffer */
  { const uint8_t b[] = {0x05, 0x11, 0x22}; CHECK(ebp_cobs_decode(b, 3, dec, sizeof dec) == -1); }
  { const uint8_t b[] = {0x03, 0x11, 0x00}; CHECK(ebp_cobs_decode(b, 3, dec, sizeof dec) == -1); }
  { const uint8_t b[] = {0x05, 0x11, 0x22, 0x33, 0x44}; CHECK(ebp_cobs_decode(b, 5, dec, 3) == -1); }
  CHECK(ebp_cobs_encode(in, 10, enc, 5) == 0);
}

/* ---- frames and receiver ------------------------------------------------------------------------ */
static void test_frames(void) {
  uint8_t frame[64], wire[128];
  const uint8_t payload[] = {0x22, 0x02, 0x08, 0x01};
  ebp_hdr_t h = {1, 1, EBP_F_REL | EBP_F_ACK, 0x1234, 0xABCD}, d;
  const uint8_t *p;
  size_t plen, n, w, i;
  ebp_rx_t rx;
  int frames = 0;

  n = ebp_frame_encode(&h, payload, sizeof payload, frame, sizeof frame);
  CHECK(n == 15);
  CHECK(frame[0] == 1 && frame[1] == 1 && frame[2] == 3 && frame[3] == 0x34 && frame[4] == 0x12 && frame[5] == 0xCD &&
        frame[6] == 0xAB);
  CHECK(ebp_frame_decode(frame, n, &d, &p, &plen) == EBP_FRAME_OK);
  CHECK(d.chan == 1 && d.flags == 3 && d.seq == 0x1234 && d.ack == 0xABCD && plen == 4 && memcmp(p, payload, 4) == 0);
  { /* a pure ack: chan 0, ACK, seq 0, ack 5, empty payload */
    ebp_hdr_t pa = {1, 0, EBP_F_ACK, 0, 5};
    uint32_t crc;
    CHECK(ebp_frame_encode(&pa, NULL, 0, frame, sizeof frame) == 11);
    crc = ebp_crc32(0, frame, 7);
    CHECK(frame[7] == (crc & 0xFF) && frame[10] == (crc >> 24));
  }
  n = ebp_frame_encode(&h, payload, sizeof payload, frame, sizeof frame);
  frame[8] ^= 0x10;
  CHECK(ebp_frame_decode(frame, n, &d, &p, &plen) == EBP_FRAME_CRC);
  frame[8] ^= 0x10;
  CHECK(ebp_frame_decode(frame, 10, &d, &p, &plen) == EBP_FRAME_SHORT);
  h.ver = 2;
  n = ebp_frame_encode(&h, payload, sizeof payload, frame, sizeof frame);
  CHECK(ebp_frame_decode(frame, n, &d, &p, &plen) == EBP_FRAME_BAD_VERSION);
  h.ver = 1;

  /* the receiver: banner text, a frame, two delimiters, a frame byte by byte, a bad CRC, an
   * oversized chunk, bad version, then a good frame again */
  ebp_rx_init(&rx, 256);
  {
    const char *banner = "ets Jun  8 2016 00:22:57\r\nrst:0x1 (POWERON_RESET)\r\n";
    for (i = 0; banner[i]; i++) frames += ebp_rx_byte(&rx, (uint8_t)banner[i]) == EBP_RX_FRAME;
  }
  n = ebp_frame_encode(&h, payload, sizeof payload, frame, sizeof frame);
  w = ebp_wire_encode(frame, n, 1, wire, sizeof wire);
  CHECK(wire[0] == 0 && wire[w - 1] == 0);
  for (i = 0; i < w; i++) {
    if (ebp_rx_byte(&rx, wire[i]) == EBP_RX_FRAME) {
      frames++;
      CHECK(rx.hdr.seq == 0x1234 && rx.plen == 4 && memcmp(rx.payload, payload, 4) == 0);
    }
  }
  CHECK(frames == 1 && rx.c.garbage == 1);
  CHECK(ebp_rx_byte(&rx, 0) == EBP_RX_NONE && ebp_rx_byte(&rx, 0) == EBP_RX_NONE);
  w = ebp_wire_encode(frame, n, 0, wire, sizeof wire);
  wire[5] ^= 0x01;
  for (i = 0; i < w; i++) ebp_rx_byte(&rx, wire[i]);
  CHECK(rx.c.crc_errors == 1);
  for (i = 0; i < 300; i++) ebp_rx_byte(&rx, 0x41);
  ebp_rx_byte(&rx, 0);
  CHECK(rx.c.oversized == 1 && rx.c.garbage == 1);
  h.ver = 7;
  n = ebp_frame_encode(&h, payload, sizeof payload, frame, sizeof frame);
  w = ebp_wire_encode(frame, n, 0, wire, sizeof wire);
  for (i = 0; i < w; i++) ebp_rx_byte(&rx, wire[i]);
  CHECK(rx.c.bad_version == 1);
  h.ver = 1;
  n = ebp_frame_encode(&h, payload, sizeof payload, frame, sizeof frame);
  w = ebp_wire_encode(frame, n, 0, wire, sizeof wire);
  frames = 0;
  for (i = 0; i < w; i++) frames += ebp_rx_byte(&rx, wire[i]) == EBP_RX_FRAME;
  CHECK(frames == 1 && rx.c.frames == 2);

  /* random bytes and random corruption never crash the receiver; what passes the CRC is sane */
  {
    static uint8_t junk[20000];
    for (i = 0; i < sizeof junk; i++) junk[i] = (uint8_t)(rnd() % 8 == 0 ? 0 : rnd());
    ebp_rx_init(&rx, 1024);
    for (i = 0; i < sizeof junk; i++)
      if (ebp_rx_byte(&rx, junk[i]) == EBP_RX_FRAME) CHECK(rx.plen + EBP_MIN_FRAME <= 1024 + 5);
    CHECK(rx.c.garbage > 0);
  }
}

/* ---- Readings.readings is a nanopb callback field (bridge.options): collected into a list ----- */
#define RLIST_CAP 256
typedef struct {
  edge_agent_bridge_v1_Reading r[RLIST_CAP];
  size_t n;
} rlist_t;

static bool rlist_decode(pb_istream_t *s, const pb_field_t *f, void **arg) {
  rlist_t *l = (rlist_t *)*arg;
  edge_agent_bridge_v1_Reading r;
  (void)f;
  memset(&r, 0, sizeof r);
  if (!pb_decode(s, edge_agent_bridge_v1_Reading_fields, &r) || l->n >= RLIST_CAP) return false;
  l->r[l->n++] = r;
  return true;
}

static bool rlist_encode(pb_ostream_t *s, const pb_field_t *f, void *const *arg) {
  const rlist_t *l = (const rlist_t *)*arg;
  size_t i;
  for (i = 0; i < l->n; i++)
    if (!pb_encode_tag_for_field(s, f) || !pb_encode_submessage(s, edge_agent_bridge_v1_Reading_fields, &l->r[i])) return false;
  return true;
}

/* Decode a Telemetry envelope; the readings of a Readings body go to `l`. Our envelopes hold one
 * field (the oneof member), so a Readings body is decoded from its substream with the callback
 * set (nanopb clears a oneof member before decoding it, callbacks included). */
static bool decode_telemetry(const uint8_t *p, size_t n, edge_agent_bridge_v1_Telemetry *t, rlist_t *l) {
  pb_istream_t is = pb_istream_from_buffer(p, n);
  memset(t, 0, sizeof *t);
  l->n = 0;
  if (n > 0 && p[0] == ((edge_agent_bridge_v1_Telemetry_readings_tag << 3) | PB_WT_STRING)) {
    pb_wire_type_t wt;
    uint32_t tag;
    bool eof, ok;
    pb_istream_t sub;
    if (!pb_decode_tag(&is, &wt, &tag, &eof) || !pb_make_string_substream(&is, &sub)) return false;
    t->which_body = edge_agent_bridge_v1_Telemetry_readings_tag;
    t->body.readings.readings.funcs.decode = rlist_decode;
    t->body.readings.readings.arg = l;
    ok = pb_decode(&sub, edge_agent_bridge_v1_Readings_fields, &t->body.readings);
    if (!pb_close_string_substream(&is, &sub) || !ok) return false;
    return is.bytes_left == 0;
  }
  return pb_decode(&is, edge_agent_bridge_v1_Telemetry_fields, t);
}

/* ---- golden frames ------------------------------------------------------------------------------ */
static int reencode_payload(int chan, const uint8_t *p, size_t n, uint8_t *out, size_t cap, size_t *outn) {
  static union {
    edge_agent_bridge_v1_Link l;
    edge_agent_bridge_v1_Telemetry t;
    edge_agent_bridge_v1_Commands c;
    edge_agent_bridge_v1_Log g;
  } m;
  static rlist_t readings;
  const pb_msgdesc_t *f = chan == 0 ? edge_agent_bridge_v1_Link_fields
                        : chan == 1 ? edge_agent_bridge_v1_Telemetry_fields
                        : chan == 2 ? edge_agent_bridge_v1_Commands_fields
                        : chan == 3 ? edge_agent_bridge_v1_Log_fields
                                    : NULL;
  pb_istream_t is = pb_istream_from_buffer(p, n);
  pb_ostream_t os = pb_ostream_from_buffer(out, cap);
  if (!f) return 0; /* not protobuf (management) */
  if (chan == 1) {
    if (!decode_telemetry(p, n, &m.t, &readings)) return -1;
    if (m.t.which_body == edge_agent_bridge_v1_Telemetry_readings_tag) {
      m.t.body.readings.readings.funcs.encode = rlist_encode;
      m.t.body.readings.readings.arg = &readings;
    }
  } else if (!pb_decode(&is, f, &m)) {
    return -1;
  }
  if (!pb_encode(&os, f, &m)) return -2;
  *outn = os.bytes_written;
  return 1;
}

static void test_golden(void) {
  int i, done = 0;
  if (!GOLDEN_PRESENT) {
    printf("golden frames: skipped (drivers/bridge/golden.json not present)\n");
    return;
  }
  for (i = 0; i < N_GOLDEN; i++) {
    const golden_t *g = &golden[i];
    static uint8_t wire[4096], payload[2048], frame[2048], re[4096], pb[2048];
    size_t wn = unhex(g->wire_hex, wire, sizeof wire), pn = unhex(g->payload_hex, payload, sizeof payload), k, fn, rn, pbn = 0;
    ebp_rx_t rx;
    int frames = 0, ok = 1, r;
    ebp_hdr_t h;
    ebp_rx_init(&rx, EBP_MAX_FRAME);
    for (k = 0; k < wn; k++) {
      if (ebp_rx_byte(&rx, wire[k]) == EBP_RX_FRAME) {
        frames++;
        if (rx.hdr.chan != g->chan || rx.hdr.flags != g->flags || rx.hdr.seq != g->seq || rx.hdr.ack != g->ack) ok = 0;
        if (rx.plen != pn || memcmp(rx.payload, payload, pn) != 0) ok = 0;
      }
    }
    if (frames != 1 || !ok) {
      fprintf(stderr, "FAIL golden %s: decoded %d frame(s), header/payload %s\n", g->name, frames, ok ? "match" : "differ");
      failures++;
      continue;
    }
    h.ver = 1;
    h.chan = (uint8_t)g->chan;
    h.flags = (uint8_t)g->flags;
    h.seq = (uint16_t)g->seq;
    h.ack = (uint16_t)g->ack;
    fn = ebp_frame_encode(&h, payload, pn, frame, sizeof frame);
    rn = ebp_wire_encode(frame, fn, wire[0] == 0, re, sizeof re);
    if (rn != wn || memcmp(re, wire, wn) != 0) {
      fprintf(stderr, "FAIL golden %s: re-encoded wire differs\n", g->name);
      failures++;
      continue;
    }
    r = reencode_payload(g->chan, payload, pn, pb, sizeof pb, &pbn);
    if (r < 0 || (r == 1 && (pbn != pn || memcmp(pb, payload, pn) != 0))) {
      fprintf(stderr, "FAIL golden %s: nanopb %s the payload\n", g->name, r < 0 ? "cannot decode/encode" : "re-encodes differently");
      failures++;
      continue;
    }
    checks++;
    done++;
  }
  printf("golden frames: %d of %d decoded and re-encoded byte-exact (frame and nanopb payload)\n", done, N_GOLDEN);
}

/* ---- loopback: board core against a minimal gateway over a lossy in-memory link ---------------- */
#define QCAP 262144
#define QCHUNKS 4096
typedef struct {
  uint8_t buf[QCAP];
  size_t head, len;
  /* A serial line (sim_t.ns_per_byte > 0): the bytes of each write go out one after another, each
   * arriving when its last bit is on the wire; `hold_until_us`: nothing arrives before then. */
  uint64_t pushed, popped, free_at_ns, hold_until_us;
  struct {
    uint64_t first, start_ns;
  } chunk[QCHUNKS];
  size_t ch_head, ch_len;
} queue_t;

typedef struct {
  uint64_t now_us;
  queue_t to_board, to_gw;
  unsigned drop_pct, flip_pct; /* per frame written, both directions */
  int cut;                     /* link cut: everything is lost */
  uint32_t dropped, flipped;
  uint32_t ns_per_byte;        /* 0: bytes arrive at once; 86806: 115200 baud 8N1 (10 bits a byte) */
} sim_t;

static void q_push(sim_t *s, queue_t *q, const uint8_t *b, size_t n) {
  uint8_t tmp[4096];
  size_t i;
  if (s->cut) return;
  if (s->drop_pct && rnd() % 100 < s->drop_pct) {
    s->dropped++;
    return;
  }
  if (n > sizeof tmp) n = sizeof tmp;
  memcpy(tmp, b, n);
  if (s->flip_pct && n > 2 && rnd() % 100 < s->flip_pct) {
    tmp[1 + rnd() % (n - 2)] ^= (uint8_t)(1u << (rnd() % 8));
    s->flipped++;
  }
  if (s->ns_per_byte) {
    uint64_t now_ns = s->now_us * 1000u, start = q->free_at_ns > now_ns ? q->free_at_ns : now_ns;
    if (q->len + n > QCAP || q->ch_len == QCHUNKS) {
      fprintf(stderr, "FAIL: simulated line buffer full\n");
      failures++;
      return;
    }
    q->chunk[(q->ch_head + q->ch_len++) % QCHUNKS].first = q->pushed;
    q->chunk[(q->ch_head + q->ch_len - 1) % QCHUNKS].start_ns = start;
    q->free_at_ns = start + (uint64_t)n * s->ns_per_byte;
  }
  for (i = 0; i < n && q->len < QCAP; i++) q->buf[(q->head + q->len++) % QCAP] = tmp[i];
  q->pushed += i;
}
/* The byte at q->popped has arrived (always, without a line). */
static int q_arrived(const sim_t *s, queue_t *q) {
  if (s->now_us < q->hold_until_us) return 0;
  if (!s->ns_per_byte) return 1;
  while (q->ch_len > 1 && q->chunk[(q->ch_head + 1) % QCHUNKS].first <= q->popped) {
    q->ch_head = (q->ch_head + 1) % QCHUNKS;
    q->ch_len--;
  }
  if (q->ch_len == 0) return 0;
  return q->chunk[q->ch_head].start_ns + (q->popped - q->chunk[q->ch_head].first + 1) * s->ns_per_byte <= s->now_us * 1000u;
}
static size_t q_pop(const sim_t *s, queue_t *q, uint8_t *b, size_t n) {
  size_t i;
  for (i = 0; i < n && q->len && q_arrived(s, q); i++) {
    b[i] = q->buf[q->head];
    q->head = (q->head + 1) % QCAP;
    q->len--;
    q->popped++;
  }
  return i;
}

static int b_read(void *u, uint8_t *b, size_t n) { return (int)q_pop(u, &((sim_t *)u)->to_board, b, n); }
static int b_write(void *u, const uint8_t *b, size_t n) {
  q_push(u, &((sim_t *)u)->to_gw, b, n);
  return (int)n;
}
static uint64_t b_now(void *u) { return ((sim_t *)u)->now_us; }
static uint32_t b_rand(void *u) {
  (void)u;
  return rnd();
}
static size_t b_uid(void *u, uint8_t *b, size_t m) {
  const uint8_t id[6] = {0xA4, 0xCF, 0x12, 0x34, 0x56, 0x78};
  (void)u;
  (void)m;
  memcpy(b, id, 6);
  return 6;
}

/* The gateway side, as little as the spec allows. */
#define MAXSEQ 16384
static uint32_t lb_max_frame = 512; /* the gateway's HelloReply.max_frame */
static uint32_t lb_window = 4;      /* the gateway's HelloReply.window */
typedef struct {
  sim_t *sim;
  ebp_rx_t rx;
  uint16_t expected, next_seq;
  int have_rel, up, hello_seen, describe_complete;
  uint32_t boot_id, schema;
  struct {
    uint8_t chan;
    uint16_t seq;
    size_t len;
    uint8_t p[512];
  } out[8];
  int n_out;
  uint64_t rto_at, hb_at, hreq_at;
  uint32_t got[MAXSEQ]; /* readings received per board sequence (this boot) */
  uint32_t stored_upto;
  int results[8];
  double readback[8];
  int ack_pending;
  uint32_t described, describe_groups;
  uint32_t old_boot_readings;
  uint32_t rd_frames, rd_count, rd_max_frame; /* Readings frames of this boot: count, readings, largest frame */
  int silent;            /* answer nothing (a gateway that went away) */
  uint32_t hellos, sessions;
} gw_t;

static void gw_write(gw_t *g, uint8_t chan, uint8_t flags, uint16_t seq, const uint8_t *p, size_t n) {
  uint8_t frame[600], wire[700];
  ebp_hdr_t h = {1, chan, flags, seq, 0};
  size_t fn, wn;
  if (g->have_rel) {
    h.flags |= EBP_F_ACK;
    h.ack = (uint16_t)(g->expected - 1);
  }
  fn = ebp_frame_encode(&h, p, n, frame, sizeof frame);
  wn = ebp_wire_encode(frame, fn, 1, wire, sizeof wire);
  q_push(g->sim, &g->sim->to_board, wire, wn);
}

static void gw_send_rel(gw_t *g, uint8_t chan, const pb_msgdesc_t *f, const void *msg) {
  pb_ostream_t os;
  if (g->n_out >= 8) return;
  os = pb_ostream_from_buffer(g->out[g->n_out].p, sizeof g->out[0].p);
  if (!pb_encode(&os, f, msg)) return;
  g->out[g->n_out].chan = chan;
  g->out[g->n_out].seq = g->next_seq++;
  g->out[g->n_out].len = os.bytes_written;
  if (g->n_out == 0) g->rto_at = g->sim->now_us + 300000;
  gw_write(g, chan, EBP_F_REL, g->out[g->n_out].seq, g->out[g->n_out].p, g->out[g->n_out].len);
  g->n_out++;
}

static void gw_send_link(gw_t *g, const edge_agent_bridge_v1_Link *l) {
  uint8_t p[200];
  pb_ostream_t os = pb_ostream_from_buffer(p, sizeof p);
  pb_encode(&os, edge_agent_bridge_v1_Link_fields, l);
  gw_write(g, 0, 0, 0, p, os.bytes_written);
}

static void gw_command(gw_t *g, uint32_t id, uint32_t point, int is_bool, double v) {
  edge_agent_bridge_v1_Commands c;
  memset(&c, 0, sizeof c);
  c.which_body = edge_agent_bridge_v1_Commands_command_tag;
  c.body.command.id = id;
  c.body.command.point = point;
  if (is_bool) {
    c.body.command.which_value = edge_agent_bridge_v1_Command_flag_tag;
    c.body.command.value.flag = v != 0;
  } else {
    c.body.command.which_value = edge_agent_bridge_v1_Command_number_tag;
    c.body.command.value.number = v;
  }
  gw_send_rel(g, 2, edge_agent_bridge_v1_Commands_fields, &c);
}

static void gw_deliver(gw_t *g, const ebp_hdr_t *h, const uint8_t *p, size_t n) {
  pb_istream_t is = pb_istream_from_buffer(p, n);
  if (h->chan == 1) {
    static edge_agent_bridge_v1_Telemetry t;
    static rlist_t rl;
    if (!decode_telemetry(p, n, &t, &rl)) return;
    if (t.which_body == edge_agent_bridge_v1_Telemetry_describe_tag) {
      pb_size_t i;
      for (i = 0; i < t.body.describe.points_count; i++)
        if (strcmp(t.body.describe.points[i].child, t.body.describe.child) == 0) g->described++;
      if (t.body.describe.complete) g->describe_groups++;
      if (t.body.describe.complete && t.body.describe.child[0]) g->describe_complete = 1;
    }
    if (t.which_body == edge_agent_bridge_v1_Telemetry_readings_tag && t.body.readings.boot_id == g->boot_id) {
      size_t i;
      g->rd_frames++;
      g->rd_count += (uint32_t)rl.n;
      if (n + EBP_MIN_FRAME > g->rd_max_frame) g->rd_max_frame = (uint32_t)(n + EBP_MIN_FRAME);
      for (i = 0; i < rl.n; i++) {
        uint32_t s = t.body.readings.first_seq + i;
        if (s < MAXSEQ) g->got[s]++;
      }
      while (g->stored_upto + 1 < MAXSEQ && g->got[g->stored_upto + 1]) g->stored_upto++;
      g->ack_pending = 1; /* "committed": acknowledged as soon as the window has room */
    } else if (t.which_body == edge_agent_bridge_v1_Telemetry_readings_tag) { /* an older boot (persisted ring) */
      static edge_agent_bridge_v1_Telemetry ack;
      g->old_boot_readings += (uint32_t)rl.n;
      memset(&ack, 0, sizeof ack);
      ack.which_body = edge_agent_bridge_v1_Telemetry_ack_tag;
      ack.body.ack.boot_id = t.body.readings.boot_id;
      ack.body.ack.upto_seq = t.body.readings.first_seq + (uint32_t)rl.n - 1;
      gw_send_rel(g, 1, edge_agent_bridge_v1_Telemetry_fields, &ack);
    }
  } else if (h->chan == 2) {
    edge_agent_bridge_v1_Commands c;
    if (!pb_decode(&is, edge_agent_bridge_v1_Commands_fields, &c)) return;
    if (c.which_body == edge_agent_bridge_v1_Commands_result_tag && c.body.result.id < 8) {
      g->results[c.body.result.id] = (int)c.body.result.status + 100;
      if (c.body.result.has_readback)
        g->readback[c.body.result.id] = c.body.result.readback.which_value == edge_agent_bridge_v1_Reading_flag_tag
                                            ? (double)c.body.result.readback.value.flag
                                            : c.body.result.readback.value.number;
    }
  }
}

static void gw_frame(gw_t *g, const ebp_hdr_t *h, const uint8_t *p, size_t n) {
  if (g->silent) return;
  if ((h->flags & EBP_F_ACK) && g->n_out) {
    int k = (uint16_t)(h->ack - g->out[0].seq + 1);
    if (k >= 1 && k <= g->n_out) {
      memmove(&g->out[0], &g->out[k], sizeof g->out[0] * (size_t)(g->n_out - k));
      g->n_out -= k;
      g->rto_at = g->sim->now_us + 300000;
    }
  }
  if (h->chan == 0 && (h->flags & EBP_F_REL) && n) { /* a Hello: new session */
    edge_agent_bridge_v1_Link l;
    pb_istream_t is = pb_istream_from_buffer(p, n);
    if (!pb_decode(&is, edge_agent_bridge_v1_Link_fields, &l) || l.which_body != edge_agent_bridge_v1_Link_hello_tag) return;
    g->hellos++;
    g->schema = l.body.hello.schema_hash;
    if (g->boot_id != l.body.hello.boot_id) {
      memset(g->got, 0, sizeof g->got);
      g->stored_upto = 0;
    }
    g->boot_id = l.body.hello.boot_id;
    g->expected = 1;
    g->have_rel = 1;
    g->n_out = 0;
    g->next_seq = 0;
    g->up = 1;
    g->sessions++;
    g->ack_pending = 0;
    g->described = g->describe_groups = 0;
    memset(&l, 0, sizeof l);
    l.which_body = edge_agent_bridge_v1_Link_hello_reply_tag;
    l.body.hello_reply.accepted = true;
    l.body.hello_reply.utc_us = 1764547200000000ull;
    l.body.hello_reply.max_frame = lb_max_frame;
    l.body.hello_reply.window = lb_window;
    l.body.hello_reply.heartbeat_ms = 1000;
    gw_send_rel(g, 0, edge_agent_bridge_v1_Link_fields, &l);
    memset(&l, 0, sizeof l);
    l.which_body = edge_agent_bridge_v1_Link_time_request_tag;
    l.body.time_request.t1_us = 1764547200000000ull;
    gw_send_link(g, &l);
    return;
  }
  if (!g->up || !(h->flags & EBP_F_REL)) return;
  if (h->seq == g->expected) {
    g->expected++;
    gw_deliver(g, h, p, n);
    gw_write(g, 0, 0, 0, NULL, 0); /* pure ack right away (the gateway may ack at once) */
  } else {
    uint16_t d = (uint16_t)(h->seq - g->expected);
    gw_write(g, 0, (d >= 1 && d <= 32767) ? EBP_F_NAK : 0, 0, NULL, 0); /* a gap: NAK; a duplicate: ack again */
  }
}

static void gw_step(gw_t *g) {
  uint8_t b[256];
  size_t n, i;
  while ((n = q_pop(g->sim, &g->sim->to_gw, b, sizeof b)) > 0)
    for (i = 0; i < n; i++)
      if (ebp_rx_byte(&g->rx, b[i]) == EBP_RX_FRAME) {
        ebp_hdr_t h = g->rx.hdr;
        gw_frame(g, &h, g->rx.payload, g->rx.plen);
      }
  if (g->silent) return;
  if (g->n_out && g->sim->now_us >= g->rto_at) {
    int k;
    for (k = 0; k < g->n_out; k++) gw_write(g, g->out[k].chan, EBP_F_REL, g->out[k].seq, g->out[k].p, g->out[k].len);
    g->rto_at = g->sim->now_us + 300000;
  }
  if (g->up && g->ack_pending && g->n_out < 8) {
    static edge_agent_bridge_v1_Telemetry ack;
    memset(&ack, 0, sizeof ack);
    ack.which_body = edge_agent_bridge_v1_Telemetry_ack_tag;
    ack.body.ack.boot_id = g->boot_id;
    ack.body.ack.upto_seq = g->stored_upto;
    gw_send_rel(g, 1, edge_agent_bridge_v1_Telemetry_fields, &ack);
    g->ack_pending = 0;
  }
  if (g->up && g->sim->now_us >= g->hb_at) {
    edge_agent_bridge_v1_Link l;
    memset(&l, 0, sizeof l);
    l.which_body = edge_agent_bridge_v1_Link_heartbeat_tag;
    l.body.heartbeat.uptime_us = g->sim->now_us;
    gw_send_link(g, &l);
    g->hb_at = g->sim->now_us + 1000000;
  }
  if (!g->up && g->sim->now_us >= g->hreq_at) {
    edge_agent_bridge_v1_Link l;
    memset(&l, 0, sizeof l);
    l.which_body = edge_agent_bridge_v1_Link_hello_request_tag;
    l.body.hello_request.protocol = 1;
    gw_send_link(g, &l);
    g->hreq_at = g->sim->now_us + 1000000;
  }
}

typedef struct {
  double setpoint;
  int led, up_events, lost_events;
} board_app_t;

static ebp_cmd_status_t lb_command(void *user, const ebp_point_t *pt, const ebp_value_t *v, ebp_value_t *rb, char *msg,
                                   size_t msz) {
  board_app_t *a = user;
  (void)msg;
  (void)msz;
  if (pt->id == 4) {
    a->setpoint = v->v.number;
    *rb = ebp_number(a->setpoint);
  } else {
    a->led = v->v.flag;
    *rb = ebp_bool(a->led);
  }
  return EBP_CMD_OK;
}
static void lb_event(void *user, ebp_event_t ev, uint32_t x, uint32_t y, const char *text) {
  board_app_t *a = user;
  (void)x;
  (void)y;
  (void)text;
  if (ev == EBP_EV_SESSION_UP) a->up_events++;
  if (ev == EBP_EV_SESSION_LOST) a->lost_events++;
}

static const ebp_point_t lb_points[] = {
    {1, "temperature", "°C", EBP_NUMBER, 0, 0, 0, NULL}, {2, "humidity", "%", EBP_NUMBER, 0, 0, 0, NULL},
    {3, "co2", "ppm", EBP_NUMBER, 0, 0, 0, NULL},         {4, "setpoint", "°C", EBP_NUMBER, 1, 5, 30, NULL},
    {5, "led", "", EBP_BOOL, 1, 0, 0, NULL},               {6, "battery", "V", EBP_NUMBER, 0, 0, 0, "node-7"},
    {7, "rssi", "dBm", EBP_NUMBER, 0, 0, 0, "node-7"},     {8, "door", "", EBP_BOOL, 0, 0, 0, "node-7"},
    {9, "reboot", "", EBP_ACTION, 1, 0, 0, "node-7"},      {10, "note", "", EBP_TEXT, 0, 0, 0, NULL},
};

static uint32_t lb_batch_us;
static int lb_burst; /* every reading recorded at once before the session (a board under load) */
static ebp_point_t many_points[30];
static char many_names[30][16];
static int lb_many;
static int loopback(const char *label, unsigned drop, unsigned flip, int cut_at_s, uint32_t total, uint32_t persisted) {
  static sim_t sim;
  static gw_t gw;
  static ebp_ctx_t ctx;
  static ebp_reading_t ring[2048];
  board_app_t app;
  ebp_config_t cfg;
  ebp_port_t port = {&sim, b_read, b_write, b_now, b_rand, b_uid};
  uint32_t recorded = 0, s, missing = 0, dup = 0;
  uint64_t next_rec = 0, end_us = 600000000ull;
  int fails0 = failures;

  memset(&sim, 0, sizeof sim);
  memset(&gw, 0, sizeof gw);
  memset(&app, 0, sizeof app);
  memset(&cfg, 0, sizeof cfg);
  sim.drop_pct = drop;
  sim.flip_pct = flip;
  gw.sim = &sim;
  ebp_rx_init(&gw.rx, 1024);
  cfg.hardware = "room-node/rev-c";
  cfg.firmware = "1.0.0";
  cfg.points = lb_points;
  cfg.n_points = sizeof lb_points / sizeof lb_points[0];
  cfg.ring = ring;
  cfg.ring_cap = sizeof ring / sizeof ring[0];
  cfg.on_command = lb_command;
  cfg.on_event = lb_event;
  cfg.user = &app;
  cfg.batch_us = lb_batch_us;
  if (lb_many) { /* 30 points: 20 own (ids 1..5 as usual, then 11..25), 10 of child node-9 */
    int i;
    for (i = 0; i < 30; i++) {
      many_points[i] = lb_points[i < 5 ? i : 0];
      if (i >= 5) {
        snprintf(many_names[i], sizeof many_names[i], "extra_%d", i);
        many_points[i].id = (uint32_t)(i + 6);
        many_points[i].name = many_names[i];
        many_points[i].writable = 0;
        many_points[i].child = (i % 3 == 0) ? "node-9" : NULL;
      }
    }
    cfg.points = many_points;
    cfg.n_points = 30;
  }
  if (persisted) { /* readings kept from an earlier boot (CAP_PERSISTENT_RING), sequences 41.. */
    uint32_t i;
    memset(ring, 0, sizeof ring);
    for (i = 0; i < persisted; i++) {
      ring[i].boot_id = 0x0B0B0B0Bu;
      ring[i].seq = 41 + i;
      ring[i].point = 1;
      ring[i].t_us = 1000000u * i;
      ring[i].value = ebp_number(i);
    }
    cfg.ring_count = persisted;
    cfg.capabilities = EBP_CAP_PERSISTENT_RING;
  }
  CHECK(ebp_init(&ctx, &cfg, &port) == 0);
  while (lb_burst && recorded < total) { /* numbers, some bools and some 32-character texts */
    if (recorded % 7 == 3)
      ebp_record(&ctx, 10, ebp_text("0123456789abcdefghijklmnopqrstuv"), EBP_GOOD);
    else if (recorded % 5 == 1)
      ebp_record(&ctx, 5, ebp_bool(recorded & 8), EBP_UNCERTAIN);
    else
      ebp_record(&ctx, 1 + recorded % 3, ebp_number(20.0 + recorded * 0.01), EBP_GOOD);
    recorded++;
  }
  while (sim.now_us < end_us) {
    if (recorded < total && sim.now_us >= next_rec) {
      ebp_record(&ctx, 1 + recorded % 3, ebp_number(20.0 + recorded * 0.01), EBP_GOOD);
      recorded++;
      next_rec = sim.now_us + 20000;
      if (recorded % 50 == 0) ebp_log(&ctx, EBP_LOG_INFO, "recorded %u", (unsigned)recorded);
    }
    if (cut_at_s && sim.now_us == (uint64_t)cut_at_s * 1000000u) sim.cut = 1, gw.silent = 1, gw.up = 0;
    if (cut_at_s && sim.now_us == (uint64_t)(cut_at_s + 8) * 1000000u) sim.cut = 0, gw.silent = 0;
    ebp_poll(&ctx);
    gw_step(&gw);
    if (gw.describe_complete && gw.results[1] == 0 && gw.n_out == 0) {
      gw_command(&gw, 1, 4, 0, 22.5);
      gw_command(&gw, 2, 4, 0, 99);
      gw_command(&gw, 3, 5, 1, 1);
      gw_command(&gw, 4, 1, 0, 1);
      gw_command(&gw, 5, 42, 0, 1);
      gw.results[1] = -1;
    }
    if (recorded == total && ebp_ring_used(&ctx) == 0 && gw.results[5] > 0 && sim.now_us > (uint64_t)(cut_at_s + 12) * 1000000u)
      break;
    sim.now_us += 1000;
  }
  for (s = 1; s <= total; s++) {
    if (gw.got[s] == 0) missing++;
    if (gw.got[s] > 1) dup++;
  }
  if (getenv("EBP_DEBUG")) {
    size_t i;
    fprintf(stderr, "state=%d n_out=%d peer_busy=%d busy=%d n_results=%d ring_count=%zu gw.up=%d gw.n_out=%d stored_upto=%u expected=%u gw.expected=%u next_seq=%u\n", ctx.state, ctx.n_out, ctx.peer_busy, ctx.busy, ctx.n_results, ctx.ring_count, gw.up, gw.n_out, gw.stored_upto, ctx.expected, gw.expected, ctx.next_seq);
    for (i = 0; i < ctx.ring_count && i < 5; i++) fprintf(stderr, " ring[%zu] seq=%u sent=%d acked=%d boot=%08x\n", i, ring[(ctx.ring_head+i)%2048].seq, ring[(ctx.ring_head+i)%2048].sent, ring[(ctx.ring_head+i)%2048].acked, ring[(ctx.ring_head+i)%2048].boot_id);
  }
  CHECK(sim.now_us < end_us);
  CHECK(missing == 0);
  CHECK(ebp_ring_used(&ctx) == 0);
  CHECK(gw.schema == EBP_SCHEMA_HASH);
  CHECK(gw.describe_complete && gw.described == cfg.n_points && gw.describe_groups == 2);
  CHECK(gw.results[1] == 100 + EBP_CMD_OK && gw.readback[1] == 22.5 && app.setpoint == 22.5);
  CHECK(gw.results[2] == 100 + EBP_CMD_REFUSED);
  CHECK(gw.results[3] == 100 + EBP_CMD_OK && gw.readback[3] == 1 && app.led == 1);
  CHECK(gw.results[4] == 100 + EBP_CMD_REFUSED);
  CHECK(gw.results[5] == 100 + EBP_CMD_UNKNOWN_POINT);
  if (!drop && !flip && !cut_at_s) CHECK(dup == 0 && ctx.c.retransmits == 0 && ctx.c.sessions == 1);
  if (cut_at_s) CHECK(app.lost_events >= 1 && app.up_events >= 2);
  if (persisted) CHECK(gw.old_boot_readings >= persisted);
  CHECK(gw.rd_max_frame <= lb_max_frame);
  if (lb_burst && !drop && !flip) { /* frames full: at most one short frame at the end */
    uint32_t per = (lb_max_frame - EBP_MIN_FRAME - 12) / 45 + 1; /* fewer than fit even if all were texts */
    CHECK(gw.rd_frames >= 1 && gw.rd_count / gw.rd_frames >= per && gw.rd_max_frame + 45 > lb_max_frame);
  }
  printf("loopback %-22s %6.1f s simulated: %u readings, %u received twice, %u frames sent, sessions %u, retransmits %u, "
         "NAKs sent %u/received %u, frames dropped %u, corrupted %u, crc errors %u/%u (board/gw), %.1f readings per frame %s\n",
         label, sim.now_us / 1e6, total, dup, ctx.c.tx_frames, ctx.c.sessions, ctx.c.retransmits, ctx.c.naks_sent, ctx.c.naks_received,
         sim.dropped, sim.flipped, ctx.rx.c.crc_errors, gw.rx.c.crc_errors, gw.rd_frames ? (double)gw.rd_count / gw.rd_frames : 0.0,
         failures == fails0 ? "ok" : "FAILED");
  return failures == fails0;
}

/* A board flooding a 115200-baud line with full windows of 1024-byte frames; once, the gateway's
 * acks arrive 450 ms late (an agent busy for a moment). A window of eight such frames takes 0.7 s
 * to go out, so a fixed 300 ms RTO (or one that returns to 300 ms on progress) resends whole
 * windows; an RTO that follows the measured round trip (RFC 6298) resends nothing. The TypeScript
 * twin is "on a slow line…" in test/unit/bridge-link.test.ts. */
static void test_slow_line(void) {
  static sim_t sim;
  static gw_t gw;
  static ebp_ctx_t ctx;
  static ebp_reading_t ring[2048];
  board_app_t app;
  ebp_config_t cfg;
  ebp_port_t port = {&sim, b_read, b_write, b_now, b_rand, b_uid};
  const uint32_t total = 12000;
  const uint64_t pause_at = 6000000u, pause_us = 450000u;
  uint32_t recorded = 0, s, missing = 0, dup = 0, rto_before = 0;
  int fails0 = failures, out_at_pause = -1;
  uint64_t done_at = 0;

  memset(&sim, 0, sizeof sim);
  memset(&gw, 0, sizeof gw);
  memset(&app, 0, sizeof app);
  memset(&cfg, 0, sizeof cfg);
  sim.ns_per_byte = 86806; /* 115200 baud, 8N1: 11,520 bytes/s */
  gw.sim = &sim;
  ebp_rx_init(&gw.rx, 1024);
  lb_max_frame = 1024;
  lb_window = 8;
  cfg.hardware = "room-node/rev-c";
  cfg.firmware = "1.0.0";
  cfg.points = lb_points;
  cfg.n_points = sizeof lb_points / sizeof lb_points[0];
  cfg.ring = ring;
  cfg.ring_cap = sizeof ring / sizeof ring[0];
  cfg.on_command = lb_command;
  cfg.on_event = lb_event;
  cfg.user = &app;
  CHECK(ebp_init(&ctx, &cfg, &port) == 0);
  while (sim.now_us < 120000000u) {
    /* more readings than the line carries: the ring never runs dry, every window is full */
    while (recorded < total && ebp_ring_used(&ctx) < 1024) {
      ebp_record(&ctx, 1 + recorded % 3, ebp_number(20.0 + recorded * 0.01), EBP_GOOD);
      recorded++;
    }
    if (sim.now_us == pause_at) {
      out_at_pause = ctx.n_out;
      rto_before = ctx.rto_us;
      sim.to_board.hold_until_us = sim.now_us + pause_us;
    }
    ebp_poll(&ctx);
    gw_step(&gw);
    if (recorded == total && ebp_ring_used(&ctx) == 0) {
      done_at = sim.now_us;
      break;
    }
    sim.now_us += 1000;
  }
  for (s = 1; s <= total; s++) {
    if (gw.got[s] == 0) missing++;
    if (gw.got[s] > 1) dup++;
  }
  CHECK(done_at > pause_at + pause_us);
  CHECK(missing == 0 && dup == 0);
  CHECK(out_at_pause == 8 && ctx.window == 8 && ctx.max_frame == 1024);
  /* full frames: a numeric reading stamped at a few seconds takes 18 bytes, 55 fit in 1024 */
  CHECK(gw.rd_count / gw.rd_frames >= 55 && gw.rd_max_frame + 18 > 1024);
  CHECK(ctx.c.retransmits == 0 && ctx.c.timeouts == 0 && ctx.c.sessions == 1);
  CHECK(ctx.rtt_samples > 100 && rto_before > EBP_RTO_INITIAL_US + 400000u && ctx.rto_us > EBP_RTO_INITIAL_US);
  printf("slow line 115200, window 8 x 1024 B, acks paused 450 ms: %u readings in %u frames in %.1f s simulated "
         "(%.0f readings/s), retransmits %u, timeouts %u, srtt %.0f ms, rttvar %.0f ms, rto %.0f ms (before the pause %.0f ms) %s\n",
         total, gw.rd_frames, done_at / 1e6, total / (done_at / 1e6), ctx.c.retransmits, ctx.c.timeouts, ctx.srtt_us / 1e3,
         ctx.rttvar_us / 1e3, ctx.rto_us / 1e3, rto_before / 1e3, failures == fails0 ? "ok" : "FAILED");
  lb_max_frame = 512;
  lb_window = 4;
}

/* Count the pure acks (channel 0, no payload, ACK) the board wrote since the last call. */
static int pure_acks_out(sim_t *sim, ebp_rx_t *rx, uint16_t *last_ack) {
  uint8_t b[256];
  size_t n, i;
  int acks = 0;
  while ((n = q_pop(sim, &sim->to_gw, b, sizeof b)) > 0)
    for (i = 0; i < n; i++)
      if (ebp_rx_byte(rx, b[i]) == EBP_RX_FRAME && rx->hdr.chan == 0 && rx->plen == 0 && (rx->hdr.flags & EBP_F_ACK)) {
        acks++;
        *last_ack = rx->hdr.ack;
      }
  return acks;
}

/* A board that receives much acknowledges at once when half the session's window of REL frames
 * is unacknowledged, and after 20 ms otherwise (spec section 4). */
static void test_half_window_ack(uint32_t window) {
  static sim_t sim;
  static ebp_ctx_t ctx;
  static ebp_reading_t ring[8];
  static gw_t gw;
  ebp_config_t cfg;
  ebp_port_t port = {&sim, b_read, b_write, b_now, b_rand, b_uid};
  ebp_rx_t rx;
  uint16_t ack = 0;
  uint32_t half = window / 2 ? window / 2 : 1, i;
  int fails0 = failures;
  memset(&sim, 0, sizeof sim);
  memset(&gw, 0, sizeof gw);
  memset(&cfg, 0, sizeof cfg);
  gw.sim = &sim;
  ebp_rx_init(&gw.rx, 1024);
  ebp_rx_init(&rx, 1024);
  cfg.points = lb_points;
  cfg.n_points = 3;
  cfg.ring = ring;
  cfg.ring_cap = 8;
  lb_window = window;
  CHECK(ebp_init(&ctx, &cfg, &port) == 0);
  /* handshake and Describe through the minimal gateway, until everything is acknowledged */
  for (i = 0; i < 200; i++) {
    ebp_poll(&ctx);
    gw_step(&gw);
    sim.now_us += 1000;
  }
  ebp_poll(&ctx); /* the board's clock is now the simulation's, and stays while frames come in */
  CHECK(ctx.state == EBP_S_UP && ctx.window == window && ctx.n_out == 0 && !ctx.ack_due);
  pure_acks_out(&sim, &rx, &ack);
  /* the gateway sends ReadingsAck frames (nothing to answer but the ack), all in one read */
  for (i = 0; i < half + 1; i++) {
    edge_agent_bridge_v1_Telemetry t;
    memset(&t, 0, sizeof t);
    t.which_body = edge_agent_bridge_v1_Telemetry_ack_tag;
    t.body.ack.boot_id = ctx.boot_id;
    gw.n_out = 0;
    gw_send_rel(&gw, 1, edge_agent_bridge_v1_Telemetry_fields, &t);
    {
      uint8_t b[256];
      size_t n = q_pop(&sim, &sim.to_board, b, sizeof b);
      uint16_t expect_before = ctx.expected;
      ebp_input(&ctx, b, n);
      CHECK(ctx.expected == (uint16_t)(expect_before + 1));
    }
    if (i + 1 < half) CHECK(pure_acks_out(&sim, &rx, &ack) == 0); /* not yet: within the 20 ms */
    if (i + 1 == half) CHECK(pure_acks_out(&sim, &rx, &ack) == 1 && ack == (uint16_t)(ctx.expected - 1));
  }
  /* one more frame: its ack waits the 20 ms (no time passed: none now); with a window of 1 every
   * frame is acknowledged at once */
  if (half == 1)
    CHECK(pure_acks_out(&sim, &rx, &ack) == 1 && !ctx.ack_due);
  else
    CHECK(pure_acks_out(&sim, &rx, &ack) == 0 && ctx.ack_due);
  sim.now_us += 19000;
  ebp_poll(&ctx);
  CHECK(half == 1 || pure_acks_out(&sim, &rx, &ack) == 0);
  sim.now_us += 1000;
  ebp_poll(&ctx);
  CHECK(half == 1 || (pure_acks_out(&sim, &rx, &ack) == 1 && ack == (uint16_t)(ctx.expected - 1)));
  printf("half-window ack, window %u: a pure ack at once after %u REL frames, else after 20 ms %s\n", window, half,
         failures == fails0 ? "ok" : "FAILED");
  lb_window = 4;
}

/* multiple boards in one process: two contexts do not share state */
static void test_two_contexts(void) {
  static ebp_ctx_t a, b;
  static ebp_reading_t ra[8], rb[8];
  static sim_t sa, sb;
  ebp_port_t pa = {&sa, b_read, b_write, b_now, b_rand, b_uid}, pb = {&sb, b_read, b_write, b_now, b_rand, b_uid};
  ebp_config_t c;
  memset(&c, 0, sizeof c);
  c.points = lb_points;
  c.n_points = 3;
  c.ring = ra;
  c.ring_cap = 8;
  c.boot_id = 0x11111111u;
  ebp_init(&a, &c, &pa);
  c.ring = rb;
  c.boot_id = 0x22222222u;
  ebp_init(&b, &c, &pb);
  CHECK(ebp_record(&a, 1, ebp_number(1), EBP_GOOD) == 1);
  CHECK(ebp_record(&a, 1, ebp_number(2), EBP_GOOD) == 2);
  CHECK(ebp_record(&b, 1, ebp_number(3), EBP_GOOD) == 1);
  CHECK(ebp_record(&b, 99, ebp_number(3), EBP_GOOD) == 0);
  CHECK(ebp_ring_used(&a) == 2 && ebp_ring_used(&b) == 1);
  { /* overwrite the oldest when full */
    int i;
    for (i = 0; i < 10; i++) ebp_record(&b, 2, ebp_number(i), EBP_GOOD);
    CHECK(ebp_ring_used(&b) == 8 && b.c.ring_dropped == 3);
  }
}

int main(void) {
  int ok = 1;
  test_crc();
  test_cobs();
  test_frames();
  test_golden();
  test_two_contexts();
  test_half_window_ack(8);
  test_half_window_ack(5);
  test_half_window_ack(1);
  test_slow_line();
  ok &= loopback("clean", 0, 0, 0, 600, 0);
  ok &= loopback("10% dropped", 10, 0, 0, 600, 0);
  ok &= loopback("5% dropped 5% flipped", 5, 5, 0, 600, 0);
  ok &= loopback("link cut 8 s", 0, 0, 3, 600, 0);
  ok &= loopback("cut + 3% loss", 3, 3, 4, 600, 0);
  ok &= loopback("persisted older boot", 2, 2, 0, 300, 30);
  lb_batch_us = 100000;
  ok &= loopback("batches of 100 ms", 5, 0, 0, 600, 0);
  lb_batch_us = 0;
  lb_many = 1;
  ok &= loopback("30 points, max_frame 512", 0, 0, 0, 300, 0);
  lb_many = 0;
  lb_max_frame = 1024;
  lb_burst = 1;
  ok &= loopback("burst, max_frame 1024", 0, 0, 0, 1500, 0);
  ok &= loopback("burst 1024, 5% dropped", 5, 0, 0, 1500, 0);
  lb_max_frame = 256;
  ok &= loopback("burst, max_frame 256", 0, 0, 0, 1500, 0);
  lb_burst = 0;
  lb_max_frame = 512;
  (void)ok;
  printf("%s: %d checks, %d failures (CRC %s)\n", failures ? "FAILED" : "ok", checks, failures,
#if defined(EBP_CRC_BITWISE) && EBP_CRC_BITWISE
         "bitwise"
#else
         "table"
#endif
  );
  return failures ? 1 : 0;
}
