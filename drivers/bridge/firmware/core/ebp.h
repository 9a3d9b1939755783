/*
 * ebp.h: edge bridge protocol, the portable C99 core of the edge-agent firmware bridge.
 *
 * The contract is docs/firmware-bridge.md (protocol version 1) and drivers/bridge/bridge.proto.
 * No malloc, no mutable globals: every board is one ebp_ctx_t, so several boards can live in one
 * process. The application owns the context, the reading ring's storage and the point table.
 *
 * Typical main loop:
 *     ebp_init(&ctx, &cfg, &port);
 *     for (;;) { ebp_poll(&ctx); if (time_to_measure) ebp_record(&ctx, 1, ebp_number(21.5), EBP_GOOD); }
 */
#ifndef EBP_H
#define EBP_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- compile-time sizes (override with -D) ---------------------------------------------------- */
#ifndef EBP_MAX_FRAME
#define EBP_MAX_FRAME 1024 /* largest frame, header to CRC, before COBS; >= 256; offered in Hello */
#endif
#ifndef EBP_WINDOW
#define EBP_WINDOW 8 /* reliable frames in flight; 1..16; offered in Hello */
#endif
#ifndef EBP_TEXT_MAX
#define EBP_TEXT_MAX 33 /* text reading/command value incl. NUL (bridge.options: 33) */
#endif
#ifndef EBP_RESULT_QUEUE
#define EBP_RESULT_QUEUE 4 /* command results waiting for a window slot; full => BUSY */
#endif

#ifndef EBP_MGMT_QUEUE
#define EBP_MGMT_QUEUE 4 /* management (SMP) responses waiting for a window slot; full => BUSY; 0: none (no updates) */
#endif
#ifndef EBP_MGMT_RSP_MAX
#define EBP_MGMT_RSP_MAX 384 /* largest management response (an image state list of two slots: ~260 bytes) */
#endif
#ifndef EBP_SCRATCH_SIZE
#define EBP_SCRATCH_SIZE 896 /* room for the largest nanopb envelope struct, Telemetry (checked in ebp.c) */
#endif

#define EBP_HELLO_FRAME_MAX 176 /* Link{Hello} at most 160 bytes (bridge.options) + 11 */

#define EBP_PROTOCOL 1
#define EBP_HEADER 7
#define EBP_TRAILER 4
#define EBP_MIN_FRAME (EBP_HEADER + EBP_TRAILER)
#define EBP_MAX_PAYLOAD (EBP_MAX_FRAME - EBP_MIN_FRAME)
/* Largest COBS chunk for a frame of n bytes (spec section 3): n + n/254 + 1. */
#define EBP_COBS_MAX(n) ((n) + (n) / 254 + 1)

/* frame flags */
#define EBP_F_REL 0x01
#define EBP_F_ACK 0x02
#define EBP_F_NAK 0x04
#define EBP_F_BUSY 0x08

/* channels */
#define EBP_CH_LINK 0
#define EBP_CH_TELEMETRY 1
#define EBP_CH_COMMANDS 2
#define EBP_CH_LOG 3
#define EBP_CH_MANAGEMENT 7

/* timers (spec section 4 and 5), microseconds */
#define EBP_ACK_DELAY_US 20000u
#define EBP_RTO_INITIAL_US 300000u
#define EBP_RTO_MAX_US 3000000u
#define EBP_MAX_TIMEOUTS 8
#define EBP_HELLO_EVERY_US 1000000u

/* capability bits (bridge.proto Capability) */
#define EBP_CAP_TIME 1u
#define EBP_CAP_CHILDREN 2u
#define EBP_CAP_PERSISTENT_RING 4u
#define EBP_CAP_COMMANDS 8u
#define EBP_CAP_MANAGEMENT 16u

/* ---- CRC-32/ISO-HDLC, COBS, frames ------------------------------------------------------------ */

/* CRC-32 (Ethernet/zlib): ebp_crc32(0, data, n); chain with ebp_crc32(prev, more, m).
 * Table-driven (1 KB const) by default, bitwise with -DEBP_CRC_BITWISE=1. */
