//! Python binding for sealbox.
