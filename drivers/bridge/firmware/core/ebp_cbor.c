/* ebp_cbor.c: see ebp_cbor.h. */
#include "ebp_cbor.h"

#include <string.h>

void ebp_cbor_w_init(ebp_cbor_w *w, uint8_t *buf, size_t cap) {
  w->buf = buf;
  w->cap = cap;
  w->len = 0;
  w->overflow = 0;
}

static void put(ebp_cbor_w *w, const uint8_t *p, size_t n) {
  if (w->overflow || n > w->cap - w->len) {
    w->overflow = 1;
    return;
  }
  memcpy(w->buf + w->len, p, n);
  w->len += n;
}

static void head(ebp_cbor_w *w, uint8_t major, uint64_t v) {
  uint8_t b[9];
  size_t n;
  if (v < 24) {
    b[0] = (uint8_t)(major << 5 | v);
    n = 1;
  } else if (v <= 0xff) {
    b[0] = (uint8_t)(major << 5 | 24);
    b[1] = (uint8_t)v;
    n = 2;
  } else if (v <= 0xffff) {
    b[0] = (uint8_t)(major << 5 | 25);
    b[1] = (uint8_t)(v >> 8);
    b[2] = (uint8_t)v;
    n = 3;
  } else if (v <= 0xffffffffu) {
    b[0] = (uint8_t)(major << 5 | 26);
    b[1] = (uint8_t)(v >> 24);
    b[2] = (uint8_t)(v >> 16);
    b[3] = (uint8_t)(v >> 8);
    b[4] = (uint8_t)v;
    n = 5;
  } else {
    int i;
    b[0] = (uint8_t)(major << 5 | 27);
    for (i = 0; i < 8; i++) b[1 + i] = (uint8_t)(v >> (56 - 8 * i));
    n = 9;
  }
  put(w, b, n);
}

void ebp_cbor_map(ebp_cbor_w *w, size_t pairs) { head(w, 5, pairs); }
void ebp_cbor_array(ebp_cbor_w *w, size_t items) { head(w, 4, items); }
void ebp_cbor_uint(ebp_cbor_w *w, uint64_t v) { head(w, 0, v); }
void ebp_cbor_bool(ebp_cbor_w *w, int v) {
  uint8_t b = v ? 0xf5 : 0xf4;
  put(w, &b, 1);
}
void ebp_cbor_text(ebp_cbor_w *w, const char *s) {
  size_t n = strlen(s);
  head(w, 3, n);
  put(w, (const uint8_t *)s, n);
}
void ebp_cbor_bytes(ebp_cbor_w *w, const uint8_t *p, size_t n) {
  head(w, 2, n);
  put(w, p, n);
}

/* ---- reader ---------------------------------------------------------------------------------- */

typedef struct {
  const uint8_t *p, *end;
} rd;

#define MAX_DEPTH 8

/* Reads an item's head: major type, argument; *indef for an indefinite length (0x1f). */
static int read_head(rd *r, uint8_t *major, uint64_t *arg, int *indef) {
  uint8_t ib, info;
  size_t n = 0, i;
  if (r->p >= r->end) return -1;
  ib = *r->p++;
  *major = ib >> 5;
  info = ib & 0x1f;
  *indef = 0;
  if (info < 24) {
    *arg = info;
    return 0;
  }
  if (info == 24) n = 1;
  else if (info == 25) n = 2;
  else if (info == 26) n = 4;
  else if (info == 27) n = 8;
  else if (info == 31 && (*major == 2 || *major == 3 || *major == 4 || *major == 5 || *major == 7)) {
    *indef = 1;
    *arg = 0;
    return 0;
  } else {
    return -1;
  }
  if ((size_t)(r->end - r->p) < n) return -1;
  *arg = 0;
  for (i = 0; i < n; i++) *arg = *arg << 8 | *r->p++;
  return 0;
}

static int skip(rd *r, int depth);

/* One item into *out (containers skipped, type OTHER). */
static int read_item(rd *r, ebp_cbor_item *out, int depth) {
  uint8_t major;
  uint64_t arg;
  int indef;
  const uint8_t *start = r->p;
  if (depth > MAX_DEPTH) return -1;
  if (read_head(r, &major, &arg, &indef)) return -1;
  memset(out, 0, sizeof *out);
  switch (major) {
  case 0:
    out->type = EBP_CBOR_UINT;
    out->u = arg;
    return 0;
  case 1:
    out->type = EBP_CBOR_NEGINT;
    out->u = arg;
    return 0;
  case 2:
  case 3:
    if (indef) return -1; /* chunked strings: not from an SMP client */
    if (arg > (uint64_t)(r->end - r->p)) return -1;
    out->type = major == 2 ? EBP_CBOR_BYTES : EBP_CBOR_TEXT;
    out->p = r->p;
    out->n = (size_t)arg;
    r->p += arg;
    return 0;
  case 7:
    if (indef) return -1; /* a lone break */
    out->type = EBP_CBOR_OTHER;
    if (arg == 20 || arg == 21) {
      out->type = EBP_CBOR_BOOL;
      out->u = arg == 21;
    }
    return 0;
  default:
    r->p = start;
    out->type = EBP_CBOR_OTHER;
    return skip(r, depth);
  }
}

static int skip(rd *r, int depth) {
  uint8_t major;
  uint64_t arg, i;
  int indef;
  ebp_cbor_item it;
  if (depth > MAX_DEPTH) return -1;
  if (read_head(r, &major, &arg, &indef)) return -1;
  switch (major) {
  case 0:
  case 1:
    return 0;
  case 2:
  case 3:
    if (indef || arg > (uint64_t)(r->end - r->p)) return -1;
    r->p += arg;
    return 0;
  case 4:
  case 5: {
    uint64_t per = major == 5 ? 2 : 1;
    if (indef) {
      for (;;) {
        if (r->p >= r->end) return -1;
        if (*r->p == 0xff) {
          r->p++;
          return 0;
        }
        for (i = 0; i < per; i++)
          if (read_item(r, &it, depth + 1)) return -1;
      }
    }
    if (arg > (uint64_t)(r->end - r->p)) return -1; /* each item takes at least a byte */
    for (i = 0; i < arg * per; i++)
      if (read_item(r, &it, depth + 1)) return -1;
    return 0;
  }
  case 6:
    return read_item(r, &it, depth + 1);
  default:
    return indef ? -1 : 0;
  }
}

int ebp_cbor_each(const uint8_t *data, size_t len, void (*each)(void *user, const char *key, size_t keylen, const ebp_cbor_item *value), void *user) {
  rd r;
  uint8_t major;
  uint64_t n, i;
  int indef;
  r.p = data;
  r.end = data + len;
  if (read_head(&r, &major, &n, &indef) || major != 5) return -1;
  for (i = 0; indef || i < n; i++) {
    ebp_cbor_item k, v;
    if (indef) {
      if (r.p >= r.end) return -1;
      if (*r.p == 0xff) {
        r.p++;
        break;
      }
    }
    if (read_item(&r, &k, 1) || k.type != EBP_CBOR_TEXT) return -1;
    if (read_item(&r, &v, 1)) return -1;
    each(user, (const char *)k.p, k.n, &v);
  }
  return r.p == r.end ? 0 : -1;
}
