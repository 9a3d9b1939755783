/* POSIX port of the ebp core: a tty (or pty) opened raw 8N1, nonblocking. */
#ifndef EBP_POSIX_H
#define EBP_POSIX_H

#include "ebp.h"

typedef struct {
  int fd;
  uint64_t t0_ns;        /* CLOCK_MONOTONIC at open: now_us counts from here ("since boot") */
  uint32_t rng;          /* xorshift32 state (seeded from /dev/urandom or --seed) */
  uint8_t id[16];
  size_t id_len;
  int failed;            /* a read or write failed (EIO: the other end of a pty closed) */
} ebp_posix_t;

/* Open `path` raw 8N1 at `baud` (ignored by ptys), nonblocking, without HUPCL. 0 or -1 (errno). */
int ebp_posix_open(ebp_posix_t *p, const char *path, unsigned baud);
void ebp_posix_close(ebp_posix_t *p);
/* Fill an ebp_port_t with the POSIX functions bound to p. */
void ebp_posix_port(ebp_posix_t *p, ebp_port_t *port);
/* Wait until the fd is readable or timeout_ms passes (for a host main loop that does not spin). */
void ebp_posix_wait(ebp_posix_t *p, int timeout_ms);

#endif
