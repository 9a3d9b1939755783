/*
 * flash.h: the host program's flash — two image slots and a bootloader in one file — and the
 * SMP server (image group: state, upload, erase; OS group: reset) that docs/firmware-bridge.md
 * section 13 describes. A board port keeps the same logic over its real flash: slot 0 runs,
 * uploads go to slot 1, the upload's progress survives a reset, only the bootloader swaps, and an
 * unconfirmed test image is reverted at the next reset. The TypeScript board simulator
 * (src/simulators/board/flash.ts) behaves the same; the gateway is tested against both.
 */
#ifndef EBP_HOST_FLASH_H
#define EBP_HOST_FLASH_H
#include <stddef.h>
#include <stdint.h>

#define FLASH_SLOT_SIZE (1024u * 1024u)

typedef struct {
  char magic[8];
  uint32_t len[2];      /* image bytes in slot 0 and slot 1 (0: empty) */
  uint8_t pending;      /* slot 1 boots next: 0 no, 1 once (test), 2 for good */
  uint8_t testing;      /* slot 0 is a test image, not confirmed yet */
  uint8_t has_upload;
  uint8_t pad;
  uint32_t upload_len, upload_off;
  uint8_t upload_sha[32];
} flash_header_t;

typedef struct {
  int fd;
  flash_header_t h;
} host_flash_t;

/* Opens the flash file, creating it with a test image of `version` in slot 0 if it is missing.
 * Returns 0, or -1 with errno. */
int flash_open(host_flash_t *f, const char *path, const char *version);
void flash_close(host_flash_t *f);
/* The bootloader at a reset: swaps a pending image in, or reverts an unconfirmed test image.
 * Returns what it did: "normal", "test-swap", "permanent-swap" or "revert". */
const char *flash_boot(host_flash_t *f);
/* The running image (slot 0): its version (from its MCUboot header, else "0.0.0"), SHA-256, and
 * the test behaviour its bytes ask for ("ok", "crash", "silent"). */
void flash_running(host_flash_t *f, char *version, size_t vn, uint8_t hash[32], char *behaviour, size_t bn);
/* One SMP request: the response packet into rsp (returns its length, 0 for none); *reset is set
 * when the board must reset once the response has left. */
size_t flash_smp(host_flash_t *f, const uint8_t *req, size_t len, uint8_t *rsp, size_t cap, int *reset);

#endif
