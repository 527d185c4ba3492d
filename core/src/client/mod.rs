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

mod blocking;
mod builder;
mod changes;
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
pub use blocking::BlockingSealbox;
pub use builder::SealboxBuilder;
pub(crate) use reopen::Recipe;
use router::Route;
pub use router::Router;

use crate::audit::{Action, AuditEvent, AuditLog, AuditLogBuilder, CacheOutcome, Resource};
use crate::cache::{CacheAnswer, CacheConfig, Expired, Probe, SecretCache};
use crate::config::rotation::RotationConfig;
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
    /// The config's `rotation:` section, for [`Sealbox::rotation`].
    rotation: Option<RotationConfig>,
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

    /// The rotation schedule this client was built with (a config file's `rotation:`
    /// section), which [`Sealbox::rotation`] uses.
    pub fn rotation_schedule(&self) -> Option<&RotationConfig> {
        self.inner.rotation.as_ref()
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
        let mut withheld = 0usize;
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
                for entry in page.entries {
                    let name = entry.name.as_str();
                    let routed = self.inner.router.routes_to(name, &store_id);
                    if !explicit && !routed {
                        continue;
                    }
                    let location = Location {
                        store: Some(&store_id),
                        default_route: routed,
                    };
                    if policy.is_enforcing()
                        && !policy
                            .check_at(&self.principal, Capability::List, location, name)
                            .is_allowed()
                    {
                        withheld += 1;
                        continue;
                    }
                    out.push(entry);
                }
                match page.next_page_token {
                    Some(t) => options.page_token = Some(t),
                    None => break,
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        if withheld > 0 {
            // The names the policy withheld are a denial like any other: counted and audited
            // (how many, never which), and the listing goes on with the rest.
            self.inner.metrics.denies.incr();
            let reason = format!("{withheld} names under this prefix withheld by the policy");
            let denied = self.event(Action::List, resource.clone()).deny(reason);
            if let Some(a) = &self.inner.audit
                && let Err(e) = a.enqueue(denied)
            {
                tracing::error!(target: "sealbox::audit", error = %e, "could not queue an audit event");
            }
        }
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

    /// Records an event produced elsewhere (rotation, key operations, break-glass) under this
    /// client's audit log; a no-op without one. It records what already happened: in strict
    /// mode it waits for the durable sinks and fails `Unavailable` when they do not all
    /// write it in time, but the event is written as it is, never as refused.
    pub fn record_event(&self, event: AuditEvent) -> Result<()> {
        self.alive()?;
        if event.action == Action::Rotate && event.success {
            self.inner.metrics.rotations.incr();
        }
        match &self.inner.audit {
            Some(a) => a.record_outcome(event),
            None => Ok(()),
        }
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
