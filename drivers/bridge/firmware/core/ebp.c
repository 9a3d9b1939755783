/* Session, reliable channel and application messages (docs/firmware-bridge.md sections 4 to 8). */
#include <stdio.h>
#include <string.h>

#include <pb_decode.h>
#include <pb_encode.h>

#include "bridge.pb.h"
#include "ebp.h"
#include "ebp_schema.h"

typedef edge_agent_bridge_v1_Link Link;
typedef edge_agent_bridge_v1_Telemetry Telemetry;
typedef edge_agent_bridge_v1_Commands Commands;
typedef edge_agent_bridge_v1_Reading Reading;
typedef edge_agent_bridge_v1_Command Command;
typedef edge_agent_bridge_v1_Log LogMsg;

#define STATIC_ASSERT(c, name) typedef char ebp_static_assert_##name[(c) ? 1 : -1]
STATIC_ASSERT(sizeof(Link) <= EBP_SCRATCH_SIZE, link_fits);
STATIC_ASSERT(sizeof(Telemetry) <= EBP_SCRATCH_SIZE, telemetry_fits);
STATIC_ASSERT(sizeof(Commands) <= EBP_SCRATCH_SIZE, commands_fits);
STATIC_ASSERT(edge_agent_bridge_v1_Link_size + EBP_MIN_FRAME <= EBP_HELLO_FRAME_MAX, hello_fits);
STATIC_ASSERT(EBP_MAX_FRAME >= 256 && EBP_MAX_FRAME <= 65535, max_frame_range);
STATIC_ASSERT(EBP_WINDOW >= 1 && EBP_WINDOW <= 16, window_range);

#define LINK(ctx) ((Link *)(void *)(ctx)->msg.bytes)
#define TEL(ctx) ((Telemetry *)(void *)(ctx)->msg.bytes)
#define CMDS(ctx) ((Commands *)(void *)(ctx)->msg.bytes)

/* ---- values ---------------------------------------------------------------------------------- */
ebp_value_t ebp_number(double x) {
  ebp_value_t v;
  memset(&v, 0, sizeof v);
  v.kind = EBP_V_NUMBER;
  v.v.number = x;
  return v;
}
ebp_value_t ebp_bool(int b) {
  ebp_value_t v;
  memset(&v, 0, sizeof v);
  v.kind = EBP_V_BOOL;
  v.v.flag = b ? 1 : 0;
  return v;
}
static void copy_str(char *dst, size_t cap, const char *src);
ebp_value_t ebp_text(const char *s) {
  ebp_value_t v;
  memset(&v, 0, sizeof v);
  v.kind = EBP_V_TEXT;
  copy_str(v.v.text, sizeof v.v.text, s);
  return v;
}
ebp_value_t ebp_none(void) {
  ebp_value_t v;
  memset(&v, 0, sizeof v);
  return v;
}

static void copy_str(char *dst, size_t cap, const char *src) {
  size_t n = 0;
  if (src)
    while (src[n] && n + 1 < cap) n++;
  if (n) memcpy(dst, src, n);
  dst[n] = 0;
}

/* a is after b (RFC 1982 on 16 bits) */
static int seq_after(uint16_t a, uint16_t b) {
  uint16_t d = (uint16_t)(a - b);
  return d >= 1 && d <= 32767;
}

static void emit(ebp_ctx_t *ctx, ebp_event_t ev, uint32_t a, uint32_t b, const char *text) {
  if (ctx->cfg.on_event) ctx->cfg.on_event(ctx->cfg.user, ev, a, b, text);
}

static size_t payload_cap(const ebp_ctx_t *ctx) { return (size_t)ctx->max_frame - EBP_MIN_FRAME; }

#if EBP_MGMT_QUEUE > 0
#define MGMT_FULL(ctx) ((ctx)->n_mgmt >= EBP_MGMT_QUEUE)
#else
#define MGMT_FULL(ctx) 0
#endif
static int busy_now(const ebp_ctx_t *ctx) { return ctx->busy || ctx->n_results >= EBP_RESULT_QUEUE || MGMT_FULL(ctx); }

/* ---- sending ---------------------------------------------------------------------------------- */
static void write_wire(ebp_ctx_t *ctx, const uint8_t *frame, size_t flen) {
  size_t n = ebp_wire_encode(frame, flen, !ctx->wrote_delim, ctx->wire, sizeof ctx->wire);
  if (n == 0) return;
  if (ctx->port.write(ctx->port.user, ctx->wire, n) < 0) {
    ctx->wrote_delim = 0; /* part of it may be out: the next frame starts with a delimiter */
    return;
  }
  ctx->wrote_delim = 1;
  ctx->c.tx_frames++;
  ctx->c.tx_bytes += (uint32_t)n;
}

/* Send a frame; ACK/ack and BUSY are always current. */
static void write_frame(ebp_ctx_t *ctx, uint8_t chan, uint8_t flags, uint16_t seq, const uint8_t *payload, size_t plen) {
  ebp_hdr_t h;
  size_t n;
  h.ver = EBP_PROTOCOL;
  h.chan = chan;
  h.flags = flags;
  h.seq = (flags & EBP_F_REL) ? seq : 0;
  h.ack = 0;
  if (ctx->have_rel) {
    h.flags |= EBP_F_ACK;
    h.ack = (uint16_t)(ctx->expected - 1);
    ctx->ack_due = 0;
    ctx->unacked_in = 0;
  }
  if (busy_now(ctx)) h.flags |= EBP_F_BUSY;
  n = ebp_frame_encode(&h, payload, plen, ctx->frame, sizeof ctx->frame);
  if (n) write_wire(ctx, ctx->frame, n);
}

static void send_pure_ack(ebp_ctx_t *ctx, uint8_t extra) {
  if (!ctx->have_rel) return;
  write_frame(ctx, EBP_CH_LINK, extra, 0, NULL, 0);
}

static void schedule_ack(ebp_ctx_t *ctx) {
  if (!ctx->ack_due) {
    ctx->ack_due = 1;
    ctx->ack_deadline = ctx->now + EBP_ACK_DELAY_US;
  }
}

