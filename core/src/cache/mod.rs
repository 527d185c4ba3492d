//! cache: see ARCHITECTURE.md, section "Client, cache, audit, policy".
