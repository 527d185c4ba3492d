/*
 * The C ABI as a C program sees it: round trips, misuse (NULL for every pointer parameter,
 * invalid UTF-8), secrets outliving their client, 8 threads x 10k gets on one client, and a
 * scan of the whole process memory showing that sb_secret_free leaves no copy of a value;
 * rotation (sb_rotate, sb_rollback, sb_rotation_status) with a command rotator;
 * and a `provider: gcp` config against the local GCP Secret Manager.
 *
 * Built by scripts/test-c.sh with -Wall -Wextra -Wpedantic -Werror, under ASan+UBSan and
 * under valgrind memcheck. Prints "N passed, N failed" and exits non-zero on any failure.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <inttypes.h>
#include <linux/capability.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "sealbox.h"

static int passed;
static int failed;

#define CHECK(cond)                                                                    \
  do {                                                                                 \
    if (cond) {                                                                        \
      passed++;                                                                        \
    } else {                                                                           \
      failed++;                                                                        \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);         \
    }                                                                                  \
  } while (0)

#define CHECK_RESULT(expr, expected)                                                   \
  do {                                                                                 \
    sb_result r_ = (expr);                                                             \
    if (r_ == (expected)) {                                                            \
      passed++;                                                                        \
    } else {                                                                           \
      failed++;                                                                        \
      fprintf(stderr, "%s:%d: %s returned %s, expected %s (%s)\n", __FILE__, __LINE__, \
              #expr, sb_result_name(r_), sb_result_name(expected), last_error());      \
    }                                                                                  \
  } while (0)

static const char *last_error(void) {
  static char buf[512];
  size_t written = 0;
  if (sb_last_error_message(buf, sizeof buf, &written) != SB_RESULT_OK) {
    return "(no message)";
  }
  return buf;
}

/* Distinct non-NULL values that a failed call must leave untouched in its outputs. */
static char sentinel_byte;
#define SENTINEL ((void *)&sentinel_byte)

static const char INVALID_UTF8[] = {'a', '/', (char)0xff, (char)0xfe, 0};

static sb_client *open_memory(void) {
  sb_client *c = NULL;
  CHECK_RESULT(sb_client_open_memory(&c), SB_RESULT_OK);
  return c;
}

static int bytes_equal(const sb_secret *s, const char *expected) {
  const uint8_t *data = NULL;
  size_t len = 0;
  if (sb_secret_data(s, &data, &len) != SB_RESULT_OK) return 0;
  return len == strlen(expected) && memcmp(data, expected, len) == 0;
}

static void test_version(void) {
  char expected[64];
  snprintf(expected, sizeof expected, "%d.%d.%d", SB_VERSION_MAJOR, SB_VERSION_MINOR,
           SB_VERSION_PATCH);
  CHECK(strcmp(sb_version(), expected) == 0);
  CHECK(strcmp(sb_result_name(SB_RESULT_NOT_FOUND), "SB_RESULT_NOT_FOUND") == 0);
  CHECK(strcmp(sb_result_name(SB_RESULT_OK), "SB_RESULT_OK") == 0);
  CHECK(strcmp(sb_result_name(123456), "SB_RESULT_UNRECOGNISED") == 0);
}

static void test_round_trip(void) {
  sb_client *c = open_memory();
  const char *name = "predis/prod/database/password";
  const char *v1 = "first-value";
  const char *v2 = "second-value";
  CHECK_RESULT(sb_put(c, name, (const uint8_t *)v1, strlen(v1)), SB_RESULT_OK);
  CHECK_RESULT(sb_put(c, name, (const uint8_t *)v2, strlen(v2)), SB_RESULT_OK);

  sb_secret *s = NULL;
  CHECK_RESULT(sb_get(c, name, &s), SB_RESULT_OK);
  CHECK(bytes_equal(s, v2));
  /* The length-taking form reads only name_len bytes: here a prefix of a longer buffer. */
  char padded[64];
  snprintf(padded, sizeof padded, "%s#tail", name);
  sb_secret *sn = NULL;
  CHECK_RESULT(sb_get_n(c, padded, strlen(name), &sn), SB_RESULT_OK);
  CHECK(bytes_equal(sn, v2));
  sb_secret_free(sn);
  const char *ver = NULL;
  size_t ver_len = 0;
  CHECK_RESULT(sb_secret_version(s, &ver, &ver_len), SB_RESULT_OK);
  CHECK(ver != NULL && ver_len > 0);

  /* The older version, by stage and by id from describe. */
  sb_secret *prev = NULL;
  CHECK_RESULT(sb_get_stage(c, name, "PREVIOUS", &prev), SB_RESULT_OK);
  CHECK(bytes_equal(prev, v1));

  sb_metadata *md = NULL;
  CHECK_RESULT(sb_describe(c, name, &md), SB_RESULT_OK);
  size_t count = 0;
  CHECK_RESULT(sb_metadata_version_count(md, &count), SB_RESULT_OK);
  CHECK(count == 2);
  const char *id = NULL;
  size_t id_len = 0;
  CHECK_RESULT(sb_metadata_version_at(md, 0, &id, &id_len), SB_RESULT_OK);
  char first_id[64] = {0};
  if (id_len < sizeof first_id) memcpy(first_id, id, id_len);
  sb_secret *old = NULL;
  CHECK_RESULT(sb_get_version(c, name, first_id, &old), SB_RESULT_OK);
  CHECK(bytes_equal(old, v1));
  CHECK_RESULT(sb_metadata_current_version(md, &id, &id_len), SB_RESULT_OK);
  CHECK(id_len == ver_len && memcmp(id, ver, id_len) == 0);
  const char *untouched = SENTINEL;
  CHECK_RESULT(sb_metadata_version_at(md, 2, &id, &id_len), SB_RESULT_OUT_OF_RANGE);
  CHECK_RESULT(sb_metadata_version_at(md, 2, &untouched, &id_len), SB_RESULT_OUT_OF_RANGE);
  CHECK(untouched == SENTINEL);
  int64_t updated = 0;
  CHECK_RESULT(sb_metadata_updated(md, &updated), SB_RESULT_OK);
  CHECK(updated > 1600000000);
  sb_metadata_free(md);

  sb_secret_free(old);
  sb_secret_free(prev);
  sb_secret_free(s);

  /* Not found: a code, a message naming the secret, no output written. */
  sb_secret *missing = SENTINEL;
  CHECK_RESULT(sb_get(c, "predis/prod/nope", &missing), SB_RESULT_NOT_FOUND);
  CHECK(missing == SENTINEL);
  CHECK(strstr(last_error(), "sb_get: not_found") != NULL);
  CHECK(strstr(last_error(), "predis/prod/nope") != NULL);

  /* An invalid name is the core's InvalidInput, not a crash. */
  CHECK_RESULT(sb_get(c, "../etc/passwd", &missing), SB_RESULT_INVALID_INPUT);
  CHECK_RESULT(sb_get_stage(c, name, "no spaces allowed", &missing), SB_RESULT_INVALID_INPUT);
  CHECK(missing == SENTINEL);

  /* A staged write leaves CURRENT where it is; a malformed stage writes nothing. */
  const char *v3 = "third-value";
  CHECK_RESULT(sb_put_stage(c, name, (const uint8_t *)v3, strlen(v3), "PENDING"), SB_RESULT_OK);
  CHECK_RESULT(sb_put_stage(c, name, (const uint8_t *)v3, strlen(v3), "no spaces!"),
               SB_RESULT_INVALID_INPUT);
  CHECK_RESULT(sb_refresh_now(c, name), SB_RESULT_OK);
  sb_secret *pending = NULL;
  CHECK_RESULT(sb_get_stage(c, name, "PENDING", &pending), SB_RESULT_OK);
  CHECK(bytes_equal(pending, v3));
  sb_secret_free(pending);
  sb_secret *still = NULL;
  CHECK_RESULT(sb_get(c, name, &still), SB_RESULT_OK);
  CHECK(bytes_equal(still, v2));
  sb_secret_free(still);

  CHECK_RESULT(sb_audit_flush(c), SB_RESULT_OK);

  /* Metrics: sized with a NULL buffer, then copied NUL-terminated; no names in them. */
  size_t needed = 0;
  CHECK_RESULT(sb_metrics_prometheus(c, NULL, 0, &needed), SB_RESULT_INSUFFICIENT_SIZE);
  CHECK(needed > 0);
  char *text = malloc(needed + 1);
  CHECK(text != NULL);
  size_t written = 0;
  CHECK_RESULT(sb_metrics_prometheus(c, text, needed + 1, &written), SB_RESULT_OK);
  CHECK(written == needed && strlen(text) == written);
  CHECK(strstr(text, "# TYPE sealbox_gets_total counter\n") != NULL);
  CHECK(strstr(text, "sealbox_store_latency_seconds_count") != NULL);
  CHECK(strstr(text, name) == NULL);
  free(text);

  CHECK_RESULT(sb_delete(c, name, true), SB_RESULT_OK);
  CHECK_RESULT(sb_get(c, name, &missing), SB_RESULT_NOT_FOUND);
  sb_client_free(c);
}