uint32_t ebp_crc32(uint32_t crc, const uint8_t *data, size_t len);

/* COBS encode: returns the encoded length (no delimiter), 0 if dst is too small.
 * A run of 254 non-zero bytes ending the data is not followed by an extra 0x01 code. */
size_t ebp_cobs_encode(const uint8_t *src, size_t len, uint8_t *dst, size_t cap);
/* COBS decode (dst may equal src): returns the decoded length, or -1 if invalid (a zero byte, a
 * code running past the end) or larger than cap. */
int ebp_cobs_decode(const uint8_t *src, size_t len, uint8_t *dst, size_t cap);

typedef struct {
  uint8_t ver, chan, flags;
  uint16_t seq, ack;
} ebp_hdr_t;

/* Frame encode: header + payload + CRC into out. Returns the frame length or 0 if cap too small. */
size_t ebp_frame_encode(const ebp_hdr_t *h, const uint8_t *payload, size_t plen, uint8_t *out, size_t cap);

typedef enum {
  EBP_FRAME_OK = 0,
  EBP_FRAME_SHORT = -1,       /* fewer than 11 bytes: garbage */
  EBP_FRAME_CRC = -2,         /* CRC mismatch */
  EBP_FRAME_BAD_VERSION = -3, /* ver != 1 */
} ebp_frame_status_t;
/* Frame decode (after COBS): header into h, payload points into frame. */
ebp_frame_status_t ebp_frame_decode(const uint8_t *frame, size_t len, ebp_hdr_t *h, const uint8_t **payload, size_t *plen);

/* Wire encode: optional leading 0x00, COBS(frame), trailing 0x00. Returns bytes or 0. */
size_t ebp_wire_encode(const uint8_t *frame, size_t len, int lead_delim, uint8_t *out, size_t cap);

/* ---- streaming receiver (spec section 3) ------------------------------------------------------ */
typedef struct {
  uint32_t frames, garbage, oversized, crc_errors, bad_version;
} ebp_rx_counters_t;

typedef struct {
  uint8_t buf[EBP_COBS_MAX(EBP_MAX_FRAME)];
  size_t len;
  size_t limit;     /* encoded chunk limit: EBP_COBS_MAX(max_frame) */
  size_t max_frame; /* a decoded frame above it is oversized too */
  int overflow;     /* dropping an oversized chunk until the next 0x00 */
  ebp_rx_counters_t c;
  /* result of the last EBP_RX_FRAME */
  ebp_hdr_t hdr;
  const uint8_t *payload;
  size_t plen;
} ebp_rx_t;

typedef enum { EBP_RX_NONE = 0, EBP_RX_FRAME = 1, EBP_RX_CRC = 2, EBP_RX_DROPPED = 3 } ebp_rx_result_t;

void ebp_rx_init(ebp_rx_t *rx, size_t max_frame);
void ebp_rx_set_max_frame(ebp_rx_t *rx, size_t max_frame);
/* Feed one byte. EBP_RX_FRAME: a frame is in rx->hdr/payload/plen (valid until the next call).
 * EBP_RX_CRC: a chunk failed the CRC (counted). EBP_RX_DROPPED: garbage/oversized/bad version. */
ebp_rx_result_t ebp_rx_byte(ebp_rx_t *rx, uint8_t b);

/* ---- application types ------------------------------------------------------------------------ */
typedef enum { EBP_GOOD = 0, EBP_UNCERTAIN = 1, EBP_BAD = 2 } ebp_quality_t;
typedef enum { EBP_NUMBER = 0, EBP_BOOL = 1, EBP_TEXT = 2, EBP_ACTION = 3 } ebp_point_type_t;
typedef enum { EBP_V_NONE = 0, EBP_V_NUMBER, EBP_V_BOOL, EBP_V_TEXT } ebp_value_kind_t;
typedef enum { EBP_LOG_DEBUG = 0, EBP_LOG_INFO, EBP_LOG_WARN, EBP_LOG_ERROR } ebp_log_level_t;
typedef enum {
  EBP_CMD_OK = 0,
  EBP_CMD_REFUSED = 1,
  EBP_CMD_FAILED = 2,
  EBP_CMD_UNKNOWN_POINT = 3,
} ebp_cmd_status_t;

