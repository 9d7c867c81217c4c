//! The end of a training run: the new index built from the active documents and switched in with the
//! job's end in one transaction, a failed job recorded, and superseded index versions pruned.

use super::*;

impl Trainer {
    /// Builds the new index from the active documents, switches the site to it, and ends the job.
    pub(super) async fn finish(&self, run: &mut Run<'_>) -> Result<(), TrainError> {
        let platform = &self.platform;
        let job_id = run.job.job_id.clone();
        let model = run.embedding.as_ref().map(|(c, _)| c.model.clone());
        let mut builder: Option<IndexBuilder> = None;
        let mut active: Vec<&DocumentRecord> = run
            .docs
            .values()
            .filter(|d| d.status == DocumentStatus::Active)
            .collect();
        active.sort_by(|a, b| a.canonical_url.cmp(&b.canonical_url));
        for doc in active {
            let key = documents::chunks_blob_key(
                &run.site.site_id,
                &doc.canonical_url,
                &doc.content_hash,
                doc.embedding_model.as_deref(),
            );
            let Some(blob) = platform.blobs.get(&key).await? else {
                return Err(TrainError::Retryable(format!(
                    "chunks of {} are missing",
                    doc.canonical_url
                )));
            };
            let stored = StoredChunks::decode(&blob.bytes).map_err(|e| {
                TrainError::Retryable(format!("chunks of {}: {e}", doc.canonical_url))
            })?;
            let b = builder.get_or_insert_with(|| {
                IndexBuilder::new(
                    match (&model, stored.vectors.as_ref().and_then(|v| v.first())) {
                        (Some(m), Some(v)) => Some((m.clone(), v.len())),
                        _ => None,
                    },
                )
            });
            for (i, chunk) in stored.chunks.into_iter().enumerate() {
                let vector = stored
                    .vectors
                    .as_ref()
                    .and_then(|v| v.get(i))
                    .map(Vec::as_slice);
                b.add(chunk, vector)
                    .map_err(|e| TrainError::Retryable(format!("building the index: {e}")))?;
            }
        }
        let builder = builder.unwrap_or_else(|| IndexBuilder::new(None));
        let version = run.site.index_version.unwrap_or(0) + 1;
        let index = builder.finish(&run.site.site_id, version, rfc3339(platform.clock.now()));
        let chunk_count = index.chunks.len() as u64;
        let bytes = tokio::task::spawn_blocking(move || index.encode())
            .await
            .map_err(|e| TrainError::Retryable(format!("encoding task: {e}")))?
            .map_err(|e| TrainError::Retryable(e.to_string()))?;
        // The new version is complete before anything points at it.
        platform
            .blobs
            .put(
                &index::blob_key(&run.site.site_id, version),
                bytes,
                "application/octet-stream",
            )
            .await?;

        // Exact counts, from the records this job stamped.
        let mine = |j: &Option<JobId>| j.as_ref() == Some(&job_id);
        let docs: Vec<&DocumentRecord> = run.docs.values().collect();
        let crawled = docs.iter().filter(|d| mine(&d.seen_job)).count() as u64;
        let changed = docs.iter().filter(|d| mine(&d.changed_job)).count() as u64;
        let removed = docs.iter().filter(|d| mine(&d.removed_job)).count() as u64;
        let tokens: u64 = docs
            .iter()
            .filter(|d| mine(&d.changed_job))
            .map(|d| d.embedding_tokens)
            .sum();
        let cost = run
            .embedding
            .as_ref()
            .map_or(MicroUsd::ZERO, |(_, p)| p.cost(tokens, 0));
        let finished = platform.clock.now();
        let now = rfc3339(finished);
        let mut fields = Map::new();
        for (name, value) in [
            ("status", json!(JobStatus::Succeeded)),
            ("pages_crawled", json!(crawled)),
            ("pages_changed", json!(changed)),
            ("pages_removed", json!(removed)),
            ("pages_skipped", json!(run.progress.skipped)),
            ("urls_out_of_scope", json!(run.progress.out_of_scope)),
            ("chunks", json!(chunk_count)),
            ("embedding_tokens", json!(tokens)),
            ("estimated_cost_micros", json!(cost.0)),
            ("embedding_model", json!(model)),
            ("index_version", json!(version)),
            ("error", Value::Null),
            ("finished_at", json!(now.clone())),
        ] {
            fields.insert(name.into(), value);
        }
        let job_write = Write::Update(jobs::job_update(&job_id, fields));
        let switch = |s: &mut Site| {
            s.index_version = Some(version);
            s.status = SiteStatus::Ready;
            s.last_trained_at = Some(finished);
            s.last_training_error = None;
        };
        self.commit(run, switch, job_write).await?;
        tracing::info!(
            version,
            chunks = chunk_count,
            crawled,
            changed,
            removed,
            tokens,
            "training succeeded"
        );
        crate::webhooks::emit(
            platform,
            &run.site.tenant_id,
            crate::webhooks::Event::training_succeeded(
                finished,
                job_id.as_str(),
                run.site.site_id.as_str(),
                json!({"pages_crawled": crawled, "pages_changed": changed, "pages_removed": removed,
                       "chunks": chunk_count, "index_version": version,
                       "estimated_cost_usd": crate::webhooks::events::usd(cost.0)}),
            ),
        )
        .await;
        self.prune(run, version).await;
        Ok(())
    }