static void test_errors_never_contain_values(void) {
  sb_client *c = open_memory();
  const char *value = "{\"username\":\"predis\",\"password\":\"hunter2-not-in-errors\"}";
  const char *name = "predis/prod/database";
  CHECK_RESULT(sb_put(c, name, (const uint8_t *)value, strlen(value)), SB_RESULT_OK);
  sb_secret *field = NULL;
  CHECK_RESULT(sb_get_field(c, name, "password", &field), SB_RESULT_OK);
  CHECK(bytes_equal(field, "hunter2-not-in-errors"));
  const char *ver = NULL;
  size_t ver_len = 0;
  CHECK_RESULT(sb_secret_version(field, &ver, &ver_len), SB_RESULT_OK);
  CHECK(ver_len > 0);
  sb_secret_free(field);

  sb_secret *s = SENTINEL;
  sb_result r = sb_get_field(c, name, "no-such-field", &s);
  CHECK(r == SB_RESULT_NOT_FOUND);
  CHECK(s == SENTINEL);
  CHECK(strstr(last_error(), "hunter2") == NULL);
  CHECK(strstr(last_error(), "predis\"") == NULL);
  /* A value that is not a JSON object has no fields. */
  CHECK_RESULT(sb_put(c, "app/plain", (const uint8_t *)"not json", 8), SB_RESULT_OK);
  CHECK_RESULT(sb_get_field(c, "app/plain", "password", &s), SB_RESULT_INVALID_INPUT);
  CHECK(s == SENTINEL);
  sb_client_free(c);
}

/* Several fields of one JSON credential in one call, each its own secret; a missing field,
 * a non-JSON secret and bad arguments fail without output and without showing a value. */
static void test_get_fields(void) {
  sb_client *c = open_memory();
  const char *name = "predis/prod/aws";
  const char *doc =
      "{\"access_key_id\":\"AKIA-c-test\",\"secret_access_key\":\"sk-not-in-errors\","
      "\"session_token\":\"tok-not-in-errors\",\"port\":9440}";
  CHECK_RESULT(sb_put(c, name, (const uint8_t *)doc, strlen(doc)), SB_RESULT_OK);

  const char *fields[] = {"session_token", "access_key_id", "secret_access_key", "port"};
  sb_secret *out[4] = {NULL, NULL, NULL, NULL};
  CHECK_RESULT(sb_get_fields(c, name, fields, 4, out), SB_RESULT_OK);
  CHECK(bytes_equal(out[0], "tok-not-in-errors"));
  CHECK(bytes_equal(out[1], "AKIA-c-test"));
  CHECK(bytes_equal(out[2], "sk-not-in-errors"));
  CHECK(bytes_equal(out[3], "9440"));
  const char *v0 = NULL, *v3 = NULL;
  size_t l0 = 0, l3 = 0;
  CHECK_RESULT(sb_secret_version(out[0], &v0, &l0), SB_RESULT_OK);
  CHECK_RESULT(sb_secret_version(out[3], &v3, &l3), SB_RESULT_OK);
  CHECK(l0 > 0 && l0 == l3 && memcmp(v0, v3, l0) == 0);
  /* Each field has its own bytes, none the whole document. */
  const uint8_t *d0 = NULL, *d1 = NULL;
  size_t n0 = 0, n1 = 0;
  CHECK_RESULT(sb_secret_data(out[0], &d0, &n0), SB_RESULT_OK);
  CHECK_RESULT(sb_secret_data(out[1], &d1, &n1), SB_RESULT_OK);
  CHECK(d0 != d1 && n0 < strlen(doc));
  for (int i = 0; i < 4; i++) sb_secret_free(out[i]);

  sb_secret *untouched[3] = {SENTINEL, SENTINEL, SENTINEL};
  const char *with_missing[] = {"access_key_id", "region", "secret_access_key"};
  CHECK_RESULT(sb_get_fields(c, name, with_missing, 3, untouched), SB_RESULT_NOT_FOUND);
  CHECK(strstr(last_error(), "`region`") != NULL);
  CHECK(strstr(last_error(), "not-in-errors") == NULL && strstr(last_error(), "AKIA") == NULL);
  CHECK(untouched[0] == SENTINEL && untouched[1] == SENTINEL && untouched[2] == SENTINEL);

  const char *plain = "plain-not-in-errors";
  CHECK_RESULT(sb_put(c, "predis/prod/plain", (const uint8_t *)plain, strlen(plain)),
               SB_RESULT_OK);
  CHECK_RESULT(sb_get_fields(c, "predis/prod/plain", fields, 1, untouched),
               SB_RESULT_INVALID_INPUT);
  CHECK(strstr(last_error(), "not-in-errors") == NULL);
  CHECK_RESULT(sb_get_fields(c, name, fields, 0, untouched), SB_RESULT_INVALID_INPUT);
  const char *twice[] = {"port", "port"};
  CHECK_RESULT(sb_get_fields(c, name, twice, 2, untouched), SB_RESULT_INVALID_INPUT);
  const char *with_null[] = {"port", NULL};
  CHECK_RESULT(sb_get_fields(c, name, with_null, 2, untouched), SB_RESULT_NULL_PARAMETER);
  CHECK(strcmp(last_error(), "sb_get_fields: argument `fields[1]` is NULL") == 0);
  const char *bad_utf8[] = {INVALID_UTF8};
  CHECK_RESULT(sb_get_fields(c, name, bad_utf8, 1, untouched), SB_RESULT_INVALID_UTF8);
  CHECK_RESULT(sb_get_fields(c, name, NULL, 1, untouched), SB_RESULT_NULL_PARAMETER);
  CHECK_RESULT(sb_get_fields(c, name, fields, 1, NULL), SB_RESULT_NULL_PARAMETER);
  CHECK(untouched[0] == SENTINEL && untouched[1] == SENTINEL && untouched[2] == SENTINEL);
  sb_client_free(c);
}

