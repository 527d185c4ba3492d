//! Building a client from a [`Config`]: the client consumes the config, so the building lives
//! here and the config knows nothing of the client.

use super::{Recipe, Sealbox};
use crate::audit::AuditLogBuilder;
use crate::config::{Config, ProviderRegistry, audit_key};
use crate::error::{Error, Result};
use crate::policy::Policy;
use crate::principal::Principal;

impl Config {
    /// Builds the client: stores through `registry`, then routes, cache, audit, policy, monitor.
    /// The client keeps a copy of this config to build again from in a forked child
    /// ([`Sealbox::reopen`]).
    pub async fn build(&self, registry: &ProviderRegistry) -> Result<Sealbox> {
        let recipe = Recipe::Config {
            config: Box::new(self.clone()),
            registry: registry.clone(),
        };
        self.build_with_recipe(registry, recipe).await
    }

    /// [`Config::build`], the client to be made again by `recipe`.
    pub(crate) async fn build_with_recipe(
        &self,
        registry: &ProviderRegistry,
        recipe: Recipe,
    ) -> Result<Sealbox> {
        let mut builder = Sealbox::builder().reopen_from(recipe);
        let stores = self.store_configs();
        let built = self.build_stores(registry, None).await?;
        for (id, _, _) in &stores {
            builder = builder.named_store(id.clone(), built[id].clone());
        }
        let Some(default) = self.default_store_id() else {
            return Err(Error::config(
                "default_store: required when several stores are configured",
            ));
        };
        if !stores.iter().any(|(id, _, _)| *id == default) {
            return Err(Error::config(format!(
                "default_store: no store named {default:?}"
            )));
        }
        builder = builder.default_store(default.clone());
        for (prefix, store) in &self.routes {
            if !stores.iter().any(|(id, _, _)| id == store) {
                return Err(Error::config(format!(
                    "routes.{prefix}: no store named {store:?}"
                )));
            }
            builder = builder.route(prefix.clone(), store.clone());
        }
        if let Some(p) = &self.principal {
            builder = builder.principal(Principal::new(p));
        }
        match &self.cache {
            Some(c) if !c.enabled => builder = builder.no_cache(),
            Some(c) => builder = builder.cache(c.clone()),
            None => {}
        }
        if let Some(a) = &self.audit
            && a.enabled
        {
            let mut a = a.clone();
            a.path = a.path.as_deref().map(|p| self.path(p));
            a.key_file = a.key_file.as_deref().map(|p| self.path(p));
            let from_store = audit_key::from_store(&a, built.get(&default))
                .await
                .map_err(|e| prefix_error("audit: the chain key from the default store", e))?;
            let by_id = |id: &str| built.get(id).cloned();
            let mut audit = AuditLogBuilder::from_config_with_stores(&a, &by_id)
                .map_err(|e| prefix_error("audit", e))?;
            if let Some(key) = from_store {
                audit = audit.key(key);
            }
            builder = builder.audit(audit);
        }
        if let Some(p) = &self.policy {
            builder = builder.policy(Policy::from_config(p)?);
        }
        if let Some(m) = &self.monitor {
            builder = builder.monitor(m.clone());
        }
        if let Some(r) = &self.rotation {
            builder = builder.rotation_schedule(r.clone());
        }
        builder.build()
    }
}

/// `e` with `at` (the config key it came from) before its message.
fn prefix_error(at: &str, e: Error) -> Error {
    Error::new(e.kind(), format!("{at}: {}", e.message()))
}
