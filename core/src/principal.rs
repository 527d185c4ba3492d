//! [`Principal`]: who is calling, as the policy checks it and the audit log and monitor record
//! it. Below every layer that names a caller, so none of them imports the client for it.

use std::sync::Arc;

/// Who is calling: the identity the policy checks and the audit log records.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Principal(Arc<str>);

impl Principal {
    /// A principal by name (`"svc:predis-cache"`, `"user:alice"`).
    pub fn new(name: impl AsRef<str>) -> Principal {
        Principal(Arc::from(name.as_ref()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Where the name lives: equal for clones of one principal, and never shared by two live
    /// principals (the audit queue names a thread's principal once, then by this).
    pub(crate) fn addr(&self) -> usize {
        Arc::as_ptr(&self.0).cast::<u8>() as usize
    }
}

impl Default for Principal {
    /// The OS user running the process (`"user:<name>"`), or `"anonymous"`.
    fn default() -> Principal {
        match std::env::var("USER") {
            Ok(u) if !u.is_empty() => Principal::new(format!("user:{u}")),
            _ => Principal::new("anonymous"),
        }
    }
}