static const char *last_request_id(void) {
  static char buf[128];
  size_t written = 0;
  if (sb_last_error_request_id(buf, sizeof buf, &written) != SB_RESULT_OK) return "(failed)";
  return buf;
}

/* The audit line whose request_id is `id`, copied into `line` (empty when none). */
static void audit_line_of(const char *log, const char *id, char *line, size_t cap) {
  line[0] = 0;
  FILE *f = fopen(log, "r");
  if (f == NULL) return;
  char needle[160];
  snprintf(needle, sizeof needle, "\"request_id\":\"%s\"", id);
  char buf[4096];
  while (fgets(buf, sizeof buf, f) != NULL) {
    if (strstr(buf, needle) != NULL) {
      snprintf(line, cap, "%s", buf);
      break;
    }
  }
  fclose(f);
}

/* A denied read and a NotFound read each leave the request id of their audit line. */
static void test_error_request_id_is_the_audit_lines(void) {
  char dir[] = "/tmp/sealbox-c-audit-XXXXXX";
  if (mkdtemp(dir) == NULL) {
    CHECK(0);
    return;
  }
  char config[128], log[128];
  snprintf(config, sizeof config, "%s/sealbox.yaml", dir);
  snprintf(log, sizeof log, "%s/audit.jsonl", dir);
  FILE *f = fopen(config, "w");
  CHECK(f != NULL);
  if (f == NULL) return;
  fputs("secrets:\n"
        "  provider: memory\n"
        "  config: {seed: {predis/staging/api/token: staging-token}}\n"
        "principal: svc:predis-cache\n"
        "audit: {path: ./audit.jsonl, mode: strict}\n"
        "policy:\n"
        "  rules:\n"
        "    - {principals: [\"svc:predis-*\"], allow: [read], secrets: [\"predis/prod/*\"]}\n",
        f);
  fclose(f);

  sb_client *c = NULL;
  CHECK_RESULT(sb_client_open(config, &c), SB_RESULT_OK);
  if (c != NULL) {
    sb_secret *s = SENTINEL;
    char denied_id[128], missing_id[128], line[4096];
    CHECK_RESULT(sb_get(c, "predis/staging/api/token", &s), SB_RESULT_ACCESS_DENIED);
    snprintf(denied_id, sizeof denied_id, "%s", last_request_id());
    CHECK_RESULT(sb_get(c, "predis/prod/api/missing", &s), SB_RESULT_NOT_FOUND);
    snprintf(missing_id, sizeof missing_id, "%s", last_request_id());
    CHECK(s == SENTINEL);
    CHECK(strlen(denied_id) > 0 && strlen(missing_id) > 0 && strcmp(denied_id, missing_id) != 0);
    CHECK_RESULT(sb_audit_flush(c), SB_RESULT_OK);

    audit_line_of(log, denied_id, line, sizeof line);
    CHECK(strstr(line, "\"event\":\"access.denied\"") != NULL);
    CHECK(strstr(line, "\"resource\":\"predis/staging/api/token\"") != NULL);
    audit_line_of(log, missing_id, line, sizeof line);
    CHECK(strstr(line, "\"event\":\"secret.read\"") != NULL);
    CHECK(strstr(line, "\"reason\":\"not_found\"") != NULL);
    CHECK(strstr(line, "\"resource\":\"predis/prod/api/missing\"") != NULL);

    /* A failure nothing audited (a NULL argument) has no request id. */
    CHECK_RESULT(sb_get(c, "predis/prod/x", NULL), SB_RESULT_NULL_PARAMETER);
    CHECK(strcmp(last_request_id(), "") == 0);
    sb_client_free(c);
  }
  char buf[8];
  size_t len = 0;
  CHECK_RESULT(sb_last_error_request_id(NULL, 8, &len), SB_RESULT_NULL_PARAMETER);
  CHECK_RESULT(sb_last_error_request_id(buf, sizeof buf, NULL), SB_RESULT_NULL_PARAMETER);
  CHECK_RESULT(sb_last_error_request_id(buf, 0, &len), SB_RESULT_INSUFFICIENT_SIZE);
  char cmd[200];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  CHECK(system(cmd) == 0);
}

static void test_list(void) {
  sb_client *c = open_memory();
  const char *names[] = {"predis/prod/api/auth-token", "predis/prod/database/password",
                         "other/x"};
  for (size_t i = 0; i < 3; i++) {
    CHECK_RESULT(sb_put(c, names[i], (const uint8_t *)"v", 1), SB_RESULT_OK);
  }
  sb_list_iter *it = NULL;
  CHECK_RESULT(sb_list(c, "predis/", &it), SB_RESULT_OK);
  const char *n = NULL;
  size_t len = 0;
  int seen = 0;
  sb_result r;
  while ((r = sb_list_next(it, &n, &len)) == SB_RESULT_OK) {
    CHECK(len > 7 && memcmp(n, "predis/", 7) == 0);
    seen++;
  }
  CHECK(r == SB_RESULT_DONE);
  CHECK(seen == 2);
  const char *untouched = SENTINEL;
  CHECK_RESULT(sb_list_next(it, &untouched, &len), SB_RESULT_DONE);
  CHECK(untouched == SENTINEL);
  sb_list_free(it);
  sb_client_free(c);
}

