#![allow(clippy::unwrap_used)]

use super::*;
use crate::expiry::{KEEP_AFTER_EXPIRY_SECS, PRUNE_EVERY_SECS};
use serde_json::{json, Value};

fn settings() -> DriftSettings {
    DriftSettings { internal_domains: vec!["example.org".into()], ..DriftSettings::default() }
}

struct Call {
    chain: &'static str,
    agent: &'static str,
    parent: Option<&'static str>,
    tool: &'static str,
    class: &'static str,
    action: Action,
    category: &'static str,
    resource: Option<String>,
    args: Value,
    now: i64,
}

fn call(tool: &'static str, class: &'static str, action: Action) -> Call {
    Call {
        chain: "c",
        agent: "onboarder",
        parent: None,
        tool,
        class,
        action,
        category: "hr.onboarding",
        resource: None,
        args: json!({}),
        now: 1_000,
    }
}

impl Call {
    fn shape(&self) -> CallShape<'_> {
        CallShape {
            chain_id: self.chain,
            agent: self.agent,
            parent_agent: self.parent,
            tool: self.tool,
            data_class: self.class,
            action: self.action,
            classified: true,
            depth: if self.parent.is_some() { 2 } else { 1 },
            category: self.category,
            resource: self.resource.as_deref(),
            arguments: &self.args,
            now: self.now,
            chain_expires_at: 10_000,
        }
    }
    fn to(mut self, to: &str) -> Self {
        self.args = json!({"to": to, "subject": "hello"});
        self
    }
    fn on(mut self, resource: &str) -> Self {
        self.resource = Some(resource.to_owned());
        self
    }
    fn at(mut self, now: i64) -> Self {
        self.now = now;
        self
    }
    fn by(mut self, agent: &'static str, parent: &'static str) -> Self {
        self.agent = agent;
        self.parent = Some(parent);
        self
    }
    fn under(mut self, category: &'static str) -> Self {
        self.category = category;
        self
    }
}

/// Assesses and, when allowed (score under 50, as the default policy would), records.
fn run(b: &Behaviour, c: &Call) -> Risk {
    let (risk, observed) = b.assess(&c.shape());
    if risk.score < 50 {
        b.record(&c.shape(), &risk, &observed);
    }
    risk
}

fn read_employee() -> Call {
    call("hr/read_employee", "pii", Action::Read).on("hr://employees/e-1001")
}
fn mail() -> Call {
    call("mail/send", "internal", Action::Egress)
}

#[test]
fn mailing_personal_data_outside_is_the_exfiltration_shape_and_a_welcome_mail_is_not() {
    let b = Behaviour::new(settings());
    assert_eq!(run(&b, &read_employee()).signals, Vec::<String>::new(), "the task's own first step");
    let welcome = run(&b, &mail().to("new.hire@example.org"));
    assert_eq!(welcome.signals, Vec::<String>::new(), "internal mail after the read: {welcome:?}");
    let out = run(&b, &mail().to("drop@evil.example"));
    assert_eq!(out.signals, ["exfiltration"]);
    assert_eq!(out.score, 60);
    assert!(
        out.details[0].why.contains("`evil.example`, external and not a known destination of `hr.onboarding` tasks"),
        "{out:?}"
    );
    assert!(out.details[0].why.contains("read `pii` data"));
    // Company data that is not personal counts too.
    let b2 = Behaviour::new(settings());
    run(&b2, &call("calendar/read", "internal", Action::Read));
    assert_eq!(run(&b2, &mail().to("drop@evil.example")).signals, ["exfiltration"]);
    let unknown = run(&b, &call("mail/send", "internal", Action::Egress));
    assert_eq!(unknown.signals, ["exfiltration"], "no readable destination is not a safe one");
    assert!(unknown.details[0].why.contains("an unknown destination"));
}

#[test]
fn egress_to_the_subject_of_a_read_is_not_exfiltration() {
    let b = Behaviour::new(settings());
    let lookup =
        call("crm/read_contact", "pii", Action::Read).under("sales.research").on("crm://contacts/jane@acme.example");
    assert_eq!(run(&b, &lookup).signals, Vec::<String>::new());
    let reply = mail().under("sales.research").to("jane@acme.example");
    assert_eq!(run(&b, &reply).signals, Vec::<String>::new(), "mailing the person looked up");
    let elsewhere = mail().under("sales.research").to("x@rival.example");
    assert_eq!(run(&b, &elsewhere).signals, ["exfiltration"], "`*` destinations do not excuse the shape");
    let b = Behaviour::new(settings());
    let research = call("web/search", "public", Action::Read).under("sales.research");
    run(&b, &research);
    let outreach = mail().under("sales.research").to("ceo@newco.example");
    assert_eq!(run(&b, &outreach).signals, Vec::<String>::new(), "after public reads only, sales mails anyone");
}

