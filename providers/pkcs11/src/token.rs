//! The module, the slot and the logged-in sessions.
//!
//! A module is loaded and `C_Initialize`d once per process and path, and kept loaded: a
//! PKCS#11 library keeps its state (login, sessions) per process, so two providers on one
//! module share it, and unloading it would end the other's sessions. Another library in the
//! process may have initialised the module first (`CKR_CRYPTOKI_ALREADY_INITIALIZED`), which is
//! fine.
//!
//! Sessions: a cryptoki `Session` is `Send` but not `Sync`, so each call takes an idle session
//! from a small pool (or opens one), uses it on its thread and returns it; concurrent callers
//! use separate sessions. Login is per token and application in PKCS#11, so a session opened
//! while another is logged in is logged in too (`CKR_USER_ALREADY_LOGGED_IN` is expected). A
//! call that finds its session gone (token reconnected, HSM restarted) drops every idle session
//! and tries once more on a fresh, freshly logged-in one.
//!
//! Fork: the process that opened the token is recorded; in a forked child every call fails
//! with a clear error before touching the module, and dropping the token there leaves the
//! parent's sessions alone (they are forgotten, not closed).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use sealbox::{Error, ErrorKind, ExposeSecret, Result, SecretString};

use crate::config::TokenSelector;
use crate::error::{forked, from_cryptoki, session_lost};

/// Idle sessions kept open; more concurrent callers open more and close the surplus.
const MAX_IDLE: usize = 8;

/// One logged-in token.
pub(crate) struct Token {
    ctx: Pkcs11,
    slot: Slot,
    pin: SecretString,
    /// "token sealbox (module /usr/lib/...)", for messages.
    name: String,
    idle: Mutex<Vec<Session>>,
    pid: u32,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Modules loaded by this process, by path, with the process that initialised them.
fn modules() -> MutexGuard<'static, BTreeMap<PathBuf, (u32, Pkcs11)>> {
    static MODULES: Mutex<BTreeMap<PathBuf, (u32, Pkcs11)>> = Mutex::new(BTreeMap::new());
    // A panic while holding it cannot leave a half-inserted entry.
    MODULES.lock().unwrap_or_else(|p| p.into_inner())
}

fn load_module(path: &Path) -> Result<Pkcs11> {
    let mut loaded = modules();
    let pid = std::process::id();
    if let Some((at, ctx)) = loaded.get(path)
        && *at == pid
    {
        return Ok(ctx.clone());
    }
    let what = format!("PKCS#11 module {}", path.display());
    if !path.exists() {
        return Err(Error::config(format!(
            "{what} does not exist; install the HSM's PKCS#11 library (for SoftHSM2 the \
             Debian package softhsm2 puts it at /usr/lib/softhsm/libsofthsm2.so) or fix `module`"
        )));
    }
    // A module a forked child inherited must be initialised again in the child (PKCS#11
    // 2.40, section 6.7.7), so the entry is replaced then.
    let ctx = match loaded.get(path) {
        Some((_, ctx)) => ctx.clone(),
        None => Pkcs11::new(path).map_err(|e| from_cryptoki(&what, e))?,
    };
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(from_cryptoki(&format!("initialising {what}"), e)),
    }
    loaded.insert(path.to_path_buf(), (pid, ctx.clone()));
    Ok(ctx)
}