static void test_null_for_every_pointer_parameter(void) {
  sb_client *c = open_memory();
  const char *name = "app/key";
  CHECK_RESULT(sb_put(c, name, (const uint8_t *)"v", 1), SB_RESULT_OK);
  sb_secret *s = NULL;
  CHECK_RESULT(sb_get(c, name, &s), SB_RESULT_OK);
  sb_metadata *md = NULL;
  CHECK_RESULT(sb_describe(c, name, &md), SB_RESULT_OK);
  sb_list_iter *it = NULL;
  CHECK_RESULT(sb_list(c, "", &it), SB_RESULT_OK);

  sb_client *cout = SENTINEL;
  sb_secret *sout = SENTINEL;
  sb_metadata *mdout = SENTINEL;
  sb_list_iter *itout = SENTINEL;
  const uint8_t *data = SENTINEL;
  const char *str = SENTINEL;
  size_t len = 0;
  int64_t t = 0;
  char buf[8];
  const sb_result N = SB_RESULT_NULL_PARAMETER;

  CHECK_RESULT(sb_client_open(NULL, &cout), N);
  CHECK_RESULT(sb_client_open("/nonexistent/sealbox.yaml", NULL), N);
  CHECK_RESULT(sb_client_open_local(NULL, "/k", &cout), N);
  CHECK_RESULT(sb_client_open_local("/d", NULL, &cout), N);
  CHECK_RESULT(sb_client_open_local("/d", "/k", NULL), N);
  CHECK_RESULT(sb_client_open_memory(NULL), N);

  CHECK_RESULT(sb_get(NULL, name, &sout), N);
  CHECK_RESULT(sb_get(c, NULL, &sout), N);
  CHECK_RESULT(sb_get(c, name, NULL), N);
  CHECK_RESULT(sb_get_n(NULL, name, strlen(name), &sout), N);
  CHECK_RESULT(sb_get_n(c, NULL, 0, &sout), N);
  CHECK_RESULT(sb_get_n(c, name, strlen(name), NULL), N);
  CHECK_RESULT(sb_get_version(NULL, name, "1", &sout), N);
  CHECK_RESULT(sb_get_version(c, NULL, "1", &sout), N);
  CHECK_RESULT(sb_get_version(c, name, NULL, &sout), N);
  CHECK_RESULT(sb_get_version(c, name, "1", NULL), N);
  CHECK_RESULT(sb_get_stage(NULL, name, "CURRENT", &sout), N);
  CHECK_RESULT(sb_get_stage(c, NULL, "CURRENT", &sout), N);
  CHECK_RESULT(sb_get_stage(c, name, NULL, &sout), N);
  CHECK_RESULT(sb_get_stage(c, name, "CURRENT", NULL), N);
  CHECK_RESULT(sb_get_field(NULL, name, "f", &sout), N);
  CHECK_RESULT(sb_get_field(c, NULL, "f", &sout), N);
  CHECK_RESULT(sb_get_field(c, name, NULL, &sout), N);
  CHECK_RESULT(sb_get_field(c, name, "f", NULL), N);
  CHECK_RESULT(sb_put(NULL, name, (const uint8_t *)"v", 1), N);
  CHECK_RESULT(sb_put(c, NULL, (const uint8_t *)"v", 1), N);
  CHECK_RESULT(sb_put(c, name, NULL, 1), N);
  CHECK_RESULT(sb_put(c, name, NULL, 0), N);
  CHECK_RESULT(sb_put_stage(NULL, name, (const uint8_t *)"v", 1, "PENDING"), N);
  CHECK_RESULT(sb_put_stage(c, NULL, (const uint8_t *)"v", 1, "PENDING"), N);
  CHECK_RESULT(sb_put_stage(c, name, NULL, 1, "PENDING"), N);
  CHECK_RESULT(sb_put_stage(c, name, (const uint8_t *)"v", 1, NULL), N);
  CHECK_RESULT(sb_refresh_now(NULL, name), N);
  CHECK_RESULT(sb_refresh_now(c, NULL), N);
  CHECK_RESULT(sb_delete(NULL, name, false), N);
  CHECK_RESULT(sb_delete(c, NULL, false), N);
  CHECK_RESULT(sb_audit_flush(NULL), N);
  char mbuf[16];
  size_t mlen = 0;
  CHECK_RESULT(sb_metrics_prometheus(NULL, mbuf, sizeof mbuf, &mlen), N);
  CHECK_RESULT(sb_metrics_prometheus(c, NULL, sizeof mbuf, &mlen), N);
  CHECK_RESULT(sb_metrics_prometheus(c, mbuf, sizeof mbuf, NULL), N);

  CHECK_RESULT(sb_list(NULL, "", &itout), N);
  CHECK_RESULT(sb_list(c, NULL, &itout), N);
  CHECK_RESULT(sb_list(c, "", NULL), N);
  CHECK_RESULT(sb_list_next(NULL, &str, &len), N);
  CHECK_RESULT(sb_list_next(it, NULL, &len), N);
  CHECK_RESULT(sb_list_next(it, &str, NULL), N);

  CHECK_RESULT(sb_describe(NULL, name, &mdout), N);
  CHECK_RESULT(sb_describe(c, NULL, &mdout), N);
  CHECK_RESULT(sb_describe(c, name, NULL), N);
  CHECK_RESULT(sb_metadata_version_count(NULL, &len), N);
  CHECK_RESULT(sb_metadata_version_count(md, NULL), N);
  CHECK_RESULT(sb_metadata_version_at(NULL, 0, &str, &len), N);
  CHECK_RESULT(sb_metadata_version_at(md, 0, NULL, &len), N);
  CHECK_RESULT(sb_metadata_version_at(md, 0, &str, NULL), N);
  CHECK_RESULT(sb_metadata_current_version(NULL, &str, &len), N);
  CHECK_RESULT(sb_metadata_current_version(md, NULL, &len), N);
  CHECK_RESULT(sb_metadata_current_version(md, &str, NULL), N);
  CHECK_RESULT(sb_metadata_updated(NULL, &t), N);
  CHECK_RESULT(sb_metadata_updated(md, NULL), N);

  CHECK_RESULT(sb_secret_data(NULL, &data, &len), N);
  CHECK_RESULT(sb_secret_data(s, NULL, &len), N);
  CHECK_RESULT(sb_secret_data(s, &data, NULL), N);
  CHECK_RESULT(sb_secret_version(NULL, &str, &len), N);
  CHECK_RESULT(sb_secret_version(s, NULL, &len), N);
  CHECK_RESULT(sb_secret_version(s, &str, NULL), N);

  CHECK_RESULT(sb_last_error_message(NULL, 8, &len), N);
  CHECK_RESULT(sb_last_error_message(buf, sizeof buf, NULL), N);
  CHECK_RESULT(sb_last_error_message(buf, 0, &len), SB_RESULT_INSUFFICIENT_SIZE);

  /* No output was written by any failed call. */
  CHECK(cout == SENTINEL && sout == SENTINEL && mdout == SENTINEL && itout == SENTINEL);
  CHECK(data == SENTINEL && str == SENTINEL);

  /* The last error names the function and the parameter. */
  CHECK_RESULT(sb_get(c, name, NULL), N);
  CHECK(strcmp(last_error(), "sb_get: argument `secret_out` is NULL") == 0);

  /* Every _free accepts NULL. */
  sb_client_free(NULL);
  sb_secret_free(NULL);
  sb_metadata_free(NULL);
  sb_list_free(NULL);

  sb_list_free(it);
  sb_metadata_free(md);
  sb_secret_free(s);
  sb_client_free(c);
}

static void test_invalid_utf8(void) {
  sb_client *c = open_memory();
  sb_secret *sout = SENTINEL;
  sb_metadata *mdout = SENTINEL;
  sb_list_iter *itout = SENTINEL;
  const sb_result U = SB_RESULT_INVALID_UTF8;
  CHECK_RESULT(sb_get(c, INVALID_UTF8, &sout), U);
  CHECK_RESULT(sb_get_version(c, INVALID_UTF8, "1", &sout), U);
  CHECK_RESULT(sb_get_version(c, "a/b", INVALID_UTF8, &sout), U);
  CHECK_RESULT(sb_get_stage(c, "a/b", INVALID_UTF8, &sout), U);
  CHECK_RESULT(sb_get_field(c, INVALID_UTF8, "f", &sout), U);
  CHECK_RESULT(sb_get_field(c, "a/b", INVALID_UTF8, &sout), U);
  CHECK_RESULT(sb_put(c, INVALID_UTF8, (const uint8_t *)"v", 1), U);
  CHECK_RESULT(sb_delete(c, INVALID_UTF8, true), U);
  CHECK_RESULT(sb_list(c, INVALID_UTF8, &itout), U);
  CHECK_RESULT(sb_describe(c, INVALID_UTF8, &mdout), U);
  CHECK(sout == SENTINEL && mdout == SENTINEL && itout == SENTINEL);
  CHECK(strcmp(last_error(), "sb_describe: argument `name` is not valid UTF-8") == 0);
  /* Binary values are fine: only names must be UTF-8. */
  CHECK_RESULT(sb_put(c, "a/bin", (const uint8_t *)INVALID_UTF8, sizeof INVALID_UTF8),
               SB_RESULT_OK);
  sb_client_free(c);
}

static void test_secret_outlives_client(void) {
  sb_client *c = open_memory();
  CHECK_RESULT(sb_put(c, "app/outlives", (const uint8_t *)"still-here", 10), SB_RESULT_OK);
  sb_secret *s = NULL;
  CHECK_RESULT(sb_get(c, "app/outlives", &s), SB_RESULT_OK);
  sb_client_free(c);
  CHECK(bytes_equal(s, "still-here"));
  sb_secret_free(s);
}

static void test_open_errors(void) {
  sb_client *c = SENTINEL;
  sb_result r = sb_client_open("/nonexistent/dir/sealbox.yaml", &c);
  CHECK(r != SB_RESULT_OK);
  CHECK(c == SENTINEL);
}

