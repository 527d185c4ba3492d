// The C++ wrapper: RAII, move-only secrets, views without copies, exceptions with codes.
// Compiled as C++17 and as C++20 (where Secret::span() exists) by scripts/test-c.sh.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "sealbox.hpp"

namespace {

static_assert(!std::is_copy_constructible_v<sealbox::Secret>, "Secret is move-only");
static_assert(!std::is_copy_assignable_v<sealbox::Secret>, "Secret is move-only");
static_assert(std::is_nothrow_move_constructible_v<sealbox::Secret>, "Secret moves");
static_assert(!std::is_copy_constructible_v<sealbox::Client>, "Client is move-only");
static_assert(std::is_nothrow_move_constructible_v<sealbox::Client>, "Client moves");

TEST(Version, RuntimeMatchesHeader) {
  std::string expected = std::to_string(SB_VERSION_MAJOR) + "." +
                         std::to_string(SB_VERSION_MINOR) + "." +
                         std::to_string(SB_VERSION_PATCH);
  EXPECT_EQ(sealbox::version(), expected);
}

TEST(Client, StagedPutLeavesCurrentAndRefreshNowAnswers) {
  auto client = sealbox::Client::open_memory();
  client.put("app/rotating", std::string_view("old"));
  client.put_stage("app/rotating", std::string_view("new"), "PENDING");
  EXPECT_EQ(client.get("app/rotating").str(), "old");
  EXPECT_EQ(client.get_stage("app/rotating", "PENDING").str(), "new");
  client.refresh_now("app/rotating");
  EXPECT_EQ(client.get("app/rotating").str(), "old");
  EXPECT_THROW(client.put_stage("app/rotating", std::string_view("x"), "no spaces!"),
               sealbox::Error);
  EXPECT_THROW(client.refresh_now("app/never-written"), sealbox::Error);
}

TEST(Client, RotateRollbackAndRotationStatus) {
  auto client = sealbox::Client::open_memory();
  client.put("predis/prod/api/key", std::string_view("first-key"));
  const std::string first = client.describe("predis/prod/api/key").current_version;
  client.rotate("predis/prod/api/key");
  EXPECT_NE(client.get("predis/prod/api/key").str(), "first-key");
  sealbox::RotationStatus status = client.rotation_status("predis/prod/api/key");
  EXPECT_GT(status.last_rotated_unix_seconds, 1700000000);
  EXPECT_TRUE(status.pending.empty());
  EXPECT_EQ(status.failures, 0u);

  // A command that refuses its set step: an Error with the code, CURRENT unchanged.
  const std::string rotated = client.describe("predis/prod/api/key").current_version;
  try {
    client.rotate("predis/prod/api/key", {"/bin/sh", "-c", "cat >/dev/null; exit 4", "sh"});
    FAIL() << "expected sealbox::Error";
  } catch (const sealbox::Error& e) {
    EXPECT_EQ(e.code(), SB_RESULT_UNAVAILABLE);
    EXPECT_NE(std::string(e.what()).find("set"), std::string::npos);
  }
  EXPECT_EQ(client.describe("predis/prod/api/key").current_version, rotated);
  status = client.rotation_status("predis/prod/api/key");
  EXPECT_EQ(status.failures, 1u);
  EXPECT_EQ(status.last_failure_step, "set");
  EXPECT_FALSE(status.pending.empty());

  // Abandon it, then undo the finished rotation: the first value is back.
  client.rollback("predis/prod/api/key", {"/bin/sh", "-c", "cat >/dev/null", "sh"});
  EXPECT_TRUE(client.rotation_status("predis/prod/api/key").pending.empty());
  client.rollback("predis/prod/api/key");
  EXPECT_EQ(client.describe("predis/prod/api/key").current_version, first);
  EXPECT_EQ(client.get("predis/prod/api/key").str(), "first-key");
}

TEST(Client, PutGetRoundTripWithVersions) {
  auto client = sealbox::Client::open_memory();
  client.put("predis/prod/database/password", std::string_view("v1"));
  client.put("predis/prod/database/password", std::string_view("v2"));

  sealbox::Secret s = client.get("predis/prod/database/password");
  EXPECT_EQ(s.str(), "v2");
  EXPECT_FALSE(s.version().empty());
  EXPECT_EQ(client.get_stage("predis/prod/database/password", "PREVIOUS").str(), "v1");
  // A string_view name goes through sb_get_n: only the view's bytes count.
  std::string_view padded("predis/prod/database/password#tail");
  EXPECT_EQ(client.get(padded.substr(0, padded.find('#'))).str(), "v2");

  sealbox::Metadata md = client.describe("predis/prod/database/password");
  ASSERT_EQ(md.versions.size(), 2u);
  EXPECT_EQ(md.current_version, s.version());
  EXPECT_EQ(client.get_version("predis/prod/database/password", md.versions[0]).str(), "v1");
  EXPECT_GT(md.updated_unix_seconds, 1600000000);
}

TEST(Secret, ViewsPointIntoTheSecretWithoutCopies) {
  auto client = sealbox::Client::open_memory();
  const std::byte raw[] = {std::byte{0}, std::byte{0xff}, std::byte{7}};
  client.put("app/binary", sealbox::ByteView(raw, sizeof raw));
  sealbox::Secret s = client.get("app/binary");
  sealbox::ByteView b = s.bytes();
  ASSERT_EQ(b.size(), 3u);
  EXPECT_EQ(b[1], std::byte{0xff});
  // str() and bytes() are the same memory: no copy was made.
  EXPECT_EQ(static_cast<const void*>(s.str().data()), static_cast<const void*>(b.data()));
#ifdef SEALBOX_HAS_STD_SPAN
  std::span<const std::byte> sp = s.span();
  EXPECT_EQ(sp.data(), b.data());
  EXPECT_EQ(sp.size(), 3u);
#endif
}

TEST(Secret, MovesTransferOwnership) {
  auto client = sealbox::Client::open_memory();
  client.put("app/k", std::string_view("value"));
  sealbox::Secret a = client.get("app/k");
  const char* where = a.str().data();
  sealbox::Secret b = std::move(a);
  EXPECT_FALSE(a);  // NOLINT(bugprone-use-after-move): the moved-from state is specified
  EXPECT_TRUE(a.str().empty());
  ASSERT_TRUE(b);
  EXPECT_EQ(b.str().data(), where);
  sealbox::Secret c;
  c = std::move(b);
  EXPECT_EQ(c.str(), "value");
  c.reset();
  EXPECT_FALSE(c);
}

TEST(Secret, OutlivesItsClient) {
  sealbox::Secret s;
  {
    auto client = sealbox::Client::open_memory();
    client.put("app/outlives", std::string_view("still-here"));
    s = client.get("app/outlives");
  }
  EXPECT_EQ(s.str(), "still-here");
}

TEST(Error, CarriesTheCodeAndAMessageWithoutValues) {
  auto client = sealbox::Client::open_memory();
  client.put("predis/prod/database", std::string_view("{\"password\":\"hunter2\"}"));
  try {
    client.get("predis/prod/missing");
    FAIL() << "expected sealbox::Error";
  } catch (const sealbox::Error& e) {
    EXPECT_EQ(e.code(), SB_RESULT_NOT_FOUND);
    EXPECT_STREQ(e.code_name(), "SB_RESULT_NOT_FOUND");
    EXPECT_NE(std::string(e.what()).find("predis/prod/missing"), std::string::npos);
  }
  EXPECT_EQ(client.get_field("predis/prod/database", "password").str(), "hunter2");
  try {
    client.get_field("predis/prod/database", "nope");
    FAIL() << "expected sealbox::Error";
  } catch (const sealbox::Error& e) {
    EXPECT_EQ(std::string(e.what()).find("hunter2"), std::string::npos);
  }
  try {
    const char bad[] = {'a', '/', static_cast<char>(0xff), 0};
    client.get(bad);
    FAIL() << "expected sealbox::Error";
  } catch (const sealbox::Error& e) {
    EXPECT_EQ(e.code(), SB_RESULT_INVALID_UTF8);
  }
  EXPECT_THROW(sealbox::Client::open("/nonexistent/sealbox.yaml"), sealbox::Error);
}

TEST(Client, GetFieldsReturnsOneSecretPerFieldInOrder) {
  auto client = sealbox::Client::open_memory();
  client.put("predis/prod/clickhouse",
             std::string_view("{\"host\":\"ch.internal\",\"port\":9440,"
                              "\"username\":\"predis\",\"password\":\"pw-not-in-errors\"}"));
  std::vector<sealbox::Secret> db =
      client.get_fields("predis/prod/clickhouse", {"host", "port", "username", "password"});
  ASSERT_EQ(db.size(), 4u);
  EXPECT_EQ(db[0].str(), "ch.internal");
  EXPECT_EQ(db[1].str(), "9440");
  EXPECT_EQ(db[2].str(), "predis");
  EXPECT_EQ(db[3].str(), "pw-not-in-errors");
  EXPECT_EQ(db[0].version(), db[3].version());
  std::vector<std::string> names{"password"};
  EXPECT_EQ(client.get_fields("predis/prod/clickhouse", names)[0].str(), "pw-not-in-errors");
  try {
    client.get_fields("predis/prod/clickhouse", {"host", "database"});
    FAIL() << "expected sealbox::Error";
  } catch (const sealbox::Error& e) {
    EXPECT_EQ(e.code(), SB_RESULT_NOT_FOUND);
    EXPECT_NE(std::string(e.what()).find("`database`"), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find("not-in-errors"), std::string::npos);
    EXPECT_EQ(std::string(e.what()).find("ch.internal"), std::string::npos);
  }
  client.put("predis/prod/plain", std::string_view("plain-not-in-errors"));
  try {
    client.get_fields("predis/prod/plain", {"password"});
    FAIL() << "expected sealbox::Error";
  } catch (const sealbox::Error& e) {
    EXPECT_EQ(e.code(), SB_RESULT_INVALID_INPUT);
    EXPECT_EQ(std::string(e.what()).find("not-in-errors"), std::string::npos);
  }
}

TEST(Error, CarriesTheRequestIdOfItsAuditLine) {
  char dir[] = "/tmp/sealbox-cpp-audit-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  std::string config = std::string(dir) + "/sealbox.yaml";
  std::ofstream(config) << "secrets: {provider: memory}\n"
                           "principal: svc:predis-cache\n"
                           "audit: {path: ./audit.jsonl, mode: strict}\n"
                           "policy:\n"
                           "  rules:\n"
                           "    - {principals: [\"svc:*\"], allow: [read], secrets: [\"predis/prod/*\"]}\n";
  std::string denied_id, missing_id;
  {
    auto client = sealbox::Client::open(config);
    try {
      client.get("predis/staging/token");
      FAIL() << "expected sealbox::Error";
    } catch (const sealbox::Error& e) {
      EXPECT_EQ(e.code(), SB_RESULT_ACCESS_DENIED);
      denied_id = e.request_id();
    }
    try {
      client.get("predis/prod/missing");
      FAIL() << "expected sealbox::Error";
    } catch (const sealbox::Error& e) {
      EXPECT_EQ(e.code(), SB_RESULT_NOT_FOUND);
      missing_id = e.request_id();
    }
    client.flush_audit();
  }
  ASSERT_FALSE(denied_id.empty());
  ASSERT_FALSE(missing_id.empty());
  std::ifstream log(std::string(dir) + "/audit.jsonl");
  std::string line, denied_line, missing_line;
  while (std::getline(log, line)) {
    if (line.find("\"request_id\":\"" + denied_id + "\"") != std::string::npos) denied_line = line;
    if (line.find("\"request_id\":\"" + missing_id + "\"") != std::string::npos) missing_line = line;
  }
  EXPECT_NE(denied_line.find("\"event\":\"access.denied\""), std::string::npos) << denied_line;
  EXPECT_NE(missing_line.find("\"reason\":\"not_found\""), std::string::npos) << missing_line;
  EXPECT_EQ(std::system(("rm -rf '" + std::string(dir) + "'").c_str()), 0);
}

TEST(Client, ListsAndDeletes) {
  auto client = sealbox::Client::open_memory();
  client.put("predis/prod/api/auth-token", std::string_view("t"));
  client.put("predis/prod/database/password", std::string_view("p"));
  client.put("other/x", std::string_view("x"));
  std::vector<std::string> names = client.list("predis/");
  std::sort(names.begin(), names.end());
  ASSERT_EQ(names.size(), 2u);
  EXPECT_EQ(names[0], "predis/prod/api/auth-token");
  client.remove("other/x", true);
  EXPECT_EQ(client.list("other/").size(), 0u);
  client.flush_audit();
  std::string metrics = client.metrics_prometheus();
  // Three puts and a delete.
  EXPECT_NE(metrics.find("sealbox_writes_total 4\n"), std::string::npos) << metrics;
  EXPECT_EQ(metrics.find("predis"), std::string::npos);
  EXPECT_EQ(metrics.size(), std::strlen(metrics.c_str()));
  // Process-wide lock failures are one of the counters (0 here: the tests may lock).
  EXPECT_NE(metrics.find("\nsealbox_memory_lock_failures_total " +
                         std::to_string(sealbox::memory_lock_failures()) + "\n"),
            std::string::npos)
      << metrics;
}

TEST(Client, SharedBetweenThreads) {
  auto client = sealbox::Client::open_memory();
  client.put("app/shared", std::string_view("shared-value"));
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; t++) {
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; i++) {
        if (client.get("app/shared").str() == "shared-value") ok++;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 8000);
}

