//! [`crate::DecisionStore`] over SQLite: its tests (the implementation is [`crate::sql`]'s, shared).

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::SqliteStore;
    use crate::decisions::{ApprovalRecord, DecisionStore, OpenedApproval, ToolRecord};
    use crate::{AgentChange, Store};
    use mandate_core::agent::{register, AgentSpec};
    use mandate_core::event::NewEvent;
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
