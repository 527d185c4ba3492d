//! The `Sealbox` client: policy, cache, routing, audit and monitoring in front of the stores.
//!
//! ```text
//! get(name) ─> cache index hit? ──yes──> policy ─> audit enqueue ─> handle   (no runtime, no lock)
//!                  │ no
//!                  └─> router ─> policy ─> single-flight store call ─> cache ─> audit ─> handle
//! ```
//!
//! A [`Sealbox`] is cheap to clone and to share across threads; [`Sealbox::as_principal`] gives
//! the same client under another identity for per-request principals. [`BlockingSealbox`] is the
//! synchronous facade the bindings use; its cache hits do not touch the runtime either.

mod from_config;
mod reopen;
mod router;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use futures::future::Either;

pub use crate::cache::handle::{RawSecretHandle, SecretHandle};
pub(crate) use crate::cache::{HandleInner, VersionMeta};
pub use crate::principal::Principal;
pub(crate) use reopen::Recipe;
use router::Route;
pub use router::Router;

use crate::audit::{Action, AuditEvent, AuditLog, AuditLogBuilder, CacheOutcome, Resource};
use crate::cache::{CacheAnswer, CacheConfig, Expired, Probe, SecretCache};
use crate::error::{Error, ErrorKind, Result};
use crate::monitor::metrics::{ClientMetrics, MetricsSnapshot};
use crate::monitor::{Alert, AlertHook, Monitor, MonitorConfig};
use crate::policy::{Capability, Location, Policy};
use crate::process::ProcessBound;
use crate::secret::{Secret, SecretString};
use crate::store::{
    DeleteOptions, Erasure, ListEntry, ListOptions, PutOptions, SecretMetadata, SecretName,
    SecretStore, Stage, VersionId, VersionInfo, VersionSelector,
};

struct Inner {
    router: Router,
    cache: Option<SecretCache>,
    audit: Option<AuditLog>,
    policy: ArcSwap<Policy>,
    /// Whether `policy` has rules: the hit path reads this instead of loading the policy.
    policy_enforcing: std::sync::atomic::AtomicBool,
    metrics: Arc<ClientMetrics>,
    /// How to make this client again in a forked child ([`Sealbox::reopen`]).
    recipe: Recipe,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealbox")
            .field("router", &self.router)
            .field("cache", &self.cache)
            .field("audit", &self.audit)
            .field("policy_rules", &self.policy.load().is_enforcing())
            .finish()
    }
}

/// What a `get` that the cache could not answer still has to do.
enum Missed<'c> {
    /// Refresh the entry `cache` holds for the reference.
    Expired(&'c SecretCache, Expired),
    /// Route the reference (a first read, or a client without a cache).
    Absent,
}

/// The client. Cheap to clone (`Arc` inside) and safe to share across threads.
///
/// # Fork
///
/// A client belongs to the process that opened it. A process forked from it (a pre-fork
/// server's workers, Python `multiprocessing`, Celery prefork) inherits a copy whose cached
/// secrets and keys are wiped (`MADV_WIPEONFORK`: a child never inherits secrets) and whose
/// audit and cache threads do not exist: there every call answers [`ErrorKind::Forked`],
/// never a zeroed value, and dropping the copy leaves the parent's threads and connections
/// alone. Open clients after the fork, or call [`Sealbox::reopen`] in the child.
#[derive(Clone, Debug)]
pub struct Sealbox {
    inner: Arc<ProcessBound<Inner>>,
    principal: Principal,
    source: Option<Arc<str>>,
}

// Bindings share one client between threads; keep the compiler checking it.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Sealbox>();
    assert_send_sync::<BlockingSealbox>();
};

/// Builds a [`Sealbox`].
pub struct SealboxBuilder {
    stores: Vec<(String, Arc<dyn SecretStore>)>,
    routes: Vec<(String, String)>,
    default_store: Option<String>,
    principal: Option<Principal>,
    cache: Option<CacheConfig>,
    audit: Option<AuditLogBuilder>,
    policy: Policy,
    monitor: Option<MonitorConfig>,
    hooks: Vec<AlertHook>,
    /// How the client is to be made again, when not from these settings (a config).
    recipe: Option<Recipe>,
}

impl Default for SealboxBuilder {
    fn default() -> Self {
        SealboxBuilder {
            stores: Vec::new(),
            routes: Vec::new(),
            default_store: None,
            principal: None,
            cache: Some(CacheConfig::default()),
            audit: None,
            policy: Policy::default(),
            monitor: None,
            hooks: Vec::new(),
            recipe: None,
        }
    }
}

