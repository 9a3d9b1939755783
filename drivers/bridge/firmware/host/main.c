/*
 * ebp-host: the reference core on Linux, simulating a "room node" on a tty or pty.
 * One line per notable event on stderr, "ebp-host: <event> key=value ...", for tests to wait on.
 * See ../README.md for the options and the lines.
 */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ebp.h"
#include "ebp_posix.h"
#include "ebp_schema.h"
#include "flash.h"

#define PI 3.14159265358979323846

enum { P_TEMPERATURE = 1, P_HUMIDITY = 2, P_CO2 = 3, P_SETPOINT = 4, P_LED = 5 };

static const ebp_point_t all_points[] = {
    {P_TEMPERATURE, "temperature", "°C", EBP_NUMBER, 0, 0, 0, NULL},
    {P_HUMIDITY, "humidity", "%", EBP_NUMBER, 0, 0, 0, NULL},
    {P_CO2, "co2", "ppm", EBP_NUMBER, 0, 0, 0, NULL},
    {P_SETPOINT, "setpoint", "°C", EBP_NUMBER, 1, 5, 30, NULL},
    {P_LED, "led", "", EBP_BOOL, 1, 0, 0, NULL},
};
#define N_ALL (sizeof all_points / sizeof all_points[0])

typedef struct {
  ebp_ctx_t ctx;
  ebp_posix_t px;
  ebp_point_t points[N_ALL];
  size_t n_points;
  double setpoint;
  int led;
  /* the last command, for the event line */
  char cmd_value[48], cmd_readback[48];
  const char *persist;
  unsigned long count, recorded;
  uint32_t last_seq;
  int all_acked_said;
  /* --flash: two image slots, a bootloader and the SMP server (firmware updates) */
  host_flash_t flash;
  int has_flash;
  char version[32], behaviour[16];
  uint8_t image_hash[32];
  uint64_t reset_at;     /* an SMP reset (or a crash) due at this time; 0: none */
  int reset_reason_next; /* the reset reason the next boot reports */
} app_t;

static volatile sig_atomic_t stop_flag;
static void on_signal(int sig) {
  (void)sig;
  stop_flag = 1;
}

static void fmt_value(char *buf, size_t n, const ebp_value_t *v) {
  switch (v->kind) {
  case EBP_V_NUMBER: snprintf(buf, n, "%g", v->v.number); break;
  case EBP_V_BOOL: snprintf(buf, n, "%s", v->v.flag ? "true" : "false"); break;
  case EBP_V_TEXT: snprintf(buf, n, "%s", v->v.text); break;
  default: snprintf(buf, n, "none"); break;
  }
}

static const char *status_name(uint32_t s) {
  switch (s) {
  case EBP_CMD_OK: return "ok";
  case EBP_CMD_REFUSED: return "refused";
  case EBP_CMD_FAILED: return "failed";
  case EBP_CMD_UNKNOWN_POINT: return "unknown-point";
  default: return "?";
  }
}

/* ---- persisted ring (models CAP_PERSISTENT_RING) ---------------------------------------------- */
#define PERSIST_MAGIC "EBPRING1"
static void persist_save(app_t *a) {
  char tmp[4096];
  FILE *f;
  size_t n, cap = a->ctx.cfg.ring_cap;
  ebp_reading_t *copy;
  if (!a->persist) return;
  copy = calloc(cap ? cap : 1, sizeof *copy);
  if (!copy) return;
  n = ebp_ring_copy(&a->ctx, copy, cap);
  snprintf(tmp, sizeof tmp, "%s.tmp", a->persist);
  f = fopen(tmp, "wb");
  if (f) {
    uint64_t n64 = n;
    int ok = fwrite(PERSIST_MAGIC, 8, 1, f) == 1 && fwrite(&n64, sizeof n64, 1, f) == 1 &&
             (n == 0 || fwrite(copy, sizeof *copy, n, f) == n);
    ok = (fclose(f) == 0) && ok;
    if (ok) rename(tmp, a->persist);
  }
  free(copy);
}

static size_t persist_load(const char *path, ebp_reading_t *ring, size_t cap) {
  FILE *f = fopen(path, "rb");
  char magic[8];
  uint64_t n64 = 0;
  size_t n = 0;
  if (!f) return 0;
  if (fread(magic, 8, 1, f) == 1 && memcmp(magic, PERSIST_MAGIC, 8) == 0 && fread(&n64, sizeof n64, 1, f) == 1) {
    if (n64 > cap) { /* keep the newest */
      fseek(f, (long)((n64 - cap) * sizeof *ring), SEEK_CUR);
      n64 = cap;
    }
    n = fread(ring, sizeof *ring, (size_t)n64, f);
  }
  fclose(f);
  return n;
}