/* A REL frame was taken (delivered in order): acknowledged within 20 ms, or at once when half the
 * session's window (rounded down, at least one) of taken frames is unacknowledged (spec section 4),
 * so a peer with a full window never waits the 20 ms. */
static void took_rel(ebp_ctx_t *ctx) {
  unsigned half = ctx->window / 2u;
  schedule_ack(ctx);
  if (ctx->unacked_in < 255) ctx->unacked_in++;
  if (ctx->unacked_in >= (half ? half : 1u)) write_frame(ctx, EBP_CH_LINK, 0, 0, NULL, 0);
}

static void send_nak(ebp_ctx_t *ctx);
/* No longer busy: a frame left untaken meanwhile is asked for now (NAK) rather than after an RTO;
 * otherwise a frame without BUSY tells the peer it may send again. */
static void busy_cleared(ebp_ctx_t *ctx) {
  if (ctx->state != EBP_S_UP) return;
  if (ctx->busy_dropped) {
    ctx->busy_dropped = 0;
    ctx->nak_sent = 0;
    send_nak(ctx);
  } else {
    send_pure_ack(ctx, 0);
  }
}

static void send_nak(ebp_ctx_t *ctx) {
  uint16_t a = (uint16_t)(ctx->expected - 1);
  if (!ctx->have_rel || ctx->state != EBP_S_UP) return;
  if (busy_now(ctx)) { /* no NAK while busy: one when it clears */
    ctx->busy_dropped = 1;
    return;
  }
  if (ctx->nak_sent && ctx->nak_sent_ack == a && ctx->now - ctx->nak_sent_at < ctx->rto_us) return;
  ctx->nak_sent = 1;
  ctx->nak_sent_ack = a;
  ctx->nak_sent_at = ctx->now;
  ctx->c.naks_sent++;
  send_pure_ack(ctx, EBP_F_NAK);
}

/* Encode an envelope into ctx->payload; returns its length or -1 (too large for the session). */
static int encode(ebp_ctx_t *ctx, const pb_msgdesc_t *fields, const void *msg) {
  pb_ostream_t os = pb_ostream_from_buffer(ctx->payload, payload_cap(ctx));
  if (!pb_encode(&os, fields, msg)) return -1;
  return (int)os.bytes_written;
}

static int can_send_rel(const ebp_ctx_t *ctx) {
  return ctx->state == EBP_S_UP && !ctx->peer_busy && ctx->n_out < ctx->window;
}

/* Queue and send a new REL frame from ctx->payload. */
static void send_rel(ebp_ctx_t *ctx, uint8_t chan, size_t plen) {
  ebp_slot_t *s = &ctx->slots[(ctx->slot_head + ctx->n_out) % EBP_WINDOW];
  s->chan = chan;
  s->seq = ctx->next_seq++;
  s->len = (uint16_t)plen;
  s->resent = 0;
  s->sent_us = ctx->now;
  memcpy(s->payload, ctx->payload, plen);
  if (ctx->n_out == 0) ctx->rto_deadline = ctx->now + ctx->rto_us;
  ctx->n_out++;
  write_frame(ctx, chan, EBP_F_REL, s->seq, s->payload, s->len);
}

static void resend_all(ebp_ctx_t *ctx) {
  uint8_t i;
  for (i = 0; i < ctx->n_out; i++) {
    ebp_slot_t *s = &ctx->slots[(ctx->slot_head + i) % EBP_WINDOW];
    s->resent = 1;
    write_frame(ctx, s->chan, EBP_F_REL, s->seq, s->payload, s->len);
    ctx->c.retransmits++;
  }
}

/* ---- ring of readings ------------------------------------------------------------------------- */
static ebp_reading_t *ring_at(ebp_ctx_t *ctx, size_t i) { return &ctx->cfg.ring[(ctx->ring_head + i) % ctx->cfg.ring_cap]; }

size_t ebp_ring_used(const ebp_ctx_t *ctx) {
  size_t i, n = 0;
  for (i = 0; i < ctx->ring_count; i++)
    if (!ctx->cfg.ring[(ctx->ring_head + i) % ctx->cfg.ring_cap].acked) n++;
  return n;
}

size_t ebp_ring_copy(const ebp_ctx_t *ctx, ebp_reading_t *out, size_t cap) {
  size_t i, n = 0;
  for (i = 0; i < ctx->ring_count && n < cap; i++) {
    const ebp_reading_t *r = &ctx->cfg.ring[(ctx->ring_head + i) % ctx->cfg.ring_cap];
    if (!r->acked) out[n++] = *r;
  }
  return n;
}

uint32_t ebp_record(ebp_ctx_t *ctx, uint32_t point, ebp_value_t value, ebp_quality_t quality) {
  ebp_reading_t *r;
  if (ctx->cfg.ring_cap == 0 || ebp_point_by_id(ctx, point) == NULL) return 0;
  if (ctx->ring_count == ctx->cfg.ring_cap) { /* full: overwrite the oldest */
    if (!ring_at(ctx, 0)->acked) ctx->c.ring_dropped++;
    ctx->ring_head = (ctx->ring_head + 1) % ctx->cfg.ring_cap;
    ctx->ring_count--;
  }
  r = ring_at(ctx, ctx->ring_count);
  memset(r, 0, sizeof *r);
  r->boot_id = ctx->boot_id;
  r->seq = ctx->next_reading_seq++;
  r->point = point;
  r->t_us = ctx->port.now_us(ctx->port.user);
  r->value = value;
  r->quality = (uint8_t)quality;
  ctx->ring_count++;
  return r->seq;
}

static void ring_ack(ebp_ctx_t *ctx, uint32_t boot_id, uint32_t upto) {
  size_t i;
  for (i = 0; i < ctx->ring_count; i++) {
    ebp_reading_t *r = ring_at(ctx, i);
    if (r->boot_id == boot_id && r->seq <= upto) r->acked = 1;
  }
  while (ctx->ring_count && ring_at(ctx, 0)->acked) {
    ctx->ring_head = (ctx->ring_head + 1) % ctx->cfg.ring_cap;
    ctx->ring_count--;
  }
}