impl std::fmt::Debug for SealboxBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealboxBuilder")
            .field(
                "stores",
                &self.stores.iter().map(|(id, _)| id).collect::<Vec<_>>(),
            )
            .field("routes", &self.routes)
            .field("default_store", &self.default_store)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl SealboxBuilder {
    /// The default store (id `"default"`): names route here unless a route says otherwise.
    pub fn store(self, store: Arc<dyn SecretStore>) -> Self {
        self.named_store("default", store).default_store("default")
    }

    /// A store under an id, for routes and `sb://ID/...` references.
    pub fn named_store(mut self, id: impl Into<String>, store: Arc<dyn SecretStore>) -> Self {
        let id = id.into();
        self.stores.retain(|(s, _)| *s != id);
        self.stores.push((id, store));
        self
    }

    /// Routes names under `prefix` (on `/` boundaries) to store `store_id`.
    pub fn route(mut self, prefix: impl Into<String>, store_id: impl Into<String>) -> Self {
        self.routes.push((prefix.into(), store_id.into()));
        self
    }

    /// Which store gets names no route covers (default: the first store added).
    pub fn default_store(mut self, store_id: impl Into<String>) -> Self {
        self.default_store = Some(store_id.into());
        self
    }

    /// The principal for calls that do not name one.
    pub fn principal(mut self, principal: Principal) -> Self {
        self.principal = Some(principal);
        self
    }

    /// Cache settings (the cache is on by default with [`CacheConfig::default`]).
    pub fn cache(mut self, config: CacheConfig) -> Self {
        self.cache = config.enabled.then_some(config);
        self
    }

    /// Turns the cache off.
    pub fn no_cache(mut self) -> Self {
        self.cache = None;
        self
    }

    /// Audits every access through this log.
    pub fn audit(mut self, audit: AuditLogBuilder) -> Self {
        self.audit = Some(audit);
        self
    }

    /// The access policy (default: no rules, everything allowed).
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Turns on the detectors.
    pub fn monitor(mut self, config: MonitorConfig) -> Self {
        self.monitor = Some(config);
        self
    }

    /// Calls `hook` for every alert (turns the monitor on with defaults if needed).
    pub fn alert_hook(mut self, hook: impl Fn(&Alert) + Send + Sync + 'static) -> Self {
        self.hooks.push(Arc::new(hook));
        self
    }

    /// Makes the client [`Sealbox::reopen`] builds again from `recipe` rather than from
    /// this builder's settings.
    pub(crate) fn reopen_from(mut self, recipe: Recipe) -> Self {
        self.recipe = Some(recipe);
        self
    }

    /// Builds the client (starts the audit writer thread when auditing or monitoring).
    pub fn build(mut self) -> Result<Sealbox> {
        let recipe = match self.recipe.take() {
            Some(r) => r,
            None => Recipe::Builder(Box::new(reopen::BuilderRecipe {
                stores: self.stores.clone(),
                routes: self.routes.clone(),
                default_store: self.default_store.clone(),
                cache: self.cache.clone(),
                audit: self.audit.as_ref().map(AuditLogBuilder::replica),
                monitor: self.monitor.clone(),
                hooks: self.hooks.clone(),
            })),
        };
        let default = match (&self.default_store, self.stores.first()) {
            (Some(d), _) => d.clone(),
            (None, Some((id, _))) => id.clone(),
            (None, None) => return Err(Error::config("a Sealbox needs at least one store")),
        };
        let router = Router::new(self.stores, self.routes, &default)?;
        // Calibrate the latency clock now rather than on the first store call.
        crate::monitor::metrics::latency_clock();
        let metrics = Arc::new(ClientMetrics::default());
        let monitor = match (self.monitor, self.hooks.is_empty()) {
            (Some(config), _) => Some(Monitor::new(config, self.hooks, metrics.clone())?),
            (None, false) => Some(Monitor::new(
                MonitorConfig::default(),
                self.hooks,
                metrics.clone(),
            )?),
            (None, true) => None,
        };
        let audit = match (self.audit, monitor) {
            (Some(b), Some(m)) => Some(b.observer(Box::new(m)).build()?),
            (Some(b), None) => Some(b.build()?),
            (None, Some(m)) => Some(AuditLog::builder().observer(Box::new(m)).build()?),
            (None, None) => None,
        };
        let cache = self
            .cache
            .map(|c| SecretCache::new(c, metrics.clone()))
            .transpose()?;
        Ok(Sealbox {
            inner: Arc::new(ProcessBound::new(Inner {
                router,
                cache,
                audit,
                policy_enforcing: std::sync::atomic::AtomicBool::new(self.policy.is_enforcing()),
                policy: ArcSwap::from_pointee(self.policy),
                metrics,
                recipe,
            })),
            principal: self.principal.unwrap_or_default(),
            source: None,
        })
    }
}

impl Sealbox {
    /// Starts a builder.
    pub fn builder() -> SealboxBuilder {
        SealboxBuilder::default()
    }

    /// Loads a YAML config file and builds the client it describes, with the providers of the
    /// global registry ([`crate::config::ProviderRegistry::global`]).
    pub async fn from_config(path: impl AsRef<Path>) -> Result<Sealbox> {
        let registry = crate::config::ProviderRegistry::global_snapshot();
        Sealbox::from_config_with(path, &registry).await
    }

