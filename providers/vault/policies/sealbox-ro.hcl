# sealbox read-only access to a KV v2 store: mount `secret`, `prefix: app`.
# Reads by stage use the custom metadata that comes with each read; list reads metadata.

path "secret/data/app/*" {
  capabilities = ["read"]
}
path "secret/metadata/app/*" {
  capabilities = ["read", "list"]
}