/* The local vault: created with its key file on first open, a round trip across a reopen,
 * and a key file with loose permissions refused. */
static void test_open_local(void) {
  char dir[] = "/tmp/sealbox-c-test-XXXXXX";
  if (mkdtemp(dir) == NULL) {
    CHECK(0);
    return;
  }
  char vault[128], key[128];
  snprintf(vault, sizeof vault, "%s/vault", dir);
  snprintf(key, sizeof key, "%s/master.key", dir);
  CHECK(mkdir(vault, 0700) == 0);

  sb_client *c = SENTINEL;
  CHECK_RESULT(sb_client_open_local(vault, key, &c), SB_RESULT_OK);
  if (c != SENTINEL) {
    struct stat st;
    CHECK(stat(key, &st) == 0 && (st.st_mode & 077) == 0);
    CHECK_RESULT(sb_put(c, "predis/prod/api/auth-token", (const uint8_t *)"tok", 3),
                 SB_RESULT_OK);
    sb_client_free(c);
    c = NULL;
    CHECK_RESULT(sb_client_open_local(vault, key, &c), SB_RESULT_OK);
    sb_secret *s = NULL;
    CHECK_RESULT(sb_get(c, "predis/prod/api/auth-token", &s), SB_RESULT_OK);
    CHECK(bytes_equal(s, "tok"));
    sb_secret_free(s);
    sb_client_free(c);

    CHECK(chmod(key, 0644) == 0);
    c = SENTINEL;
    CHECK_RESULT(sb_client_open_local(vault, key, &c), SB_RESULT_CONFIG);
    CHECK(c == SENTINEL);
    CHECK(strstr(last_error(), "chmod") != NULL);
  }
  char cmd[200];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  CHECK(system(cmd) == 0);
}

/* The whole contents of a small file, NUL-terminated, into `buf`; 0 when unreadable. */
static int read_file(const char *path, char *buf, size_t cap) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return 0;
  size_t n = fread(buf, 1, cap - 1, f);
  fclose(f);
  buf[n] = 0;
  return 1;
}

static void current_version(sb_client *c, const char *name, char *out, size_t cap) {
  sb_metadata *md = NULL;
  const char *id = NULL;
  size_t len = 0;
  out[0] = 0;
  if (sb_describe(c, name, &md) != SB_RESULT_OK) return;
  if (sb_metadata_current_version(md, &id, &len) == SB_RESULT_OK && len < cap) {
    memcpy(out, id, len);
    out[len] = 0;
  }
  sb_metadata_free(md);
}

/*
 * Rotation through the C ABI: sb_rotate promotes a new value and sb_rollback restores the old;
 * a command rotator gets each step's name as its last argument and the value on stdin; a
 * failing step answers SB_RESULT_UNAVAILABLE with CURRENT unchanged and shows in the status;
 * NULL and malformed arguments are answered with codes and leave outputs untouched.
 */
static void test_rotation(void) {
  const char *name = "predis/prod/api/key";
  sb_client *c = open_memory();
  CHECK_RESULT(sb_put(c, name, (const uint8_t *)"first-key", 9), SB_RESULT_OK);
  char first[64], second[64], now[64];
  current_version(c, name, first, sizeof first);

  CHECK_RESULT(sb_rotate(c, name, NULL, 0), SB_RESULT_OK);
  current_version(c, name, second, sizeof second);
  CHECK(second[0] != 0 && strcmp(first, second) != 0);
  sb_secret *s = NULL;
  CHECK_RESULT(sb_get(c, name, &s), SB_RESULT_OK);
  CHECK(s != NULL && !bytes_equal(s, "first-key"));
  sb_secret_free(s);

  sb_rotation_state *st = NULL;
  CHECK_RESULT(sb_rotation_status(c, name, &st), SB_RESULT_OK);
  int64_t t = 0;
  CHECK_RESULT(sb_rotation_state_last_rotated(st, &t), SB_RESULT_OK);
  CHECK(t > 1700000000);
  uint32_t failures = 99;
  CHECK_RESULT(sb_rotation_state_failures(st, &failures), SB_RESULT_OK);
  CHECK(failures == 0);
  const char *str = SENTINEL, *str2 = SENTINEL;
  size_t len = 7, len2 = 7;
  CHECK_RESULT(sb_rotation_state_pending(st, &str, &len), SB_RESULT_NOT_FOUND);
  CHECK(str == SENTINEL && len == 7);
  CHECK_RESULT(sb_rotation_state_last_failure(st, &str, &len, &str2, &len2), SB_RESULT_NOT_FOUND);
  sb_rotation_state_free(st);

  /* Rollback of the finished rotation: the first value is CURRENT again. */
  CHECK_RESULT(sb_rollback(c, name, NULL, 0), SB_RESULT_OK);
  current_version(c, name, now, sizeof now);
  CHECK(strcmp(now, first) == 0);
  s = NULL;
  CHECK_RESULT(sb_get(c, name, &s), SB_RESULT_OK);
  CHECK(s != NULL && bytes_equal(s, "first-key"));
  sb_secret_free(s);

  /* A command rotator: records the steps and the value each got. */
  char dir[] = "/tmp/sealbox-c-rotate-XXXXXX";
  if (mkdtemp(dir) == NULL) {
    CHECK(0);
    sb_client_free(c);
    return;
  }
  const char *record = "cat > \"$0/$1.value\"; echo \"$1\" >> \"$0/steps\"";
  const char *argv[] = {"/bin/sh", "-c", record, dir};
  CHECK_RESULT(sb_rotate(c, name, argv, 4), SB_RESULT_OK);
  char path[160], buf[256];
  snprintf(path, sizeof path, "%s/steps", dir);
  CHECK(read_file(path, buf, sizeof buf) && strcmp(buf, "set\ntest\n") == 0);
  snprintf(path, sizeof path, "%s/set.value", dir);
  CHECK(read_file(path, buf, sizeof buf));
  s = NULL;
  CHECK_RESULT(sb_get(c, name, &s), SB_RESULT_OK);
  CHECK(s != NULL && bytes_equal(s, buf));
  sb_secret_free(s);

  /* A command failing at its set step: UNAVAILABLE, CURRENT unchanged, recorded. */
  current_version(c, name, second, sizeof second);
  const char *failing[] = {"/bin/sh", "-c", "cat >/dev/null; echo refused >&2; exit 3", "sh"};
  CHECK_RESULT(sb_rotate(c, name, failing, 4), SB_RESULT_UNAVAILABLE);
  CHECK(strstr(last_error(), "refused") != NULL);
  current_version(c, name, now, sizeof now);
  CHECK(strcmp(now, second) == 0);
  st = NULL;
  CHECK_RESULT(sb_rotation_status(c, name, &st), SB_RESULT_OK);
  CHECK_RESULT(sb_rotation_state_failures(st, &failures), SB_RESULT_OK);
  CHECK(failures == 1);
  CHECK_RESULT(sb_rotation_state_last_failure(st, &str, &len, &str2, &len2), SB_RESULT_OK);
  CHECK(len == 3 && memcmp(str, "set", 3) == 0);
  CHECK(len2 > 0 && memchr(str2, 0, len2) == NULL);
  CHECK_RESULT(sb_rotation_state_pending(st, &str, &len), SB_RESULT_OK);
  CHECK(len > 0);
  sb_rotation_state_free(st);
  /* Rollback abandons the unfinished rotation through a command that accepts the restore. */
  const char *accept[] = {"/bin/sh", "-c", "cat >/dev/null", "sh"};
  CHECK_RESULT(sb_rollback(c, name, accept, 4), SB_RESULT_OK);
  st = NULL;
  CHECK_RESULT(sb_rotation_status(c, name, &st), SB_RESULT_OK);
  CHECK_RESULT(sb_rotation_state_pending(st, &str, &len), SB_RESULT_NOT_FOUND);

  /* Misuse. */
  const sb_result N = SB_RESULT_NULL_PARAMETER;
  const char *with_null[] = {"/bin/sh", NULL};
  sb_rotation_state *stout = SENTINEL;
  CHECK_RESULT(sb_rotate(NULL, name, NULL, 0), N);
  CHECK_RESULT(sb_rotate(c, NULL, NULL, 0), N);
  CHECK_RESULT(sb_rotate(c, name, NULL, 2), N);
  CHECK_RESULT(sb_rotate(c, name, with_null, 2), N);
  CHECK_RESULT(sb_rotate(c, name, accept, 0), SB_RESULT_INVALID_INPUT);
  CHECK_RESULT(sb_rotate(c, INVALID_UTF8, NULL, 0), SB_RESULT_INVALID_UTF8);
  CHECK_RESULT(sb_rollback(NULL, name, NULL, 0), N);
  CHECK_RESULT(sb_rollback(c, NULL, NULL, 0), N);
  CHECK_RESULT(sb_rotation_status(NULL, name, &stout), N);
  CHECK_RESULT(sb_rotation_status(c, NULL, &stout), N);
  CHECK_RESULT(sb_rotation_status(c, name, NULL), N);
  CHECK(stout == SENTINEL);
  CHECK_RESULT(sb_rotation_state_last_rotated(NULL, &t), N);
  CHECK_RESULT(sb_rotation_state_last_rotated(st, NULL), N);
  CHECK_RESULT(sb_rotation_state_pending(st, NULL, &len), N);
  CHECK_RESULT(sb_rotation_state_failures(st, NULL), N);
  CHECK_RESULT(sb_rotation_state_last_failure(st, &str, &len, NULL, &len2), N);
  sb_rotation_state_free(st);
  sb_rotation_state_free(NULL);
  CHECK_RESULT(sb_rotate(c, "predis/prod/api/never-written", NULL, 0), SB_RESULT_NOT_FOUND);
  sb_client_free(c);

  char cmd[200];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  CHECK(system(cmd) == 0);
}

