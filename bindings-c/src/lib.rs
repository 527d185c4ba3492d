//! C ABI for sealbox.
