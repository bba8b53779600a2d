//! Every policy of the default set, each with requests it decides and requests it leaves alone.
use super::*;

#[test]
fn default_grant_policies() {
    let set = default_set();
    let erp_vendors = tool("erp/list_vendors", "production", "internal", "read");
    let bank = tool("bank/balance", "production", "financial", "read");
    let table: Vec<(&str, Request, Outcome, &[&str])> = vec![
        // grant.open-classes
        ("anyone grants internal tools", grant(bob(), wiki(), &["internal"]), Outcome::Allow, &["grant.open-classes"]),
        (
            "public too",
            grant(bob(), tool("web/search", "production", "public", "read"), &[]),
            Outcome::Allow,
            &["grant.open-classes"],
        ),
        ("but not other classes", grant(bob(), bank.clone(), &[]), Outcome::Deny, &[]),
        (
            "nor unknown classes",
            grant(bob(), tool("crm/read", "production", "customer", "read"), &[]),
            Outcome::Deny,
            &[],
        ),
        // grant.financial-by-finance
        (
            "finance grants financial tools",
            grant(alice(), bank.clone(), &["financial"]),
            Outcome::Allow,
            &["grant.financial-by-finance"],
        ),
        (
            "finance grants the ledger",
            grant(alice(), ledger(), &["financial"]),
            Outcome::Allow,
            &["grant.financial-by-finance"],
        ),
        ("hr does not", grant(hana(), bank.clone(), &[]), Outcome::Deny, &[]),
        // grant.pii-by-hr
        ("hr grants personal data", grant(hana(), employees(), &["pii"]), Outcome::Allow, &["grant.pii-by-hr"]),
        ("finance does not", grant(alice(), employees(), &[]), Outcome::Deny, &[]),
        // grant.secret-by-security
        ("security grants secrets", grant(sam(), vault(), &["secret"]), Outcome::Allow, &["grant.secret-by-security"]),
        ("nobody else does", grant(olga(), vault(), &[]), Outcome::Deny, &[]),
        // grant.erp-only-finance
        (
            "only finance grants erp",
            grant(bob(), erp_vendors.clone(), &["internal"]),
            Outcome::Deny,
            &["grant.erp-only-finance"],
        ),
        ("finance grants erp", grant(alice(), erp_vendors, &["internal"]), Outcome::Allow, &["grant.open-classes"]),
        (
            "both erp and financial scope refused to hr",
            grant(hana(), ledger(), &["financial"]),
            Outcome::Deny,
            &["grant.erp-only-finance", "grant.financial-scope-only-finance"],
        ),
        // grant.financial-scope-only-finance
        (
            "no financial scope outside finance",
            grant(bob(), wiki(), &["financial"]),
            Outcome::Deny,
            &["grant.financial-scope-only-finance"],
        ),
        ("financial scope in finance", grant(alice(), wiki(), &["financial"]), Outcome::Allow, &["grant.open-classes"]),
        // grant.pii-scope-only-hr
        (
            "no pii scope outside hr",
            grant(alice(), wiki(), &["internal", "pii"]),
            Outcome::Deny,
            &["grant.pii-scope-only-hr"],
        ),
        ("pii scope in hr", grant(hana(), wiki(), &["pii"]), Outcome::Allow, &["grant.open-classes"]),
        // grant.secret-scope-only-security
        (
            "no secret scope outside security",
            grant(alice(), wiki(), &["secret"]),
            Outcome::Deny,
            &["grant.secret-scope-only-security"],
        ),
        ("secret scope in security", grant(sam(), wiki(), &["secret"]), Outcome::Allow, &["grant.open-classes"]),
        (
            "several groups add up",
            grant(human("max@example.org", &["finance", "hr"], &[]), employees(), &["financial", "pii"]),
            Outcome::Allow,
            &["grant.pii-by-hr"],
        ),
    ];
    for (name, request, outcome, matched) in table {
        check(&set, name, request, outcome, matched);
    }
}

// ---- the default call policies ------------------------------------------------------------------