    /// Like [`Sealbox::from_config`] with an explicit provider registry.
    pub async fn from_config_with(
        path: impl AsRef<Path>,
        registry: &crate::config::ProviderRegistry,
    ) -> Result<Sealbox> {
        let path = path.as_ref();
        let recipe = Recipe::ConfigFile {
            // Absolute, so a worker that changes directory after the fork still finds it.
            path: std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()),
            registry: registry.clone(),
        };
        crate::config::Config::from_path(path)?
            .build_with_recipe(registry, recipe)
            .await
    }

    /// A new client made as this one was, for a process forked after this one was opened
    /// (where this one answers [`ErrorKind::Forked`]); in the process that opened it, simply
    /// another client. It acts as the same principal with the same source and the access
    /// policy now in force.
    ///
    /// - A client from a config file ([`Sealbox::from_config`]) reads the file again; one
    ///   from a [`Config`](crate::config::Config) builds it again.
    /// - A builder-built client asks each store to [`SecretStore::reopen`] itself: the local
    ///   vault opens its file again with its master key read again (a key file, or a key
    ///   variable; a passphrase key cannot be and refuses), the file and env stores are made
    ///   again; the cache, routes, monitor and an audit log of files are made again from the
    ///   builder's settings. What cannot be made again (a memory store, whose values are gone;
    ///   a store or audit sink handed over in code) fails with [`ErrorKind::Unsupported`]
    ///   naming it: build the client again in the child then.
    ///
    /// ```no_run
    /// # async fn worker(inherited: sealbox::Sealbox) -> sealbox::Result<()> {
    /// // In a forked worker, before its first read: the inherited client answers `Forked`.
    /// let client = inherited.reopen().await?;
    /// drop(inherited); // safe in the child: its threads and connections are left alone
    /// let token = client.get("predis/prod/api/auth-token").await?;
    /// # Ok(()) }
    /// ```
    pub async fn reopen(&self) -> Result<Sealbox> {
        let policy = self.inner.policy.load_full();
        let fresh = self.inner.recipe.make().await?;
        fresh.inner.policy.store(policy.clone());
        fresh
            .inner
            .policy_enforcing
            .store(policy.is_enforcing(), std::sync::atomic::Ordering::Relaxed);
        Ok(Sealbox {
            inner: fresh.inner,
            principal: self.principal.clone(),
            source: self.source.clone(),
        })
    }

    /// `Forked` in a process forked after this client was opened. One relaxed load: this is
    /// on the cache-hit path.
    #[inline]
    fn alive(&self) -> Result<()> {
        self.inner.stamp().check("client")
    }

    /// The same client acting as another principal (for per-request identities).
    pub fn as_principal(&self, principal: Principal) -> Sealbox {
        Sealbox {
            inner: self.inner.clone(),
            principal,
            source: self.source.clone(),
        }
    }

    /// The same client recording `source` (a client IP) as the source of its accesses.
    pub fn with_source(&self, source: impl AsRef<str>) -> Sealbox {
        Sealbox {
            inner: self.inner.clone(),
            principal: self.principal.clone(),
            source: Some(Arc::from(source.as_ref())),
        }
    }

    /// The principal this client acts as.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// The router (store ids, routes).
    pub fn router(&self) -> &Router {
        &self.inner.router
    }

    /// The cache, when enabled.
    pub fn cache(&self) -> Option<&SecretCache> {
        self.inner.cache.as_ref()
    }

    /// The audit log, when enabled.
    pub fn audit_log(&self) -> Option<&AuditLog> {
        self.inner.audit.as_ref()
    }

    /// Replaces the access policy (takes effect for the next call, cached entries included).
    pub fn set_policy(&self, policy: Policy) {
        let enforcing = policy.is_enforcing();
        self.inner.policy.store(Arc::new(policy));
        self.inner
            .policy_enforcing
            .store(enforcing, std::sync::atomic::Ordering::Relaxed);
    }

    /// Counter values.
    pub fn metrics(&self) -> MetricsSnapshot {
        let mut m = self.inner.metrics.snapshot();
        m.audit_events_lost = self.inner.audit.as_ref().map_or(0, AuditLog::events_lost);
        m
    }

    /// Prometheus text for this client's metrics.
    pub fn render_prometheus(&self) -> String {
        self.metrics().render_prometheus()
    }

    /// Pushes the hot-path counters to the installed `metrics` recorder.
    pub fn publish_metrics(&self) {
        self.inner.metrics.publish();
        if let Some(audit) = &self.inner.audit {
            metrics::counter!("sealbox_audit_events_lost_total").absolute(audit.events_lost());
        }
    }

    fn event(&self, action: Action, resource: Arc<Resource>) -> AuditEvent {
        let mut e = AuditEvent::access(action, self.principal.clone(), resource);
        e.source = self.source.clone();
        e
    }

    /// Records a successful access; in strict mode this fails when no sink could write it.
    fn audit_ok(&self, event: AuditEvent) -> Result<()> {
        match &self.inner.audit {
            Some(a) => a.record(event),
            None => Ok(()),
        }
    }

    /// Records a failed access (never waits, whatever the mode) and gives `error` the
    /// event's request id, so that the caller can find the audit line of its failure.
    fn audit_failure(&self, event: AuditEvent, error: Error) -> Error {
        let Some(a) = &self.inner.audit else {
            return error;
        };
        let id = event.request_id_text();
        match a.enqueue(event) {
            Ok(()) => error.with_audit_request_id(id),
            Err(e) => {
                tracing::error!(target: "sealbox::audit", error = %e, "could not queue an audit event");
                error
            }
        }
    }

    /// Strict audit mode refuses changes while no sink can write, so that nothing changes
    /// without a record.
    fn audit_ready_for_change(&self, action: Action, resource: &Arc<Resource>) -> Result<()> {
        match &self.inner.audit {
            Some(a) if a.mode() == crate::audit::AuditMode::Strict && !a.is_healthy() => {
                let reason = "audit sink unavailable; change refused (strict mode)";
                let event = self.event(action, resource.clone()).failed(reason);
                Err(self.audit_failure(
                    event,
                    Error::new(
                        ErrorKind::Unavailable,
                        "the audit log cannot be written and audit mode is strict; no change was made",
                    ),
                ))
            }
            _ => Ok(()),
        }
    }

    /// Where `resource` lives, for the policy: rules without `sb://` cover only the store a
    /// bare name routes to, so `sb://other/NAME` is not allowed by a rule for `NAME`.
    fn location<'r>(&self, resource: &'r Resource) -> Location<'r> {
        match resource.store.as_deref() {
            Some(store) => Location {
                store: Some(store),
                default_route: self.inner.router.routes_to(&resource.name, store),
            },
            None => Location::DEFAULT_ROUTE,
        }
    }

    pub(crate) fn authorize(
        &self,
        capability: Capability,
        action: Action,
        resource: &Arc<Resource>,
    ) -> Result<()> {
        let policy = self.inner.policy.load();
        if !policy.is_enforcing() {
            return Ok(());
        }
        let decision = policy.check_at(
            &self.principal,
            capability,
            self.location(resource),
            &resource.name,
        );
        if decision.is_allowed() {
            return Ok(());
        }
        self.inner.metrics.denies.incr();
        let event = self.event(action, resource.clone()).deny(decision.reason());
        Err(self.audit_failure(
            event,
            Error::new(
                ErrorKind::AccessDenied,
                format!(
                    "{} may not {capability} {}",
                    self.principal.as_str(),
                    resource.name
                ),
            ),
        ))
    }

    /// The cache-hit path on its own: answers when the cache holds a fresh value for
    /// `reference` (or a stale one while the store fails, within `max_stale`), with the same
    /// policy check, metrics and audit event as [`Sealbox::get`]; `None` means `get` would go
    /// to the store. It takes no lock, does not enter the async runtime and never blocks on a
    /// store, so latency-critical code can fall back to its own plan.
    ///
    /// The reference is bytes so that bindings, which receive names as bytes, need not
    /// validate UTF-8 on a hit: only valid names are ever cached, so bytes that are not
    /// UTF-8 simply give `None` (and [`Sealbox::get`] then rejects them).
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use sealbox::{Sealbox, Secret, store::memory::MemoryStore};
    /// # let client = Sealbox::builder().store(Arc::new(MemoryStore::new())).build()?.blocking()?;
    /// # client.put("predis/prod/api/auth-token", &Secret::random(32)?)?;
    /// assert!(client.get_cached(b"predis/prod/api/auth-token").is_none()); // not read yet
    /// let token = client.get("predis/prod/api/auth-token")?; // a miss fills the cache
    /// let again = client.get_cached(b"predis/prod/api/auth-token").expect("cached")?;
    /// assert_eq!(again.version(), token.version());
    /// # Ok::<(), sealbox::Error>(())
    /// ```
    #[inline]
    pub fn get_cached(&self, reference: &[u8]) -> Option<Result<SecretHandle>> {
        if let Err(e) = self.alive() {
            return Some(Err(e));
        }
        // Counted by the cache itself (gets, hits, stale), so the hit path touches one counter.
        let answer = self.inner.cache.as_ref()?.lookup(reference)?;
        Some(answer.and_then(|a| self.admit_read(a)))
    }

    fn finish_read(&self, answer: CacheAnswer) -> Result<SecretHandle> {
        let m = &self.inner.metrics;
        m.gets.incr();
        match answer.outcome {
            CacheOutcome::Hit => m.hits.incr(),
            CacheOutcome::Miss => m.misses.incr(),
            CacheOutcome::Stale => {}
        }
        self.admit_read(answer)
    }

    /// Policy and audit for a read that has its value.
    #[inline]
    fn admit_read(&self, answer: CacheAnswer) -> Result<SecretHandle> {
        let CacheAnswer {
            handle,
            outcome,
            tick,
        } = answer;
        if self
            .inner
            .policy_enforcing
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            self.authorize(Capability::Read, Action::Read, handle.resource())?;
        }
        if let Some(audit) = &self.inner.audit {
            audit.record_cached_read(
                &self.principal,
                self.source.as_ref(),
                handle.resource(),
                outcome,
                tick,
            )?;
        }
        Ok(handle)
    }

    fn failed_read(&self, resource: Arc<Resource>, e: Error) -> Error {
        if self.inner.audit.is_none() {
            return e;
        }
        let event = self.event(Action::Read, resource).failed(e.kind().as_str());
        self.audit_failure(event, e)
    }

    /// Reads the current version of `name` (a name or `sb://STORE/NAME` reference).
    pub async fn get(&self, name: &str) -> Result<SecretHandle> {
        // A runtime copies a future whole whenever it moves it (`block_on` does, twice), so
        // a miss's future is kept small: the miss paths are awaited here rather than through
        // a function of their own (an async function keeps its arguments for as long as it
        // runs), and the probe's answer is bound, not matched on (a value matched on stays
        // in the future for the whole match).
        let missed = match self.start_get(name.as_bytes()) {
            Ok(read) => return read,
            Err(missed) => missed,
        };
        match missed {
            Missed::Expired(cache, expired) => self.get_expired(cache, expired).await,
            Missed::Absent => self.get_uncached(name).await,
        }
    }

    /// The synchronous part of [`Sealbox::get`]: the read itself on a cache hit, or what its
    /// miss still has to do (the blocking facade runs only that part on its runtime).
    #[inline]
    fn start_get(&self, name: &[u8]) -> std::result::Result<Result<SecretHandle>, Missed<'_>> {
        if let Err(e) = self.alive() {
            return Ok(Err(e));
        }
        let Some(cache) = &self.inner.cache else {
            return Err(Missed::Absent);
        };
        match cache.probe(name) {
            Probe::Answer(answer) => Ok(answer.and_then(|a| self.admit_read(a))),
            Probe::Expired(expired) => Err(Missed::Expired(cache, expired)),
            Probe::Absent => Err(Missed::Absent),
        }
    }

    /// The policy check of a read that goes to the store (a denial is counted as a get).
    /// The resource is built only when a policy needs it: a miss is on the latency budget of
    /// the store call it wraps.
    fn authorize_miss(&self, resource: impl FnOnce() -> Arc<Resource>) -> Result<()> {
        if self
            .inner
            .policy_enforcing
            .load(std::sync::atomic::Ordering::Relaxed)
            && let Err(e) = self.authorize(Capability::Read, Action::Read, &resource())
        {
            self.inner.metrics.gets.incr();
            return Err(e);
        }
        Ok(())
    }

    /// A read of a reference the cache holds but cannot serve: refreshed in place, without
    /// routing the reference again.
    async fn get_expired(&self, cache: &SecretCache, expired: Expired) -> Result<SecretHandle> {
        self.authorize_miss(|| expired.resource())?;
        match cache.refresh_expired(&expired).await {
            Ok(a) => self.finish_read(a),
            Err(e) => {
                self.inner.metrics.gets.incr();
                Err(self.failed_read(expired.resource(), e))
            }
        }
    }

    /// A read of a reference the cache does not hold (a first read, or no cache): routed,
    /// checked, then loaded.
    async fn get_uncached(&self, reference: &str) -> Result<SecretHandle> {
        // Bound, not matched on (see `get`).
        let load = self.route_read(reference)?;
        let answer = load.await;
        match answer {
            Ok(a) => self.finish_read(a),
            Err(e) => {
                self.inner.metrics.gets.incr();
                let resource = match self.inner.router.resolve(reference) {
                    Ok(route) => route.resource(),
                    Err(_) => Resource::named(reference),
                };
                Err(self.failed_read(resource, e))
            }
        }
    }

    /// The synchronous part of [`Sealbox::get_uncached`]: the reference routed, refused if it
    /// names a field, and authorized; then its load: the cache's (its entry already in
    /// place), or a read from the store for a client without a cache. Kept out of the async
    /// function, so that its future holds the load alone, not the route beside it.
    fn route_read(
        &self,
        reference: &str,
    ) -> Result<impl Future<Output = Result<CacheAnswer>> + '_> {
        let route = match self.inner.router.resolve(reference) {
            Ok(r) => r,
            Err(e) => {
                self.inner.metrics.gets.incr();
                return Err(self.failed_read(Resource::named(reference), e));
            }
        };
        if route.field.is_some() {
            self.inner.metrics.gets.incr();
            let e = Error::invalid_input("this reference names a #field; use get_field");
            return Err(self.failed_read(route.resource(), e));
        }
        self.authorize_miss(|| route.resource())?;
        let Route {
            store_id,
            store,
            name,
            ..
        } = route;
        Ok(match &self.inner.cache {
            Some(cache) => Either::Left(cache.fetch(reference, store, name, store_id)),
            None => Either::Right(async move {
                let handle = self
                    .fetch_direct(&store, name, store_id, &VersionSelector::Current)
                    .await?;
                Ok(CacheAnswer {
                    handle,
                    outcome: CacheOutcome::Miss,
                    tick: crate::cache::clock::NO_TICK,
                })
            }),
        })
    }

    async fn fetch_direct(
        &self,
        store: &Arc<dyn SecretStore>,
        name: SecretName,
        store_id: Arc<str>,
        selector: &VersionSelector,
    ) -> Result<SecretHandle> {
        let started = self.inner.metrics.start_store_call();
        let got = store.get(&name, selector).await;
        self.inner.metrics.end_store_call(started);
        let v = got.inspect_err(|e| self.inner.metrics.store_error(e.kind()))?;
        let meta = VersionMeta::new(name, store_id, v.version, v.stages, v.created);
        Ok(SecretHandle::from_inner(crate::cache::Shared::new(
            HandleInner::new(meta, v.value),
        )))
    }

    /// Reads a chosen version. `Current` goes through the cache; other selectors go to the store.
    pub async fn get_version(
        &self,
        name: &str,
        selector: &VersionSelector,
    ) -> Result<SecretHandle> {
        if *selector == VersionSelector::Current {
            return self.get(name).await;
        }
        self.alive()?;
        self.inner.metrics.gets.incr();
        let route = match self.inner.router.resolve(name) {
            Ok(r) => r,
            Err(e) => return Err(self.failed_read(Resource::named(name), e)),
        };
        let resource = route.resource();
        self.authorize(Capability::Read, Action::Read, &resource)?;
        match self
            .fetch_direct(&route.store, route.name, route.store_id, selector)
            .await
        {
            Ok(handle) => {
                self.inner.metrics.misses.incr();
                let mut e = self.event(Action::Read, handle.resource().clone());
                e.cache = Some(CacheOutcome::Miss);
                self.audit_ok(e)?;
                Ok(handle)
            }
            Err(e) => Err(self.failed_read(resource, e)),
        }
    }

    /// Reads one JSON field of the current version (`get_field("predis/prod/db", "password")`).
    pub async fn get_field(&self, name: &str, field: &str) -> Result<SecretString> {
        let h = self.get(name).await?;
        h.secret().json_field(field)
    }

    /// Reads several top-level fields of the current version's JSON object with one read (one
    /// store call or cache hit, one audit event, one parse), each into its own locked handle,
    /// in the order of `fields` (`get_fields("predis/prod/aws", &["access_key_id",
    /// "secret_access_key", "session_token"])`). See [`SecretHandle::fields`] for the errors.
    pub async fn get_fields(&self, name: &str, fields: &[&str]) -> Result<Vec<SecretHandle>> {
        self.get(name).await?.fields(fields)
    }

    /// Refetches `name` from its store now, bypassing freshness and the version check, and
    /// replaces the cached value. A store failure is returned (the cached value is kept and
    /// still served, within its TTL and stale window). Without a cache there is nothing to
    /// refresh and this returns at once.
    pub async fn refresh_now(&self, name: &str) -> Result<()> {
        self.alive()?;
        let route = self.inner.router.resolve(name)?;
        let resource = route.resource();
        self.authorize(Capability::Read, Action::Read, &resource)?;
        match &self.inner.cache {
            Some(cache) => {
                cache
                    .refresh_now(name, route.store, route.name, route.store_id)
                    .await
            }
            None => Ok(()),
        }
    }

    /// Writes a new CURRENT version.
    pub async fn put(&self, name: &str, value: &Secret) -> Result<VersionInfo> {
        self.put_with(name, value, &PutOptions::default()).await
    }

    /// Writes a new version with options (stages, compare-and-set, ...).
    pub async fn put_with(
        &self,
        name: &str,
        value: &Secret,
        options: &PutOptions,
    ) -> Result<VersionInfo> {
        self.alive()?;
        // A version with no stage could never be read as CURRENT or by label; stores disagree
        // on whether to accept one (AWS refuses), so the client refuses it for all of them.
        if options.stages.is_empty() {
            return Err(Error::invalid_input(
                "a put must name at least one stage (the default is CURRENT)",
            ));
        }
        let route = self.inner.router.resolve(name)?;
        let resource = route.resource();
        self.authorize(Capability::Write, Action::Write, &resource)?;
        self.audit_ready_for_change(Action::Write, &resource)?;
        self.inner.metrics.writes.incr();
        let result = route.store.put(&route.name, value, options).await;
        if let Some(cache) = &self.inner.cache {
            cache.invalidate(&route.store_id, &route.name);
        }
        match result {
            Ok(info) => {
                let resource = Arc::new(Resource {
                    version: Some(info.version.clone()),
                    ..(*resource).clone()
                });
                self.audit_ok(self.event(Action::Write, resource))?;
                Ok(info)
            }
            Err(e) => {
                self.inner.metrics.store_error(e.kind());
                let event = self
                    .event(Action::Write, resource)
                    .failed(e.kind().as_str());
                Err(self.audit_failure(event, e))
            }
        }
    }

    /// Lists every name under `prefix` (all pages, every store the prefix routes to). With a
    /// policy, only names the principal may `list` are returned.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ListEntry>> {
        self.alive()?;
        let resource = Resource::named(prefix);
        let targets = match self.inner.router.list_targets(prefix) {
            Ok(t) => t,
            Err(e) => {
                let event = self.event(Action::List, resource).failed(e.kind().as_str());
                return Err(self.audit_failure(event, e));
            }
        };
        let explicit = prefix.starts_with("sb://");
        let policy = self.inner.policy.load();
        let mut out = Vec::new();
        for (store_id, store, p) in targets {
            let mut options = ListOptions {
                prefix: p,
                ..ListOptions::default()
            };
            loop {
                let page = match store.list(&options).await {
                    Ok(page) => page,
                    Err(e) => {
                        self.inner.metrics.store_error(e.kind());
                        let event = self.event(Action::List, resource).failed(e.kind().as_str());
                        return Err(self.audit_failure(event, e));
                    }
                };
                out.extend(page.entries.into_iter().filter(|entry| {
                    (explicit || self.inner.router.routes_to(entry.name.as_str(), &store_id))
                        && (!policy.is_enforcing()
                            || policy
                                .check_at(
                                    &self.principal,
                                    Capability::List,
                                    Location {
                                        store: Some(&store_id),
                                        default_route: self
                                            .inner
                                            .router
                                            .routes_to(entry.name.as_str(), &store_id),
                                    },
                                    entry.name.as_str(),
                                )
                                .is_allowed())
                }));
                match page.next_page_token {
                    Some(t) => options.page_token = Some(t),
                    None => break,
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        let mut e = self.event(Action::List, resource);
        e.reason = Some(format!("{} names", out.len()).into());
        self.audit_ok(e)?;
        Ok(out)
    }

    /// Metadata of `name`.
    pub async fn describe(&self, name: &str) -> Result<SecretMetadata> {
        self.alive()?;
        let route = self.inner.router.resolve(name)?;
        let resource = route.resource();
        self.authorize(Capability::Read, Action::Describe, &resource)?;
        match route.store.describe(&route.name).await {
            Ok(meta) => {
                self.audit_ok(self.event(Action::Describe, resource))?;
                Ok(meta)
            }
            Err(e) => {
                let event = self
                    .event(Action::Describe, resource)
                    .failed(e.kind().as_str());
                Err(self.audit_failure(event, e))
            }
        }
    }

    /// Deletes `name`.
    pub async fn delete(&self, name: &str, options: &DeleteOptions) -> Result<()> {
        self.alive()?;
        let route = self.inner.router.resolve(name)?;
        let resource = route.resource();
        self.authorize(Capability::Delete, Action::Delete, &resource)?;
        self.audit_ready_for_change(Action::Delete, &resource)?;
        self.inner.metrics.writes.incr();
        let result = route.store.delete(&route.name, options).await;
        if let Some(cache) = &self.inner.cache {
            cache.invalidate(&route.store_id, &route.name);
        }
        match result {
            Ok(()) => self.audit_ok(self.event(Action::Delete, resource)),
            Err(e) => {
                self.inner.metrics.store_error(e.kind());
                let event = self
                    .event(Action::Delete, resource)
                    .failed(e.kind().as_str());
                Err(self.audit_failure(event, e))
            }
        }
    }

    /// Moves `stage` to `version` of `name` (`None` removes it): which value readers get
    /// changes, so this needs the `rotate` capability under a policy (not `write`). Audited
    /// as a `rotate` event.
    pub async fn set_stage(
        &self,
        name: &str,
        stage: &Stage,
        version: Option<&VersionId>,
    ) -> Result<()> {
        self.alive()?;
        let route = self.inner.router.resolve(name)?;
        let resource = route.resource();
        self.authorize(Capability::Rotate, Action::Rotate, &resource)?;
        self.audit_ready_for_change(Action::Rotate, &resource)?;
        self.inner.metrics.writes.incr();
        let result = route.store.set_stage(&route.name, stage, version).await;
        self.finish_change(Action::Rotate, &route, resource, result)
    }

    /// Restores a deleted `name`: its versions become readable again, so this needs the
    /// `rotate` capability under a policy, like a stage move. Audited as a `rotate` event.
    pub async fn restore(&self, name: &str) -> Result<()> {
        self.alive()?;
        let route = self.inner.router.resolve(name)?;
        let resource = route.resource();
        self.authorize(Capability::Rotate, Action::Rotate, &resource)?;
        self.audit_ready_for_change(Action::Rotate, &resource)?;
        self.inner.metrics.writes.incr();
        let result = route.store.restore(&route.name).await;
        self.finish_change(Action::Rotate, &route, resource, result)
    }

    /// Drops the cached value of a changed secret and audits the change's outcome.
    fn finish_change(
        &self,
        action: Action,
        route: &Route,
        resource: Arc<Resource>,
        result: Result<()>,
    ) -> Result<()> {
        if let Some(cache) = &self.inner.cache {
            cache.invalidate(&route.store_id, &route.name);
        }
        match result {
            Ok(()) => self.audit_ok(self.event(action, resource)),
            Err(e) => {
                self.inner.metrics.store_error(e.kind());
                let event = self.event(action, resource).failed(e.kind().as_str());
                Err(self.audit_failure(event, e))
            }
        }
    }

    /// Checks, under the policy, an operation done outside the client on `reference`'s
    /// store (key rotation and retirement, which the CLI runs on the vault itself): `admin`
    /// is needed on the names the keys protect (`*` for the master key, `NAMESPACE/*` for a
    /// namespace key, the secret's name for its data key). A denial is audited and counted
    /// like any other.
    pub fn authorize_key_operation(&self, reference: &str) -> Result<()> {
        self.alive()?;
        let resource = self.inner.router.key_resource(reference)?;
        self.authorize(Capability::Admin, Action::Key, &resource)
    }

    /// Crypto-shreds a namespace of the store it routes to (`"predis"`, or
    /// `"sb://STORE/predis"` to name the store): its keys are destroyed and its secrets
    /// deleted, for good (see [`SecretStore::erase_namespace`]; the local vault is the store
    /// that supports it). Needs the `admin` capability on `NAMESPACE/*` under a policy, as
    /// the namespace's key operations do. The erasure is audited
    /// here, whoever calls it: an `erase` event (`namespace.erase`) naming the namespace, the
    /// store and the principal, whose `reason` says what was destroyed and which copies are
    /// not covered ([`Erasure::summary`]). Every cached value is dropped, since any of them
    /// may belong to the namespace.
    pub async fn erase_namespace(&self, namespace: &str) -> Result<Erasure> {
        let route = self.inner.router.resolve(namespace)?;
        let resource = route.resource();
        // The same rule as the namespace's key operations: `admin` on every name under it.
        let covers = self
            .inner
            .router
            .key_resource(&format!("{}/*", namespace.trim_end_matches('/')))?;
        self.authorize(Capability::Admin, Action::Erase, &covers)?;
        self.audit_ready_for_change(Action::Erase, &resource)?;
        self.inner.metrics.writes.incr();
        let result = route.store.erase_namespace(route.name.as_str()).await;
        if let Some(cache) = &self.inner.cache {
            cache.clear();
        }
        match result {
            Ok(erasure) => {
                let mut event = self.event(Action::Erase, resource);
                event.reason = Some(erasure.summary().into());
                self.audit_ok(event)?;
                Ok(erasure)
            }
            Err(e) => {
                self.inner.metrics.store_error(e.kind());
                let event = self
                    .event(Action::Erase, resource)
                    .failed(e.kind().as_str());
                Err(self.audit_failure(event, e))
            }
        }
    }

    /// Records an event produced elsewhere (rotation, key operations, break-glass) under this
    /// client's audit log; a no-op without one.
    pub fn record_event(&self, event: AuditEvent) -> Result<()> {
        self.alive()?;
        if event.action == Action::Rotate && event.success {
            self.inner.metrics.rotations.incr();
        }
        self.audit_ok(event)
    }

    /// Writes every queued audit event to the sinks (waits for the writer).
    pub async fn flush_audit(&self) -> Result<()> {
        self.alive()?;
        match &self.inner.audit {
            Some(a) => a.flush(),
            None => Ok(()),
        }
    }

    /// A synchronous facade running on its own small runtime, for bindings and sync programs.
    pub fn blocking(&self) -> Result<BlockingSealbox> {
        Ok(BlockingSealbox {
            client: self.clone(),
            rt: Arc::new(ProcessBound::new(Sealbox::builder_runtime()?)),
        })
    }

    fn builder_runtime() -> Result<tokio::runtime::Runtime> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sealbox")
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting the sealbox runtime", e))
    }
}

