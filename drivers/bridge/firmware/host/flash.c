/* flash.c: see flash.h. The file: a 4 KiB header page, then slot 0 and slot 1 (1 MiB each). */
#define _POSIX_C_SOURCE 200809L
#include "flash.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ebp_cbor.h"
#include "ebp_sha256.h"

#define MAGIC "EBPFLSH1"
#define HEADER_PAGE 4096u
#define MCUBOOT_MAGIC 0x96f3b83du

/* SMP (section 13) */
enum { OP_READ = 0, OP_READ_RSP = 1, OP_WRITE = 2, OP_WRITE_RSP = 3 };
enum { GROUP_OS = 0, GROUP_IMAGE = 1 };
enum { RC_EINVAL = 3, RC_ENOENT = 5, RC_EBADSTATE = 6, RC_EMSGSIZE = 7, RC_ENOTSUP = 8, RC_ECORRUPT = 9 };

static off_t slot_at(int slot) { return (off_t)HEADER_PAGE + (off_t)slot * FLASH_SLOT_SIZE; }

static int save_header(host_flash_t *f) { return pwrite(f->fd, &f->h, sizeof f->h, 0) == (ssize_t)sizeof f->h ? 0 : -1; }

static int read_slot(host_flash_t *f, int slot, uint8_t *buf, uint32_t n) { return pread(f->fd, buf, n, slot_at(slot)) == (ssize_t)n ? 0 : -1; }

static void slot_hash(host_flash_t *f, int slot, uint8_t out[32]) {
  uint8_t buf[4096];
  uint32_t done = 0, n = f->h.len[slot];
  ebp_sha256_t s;
  ebp_sha256_init(&s);
  while (done < n) {
    uint32_t take = n - done < sizeof buf ? n - done : (uint32_t)sizeof buf;
    if (pread(f->fd, buf, take, slot_at(slot) + (off_t)done) != (ssize_t)take) break;
    ebp_sha256_update(&s, buf, take);
    done += take;
  }
  ebp_sha256_final(&s, out);
}