static void to_reading(const ebp_reading_t *e, Reading *r) {
  memset(r, 0, sizeof *r);
  r->point = e->point;
  r->t_us = e->t_us;
  r->quality = (edge_agent_bridge_v1_Quality)e->quality;
  switch (e->value.kind) {
  case EBP_V_NUMBER:
    r->which_value = edge_agent_bridge_v1_Reading_number_tag;
    r->value.number = e->value.v.number;
    break;
  case EBP_V_BOOL:
    r->which_value = edge_agent_bridge_v1_Reading_flag_tag;
    r->value.flag = e->value.v.flag != 0;
    break;
  case EBP_V_TEXT:
    r->which_value = edge_agent_bridge_v1_Reading_text_tag;
    copy_str(r->value.text, sizeof r->value.text, e->value.v.text);
    break;
  default:
    break;
  }
}

/* Readings.readings is a nanopb callback field (bridge.options: FT_CALLBACK): the readings are
 * encoded straight from the ring, so no array of nanopb Reading structs is kept in RAM and a
 * frame holds as many readings as the session's max_frame allows. */
typedef struct {
  ebp_ctx_t *ctx;
  size_t start, count;
} readings_arg_t;

static bool encode_readings_cb(pb_ostream_t *os, const pb_field_t *field, void *const *arg) {
  const readings_arg_t *a = (const readings_arg_t *)*arg;
  Reading r;
  size_t i;
  for (i = 0; i < a->count; i++) {
    to_reading(ring_at(a->ctx, a->start + i), &r);
    if (!pb_encode_tag_for_field(os, field) || !pb_encode_submessage(os, edge_agent_bridge_v1_Reading_fields, &r)) return false;
  }
  return true;
}

static size_t varint_len(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    n++;
  }
  return n;
}

/* Send the next batch of unsent readings (same boot, consecutive sequences, as many as fit the
 * session's max_frame). 1 if a frame went out (or a reading too large for it was skipped). */
static int pump_readings(ebp_ctx_t *ctx) {
  size_t i, start, run = 0, inner, cap = payload_cap(ctx), sz;
  int len, full = 0;
  Telemetry *t = TEL(ctx);
  readings_arg_t arg;
  const ebp_reading_t *f;
  for (start = 0; start < ctx->ring_count; start++) {
    const ebp_reading_t *r = ring_at(ctx, start);
    if (!r->sent && !r->acked) break;
  }
  if (start >= ctx->ring_count) return 0;
  f = ring_at(ctx, start);
  /* Readings: boot_id (fixed32, 5 bytes), first_seq (varint), then each Reading as tag, length and
   * message; the whole inside Telemetry as tag, length and Readings. */
  inner = 5 + 1 + varint_len(f->seq);
  while (start + run < ctx->ring_count) {
    const ebp_reading_t *r = ring_at(ctx, start + run);
    Reading m;
    size_t add;
    if (r->sent || r->acked || r->boot_id != f->boot_id || r->seq != f->seq + run) break;
    to_reading(r, &m);
    if (!pb_get_encoded_size(&sz, edge_agent_bridge_v1_Reading_fields, &m)) break;
    add = 1 + varint_len(sz) + sz;
    if (1 + varint_len(inner + add) + inner + add > cap) {
      full = 1;
      break;
    }
    inner += add;
    run++;
  }
  if (run == 0) { /* the first reading alone does not fit this session's frame: skip it rather than block */
    ring_at(ctx, start)->sent = 1;
    ctx->c.decode_errors++;
    return 1;
  }
  /* batching: a batch that does not fill the frame waits up to batch_us after its oldest reading */
  if (!full && ctx->cfg.batch_us && start + run == ctx->ring_count && ctx->now - f->t_us < ctx->cfg.batch_us &&
      f->boot_id == ctx->boot_id)
    return 0;
  memset(t, 0, sizeof *t);
  t->which_body = edge_agent_bridge_v1_Telemetry_readings_tag;
  t->body.readings.boot_id = f->boot_id;
  t->body.readings.first_seq = f->seq;
  arg.ctx = ctx;
  arg.start = start;
  arg.count = run;
  t->body.readings.readings.funcs.encode = encode_readings_cb;
  t->body.readings.readings.arg = &arg;
  len = encode(ctx, edge_agent_bridge_v1_Telemetry_fields, t);
  if (len < 0) { /* cannot happen (sizes computed above): skip the first reading rather than block */
    ring_at(ctx, start)->sent = 1;
    ctx->c.decode_errors++;
    return 1;
  }
  for (i = 0; i < run; i++) ring_at(ctx, start + i)->sent = 1;
  send_rel(ctx, EBP_CH_TELEMETRY, (size_t)len);
  return 1;
}

/* ---- points ----------------------------------------------------------------------------------- */
const ebp_point_t *ebp_point_by_id(const ebp_ctx_t *ctx, uint32_t id) {
  size_t i;
  for (i = 0; i < ctx->cfg.n_points; i++)
    if (ctx->cfg.points[i].id == id) return &ctx->cfg.points[i];
  return NULL;
}

static const char *child_of(const ebp_point_t *p) { return p->child ? p->child : ""; }

static int same_group(const ebp_point_t *a, const ebp_point_t *b) { return strcmp(child_of(a), child_of(b)) == 0; }

/* The first point of the group (child) after the group starting at `after`, or n. */
static size_t next_group(const ebp_ctx_t *ctx, size_t after) {
  size_t j, i;
  for (j = after + 1; j < ctx->cfg.n_points; j++) {
    for (i = 0; i < j; i++)
      if (same_group(&ctx->cfg.points[i], &ctx->cfg.points[j])) break;
    if (i == j) return j;
  }
  return ctx->cfg.n_points;
}

/* Describe, one group at a time, in the order groups first appear in the point table: the
 * board's own points (Describe.child empty) and each child's points (Describe.child set), at
 * most 8 points and max_frame per message, `complete` on the last message of each group. A board
 * without points of its own sends an empty complete Describe for them first. */
