/*
 * ebp_cbor.h: the little CBOR (RFC 8949) an SMP server needs — write a map of text keys with
 * unsigned integers, booleans, byte and text strings, nested maps and arrays; read a request's
 * top-level map (definite or indefinite length) key by key. No malloc; bounds-checked; a reader
 * never reads past its buffer, whatever the bytes (docs/firmware-bridge.md, section 13).
 */
#ifndef EBP_CBOR_H
#define EBP_CBOR_H
#include <stddef.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

/* ---- writer ---------------------------------------------------------------------------------- */
typedef struct {
  uint8_t *buf;
  size_t cap, len;
  int overflow; /* set once anything did not fit; the result is then unusable */
} ebp_cbor_w;

void ebp_cbor_w_init(ebp_cbor_w *w, uint8_t *buf, size_t cap);
void ebp_cbor_map(ebp_cbor_w *w, size_t pairs);
void ebp_cbor_array(ebp_cbor_w *w, size_t items);
void ebp_cbor_uint(ebp_cbor_w *w, uint64_t v);
void ebp_cbor_bool(ebp_cbor_w *w, int v);
void ebp_cbor_text(ebp_cbor_w *w, const char *s);
void ebp_cbor_bytes(ebp_cbor_w *w, const uint8_t *p, size_t n);

/* ---- reader ---------------------------------------------------------------------------------- */
typedef enum { EBP_CBOR_UINT, EBP_CBOR_NEGINT, EBP_CBOR_BYTES, EBP_CBOR_TEXT, EBP_CBOR_BOOL, EBP_CBOR_OTHER } ebp_cbor_type_t;

typedef struct {
  ebp_cbor_type_t type;
  uint64_t u;          /* UINT: the value; NEGINT: -1 - value; BOOL: 0/1 */
  const uint8_t *p;    /* BYTES/TEXT: the contents (not NUL-terminated) */
  size_t n;            /* BYTES/TEXT: their length */
} ebp_cbor_item;

/* Calls `each(user, key, keylen, value)` for each entry of the top-level map in data[0..len).
 * Values that are maps, arrays or tags are skipped (type OTHER). Returns 0, or -1 if the bytes are
 * not one well-formed map with text keys (then `each` may have been called for earlier entries). */
int ebp_cbor_each(const uint8_t *data, size_t len, void (*each)(void *user, const char *key, size_t keylen, const ebp_cbor_item *value), void *user);

#ifdef __cplusplus
}
#endif
#endif