    /// Commits a site change with the job's final write, freeing the site's training lock.
    pub(super) async fn commit(
        &self,
        run: &Run<'_>,
        change: impl Fn(&mut Site) + Clone,
        job_write: Write,
    ) -> Result<(), TrainError> {
        let store = self.platform.store.as_ref();
        let clock = self.platform.clock.as_ref();
        let lock = Write::Delete(
            jobs::lock_key(&run.site.site_id),
            Condition::AttributeEquals("job_id".into(), json!(run.job.job_id)),
        );
        let result = sites::update_site_internal(
            store,
            clock,
            &run.site.site_id,
            change.clone(),
            vec![job_write.clone(), lock],
        )
        .await;
        if result.is_ok() || matches!(result, Err(sites::SiteError::Conflict)) {
            // The job ends either way below: its tenant training slot is free for the next one.
            jobs::release_slot(store, run.job).await;
        }
        match result {
            Ok(_) => Ok(()),
            // The lock is not ours any more (it expired, or another job holds it): commit without it.
            Err(sites::SiteError::Conflict) => {
                sites::update_site_internal(
                    store,
                    clock,
                    &run.site.site_id,
                    change,
                    vec![job_write],
                )
                .await?;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Ends a job as failed: the site keeps serving its previous index (or shows `failed` if it has none).
    pub(super) async fn fail(&self, job: &TrainingJob, reason: &str) -> Result<(), TrainError> {
        let store = self.platform.store.as_ref();
        if let Err(e) =
            checkpoint::delete(self.platform.blobs.as_ref(), &job.site_id, &job.job_id).await
        {
            tracing::warn!(error = %e, "could not delete the failed job's checkpoint");
        }
        let mut fields = Map::new();
        fields.insert("status".into(), json!(JobStatus::Failed));
        fields.insert("error".into(), json!(reason));
        fields.insert(
            "finished_at".into(),
            json!(rfc3339(self.platform.clock.now())),
        );
        let update = jobs::job_update(&job.job_id, fields);
        let Some(site) = sites::find_site(store, &job.site_id).await? else {
            // The site is gone: end the job alone.
            store.update(update).await?;
            jobs::release_slot(store, job).await;
            return Ok(());
        };
        let job_write = Write::Update(update);
        let tenant = tenants::get_tenant(store, &site.tenant_id)
            .await
            .map_err(|e| TrainError::Retryable(format!("reading the tenant: {e}")))?;
        let run = Run {
            job,
            site,
            tenant,
            embedding: None,
            reusable: HashMap::new(),
            docs: HashMap::new(),
            by_url: HashMap::new(),
            progress: Progress::default(),
        };
        let (tenant_id, site_id) = (run.site.tenant_id.clone(), run.site.site_id.clone());
        let reason = reason.to_string();
        let event = crate::webhooks::Event::training_failed(
            self.platform.clock.now(),
            job.job_id.as_str(),
            site_id.as_str(),
            &reason,
        );
        let change = move |s: &mut Site| {
            s.status = if s.index_version.is_some() {
                SiteStatus::Ready
            } else {
                SiteStatus::Failed
            };
            s.last_training_error = Some(reason.clone());
        };
        self.commit(&run, change, job_write).await?;
        crate::webhooks::emit(&self.platform, &tenant_id, event).await;
        Ok(())
    }

    /// Deletes index versions older than the ones worth keeping, and the chunks of removed documents.
    /// Best effort: leftovers cost storage, never correctness.
    pub(super) async fn prune(&self, run: &Run<'_>, current: u64) {
        let blobs = &self.platform.blobs;
        let oldest_kept = current.saturating_sub(KEEP_OLD_VERSIONS as u64);
        match blobs.list(&index::blob_prefix(&run.site.site_id)).await {
            Ok(entries) => {
                for entry in entries {
                    let version = entry
                        .key
                        .rsplit('/')
                        .next()
                        .and_then(|file| file.split('.').next())
                        .and_then(|v| v.parse::<u64>().ok());
                    if version.is_some_and(|v| v < oldest_kept)
                        && let Err(e) = blobs.delete(&entry.key).await
                    {
                        tracing::warn!(error = %e, key = entry.key, "could not prune an old index version");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not list index versions to prune"),
        }
        for doc in run
            .docs
            .values()
            .filter(|d| d.removed_job.as_ref() == Some(&run.job.job_id))
        {
            let key = documents::chunks_blob_key(
                &run.site.site_id,
                &doc.canonical_url,
                &doc.content_hash,
                doc.embedding_model.as_deref(),
            );
            if let Err(e) = blobs.delete(&key).await {
                tracing::warn!(error = %e, key, "could not delete a removed document's chunks");
            }
        }
    }
}