/// The synchronous facade over [`Sealbox`]; every method blocks the calling thread (cache hits
/// return without entering the runtime). Must not be called from inside an async runtime.
#[derive(Clone, Debug)]
pub struct BlockingSealbox {
    client: Sealbox,
    /// Its workers exist only in the process that made it: a forked child never drops it.
    rt: Arc<ProcessBound<tokio::runtime::Runtime>>,
}

impl BlockingSealbox {
    /// Opens a client from a YAML config file.
    pub fn from_config(path: impl AsRef<Path>) -> Result<BlockingSealbox> {
        let rt = Sealbox::builder_runtime()?;
        let client = rt.block_on(Sealbox::from_config(path))?;
        Ok(BlockingSealbox {
            client,
            rt: Arc::new(ProcessBound::new(rt)),
        })
    }

    /// Opens a client from a YAML config file with an explicit provider registry.
    pub fn from_config_with(
        path: impl AsRef<Path>,
        registry: &crate::config::ProviderRegistry,
    ) -> Result<BlockingSealbox> {
        let rt = Sealbox::builder_runtime()?;
        let client = rt.block_on(Sealbox::from_config_with(path, registry))?;
        Ok(BlockingSealbox {
            client,
            rt: Arc::new(ProcessBound::new(rt)),
        })
    }