/* Standard base64 of `len` bytes into `out` (room for 4 * ceil(len / 3) + 1). */
static void base64_encode(const uint8_t *in, size_t len, char *out) {
  static const char ALPHABET[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t o = 0;
  for (size_t i = 0; i < len; i += 3) {
    uint32_t n = (uint32_t)in[i] << 16;
    if (i + 1 < len) n |= (uint32_t)in[i + 1] << 8;
    if (i + 2 < len) n |= in[i + 2];
    out[o++] = ALPHABET[(n >> 18) & 63];
    out[o++] = ALPHABET[(n >> 12) & 63];
    out[o++] = i + 1 < len ? ALPHABET[(n >> 6) & 63] : '=';
    out[o++] = i + 2 < len ? ALPHABET[n & 63] : '=';
  }
  out[o] = 0;
}

/* Whether a plain REST read of `secret_id`'s `version` (a number or an alias) at the local
 * Secret Manager answers with `value` (base64 in the JSON body). */
static int rest_access_holds(const char *endpoint, const char *secret_id, const char *version,
                             const char *value) {
  char cmd[512], body[4096], want[128];
  snprintf(cmd, sizeof cmd,
           "curl -sSf --max-time 10 '%s/v1/projects/sealbox-test/secrets/%s/versions/%s:access'",
           endpoint, secret_id, version);
  FILE *p = popen(cmd, "r");
  if (p == NULL) return 0;
  size_t n = fread(body, 1, sizeof body - 1, p);
  body[n] = 0;
  int rc = pclose(p);
  base64_encode((const uint8_t *)value, strlen(value), want);
  return rc == 0 && strstr(body, want) != NULL;
}

/* Writes a `provider: gcp` config for the local Secret Manager at `endpoint` into `dir`. */
static void write_gcp_config(const char *dir, const char *endpoint, const char *prefix,
                             char *path, size_t cap) {
  snprintf(path, cap, "%s/sealbox.yaml", dir);
  FILE *f = fopen(path, "w");
  if (f == NULL) {
    CHECK(0);
    return;
  }
  fprintf(f,
          "stores:\n"
          "  gcp:\n"
          "    provider: gcp\n"
          "    config:\n"
          "      project: sealbox-test\n"
          "      endpoint: \"%s\"\n"
          "      anonymous: true\n"
          "      prefix: %s\n"
          /* Generous: under valgrind a call runs many times slower. */
          "      attempt_timeout: 30s\n"
          "      operation_timeout: 60s\n"
          "principal: svc:c-test-gcp\n",
          endpoint, prefix);
  CHECK(fclose(f) == 0);
}

/* `provider: gcp` through the C ABI, against the local GCP Secret Manager that
 * scripts/test-c.sh starts (SEALBOX_TEST_GCP_ENDPOINT): writes land on the server under the
 * mapped secret id (read back with plain REST), a second client reads them, stages and
 * versions are GCP's aliases and numbers, and a soft delete hides the secret. */
static void test_gcp_local_server(void) {
  const char *endpoint = getenv("SEALBOX_TEST_GCP_ENDPOINT");
  if (endpoint == NULL || *endpoint == 0) {
    const char *ci = getenv("CI");
    if (ci != NULL && *ci != 0 && strcmp(ci, "0") != 0 && strcmp(ci, "false") != 0) {
      fprintf(stderr, "SEALBOX_TEST_GCP_ENDPOINT is not set; CI must not skip the GCP test\n");
      CHECK(0);
    } else {
      printf("SKIP test_gcp_local_server: SEALBOX_TEST_GCP_ENDPOINT is not set "
             "(scripts/test-c.sh starts the local Secret Manager)\n");
    }
    return;
  }
  char dir[] = "/tmp/sealbox-c-gcp-XXXXXX";
  if (mkdtemp(dir) == NULL) {
    CHECK(0);
    return;
  }
  /* Each run under its own prefix: the server may outlive one run of this program. */
  char prefix[64], config[128];
  snprintf(prefix, sizeof prefix, "c-test/run-%ld", (long)getpid());
  write_gcp_config(dir, endpoint, prefix, config, sizeof config);
  /* prefix c-test/run-PID + name database/password, '/' mapped to "__". */
  char secret_id[128];
  snprintf(secret_id, sizeof secret_id, "c-test__run-%ld__database__password", (long)getpid());

  const char *name = "database/password";
  const char *v1 = "gcp-first-value";
  const char *v2 = "gcp-second-value";
  sb_client *c = SENTINEL;
  CHECK_RESULT(sb_client_open(config, &c), SB_RESULT_OK);
  if (c == SENTINEL) return;
  CHECK_RESULT(sb_put(c, name, (const uint8_t *)v1, strlen(v1)), SB_RESULT_OK);
  CHECK(rest_access_holds(endpoint, secret_id, "current", v1));
  CHECK_RESULT(sb_put(c, name, (const uint8_t *)v2, strlen(v2)), SB_RESULT_OK);
  CHECK(rest_access_holds(endpoint, secret_id, "current", v2));
  CHECK(rest_access_holds(endpoint, secret_id, "previous", v1));

  sb_secret *s = NULL;
  CHECK_RESULT(sb_get(c, name, &s), SB_RESULT_OK);
  CHECK(bytes_equal(s, v2));
  const char *ver = NULL;
  size_t ver_len = 0;
  CHECK_RESULT(sb_secret_version(s, &ver, &ver_len), SB_RESULT_OK);
  CHECK(ver_len == 1 && ver[0] == '2');
  sb_secret_free(s);
  sb_secret *prev = NULL;
  CHECK_RESULT(sb_get_stage(c, name, "PREVIOUS", &prev), SB_RESULT_OK);
  CHECK(bytes_equal(prev, v1));
  sb_secret_free(prev);

  /* A second client, with its own cache, finds the value on the server. */
  sb_client *other = NULL;
  CHECK_RESULT(sb_client_open(config, &other), SB_RESULT_OK);
  if (other != NULL) {
    sb_secret *o = NULL;
    CHECK_RESULT(sb_get(other, name, &o), SB_RESULT_OK);
    CHECK(bytes_equal(o, v2));
    sb_secret_free(o);
    sb_secret *missing = SENTINEL;
    CHECK_RESULT(sb_get(other, "database/missing", &missing), SB_RESULT_NOT_FOUND);
    CHECK(missing == SENTINEL);
  }

  if (other != NULL) sb_client_free(other);

  /* A soft delete hides the secret from the client that made it and from a fresh one. */
  CHECK_RESULT(sb_delete(c, name, false), SB_RESULT_OK);
  sb_secret *gone = SENTINEL;
  CHECK_RESULT(sb_get(c, name, &gone), SB_RESULT_NOT_FOUND);
  CHECK(gone == SENTINEL);
  sb_client *late = NULL;
  CHECK_RESULT(sb_client_open(config, &late), SB_RESULT_OK);
  if (late != NULL) {
    gone = SENTINEL;
    CHECK_RESULT(sb_get(late, name, &gone), SB_RESULT_NOT_FOUND);
    CHECK(gone == SENTINEL);
    sb_client_free(late);
  }
  sb_client_free(c);
  char cmd[200];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  CHECK(system(cmd) == 0);
}

/* Ends a forked child with `code` by exec'ing a shell: under valgrind a forked child's own
 * exit would run a leak check over the parent's heap, whose owners (other threads) do not
 * exist in the child. */
static void child_exit(int code) {
  char cmd[32];
  snprintf(cmd, sizeof cmd, "exit %d", code);
  execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
  _exit(code);
}

/* A refused lock is counted where C can read it: sb_memory_lock_failures and the metrics
 * text. In a child under RLIMIT_MEMLOCK 0 and without CAP_IPC_LOCK (which root would
 * otherwise use to ignore the limit), a value larger than an arena slot needs an mlock of
 * its own, which fails; the default policy carries on unlocked. */
static void test_memory_lock_failures_are_counted(void) {
  uint64_t count = 0;
  CHECK_RESULT(sb_memory_lock_failures(NULL), SB_RESULT_NULL_PARAMETER);
  CHECK_RESULT(sb_memory_lock_failures(&count), SB_RESULT_OK);
#if defined(__SANITIZE_ADDRESS__)
  /* AddressSanitizer intercepts mlock and makes it succeed without locking, so no lock can
   * fail here; the plain build (run under valgrind) checks the count. */
  printf("skipped the lock-failure child: AddressSanitizer's mlock always succeeds\n");
  return;
#endif
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct caps[2];
    if (syscall(SYS_capget, &header, caps) != 0) child_exit(2);
    caps[CAP_IPC_LOCK / 32].effective &= ~(1u << (CAP_IPC_LOCK % 32));
    caps[CAP_IPC_LOCK / 32].permitted &= ~(1u << (CAP_IPC_LOCK % 32));
    if (syscall(SYS_capset, &header, caps) != 0) child_exit(3);
    struct rlimit none = {0, 0};
    if (setrlimit(RLIMIT_MEMLOCK, &none) != 0) child_exit(4);

    uint64_t before = 0, after = 0;
    if (sb_memory_lock_failures(&before) != SB_RESULT_OK) child_exit(5);
    sb_client *c = NULL;
    if (sb_client_open_memory(&c) != SB_RESULT_OK) child_exit(6);
    static uint8_t large[64 * 1024];
    memset(large, 'x', sizeof large);
    if (sb_put(c, "app/large", large, sizeof large) != SB_RESULT_OK) child_exit(7);
    if (sb_memory_lock_failures(&after) != SB_RESULT_OK) child_exit(8);
    if (after <= before) child_exit(9);
    static char text[16384];
    size_t needed = 0;
    if (sb_metrics_prometheus(c, text, sizeof text, &needed) != SB_RESULT_OK) child_exit(10);
    char expected[96];
    snprintf(expected, sizeof expected, "\nsealbox_memory_lock_failures_total %" PRIu64 "\n",
             after);
    if (strstr(text, expected) == NULL) child_exit(11);
    sb_client_free(c);
    child_exit(0);
  }
  int status = 0;
  CHECK(waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  if (WEXITSTATUS(status) != 0) {
    fprintf(stderr, "lock-failure child exited with %d\n", WEXITSTATUS(status));
  }
}

/* Fork after warming a client (a pre-fork server's workers): in the child the inherited
 * client and a secret read before the fork answer SB_RESULT_FORKED, never a zeroed value,
 * nothing hangs or crashes, and sb_client_reopen gives a client that reads the right value.
 * An in-memory client cannot be reopened (its values are gone). The child reports the first
 * failed step as its exit code; an alarm turns a hang into a failure. */
static void test_fork_after_warming(void) {
  char dir[] = "/tmp/sealbox-c-fork-XXXXXX";
  if (mkdtemp(dir) == NULL) {
    CHECK(0);
    return;
  }
  char vault[128], key[128];
  snprintf(vault, sizeof vault, "%s/vault", dir);
  snprintf(key, sizeof key, "%s/master.key", dir);
  CHECK(mkdir(vault, 0700) == 0);
  const char *name = "predis/prod/api/auth-token";
  const char *value = "hmac-signing-key-0123456789";

  sb_client *c = NULL;
  sb_client *m = open_memory();
  CHECK_RESULT(sb_client_open_local(vault, key, &c), SB_RESULT_OK);
  sb_secret *held = NULL;
  if (c != NULL && m != NULL) {
    CHECK_RESULT(sb_put(c, name, (const uint8_t *)value, strlen(value)), SB_RESULT_OK);
    CHECK_RESULT(sb_get(c, name, &held), SB_RESULT_OK); /* a miss: fills the cache */
    sb_secret_free(held);
    held = NULL;
    CHECK_RESULT(sb_get(c, name, &held), SB_RESULT_OK); /* a hit */
    CHECK(bytes_equal(held, value));

    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
      alarm(30);
      sb_secret *s = SENTINEL;
      if (sb_get(c, name, &s) != SB_RESULT_FORKED || s != SENTINEL) child_exit(2);
      if (sb_get_n(c, name, strlen(name), &s) != SB_RESULT_FORKED || s != SENTINEL)
        child_exit(3);
      if (strstr(last_error(), "sb_client_reopen") == NULL) child_exit(4);
      const uint8_t *data = SENTINEL;
      size_t len = 0;
      if (sb_secret_data(held, &data, &len) != SB_RESULT_FORKED || data != SENTINEL)
        child_exit(5);
      if (sb_put(c, name, (const uint8_t *)"x", 1) != SB_RESULT_FORKED) child_exit(6);
      sb_client *again = SENTINEL;
      if (sb_client_reopen(m, &again) != SB_RESULT_UNSUPPORTED || again != SENTINEL)
        child_exit(7);
      sb_client *mine = NULL;
      if (sb_client_reopen(c, &mine) != SB_RESULT_OK) child_exit(8);
      sb_client_free(c); /* the inherited one: must neither hang nor crash */
      sb_client_free(m);
      sb_secret_free(held);
      for (int i = 0; i < 2; i++) { /* a miss, then a cache hit */
        sb_secret *t = NULL;
        if (sb_get(mine, name, &t) != SB_RESULT_OK) child_exit(9);
        if (!bytes_equal(t, value)) child_exit(10);
        sb_secret_free(t);
      }
      sb_client_free(mine);
      child_exit(0);
    }
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      fprintf(stderr, "fork child: exit %d, signal %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1,
              WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    }
    /* The parent is untouched, and reopen in the parent is just another client. */
    CHECK(bytes_equal(held, value));
    sb_client *other = NULL;
    CHECK_RESULT(sb_client_reopen(c, &other), SB_RESULT_OK);
    sb_secret *o = NULL;
    CHECK_RESULT(sb_get(other, name, &o), SB_RESULT_OK);
    CHECK(bytes_equal(o, value));
    sb_secret_free(o);
    sb_client_free(other);
  }
  sb_secret_free(held);
  sb_client_free(c);
  sb_client_free(m);
  char cmd[200];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  CHECK(system(cmd) == 0);
}

