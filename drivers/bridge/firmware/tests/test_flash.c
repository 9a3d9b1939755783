/*
 * test_flash.c: the host's two-slot flash and SMP server (host/flash.c), the CBOR reader and
 * SHA-256 of the core: an upload and its resume after a "power cut" (the file closed and opened
 * again), test boot, revert, confirm, and hostile requests — wrong offsets, absurd lengths, bad
 * hashes, random bytes — answered with an rc or ignored, never a crash (run under ASan/UBSan by
 * `make sanitize`), the running image untouched.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ebp_cbor.h"
#include "ebp_sha256.h"
#include "flash.h"

static int checks, failures;
#define CHECK(c)                                                          \
  do {                                                                    \
    checks++;                                                             \
    if (!(c)) {                                                           \
      failures++;                                                         \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c); \
    }                                                                     \
  } while (0)

static uint8_t seq;

/* An SMP request: header + CBOR body built by the caller with the writer. */
static size_t request(uint8_t *out, unsigned op, unsigned group, unsigned id, const ebp_cbor_w *body) {
  out[0] = (uint8_t)(1 << 3 | op);
  out[1] = 0;
  out[2] = (uint8_t)(body->len >> 8), out[3] = (uint8_t)body->len;
  out[4] = (uint8_t)(group >> 8), out[5] = (uint8_t)group, out[6] = seq++, out[7] = (uint8_t)id;
  return 8 + body->len;
}

typedef struct {
  int has_off, has_rc, has_match, match, images;
  uint64_t off, rc;
} rsp_t;

static void on_rsp(void *user, const char *k, size_t n, const ebp_cbor_item *v) {
  rsp_t *r = user;
  if (n == 3 && !memcmp(k, "off", 3)) r->has_off = 1, r->off = v->u;
  if (n == 2 && !memcmp(k, "rc", 2)) r->has_rc = 1, r->rc = v->u;
  if (n == 5 && !memcmp(k, "match", 5)) r->has_match = 1, r->match = (int)v->u;
  if (n == 6 && !memcmp(k, "images", 6)) r->images = 1;
}

static rsp_t call(host_flash_t *f, const uint8_t *req, size_t len, int *reset) {
  uint8_t out[512];
  rsp_t r;
  int rs = 0;
  size_t n = flash_smp(f, req, len, out, sizeof out, &rs);
  memset(&r, 0, sizeof r);
  if (reset) *reset = rs;
  if (n == 0) {
    r.rc = 999; /* no response */
    r.has_rc = 1;
    return r;
  }
  CHECK(n >= 8 && ((size_t)out[2] << 8 | out[3]) == n - 8);
  CHECK((out[0] & 7) == (req[0] & 7) + 1 && out[6] == req[6] && out[7] == req[7]);
  CHECK(ebp_cbor_each(out + 8, n - 8, on_rsp, &r) == 0);
  return r;
}

static rsp_t upload(host_flash_t *f, uint32_t off, const uint8_t *data, size_t n, uint32_t len, const uint8_t *sha) {
  uint8_t body[2048], req[2100];
  ebp_cbor_w w;
  ebp_cbor_w_init(&w, body, sizeof body);
  ebp_cbor_map(&w, off == 0 ? 4 : 2);
  if (off == 0) {
    ebp_cbor_text(&w, "len"), ebp_cbor_uint(&w, len);
    ebp_cbor_text(&w, "sha"), ebp_cbor_bytes(&w, sha, 32);
  }
  ebp_cbor_text(&w, "off"), ebp_cbor_uint(&w, off);
  ebp_cbor_text(&w, "data"), ebp_cbor_bytes(&w, data, n);
  memcpy(req + 8, body, w.len);
  return call(f, req, request(req, 2, 1, 1, &w), NULL);
}

static void make_image(uint8_t *img, size_t n, unsigned major, unsigned minor, const char *behaviour) {
  char marker[64];
  size_t i;
  uint32_t x = 7u + major * 31u + minor;
  memset(img, 0, n);
  img[0] = 0x3d, img[1] = 0xb8, img[2] = 0xf3, img[3] = 0x96, img[8] = 32;
  img[20] = (uint8_t)major, img[21] = (uint8_t)minor;
  snprintf(marker, sizeof marker, "EBP-BEHAVIOUR=%s;", behaviour);
  memcpy(img + 32, marker, strlen(marker));
  for (i = 32 + strlen(marker); i < n; i++) x ^= x << 13, x ^= x >> 17, x ^= x << 5, img[i] = (uint8_t)x;
}

static void sha(const uint8_t *p, size_t n, uint8_t out[32]) {
  ebp_sha256_t s;
  ebp_sha256_init(&s);
  ebp_sha256_update(&s, p, n);
  ebp_sha256_final(&s, out);
}