    /// The async client behind this facade.
    pub fn client(&self) -> &Sealbox {
        &self.client
    }

    /// See [`Sealbox::reopen`]: a new client, on a runtime of its own, made as this one was.
    /// In a forked child, call it before the child's first use of the client.
    pub fn reopen(&self) -> Result<BlockingSealbox> {
        let rt = Sealbox::builder_runtime()?;
        let client = rt.block_on(self.client.reopen())?;
        Ok(BlockingSealbox {
            client,
            rt: Arc::new(ProcessBound::new(rt)),
        })
    }

    /// Runs a store call on this facade's runtime; in a forked child, where the runtime's
    /// workers do not exist, answers `Forked` without entering it.
    fn block_on<T>(&self, call: impl Future<Output = Result<T>>) -> Result<T> {
        self.client.alive()?;
        self.rt.block_on(call)
    }

    /// See [`Sealbox::as_principal`].
    pub fn as_principal(&self, principal: Principal) -> BlockingSealbox {
        BlockingSealbox {
            client: self.client.as_principal(principal),
            rt: self.rt.clone(),
        }
    }

    /// See [`Sealbox::with_source`].
    pub fn with_source(&self, source: impl AsRef<str>) -> BlockingSealbox {
        BlockingSealbox {
            client: self.client.with_source(source),
            rt: self.rt.clone(),
        }
    }