/* ---- callbacks -------------------------------------------------------------------------------- */
static ebp_cmd_status_t on_command(void *user, const ebp_point_t *pt, const ebp_value_t *value, ebp_value_t *readback,
                                   char *msg, size_t msg_size) {
  app_t *a = user;
  ebp_cmd_status_t st = EBP_CMD_OK;
  fmt_value(a->cmd_value, sizeof a->cmd_value, value);
  if (pt->id == P_SETPOINT) {
    a->setpoint = value->v.number;
    *readback = ebp_number(a->setpoint);
  } else if (pt->id == P_LED) {
    a->led = value->v.flag != 0;
    *readback = ebp_bool(a->led);
  } else {
    snprintf(msg, msg_size, "%s cannot be written", pt->name);
    st = EBP_CMD_REFUSED;
  }
  fmt_value(a->cmd_readback, sizeof a->cmd_readback, readback);
  return st;
}

static void on_event(void *user, ebp_event_t ev, uint32_t x, uint32_t y, const char *text) {
  app_t *a = user;
  switch (ev) {
  case EBP_EV_HELLO_SENT:
    fprintf(stderr, "ebp-host: hello boot_id=0x%08x reason=%s\n", x, text ? text : "");
    break;
  case EBP_EV_SESSION_UP:
    fprintf(stderr, "ebp-host: session up window=%u max_frame=%u heartbeat_ms=%u ring_used=%lu\n", x, y,
            a->ctx.heartbeat_ms, (unsigned long)ebp_ring_used(&a->ctx));
    break;
  case EBP_EV_SESSION_LOST:
    fprintf(stderr, "ebp-host: session lost reason=%s\n", text ? text : "");
    break;
  case EBP_EV_REFUSED:
    fprintf(stderr, "ebp-host: refused reason=%s\n", text ? text : "");
    break;
  case EBP_EV_ACKED:
    fprintf(stderr, "ebp-host: acked boot_id=0x%08x upto=%u ring_used=%lu\n", x, y, (unsigned long)ebp_ring_used(&a->ctx));
    persist_save(a);
    break;
  case EBP_EV_COMMAND:
    if (y == EBP_CMD_OK)
      fprintf(stderr, "ebp-host: command id=%u point=%s status=%s value=%s readback=%s\n", x, text, status_name(y),
              a->cmd_value, a->cmd_readback);
    else
      fprintf(stderr, "ebp-host: command id=%u point=%s status=%s\n", x, text, status_name(y));
    a->cmd_value[0] = a->cmd_readback[0] = 0;
    snprintf(a->cmd_value, sizeof a->cmd_value, "none");
    snprintf(a->cmd_readback, sizeof a->cmd_readback, "none");
    break;
  case EBP_EV_TIME:
    fprintf(stderr, "ebp-host: time t1_s=%u t2_ms=%u\n", x, y);
    break;
  default:
    break;
  }
}

static size_t on_management(void *user, const uint8_t *req, size_t len, uint8_t *rsp, size_t cap) {
  app_t *a = user;
  int reset = 0;
  size_t n = flash_smp(&a->flash, req, len, rsp, cap, &reset);
  if (len >= 8 && (req[7] == 1 && req[5] == 1)) { /* upload: one line per 64 KiB, for tests to follow */
    static uint32_t said;
    if (a->flash.h.has_upload && a->flash.h.upload_off / 65536u != said / 65536u) {
      said = a->flash.h.upload_off;
      fprintf(stderr, "ebp-host: upload off=%u len=%u\n", a->flash.h.upload_off, a->flash.h.upload_len);
    }
  }
  if (reset && !a->reset_at) {
    a->reset_at = a->ctx.port.now_us(a->ctx.port.user) + 50000u; /* once the answer has left */
    a->reset_reason_next = 3 /* RESET_SOFTWARE */;
    fprintf(stderr, "ebp-host: reset requested\n");
  }
  return n;
}