typedef struct {
  uint8_t kind; /* ebp_value_kind_t */
  union {
    double number;
    uint8_t flag;
    char text[EBP_TEXT_MAX];
  } v;
} ebp_value_t;

ebp_value_t ebp_number(double x);
ebp_value_t ebp_bool(int b);
ebp_value_t ebp_text(const char *s);
ebp_value_t ebp_none(void);

/* One entry of the board's point table (Describe). */
typedef struct {
  uint32_t id;        /* unique on the board for this boot; never 0 */
  const char *name;   /* [a-z0-9_.-], 1..32 */
  const char *unit;   /* may be "" or NULL */
  ebp_point_type_t type;
  uint8_t writable;
  double min, max;    /* write bounds for numbers; both 0: none */
  const char *child;  /* NULL or "": the board's own point; else the child node's id */
} ebp_point_t;

/* One reading in the ring (storage owned by the application, see ebp_config_t.ring). */
typedef struct {
  uint32_t boot_id;
  uint32_t seq;
  uint32_t point;
  uint64_t t_us;
  ebp_value_t value;
  uint8_t quality;
  uint8_t sent; /* sent in the current session */
  uint8_t acked;
} ebp_reading_t;

/* ---- port layer ------------------------------------------------------------------------------- */
typedef struct {
  void *user;
  /* Read up to n bytes without blocking; return the count (0: nothing now), < 0 on error. */
  int (*read)(void *user, uint8_t *buf, size_t n);
  /* Write all n bytes (may block briefly); return n, or < 0 on error. */
  int (*write)(void *user, const uint8_t *buf, size_t n);
  /* Monotonic microseconds since boot (never goes back). */
  uint64_t (*now_us)(void *user);
  /* 32 random bits for the boot id (hardware RNG, ADC noise, ...). */
  uint32_t (*random32)(void *user);
  /* Unique id of the board (MCU UID, eFuse MAC): fill up to max (16) bytes, return 4..16. */
  size_t (*unique_id)(void *user, uint8_t *buf, size_t max);
} ebp_port_t;

/* ---- events for the application (logging, tests) ---------------------------------------------- */
typedef enum {
  EBP_EV_SESSION_UP = 1,   /* a = window, b = max_frame, text = NULL */
  EBP_EV_SESSION_LOST,     /* text = reason ("retransmission", "silence", "hello request") */
  EBP_EV_REFUSED,          /* text = gateway's reason */
  EBP_EV_ACKED,            /* a = boot_id, b = upto_seq */
  EBP_EV_COMMAND,          /* a = command id, b = status, text = point name */
  EBP_EV_TIME,             /* answered a TimeRequest: a = t1 in s (UTC), b = t2 in ms (board clock) */
  EBP_EV_HELLO_SENT,       /* a = boot_id */
  EBP_EV_UTC,              /* HelloReply's UTC: see ctx->utc_at_up_us / ctx->up_at_us */
} ebp_event_t;

typedef struct ebp_ctx ebp_ctx_t;

/* Command callback: write `value` to point `pt`; fill `readback` with the point's value after the
 * write (or leave it EBP_V_NONE) and optionally a message (msg_size bytes). Return the status.
 * The core has already checked the point exists, is writable, the type and the bounds. */
typedef ebp_cmd_status_t (*ebp_command_cb)(void *user, const ebp_point_t *pt, const ebp_value_t *value,
                                           ebp_value_t *readback, char *msg, size_t msg_size);
typedef void (*ebp_event_cb)(void *user, ebp_event_t ev, uint32_t a, uint32_t b, const char *text);
/* Management callback (channel 7, docs/firmware-bridge.md section 13): `req` is one SMP packet
 * from the gateway, delivered once and in order; write the response packet into `rsp` (at most
 * `cap` bytes) and return its length, or 0 for none. The core sends it on the reliable channel.
 * Setting it announces CAP_MANAGEMENT. */
