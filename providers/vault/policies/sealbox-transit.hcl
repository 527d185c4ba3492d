# sealbox's master key on Transit: key `sealbox` on mount `transit`.
# Wrap and unwrap KEKs, read the key's versions.
path "transit/encrypt/sealbox" {
  capabilities = ["update"]
}
path "transit/decrypt/sealbox" {
  capabilities = ["update"]
}
path "transit/keys/sealbox" {
  capabilities = ["read"]
}

# Only for the operator who rotates the master key and retires old versions
# (`sealbox keys rotate`): give these to a separate, rarely used token.
# path "transit/keys/sealbox/rotate" { capabilities = ["update"] }
# path "transit/keys/sealbox/config" { capabilities = ["update"] }
