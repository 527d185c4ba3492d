//! Key hierarchy and envelope encryption: master key (`KeyProvider`) -> KEK per namespace ->
//! DEK per secret -> AES-256-GCM envelope. See ARCHITECTURE.md, section "Key hierarchy".
