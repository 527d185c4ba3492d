# sealbox read-write (and rotation) access to a KV v2 store: mount `secret`, `prefix: app`.
# Replace `secret` with the mount and `app` with the prefix. Used as is by tests/auth.rs.

# Values: read any version, write new versions (create and update: every write is a new
# version, checked with cas).
path "secret/data/app/*" {
  capabilities = ["create", "read", "update"]
}

# Metadata: stages, tags and description (custom metadata), list, force delete.
path "secret/metadata/app/*" {
  capabilities = ["create", "read", "update", "list", "delete"]
}

# Soft delete and restore.
path "secret/delete/app/*" {
  capabilities = ["update"]
}
path "secret/undelete/app/*" {
  capabilities = ["update"]
}

# The per-secret write leases (see the README: they hold no value).
path "secret/data/.sealbox-locks/app/*" {
  capabilities = ["create", "read", "update"]
}
path "secret/metadata/.sealbox-locks/app/*" {
  capabilities = ["create", "read", "update", "delete"]
}