static int pump_describe(ebp_ctx_t *ctx) {
  Telemetry *t = TEL(ctx);
  const ebp_point_t *pts = ctx->cfg.points;
  size_t n = ctx->cfg.n_points, i, idx[8], m = 0, next;
  int k, len = -1, more = 0;
  if (!ctx->describe_own_sent) {
    ctx->describe_own_sent = 1;
    for (i = 0; i < n && child_of(&pts[i])[0]; i++) {
    }
    if (i == n) { /* no own points: say so, so that a stale list on the gateway is replaced */
      memset(t, 0, sizeof *t);
      t->which_body = edge_agent_bridge_v1_Telemetry_describe_tag;
      t->body.describe.complete = true;
      len = encode(ctx, edge_agent_bridge_v1_Telemetry_fields, t);
      if (n == 0) ctx->describe_due = 0;
      if (len >= 0) send_rel(ctx, EBP_CH_TELEMETRY, (size_t)len);
      return 1;
    }
  }
  for (i = ctx->describe_next; i < n; i++) {
    if (!same_group(&pts[i], &pts[ctx->describe_group])) continue;
    if (m == 8) {
      more = 1;
      break;
    }
    idx[m++] = i;
  }
  for (k = (int)m; k >= 1; k--) {
    memset(t, 0, sizeof *t);
    t->which_body = edge_agent_bridge_v1_Telemetry_describe_tag;
    t->body.describe.points_count = (pb_size_t)k;
    t->body.describe.complete = (size_t)k == m && !more;
    copy_str(t->body.describe.child, sizeof t->body.describe.child, child_of(&pts[ctx->describe_group]));
    for (i = 0; i < (size_t)k; i++) {
      const ebp_point_t *p = &pts[idx[i]];
      edge_agent_bridge_v1_PointInfo *pi = &t->body.describe.points[i];
      pi->id = p->id;
      copy_str(pi->name, sizeof pi->name, p->name);
      copy_str(pi->unit, sizeof pi->unit, p->unit);
      pi->type = (edge_agent_bridge_v1_PointType)p->type;
      pi->writable = p->writable != 0;
      pi->min = p->min;
      pi->max = p->max;
      copy_str(pi->child, sizeof pi->child, child_of(p));
    }
    len = encode(ctx, edge_agent_bridge_v1_Telemetry_fields, t);
    if (len >= 0) break;
  }
  if (len < 0 || k < 1) { /* cannot happen with max_frame >= 256: give up this Describe */
    ctx->c.decode_errors++;
    ctx->describe_due = 0;
    return 0;
  }
  if (t->body.describe.complete) {
    next = next_group(ctx, ctx->describe_group);
    ctx->describe_group = next;
    ctx->describe_next = next;
    if (next >= n) ctx->describe_due = 0;
  } else {
    ctx->describe_next = idx[k - 1] + 1;
  }
  send_rel(ctx, EBP_CH_TELEMETRY, (size_t)len);
  return 1;
}

void ebp_points_changed(ebp_ctx_t *ctx) {
  ctx->describe_due = 1;
  ctx->describe_next = 0;
  ctx->describe_group = 0;
  ctx->describe_own_sent = 0;
}

int ebp_child_event(ebp_ctx_t *ctx, const char *child, int present) {
  Telemetry *t = TEL(ctx);
  int len;
  if (!can_send_rel(ctx)) return -1;
  memset(t, 0, sizeof *t);
  t->which_body = edge_agent_bridge_v1_Telemetry_child_tag;
  copy_str(t->body.child.child, sizeof t->body.child.child, child);
  t->body.child.present = present != 0;
  len = encode(ctx, edge_agent_bridge_v1_Telemetry_fields, t);
  if (len < 0) return -1;
  send_rel(ctx, EBP_CH_TELEMETRY, (size_t)len);
  return 0;
}

static void value_to_reading(uint32_t point, const ebp_value_t *v, uint64_t t_us, Reading *r) {
  ebp_reading_t e;
  memset(&e, 0, sizeof e);
  e.point = point;
  e.t_us = t_us;
  e.value = *v;
  to_reading(&e, r);
}

static int pump_result(ebp_ctx_t *ctx) {
  Commands *c = CMDS(ctx);
  const ebp_result_t *r = &ctx->results[0];
  int len;
  memset(c, 0, sizeof *c);
  c->which_body = edge_agent_bridge_v1_Commands_result_tag;
  c->body.result.id = r->id;
  c->body.result.status = (edge_agent_bridge_v1_CommandStatus)r->status;
  copy_str(c->body.result.message, sizeof c->body.result.message, r->message);
  if (r->readback.kind != EBP_V_NONE) {
    c->body.result.has_readback = true;
    value_to_reading(r->point, &r->readback, r->t_us, &c->body.result.readback);
  }
  len = encode(ctx, edge_agent_bridge_v1_Commands_fields, c);
  ctx->n_results--;
  memmove(&ctx->results[0], &ctx->results[1], sizeof ctx->results[0] * ctx->n_results);
  if (len < 0) return 1;
  send_rel(ctx, EBP_CH_COMMANDS, (size_t)len);
  return 1;
}

#if EBP_MGMT_QUEUE > 0
static void pump_mgmt(ebp_ctx_t *ctx) {
  size_t len = ctx->mgmt_len[0];
  if (len <= payload_cap(ctx)) {
    memcpy(ctx->payload, ctx->mgmt_rsp[0], len);
    send_rel(ctx, EBP_CH_MANAGEMENT, len);
  }
  ctx->n_mgmt--;
  memmove(&ctx->mgmt_rsp[0], &ctx->mgmt_rsp[1], sizeof ctx->mgmt_rsp[0] * ctx->n_mgmt);
  memmove(&ctx->mgmt_len[0], &ctx->mgmt_len[1], sizeof ctx->mgmt_len[0] * ctx->n_mgmt);
}
#else
static void pump_mgmt(ebp_ctx_t *ctx) { ctx->n_mgmt = 0; }
#endif

