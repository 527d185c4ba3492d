/*
 * predis_service: a small C service that gets its database password and API token from
 * sealbox instead of environment variables or files, uses them, and exits cleanly.
 *
 *   predis_service_c sealbox.yaml
 *
 * The config names the local vault (and cache, audit, policy); see
 * examples/c/make-demo-config.sh. Values are read as views into locked memory and wiped by
 * sb_secret_free; they are never printed or copied.
 *
 * Exit codes: 0 done, 1 failure, 77 this build of sealbox lacks a feature the config needs.
 */
#include <stdio.h>
#include <string.h>

#include "sealbox.h"

static int report(const char *what, sb_result r) {
  char msg[512];
  size_t n = 0;
  if (sb_last_error_message(msg, sizeof msg, &n) != SB_RESULT_OK) msg[0] = '\0';
  fprintf(stderr, "predis_service: %s failed: %s (%s)\n", what, sb_result_name(r), msg);
  return r == SB_RESULT_UNSUPPORTED ? 77 : 1;
}

/* Stands in for a database driver: takes the password as (pointer, length) and never keeps
 * it. A real service would hand the view to its driver's AUTH call. */
static int database_connect(const char *user, const uint8_t *password, size_t len) {
  if (len == 0) return -1;
  printf("database: connected as %s with a %zu-byte password\n", user, len);
  (void)password;
  return 0;
}

/* Stands in for an HTTP client that sets "Authorization: Bearer <token>" from the view. */
static int api_authenticate(const uint8_t *token, size_t len) {
  if (len == 0) return -1;
  printf("api: bearer token of %zu bytes attached\n", len);
  (void)token;
  return 0;
}

int main(int argc, char **argv) {
  const char *config = argc > 1 ? argv[1] : "sealbox.yaml";
  int status = 1;
  sb_client *client = NULL;
  sb_secret *password = NULL;
  sb_secret *token = NULL;
  const uint8_t *data = NULL;
  size_t len = 0;

  sb_result r = sb_client_open(config, &client);
  if (r != SB_RESULT_OK) return report("opening the config", r);

  r = sb_get(client, "predis/prod/database/password", &password);
  if (r != SB_RESULT_OK) {
    status = report("reading predis/prod/database/password", r);
    goto done;
  }
  r = sb_get(client, "predis/prod/api/auth-token", &token);
  if (r != SB_RESULT_OK) {
    status = report("reading predis/prod/api/auth-token", r);
    goto done;
  }

  if (sb_secret_data(password, &data, &len) != SB_RESULT_OK ||
      database_connect("predis", data, len) != 0) {
    fprintf(stderr, "predis_service: database connection failed\n");
    goto done;
  }
  if (sb_secret_data(token, &data, &len) != SB_RESULT_OK || api_authenticate(data, len) != 0) {
    fprintf(stderr, "predis_service: API authentication failed\n");
    goto done;
  }
  r = sb_audit_flush(client);
  if (r != SB_RESULT_OK) {
    status = report("flushing the audit log", r);
    goto done;
  }
  status = 0;

done:
  sb_secret_free(token); /* wipes */
  sb_secret_free(password);
  sb_client_free(client);
  return status;
}