// A forked worker's client: the inherited one throws SB_RESULT_FORKED, reopen() gives one
// that reads the vault; in the parent, reopen() is simply another client. The child reports
// the first failed step as its exit code and ends by exec'ing a shell (under valgrind its own
// exit would leak-check the parent's heap).
TEST(Client, ReopenGivesAForkedChildAClientOfItsOwn) {
  char dir[] = "/tmp/sealbox-cpp-fork-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string vault = std::string(dir) + "/vault";
  ASSERT_EQ(mkdir(vault.c_str(), 0700), 0);
  auto client = sealbox::Client::open_local(vault, std::string(dir) + "/master.key");
  client.put("predis/prod/api/auth-token", std::string_view("token-value"));
  EXPECT_EQ(client.get("predis/prod/api/auth-token").str(), "token-value");

  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    alarm(30);
    int code = 0;
    try {
      client.get("predis/prod/api/auth-token");
      code = 2;
    } catch (const sealbox::Error& e) {
      if (e.code() != SB_RESULT_FORKED) code = 3;
    }
    if (code == 0) {
      try {
        auto mine = client.reopen();
        if (mine.get("predis/prod/api/auth-token").str() != "token-value") code = 4;
      } catch (const sealbox::Error&) {
        code = 5;
      }
    }
    const std::string exit_cmd = "exit " + std::to_string(code);
    execl("/bin/sh", "sh", "-c", exit_cmd.c_str(), static_cast<char*>(nullptr));
    _exit(code);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "the child died, wait status " << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);

  auto other = client.reopen();
  EXPECT_EQ(other.get("predis/prod/api/auth-token").str(), "token-value");
  auto memory = sealbox::Client::open_memory();
  try {
    memory.reopen();
    FAIL() << "expected sealbox::Error";
  } catch (const sealbox::Error& e) {
    EXPECT_EQ(e.code(), SB_RESULT_UNSUPPORTED);
  }
  EXPECT_EQ(std::system((std::string("rm -rf '") + dir + "'").c_str()), 0);
}

}  // namespace
