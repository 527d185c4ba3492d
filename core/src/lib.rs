//! # sealbox
//!
//! Embeddable secrets management. Every secret lives in a [`Secret`] (locked memory, excluded
//! from core dumps, wiped on drop, never printed, compared in constant time); everything sealbox
//! stores is encrypted under a key hierarchy (master key -> KEK per namespace -> DEK per secret,
//! AES-256-GCM envelopes); one [`store::SecretStore`] trait covers the integrated local vault and
//! every cloud store; the [`Sealbox`] client adds caching, audit, policy and monitoring.
//!
//! Design: `ARCHITECTURE.md` in the project's shared folder. Start with [`Sealbox`] or, for a
//! single store, [`store::local::LocalVault`].
#![warn(missing_docs)]

pub mod audit;
mod bytes;
pub mod cache;
pub mod client;
mod clock;
pub mod config;
pub mod error;
pub mod keys;
pub mod memory;
pub mod monitor;
pub mod policy;
mod principal;
pub mod process;
pub mod rotation;
pub mod secret;
pub mod store;

pub use client::{BlockingSealbox, Principal, Sealbox, SealboxBuilder, SecretHandle};
pub use error::{Error, ErrorKind, Result};
pub use memory::{MemoryPolicy, harden_process};
pub use secrecy::ExposeSecret;
pub use secret::{Secret, SecretString};