/* Send new REL frames while the window and the peer allow: management and command answers, Describe, readings. */
static void pump(ebp_ctx_t *ctx) {
  while (can_send_rel(ctx)) {
    if (ctx->n_mgmt) {
      int was_busy = busy_now(ctx);
      pump_mgmt(ctx);
      if (was_busy && !busy_now(ctx)) busy_cleared(ctx);
    } else if (ctx->n_results) {
      int was_busy = busy_now(ctx);
      pump_result(ctx);
      if (was_busy && !busy_now(ctx)) busy_cleared(ctx);
    } else if (ctx->describe_due) {
      if (!pump_describe(ctx)) break;
    } else if (!pump_readings(ctx)) {
      break;
    }
  }
}

/* ---- session ---------------------------------------------------------------------------------- */
static void reset_reliable(ebp_ctx_t *ctx) {
  ctx->n_out = 0;
  ctx->slot_head = 0;
  ctx->next_seq = 1; /* the Hello is REL frame 0 */
  ctx->rto_us = EBP_RTO_INITIAL_US;
  ctx->srtt_us = 0;
  ctx->rttvar_us = 0;
  ctx->rtt_samples = 0;
  ctx->timeouts = 0;
  ctx->nak_answered = 0;
  ctx->nak_sent = 0;
  ctx->peer_busy = 0;
  ctx->busy_dropped = 0;
  ctx->expected = 0;
  ctx->have_rel = 0;
  ctx->ack_due = 0;
  ctx->unacked_in = 0;
}

static void send_hello_frame(ebp_ctx_t *ctx) {
  ctx->last_hello_us = ctx->now;
  write_wire(ctx, ctx->hello, ctx->hello_len);
}

/* Start a new session attempt: a fresh Hello now, resent as is every second until a reply. */
static void start_hello(ebp_ctx_t *ctx, const char *reason) {
  Link *l = LINK(ctx);
  edge_agent_bridge_v1_Hello *h = &l->body.hello;
  ebp_hdr_t hd;
  int len;
  if (ctx->state == EBP_S_UP) emit(ctx, EBP_EV_SESSION_LOST, 0, 0, reason);
  ctx->state = EBP_S_HELLO;
  reset_reliable(ctx);
  ctx->max_frame = 256; /* no frame above 256 bytes until the HelloReply gives the session's */
  ctx->window = ctx->cfg.window;
  memset(l, 0, sizeof *l);
  l->which_body = edge_agent_bridge_v1_Link_hello_tag;
  h->protocol = EBP_PROTOCOL;
  h->schema_hash = EBP_SCHEMA_HASH;
  h->board_id.size = ctx->board_id_len;
  memcpy(h->board_id.bytes, ctx->board_id, ctx->board_id_len);
  copy_str(h->hardware, sizeof h->hardware, ctx->cfg.hardware);
  copy_str(h->firmware, sizeof h->firmware, ctx->cfg.firmware);
  if (ctx->cfg.image_hash) {
    h->image_hash.size = 32;
    memcpy(h->image_hash.bytes, ctx->cfg.image_hash, 32);
  }
  h->boot_id = ctx->boot_id;
  h->reset_reason = (edge_agent_bridge_v1_ResetReason)ctx->cfg.reset_reason;
  h->capabilities = ctx->cfg.capabilities;
  h->max_frame = ctx->cfg.max_frame;
  h->window = ctx->cfg.window;
  h->uptime_us = ctx->now;
  len = encode(ctx, edge_agent_bridge_v1_Link_fields, l);
  if (len < 0) return;
  hd.ver = EBP_PROTOCOL;
  hd.chan = EBP_CH_LINK;
  hd.flags = EBP_F_REL;
  hd.seq = 0;
  hd.ack = 0;
  ctx->hello_len = (uint16_t)ebp_frame_encode(&hd, ctx->payload, (size_t)len, ctx->hello, sizeof ctx->hello);
  emit(ctx, EBP_EV_HELLO_SENT, ctx->boot_id, 0, reason);
  send_hello_frame(ctx);
}

static void session_up(ebp_ctx_t *ctx, const edge_agent_bridge_v1_HelloReply *r) {
  size_t i;
  uint16_t mf = ctx->cfg.max_frame;
  uint8_t w = ctx->cfg.window;
  if (r->max_frame >= 256 && r->max_frame < mf) mf = (uint16_t)r->max_frame;
  if (r->window >= 1 && r->window < w) w = (uint8_t)r->window;
  ctx->max_frame = mf;
  ctx->window = w;
  ctx->heartbeat_ms = (uint16_t)(r->heartbeat_ms ? (r->heartbeat_ms > 60000 ? 60000 : r->heartbeat_ms) : 1000);
  ctx->state = EBP_S_UP;
  ctx->up_at_us = ctx->now;
  ctx->utc_at_up_us = r->utc_us;
  ctx->last_hb_us = ctx->now;
  ctx->c.sessions++;
  ctx->describe_due = 1;
  ctx->describe_next = 0;
  ctx->describe_group = 0;
  ctx->describe_own_sent = 0;
  ctx->n_results = 0;
  ctx->n_mgmt = 0; /* answers to the last session's requests: the gateway asks again */
  for (i = 0; i < ctx->ring_count; i++) ring_at(ctx, i)->sent = 0;
  emit(ctx, EBP_EV_SESSION_UP, w, mf, NULL);
}

/* One round-trip sample (RFC 6298 section 2, integer microseconds): the first sets SRTT = R and
 * RTTVAR = R/2; then RTTVAR = 3/4 RTTVAR + 1/4 |SRTT - R| and SRTT = 7/8 SRTT + 1/8 R. */
