/* ebp_sha256.h: SHA-256 (FIPS 180-4), portable and small, for checking an uploaded image. */
#ifndef EBP_SHA256_H
#define EBP_SHA256_H
#include <stddef.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif
typedef struct {
  uint32_t h[8];
  uint64_t bytes;
  uint8_t block[64];
  size_t used;
} ebp_sha256_t;
void ebp_sha256_init(ebp_sha256_t *s);
void ebp_sha256_update(ebp_sha256_t *s, const uint8_t *p, size_t n);
void ebp_sha256_final(ebp_sha256_t *s, uint8_t out[32]);
#ifdef __cplusplus
}
#endif
#endif