    /// See [`Sealbox::get_cached`].
    #[inline]
    pub fn get_cached(&self, reference: &[u8]) -> Option<Result<SecretHandle>> {
        self.client.get_cached(reference)
    }

    /// See [`Sealbox::get`]. A hit does not enter the runtime.
    pub fn get(&self, name: &str) -> Result<SecretHandle> {
        self.get_bytes(name.as_bytes(), |_| Ok(name))
    }

    /// [`BlockingSealbox::get`] of a name received as bytes (from C, say): a hit needs no
    /// UTF-8 check, as only valid names are cached, and the cache is probed once whatever
    /// the outcome. Only a name the cache does not hold is turned into text, by `text`, whose
    /// error is returned as is.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use sealbox::{Error, ErrorKind, Sealbox, Secret, store::memory::MemoryStore};
    /// # let client = Sealbox::builder().store(Arc::new(MemoryStore::new())).build()?.blocking()?;
    /// # client.put("app/token", &Secret::random(32)?)?;
    /// let text = |b| std::str::from_utf8(b).map_err(|_| Error::invalid_input("name is not UTF-8"));
    /// let token = client.get_bytes(b"app/token", text)?; // a first read: checked, then routed
    /// let hit = |_| -> Result<&str, Error> { unreachable!("a hit checks nothing") };
    /// let again = client.get_bytes(b"app/token", hit)?;
    /// assert_eq!(again.version(), token.version());
    /// let err = client.get_bytes(b"app/\xff", text).unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::InvalidInput);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn get_bytes<'n, E: From<Error>>(
        &self,
        name: &'n [u8],
        text: impl FnOnce(&'n [u8]) -> std::result::Result<&'n str, E>,
    ) -> std::result::Result<SecretHandle, E> {
        let c = &self.client;
        Ok(match c.start_get(name) {
            Ok(read) => read?,
            // The entry holds the name it was read under: no text needed.
            Err(Missed::Expired(cache, expired)) => {
                self.rt.block_on(c.get_expired(cache, expired))?
            }
            Err(Missed::Absent) => self.rt.block_on(c.get_uncached(text(name)?))?,
        })
    }

