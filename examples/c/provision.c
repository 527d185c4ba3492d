/*
 * provision: the operator's side of the example. Stores fresh random credentials for the
 * predis service (as hex text) in the store that the config routes to.
 *
 *   provision_c sealbox.yaml
 *
 * Exit codes: 0 done, 1 failure, 77 this build of sealbox lacks a feature the config needs.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "sealbox.h"

static int report(const char *what, sb_result r) {
  char msg[512];
  size_t n = 0;
  if (sb_last_error_message(msg, sizeof msg, &n) != SB_RESULT_OK) msg[0] = '\0';
  fprintf(stderr, "provision: %s failed: %s (%s)\n", what, sb_result_name(r), msg);
  return r == SB_RESULT_UNSUPPORTED ? 77 : 1;
}

/* Writes 2*n hex characters of fresh randomness to out, without stdio buffers. */
static int random_hex(uint8_t *out, size_t n) {
  static const char digits[] = "0123456789abcdef";
  uint8_t raw[64];
  if (n > sizeof raw || getrandom(raw, n, 0) != (ssize_t)n) return -1;
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = (uint8_t)digits[raw[i] >> 4];
    out[2 * i + 1] = (uint8_t)digits[raw[i] & 15];
  }
  explicit_bzero(raw, sizeof raw);
  return 0;
}

int main(int argc, char **argv) {
  const char *config = argc > 1 ? argv[1] : "sealbox.yaml";
  static const char *names[] = {"predis/prod/database/password", "predis/prod/api/auth-token"};
  sb_client *client = NULL;
  sb_result r = sb_client_open(config, &client);
  if (r != SB_RESULT_OK) return report("opening the config", r);

  int status = 0;
  for (size_t i = 0; i < 2 && status == 0; i++) {
    uint8_t value[48];
    if (random_hex(value, sizeof value / 2) != 0) {
      fprintf(stderr, "provision: no randomness\n");
      status = 1;
      break;
    }
    r = sb_put(client, names[i], value, sizeof value);
    explicit_bzero(value, sizeof value); /* sealbox copied it into locked memory */
    if (r != SB_RESULT_OK) {
      status = report(names[i], r);
    } else {
      printf("provision: stored %s\n", names[i]);
    }
  }
  sb_client_free(client);
  return status;
}
