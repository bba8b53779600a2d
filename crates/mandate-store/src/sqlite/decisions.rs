//! [`DecisionStore`] over SQLite.

use super::{append, db, SqliteStore};
use crate::rows::{self, approval, tool, APPROVAL_COLUMNS, TOOL_COLUMNS};
use crate::decisions::{
    AllowedCall, ApprovalRecord, DecisionStore, IntentRecord, OpenedApproval, PinRecord, PolicyVersion, ToolRecord,
};
use crate::StoreError;
use async_trait::async_trait;
use mandate_core::event::NewEvent;

#[async_trait]
impl DecisionStore for SqliteStore {
    async fn upsert_tool(&self, t: &ToolRecord, event: NewEvent) -> Result<i64, StoreError> {
        let mut tx = self.writer.begin().await.map_err(db)?;
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
        let mut tx = self.writer.begin().await.map_err(db)?;
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
        let mut tx = self.writer.begin().await.map_err(db)?;
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
                .fetch_all(&self.reader)
                .await
                .map_err(db)?;
        Ok(rows
            .into_iter()
            .map(|(name, body, updated_ms, updated_by)| IntentRecord { name, body, updated_ms, updated_by })
            .collect())
    }

    async fn save_drift_profiles(&self, profiles: &[(String, String)], at_ms: i64) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await.map_err(db)?;
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
            .fetch_all(&self.reader)
            .await
            .map_err(db)
    }

    async fn reset_drift_profile(&self, category: &str, event: NewEvent) -> Result<i64, StoreError> {
        let mut tx = self.writer.begin().await.map_err(db)?;
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
            .fetch_all(&self.reader)
            .await
            .map_err(db)?;
        rows.iter().map(rows::pin).collect()
    }

    async fn tool(&self, name: &str) -> Result<Option<ToolRecord>, StoreError> {
        let row = sqlx::query(&format!("{TOOL_COLUMNS} WHERE name = $1"))
            .bind(name)
            .fetch_optional(&self.reader)
            .await
            .map_err(db)?;
        row.as_ref().map(tool).transpose()
    }

    async fn tools(&self) -> Result<Vec<ToolRecord>, StoreError> {
        let rows = sqlx::query(&format!("{TOOL_COLUMNS} ORDER BY name")).fetch_all(&self.reader).await.map_err(db)?;
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
        let mut tx = self.writer.begin().await.map_err(db)?;
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
        .fetch_optional(&self.reader)
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
        .fetch_all(&self.reader)
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
        .fetch_all(&self.reader)
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
        .fetch_all(&self.reader)
        .await
        .map_err(db)?;
        Ok(rows.into_iter().map(|(id, n)| (id, u64::try_from(n).unwrap_or(0))).collect())
    }

    async fn last_activity(&self) -> Result<Vec<(String, i64)>, StoreError> {
        sqlx::query_as(
            "SELECT agent_id, MAX(at_ms) FROM events WHERE kind = 'decision' AND agent_id IS NOT NULL GROUP BY agent_id",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(db)
    }

    async fn approval(&self, id: &str) -> Result<Option<ApprovalRecord>, StoreError> {
        let row = sqlx::query(&format!("{APPROVAL_COLUMNS} WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.reader)
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
        let mut tx = self.writer.begin().await.map_err(db)?;
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
                    .fetch_all(&self.reader)
                    .await
            }
            None => {
                sqlx::query(&format!("{APPROVAL_COLUMNS} ORDER BY created_ms DESC, id LIMIT $1"))
                    .bind(limit)
                    .fetch_all(&self.reader)
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
        let mut tx = self.writer.begin().await.map_err(db)?;
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::{AgentChange, Store};
    use mandate_core::agent::{register, AgentSpec};
    use mandate_core::mandate::MandateRecord;
    use serde_json::json;

    fn event(kind: &str) -> NewEvent {
        NewEvent::new(kind, "admin", 1, &json!({}))
    }

    async fn store_with_mandate() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("m.db")).await.unwrap();
        let spec: AgentSpec = serde_json::from_value(json!({
            "id": "finance-close", "name": "a", "owner": "user:alice@example.org", "purpose": "p", "class": "enterprise",
            "environment": "production", "boundary": {"tools": ["erp/*"]},
            "public_key_jwk": {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
        }))
        .unwrap();
        let agent = register(spec, time::OffsetDateTime::UNIX_EPOCH).unwrap();
        store
            .record_agent_change(AgentChange {
                before: None,
                after: &agent,
                action: "register",
                event: event("a"),
                revoke: None,
            })
            .await
            .unwrap();
        let m: MandateRecord = serde_json::from_value(json!({
            "id": "m1", "chain_id": "m1", "parent_id": null, "depth": 1, "agent": "finance-close",
            "chain_agents": ["finance-close"], "lineage": [], "root": "user:alice@example.org",
            "intent": {"purpose": "p", "category": "c"}, "scope": [], "max_calls": 5, "max_depth": 0,
            "issued_at": 0, "expires_at": 100, "key_thumbprint": "t"
        }))
        .unwrap();
        store.insert_mandate(&m, "k", event("mandate.granted")).await.unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn tools_policies_and_allow_counts() {
        let (_dir, store) = store_with_mandate().await;
        let mut t = ToolRecord {
            name: "erp/read_ledger".into(),
            server: "erp".into(),
            data_class: "financial".into(),
            risk: "read".into(),
            server_environment: "production".into(),
            source: "config".into(),
            updated_ms: 1,
            updated_by: "system".into(),
        };
        store.upsert_tool(&t, event("tool.classified")).await.unwrap();
        t.risk = "write".into();
        t.source = "api".into();
        store.upsert_tool(&t, event("tool.classified")).await.unwrap();
        assert_eq!(store.tool("erp/read_ledger").await.unwrap(), Some(t.clone()));
        assert_eq!(store.tools().await.unwrap(), vec![t]);

        assert_eq!(store.latest_policy().await.unwrap(), None);
        assert_eq!(store.insert_policy_version("a", "sha-a", "system", 1, event("policy.updated")).await.unwrap(), 1);
        assert_eq!(store.insert_policy_version("b", "sha-b", "admin", 2, event("policy.updated")).await.unwrap(), 2);
        let latest = store.latest_policy().await.unwrap().unwrap();
        assert_eq!((latest.version, latest.text.as_str(), latest.created_by.as_str()), (2, "b", "admin"));

        for (decision, chain) in [("allow", "m1"), ("allow", "m1"), ("deny", "m1"), ("allow", "m1"), ("allow", "other")]
        {
            let mut e = event("decision");
            e.mandate_id = Some(if chain == "m1" { "m1" } else { "m2" }.into());
            e.chain_id = Some(chain.into());
            e.decision = Some(decision.into());
            store.append_event(e).await.unwrap();
        }
        // Only chains that are still live count (chain `other` has no root mandate here; m1's expires at 100).
        assert_eq!(store.allow_counts(99).await.unwrap(), vec![("m1".to_owned(), 3)]);
        assert_eq!(store.allow_counts(100).await.unwrap(), vec![]);
        assert_eq!(store.allow_counts_in_chain("m1").await.unwrap(), vec![("m1".to_owned(), 3)]);
        assert_eq!(store.allow_counts_in_chain("none").await.unwrap(), vec![]);
        // Chain m1's root mandate expires at 100: its allowed calls, in order, until then.
        let calls = store.allowed_calls_of_chains_ending_after(99).await.unwrap();
        assert_eq!(
            calls.iter().map(|c| (c.chain_id.as_str(), c.chain_expires_at)).collect::<Vec<_>>(),
            vec![("m1", 100); 3]
        );
        assert_eq!(store.allowed_calls_of_chains_ending_after(100).await.unwrap(), vec![]);
        let mut e = event("decision");
        e.agent = Some("finance-close".into());
        e.at_ms = 5_000;
        store.append_event(e).await.unwrap();
        assert_eq!(store.last_activity().await.unwrap(), vec![("finance-close".to_owned(), 5_000)]);
    }

    #[tokio::test]
    async fn an_approval_opens_once_per_call_and_reasons_and_at_most_max_pending() {
        let (_dir, store) = store_with_mandate().await;
        let held = |id: &str, args: &str, signals: serde_json::Value, at: i64| ApprovalRecord {
            id: id.into(),
            mandate_id: "m1".into(),
            chain_id: "m1".into(),
            agent: "finance-close".into(),
            tool: "mail/send".into(),
            resource: None,
            arguments_hash: args.into(),
            status: "pending".into(),
            created_ms: at,
            expires_ms: at + 1_000,
            decided_by: None,
            decided_ms: None,
            used_ms: None,
            detail: json!({"reasons": ["egress"], "policies": ["call.hold-egress"], "signals": signals, "risk_score": 0}),
        };
        let open = |a: ApprovalRecord, max: usize| {
            let store = &store;
            async move { store.open_approval(&a, event("approval.created"), max).await.unwrap() }
        };
        assert!(matches!(open(held("a1", "h1", json!([]), 10), 2).await, OpenedApproval::Created(_)));
        // The same call held for the same reasons: the waiting approval.
        assert_eq!(open(held("a2", "h1", json!([]), 20), 2).await, OpenedApproval::Existing("a1".into()));
        // The same call with a new risk signal: an approval of its own, which the approver sees.
        assert!(matches!(open(held("a3", "h1", json!(["volume"]), 30), 2).await, OpenedApproval::Created(_)));
        // Two wait: a third call is refused, and nothing is stored for it.
        assert_eq!(open(held("a4", "h2", json!([]), 40), 2).await, OpenedApproval::Full(2));
        assert_eq!(store.approval("a4").await.unwrap(), None);
        // Once they have expired they keep nobody waiting.
        assert!(matches!(open(held("a5", "h2", json!([]), 1_500), 2).await, OpenedApproval::Created(_)));
        let again = open(held("a6", "h1", json!([]), 1_600), 2).await;
        assert!(matches!(again, OpenedApproval::Created(_)), "a1 has expired: {again:?}");
    }

    #[tokio::test]
    async fn approvals_move_once() {
        let (_dir, store) = store_with_mandate().await;
        let a = ApprovalRecord {
            id: "ap1".into(),
            mandate_id: "m1".into(),
            chain_id: "m1".into(),
            agent: "finance-close".into(),
            tool: "erp/post".into(),
            resource: None,
            arguments_hash: "h".into(),
            status: "pending".into(),
            created_ms: 10,
            expires_ms: 1000,
            decided_by: None,
            decided_ms: None,
            used_ms: None,
            detail: json!({"reasons": ["call.hold-egress"]}),
        };
        assert!(matches!(
            store.open_approval(&a, event("approval.created"), 1).await.unwrap(),
            OpenedApproval::Created(_)
        ));
        assert!(store
            .transition_approval(
                "ap1",
                "pending",
                "approved",
                Some("user:carol@example.org"),
                20,
                event("approval.approved")
            )
            .await
            .unwrap()
            .is_some());
        // A second decision finds it no longer pending.
        assert!(store
            .transition_approval("ap1", "pending", "denied", Some("user:x@example.org"), 21, event("approval.denied"))
            .await
            .unwrap()
            .is_none());
        assert!(store
            .transition_approval("ap1", "approved", "used", None, 30, event("approval.used"))
            .await
            .unwrap()
            .is_some());
        assert!(
            store
                .transition_approval("ap1", "approved", "used", None, 31, event("approval.used"))
                .await
                .unwrap()
                .is_none(),
            "used once"
        );
        let got = store.approval("ap1").await.unwrap().unwrap();
        assert_eq!(
            (got.status.as_str(), got.decided_by.as_deref(), got.decided_ms, got.used_ms),
            ("used", Some("user:carol@example.org"), Some(20), Some(30))
        );
        assert_eq!(store.approvals(Some("pending"), 10).await.unwrap(), vec![]);
        assert_eq!(store.approvals(None, 10).await.unwrap().len(), 1);
    }
}
