// sealbox C++ wrapper: header-only, C++17, over the C ABI in sealbox.h.
//
//   sealbox::Client client = sealbox::Client::open("sealbox.yaml");
//   sealbox::Secret password = client.get("predis/prod/database/password");
//   connect(user, password.str());          // std::string_view into locked memory
//   // password's bytes are wiped when it goes out of scope
//
// Rules:
// - Every failure throws sealbox::Error, which carries the sb_result code, the message (never a
//   secret value) and the request id of the audit line that recorded the failure.
// - sealbox::Secret is move-only and owns an sb_secret; its views (str(), bytes(), and span()
//   in C++20) point into locked memory and are valid while the Secret lives. The wrapper
//   never copies a value: copying one is an explicit act of the caller.
// - sealbox::Client is move-only and thread-safe: share it by reference between threads.
//   Secrets stay valid after their Client is destroyed.
// - std::span is C++20, so this C++17 header gives bytes() as sealbox::ByteView, a small
//   read-only span-like view; built as C++20 or later, Secret::span() and
//   ByteView::as_span() also give a std::span<const std::byte>.
#ifndef SEALBOX_HPP
#define SEALBOX_HPP

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#if __cplusplus >= 202002L && __has_include(<span>)
#include <span>
#define SEALBOX_HAS_STD_SPAN 1
#endif

#include "sealbox.h"

namespace sealbox {

/// A failure reported by the C ABI: the sb_result code, the thread's last error message and
/// its request id.
class Error : public std::runtime_error {
 public:
  Error(sb_result code, const std::string& message, std::string request_id = std::string())
      : std::runtime_error(message), code_(code), request_id_(std::move(request_id)) {}

  /// The sb_result code (SB_RESULT_NOT_FOUND, ...).
  sb_result code() const noexcept { return code_; }

  /// The code's name ("SB_RESULT_NOT_FOUND").
  const char* code_name() const noexcept { return sb_result_name(code_); }

  /// The `request_id` of the audit line that recorded this failed access (when the client
  /// has an audit log), else the remote provider's request id, else empty.
  const std::string& request_id() const noexcept { return request_id_; }

 private:
  sb_result code_;
  std::string request_id_;
};

namespace detail {

inline std::string last_error_message() {
  char buf[1024];
  size_t written = 0;
  if (sb_last_error_message(buf, sizeof buf, &written) != SB_RESULT_OK) {
    return std::string();
  }
  return std::string(buf, written);
}

inline std::string last_error_request_id() {
  char buf[128];
  size_t written = 0;
  if (sb_last_error_request_id(buf, sizeof buf, &written) != SB_RESULT_OK) {
    return std::string();
  }
  return std::string(buf, written);
}

inline void check(sb_result r) {
  if (r != SB_RESULT_OK) {
    std::string message = last_error_message();
    throw Error(r, message, last_error_request_id());
  }
}

inline std::string_view view(const char* data, size_t len) noexcept {
  return len == 0 ? std::string_view() : std::string_view(data, len);
}

}  // namespace detail

/// A read-only view of bytes (C++17 stand-in for std::span<const std::byte>).
class ByteView {
 public:
  constexpr ByteView() noexcept = default;
  constexpr ByteView(const std::byte* data, size_t size) noexcept : data_(data), size_(size) {}

  constexpr const std::byte* data() const noexcept { return data_; }
  constexpr size_t size() const noexcept { return size_; }
  constexpr bool empty() const noexcept { return size_ == 0; }
  constexpr const std::byte* begin() const noexcept { return data_; }
  constexpr const std::byte* end() const noexcept { return data_ + size_; }
  constexpr const std::byte& operator[](size_t i) const noexcept { return data_[i]; }

#ifdef SEALBOX_HAS_STD_SPAN
  constexpr std::span<const std::byte> as_span() const noexcept { return {data_, size_}; }
  constexpr operator std::span<const std::byte>() const noexcept { return as_span(); }
#endif

 private:
  const std::byte* data_ = nullptr;
  size_t size_ = 0;
};

/// A secret value in locked memory, wiped when destroyed. Move-only; views are valid while
/// it lives.
class Secret {
 public:
  /// An empty Secret (holds nothing; views are empty).
  Secret() noexcept = default;

  /// Takes ownership of a secret from the C ABI.
  explicit Secret(sb_secret* raw) noexcept : raw_(raw) {}

  Secret(const Secret&) = delete;
  Secret& operator=(const Secret&) = delete;
  Secret(Secret&& other) noexcept : raw_(std::exchange(other.raw_, nullptr)) {}
  Secret& operator=(Secret&& other) noexcept {
    if (this != &other) {
      sb_secret_free(raw_);
      raw_ = std::exchange(other.raw_, nullptr);
    }
    return *this;
  }
  ~Secret() { sb_secret_free(raw_); }