    /// See [`Sealbox::get_version`].
    pub fn get_version(&self, name: &str, selector: &VersionSelector) -> Result<SecretHandle> {
        if *selector == VersionSelector::Current {
            return self.get(name);
        }
        self.block_on(self.client.get_version(name, selector))
    }

    /// See [`Sealbox::get_field`].
    pub fn get_field(&self, name: &str, field: &str) -> Result<SecretString> {
        self.get(name)?.secret().json_field(field)
    }

    /// See [`Sealbox::get_fields`]. A hit does not enter the runtime.
    pub fn get_fields(&self, name: &str, fields: &[&str]) -> Result<Vec<SecretHandle>> {
        self.get(name)?.fields(fields)
    }

    /// See [`Sealbox::refresh_now`].
    pub fn refresh_now(&self, name: &str) -> Result<()> {
        self.block_on(self.client.refresh_now(name))
    }

    /// See [`Sealbox::put`].
    pub fn put(&self, name: &str, value: &Secret) -> Result<VersionInfo> {
        self.block_on(self.client.put(name, value))
    }

    /// See [`Sealbox::put_with`].
    pub fn put_with(
        &self,
        name: &str,
        value: &Secret,
        options: &PutOptions,
    ) -> Result<VersionInfo> {
        self.block_on(self.client.put_with(name, value, options))
    }