typedef size_t (*ebp_mgmt_cb)(void *user, const uint8_t *req, size_t len, uint8_t *rsp, size_t cap);

typedef struct {
  const char *hardware;           /* "room-node/rev-c" */
  const char *firmware;           /* "1.0.0" */
  const uint8_t *image_hash;      /* 32 bytes or NULL */
  uint32_t boot_id;               /* 0: random from the port (never 0) */
  uint8_t reset_reason;           /* bridge.proto ResetReason */
  uint32_t capabilities;          /* EBP_CAP_*; TIME and COMMANDS are added automatically */
  uint16_t max_frame;             /* 0: EBP_MAX_FRAME (256..EBP_MAX_FRAME) */
  uint8_t window;                 /* 0: EBP_WINDOW (1..EBP_WINDOW) */
  const ebp_point_t *points;      /* point table (kept by the application) */
  size_t n_points;
  ebp_reading_t *ring;            /* reading ring storage (kept by the application) */
  size_t ring_cap;
  size_t ring_count;              /* readings already in `ring` from ring[0] (persisted ring), else 0 */
  uint32_t first_seq;             /* 0: 1; next sequence of this boot (for tests) */
  uint32_t batch_us;              /* 0: send readings at once; else a batch that does not fill a frame waits up to this long */
  ebp_command_cb on_command;
  ebp_event_cb on_event;
  void *user;                     /* passed to the callbacks */
  ebp_mgmt_cb on_management;      /* NULL: no firmware updates over the bridge */
} ebp_config_t;

typedef enum { EBP_S_HELLO = 0, EBP_S_UP = 1, EBP_S_REFUSED = 2 } ebp_state_t;

typedef struct {
  uint32_t tx_frames, tx_bytes, rx_bytes, retransmits, timeouts, naks_sent, naks_received;
  uint32_t duplicates, out_of_order, unknown_channel, decode_errors, sessions, ring_dropped;
  uint32_t busy_refusals;
} ebp_counters_t;

typedef struct {
  uint8_t chan;
  uint8_t resent;   /* sent more than once: its ack gives no round-trip sample (Karn) */
  uint16_t seq;
  uint16_t len;
  uint64_t sent_us; /* first sending (port clock) */
  uint8_t payload[EBP_MAX_PAYLOAD];
} ebp_slot_t;

typedef struct {
  uint32_t id;
  uint8_t status;
  char message[64];
  uint32_t point;
  ebp_value_t readback;
  uint64_t t_us;
} ebp_result_t;