#[test]
fn default_call_policies() {
    let set = default_set();
    let sandboxed = agent("experiment", "enterprise", "sandbox");
    let piloted = agent("pilot-bot", "enterprise", "pilot");
    let coder = agent("coder", "coding", "production");
    let egress = tool("mail/send", "production", "internal", "egress");
    let destructive = tool("files/delete", "production", "internal", "destructive");
    let at = |hour: u8, weekday: u8| CallRequest { hour, weekday, ..call(employees()) };
    let risky = |tool: ToolFacts, risk_score: u32, signals: &[&str]| CallRequest {
        risk_score,
        signals: signals.iter().map(|s| (*s).to_owned()).collect(),
        ..call(tool)
    };
    let writing = |tool: ToolFacts, action: &str| CallRequest { action: action.to_owned(), ..call(tool) };
    let delegated = |from: AgentFacts, to: AgentFacts, tool: ToolFacts| CallRequest {
        chain: vec![from],
        depth: 1,
        ..call_by(to, tool)
    };
    const WITHIN: &str = "call.within-mandate";
    const SEPARATION: &str = "call.environment-separation";
    let table: Vec<(&str, CallRequest, Outcome, &[&str])> = vec![
        // call.within-mandate
        ("an ordinary call", call(wiki()), Outcome::Allow, &[WITHIN]),
        // call.environment-separation
        ("sandbox agent, production tool", call_by(sandboxed.clone(), wiki()), Outcome::Deny, &[SEPARATION]),
        (
            "sandbox agent, pilot tool",
            call_by(sandboxed.clone(), tool("wiki/search", "pilot", "internal", "read")),
            Outcome::Deny,
            &[SEPARATION],
        ),
        (
            "sandbox agent, sandbox tool",
            call_by(sandboxed.clone(), tool("wiki/search", "sandbox", "internal", "read")),
            Outcome::Allow,
            &[WITHIN],
        ),
        ("pilot agent, production tool", call_by(piloted.clone(), wiki()), Outcome::Deny, &[SEPARATION]),
        (
            "pilot agent, pilot tool",
            call_by(piloted.clone(), tool("wiki/search", "pilot", "internal", "read")),
            Outcome::Allow,
            &[WITHIN],
        ),
        (
            "pilot agent, sandbox tool",
            call_by(piloted, tool("wiki/search", "sandbox", "internal", "read")),
            Outcome::Allow,
            &[WITHIN],
        ),
        (
            "production agent, sandbox tool",
            call(tool("wiki/search", "sandbox", "internal", "read")),
            Outcome::Allow,
            &[WITHIN],
        ),
        ("a sandbox agent up the chain", delegated(sandboxed, finance_close(), wiki()), Outcome::Deny, &[SEPARATION]),
        ("a production chain", delegated(coder.clone(), finance_close(), wiki()), Outcome::Allow, &[WITHIN]),
        (
            "an unknown agent environment",
            call_by(agent("odd", "enterprise", "staging"), tool("wiki/search", "sandbox", "internal", "read")),
            Outcome::Deny,
            &[SEPARATION],
        ),
        (
            "an unknown tool environment",
            call(tool("wiki/search", "staging", "internal", "read")),
            Outcome::Deny,
            &[SEPARATION],
        ),
        // Drift: ordinary egress runs; the exfiltration shape and high scores are held, extreme
        // ones refused.
        ("ordinary egress runs", call(egress.clone()), Outcome::Allow, &[WITHIN]),
        ("low drift runs", risky(egress.clone(), 45, &["intent_mismatch"]), Outcome::Allow, &[WITHIN]),
        (
            "the exfiltration shape is held at any score",
            risky(egress.clone(), 20, &["exfiltration"]),
            Outcome::Hold,
            &[WITHIN, "call.hold-exfiltration"],
        ),
        (
            "high drift is held",
            risky(wiki(), 50, &["intent_mismatch", "rare_sequence"]),
            Outcome::Hold,
            &[WITHIN, "call.hold-high-risk"],
        ),
        ("extreme drift is refused", risky(wiki(), 90, &["bulk_access"]), Outcome::Deny, &["call.deny-extreme-risk"]),
        // call.hold-destructive
        ("destruction is held", call(destructive), Outcome::Hold, &[WITHIN, "call.hold-destructive"]),
        // call.hold-financial-write
        (
            "a financial write is held",
            writing(journal(), "write"),
            Outcome::Hold,
            &[WITHIN, "call.hold-financial-write"],
        ),
        ("a financial read is not", call(ledger()), Outcome::Allow, &[WITHIN]),
        ("an internal write is not", writing(wiki(), "write"), Outcome::Allow, &[WITHIN]),
        // call.pii-business-hours
        ("pii at 10:00 on Tuesday", at(10, 2), Outcome::Allow, &[WITHIN]),
        ("pii at 07:00 on Monday", at(7, 1), Outcome::Allow, &[WITHIN]),
        ("pii at 18:00 on Friday", at(18, 5), Outcome::Allow, &[WITHIN]),
        ("pii at 06:00", at(6, 2), Outcome::Deny, &["call.pii-business-hours"]),
        ("pii at 19:00", at(19, 2), Outcome::Deny, &["call.pii-business-hours"]),
        ("pii on Saturday", at(10, 6), Outcome::Deny, &["call.pii-business-hours"]),
        ("pii on Sunday", at(10, 7), Outcome::Deny, &["call.pii-business-hours"]),
        ("internal data at night", CallRequest { hour: 3, weekday: 7, ..call(wiki()) }, Outcome::Allow, &[WITHIN]),
        // call.no-secret-for-coding
        (
            "a coding agent reads a secret",
            call_by(coder.clone(), vault()),
            Outcome::Deny,
            &["call.no-secret-for-coding"],
        ),
        (
            "through a delegate",
            delegated(coder.clone(), finance_close(), vault()),
            Outcome::Deny,
            &["call.no-secret-for-coding"],
        ),
        ("an enterprise agent reads a secret", call(vault()), Outcome::Allow, &[WITHIN]),
        ("a coding agent reads internal data", call_by(coder, wiki()), Outcome::Allow, &[WITHIN]),
        // forbid beats a held permit
        (
            "a sandbox agent's exfiltration is denied, not held",
            CallRequest {
                signals: vec!["exfiltration".to_owned()],
                ..call_by(agent("x", "enterprise", "sandbox"), egress)
            },
            Outcome::Deny,
            &[SEPARATION],
        ),
    ];
    for (name, request, outcome, matched) in table {
        check(&set, name, request, outcome, matched);
    }
}