#[test]
fn without_a_sensitive_read_a_new_destination_is_only_noted() {
    let b = Behaviour::new(settings());
    run(&b, &call("directory/create_account", "internal", Action::Write));
    let r = run(&b, &mail().to("agency@recruit.example"));
    assert_eq!((r.signals, r.score), (vec!["new_destination".to_owned()], 15));
}

#[test]
fn the_intent_bounds_tools_and_data_classes() {
    let b = Behaviour::new(settings());
    run(&b, &read_employee());
    let salary = run(&b, &call("hr/update_salary", "pii", Action::Write));
    assert_eq!(salary.signals, ["intent_mismatch"]);
    let secret = run(&b, &call("vault/read", "secret", Action::Read));
    assert_eq!(secret.signals, ["intent_mismatch", "sensitivity_escalation"]);
    let unknown = run(&b, &call("hr/read_employee", "pii", Action::Read).under("made.up"));
    assert_eq!(unknown.signals, ["unknown_category"]);
    assert!(unknown.enforced, "an unknown category is enforced");
}

#[test]
fn a_sub_agent_reaching_data_its_parent_never_touched() {
    let b = Behaviour::new(settings());
    run(&b, &call("directory/create_account", "internal", Action::Write));
    let child = call("hr/read_employee", "pii", Action::Read).by("provisioner", "onboarder");
    let r = run(&b, &child);
    assert!(r.signals.contains(&"delegated_escalation".to_owned()), "{r:?}");
    // Once the parent itself read personal data, its delegate doing so is ordinary.
    let b = Behaviour::new(settings());
    run(&b, &read_employee());
    assert!(!run(&b, &child).signals.contains(&"delegated_escalation".to_owned()));
}

#[test]
fn bulk_access_volume_and_scope_pressure() {
    let b = Behaviour::new(settings());
    for i in 0..10 {
        assert!(!run(&b, &read_employee().on(&format!("hr://employees/e-{i}")))
            .signals
            .contains(&"bulk_access".into()));
    }
    let eleventh = run(&b, &read_employee().on("hr://employees/e-99"));
    assert!(eleventh.signals.contains(&"bulk_access".to_owned()), "{eleventh:?}");
    assert!(run(&b, &read_employee().on("hr://employees/e-3")).signals.is_empty(), "a record already read");

    let b = Behaviour::new(settings());
    for i in 0..30 {
        run(&b, &call("calendar/book", "internal", Action::Write).at(1_000 + i / 10));
    }
    assert!(run(&b, &call("calendar/book", "internal", Action::Write).at(1_005)).signals.contains(&"volume".into()));
    assert!(!run(&b, &call("calendar/book", "internal", Action::Write).at(2_000)).signals.contains(&"volume".into()));

    let b = Behaviour::new(settings());
    run(&b, &read_employee());
    for tool in ["hr/read_payroll", "hr/export", "vault/read"] {
        b.denied("c", tool, 1_000, 10_000);
    }
    let next = run(&b, &read_employee());
    assert_eq!(next.signals, ["scope_pressure"]);
    assert!(next.details[0].why.contains("3 time(s) in a row"));
    assert!(run(&b, &read_employee()).signals.is_empty(), "an allowed call ends the streak");
}

#[test]
fn small_steps_off_the_task_add_up_to_slow_drift() {
    let b = Behaviour::new(settings());
    // A warm profile: onboarding chains read the record, create the account, book the intro.
    for i in 0..WARM {
        let chain: &'static str = Box::leak(format!("warm-{i}").into_boxed_str());
        for step in [
            read_employee(),
            call("directory/create_account", "internal", Action::Write),
            call("calendar/book", "internal", Action::Write),
        ] {
            run(&b, &Call { chain, ..step });
        }
    }
    // Each step alone is a rare transition or a tool these chains never called, under the hold
    // line.
    run(&b, &read_employee());
    let first = run(&b, &call("calendar/book", "internal", Action::Write));
    assert_eq!((first.signals.clone(), first.score), (vec!["rare_sequence".to_owned()], 10), "{first:?}");
    let second = run(&b, &call("it/order_equipment", "internal", Action::Write));
    assert_eq!(second.signals, ["unfamiliar_tool"], "never called in these chains");
    let third = run(&b, &call("hr/read_employee", "pii", Action::Read).on("hr://employees/e-2"));
    assert!(third.signals.contains(&"slow_drift".to_owned()), "{third:?}");
    assert!(third.score >= 50, "{third:?}");
    // A tool the taxonomy misses is a signal each time, but not drift that accumulates.
    let b = Behaviour::new(settings());
    for _ in 0..5 {
        let r = run(&b, &call("hr/read_org_chart", "internal", Action::Read));
        assert_eq!(r.signals, ["intent_mismatch"]);
    }
}