static rsp_t state_write(host_flash_t *f, const uint8_t *hash, int confirm) {
  uint8_t body[128], req[160];
  ebp_cbor_w w;
  ebp_cbor_w_init(&w, body, sizeof body);
  ebp_cbor_map(&w, hash ? 2 : 1);
  if (hash) ebp_cbor_text(&w, "hash"), ebp_cbor_bytes(&w, hash, 32);
  ebp_cbor_text(&w, "confirm"), ebp_cbor_bool(&w, confirm);
  memcpy(req + 8, body, w.len);
  return call(f, req, request(req, 2, 1, 0, &w), NULL);
}

static void test_sha256(void) {
  /* FIPS 180-4 examples: "abc" and the 448-bit message */
  uint8_t out[32];
  static const uint8_t abc[32] = {0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23,
                                  0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad};
  static const uint8_t two[32] = {0x24, 0x8d, 0x6a, 0x61, 0xd2, 0x06, 0x38, 0xb8, 0xe5, 0xc0, 0x26, 0x93, 0x0c, 0x3e, 0x60, 0x39,
                                  0xa3, 0x3c, 0xe4, 0x59, 0x64, 0xff, 0x21, 0x67, 0xf6, 0xec, 0xed, 0xd4, 0x19, 0xdb, 0x06, 0xc1};
  const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  sha((const uint8_t *)"abc", 3, out);
  CHECK(!memcmp(out, abc, 32));
  sha((const uint8_t *)m, strlen(m), out);
  CHECK(!memcmp(out, two, 32));
}

static void noop(void *u, const char *k, size_t n, const ebp_cbor_item *v) {
  (void)u, (void)k, (void)n, (void)v;
}