    /// See [`Sealbox::list`].
    pub fn list(&self, prefix: &str) -> Result<Vec<ListEntry>> {
        self.block_on(self.client.list(prefix))
    }

    /// See [`Sealbox::describe`].
    pub fn describe(&self, name: &str) -> Result<SecretMetadata> {
        self.block_on(self.client.describe(name))
    }

    /// See [`Sealbox::delete`].
    pub fn delete(&self, name: &str, options: &DeleteOptions) -> Result<()> {
        self.block_on(self.client.delete(name, options))
    }

    /// See [`Sealbox::erase_namespace`].
    pub fn erase_namespace(&self, namespace: &str) -> Result<Erasure> {
        self.rt.block_on(self.client.erase_namespace(namespace))
    }

    /// See [`Sealbox::flush_audit`].
    pub fn flush_audit(&self) -> Result<()> {
        self.block_on(self.client.flush_audit())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    /// A runtime copies a future whole whenever it moves it (`block_on` moves it twice), on
    /// every miss. These were 744 bytes (`get`), 576 (`get_uncached`) and 432
    /// (`get_expired`) while each async layer kept a second copy of its arguments.
    #[test]
    fn a_miss_future_stays_small() {
        let client = Sealbox::builder()
            .store(Arc::new(MemoryStore::new()))
            .build()
            .unwrap();
        let get = client.get("app/token");
        let uncached = client.get_uncached("app/token");
        assert!(size_of_val(&get) <= 384, "get: {} bytes", size_of_val(&get));
        assert!(
            size_of_val(&uncached) <= 320,
            "get_uncached: {} bytes",
            size_of_val(&uncached)
        );
        let cache = client.cache().unwrap();
        let fetched = cache.fetch(
            "app/token",
            Arc::new(MemoryStore::new()),
            SecretName::new("app/token").unwrap(),
            Arc::from("default"),
        );
        assert!(
            size_of_val(&fetched) <= 256,
            "the cache's fetch: {} bytes",
            size_of_val(&fetched)
        );
    }
}