static void rtt_sample(ebp_ctx_t *ctx, uint64_t r64) {
  uint32_t r = r64 > 60000000u ? 60000000u : (uint32_t)r64; /* keeps srtt + 4 rttvar within 32 bits */
  if (ctx->rtt_samples == 0) {
    ctx->srtt_us = r;
    ctx->rttvar_us = r / 2u;
  } else {
    uint32_t d = ctx->srtt_us > r ? ctx->srtt_us - r : r - ctx->srtt_us;
    ctx->rttvar_us = (uint32_t)(((uint64_t)ctx->rttvar_us * 3u + d) / 4u);
    ctx->srtt_us = (uint32_t)(((uint64_t)ctx->srtt_us * 7u + r) / 8u);
  }
  ctx->rtt_samples++;
}

/* RTO after progress: SRTT + 4 RTTVAR, within 300 ms .. 3 s; 300 ms while nothing was measured. */
static uint32_t rto_from_rtt(const ebp_ctx_t *ctx) {
  uint64_t rto;
  if (ctx->rtt_samples == 0) return EBP_RTO_INITIAL_US;
  rto = (uint64_t)ctx->srtt_us + 4u * (uint64_t)ctx->rttvar_us;
  if (rto < EBP_RTO_INITIAL_US) rto = EBP_RTO_INITIAL_US;
  if (rto > EBP_RTO_MAX_US) rto = EBP_RTO_MAX_US;
  return (uint32_t)rto;
}

static void handle_ack(ebp_ctx_t *ctx, const ebp_hdr_t *h) {
  if (ctx->n_out) {
    uint16_t una = ctx->slots[ctx->slot_head].seq;
    uint16_t k = (uint16_t)(h->ack - una + 1);
    if (k >= 1 && k <= ctx->n_out) {
      uint16_t i;
      /* The newest acknowledged frame sent only once gives the sample (Karn: a resent frame's
       * ack does not say which sending it answers). */
      for (i = k; i >= 1; i--) {
        const ebp_slot_t *s = &ctx->slots[(ctx->slot_head + i - 1) % EBP_WINDOW];
        if (!s->resent) {
          rtt_sample(ctx, ctx->now - s->sent_us);
          break;
        }
      }
      ctx->slot_head = (uint8_t)((ctx->slot_head + k) % EBP_WINDOW);
      ctx->n_out = (uint8_t)(ctx->n_out - k);
      ctx->rto_us = rto_from_rtt(ctx);
      ctx->timeouts = 0;
      ctx->rto_deadline = ctx->now + ctx->rto_us;
    }
  }
  if (h->flags & EBP_F_NAK) {
    ctx->c.naks_received++;
    if (ctx->n_out &&
        !(ctx->nak_answered && ctx->nak_answered_ack == h->ack && ctx->now - ctx->nak_answered_at < ctx->rto_us / 2)) {
      ctx->nak_answered = 1;
      ctx->nak_answered_ack = h->ack;
      ctx->nak_answered_at = ctx->now;
      resend_all(ctx);
      ctx->rto_deadline = ctx->now + ctx->rto_us;
    }
  }
}

static void handle_command(ebp_ctx_t *ctx, const Command *cmd) {
  ebp_result_t *r = &ctx->results[ctx->n_results];
  const ebp_point_t *pt = ebp_point_by_id(ctx, cmd->point);
  ebp_value_t v = ebp_none();
  memset(r, 0, sizeof *r);
  r->id = cmd->id;
  r->point = cmd->point;
  if (cmd->which_value == edge_agent_bridge_v1_Command_number_tag) v = ebp_number(cmd->value.number);
  if (cmd->which_value == edge_agent_bridge_v1_Command_flag_tag) v = ebp_bool(cmd->value.flag);
  if (cmd->which_value == edge_agent_bridge_v1_Command_text_tag) v = ebp_text(cmd->value.text);
  if (!pt) {
    r->status = EBP_CMD_UNKNOWN_POINT;
    snprintf(r->message, sizeof r->message, "no point %lu", (unsigned long)cmd->point);
  } else if (!pt->writable) {
    r->status = EBP_CMD_REFUSED;
    snprintf(r->message, sizeof r->message, "%s is not writable", pt->name);
  } else if ((pt->type == EBP_NUMBER && v.kind != EBP_V_NUMBER) || (pt->type == EBP_BOOL && v.kind != EBP_V_BOOL) ||
             (pt->type == EBP_TEXT && v.kind != EBP_V_TEXT)) {
    r->status = EBP_CMD_REFUSED;
    snprintf(r->message, sizeof r->message, "wrong value type for %s", pt->name);
  } else if (pt->type == EBP_NUMBER && !(pt->min == 0 && pt->max == 0) && !(v.v.number >= pt->min && v.v.number <= pt->max)) {
    r->status = EBP_CMD_REFUSED;
    snprintf(r->message, sizeof r->message, "%g is out of bounds [%g, %g]", v.v.number, pt->min, pt->max);
  } else if (!ctx->cfg.on_command) {
    r->status = EBP_CMD_FAILED;
    copy_str(r->message, sizeof r->message, "no command handler");
  } else {
    r->status = (uint8_t)ctx->cfg.on_command(ctx->cfg.user, pt, &v, &r->readback, r->message, sizeof r->message);
    r->message[sizeof r->message - 1] = 0;
  }
  r->t_us = ctx->port.now_us(ctx->port.user);
  ctx->n_results++;
  emit(ctx, EBP_EV_COMMAND, r->id, r->status, pt ? pt->name : "?");
}