/* Hardening is irreversible, so it is checked in a child process. */
static void test_harden_process(void) {
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    if (sb_harden_process() != SB_RESULT_OK) child_exit(2);
    struct rlimit core;
    if (getrlimit(RLIMIT_CORE, &core) != 0 || core.rlim_cur != 0) child_exit(3);
    if (prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0) child_exit(4);
    child_exit(0);
  }
  int status = -1;
  CHECK(waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    fprintf(stderr, "hardening child: status %d\n", status);
  }
}

/* ---- 8 threads x 10k gets on one client ---- */

enum { THREADS = 8, GETS_PER_THREAD = 10000 };

struct worker {
  const sb_client *client;
  pthread_t thread;
  int ok;
};

static void *get_loop(void *arg) {
  struct worker *w = arg;
  for (int i = 0; i < GETS_PER_THREAD; i++) {
    sb_secret *s = NULL;
    if (sb_get(w->client, "app/shared", &s) != SB_RESULT_OK) continue;
    if (bytes_equal(s, "shared-value")) w->ok++;
    sb_secret_free(s);
  }
  return NULL;
}

static void test_threads_share_one_client(void) {
  sb_client *c = open_memory();
  CHECK_RESULT(sb_put(c, "app/shared", (const uint8_t *)"shared-value", 12), SB_RESULT_OK);
  struct worker workers[THREADS];
  for (int i = 0; i < THREADS; i++) {
    workers[i].client = c;
    workers[i].ok = 0;
    CHECK(pthread_create(&workers[i].thread, NULL, get_loop, &workers[i]) == 0);
  }
  int total = 0;
  for (int i = 0; i < THREADS; i++) {
    pthread_join(workers[i].thread, NULL);
    total += workers[i].ok;
  }
  CHECK(total == THREADS * GETS_PER_THREAD);
  sb_client_free(c);
}

