/* POSIX port: read/write a raw nonblocking tty, CLOCK_MONOTONIC, /dev/urandom. */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE
#include "ebp_posix.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static uint64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static speed_t to_speed(unsigned baud) {
  switch (baud) {
  case 9600: return B9600;
  case 19200: return B19200;
  case 38400: return B38400;
  case 57600: return B57600;
  case 230400: return B230400;
  case 460800: return B460800;
  case 921600: return B921600;
  default: return B115200;
  }
}

int ebp_posix_open(ebp_posix_t *p, const char *path, unsigned baud) {
  struct termios t;
  int fd, ufd;
  if (p->t0_ns == 0) p->t0_ns = mono_ns();
  if (p->rng == 0) {
    ufd = open("/dev/urandom", O_RDONLY);
    if (ufd >= 0) {
      if (read(ufd, &p->rng, sizeof p->rng) != (ssize_t)sizeof p->rng) p->rng = 0;
      close(ufd);
    }
    if (p->rng == 0) p->rng = (uint32_t)mono_ns() | 1u;
  }
  fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) return -1;
  if (tcgetattr(fd, &t) == 0) {
    cfmakeraw(&t);
    t.c_cflag &= ~(tcflag_t)(CSTOPB | PARENB | CRTSCTS | HUPCL); /* 8N1, no flow control, no reset on close */
    t.c_cflag |= CS8 | CLOCAL | CREAD;
    t.c_cc[VMIN] = 0;
    t.c_cc[VTIME] = 0;
    cfsetispeed(&t, to_speed(baud));
    cfsetospeed(&t, to_speed(baud));
    tcsetattr(fd, TCSANOW, &t);
  }
  p->fd = fd;
  p->failed = 0;
  return 0;
}

void ebp_posix_close(ebp_posix_t *p) {
  if (p->fd >= 0) close(p->fd);
  p->fd = -1;
}

static int px_read(void *user, uint8_t *buf, size_t n) {
  ebp_posix_t *p = user;
  ssize_t r = read(p->fd, buf, n);
  if (r < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return 0;
    p->failed = 1;
    return -1;
  }
  return (int)r;
}

static int px_write(void *user, const uint8_t *buf, size_t n) {
  ebp_posix_t *p = user;
  size_t done = 0;
  int spins = 0;
  while (done < n) {
    ssize_t w = write(p->fd, buf + done, n - done);
    if (w > 0) {
      done += (size_t)w;
      continue;
    }
    if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      p->failed = 1;
      return -1;
    }
    if (++spins > 10) return -1; /* nobody reads the other end: drop the frame after ~50 ms (as a loss) */
    {
      struct pollfd pf;
      pf.fd = p->fd;
      pf.events = POLLOUT;
      pf.revents = 0;
      poll(&pf, 1, 5);
    }
  }
  return (int)n;
}

static uint64_t px_now(void *user) {
  ebp_posix_t *p = user;
  return (mono_ns() - p->t0_ns) / 1000u;
}

static uint32_t px_random(void *user) {
  ebp_posix_t *p = user;
  uint32_t x = p->rng;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  p->rng = x;
  return x;
}

static size_t px_unique_id(void *user, uint8_t *buf, size_t max) {
  ebp_posix_t *p = user;
  size_t n = p->id_len < max ? p->id_len : max;
  memcpy(buf, p->id, n);
  return n;
}

void ebp_posix_port(ebp_posix_t *p, ebp_port_t *port) {
  port->user = p;
  port->read = px_read;
  port->write = px_write;
  port->now_us = px_now;
  port->random32 = px_random;
  port->unique_id = px_unique_id;
}

void ebp_posix_wait(ebp_posix_t *p, int timeout_ms) {
  struct pollfd pf;
  pf.fd = p->fd;
  pf.events = POLLIN;
  pf.revents = 0;
  poll(&pf, 1, timeout_ms);
}