/* A reset: the program starts again (the bootloader runs first), telling the new boot why. */
static void reboot(app_t *a, char **argv, int argc) {
  char **args = calloc((size_t)argc + 3, sizeof *args);
  char reason[8];
  int i, n = 0;
  if (!args) exit(1);
  for (i = 0; i < argc; i++) {
    if ((!strcmp(argv[i], "--reset-reason") || !strcmp(argv[i], "--boot-id")) && i + 1 < argc) {
      i++;
      continue;
    }
    args[n++] = argv[i];
  }
  snprintf(reason, sizeof reason, "%d", a->reset_reason_next);
  args[n++] = "--reset-reason";
  args[n++] = reason;
  args[n] = NULL;
  fprintf(stderr, "ebp-host: rebooting reason=%d\n", a->reset_reason_next);
  fflush(stderr);
  persist_save(a);
  ebp_posix_close(&a->px);
  flash_close(&a->flash);
  execv("/proc/self/exe", args);
  fprintf(stderr, "ebp-host: cannot restart: %s\n", strerror(errno));
  exit(1);
}

/* ---- the room node ---------------------------------------------------------------------------- */
static double round2(double x) { return floor(x * 100.0 + 0.5) / 100.0; }

static void record_tick(app_t *a, unsigned long k) {
  size_t i;
  for (i = 0; i < a->n_points && (a->count == 0 || a->recorded < a->count); i++) {
    ebp_value_t v;
    double t = (double)k;
    switch (a->points[i].id) {
    case P_TEMPERATURE: v = ebp_number(round2(21.0 + 2.0 * sin(2 * PI * t / 60.0))); break;
    case P_HUMIDITY: v = ebp_number(round2(45.0 + 10.0 * sin(2 * PI * t / 90.0 + 1.0))); break;
    case P_CO2: v = ebp_number(600.0 + (double)((k * 5) % 300)); break;
    case P_SETPOINT: v = ebp_number(a->setpoint); break;
    default: v = ebp_bool(a->led); break;
    }
    a->last_seq = ebp_record(&a->ctx, a->points[i].id, v, EBP_GOOD);
    a->recorded++;
    if (a->count && a->recorded == a->count)
      fprintf(stderr, "ebp-host: recorded count=%lu last_seq=%u\n", a->recorded, a->last_seq);
  }
  persist_save(a);
}

static int parse_hex(const char *s, uint8_t *out, size_t max) {
  size_t n = 0;
  if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) s += 2;
  while (s[0] && s[1] && n < max) {
    unsigned v;
    if (sscanf(s, "%2x", &v) != 1) return -1;
    out[n++] = (uint8_t)v;
    s += 2;
  }
  return s[0] ? -1 : (int)n;
}

static void usage(void) {
  fprintf(stderr,
          "usage: ebp-host --port TTY --id HEX [--hardware room-node/rev-c] [--firmware 1.0.0]\n"
          "                [--interval-ms 1000] [--count N] [--points temperature,humidity,co2,setpoint,led]\n"
          "                [--ring 256] [--log-every N] [--seed N] [--boot-id HEX] [--persist FILE]\n"
          "                [--reset-reason N] [--max-frame N] [--window N] [--baud 115200]\n"
          "                [--batch-ms 0] [--flash FILE]\n");
}