#[test]
fn a_hold_carries_every_reason() {
    let set = default_set();
    let decision = set.decide_call(&CallRequest {
        action: "delete".to_owned(),
        ..call(tool("erp/purge_period", "production", "financial", "destructive"))
    });
    assert_eq!(
        decision,
        PolicyDecision {
            outcome: Outcome::Hold,
            matched: vec![
                "call.within-mandate".to_owned(),
                "call.hold-destructive".to_owned(),
                "call.hold-financial-write".to_owned()
            ],
            hold_reasons: vec![
                "the tool can destroy data".to_owned(),
                "financial writes need an approver other than the root human".to_owned()
            ],
            errors: vec![],
        }
    );
}

// ---- the default approval policies --------------------------------------------------------------

#[test]
fn default_approve_policies() {
    let set = default_set();
    let carol = human("carol@example.org", &["finance"], &[]);
    let egress = tool("mail/send", "production", "internal", "egress");
    let table: Vec<(&str, Request, Outcome, &[&str])> = vec![
        // approve.approver-role
        (
            "an approver approves",
            approve(olga(), carol.clone(), egress.clone(), "send"),
            Outcome::Allow,
            &["approve.approver-role"],
        ),
        ("someone else does not", approve(bob(), carol.clone(), egress.clone(), "send"), Outcome::Deny, &[]),
        // approve.owner
        (
            "the owner approves",
            approve(alice(), carol.clone(), egress.clone(), "send"),
            Outcome::Allow,
            &["approve.owner"],
        ),
        (
            "the owner who is also the root",
            approve(alice(), alice(), egress, "send"),
            Outcome::Allow,
            &["approve.owner"],
        ),
        // approve.financial-write-not-root
        (
            "the root cannot approve its financial write",
            approve(alice(), alice(), journal(), "write"),
            Outcome::Deny,
            &["approve.financial-write-not-root"],
        ),
        (
            "not even as an approver",
            approve(olga(), olga(), journal(), "write"),
            Outcome::Deny,
            &["approve.financial-write-not-root"],
        ),
        (
            "another approver can",
            approve(olga(), alice(), journal(), "write"),
            Outcome::Allow,
            &["approve.approver-role"],
        ),
        (
            "the owner can when someone else started it",
            approve(alice(), carol, journal(), "write"),
            Outcome::Allow,
            &["approve.owner"],
        ),
        (
            "the root may approve a financial read",
            approve(alice(), alice(), ledger(), "read"),
            Outcome::Allow,
            &["approve.owner"],
        ),
    ];
    for (name, request, outcome, matched) in table {
        check(&set, name, request, outcome, matched);
    }
}