  /// Whether this Secret holds a value.
  explicit operator bool() const noexcept { return raw_ != nullptr; }

  /// The value as bytes.
  ByteView bytes() const {
    if (raw_ == nullptr) return ByteView();
    const uint8_t* data = nullptr;
    size_t len = 0;
    detail::check(sb_secret_data(raw_, &data, &len));
    return ByteView(reinterpret_cast<const std::byte*>(data), len);
  }

  /// The value as text (not validated as UTF-8; not NUL-terminated).
  std::string_view str() const {
    ByteView b = bytes();
    return detail::view(reinterpret_cast<const char*>(b.data()), b.size());
  }

#ifdef SEALBOX_HAS_STD_SPAN
  /// The value as a std::span (C++20).
  std::span<const std::byte> span() const { return bytes().as_span(); }
#endif

  /// The version id the value came from.
  std::string_view version() const {
    if (raw_ == nullptr) return std::string_view();
    const char* v = nullptr;
    size_t len = 0;
    detail::check(sb_secret_version(raw_, &v, &len));
    return detail::view(v, len);
  }

  /// Wipes and releases the value now.
  void reset() noexcept {
    sb_secret_free(raw_);
    raw_ = nullptr;
  }

  /// The C handle (still owned by this Secret).
  const sb_secret* raw() const noexcept { return raw_; }

 private:
  sb_secret* raw_ = nullptr;
};

/// What describe() reports about a secret (never a value).
struct Metadata {
  /// Version ids, oldest first.
  std::vector<std::string> versions;
  /// The version staged CURRENT, empty when none.
  std::string current_version;
  /// Last write time in seconds since the Unix epoch, 0 when the store does not say.
  int64_t updated_unix_seconds = 0;
};

/// What rotation_status() reports about a secret's rotation (never a value).
struct RotationStatus {
  /// Last rotation (else last write of the current version), seconds since the Unix epoch;
  /// 0 when unknown.
  int64_t last_rotated_unix_seconds = 0;
  /// The version an unfinished rotation staged PENDING; empty when none.
  std::string pending;
  /// Failed attempts since the last finished rotation.
  uint32_t failures = 0;
  /// The step of the last failure (`set`, `test`, ...) and why; empty when none.
  std::string last_failure_step;
  std::string last_failure_reason;
};

/// A sealbox client. Move-only and thread-safe.
class Client {
 public:
  /// Opens a client from a YAML config file.
  static Client open(const std::string& config_path) {
    sb_client* raw = nullptr;
    detail::check(sb_client_open(config_path.c_str(), &raw));
    return Client(raw);
  }

  /// Opens a client over the local vault in `dir` with the master key in `key_file`.
  static Client open_local(const std::string& dir, const std::string& key_file) {
    sb_client* raw = nullptr;
    detail::check(sb_client_open_local(dir.c_str(), key_file.c_str(), &raw));
    return Client(raw);
  }

  /// Opens a client over an empty in-memory store (tests, embedding).
  static Client open_memory() {
    sb_client* raw = nullptr;
    detail::check(sb_client_open_memory(&raw));
    return Client(raw);
  }

  /// A new client made as this one was, for a process forked after this one was opened,
  /// where this one throws Error(SB_RESULT_FORKED) on every call: reads its config file (or
  /// opens its local vault and key file) again. In a pre-fork server's worker:
  /// `client = client.reopen();`. In the process that opened it, simply another client.
  Client reopen() const {
    sb_client* raw = nullptr;
    detail::check(sb_client_reopen(raw_, &raw));
    return Client(raw);
  }

  /// Takes ownership of a client from the C ABI.
  explicit Client(sb_client* raw) noexcept : raw_(raw) {}

  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;
  Client(Client&& other) noexcept : raw_(std::exchange(other.raw_, nullptr)) {}
  Client& operator=(Client&& other) noexcept {
    if (this != &other) {
      sb_client_free(raw_);
      raw_ = std::exchange(other.raw_, nullptr);
    }
    return *this;
  }
  ~Client() { sb_client_free(raw_); }

  /// The CURRENT version of `name`.
  Secret get(const char* name) const {
    sb_secret* raw = nullptr;
    detail::check(sb_get(raw_, name, &raw));
    return Secret(raw);
  }
  Secret get(const std::string& name) const { return get(name.c_str()); }
  /// The CURRENT version of `name`, given as a view (no NUL needed, no strlen paid).
  Secret get(std::string_view name) const {
    sb_secret* raw = nullptr;
    detail::check(sb_get_n(raw_, name.data(), name.size(), &raw));
    return Secret(raw);
  }

  /// Version `version` of `name`.
  Secret get_version(const std::string& name, const std::string& version) const {
    sb_secret* raw = nullptr;
    detail::check(sb_get_version(raw_, name.c_str(), version.c_str(), &raw));
    return Secret(raw);
  }