/* ---- the wipe is real ---- */

/*
 * Counts occurrences of a value in every readable mapping of this process, read through
 * /proc/self/mem. The value is known here only masked (XOR 0xA5), so the scanner itself holds
 * no copy, and its read buffer is an mmap region it skips and wipes after each chunk.
 */
enum { NEEDLE_LEN = 32, CHUNK = 1 << 20 };
static const uint8_t MASK = 0xA5;

static long count_in_memory(const uint8_t masked[NEEDLE_LEN], uint8_t *buf) {
  FILE *maps = fopen("/proc/self/maps", "r");
  int mem = open("/proc/self/mem", O_RDONLY);
  if (maps == NULL || mem < 0) {
    if (maps) fclose(maps);
    if (mem >= 0) close(mem);
    return -1;
  }
  long found = 0;
  char line[512];
  while (fgets(line, sizeof line, maps)) {
    uintptr_t lo, hi;
    char perms[5];
    if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR " %4s", &lo, &hi, perms) != 3) continue;
    if (perms[0] != 'r') continue;
    if (hi - lo > (1UL << 30)) continue; /* sanitizer shadow reservations, not data */
    if (lo <= (uintptr_t)buf && (uintptr_t)buf < hi) continue;
    if (strstr(line, "[vvar") || strstr(line, "[vsyscall]")) continue;
    for (uintptr_t at = lo; at < hi; at += CHUNK - NEEDLE_LEN) {
      size_t want = hi - at < CHUNK ? hi - at : CHUNK;
      ssize_t got = pread(mem, buf, want, (off_t)at);
      if (got < NEEDLE_LEN) {
        if (hi - at <= CHUNK) break;
        continue;
      }
      for (ssize_t i = 0; i + NEEDLE_LEN <= got; i++) {
        if ((uint8_t)(buf[i] ^ MASK) != masked[0]) continue;
        int match = 1;
        for (int j = 1; j < NEEDLE_LEN && match; j++) {
          match = (uint8_t)(buf[i + j] ^ MASK) == masked[j];
        }
        found += match;
      }
      explicit_bzero(buf, (size_t)got);
      if (hi - at <= CHUNK) break;
    }
  }
  fclose(maps);
  close(mem);
  return found;
}

static void test_free_wipes_the_value(void) {
  uint8_t *buf = mmap(NULL, CHUNK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(buf != MAP_FAILED);
  if (buf == MAP_FAILED) return;

  uint8_t masked[NEEDLE_LEN];
  {
    uint8_t value[NEEDLE_LEN];
    CHECK(getrandom(value, sizeof value, 0) == (ssize_t)sizeof value);
    for (int i = 0; i < NEEDLE_LEN; i++) masked[i] = value[i] ^ MASK;

    sb_client *c = open_memory();
    CHECK_RESULT(sb_put(c, "app/wiped", value, sizeof value), SB_RESULT_OK);
    explicit_bzero(value, sizeof value);

    sb_secret *s = NULL;
    CHECK_RESULT(sb_get(c, "app/wiped", &s), SB_RESULT_OK);
    /* Drop the store's own copy (the memory store keeps values in memory by design). */
    CHECK_RESULT(sb_delete(c, "app/wiped", true), SB_RESULT_OK);
    sb_client_free(c);

    /* Positive control: the live secret is found, so the scanner can see it. */
    long live = count_in_memory(masked, buf);
    CHECK(live >= 1);
    sb_secret_free(s);
  }
  long after = count_in_memory(masked, buf);
  CHECK(after == 0);
  if (after != 0) fprintf(stderr, "found %ld copies of the value after sb_secret_free\n", after);
  munmap(buf, CHUNK);
}

int main(void) {
  test_version();
  /* First, while no client has started threads that a fork could catch holding a lock. */
  test_memory_lock_failures_are_counted();
  test_round_trip();
  test_errors_never_contain_values();
  test_get_fields();
  test_error_request_id_is_the_audit_lines();
  test_list();
  test_null_for_every_pointer_parameter();
  test_invalid_utf8();
  test_secret_outlives_client();
  test_open_errors();
  test_open_local();
  test_rotation();
  test_fork_after_warming();
  test_harden_process();
  test_threads_share_one_client();
  test_free_wipes_the_value();
  test_gcp_local_server();
  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