/* A REL frame delivered in order on channels 1..255. */
static void deliver(ebp_ctx_t *ctx, const ebp_hdr_t *h, const uint8_t *payload, size_t plen) {
  pb_istream_t is = pb_istream_from_buffer(payload, plen);
  if (h->chan == EBP_CH_TELEMETRY) {
    Telemetry *t = TEL(ctx);
    if (!pb_decode(&is, edge_agent_bridge_v1_Telemetry_fields, t)) {
      ctx->c.decode_errors++;
      return;
    }
    if (t->which_body == edge_agent_bridge_v1_Telemetry_ack_tag) {
      uint32_t boot = t->body.ack.boot_id, upto = t->body.ack.upto_seq;
      ring_ack(ctx, boot, upto);
      emit(ctx, EBP_EV_ACKED, boot, upto, NULL);
    }
  } else if (h->chan == EBP_CH_COMMANDS) {
    Commands *c = CMDS(ctx);
    Command cmd;
    if (!pb_decode(&is, edge_agent_bridge_v1_Commands_fields, c)) {
      ctx->c.decode_errors++;
      return;
    }
    if (c->which_body != edge_agent_bridge_v1_Commands_command_tag) return;
    cmd = c->body.command;
    handle_command(ctx, &cmd);
#if EBP_MGMT_QUEUE > 0
  } else if (h->chan == EBP_CH_MANAGEMENT && ctx->cfg.on_management) {
    /* Taken only when there is room for its answer (busy_now refuses the frame otherwise). */
    size_t n = ctx->cfg.on_management(ctx->cfg.user, payload, plen, ctx->mgmt_rsp[ctx->n_mgmt], EBP_MGMT_RSP_MAX);
    if (n > 0 && n <= EBP_MGMT_RSP_MAX) ctx->mgmt_len[ctx->n_mgmt++] = (uint16_t)n;
#endif
  } else {
    ctx->c.unknown_channel++; /* log (3) from the gateway, management without a handler, reserved */
  }
}

static void handle_link(ebp_ctx_t *ctx, const ebp_hdr_t *h, const uint8_t *payload, size_t plen) {
  Link *l = LINK(ctx);
  pb_istream_t is = pb_istream_from_buffer(payload, plen);
  if (plen == 0) return; /* pure ack / NAK */
  if (!pb_decode(&is, edge_agent_bridge_v1_Link_fields, l)) {
    ctx->c.decode_errors++;
    return;
  }
  switch (l->which_body) {
  case edge_agent_bridge_v1_Link_hello_request_tag:
    if (ctx->state == EBP_S_HELLO && ctx->hello_len)
      send_hello_frame(ctx); /* no reply yet: the same Hello, as is */
    else
      start_hello(ctx, "hello request");
    break;
  case edge_agent_bridge_v1_Link_hello_reply_tag:
    if (!(h->flags & EBP_F_REL)) break;
    if (ctx->state == EBP_S_HELLO && h->seq == 0) {
      edge_agent_bridge_v1_HelloReply r = l->body.hello_reply;
      ctx->expected = 1;
      ctx->have_rel = 1;
      if (r.accepted) {
        session_up(ctx, &r);
      } else {
        ctx->state = EBP_S_REFUSED;
        emit(ctx, EBP_EV_REFUSED, 0, 0, r.reason);
      }
      took_rel(ctx);
    } else if (ctx->have_rel && !seq_after(h->seq, (uint16_t)(ctx->expected - 1))) {
      ctx->c.duplicates++; /* our ack was lost: acknowledge again */
      schedule_ack(ctx);
    }
    break;
  case edge_agent_bridge_v1_Link_time_request_tag:
    if (ctx->state != EBP_S_REFUSED) {
      uint64_t t1 = l->body.time_request.t1_us;
      int len;
      memset(l, 0, sizeof *l);
      l->which_body = edge_agent_bridge_v1_Link_time_reply_tag;
      l->body.time_reply.t1_us = t1;
      l->body.time_reply.t2_us = ctx->now;
      l->body.time_reply.t3_us = ctx->port.now_us(ctx->port.user);
      len = encode(ctx, edge_agent_bridge_v1_Link_fields, l);
      if (len >= 0) write_frame(ctx, EBP_CH_LINK, 0, 0, ctx->payload, (size_t)len);
      emit(ctx, EBP_EV_TIME, (uint32_t)(t1 / 1000000u), (uint32_t)(ctx->now / 1000u), NULL);
    }
    break;
  default: /* heartbeat: its arrival is what counts */
    break;
  }
}

static void handle_frame(ebp_ctx_t *ctx, const ebp_hdr_t *h, const uint8_t *payload, size_t plen) {
  ctx->last_rx_us = ctx->now;
  if (ctx->state == EBP_S_UP) {
    ctx->peer_busy = (h->flags & EBP_F_BUSY) != 0;
    if (h->flags & EBP_F_ACK) handle_ack(ctx, h);
  }
  if (h->chan == EBP_CH_LINK) {
    handle_link(ctx, h, payload, plen);
    return;
  }
  if (ctx->state != EBP_S_UP) return;
  if (!(h->flags & EBP_F_REL)) {
    ctx->c.unknown_channel++; /* the gateway sends only REL frames on channels 1..255 */
    return;
  }
  if (h->seq == ctx->expected) {
    if (busy_now(ctx)) {
      ctx->c.busy_refusals++; /* not taken: asked for again (NAK) once we are not busy */
      ctx->busy_dropped = 1;
      return;
    }
    ctx->expected++;
    ctx->have_rel = 1;
    deliver(ctx, h, payload, plen);
    took_rel(ctx);
  } else if (seq_after(h->seq, ctx->expected)) {
    ctx->c.out_of_order++;
    send_nak(ctx);
  } else {
    ctx->c.duplicates++;
    schedule_ack(ctx);
  }
}

void ebp_input(ebp_ctx_t *ctx, const uint8_t *data, size_t len) {
  size_t i;
  ctx->c.rx_bytes += (uint32_t)len;
  for (i = 0; i < len; i++) {
    ebp_rx_result_t r = ebp_rx_byte(&ctx->rx, data[i]);
    if (r == EBP_RX_FRAME) {
      ebp_hdr_t h = ctx->rx.hdr;
      handle_frame(ctx, &h, ctx->rx.payload, ctx->rx.plen);
    } else if (r == EBP_RX_CRC) {
      send_nak(ctx);
    }
  }
}

static void send_heartbeat(ebp_ctx_t *ctx) {
  Link *l = LINK(ctx);
  int len;
  ctx->last_hb_us = ctx->now;
  memset(l, 0, sizeof *l);
  l->which_body = edge_agent_bridge_v1_Link_heartbeat_tag;
  l->body.heartbeat.uptime_us = ctx->now;
  l->body.heartbeat.ring_used = (uint32_t)ebp_ring_used(ctx);
  l->body.heartbeat.ring_dropped = ctx->c.ring_dropped;
  len = encode(ctx, edge_agent_bridge_v1_Link_fields, l);
  if (len >= 0) write_frame(ctx, EBP_CH_LINK, 0, 0, ctx->payload, (size_t)len);
}