  /// The version of `name` staged `stage` ("CURRENT", "PENDING", "PREVIOUS", custom).
  Secret get_stage(const std::string& name, const std::string& stage) const {
    sb_secret* raw = nullptr;
    detail::check(sb_get_stage(raw_, name.c_str(), stage.c_str(), &raw));
    return Secret(raw);
  }

  /// One field of the JSON object stored under `name`.
  Secret get_field(const std::string& name, const std::string& field) const {
    sb_secret* raw = nullptr;
    detail::check(sb_get_field(raw_, name.c_str(), field.c_str(), &raw));
    return Secret(raw);
  }

  /// Several fields of the JSON object stored under `name`, read together (one read, one
  /// audit event), each in a Secret of its own, in the order asked:
  ///   auto db = client.get_fields("predis/prod/clickhouse", {"host", "port", "username", "password"});
  ///   connect(db[0].str(), db[1].str(), db[2].str(), db[3].str());
  /// Throws Error (SB_RESULT_NOT_FOUND naming a missing field, SB_RESULT_INVALID_INPUT for a
  /// secret that is not a JSON object, ...); nothing is returned then.
  std::vector<Secret> get_fields(const std::string& name,
                                 const std::vector<std::string>& fields) const {
    std::vector<const char*> names;
    names.reserve(fields.size());
    for (const std::string& f : fields) names.push_back(f.c_str());
    std::vector<sb_secret*> raw(fields.size(), nullptr);
    detail::check(sb_get_fields(raw_, name.c_str(), names.data(), names.size(), raw.data()));
    std::vector<Secret> out;
    out.reserve(raw.size());
    for (sb_secret* s : raw) out.emplace_back(s);  // reserved: cannot throw and leak
    return out;
  }
  std::vector<Secret> get_fields(const std::string& name,
                                 std::initializer_list<const char*> fields) const {
    std::vector<std::string> names(fields.begin(), fields.end());
    return get_fields(name, names);
  }

  /// Writes `value` as the new CURRENT version of `name` (copied into locked memory; wiping
  /// the caller's buffer stays the caller's job).
  void put(const std::string& name, ByteView value) const {
    detail::check(sb_put(raw_, name.c_str(), non_null_data(value), value.size()));
  }
  void put(const std::string& name, std::string_view value) const {
    put(name, ByteView(reinterpret_cast<const std::byte*>(value.data()), value.size()));
  }

  /// Writes `value` as a new version of `name` carrying `stage` alone: "PENDING" stores it
  /// beside the CURRENT version (a rotation's first step).
  void put_stage(const std::string& name, ByteView value, const std::string& stage) const {
    detail::check(
        sb_put_stage(raw_, name.c_str(), non_null_data(value), value.size(), stage.c_str()));
  }
  void put_stage(const std::string& name, std::string_view value,
                 const std::string& stage) const {
    put_stage(name, ByteView(reinterpret_cast<const std::byte*>(value.data()), value.size()),
              stage);
  }

  /// Refetches `name` now and replaces the cached value; throws if the store fails (the
  /// cached value is kept).
  void refresh_now(const std::string& name) const {
    detail::check(sb_refresh_now(raw_, name.c_str()));
  }

  /// Deletes `name` (soft unless `force`).
  void remove(const std::string& name, bool force = false) const {
    detail::check(sb_delete(raw_, name.c_str(), force));
  }

  /// Names under `prefix` ("" for all).
  std::vector<std::string> list(const std::string& prefix = "") const {
    sb_list_iter* it = nullptr;
    detail::check(sb_list(raw_, prefix.c_str(), &it));
    std::vector<std::string> names;
    try {
      const char* name = nullptr;
      size_t len = 0;
      sb_result r;
      while ((r = sb_list_next(it, &name, &len)) == SB_RESULT_OK) {
        names.emplace_back(name, len);
      }
      if (r != SB_RESULT_DONE) detail::check(r);
    } catch (...) {
      sb_list_free(it);
      throw;
    }
    sb_list_free(it);
    return names;
  }

  /// Metadata of `name`.
  Metadata describe(const std::string& name) const {
    sb_metadata* md = nullptr;
    detail::check(sb_describe(raw_, name.c_str(), &md));
    Metadata out;
    try {
      size_t count = 0;
      detail::check(sb_metadata_version_count(md, &count));
      for (size_t i = 0; i < count; i++) {
        const char* id = nullptr;
        size_t len = 0;
        detail::check(sb_metadata_version_at(md, i, &id, &len));
        out.versions.emplace_back(id, len);
      }
      const char* id = nullptr;
      size_t len = 0;
      if (sb_metadata_current_version(md, &id, &len) == SB_RESULT_OK) {
        out.current_version.assign(id, len);
      }
      int64_t t = 0;
      if (sb_metadata_updated(md, &t) == SB_RESULT_OK) out.updated_unix_seconds = t;
    } catch (...) {
      sb_metadata_free(md);
      throw;
    }
    sb_metadata_free(md);
    return out;
  }