int main(int argc, char **argv) {
  static app_t app;
  app_t *a = &app;
  ebp_config_t cfg;
  ebp_port_t port;
  const char *path = NULL, *id_hex = NULL, *points = "temperature,humidity,co2,setpoint,led", *flash_path = NULL;
  unsigned long interval_ms = 1000, ring_n = 256, log_every = 0, seed = 1, boot_id = 0, baud = 115200;
  unsigned long max_frame = 0, window = 0, reset_reason = 1, batch_ms = 0;
  ebp_reading_t *ring;
  size_t ring_loaded = 0;
  unsigned long k = 0, logs = 0;
  uint64_t next_tick, next_reopen = 0;
  int i, n;
  struct sigaction sa;

  memset(&cfg, 0, sizeof cfg);
  cfg.hardware = "room-node/rev-c";
  cfg.firmware = "1.0.0";
  for (i = 1; i < argc; i++) {
    const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
      usage();
      return 0;
    }
    if (!v) {
      usage();
      return 2;
    }
    i++;
    if (!strcmp(o, "--port")) path = v;
    else if (!strcmp(o, "--id")) id_hex = v;
    else if (!strcmp(o, "--hardware")) cfg.hardware = v;
    else if (!strcmp(o, "--firmware")) cfg.firmware = v;
    else if (!strcmp(o, "--interval-ms")) interval_ms = strtoul(v, NULL, 10);
    else if (!strcmp(o, "--count")) a->count = strtoul(v, NULL, 10);
    else if (!strcmp(o, "--points")) points = v;
    else if (!strcmp(o, "--ring")) ring_n = strtoul(v, NULL, 10);
    else if (!strcmp(o, "--log-every")) log_every = strtoul(v, NULL, 10);
    else if (!strcmp(o, "--seed")) seed = strtoul(v, NULL, 10);
    else if (!strcmp(o, "--boot-id")) boot_id = strtoul(v, NULL, 16);
    else if (!strcmp(o, "--persist")) a->persist = v;
    else if (!strcmp(o, "--reset-reason")) reset_reason = strtoul(v, NULL, 10);
    else if (!strcmp(o, "--max-frame")) max_frame = strtoul(v, NULL, 10);
    else if (!strcmp(o, "--window")) window = strtoul(v, NULL, 10);
    else if (!strcmp(o, "--baud")) baud = strtoul(v, NULL, 10);
    else if (!strcmp(o, "--batch-ms")) batch_ms = strtoul(v, NULL, 10);
    else if (!strcmp(o, "--flash")) flash_path = v;
    else {
      fprintf(stderr, "ebp-host: unknown option %s\n", o);
      usage();
      return 2;
    }
  }
  if (!path || !id_hex) {
    usage();
    return 2;
  }
  n = parse_hex(id_hex, a->px.id, sizeof a->px.id);
  if (n < 4) {
    fprintf(stderr, "ebp-host: --id must be 4 to 16 bytes of hex\n");
    return 2;
  }
  a->px.id_len = (size_t)n;
  { /* --points: a comma-separated subset of the room node's points, in table order */
    size_t j;
    for (j = 0; j < N_ALL; j++) {
      const char *s = points;
      size_t len = strlen(all_points[j].name);
      while (s && *s) {
        if (!strncmp(s, all_points[j].name, len) && (s[len] == ',' || s[len] == 0)) {
          a->points[a->n_points++] = all_points[j];
          break;
        }
        s = strchr(s, ',');
        if (s) s++;
      }
    }
  }
  if (ring_n == 0 || ring_n > 1000000) ring_n = 256;
  ring = calloc(ring_n, sizeof *ring);
  if (!ring) return 1;
  if (a->persist) ring_loaded = persist_load(a->persist, ring, ring_n);
  a->setpoint = 21.0;
  snprintf(a->cmd_value, sizeof a->cmd_value, "none");
  snprintf(a->cmd_readback, sizeof a->cmd_readback, "none");
  a->px.fd = -1;
  { /* a new boot id at every start, also after a reset (execv keeps the pid): the clock's nanoseconds too */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    a->px.rng = (uint32_t)(seed * 2654435761u) ^ (uint32_t)getpid() ^ 0x9e3779b9u ^ (uint32_t)ts.tv_nsec ^ (uint32_t)ts.tv_sec * 40503u;
  }
  if (a->px.rng == 0) a->px.rng = 1;
  if (ebp_posix_open(&a->px, path, (unsigned)baud) != 0) {
    fprintf(stderr, "ebp-host: cannot open %s: %s\n", path, strerror(errno));
    return 1;
  }
  ebp_posix_port(&a->px, &port);

  cfg.boot_id = (uint32_t)boot_id;
  cfg.reset_reason = (uint8_t)reset_reason;
  cfg.capabilities = a->persist ? EBP_CAP_PERSISTENT_RING : 0;
  cfg.max_frame = (uint16_t)max_frame;
  cfg.window = (uint8_t)window;
  cfg.batch_us = (uint32_t)(batch_ms * 1000u);
  cfg.points = a->points;
  cfg.n_points = a->n_points;
  cfg.ring = ring;
  cfg.ring_cap = ring_n;
  cfg.ring_count = ring_loaded;
  cfg.on_command = on_command;
  cfg.on_event = on_event;
  cfg.user = a;
  if (flash_path) { /* the bootloader runs, then the image in slot 0: its version and hash are ours */
    const char *boot;
    if (flash_open(&a->flash, flash_path, cfg.firmware) != 0) {
      fprintf(stderr, "ebp-host: --flash %s: %s\n", flash_path, strerror(errno));
      return 1;
    }
    a->has_flash = 1;
    boot = flash_boot(&a->flash);
    flash_running(&a->flash, a->version, sizeof a->version, a->image_hash, a->behaviour, sizeof a->behaviour);
    cfg.firmware = a->version;
    cfg.image_hash = a->image_hash;
    cfg.on_management = on_management;
    fprintf(stderr, "ebp-host: boot image=%s version=%s behaviour=%s hash=%02x%02x%02x%02x%02x%02x%02x%02x\n", boot, a->version,
            a->behaviour, a->image_hash[0], a->image_hash[1], a->image_hash[2], a->image_hash[3], a->image_hash[4],
            a->image_hash[5], a->image_hash[6], a->image_hash[7]);
  }
  if (ebp_init(&a->ctx, &cfg, &port) != 0) return 1;

  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);

  fprintf(stderr, "ebp-host: start port=%s board=%s boot_id=0x%08x schema=0x%08x points=%lu ring=%lu loaded=%lu pid=%ld\n",
          path, id_hex, a->ctx.boot_id, (unsigned)EBP_SCHEMA_HASH, (unsigned long)a->n_points, ring_n,
          (unsigned long)ring_loaded, (long)getpid());
  next_tick = port.now_us(port.user);
  while (!stop_flag) {
    uint64_t now;
    ebp_poll(&a->ctx);
    now = port.now_us(port.user);
    if (a->px.failed) { /* the other end went away (pty closed): reopen the same path when it is back */
      if (a->px.fd >= 0) {
        fprintf(stderr, "ebp-host: port lost path=%s\n", path);
        ebp_posix_close(&a->px);
      }
      if (now >= next_reopen) {
        next_reopen = now + 500000u;
        if (ebp_posix_open(&a->px, path, (unsigned)baud) == 0) {
          fprintf(stderr, "ebp-host: port reopened path=%s\n", path);
          ebp_note_raw_output(&a->ctx);
        }
      }
    }
    if (a->reset_at && now >= a->reset_at) reboot(a, argv, argc);
    if (a->has_flash && !strcmp(a->behaviour, "crash") && a->ctx.state == EBP_S_UP && !a->reset_at) {
      /* a test image that crashes: it comes up, then the watchdog resets the board */
      a->reset_at = now + 300000u;
      a->reset_reason_next = 6 /* RESET_CRASH */;
    }
    if (now >= next_tick && a->has_flash && !strcmp(a->behaviour, "silent")) {
      next_tick = now + (uint64_t)interval_ms * 1000u; /* a silent image measures nothing */
    } else if (now >= next_tick) {
      if (a->count == 0 || a->recorded < a->count) {
        record_tick(a, k + seed);
        if (log_every && (++logs % log_every) == 0)
          ebp_log(&a->ctx, EBP_LOG_INFO, "tick %lu: %lu readings recorded, %lu waiting", k, a->recorded,
                  (unsigned long)ebp_ring_used(&a->ctx));
      }
      k++;
      next_tick += (uint64_t)interval_ms * 1000u;
      if (next_tick < now) next_tick = now; /* do not burst after a stall */
    }
    if (a->count && a->recorded >= a->count && ebp_ring_used(&a->ctx) == 0 && !a->all_acked_said) {
      a->all_acked_said = 1;
      fprintf(stderr, "ebp-host: all acked count=%lu last_seq=%u\n", a->recorded, a->last_seq);
    }
    if (a->px.fd >= 0) ebp_posix_wait(&a->px, 2);
    else usleep(2000);
  }
  fprintf(stderr,
          "ebp-host: stopped tx_frames=%u rx_frames=%u crc_errors=%u garbage=%u oversized=%u bad_version=%u "
          "retransmits=%u naks_sent=%u duplicates=%u sessions=%u ring_used=%lu ring_dropped=%u\n",
          a->ctx.c.tx_frames, a->ctx.rx.c.frames, a->ctx.rx.c.crc_errors, a->ctx.rx.c.garbage, a->ctx.rx.c.oversized,
          a->ctx.rx.c.bad_version, a->ctx.c.retransmits, a->ctx.c.naks_sent, a->ctx.c.duplicates, a->ctx.c.sessions,
          (unsigned long)ebp_ring_used(&a->ctx), a->ctx.c.ring_dropped);
  persist_save(a);
  ebp_posix_close(&a->px);
  if (a->has_flash) flash_close(&a->flash);
  free(ring);
  return 0;
}
