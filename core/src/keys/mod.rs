//! Key hierarchy and envelope encryption: master key ([`KeyProvider`]) -> KEK per namespace ->
//! DEK per secret -> AES-256-GCM [`Envelope`]. See ARCHITECTURE.md, section "Key hierarchy".

mod data_key;
mod envelope;
mod ids;

pub use data_key::{DataKey, KEY_LEN, MAX_USES};
pub use envelope::{Algorithm, Envelope, EnvelopeView, FORMAT_V1, MAGIC, TAG_LEN};
pub use ids::{KeyId, KeyVersion, MAX_KEY_ID_LEN};