static void slot_version(host_flash_t *f, int slot, char *out, size_t n) {
  uint8_t h[32];
  uint32_t magic;
  snprintf(out, n, "0.0.0");
  if (f->h.len[slot] < sizeof h || read_slot(f, slot, h, sizeof h)) return;
  magic = (uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 24;
  if (magic != MCUBOOT_MAGIC) return;
  {
    unsigned major = h[20], minor = h[21], rev = (unsigned)h[22] | (unsigned)h[23] << 8;
    unsigned long build = (unsigned long)h[24] | (unsigned long)h[25] << 8 | (unsigned long)h[26] << 16 | (unsigned long)h[27] << 24;
    if (build) snprintf(out, n, "%u.%u.%u+%lu", major, minor, rev, build);
    else snprintf(out, n, "%u.%u.%u", major, minor, rev);
  }
}

/* A 4 KiB test image of `version`: MCUboot header, the behaviour marker, pseudo-random "code". */
static int write_test_image(host_flash_t *f, const char *version) {
  uint8_t img[4096];
  unsigned major = 0, minor = 0, rev = 0;
  uint32_t x = 1;
  size_t i;
  const char *marker = "EBP-BEHAVIOUR=ok;";
  memset(img, 0, sizeof img);
  if (sscanf(version, "%u.%u.%u", &major, &minor, &rev) != 3 || major > 255 || minor > 255 || rev > 65535) return -1;
  img[0] = 0x3d, img[1] = 0xb8, img[2] = 0xf3, img[3] = 0x96;
  img[8] = 32;
  img[12] = (uint8_t)((sizeof img - 32) & 0xff), img[13] = (uint8_t)((sizeof img - 32) >> 8);
  img[20] = (uint8_t)major, img[21] = (uint8_t)minor, img[22] = (uint8_t)(rev & 0xff), img[23] = (uint8_t)(rev >> 8);
  memcpy(img + 32, marker, strlen(marker));
  for (i = 32 + strlen(marker); i < sizeof img; i++) {
    x ^= x << 13, x ^= x >> 17, x ^= x << 5;
    img[i] = (uint8_t)x;
  }
  if (pwrite(f->fd, img, sizeof img, slot_at(0)) != (ssize_t)sizeof img) return -1;
  f->h.len[0] = sizeof img;
  return 0;
}

int flash_open(host_flash_t *f, const char *path, const char *version) {
  memset(f, 0, sizeof *f);
  f->fd = open(path, O_RDWR | O_CREAT, 0644);
  if (f->fd < 0) return -1;
  if (pread(f->fd, &f->h, sizeof f->h, 0) == (ssize_t)sizeof f->h && !memcmp(f->h.magic, MAGIC, 8)) return 0;
  /* A new (erased) flash: the factory image in slot 0. */
  memset(&f->h, 0, sizeof f->h);
  memcpy(f->h.magic, MAGIC, 8);
  if (ftruncate(f->fd, slot_at(2)) || write_test_image(f, version) || save_header(f)) {
    int e = errno;
    close(f->fd);
    errno = e ? e : EINVAL;
    return -1;
  }
  return 0;
}

void flash_close(host_flash_t *f) {
  if (f->fd >= 0) close(f->fd);
  f->fd = -1;
}

static int swap_slots(host_flash_t *f) {
  uint32_t n0 = f->h.len[0], n1 = f->h.len[1];
  uint8_t *a = malloc(n0 ? n0 : 1), *b = malloc(n1 ? n1 : 1);
  int rc = -1;
  if (a && b && !read_slot(f, 0, a, n0) && !read_slot(f, 1, b, n1) && pwrite(f->fd, b, n1, slot_at(0)) == (ssize_t)n1 &&
      pwrite(f->fd, a, n0, slot_at(1)) == (ssize_t)n0) {
    f->h.len[0] = n1;
    f->h.len[1] = n0;
    rc = 0;
  }
  free(a);
  free(b);
  return rc;
}

const char *flash_boot(host_flash_t *f) {
  const char *what = "normal";
  if (f->h.pending && f->h.len[1]) {
    what = f->h.pending == 1 ? "test-swap" : "permanent-swap";
    if (swap_slots(f) == 0) f->h.testing = f->h.pending == 1;
    f->h.pending = 0;
  } else if (f->h.testing) {
    /* Booting again with the test image unconfirmed: it reset (or crashed) before the confirm. */
    what = "revert";
    if (swap_slots(f) == 0) f->h.testing = 0;
  }
  save_header(f);
  return what;
}

void flash_running(host_flash_t *f, char *version, size_t vn, uint8_t hash[32], char *behaviour, size_t bn) {
  uint8_t head[256];
  uint32_t n = f->h.len[0] < sizeof head ? f->h.len[0] : (uint32_t)sizeof head;
  const char *key = "EBP-BEHAVIOUR=";
  size_t i, k = strlen(key);
  slot_version(f, 0, version, vn);
  slot_hash(f, 0, hash);
  snprintf(behaviour, bn, "ok");
  if (read_slot(f, 0, head, n)) return;
  for (i = 0; i + k < n; i++) {
    if (!memcmp(head + i, key, k)) {
      size_t j = i + k, m = 0;
      while (j < n && head[j] != ';' && m + 1 < bn) behaviour[m++] = (char)head[j++];
      behaviour[m] = 0;
      return;
    }
  }
}

/* ---- the SMP server ----------------------------------------------------------------------------- */

typedef struct {
  int has_off, has_len, has_data, has_sha, has_hash, has_confirm, bad;
  uint64_t off, len;
  const uint8_t *data, *sha, *hash;
  size_t data_n, sha_n, hash_n;
  int confirm;
} smp_req_t;

static void on_entry(void *user, const char *key, size_t kn, const ebp_cbor_item *v) {
  smp_req_t *r = user;
#define KEY(s) (kn == sizeof(s) - 1 && !memcmp(key, s, kn))
  if (KEY("off")) {
    r->has_off = 1;
    if (v->type != EBP_CBOR_UINT) r->bad = 1;
    r->off = v->u;
  } else if (KEY("len")) {
    r->has_len = 1;
    if (v->type != EBP_CBOR_UINT) r->bad = 1;
    r->len = v->u;
  } else if (KEY("data")) {
    r->has_data = 1;
    if (v->type != EBP_CBOR_BYTES) r->bad = 1;
    r->data = v->p, r->data_n = v->n;
  } else if (KEY("sha")) {
    r->has_sha = 1;
    if (v->type != EBP_CBOR_BYTES) r->bad = 1;
    r->sha = v->p, r->sha_n = v->n;
  } else if (KEY("hash")) {
    r->has_hash = 1;
    if (v->type != EBP_CBOR_BYTES) r->bad = 1;
    r->hash = v->p, r->hash_n = v->n;
  } else if (KEY("confirm")) {
    r->has_confirm = 1;
    r->confirm = v->type == EBP_CBOR_BOOL && v->u;
  }
#undef KEY
}

/* The response: header (op + 1, same group, sequence and id) and the body the writer holds. */
static size_t finish(const uint8_t *req, uint8_t *rsp, ebp_cbor_w *w) {
  size_t n = w->len;
  if (w->overflow) return 0;
  rsp[0] = (uint8_t)((req[0] & 0x18) | ((req[0] & 7) + 1));
  rsp[1] = 0;
  rsp[2] = (uint8_t)(n >> 8), rsp[3] = (uint8_t)n;
  rsp[4] = req[4], rsp[5] = req[5], rsp[6] = req[6], rsp[7] = req[7];
  return 8 + n;
}

static size_t rc_only(const uint8_t *req, uint8_t *rsp, size_t cap, int rc) {
  ebp_cbor_w w;
  ebp_cbor_w_init(&w, rsp + 8, cap - 8);
  ebp_cbor_map(&w, 1);
  ebp_cbor_text(&w, "rc");
  ebp_cbor_uint(&w, (uint64_t)rc);
  return finish(req, rsp, &w);
}

static void slot_entry(host_flash_t *f, ebp_cbor_w *w, int slot) {
  char version[32];
  uint8_t hash[32];
  int active = slot == 0;
  slot_version(f, slot, version, sizeof version);
  slot_hash(f, slot, hash);
  ebp_cbor_map(w, 9);
  ebp_cbor_text(w, "image"), ebp_cbor_uint(w, 0);
  ebp_cbor_text(w, "slot"), ebp_cbor_uint(w, (uint64_t)slot);
  ebp_cbor_text(w, "version"), ebp_cbor_text(w, version);
  ebp_cbor_text(w, "hash"), ebp_cbor_bytes(w, hash, 32);
  ebp_cbor_text(w, "bootable"), ebp_cbor_bool(w, 1);
  ebp_cbor_text(w, "pending"), ebp_cbor_bool(w, !active && f->h.pending != 0);
  /* slot 0: confirmed unless a test; slot 1: the old image is the confirmed one during a test */
  ebp_cbor_text(w, "confirmed"), ebp_cbor_bool(w, active ? !f->h.testing : f->h.testing);
  ebp_cbor_text(w, "active"), ebp_cbor_bool(w, active);
  ebp_cbor_text(w, "permanent"), ebp_cbor_bool(w, !active && f->h.pending == 2);
}

static size_t state_rsp(host_flash_t *f, const uint8_t *req, uint8_t *rsp, size_t cap) {
  ebp_cbor_w w;
  ebp_cbor_w_init(&w, rsp + 8, cap - 8);
  ebp_cbor_map(&w, 2);
  ebp_cbor_text(&w, "images");
  ebp_cbor_array(&w, f->h.len[1] ? 2 : 1);
  slot_entry(f, &w, 0);
  if (f->h.len[1]) slot_entry(f, &w, 1);
  ebp_cbor_text(&w, "splitStatus");
  ebp_cbor_uint(&w, 0);
  return finish(req, rsp, &w);
}

static size_t off_rsp(const uint8_t *req, uint8_t *rsp, size_t cap, uint32_t off, int match) {
  ebp_cbor_w w;
  ebp_cbor_w_init(&w, rsp + 8, cap - 8);
  ebp_cbor_map(&w, match < 0 ? 1 : match ? 2 : 3);
  ebp_cbor_text(&w, "off");
  ebp_cbor_uint(&w, off);
  if (match >= 0) ebp_cbor_text(&w, "match"), ebp_cbor_bool(&w, match);
  if (match == 0) ebp_cbor_text(&w, "rc"), ebp_cbor_uint(&w, RC_ECORRUPT);
  return finish(req, rsp, &w);
}

static size_t upload(host_flash_t *f, const smp_req_t *r, const uint8_t *req, uint8_t *rsp, size_t cap) {
  flash_header_t *h = &f->h;
  if (!r->has_off || !r->has_data || r->off > FLASH_SLOT_SIZE) return rc_only(req, rsp, cap, RC_EINVAL);
  if (r->off == 0) {
    if (!r->has_len || r->len == 0) return rc_only(req, rsp, cap, RC_EINVAL);
    if (r->len > FLASH_SLOT_SIZE) return rc_only(req, rsp, cap, RC_EMSGSIZE);
    if (r->has_sha && r->sha_n != 32) return rc_only(req, rsp, cap, RC_EINVAL);
    if (h->pending) return rc_only(req, rsp, cap, RC_EBADSTATE);
    if (h->has_upload && r->has_sha && h->upload_len == r->len && !memcmp(h->upload_sha, r->sha, 32) && h->upload_off > 0) {
      return off_rsp(req, rsp, cap, h->upload_off, -1); /* resume: the board says how far it got */
    }
    h->len[1] = 0;
    h->has_upload = 1;
    h->upload_len = (uint32_t)r->len;
    h->upload_off = 0;
    if (r->has_sha) memcpy(h->upload_sha, r->sha, 32);
    else memset(h->upload_sha, 0, 32);
  }
  if (!h->has_upload) return rc_only(req, rsp, cap, RC_EBADSTATE);
  if (r->off != h->upload_off) return off_rsp(req, rsp, cap, h->upload_off, -1);
  if (r->off + r->data_n > h->upload_len) return rc_only(req, rsp, cap, RC_EINVAL);
  if (pwrite(f->fd, r->data, r->data_n, slot_at(1) + (off_t)r->off) != (ssize_t)r->data_n) return rc_only(req, rsp, cap, 1);
  h->upload_off += (uint32_t)r->data_n;
  if (h->upload_off < h->upload_len) {
    save_header(f);
    return off_rsp(req, rsp, cap, h->upload_off, -1);
  }
  {
    uint8_t digest[32], zero[32] = {0};
    uint32_t off = h->upload_off;
    int match;
    h->len[1] = h->upload_len;
    slot_hash(f, 1, digest);
    match = !memcmp(h->upload_sha, zero, 32) || !memcmp(digest, h->upload_sha, 32);
    h->has_upload = 0;
    if (!match) h->len[1] = 0; /* nothing bootable */
    save_header(f);
    return off_rsp(req, rsp, cap, off, match);
  }
}

static size_t state_write(host_flash_t *f, const smp_req_t *r, const uint8_t *req, uint8_t *rsp, size_t cap) {
  uint8_t h0[32], h1[32];
  int is_primary;
  if (r->has_hash && r->hash_n != 32) return rc_only(req, rsp, cap, RC_EINVAL);
  slot_hash(f, 0, h0);
  is_primary = !r->has_hash || !memcmp(r->hash, h0, 32);
  if (r->confirm && is_primary) {
    f->h.testing = 0;
    save_header(f);
    return state_rsp(f, req, rsp, cap);
  }
  if (!f->h.len[1] || !r->has_hash) return rc_only(req, rsp, cap, RC_ENOENT);
  slot_hash(f, 1, h1);
  if (memcmp(r->hash, h1, 32)) return rc_only(req, rsp, cap, RC_ENOENT);
  f->h.pending = r->confirm ? 2 : 1;
  save_header(f);
  return state_rsp(f, req, rsp, cap);
}

size_t flash_smp(host_flash_t *f, const uint8_t *req, size_t len, uint8_t *rsp, size_t cap, int *reset) {
  smp_req_t r;
  unsigned op, group, id;
  size_t body;
  *reset = 0;
  if (len < 8 || cap < 16) return 0;
  body = (size_t)req[2] << 8 | req[3];
  if (body != len - 8) return 0;
  op = req[0] & 7;
  group = (unsigned)req[4] << 8 | req[5];
  id = req[7];
  if (op != OP_READ && op != OP_WRITE) return 0; /* a response is not a request */
  memset(&r, 0, sizeof r);
  if (body > 0 && ebp_cbor_each(req + 8, body, on_entry, &r) != 0) return 0; /* not a CBOR map: not SMP */
  if (r.bad) return rc_only(req, rsp, cap, RC_EINVAL);
  if (group == GROUP_OS && id == 5 && op == OP_WRITE) {
    ebp_cbor_w w;
    ebp_cbor_w_init(&w, rsp + 8, cap - 8);
    ebp_cbor_map(&w, 0);
    *reset = 1;
    return finish(req, rsp, &w);
  }
  if (group != GROUP_IMAGE) return rc_only(req, rsp, cap, RC_ENOTSUP);
  switch (id) {
  case 0:
    return op == OP_READ ? state_rsp(f, req, rsp, cap) : state_write(f, &r, req, rsp, cap);
  case 1:
    return op == OP_WRITE ? upload(f, &r, req, rsp, cap) : rc_only(req, rsp, cap, RC_ENOTSUP);
  case 5: {
    ebp_cbor_w w;
    if (op != OP_WRITE) return rc_only(req, rsp, cap, RC_ENOTSUP);
    if (f->h.pending) return rc_only(req, rsp, cap, RC_EBADSTATE);
    f->h.len[1] = 0;
    f->h.has_upload = 0;
    save_header(f);
    ebp_cbor_w_init(&w, rsp + 8, cap - 8);
    ebp_cbor_map(&w, 0);
    return finish(req, rsp, &w);
  }
  default:
    return rc_only(req, rsp, cap, RC_ENOTSUP);
  }
}
