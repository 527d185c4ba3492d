//! `sealbox-scan`: finds hard-coded credentials in files, staged changes and git history, and knows which of
//! them are values stored in a sealbox vault.
//!
//! Rules are data ([`rules::BUILTIN_RULES`], extendable by a user's TOML file); matching is a
//! keyword prefilter (Aho-Corasick) then one `RegexSet` pass, then each candidate rule's regex.
//! The walker is ripgrep's (`ignore`). A found value is kept only in locked memory
//! ([`sealbox::Secret`]) and shown only as a masked preview ([`finding::mask`]).

pub mod baseline;
pub mod detect;
pub mod finding;
pub mod fix;
pub mod history;
pub mod hook;
pub mod rules;
pub mod sarif;
pub mod staged;
pub mod vault;
pub mod walk;

pub use finding::Finding;
pub use rules::Rules;
pub use vault::{VaultIndex, VaultMatch};
pub use walk::{ScanReport, WalkOptions, scan_paths};
