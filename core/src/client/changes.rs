//! The calls that change a store (put, delete, stage moves, restore, namespace erasure),
//! with the audit around them: in strict mode an intent before the change, its outcome after.

use super::*;

impl Sealbox {
    /// Before a change: in strict mode, writes its intent and waits until every durable sink
    /// wrote it (refusing at once while the log is known to be failing), so that nothing
    /// changes without a record. Returns the change's event, whose outcome
    /// [`Sealbox::audit_outcome`] records under the same request id.
    fn audit_intent(&self, action: Action, resource: &Arc<Resource>) -> Result<AuditEvent> {
        let event = self.event(action, resource.clone());
        let Some(a) = &self.inner.audit else {
            return Ok(event);
        };
        if a.mode() != crate::audit::AuditMode::Strict {
            return Ok(event);
        }
        let refused = |event: AuditEvent, reason: &'static str| {
            Err(self.audit_failure(
                event.failed(reason),
                Error::new(
                    ErrorKind::Unavailable,
                    "the audit log could not record the intent of this change and audit mode \
                     is strict; no change was made",
                ),
            ))
        };
        if !a.is_healthy() {
            return refused(
                event,
                "audit sink unavailable; change refused (strict mode)",
            );
        }
        match a.record_intent(&event) {
            Ok(()) => Ok(event),
            // The writer records the refusal itself (the intent is written as refused).
            Err(e) if e.kind() == ErrorKind::Unavailable => Err(Error::new(
                ErrorKind::Unavailable,
                "the audit log could not record the intent of this change and audit mode is \
                 strict; no change was made",
            )
            .with_audit_request_id(event.request_id_text())),
            Err(e) => Err(e),
        }
    }

    /// After a change: records what happened. The change was made (or failed) whatever the
    /// log does: in strict mode a failure to write the outcome in time is the caller's
    /// `Unavailable`, saying the change was made, never a refusal in the log.
    fn audit_outcome(&self, event: AuditEvent) -> Result<()> {
        let Some(a) = &self.inner.audit else {
            return Ok(());
        };
        let id = event.request_id_text();
        a.record_outcome(event).map_err(|e| {
            if e.kind() != ErrorKind::Unavailable {
                return e;
            }
            Error::new(
                ErrorKind::Unavailable,
                "the change was made, but not every durable audit sink wrote its outcome in \
                 time (audit mode strict); the outcome is kept and written as it happened",
            )
            .with_audit_request_id(id)
        })
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
        let event = self.audit_intent(Action::Write, &resource)?;
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
                self.audit_outcome(AuditEvent { resource, ..event })?;
                Ok(info)
            }
            Err(e) => {
                self.inner.metrics.store_error(e.kind());
                Err(self.audit_failure(event.failed(e.kind().as_str()), e))
            }
        }
    }

    /// Deletes `name`.
    pub async fn delete(&self, name: &str, options: &DeleteOptions) -> Result<()> {
        self.alive()?;
        let route = self.inner.router.resolve(name)?;
        let resource = route.resource();
        self.authorize(Capability::Delete, Action::Delete, &resource)?;
        let event = self.audit_intent(Action::Delete, &resource)?;
        self.inner.metrics.writes.incr();
        let result = route.store.delete(&route.name, options).await;
        self.finish_change(event, &route, result)
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
        let event = self.audit_intent(Action::Rotate, &resource)?;
        self.inner.metrics.writes.incr();
        let result = route.store.set_stage(&route.name, stage, version).await;
        self.finish_change(event, &route, result)
    }

    /// Restores a deleted `name`: its versions become readable again, so this needs the
    /// `rotate` capability under a policy, like a stage move. Audited as a `rotate` event.
    pub async fn restore(&self, name: &str) -> Result<()> {
        self.alive()?;
        let route = self.inner.router.resolve(name)?;
        let resource = route.resource();
        self.authorize(Capability::Rotate, Action::Rotate, &resource)?;
        let event = self.audit_intent(Action::Rotate, &resource)?;
        self.inner.metrics.writes.incr();
        let result = route.store.restore(&route.name).await;
        self.finish_change(event, &route, result)
    }

    /// Drops the cached value of a changed secret and audits the change's outcome.
    fn finish_change(&self, event: AuditEvent, route: &Route, result: Result<()>) -> Result<()> {
        if let Some(cache) = &self.inner.cache {
            cache.invalidate(&route.store_id, &route.name);
        }
        match result {
            Ok(()) => self.audit_outcome(event),
            Err(e) => {
                self.inner.metrics.store_error(e.kind());
                Err(self.audit_failure(event.failed(e.kind().as_str()), e))
            }
        }
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
        let mut event = self.audit_intent(Action::Erase, &resource)?;
        self.inner.metrics.writes.incr();
        let result = route.store.erase_namespace(route.name.as_str()).await;
        if let Some(cache) = &self.inner.cache {
            cache.clear();
        }
        match result {
            Ok(erasure) => {
                event.reason = Some(erasure.summary().into());
                self.audit_outcome(event)?;
                Ok(erasure)
            }
            Err(e) => {
                self.inner.metrics.store_error(e.kind());
                Err(self.audit_failure(event.failed(e.kind().as_str()), e))
            }
        }
    }
}
