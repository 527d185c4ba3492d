// predis_service (C++): the same small service as examples/c, with the RAII wrapper.
//
//   predis_service_cpp sealbox.yaml
//
// Secrets are sealbox::Secret objects: move-only, read through std::string_view views into
// locked memory, wiped when they go out of scope. Failures are sealbox::Error exceptions.
// Exit codes: 0 done, 1 failure, 77 this build of sealbox lacks a feature the config needs.
#include <cstdio>
#include <string_view>

#include "sealbox.hpp"

namespace {

// Stands in for a database driver: takes the password as a view and never keeps it.
bool database_connect(std::string_view user, std::string_view password) {
  if (password.empty()) return false;
  std::printf("database: connected as %.*s with a %zu-byte password\n",
              static_cast<int>(user.size()), user.data(), password.size());
  return true;
}

// Stands in for an HTTP client that sets "Authorization: Bearer <token>" from the view.
bool api_authenticate(std::string_view token) {
  if (token.empty()) return false;
  std::printf("api: bearer token of %zu bytes attached\n", token.size());
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  const char* config = argc > 1 ? argv[1] : "sealbox.yaml";
  try {
    sealbox::Client client = sealbox::Client::open(config);
    sealbox::Secret password = client.get("predis/prod/database/password");
    sealbox::Secret token = client.get("predis/prod/api/auth-token");
    if (!database_connect("predis", password.str()) || !api_authenticate(token.str())) {
      std::fprintf(stderr, "predis_service: connecting failed\n");
      return 1;
    }
    client.flush_audit();
    return 0;  // token, password, then client are destroyed: values wiped
  } catch (const sealbox::Error& e) {
    std::fprintf(stderr, "predis_service: %s (%s)\n", e.what(), e.code_name());
    return e.code() == SB_RESULT_UNSUPPORTED ? 77 : 1;
  }
}