void ebp_poll(ebp_ctx_t *ctx) {
  uint8_t buf[128];
  int n, rounds = 0;
  ctx->now = ctx->port.now_us(ctx->port.user);
  if (!ctx->started) {
    ctx->started = 1;
    ctx->last_rx_us = ctx->now;
    start_hello(ctx, "boot");
  }
  while (rounds++ < 32 && (n = ctx->port.read(ctx->port.user, buf, sizeof buf)) > 0) ebp_input(ctx, buf, (size_t)n);
  ctx->now = ctx->port.now_us(ctx->port.user);

  if (ctx->state == EBP_S_HELLO && ctx->now - ctx->last_hello_us >= EBP_HELLO_EVERY_US) send_hello_frame(ctx);
  if (ctx->state == EBP_S_UP) {
    uint64_t hb = (uint64_t)ctx->heartbeat_ms * 1000u;
    if (ctx->now - ctx->last_rx_us > 3 * hb) {
      start_hello(ctx, "silence");
      return;
    }
    if (ctx->n_out && ctx->now >= ctx->rto_deadline) {
      resend_all(ctx);
      ctx->rto_us = ctx->rto_us * 2 > EBP_RTO_MAX_US ? EBP_RTO_MAX_US : ctx->rto_us * 2;
      ctx->rto_deadline = ctx->now + ctx->rto_us;
      if (!ctx->peer_busy) {
        ctx->c.timeouts++;
        if (++ctx->timeouts >= EBP_MAX_TIMEOUTS) {
          start_hello(ctx, "retransmission");
          return;
        }
      }
    }
    pump(ctx);
    if (ctx->now - ctx->last_hb_us >= hb) send_heartbeat(ctx);
  }
  if (ctx->ack_due && ctx->now >= ctx->ack_deadline) send_pure_ack(ctx, 0);
}

void ebp_vlog(ebp_ctx_t *ctx, ebp_log_level_t level, const char *fmt, va_list ap) {
  LogMsg m;
  pb_ostream_t os;
  size_t n;
  uint8_t buf[edge_agent_bridge_v1_Log_size];
  if (ctx->state == EBP_S_REFUSED || !ctx->started) return;
  memset(&m, 0, sizeof m);
  m.level = (edge_agent_bridge_v1_LogLevel)level;
  m.t_us = ctx->port.now_us(ctx->port.user);
  vsnprintf(m.text, sizeof m.text, fmt, ap);
  for (n = strlen(m.text); n > 0 && (m.text[n - 1] == '\n' || m.text[n - 1] == '\r'); n--) m.text[n - 1] = 0;
  os = pb_ostream_from_buffer(buf, sizeof buf < payload_cap(ctx) ? sizeof buf : payload_cap(ctx));
  if (!pb_encode(&os, edge_agent_bridge_v1_Log_fields, &m)) return;
  write_frame(ctx, EBP_CH_LOG, 0, 0, buf, os.bytes_written);
}

void ebp_log(ebp_ctx_t *ctx, ebp_log_level_t level, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  ebp_vlog(ctx, level, fmt, ap);
  va_end(ap);
}

void ebp_set_busy(ebp_ctx_t *ctx, int busy) {
  int was = busy_now(ctx);
  ctx->busy = busy ? 1 : 0;
  if (was && !busy_now(ctx)) busy_cleared(ctx);
}

void ebp_note_raw_output(ebp_ctx_t *ctx) { ctx->wrote_delim = 0; }

int ebp_init(ebp_ctx_t *ctx, const ebp_config_t *config, const ebp_port_t *port) {
  size_t i;
  uint32_t max_seq = 0;
  memset(ctx, 0, sizeof *ctx);
  ctx->cfg = *config;
  ctx->port = *port;
  if (!port->read || !port->write || !port->now_us) return -1;
  if (ctx->cfg.max_frame == 0 || ctx->cfg.max_frame > EBP_MAX_FRAME) ctx->cfg.max_frame = EBP_MAX_FRAME;
  if (ctx->cfg.max_frame < 256) ctx->cfg.max_frame = 256;
  if (ctx->cfg.window == 0 || ctx->cfg.window > EBP_WINDOW) ctx->cfg.window = EBP_WINDOW;
  ctx->cfg.capabilities |= EBP_CAP_TIME | EBP_CAP_COMMANDS;
#if EBP_MGMT_QUEUE > 0
  if (ctx->cfg.on_management) ctx->cfg.capabilities |= EBP_CAP_MANAGEMENT;
#endif
  if (port->unique_id) ctx->board_id_len = (uint8_t)port->unique_id(port->user, ctx->board_id, sizeof ctx->board_id);
  if (ctx->board_id_len > 16) ctx->board_id_len = 16;
  ctx->boot_id = config->boot_id;
  while (ctx->boot_id == 0 && port->random32) ctx->boot_id = port->random32(port->user);
  if (ctx->boot_id == 0) ctx->boot_id = 1;
  ctx->max_frame = 256;
  ctx->window = ctx->cfg.window;
  ctx->heartbeat_ms = 1000;
  ebp_rx_init(&ctx->rx, ctx->cfg.max_frame); /* the receiver checks our own offer, always */
  ctx->ring_count = config->ring_count <= config->ring_cap ? config->ring_count : config->ring_cap;
  for (i = 0; i < ctx->ring_count; i++) {
    ctx->cfg.ring[i].sent = 0;
    ctx->cfg.ring[i].acked = 0;
    if (ctx->cfg.ring[i].boot_id == ctx->boot_id && ctx->cfg.ring[i].seq > max_seq) max_seq = ctx->cfg.ring[i].seq;
  }
  ctx->next_reading_seq = config->first_seq ? config->first_seq : max_seq + 1;
  reset_reliable(ctx);
  return 0;
}