static void test_cbor_hostile(void) {
  static const uint8_t bad[][12] = {
      {0xa1},                         /* a map of one entry, nothing after */
      {0xa1, 0x01, 0x02},             /* a key that is not text */
      {0xa1, 0x61, 'a', 0x5b, 0xff},  /* a byte string of 2^64-ish bytes */
      {0xa1, 0x61, 'a', 0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, /* an array of 2^64 items */
      {0xbf, 0x61, 'a', 0x01},        /* an indefinite map without its break */
      {0xff},                         /* a lone break */
      {0xa1, 0x61, 'a', 0xc1},        /* a tag without its item */
      {0x81, 0x01},                   /* an array, not a map */
  };
  uint8_t deep[64];
  size_t i;
  uint32_t x = 1;
  for (i = 0; i < sizeof bad / sizeof bad[0]; i++) CHECK(ebp_cbor_each(bad[i], sizeof bad[i], noop, NULL) == -1);
  /* nesting deeper than the reader goes: refused, not a stack overflow */
  deep[0] = 0xa1, deep[1] = 0x61, deep[2] = 'a';
  for (i = 3; i < sizeof deep; i++) deep[i] = 0x81;
  CHECK(ebp_cbor_each(deep, sizeof deep, noop, NULL) == -1);
  for (i = 0; i < 200000; i++) { /* random bytes: any answer, within bounds (ASan checks) */
    uint8_t buf[24];
    size_t j, n = i % sizeof buf;
    for (j = 0; j < n; j++) x ^= x << 13, x ^= x >> 17, x ^= x << 5, buf[j] = (uint8_t)x;
    if (n) buf[0] = (uint8_t)(0xa0 | (buf[0] & 3));
    (void)ebp_cbor_each(buf, n, noop, NULL);
  }
  checks++;
}

int main(void) {
  char path[] = "/tmp/ebp-flash-XXXXXX";
  int fd = mkstemp(path);
  host_flash_t f;
  char version[32], behaviour[16];
  uint8_t hash[32], img_sha[32], old_hash[32];
  static uint8_t img[200000];
  size_t n = sizeof img, off;
  rsp_t r;
  int reset;

  test_sha256();
  test_cbor_hostile();

  close(fd);
  unlink(path); /* flash_open creates it: a new board */
  CHECK(flash_open(&f, path, "1.0.0") == 0);
  CHECK(!strcmp(flash_boot(&f), "normal"));
  flash_running(&f, version, sizeof version, old_hash, behaviour, sizeof behaviour);
  CHECK(!strcmp(version, "1.0.0") && !strcmp(behaviour, "ok"));

  make_image(img, n, 1, 1, "ok");
  sha(img, n, img_sha);
  /* hostile uploads before any: no upload begun, absurd length, short sha, offset past the slot */
  r = upload(&f, 5, img, 10, 0, img_sha);
  CHECK(r.has_rc && r.rc == 6);
  r = upload(&f, 0, img, 10, FLASH_SLOT_SIZE + 1, img_sha);
  CHECK(r.has_rc && r.rc == 7);
  r = upload(&f, 0, img, 10, 0, img_sha);
  CHECK(r.has_rc && r.rc == 3);
  /* half the image, then a power cut */
  for (off = 0; off < n / 2; off += 900) {
    r = upload(&f, (uint32_t)off, img + off, 900, (uint32_t)n, img_sha);
    CHECK(r.has_off && r.off == off + 900 && !r.has_rc);
  }
  /* a chunk at the wrong offset is not written; the board says where it is */
  r = upload(&f, 7, img, 900, 0, img_sha);
  CHECK(r.has_off && r.off == off);
  flash_close(&f);
  CHECK(flash_open(&f, path, "1.0.0") == 0);
  CHECK(!strcmp(flash_boot(&f), "normal"));
  /* the same upload again (off 0, same len and sha): the board answers with how far it got */
  r = upload(&f, 0, img, 900, (uint32_t)n, img_sha);
  CHECK(r.has_off && r.off == off);
  for (; off < n; off += 900) {
    size_t take = n - off < 900 ? n - off : 900;
    r = upload(&f, (uint32_t)off, img + off, take, (uint32_t)n, img_sha);
  }
  CHECK(r.has_off && r.off == n && r.has_match && r.match == 1);
  /* test boot: unknown hash refused, the right one pending; then the bootloader swaps */
  memset(hash, 0xee, 32);
  r = state_write(&f, hash, 0);
  CHECK(r.has_rc && r.rc == 5);
  r = state_write(&f, img_sha, 0);
  CHECK(r.images && !r.has_rc);
  CHECK(!strcmp(flash_boot(&f), "test-swap"));
  flash_running(&f, version, sizeof version, hash, behaviour, sizeof behaviour);
  CHECK(!strcmp(version, "1.1.0") && !memcmp(hash, img_sha, 32));
  /* not confirmed, reset: reverted */
  CHECK(!strcmp(flash_boot(&f), "revert"));
  flash_running(&f, version, sizeof version, hash, behaviour, sizeof behaviour);
  CHECK(!strcmp(version, "1.0.0") && !memcmp(hash, old_hash, 32));
  /* again, and confirmed: permanent */
  r = state_write(&f, img_sha, 0);
  CHECK(!r.has_rc);
  CHECK(!strcmp(flash_boot(&f), "test-swap"));
  r = state_write(&f, NULL, 1);
  CHECK(!r.has_rc);
  CHECK(!strcmp(flash_boot(&f), "normal"));
  flash_running(&f, version, sizeof version, hash, behaviour, sizeof behaviour);
  CHECK(!strcmp(version, "1.1.0"));
  /* an upload whose bytes do not hash to its sha: match false, rc corrupt, nothing to boot */
  img[1000] ^= 1;
  for (off = 0; off < n; off += 900) {
    size_t take = n - off < 900 ? n - off : 900;
    r = upload(&f, (uint32_t)off, img + off, take, (uint32_t)n, img_sha);
  }
  CHECK(r.has_match && r.match == 0 && r.has_rc && r.rc == 9);
  r = state_write(&f, img_sha, 0);
  CHECK(r.has_rc && r.rc == 5);
  /* reset, unknown group and command, a response sent as a request, random packets */
  {
    uint8_t body[8], req[16];
    ebp_cbor_w w;
    size_t i;
    ebp_cbor_w_init(&w, body, sizeof body);
    ebp_cbor_map(&w, 0);
    memcpy(req + 8, body, w.len);
    r = call(&f, req, request(req, 2, 0, 5, &w), &reset);
    CHECK(!r.has_rc && reset == 1);
    r = call(&f, req, request(req, 2, 9, 0, &w), NULL);
    CHECK(r.rc == 8);
    r = call(&f, req, request(req, 2, 1, 77, &w), NULL);
    CHECK(r.rc == 8);
    r = call(&f, req, request(req, 3, 1, 0, &w), NULL);
    CHECK(r.rc == 999);
    for (i = 0; i < 20000; i++) {
      uint8_t pkt[64], out[512];
      size_t j, len = 8 + i % 56;
      uint32_t x = (uint32_t)i * 2654435761u + 1;
      for (j = 0; j < len; j++) x ^= x << 13, x ^= x >> 17, x ^= x << 5, pkt[j] = (uint8_t)x;
      pkt[2] = 0, pkt[3] = (uint8_t)(len - 8), pkt[4] = 0, pkt[5] = 1, pkt[0] &= 0x1a; /* image group, a request */
      (void)flash_smp(&f, pkt, len, out, sizeof out, &reset);
    }
    CHECK(!strcmp(flash_boot(&f), "normal"));
    flash_running(&f, version, sizeof version, hash, behaviour, sizeof behaviour);
    CHECK(!strcmp(version, "1.1.0"));
  }
  flash_close(&f);
  unlink(path);
  printf("%s: %d checks, %d failures (flash, SMP server, CBOR, SHA-256)\n", failures ? "FAILED" : "ok", checks, failures);
  return failures ? 1 : 0;
}