fn find_slot(ctx: &Pkcs11, module: &Path, selector: &TokenSelector) -> Result<Slot> {
    let what = format!("PKCS#11 module {}", module.display());
    match selector {
        TokenSelector::Label(label) => {
            let slots = ctx
                .get_slots_with_token()
                .map_err(|e| from_cryptoki(&format!("listing the slots of {what}"), e))?;
            let mut labels = Vec::new();
            for slot in slots {
                let info = ctx
                    .get_token_info(slot)
                    .map_err(|e| from_cryptoki(&format!("reading a token of {what}"), e))?;
                let found = info.label().trim_end();
                if found == label {
                    return Ok(slot);
                }
                if !found.is_empty() {
                    labels.push(format!("{found:?}"));
                }
            }
            Err(Error::not_found(format!(
                "{what} has no token labelled {label:?} (tokens: {}); check token_label, or \
                 list them with `pkcs11-tool --module {} --list-token-slots`",
                if labels.is_empty() {
                    "none".to_owned()
                } else {
                    labels.join(", ")
                },
                module.display()
            )))
        }
        TokenSelector::Slot(id) => {
            let slots = ctx
                .get_all_slots()
                .map_err(|e| from_cryptoki(&format!("listing the slots of {what}"), e))?;
            let slot = slots.into_iter().find(|s| s.id() == *id).ok_or_else(|| {
                Error::not_found(format!(
                    "{what} has no slot {id:#x}; check slot, or list them with `pkcs11-tool \
                     --module {} --list-slots`",
                    module.display()
                ))
            })?;
            let info = ctx
                .get_slot_info(slot)
                .map_err(|e| from_cryptoki(&format!("reading slot {id:#x} of {what}"), e))?;
            if !info.token_present() {
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    format!("slot {id:#x} of {what} has no token in it"),
                ));
            }
            Ok(slot)
        }
    }
}

impl Token {
    /// Loads the module, finds the token and logs in once, so a wrong PIN or a missing token
    /// fails here rather than at the first wrap.
    pub(crate) fn open(
        module: &Path,
        selector: &TokenSelector,
        pin: SecretString,
    ) -> Result<Token> {
        let ctx = load_module(module)?;
        let slot = find_slot(&ctx, module, selector)?;
        let name = match selector {
            TokenSelector::Label(l) => format!("token {l:?} (module {})", module.display()),
            TokenSelector::Slot(s) => format!("token in slot {s:#x} (module {})", module.display()),
        };
        let token = Token {
            ctx,
            slot,
            pin,
            name,
            idle: Mutex::new(Vec::new()),
            pid: std::process::id(),
        };
        let first = token.login()?;
        token.put_back(first);
        Ok(token)
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Fails in a forked child.
    pub(crate) fn check_process(&self, label: &str) -> Result<()> {
        if std::process::id() != self.pid {
            return Err(forked(label));
        }
        Ok(())
    }

    fn idle(&self) -> MutexGuard<'_, Vec<Session>> {
        // Sessions are pushed and popped whole; a poisoned pool is still a pool.
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn put_back(&self, session: Session) {
        let mut idle = self.idle();
        if idle.len() < MAX_IDLE {
            idle.push(session);
        }
    }

    /// A new read-write session, logged in as the user.
    fn login(&self) -> Result<Session> {
        let session = self
            .ctx
            .open_rw_session(self.slot)
            .map_err(|e| from_cryptoki(&format!("opening a session on {}", self.name), e))?;
        // cryptoki takes the PIN as its own zeroize-on-drop string; this copy lives for the
        // call only.
        let pin = AuthPin::from(self.pin.expose_secret().to_owned());
        match session.login(UserType::User, Some(&pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
            Err(e) => Err(from_cryptoki(&format!("logging in to {}", self.name), e)),
        }
    }

    /// Runs `f` on a logged-in session. `what` describes the call for error messages.
    pub(crate) fn with_session<T>(
        &self,
        label: &str,
        what: &str,
        f: impl Fn(&Session) -> cryptoki::error::Result<T>,
    ) -> Result<T> {
        self.check_process(label)?;
        for retry in [false, true] {
            let pooled = self.idle().pop();
            let session = match pooled {
                Some(s) => s,
                None => self.login()?,
            };
            match f(&session) {
                Ok(v) => {
                    self.put_back(session);
                    return Ok(v);
                }
                Err(e) if session_lost(&e) => {
                    // The others went with it; the next attempt opens and logs in afresh.
                    drop(session);
                    self.idle().clear();
                    if retry {
                        return Err(from_cryptoki(&format!("{what} on {}", self.name), e));
                    }
                }
                Err(e) => {
                    self.put_back(session);
                    return Err(from_cryptoki(&format!("{what} on {}", self.name), e));
                }
            }
        }
        Err(Error::internal("PKCS#11 session retry loop ended"))
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        if std::process::id() != self.pid {
            // Closing would end the parent's sessions on a module that keeps them per
            // connection; the child's copies are forgotten instead.
            let sessions = std::mem::take(&mut *self.idle());
            std::mem::forget(sessions);
        }
    }
}