  /// Rotates `name` now (create PENDING, set it on the target, test it, promote it; an
  /// interrupted rotation is resumed). With no `command`, the config's rotation schedule says
  /// how; else `command` (a program and its arguments) runs for each step with the step name
  /// appended and the new value on its standard input. Throws Error on failure (CURRENT is
  /// then unchanged).
  void rotate(const std::string& name, const std::vector<std::string>& command = {}) const {
    std::vector<const char*> argv = c_strings(command);
    detail::check(sb_rotate(raw_, name.c_str(), argv.empty() ? nullptr : argv.data(), argv.size()));
  }

  /// Undoes `name`'s last rotation, or abandons its unfinished one; the target is told
  /// through the schedule's rotator or `command`, as rotate() takes it.
  void rollback(const std::string& name, const std::vector<std::string>& command = {}) const {
    std::vector<const char*> argv = c_strings(command);
    detail::check(
        sb_rollback(raw_, name.c_str(), argv.empty() ? nullptr : argv.data(), argv.size()));
  }

  /// `name`'s rotation state.
  RotationStatus rotation_status(const std::string& name) const {
    sb_rotation_state* st = nullptr;
    detail::check(sb_rotation_status(raw_, name.c_str(), &st));
    RotationStatus out;
    try {
      int64_t t = 0;
      if (sb_rotation_state_last_rotated(st, &t) == SB_RESULT_OK) {
        out.last_rotated_unix_seconds = t;
      }
      const char* id = nullptr;
      size_t len = 0;
      if (sb_rotation_state_pending(st, &id, &len) == SB_RESULT_OK) out.pending.assign(id, len);
      detail::check(sb_rotation_state_failures(st, &out.failures));
      const char* step = nullptr;
      size_t step_len = 0;
      const char* reason = nullptr;
      size_t reason_len = 0;
      if (sb_rotation_state_last_failure(st, &step, &step_len, &reason, &reason_len) ==
          SB_RESULT_OK) {
        out.last_failure_step.assign(step, step_len);
        out.last_failure_reason.assign(reason, reason_len);
      }
    } catch (...) {
      sb_rotation_state_free(st);
      throw;
    }
    sb_rotation_state_free(st);
    return out;
  }

  /// Writes queued audit events to the sinks.
  void flush_audit() const { detail::check(sb_audit_flush(raw_)); }

  /// This client's metrics as Prometheus text, for the service's own `/metrics` endpoint.
  std::string metrics_prometheus() const {
    size_t needed = 0;
    sb_result r = sb_metrics_prometheus(raw_, nullptr, 0, &needed);
    // The text grows only by digits between the calls: retry until it fits.
    while (r == SB_RESULT_INSUFFICIENT_SIZE) {
      std::string text(needed + 64, '\0');
      r = sb_metrics_prometheus(raw_, text.data(), text.size(), &needed);
      if (r == SB_RESULT_OK) {
        text.resize(needed);
        return text;
      }
    }
    detail::check(r);
    return std::string();
  }

  /// The C handle (still owned by this Client).
  const sb_client* raw() const noexcept { return raw_; }

 private:
  /// The view's bytes for the C API, which refuses NULL data even for an empty value.
  static const uint8_t* non_null_data(ByteView value) noexcept {
    static const std::byte empty{};
    return reinterpret_cast<const uint8_t*>(value.data() != nullptr ? value.data() : &empty);
  }

  /// Pointers to each string's characters, valid while `strings` lives.
  static std::vector<const char*> c_strings(const std::vector<std::string>& strings) {
    std::vector<const char*> out;
    out.reserve(strings.size());
    for (const std::string& s : strings) out.push_back(s.c_str());
    return out;
  }

  sb_client* raw_ = nullptr;
};

/// How many times the kernel refused to lock secret memory in this process (RLIMIT_MEMLOCK
/// reached, no CAP_IPC_LOCK); above 0, some secrets may be swapped to disk. Also the
/// sealbox_memory_lock_failures_total counter of metrics_prometheus().
inline uint64_t memory_lock_failures() {
  uint64_t count = 0;
  detail::check(sb_memory_lock_failures(&count));
  return count;
}

/// Hardens the process for holding secrets (no core dumps, not dumpable); irreversible.
inline void harden_process() { detail::check(sb_harden_process()); }

/// The library version at run time ("0.1.0"); compare with SB_VERSION_MAJOR/MINOR/PATCH.
inline std::string_view version() noexcept { return sb_version(); }

}  // namespace sealbox

#endif  // SEALBOX_HPP
