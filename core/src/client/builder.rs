//! [`SealboxBuilder`]: stores, routes, cache, audit, policy and monitor put together into a
//! [`Sealbox`], and the audit of what the cache reads on its own (refresh-ahead).

use super::*;

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
    pub(super) hooks: Vec<AlertHook>,
    /// How the client is to be made again, when not from these settings (a config).
    recipe: Option<Recipe>,
    rotation: Option<RotationConfig>,
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
            rotation: None,
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

    /// The rotation schedule [`Sealbox::rotation`] uses (a config file's `rotation:`
    /// section, which [`Sealbox::from_config`] passes here).
    pub fn rotation_schedule(mut self, schedule: RotationConfig) -> Self {
        self.rotation = Some(schedule);
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
                rotation: self.rotation.clone(),
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
        if let (Some(cache), Some(audit)) = (&cache, &audit) {
            cache.on_refresh_ahead(refresh_ahead_audit(audit.clone()));
        }
        Ok(Sealbox {
            inner: Arc::new(ProcessBound::new(Inner {
                router,
                cache,
                audit,
                policy_enforcing: std::sync::atomic::AtomicBool::new(self.policy.is_enforcing()),
                policy: ArcSwap::from_pointee(self.policy),
                metrics,
                recipe,
                rotation: self.rotation,
            })),
            principal: self.principal.unwrap_or_default(),
            source: None,
        })
    }
}

/// The principal refresh-ahead reads are recorded under: the cache reads for no caller.
const REFRESH_AHEAD_PRINCIPAL: &str = "sealbox:refresh-ahead";
const REFRESH_AHEAD_REASON: &str =
    "refresh-ahead: read from the store into the cache before the entry expired";

/// Audits the cache's refresh-ahead reads (queued best effort whatever the mode: no value
/// reaches a caller here; the reads served from it later are audited as hits).
fn refresh_ahead_audit(audit: AuditLog) -> crate::cache::RefreshHook {
    let principal = Principal::new(REFRESH_AHEAD_PRINCIPAL);
    Box::new(move |resource, error| {
        let mut e = AuditEvent::access(Action::Read, principal.clone(), resource);
        e.cache = Some(CacheOutcome::Miss);
        e = match error {
            None => AuditEvent {
                reason: Some(REFRESH_AHEAD_REASON.into()),
                ..e
            },
            Some(kind) => e.failed(format!("{REFRESH_AHEAD_REASON}: {}", kind.as_str())),
        };
        if let Err(e) = audit.enqueue(e) {
            tracing::error!(target: "sealbox::audit", error = %e, "could not queue an audit event");
        }
    })
}
