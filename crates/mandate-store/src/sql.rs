//! The repository implemented once, in SQL both backends accept, for each backend that provides
//! the few things that differ (see [`impl_sql_store`]).

/// Implements [`crate::Store`], [`crate::DecisionStore`] and [`crate::Ledger`] for `$store`, a
/// backend over the sqlx database `$db`. The backend's module provides, in scope where this is
/// invoked:
/// - `db(sqlx::Error) -> StoreError`, its error mapping;
/// - `append(&mut Transaction<$db>, &NewEvent) -> Result<i64, StoreError>`, appending an event
///   inside a transaction that also changes state;
/// - optionally, in braces, more methods of [`crate::Store`] (those whose default does not fit);
/// - on `$store`: `reads()` and `writes()` (its pools for reads and for writes that append
///   nothing), `write_tx()` (a transaction that may append), `verify_snapshot(&VerifyOptions)`,
///   and `group`, its group-committing ledger writer (`append`, `append_deferred`, `running`,
///   `healthy`, `mark_healthy`).
///
/// Every statement is the same text on both backends, so that what one backend does the other
/// does too; what cannot be the same (locking, the writer, verification's snapshot) is the
/// backend's own.
macro_rules! impl_sql_store {
    ($store:ty, $db:ty $(, { $($store_extra:tt)* })?) => {
        const _: () = {
            use $crate::decisions::{
                AllowedCall, ApprovalRecord, DecisionStore, IntentRecord, OpenedApproval, PinRecord, PolicyVersion,
                ToolRecord,
            };
            use $crate::ledger::{Ledger, LedgerQuery, Reach, VerifyOptions, VerifyReport};
            use $crate::rows::{self, approval, chains_reached_sql, corrupt, millis, push_filters, tool, APPROVAL_COLUMNS, EVENT_COLUMNS, MANDATE_COLUMNS, TOOL_COLUMNS};
            use $crate::{
                AgentChange, AgentFilter, AgentVersion, CredentialOwner, EventFilter, MandateSelector, Revocation, Store,
                StoreError, StoredMandate,
            };
            use async_trait::async_trait;
            use mandate_core::agent::Agent;
            use mandate_core::event::{Event, NewEvent};
            use mandate_core::human::Human;
            use mandate_core::id::{AgentId, HumanId};
            use mandate_core::ledger::{Checkpoint, LedgerHead};
            use mandate_core::mandate::MandateRecord;
            use sqlx::{QueryBuilder, Row};

            fn agent_from_doc(doc: &str) -> Result<Agent, StoreError> {
                serde_json::from_str(doc).map_err(|e| corrupt("agent", e))
            }

            fn human_from_doc(doc: &str) -> Result<Human, StoreError> {
                serde_json::from_str(doc).map_err(|e| corrupt("human", e))
            }

            /// Revokes `ids` inside `tx`; those already revoked keep their first revocation.
            async fn revoke_in(
                tx: &mut sqlx::Transaction<'_, $db>,
                ids: &[String],
                revocation: &Revocation,
            ) -> Result<(), StoreError> {
                for id in ids {
                    sqlx::query(
                        "UPDATE mandates SET revoked_at = $1, revoked_by = $2, revoke_reason = $3 WHERE id = $4 AND revoked_at IS NULL",
                    )
                    .bind(revocation.at)
                    .bind(&revocation.by)
                    .bind(&revocation.reason)
                    .bind(id)
                    .execute(&mut **tx)
                    .await
                    .map_err(db)?;
                }
                Ok(())
            }

        #[async_trait]
        impl Store for $store {
            $($($store_extra)*)?

            async fn record_agent_change(&self, change: AgentChange<'_>) -> Result<i64, StoreError> {
                let after = change.after;
                let doc = serde_json::to_string(after).map_err(|e| corrupt("agent", e))?;
                let before_doc = change.before.map(serde_json::to_string).transpose().map_err(|e| corrupt("agent", e))?;
                let mut tx = self.write_tx().await?;
                match change.before {
                    None => {
                        sqlx::query(
                            "INSERT INTO agents (id, owner, environment, state, class, version, created_ms, updated_ms, doc) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                        )
                        .bind(after.id.as_str())
                        .bind(after.owner.as_str())
                        .bind(after.environment.as_str())
                        .bind(after.state.as_str())
                        .bind(after.class.as_str())
                        .bind(after.version)
                        .bind(millis(after.created_at))
                        .bind(millis(after.updated_at))
                        .bind(&doc)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| match db(e) {
                            StoreError::Conflict(_) => StoreError::Conflict(format!("agent `{}` already exists", after.id)),
                            other => other,
                        })?;
                    }
                    Some(before) => {
                        let updated = sqlx::query(
                            "UPDATE agents SET owner = $1, environment = $2, state = $3, class = $4, version = $5, updated_ms = $6, doc = $7 \
                             WHERE id = $8 AND version = $9",
                        )
                        .bind(after.owner.as_str())
                        .bind(after.environment.as_str())
                        .bind(after.state.as_str())
                        .bind(after.class.as_str())
                        .bind(after.version)
                        .bind(millis(after.updated_at))
                        .bind(&doc)
                        .bind(after.id.as_str())
                        .bind(before.version)
                        .execute(&mut *tx)
                        .await
                        .map_err(db)?;
                        if updated.rows_affected() != 1 {
                            return Err(StoreError::Conflict(format!(
                                "agent `{}` changed since version {} was read; read it again and retry",
                                after.id, before.version
                            )));
                        }
                    }
                }
                sqlx::query(
                    "INSERT INTO agent_versions (agent_id, version, at_ms, actor, action, before_doc, after_doc) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(after.id.as_str())
                .bind(after.version)
                .bind(change.event.at_ms)
                .bind(&change.event.actor)
                .bind(change.action)
                .bind(before_doc)
                .bind(&doc)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                let seq = append(&mut tx, &change.event).await?;
                if let Some(r) = &change.revoke {
                    revoke_in(&mut tx, &r.ids, &r.revocation).await?;
                    append(&mut tx, &r.event).await?;
                }
                tx.commit().await.map_err(db)?;
                Ok(seq)
            }

            async fn agent(&self, id: &AgentId) -> Result<Option<Agent>, StoreError> {
                let doc: Option<String> = sqlx::query_scalar("SELECT doc FROM agents WHERE id = $1")
                    .bind(id.as_str())
                    .fetch_optional(self.reads())
                    .await
                    .map_err(db)?;
                doc.as_deref().map(agent_from_doc).transpose()
            }

            async fn agents(&self, filter: &AgentFilter) -> Result<Vec<Agent>, StoreError> {
                let mut q: QueryBuilder<$db> = QueryBuilder::new("SELECT doc FROM agents WHERE 1 = 1");
                if let Some(owner) = &filter.owner {
                    q.push(" AND owner = ").push_bind(owner.as_str().to_owned());
                }
                if let Some(env) = filter.environment {
                    q.push(" AND environment = ").push_bind(env.as_str());
                }
                if let Some(state) = filter.state {
                    q.push(" AND state = ").push_bind(state.as_str());
                }
                q.push(" ORDER BY id");
                let rows = q.build().fetch_all(self.reads()).await.map_err(db)?;
                rows.iter().map(|r| agent_from_doc(&r.try_get::<String, _>("doc").map_err(db)?)).collect()
            }

            async fn agent_history(&self, id: &AgentId) -> Result<Vec<AgentVersion>, StoreError> {
                let rows = sqlx::query(
                    "SELECT version, at_ms, actor, action, before_doc, after_doc FROM agent_versions WHERE agent_id = $1 ORDER BY version",
                )
                .bind(id.as_str())
                .fetch_all(self.reads())
                .await
                .map_err(db)?;
                rows.iter().map(rows::agent_version).collect()
            }

            async fn create_human(&self, human: &Human, key_hash: &str, event: NewEvent) -> Result<i64, StoreError> {
                let doc = serde_json::to_string(human).map_err(|e| corrupt("human", e))?;
                let mut tx = self.write_tx().await?;
                sqlx::query("INSERT INTO humans (id, active, created_ms, doc) VALUES ($1, $2, $3, $4)")
                    .bind(human.id.as_str())
                    .bind(human.active)
                    .bind(millis(human.created_at))
                    .bind(&doc)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| match db(e) {
                        StoreError::Conflict(_) => StoreError::Conflict(format!("human `{}` already exists", human.id)),
                        other => other,
                    })?;
                sqlx::query("INSERT INTO credentials (key_hash, kind, human_id, created_ms) VALUES ($1, 'human', $2, $3)")
                    .bind(key_hash)
                    .bind(human.id.as_str())
                    .bind(event.at_ms)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                let seq = append(&mut tx, &event).await?;
                tx.commit().await.map_err(db)?;
                Ok(seq)
            }

            async fn update_human(&self, human: &Human, event: NewEvent) -> Result<i64, StoreError> {
                let doc = serde_json::to_string(human).map_err(|e| corrupt("human", e))?;
                let mut tx = self.write_tx().await?;
                let updated = sqlx::query("UPDATE humans SET active = $1, doc = $2 WHERE id = $3")
                    .bind(human.active)
                    .bind(&doc)
                    .bind(human.id.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                if updated.rows_affected() != 1 {
                    return Err(StoreError::Conflict(format!("human `{}` does not exist", human.id)));
                }
                let seq = append(&mut tx, &event).await?;
                tx.commit().await.map_err(db)?;
                Ok(seq)
            }

            async fn human(&self, id: &HumanId) -> Result<Option<Human>, StoreError> {
                let doc: Option<String> = sqlx::query_scalar("SELECT doc FROM humans WHERE id = $1")
                    .bind(id.as_str())
                    .fetch_optional(self.reads())
                    .await
                    .map_err(db)?;
                doc.as_deref().map(human_from_doc).transpose()
            }

            async fn humans(&self) -> Result<Vec<Human>, StoreError> {
                let docs: Vec<String> =
                    sqlx::query_scalar("SELECT doc FROM humans ORDER BY id").fetch_all(self.reads()).await.map_err(db)?;
                docs.iter().map(|d| human_from_doc(d)).collect()
            }

            async fn credential(&self, key_hash: &str) -> Result<Option<CredentialOwner>, StoreError> {
                let row = sqlx::query(
                    "SELECT c.kind, h.doc, h.active FROM credentials c LEFT JOIN humans h ON h.id = c.human_id WHERE c.key_hash = $1",
                )
                .bind(key_hash)
                .fetch_optional(self.reads())
                .await
                .map_err(db)?;
                let Some(row) = row else { return Ok(None) };
                let kind: String = row.try_get("kind").map_err(db)?;
                if kind == "admin" {
                    return Ok(Some(CredentialOwner::Admin));
                }
                let active: Option<bool> = row.try_get("active").map_err(db)?;
                let doc: Option<String> = row.try_get("doc").map_err(db)?;
                match (active, doc) {
                    (Some(true), Some(doc)) => Ok(Some(CredentialOwner::Human(human_from_doc(&doc)?))),
                    // A deactivated human's keys stop working at once.
                    _ => Ok(None),
                }
            }

            async fn has_admin_credential(&self) -> Result<bool, StoreError> {
                let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM credentials WHERE kind = 'admin'")
                    .fetch_one(self.reads())
                    .await
                    .map_err(db)?;
                Ok(n > 0)
            }

            async fn set_admin_credential(&self, key_hash: &str, event: NewEvent) -> Result<i64, StoreError> {
                let mut tx = self.write_tx().await?;
                sqlx::query("DELETE FROM credentials WHERE kind = 'admin'").execute(&mut *tx).await.map_err(db)?;
                sqlx::query("INSERT INTO credentials (key_hash, kind, human_id, created_ms) VALUES ($1, 'admin', NULL, $2)")
                    .bind(key_hash)
                    .bind(event.at_ms)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                let seq = append(&mut tx, &event).await?;
                tx.commit().await.map_err(db)?;
                Ok(seq)
            }

            async fn append_event_deferred(&self, event: NewEvent) -> Result<(), StoreError> {
                self.group.append_deferred(event).await
            }

            async fn append_event(&self, event: NewEvent) -> Result<i64, StoreError> {
                // Group commit: returns once the batch holding the event has committed (FULL sync).
                self.group.append(event).await
            }

            async fn events(&self, filter: &EventFilter) -> Result<Vec<Event>, StoreError> {
                let mut q: QueryBuilder<$db> = QueryBuilder::new(
                    format!("{} WHERE 1 = 1", rows::EVENT_COLUMNS),
                );
                if let Some(agent) = &filter.agent {
                    q.push(" AND agent_id = ").push_bind(agent.as_str().to_owned());
                }
                if let Some(kind) = &filter.kind {
                    q.push(" AND kind = ").push_bind(kind.clone());
                }
                if let Some(after) = filter.after_seq {
                    q.push(" AND seq > ").push_bind(after);
                }
                if let Some(through) = filter.through_seq {
                    q.push(" AND seq <= ").push_bind(through);
                }
                if !filter.kinds.is_empty() {
                    q.push(" AND kind IN (");
                    let mut kinds = q.separated(", ");
                    for kind in &filter.kinds {
                        kinds.push_bind(kind.clone());
                    }
                    q.push(")");
                }
                q.push(" ORDER BY seq LIMIT ").push_bind(filter.limit.clamp(1, 10_000));
                let rows = q.build().fetch_all(self.reads()).await.map_err(db)?;
                rows.iter().map(rows::event).collect()
            }

            async fn insert_mandate(&self, record: &MandateRecord, kid: &str, event: NewEvent) -> Result<i64, StoreError> {
                let doc = serde_json::to_string(record).map_err(|e| corrupt("mandate", e))?;
                let mut tx = self.write_tx().await?;
                sqlx::query(
                    "INSERT INTO mandates (id, chain_id, parent_id, depth, agent_id, root, issued_at, expires_at, max_calls, kid, doc) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                )
                .bind(&record.id)
                .bind(&record.chain_id)
                .bind(&record.parent_id)
                .bind(i64::from(record.depth))
                .bind(record.agent.as_str())
                .bind(record.root.as_str())
                .bind(record.issued_at)
                .bind(record.expires_at)
                .bind(i64::try_from(record.max_calls).unwrap_or(i64::MAX))
                .bind(kid)
                .bind(&doc)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                for agent in &record.chain_agents {
                    sqlx::query("INSERT INTO mandate_agents (mandate_id, agent_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                        .bind(&record.id)
                        .bind(agent.as_str())
                        .execute(&mut *tx)
                        .await
                        .map_err(db)?;
                }
                let seq = append(&mut tx, &event).await?;
                tx.commit().await.map_err(db)?;
                Ok(seq)
            }

            async fn mandate(&self, id: &str) -> Result<Option<StoredMandate>, StoreError> {
                let row = sqlx::query(&format!("{MANDATE_COLUMNS} WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(self.reads())
                    .await
                    .map_err(db)?;
                row.as_ref().map(rows::mandate).transpose()
            }

            async fn chain(&self, chain_id: &str) -> Result<Vec<StoredMandate>, StoreError> {
                let rows = sqlx::query(&format!("{MANDATE_COLUMNS} WHERE chain_id = $1 ORDER BY depth, issued_at, id"))
                    .bind(chain_id)
                    .fetch_all(self.reads())
                    .await
                    .map_err(db)?;
                rows.iter().map(rows::mandate).collect()
            }

            async fn live_mandates(&self, selector: &MandateSelector, now: i64) -> Result<Vec<(String, i64)>, StoreError> {
                let live = "revoked_at IS NULL AND expires_at > $2";
                let ids: Vec<(String, i64)> = match selector {
                    MandateSelector::Subtree(id) => {
                        let Some(top) = self.mandate(id).await? else { return Ok(Vec::new()) };
                        self.chain(&top.record.chain_id)
                            .await?
                            .into_iter()
                            .filter(|m| m.record.id == *id || m.record.lineage.contains(id))
                            .filter(|m| m.revocation.is_none() && m.record.expires_at > now)
                            .map(|m| (m.record.id, m.record.expires_at))
                            .collect()
                    }
                    MandateSelector::Chain(chain) => {
                        sqlx::query_as(&format!("SELECT id, expires_at FROM mandates WHERE chain_id = $1 AND {live} ORDER BY id"))
                            .bind(chain)
                            .bind(now)
                            .fetch_all(self.reads())
                            .await
                            .map_err(db)?
                    }
                    MandateSelector::Root(root) => {
                        sqlx::query_as(&format!("SELECT id, expires_at FROM mandates WHERE root = $1 AND {live} ORDER BY id"))
                            .bind(root.as_str())
                            .bind(now)
                            .fetch_all(self.reads())
                            .await
                            .map_err(db)?
                    }
                    MandateSelector::Agent(agent) => sqlx::query_as(&format!(
                        "SELECT id, expires_at FROM mandates WHERE id IN (SELECT mandate_id FROM mandate_agents WHERE agent_id = $1) AND {live} ORDER BY id"
                    ))
                    .bind(agent.as_str())
                    .bind(now)
                    .fetch_all(self.reads())
                    .await
                    .map_err(db)?,
                };
                Ok(ids)
            }

            async fn revoke_mandates(
                &self,
                ids: &[String],
                revocation: &Revocation,
                event: NewEvent,
            ) -> Result<i64, StoreError> {
                let mut tx = self.write_tx().await?;
                revoke_in(&mut tx, ids, revocation).await?;
                let seq = append(&mut tx, &event).await?;
                tx.commit().await.map_err(db)?;
                Ok(seq)
            }

            async fn revoked_unexpired(&self, now: i64) -> Result<Vec<(String, i64)>, StoreError> {
                sqlx::query_as("SELECT id, expires_at FROM mandates WHERE revoked_at IS NOT NULL AND expires_at > $1")
                    .bind(now)
                    .fetch_all(self.reads())
                    .await
                    .map_err(db)
            }

            async fn ready(&self) -> Result<(), StoreError> {
                sqlx::query_scalar::<_, i64>("SELECT CAST(1 AS BIGINT)").fetch_one(self.reads()).await.map_err(db)?;
                if !self.group.running() {
                    return Err(StoreError::Database("the ledger writer has stopped".into()));
                }
                if !self.group.healthy() {
                    // The last batch failed. A durable write tells whether the fault is gone; it changes
                    // only the store's own bookkeeping.
                    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
                    sqlx::query("INSERT INTO meta (key, value) VALUES ('ready_probe', $1) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
                        .bind(now.to_string())
                        .execute(self.writes())
                        .await
                        .map_err(db)?;
                    self.group.mark_healthy();
                }
                Ok(())
            }

            async fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
                sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
                    .bind(key)
                    .fetch_optional(self.reads())
                    .await
                    .map_err(db)
            }

            async fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                )
                .bind(key)
                .bind(value)
                .execute(self.writes())
                .await
                .map_err(db)?;
                Ok(())
            }
        }

        #[async_trait]
        impl DecisionStore for $store {
            async fn upsert_tool(&self, t: &ToolRecord, event: NewEvent) -> Result<i64, StoreError> {
                let mut tx = self.write_tx().await?;
                sqlx::query(
                    "INSERT INTO tools (name, server, data_class, risk, server_environment, source, updated_ms, updated_by) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (name) DO UPDATE SET server = excluded.server, \
                     data_class = excluded.data_class, risk = excluded.risk, server_environment = excluded.server_environment, \
                     source = excluded.source, updated_ms = excluded.updated_ms, updated_by = excluded.updated_by",
                )
                .bind(&t.name)
                .bind(&t.server)
                .bind(&t.data_class)
                .bind(&t.risk)
                .bind(&t.server_environment)
                .bind(&t.source)
                .bind(t.updated_ms)
                .bind(&t.updated_by)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                let seq = append(&mut tx, &event).await?;
                tx.commit().await.map_err(db)?;
                Ok(seq)
            }

            async fn upsert_pin(&self, p: &PinRecord, event: NewEvent) -> Result<i64, StoreError> {
                let flags = serde_json::to_string(&p.flags).map_err(|e| StoreError::Database(e.to_string()))?;
                let mut tx = self.write_tx().await?;
                sqlx::query(
                    "INSERT INTO tool_pins (name, server, pinned_sha256, pinned_definition, pending_sha256, pending_definition, \
                     flags, updated_ms, updated_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (name) DO UPDATE SET \
                     server = excluded.server, pinned_sha256 = excluded.pinned_sha256, pinned_definition = excluded.pinned_definition, \
                     pending_sha256 = excluded.pending_sha256, pending_definition = excluded.pending_definition, \
                     flags = excluded.flags, updated_ms = excluded.updated_ms, updated_by = excluded.updated_by",
                )
                .bind(&p.name)
                .bind(&p.server)
                .bind(&p.pinned_sha256)
                .bind(&p.pinned_definition)
                .bind(&p.pending_sha256)
                .bind(&p.pending_definition)
                .bind(&flags)
                .bind(p.updated_ms)
                .bind(&p.updated_by)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                let seq = append(&mut tx, &event).await?;
                tx.commit().await.map_err(db)?;
                Ok(seq)
            }

            async fn put_intent(&self, i: &IntentRecord, event: NewEvent) -> Result<i64, StoreError> {
                let mut tx = self.write_tx().await?;
                sqlx::query(
                    "INSERT INTO intent_categories (name, body, updated_ms, updated_by) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (name) DO UPDATE SET body = excluded.body, updated_ms = excluded.updated_ms, \
                     updated_by = excluded.updated_by",
                )
                .bind(&i.name)
                .bind(&i.body)
                .bind(i.updated_ms)
                .bind(&i.updated_by)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                let seq = append(&mut tx, &event).await?;
                tx.commit().await.map_err(db)?;
                Ok(seq)
            }

            async fn intents(&self) -> Result<Vec<IntentRecord>, StoreError> {
                let rows: Vec<(String, Option<String>, i64, String)> =
                    sqlx::query_as("SELECT name, body, updated_ms, updated_by FROM intent_categories ORDER BY name")
                        .fetch_all(self.reads())
                        .await
                        .map_err(db)?;
                Ok(rows
                    .into_iter()
                    .map(|(name, body, updated_ms, updated_by)| IntentRecord { name, body, updated_ms, updated_by })
                    .collect())
            }

            async fn save_drift_profiles(&self, profiles: &[(String, String)], at_ms: i64) -> Result<(), StoreError> {
                let mut tx = self.write_tx().await?;
                for (category, body) in profiles {
                    sqlx::query(
                        "INSERT INTO drift_profiles (category, body, updated_ms) VALUES ($1, $2, $3) \
                         ON CONFLICT (category) DO UPDATE SET body = excluded.body, updated_ms = excluded.updated_ms",
                    )
                    .bind(category)
                    .bind(body)
                    .bind(at_ms)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                }
                tx.commit().await.map_err(db)?;
                Ok(())
            }

            async fn drift_profiles(&self) -> Result<Vec<(String, String)>, StoreError> {
                sqlx::query_as("SELECT category, body FROM drift_profiles ORDER BY category")
                    .fetch_all(self.reads())
                    .await
                    .map_err(db)
            }

            async fn reset_drift_profile(&self, category: &str, event: NewEvent) -> Result<i64, StoreError> {
                let mut tx = self.write_tx().await?;
                sqlx::query("DELETE FROM drift_profiles WHERE category = $1")
                    .bind(category)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                let seq = append(&mut tx, &event).await?;
                tx.commit().await.map_err(db)?;
                Ok(seq)
            }

            async fn pins(&self) -> Result<Vec<PinRecord>, StoreError> {
                let rows = sqlx::query(&format!("{} ORDER BY name", rows::PIN_COLUMNS))
                    .fetch_all(self.reads())
                    .await
                    .map_err(db)?;
                rows.iter().map(rows::pin).collect()
            }

            async fn tool(&self, name: &str) -> Result<Option<ToolRecord>, StoreError> {
                let row = sqlx::query(&format!("{TOOL_COLUMNS} WHERE name = $1"))
                    .bind(name)
                    .fetch_optional(self.reads())
                    .await
                    .map_err(db)?;
                row.as_ref().map(tool).transpose()
            }

            async fn tools(&self) -> Result<Vec<ToolRecord>, StoreError> {
                let rows = sqlx::query(&format!("{TOOL_COLUMNS} ORDER BY name")).fetch_all(self.reads()).await.map_err(db)?;
                rows.iter().map(tool).collect()
            }

            async fn insert_policy_version(
                &self,
                text: &str,
                sha256: &str,
                by: &str,
                at_ms: i64,
                event: NewEvent,
            ) -> Result<i64, StoreError> {
                let mut tx = self.write_tx().await?;
                let next: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) + 1 FROM policy_versions")
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db)?;
                sqlx::query(
                    "INSERT INTO policy_versions (version, sha256, text, created_ms, created_by) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(next)
                .bind(sha256)
                .bind(text)
                .bind(at_ms)
                .bind(by)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                append(&mut tx, &rows::with_policy_version(event, next)).await?;
                tx.commit().await.map_err(db)?;
                Ok(next)
            }

            async fn latest_policy(&self) -> Result<Option<PolicyVersion>, StoreError> {
                let row = sqlx::query(
                    "SELECT version, sha256, text, created_ms, created_by FROM policy_versions ORDER BY version DESC LIMIT 1",
                )
                .fetch_optional(self.reads())
                .await
                .map_err(db)?;
                row.as_ref().map(rows::policy_version).transpose()
            }

            async fn allow_counts(&self, after: i64) -> Result<Vec<(String, u64)>, StoreError> {
                // Through the chains' roots (a descendant never outlives its root, and an ancestor's budget
                // counts its descendants' calls), and the events' chain index.
                let rows: Vec<(String, i64)> = sqlx::query_as(
                    "SELECT e.mandate_id, COUNT(*) FROM mandates m JOIN events e ON e.chain_id = m.id \
                     WHERE m.parent_id IS NULL AND m.expires_at > $1 AND e.kind = 'decision' AND e.decision = 'allow' \
                     AND e.mandate_id IS NOT NULL GROUP BY e.mandate_id ORDER BY e.mandate_id",
                )
                .bind(after)
                .fetch_all(self.reads())
                .await
                .map_err(db)?;
                Ok(rows.into_iter().map(|(id, n)| (id, u64::try_from(n).unwrap_or(0))).collect())
            }

            async fn allowed_calls_of_chains_ending_after(&self, after: i64) -> Result<Vec<AllowedCall>, StoreError> {
                let rows: Vec<rows::AllowedRow> = sqlx::query_as(
                    "SELECT e.chain_id, m.expires_at, e.agent_id, e.tool, e.resource, e.detail, e.at_ms \
                     FROM mandates m JOIN events e ON e.chain_id = m.id \
                     WHERE m.parent_id IS NULL AND m.expires_at > $1 AND e.kind = 'decision' AND e.decision = 'allow' \
                     ORDER BY e.seq",
                )
                .bind(after)
                .fetch_all(self.reads())
                .await
                .map_err(db)?;
                rows.into_iter().map(rows::allowed_call).collect()
            }

            async fn allow_counts_in_chain(&self, chain_id: &str) -> Result<Vec<(String, u64)>, StoreError> {
                let rows: Vec<(String, i64)> = sqlx::query_as(
                    "SELECT mandate_id, COUNT(*) FROM events WHERE chain_id = $1 AND kind = 'decision' \
                     AND decision = 'allow' AND mandate_id IS NOT NULL GROUP BY mandate_id",
                )
                .bind(chain_id)
                .fetch_all(self.reads())
                .await
                .map_err(db)?;
                Ok(rows.into_iter().map(|(id, n)| (id, u64::try_from(n).unwrap_or(0))).collect())
            }

            async fn last_activity(&self) -> Result<Vec<(String, i64)>, StoreError> {
                sqlx::query_as(
                    "SELECT agent_id, MAX(at_ms) FROM events WHERE kind = 'decision' AND agent_id IS NOT NULL GROUP BY agent_id",
                )
                .fetch_all(self.reads())
                .await
                .map_err(db)
            }

            async fn approval(&self, id: &str) -> Result<Option<ApprovalRecord>, StoreError> {
                let row = sqlx::query(&format!("{APPROVAL_COLUMNS} WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(self.reads())
                    .await
                    .map_err(db)?;
                row.as_ref().map(approval).transpose()
            }

            async fn open_approval(
                &self,
                a: &ApprovalRecord,
                event: NewEvent,
                max_pending: usize,
            ) -> Result<OpenedApproval, StoreError> {
                // The store has one writer connection, so reading the mandate's pending approvals and
                // inserting inside this transaction cannot interleave with another call's.
                let mut tx = self.write_tx().await?;
                let rows = sqlx::query(&format!(
                    "{APPROVAL_COLUMNS} WHERE mandate_id = $1 AND status = 'pending' AND expires_ms > $2 ORDER BY created_ms, id"
                ))
                .bind(&a.mandate_id)
                .bind(a.created_ms)
                .fetch_all(&mut *tx)
                .await
                .map_err(db)?;
                let pending = rows.iter().map(approval).collect::<Result<Vec<_>, _>>()?;
                if let Some(outcome) = rows::pending_outcome(&pending, a, max_pending) {
                    return Ok(outcome);
                }
                sqlx::query(
                    "INSERT INTO approvals (id, mandate_id, chain_id, agent_id, tool, resource, arguments_hash, status, created_ms, expires_ms, doc) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                )
                .bind(&a.id)
                .bind(&a.mandate_id)
                .bind(&a.chain_id)
                .bind(&a.agent)
                .bind(&a.tool)
                .bind(&a.resource)
                .bind(&a.arguments_hash)
                .bind(&a.status)
                .bind(a.created_ms)
                .bind(a.expires_ms)
                .bind(a.detail.to_string())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                let seq = append(&mut tx, &event).await?;
                tx.commit().await.map_err(db)?;
                Ok(OpenedApproval::Created(seq))
            }

            async fn approvals(&self, status: Option<&str>, limit: i64) -> Result<Vec<ApprovalRecord>, StoreError> {
                let rows = match status {
                    Some(s) => {
                        sqlx::query(&format!("{APPROVAL_COLUMNS} WHERE status = $1 ORDER BY created_ms DESC, id LIMIT $2"))
                            .bind(s)
                            .bind(limit)
                            .fetch_all(self.reads())
                            .await
                    }
                    None => {
                        sqlx::query(&format!("{APPROVAL_COLUMNS} ORDER BY created_ms DESC, id LIMIT $1"))
                            .bind(limit)
                            .fetch_all(self.reads())
                            .await
                    }
                }
                .map_err(db)?;
                rows.iter().map(approval).collect()
            }

            async fn transition_approval(
                &self,
                id: &str,
                from: &str,
                to: &str,
                by: Option<&str>,
                at_ms: i64,
                event: NewEvent,
            ) -> Result<Option<i64>, StoreError> {
                let mut tx = self.write_tx().await?;
                let sql = if to == "used" {
                    "UPDATE approvals SET status = $1, used_ms = $2 WHERE id = $3 AND status = $4"
                } else {
                    "UPDATE approvals SET status = $1, decided_ms = $2, decided_by = $5 WHERE id = $3 AND status = $4"
                };
                let mut q = sqlx::query(sql).bind(to).bind(at_ms).bind(id).bind(from);
                if to != "used" {
                    q = q.bind(by);
                }
                let updated = q.execute(&mut *tx).await.map_err(db)?;
                if updated.rows_affected() != 1 {
                    return Ok(None);
                }
                let seq = append(&mut tx, &event).await?;
                tx.commit().await.map_err(db)?;
                Ok(Some(seq))
            }
        }

        #[async_trait]
        impl Ledger for $store {
            async fn query_events(&self, f: &LedgerQuery) -> Result<Vec<Event>, StoreError> {
                let mut q: QueryBuilder<$db> = QueryBuilder::new(EVENT_COLUMNS);
                q.push(" WHERE 1 = 1");
                push_filters(&mut q, f);
                q.push(if f.newest { " ORDER BY seq DESC" } else { " ORDER BY seq" });
                q.push(" LIMIT ").push_bind(f.limit.clamp(1, 10_000));
                let rows = q.build().fetch_all(self.reads()).await.map_err(db)?;
                let mut events = rows.iter().map(rows::event).collect::<Result<Vec<_>, _>>()?;
                if f.newest {
                    events.reverse();
                }
                Ok(events)
            }

            async fn head(&self) -> Result<Option<LedgerHead>, StoreError> {
                let head: Option<(i64, String)> = sqlx::query_as("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1")
                    .fetch_optional(self.reads())
                    .await
                    .map_err(db)?;
                Ok(head.map(|(seq, hash)| LedgerHead { seq, hash }))
            }

            async fn verify(&self, options: &VerifyOptions) -> Result<VerifyReport, StoreError> {
                self.verify_snapshot(options).await
            }

            async fn insert_checkpoint(&self, c: &Checkpoint) -> Result<(), StoreError> {
                let jwk = serde_json::to_string(&c.public_key_jwk).map_err(|e| corrupt("checkpoint", e))?;
                sqlx::query(
                    "INSERT INTO ledger_checkpoints (seq, hash, at_ms, kid, public_key_jwk, signature) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (seq) DO NOTHING",
                )
                .bind(c.seq)
                .bind(&c.hash)
                .bind(c.at_ms)
                .bind(&c.kid)
                .bind(jwk)
                .bind(&c.signature)
                .execute(self.writes())
                .await
                .map_err(db)?;
                Ok(())
            }

            async fn checkpoints(&self, after_seq: i64, limit: i64) -> Result<Vec<Checkpoint>, StoreError> {
                let rows = sqlx::query("SELECT * FROM ledger_checkpoints WHERE seq > $1 ORDER BY seq LIMIT $2")
                    .bind(after_seq)
                    .bind(limit.clamp(1, 10_000))
                    .fetch_all(self.reads())
                    .await
                    .map_err(db)?;
                rows.iter().map(|r| rows::checkpoint(r)?.map_err(StoreError::Corrupt)).collect()
            }

            async fn latest_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
                let row = sqlx::query("SELECT * FROM ledger_checkpoints ORDER BY seq DESC LIMIT 1")
                    .fetch_optional(self.reads())
                    .await
                    .map_err(db)?;
                row.as_ref().map(|r| rows::checkpoint(r)?.map_err(StoreError::Corrupt)).transpose()
            }

            async fn chains_reached(&self, reach: &Reach) -> Result<Vec<String>, StoreError> {
                let (sql, value) = chains_reached_sql(reach);
                sqlx::query_scalar(&sql)
                .bind(value)
                .fetch_all(self.reads())
                .await
                .map_err(db)
            }
        }

        };
    };
}

pub(crate) use impl_sql_store;

/// The ledger walk's pages ([`crate::ledger::LedgerPages`]) over a backend's connection type
/// `$conn`, as `Pages`; `db` is the backend's error mapping, in scope where this is invoked.
macro_rules! impl_ledger_pages {
    ($conn:ty) => {
        /// One read transaction of the ledger, paged for the shared walk.
        pub(crate) struct Pages<'c> {
            pub(crate) conn: &'c mut $conn,
            /// Whether the database has a checkpoints table (one written before it existed has none).
            pub(crate) with_checkpoints: bool,
        }

        #[async_trait::async_trait]
        impl $crate::ledger::LedgerPages for Pages<'_> {
            async fn events_after(
                &mut self,
                after: i64,
                limit: i64,
            ) -> Result<Vec<mandate_core::event::Event>, $crate::StoreError> {
                let rows =
                    sqlx::query(&format!("{} WHERE seq > $1 ORDER BY seq LIMIT $2", $crate::rows::EVENT_COLUMNS))
                        .bind(after)
                        .bind(limit)
                        .fetch_all(&mut *self.conn)
                        .await
                        .map_err(db)?;
                rows.iter().map($crate::rows::event).collect()
            }

            async fn checkpoints_between(
                &mut self,
                after: i64,
                upto: i64,
            ) -> Result<Vec<(i64, Result<mandate_core::ledger::Checkpoint, String>)>, $crate::StoreError> {
                if !self.with_checkpoints {
                    return Ok(Vec::new());
                }
                let found = sqlx::query("SELECT * FROM ledger_checkpoints WHERE seq > $1 AND seq <= $2 ORDER BY seq")
                    .bind(after)
                    .bind(upto)
                    .fetch_all(&mut *self.conn)
                    .await
                    .map_err(db)?;
                found
                    .iter()
                    .map(|row| Ok((sqlx::Row::try_get(row, "seq").map_err(db)?, $crate::rows::checkpoint(row)?)))
                    .collect()
            }

            async fn max_seq(&mut self) -> Result<i64, $crate::StoreError> {
                sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM events")
                    .fetch_one(&mut *self.conn)
                    .await
                    .map_err(db)
            }
        }
    };
}

pub(crate) use impl_ledger_pages;