#[test]
fn a_category_in_learn_mode_hides_its_score_from_policy_and_learns_everything() {
    let b = Behaviour::new(settings());
    let mut c = b.category("hr.onboarding").unwrap().as_ref().clone();
    c.spec.mode = Mode::Learn;
    b.put_category(c);
    run(&b, &read_employee());
    let (risk, observed) = b.assess(&mail().to("agency@recruit.example").shape());
    assert_eq!(risk.signals, ["exfiltration"]);
    assert!(!risk.enforced);
    assert_eq!(risk.for_policy(), (0, Vec::new()));
    b.record(&mail().to("agency@recruit.example").shape(), &risk, &observed);
    assert_eq!(b.profile("hr.onboarding").destinations[0].name, "recruit.example");
}

#[test]
fn an_enforced_profile_learns_only_from_ordinary_or_approved_calls() {
    let b = Behaviour::new(settings());
    let chain = |i: usize| -> &'static str { Box::leak(format!("chain-{i}").into_boxed_str()) };
    for i in 0..WARM {
        let mut first = read_employee();
        first.chain = chain(i);
        let mut second = call("directory/create_account", "internal", Action::Write);
        second.chain = chain(i);
        run(&b, &first);
        run(&b, &second);
    }
    let p = b.profile("hr.onboarding");
    assert!(p.warm, "{p:?}");
    assert_eq!(p.chains, WARM as u64);
    let mut odd = call("calendar/book", "internal", Action::Write);
    odd.chain = chain(999);
    let r = run(&b, &odd);
    assert_eq!(r.signals, ["unfamiliar_tool"], "never called in {WARM} chains");
    let mut reordered = call("directory/create_account", "internal", Action::Write);
    reordered.chain = chain(998);
    assert_eq!(run(&b, &reordered).signals, ["rare_sequence"], "never an agent's first call");

    // An exfiltration, even if policy let it through (a person approved it), does not teach the
    // profile its destination.
    let out = mail().to("drop@evil.example");
    run(&b, &read_employee());
    let (risk, observed) = b.assess(&out.shape());
    b.record(&out.shape(), &risk, &observed);
    assert_eq!(b.profile("hr.onboarding").destinations, vec![]);
    assert!(b.reset("hr.onboarding"));
    assert_eq!(b.profile("hr.onboarding").calls, 0);
}

const WARM: usize = profile::WARM_AFTER_CHAINS as usize;

#[test]
fn a_new_habit_is_learned_from_chains_that_ended_clean_and_a_drifting_chain_teaches_nothing() {
    let b = Behaviour::new(settings());
    let chain = |i: usize| -> &'static str { Box::leak(format!("chain-{i}").into_boxed_str()) };
    for i in 0..WARM {
        run(&b, &Call { chain: chain(i), ..read_employee() });
    }
    // Reading a second record right after the first: never seen, a rare sequence, in three chains.
    let second = |c: &'static str, now: i64| {
        run(&b, &Call { chain: c, ..read_employee().at(now) });
        run(&b, &Call { chain: c, ..read_employee().on("hr://employees/e-2").at(now) })
    };
    for i in 0..3 {
        assert_eq!(second(chain(100 + i), 1_000).signals, ["rare_sequence"], "chain {i}");
    }
    // A fourth chain does it too, and then drifts: an alert; its step must not count.
    let drifting = chain(300);
    second(drifting, 1_000);
    let (risk, _) = b.assess(&Call { chain: drifting, ..mail().to("drop@evil.example") }.shape());
    assert!(!b.alerts(drifting, &risk).is_empty());
    // While the chains live, nothing is learned; once they have ended (and the margin), it is.
    assert_eq!(second(chain(200), 2_000).signals, ["rare_sequence"], "not yet: the chains have not ended");
    let later = 10_000 + crate::expiry::KEEP_AFTER_EXPIRY_SECS + crate::expiry::PRUNE_EVERY_SECS + 1;
    run(&b, &Call { chain: chain(400), ..read_employee().at(later) });
    let t = b.profile("hr.onboarding").transitions;
    let learned = t.iter().find(|t| t.from == "hr/read_employee" && t.to == "hr/read_employee");
    assert_eq!(learned.map(|t| t.count), Some(profile::CANDIDATE_PROMOTED_AFTER), "{t:?}");
    assert_eq!(second(chain(500), later).signals, Vec::<String>::new(), "now ordinary");
}