struct ebp_ctx {
  ebp_config_t cfg;
  ebp_port_t port;
  ebp_rx_t rx;
  ebp_counters_t c;
  uint8_t board_id[16];
  uint8_t board_id_len;
  uint32_t boot_id;
  ebp_state_t state;
  uint64_t now;                   /* port clock at the start of the current poll */
  /* session parameters */
  uint16_t max_frame, window, heartbeat_ms;
  uint64_t up_at_us, utc_at_up_us; /* board clock and gateway UTC when the session came up */
  uint64_t last_rx_us, last_hb_us, last_hello_us;
  /* transmit side of the reliable channel */
  uint16_t next_seq;              /* seq of the next new REL frame */
  ebp_slot_t slots[EBP_WINDOW];   /* unacknowledged REL frames, oldest at slot_head */
  uint8_t slot_head, n_out;
  uint32_t rto_us;                /* current RTO: from SRTT/RTTVAR on progress, doubled on timeout */
  uint32_t srtt_us, rttvar_us;    /* RFC 6298 estimates, integer microseconds (valid when rtt_samples > 0) */
  uint32_t rtt_samples;           /* round-trip samples this session */
  uint64_t rto_deadline;
  uint8_t timeouts;
  uint16_t nak_answered_ack;
  uint64_t nak_answered_at;
  int nak_answered;
  uint8_t peer_busy, busy, busy_dropped;
  /* receive side */
  uint16_t expected;              /* next REL seq expected from the peer */
  uint8_t have_rel;               /* a REL frame arrived this session: send ACK on everything */
  uint8_t ack_due;
  uint8_t unacked_in;             /* REL frames taken since the last frame that carried our ACK */
  uint64_t ack_deadline;
  uint16_t nak_sent_ack;
  uint64_t nak_sent_at;
  int nak_sent;
  uint8_t wrote_delim;            /* the last byte written was a frame delimiter */
  /* Hello kept as a frame (resent as is while no reply) */
  uint8_t hello[EBP_HELLO_FRAME_MAX];
  uint16_t hello_len;
  /* application queues */
  uint8_t describe_due, describe_own_sent;
  size_t describe_next, describe_group;
  ebp_result_t results[EBP_RESULT_QUEUE];
  uint8_t n_results;
  /* management responses waiting for a window slot (EBP_MGMT_QUEUE 0: no management at all) */
#if EBP_MGMT_QUEUE > 0
  uint8_t mgmt_rsp[EBP_MGMT_QUEUE][EBP_MGMT_RSP_MAX];
  uint16_t mgmt_len[EBP_MGMT_QUEUE];
#endif
  uint8_t n_mgmt;
  /* reading ring */
  size_t ring_head, ring_count;
  uint32_t next_reading_seq;
  /* scratch */
  union {
    double align_d;
    uint64_t align_u;
    uint8_t bytes[EBP_SCRATCH_SIZE];
  } msg;                          /* one decoded/encoded protobuf envelope */
  uint8_t started;
  uint8_t frame[EBP_MAX_FRAME];
  uint8_t wire[EBP_COBS_MAX(EBP_MAX_FRAME) + 2];
  uint8_t payload[EBP_MAX_PAYLOAD];
};

/* ---- API ---------------------------------------------------------------------------------------- */
/* Initialise: reads the unique id and boot id, sends the first Hello at the first ebp_poll. */
int ebp_init(ebp_ctx_t *ctx, const ebp_config_t *config, const ebp_port_t *port);
/* Call often from the main loop: reads the port, handles frames, runs the timers, sends. */
void ebp_poll(ebp_ctx_t *ctx);
/* Feed received bytes directly (when the application reads the port itself). */
void ebp_input(ebp_ctx_t *ctx, const uint8_t *data, size_t len);
/* Add a reading (stamped now); returns its board sequence (0 on a bad point). Overwrites the
 * oldest reading when the ring is full (counted in ring_dropped). */
uint32_t ebp_record(ebp_ctx_t *ctx, uint32_t point, ebp_value_t value, ebp_quality_t quality);
/* A Log line on channel 3 (unreliable), printf-style, cut at 200 bytes. */
void ebp_log(ebp_ctx_t *ctx, ebp_log_level_t level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
void ebp_vlog(ebp_ctx_t *ctx, ebp_log_level_t level, const char *fmt, va_list ap);
/* The point table changed: send Describe again. */
void ebp_points_changed(ebp_ctx_t *ctx);
/* A relayed child node appeared or vanished (ChildEvent, reliable). Returns 0, -1 if no room now. */
int ebp_child_event(ebp_ctx_t *ctx, const char *child, int present);
/* Flow control: while busy, the board sets BUSY and takes no new REL frames. */
void ebp_set_busy(ebp_ctx_t *ctx, int busy);
/* The application wrote raw bytes to the port: the next frame starts with a delimiter. */
void ebp_note_raw_output(ebp_ctx_t *ctx);
/* Readings waiting (not yet acknowledged by ReadingsAck). */
size_t ebp_ring_used(const ebp_ctx_t *ctx);
/* Copy the ring (oldest first) into out[cap]; for persisting it. Returns the count. */
size_t ebp_ring_copy(const ebp_ctx_t *ctx, ebp_reading_t *out, size_t cap);
const ebp_point_t *ebp_point_by_id(const ebp_ctx_t *ctx, uint32_t id);

#ifdef __cplusplus
}
#endif
#endif