#[test]
fn alerts_come_once_per_chain_and_signal() {
    let b = Behaviour::new(settings());
    run(&b, &read_employee());
    let (risk, _) = b.assess(&mail().to("drop@evil.example").shape());
    assert_eq!(b.alerts("c", &risk), ["exfiltration"]);
    assert!(b.alerts("c", &risk).is_empty());
    let (low, _) = b.assess(&call("hr/update_salary", "pii", Action::Write).shape());
    assert!(b.alerts("c", &low).is_empty(), "a mismatch alone, under the alert score");
}

#[test]
fn scoring_can_be_turned_off() {
    let b = Behaviour::new(DriftSettings { enabled: false, ..settings() });
    run(&b, &read_employee());
    let (risk, _) = b.assess(&mail().to("drop@evil.example").shape());
    assert_eq!((risk.score, risk.signals.len()), (0, 0));
    assert_eq!(b.chains(), 0);
}

#[test]
fn a_chain_s_memory_is_bounded() {
    let b = Behaviour::new(DriftSettings { learn_below: 0, ..settings() });
    let long = "x".repeat(10_000);
    for i in 0..5_000 {
        let agent: &'static str = Box::leak(format!("agent-{i}-{long}").into_boxed_str());
        let tool: &'static str = Box::leak(format!("t{i}/tool-{}", &long[..150]).into_boxed_str());
        let c = Call {
            agent,
            parent: Some("root"),
            resource: Some(format!("hr://employees/{i}/{long}")),
            args: json!({"to": format!("x@d{i}.example"), "ref": format!("crm://c/y@s{i}.example")}),
            now: 1_000 + i / 100,
            ..call(tool, "pii", if i % 2 == 0 { Action::Read } else { Action::Egress })
        };
        let (risk, observed) = b.assess(&c.shape());
        b.record(&c.shape(), &risk, &observed);
        b.denied("c", tool, c.now, 10_000);
    }
    assert_eq!(b.chains(), 1);
    let bytes = b.largest_chain_bytes();
    assert!(bytes <= MAX_CHAIN_BYTES, "{bytes} bytes");
    assert!(bytes > MAX_CHAIN_BYTES / 8, "the estimate counts what is held: {bytes}");

    let ordinary = Behaviour::new(settings());
    for i in 0..30 {
        run(&ordinary, &read_employee().on(&format!("hr://employees/e-{}", i % 8)));
        run(&ordinary, &mail().to("new.hire@example.org"));
    }
    let typical = ordinary.largest_chain_bytes();
    assert!(typical <= 2 * 1024, "an ordinary chain holds {typical} bytes");
}

#[test]
fn a_chains_baseline_lasts_until_its_root_mandate_has_expired() {
    let b = Behaviour::new(settings());
    let at = |chain: &'static str, now: i64, expires: i64| {
        let mut c = read_employee().at(now);
        c.chain = chain;
        (c, expires)
    };
    let record = |(c, expires): (Call, i64)| {
        let shape = CallShape { chain_expires_at: expires, ..c.shape() };
        let (risk, observed) = b.assess(&shape);
        b.record(&shape, &risk, &observed);
    };
    record(at("short", 500, 1_000));
    record(at("long", 500, 90_000));
    // A later call of the short chain under a mandate expiring sooner does not shorten its life.
    record(at("short", 550, 600));
    let at_end = 1_000 + KEEP_AFTER_EXPIRY_SECS;
    record(at("long", at_end, 90_000));
    assert_eq!(b.chains(), 2, "kept through the margin past the root's expiry");
    record(at("long", at_end + PRUNE_EVERY_SECS + 1, 90_000));
    assert_eq!(b.chains(), 1, "dropped past it");
}

#[test]
fn a_burst_gives_its_memory_back_and_never_holds_more_than_the_window_needs() {
    let b = Behaviour::new(settings());
    for i in 0..20_000 {
        run(&b, &call("calendar/book", "internal", Action::Write).at(100 + i / 1_000));
    }
    let chains = b.chains.lock().unwrap();
    assert!(chains.entries["c"].recent.len() <= MAX_RECENT);
}
