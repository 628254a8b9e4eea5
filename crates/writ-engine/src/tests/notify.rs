//! Who is told of what: the notices an event writes with it, from the policy's routes and the
//! identities' addresses; and the delivery pass against a courier that fails on demand.

use std::sync::Mutex;

use writ_core::identity::IdentityState;
use writ_core::notify::{DEAD_LETTER, NoticeState, Notification};

use super::*;
use crate::notify::{Courier, Message, Schedule, Undelivered};

const ROUTES: &str = r#"
[[notify]]
id = "approvals"
on = ["approval.requested", "change.escalated"]
to = ["approvers", "escalation"]
channels = ["email"]

[[notify]]
id = "security-hook"
on = ["approval.requested"]
tiers = ["high"]
to = ["group:security"]
channels = ["webhook", "email"]
clear_text = true

[[notify]]
id = "decisions"
on = ["change.approved", "change.verified", "finding.opened", "notify.dead_letter"]
to = ["requester", "owner", "person:dave"]
channels = ["email"]
clear_text = true
"#;

/// The world with addresses for erin, frank (security), gina and dave; bob has none.
fn reached() -> World {
    let w = world();
    let admin = Actor::System(SystemActor::Admin);
    for (who, email) in
        [("erin", "erin@example.com"), ("frank", "frank@example.com"), ("gina", "gina@example.com")]
    {
        let kind = IdentityKind::Human;
        w.engine.add_identity_reached(admin.clone(), n(who), kind, None, None, Some(email)).unwrap();
    }
    w.engine
        .add_identity_reached(
            admin.clone(),
            n("dave2"),
            IdentityKind::Human,
            None,
            None,
            Some("dave@example.com"),
        )
        .unwrap();
    let rules = format!(
        "{}\n{ROUTES}",
        RULES_WITH_SECURITY.replace("security = [\"carol\"]", "security = [\"erin\", \"frank\"]")
    )
    .replace("person:dave", "person:dave2");
    w.engine.load_policy(admin, policy_with(&rules)).unwrap();
    w
}

fn told(w: &World, change: &ChangeId) -> Vec<(String, String, String, bool)> {
    let mut told: Vec<_> = w
        .engine
        .notifications(Some(change), None, 100)
        .unwrap()
        .into_iter()
        .map(|n| (n.notice.kind, n.notice.channel.as_str().to_owned(), n.notice.address, n.notice.clear))
        .collect();
    told.sort();
    told
}

fn t(kind: &str, channel: &str, address: &str, clear: bool) -> (String, String, String, bool) {
    (kind.to_owned(), channel.to_owned(), address.to_owned(), clear)
}

#[test]
fn an_approval_request_tells_every_eligible_approver_with_an_address_and_nobody_else() {
    let w = reached();
    // gina asks for erin: gina (requester) and erin (beneficiary) may not approve; bob, carol
    // and dave have no address; frank and dave2 may.
    let id = w.engine.request(input("gina", &[(OpAction::Grant, "erin", "apps:read")]), 1).unwrap().change.id;
    assert_eq!(
        told(&w, &id),
        [
            t("approval.requested", "email", "dave@example.com", false),
            t("approval.requested", "email", "frank@example.com", false)
        ]
    );
    // A disabled approver is not told.
    let admin = Actor::System(SystemActor::Admin);
    w.engine.set_identity_state(admin, &n("frank"), IdentityState::Disabled, "on leave".into()).unwrap();
    let other =
        w.engine.request(input("gina", &[(OpAction::Grant, "erin", "apps:read")]), 2).unwrap().change.id;
    assert_eq!(told(&w, &other), [t("approval.requested", "email", "dave@example.com", false)]);
}

#[test]
fn a_high_tier_request_reaches_the_group_webhook_and_its_members_once_each() {
    let w = reached();
    let id = w.engine.request(input("gina", &[(OpAction::Grant, "bob", "apps:admin")]), 1).unwrap().change.id;
    // erin and frank are approvers (email, sealed text stays sealed) and the security group
    // (email with clear text): one notice each, clear only if every route reaching them allows.
    assert_eq!(
        told(&w, &id),
        [
            t("approval.requested", "email", "dave@example.com", false),
            t("approval.requested", "email", "erin@example.com", false),
            t("approval.requested", "email", "frank@example.com", false),
            t("approval.requested", "webhook", "security", true),
        ]
    );
    // The ids are the event's index and the notice's place: stable, unique.
    let all = w.engine.notifications(Some(&id), None, 100).unwrap();
    let validated = w
        .engine
        .load(&id)
        .unwrap()
        .events
        .iter()
        .find(|(_, e)| e.body.type_name() == "change.validated")
        .unwrap()
        .0;
    assert!(all.iter().all(|n| n.event == validated && n.id.starts_with(&format!("NTF-{validated}-"))));
}

#[test]
fn decisions_tell_the_requester_and_named_people_and_partial_approvals_tell_nobody() {
    let w = reached();
    let id = w.engine.request(input("gina", &[(OpAction::Grant, "bob", "apps:admin")]), 1).unwrap().change.id;
    let before = told(&w, &id).len();
    w.engine.approve(&id, &n("erin"), None, None).unwrap();
    assert_eq!(told(&w, &id).len(), before, "one of two approvals decides nothing yet");
    w.engine.approve(&id, &n("frank"), None, None).unwrap();
    let after: Vec<_> = told(&w, &id).into_iter().filter(|n| n.0 == "change.approved").collect();
    assert_eq!(
        after,
        [
            t("change.approved", "email", "dave@example.com", true),
            t("change.approved", "email", "gina@example.com", true)
        ]
    );
}

/// A courier that fails the first `failures` sends, then delivers; it records what it sent.
struct Flaky {
    failures: Mutex<u32>,
    permanent: bool,
    sent: Mutex<Vec<String>>,
}

impl Courier for Flaky {
    fn send(&self, message: &Message) -> std::result::Result<(), Undelivered> {
        let mut left = self.failures.lock().unwrap();
        if *left > 0 {
            *left -= 1;
            return Err(Undelivered { reason: "the relay answered 451".into(), permanent: self.permanent });
        }
        self.sent.lock().unwrap().push(message.notification.id.clone());
        Ok(())
    }
}

fn flaky(failures: u32, permanent: bool) -> Flaky {
    Flaky { failures: Mutex::new(failures), permanent, sent: Mutex::new(Vec::new()) }
}

#[test]
fn delivery_retries_on_the_schedule_then_dead_letters_once_with_a_finding_and_no_loop() {
    let w = reached();
    let id = w.engine.request(input("gina", &[(OpAction::Grant, "erin", "apps:read")]), 1).unwrap().change.id;
    let schedule =
        Schedule { waits: vec![Duration::seconds(10), Duration::seconds(20)], lease: Duration::seconds(30) };
    let courier = flaky(1000, false);
    let first = w.engine.deliver_notifications(&courier, "a", &schedule).unwrap();
    assert_eq!((first.delivered.len(), first.retrying.len(), first.dead.len()), (0, 2, 0));
    // Nothing is due before its wait.
    assert_eq!(w.engine.deliver_notifications(&courier, "a", &schedule).unwrap(), Default::default());
    advance(&w, 10_000);
    assert_eq!(w.engine.deliver_notifications(&courier, "b", &schedule).unwrap().retrying.len(), 2);
    advance(&w, 20_000);
    let last = w.engine.deliver_notifications(&courier, "a", &schedule).unwrap();
    assert_eq!(last.dead.len(), 2);
    for notification in w.engine.notifications(Some(&id), None, 10).unwrap() {
        assert_eq!((notification.state, notification.attempts), (NoticeState::Dead, 3));
        let finding = w.engine.finding(&crate::findings::finding_id(DEAD_LETTER, &notification.id)).unwrap();
        assert_eq!(finding.change.as_ref(), Some(&id));
        assert!(
            finding.detail.contains("451") && finding.detail.contains("writ notify retry"),
            "{}",
            finding.detail
        );
    }
    // The dead letters are told (to dave2, by the decisions route), and when those die too,
    // no further finding is told of: no loop.
    let dead_letters = w.engine.notifications(None, Some(NoticeState::Pending), 100).unwrap();
    assert_eq!(dead_letters.iter().filter(|n| n.notice.kind == DEAD_LETTER).count(), 2);
    for _ in 0..3 {
        advance(&w, 30_000);
        w.engine.deliver_notifications(&courier, "a", &schedule).unwrap();
    }
    let findings = w.engine.findings(None).unwrap().iter().filter(|f| f.kind == DEAD_LETTER).count();
    assert_eq!(findings, 4, "two for the requests' notices, two for the dead letters' own");
    assert!(w.engine.notifications(None, Some(NoticeState::Pending), 100).unwrap().is_empty(), "no loop");
    // A retry makes one due again, delivered once.
    let one = Notification::id_of(w.engine.notifications(Some(&id), None, 1).unwrap()[0].event, 0);
    w.engine.retry_notification(&Actor::System(SystemActor::Admin), &one).unwrap();
    let courier = flaky(0, false);
    assert_eq!(
        w.engine.deliver_notifications(&courier, "a", &schedule).unwrap().delivered,
        std::slice::from_ref(&one)
    );
    assert_eq!(w.engine.notification(&one).unwrap().state, NoticeState::Delivered);
    assert_eq!(
        w.engine.retry_notification(&Actor::System(SystemActor::Admin), &one).unwrap_err().code(),
        "notify.delivered"
    );
    assert_eq!(courier.sent.lock().unwrap().len(), 1);
}

#[test]
fn a_permanent_refusal_dead_letters_at_once_and_a_held_notification_waits_for_its_lease() {
    let w = reached();
    let id = w.engine.request(input("gina", &[(OpAction::Grant, "erin", "apps:read")]), 1).unwrap().change.id;
    let schedule = Schedule { waits: vec![Duration::seconds(10)], lease: Duration::seconds(30) };
    // Another dispatcher holds one (it died mid-delivery): it is left until its lease ends.
    let now = w.engine.now();
    let held = w
        .engine
        .store()
        .claim_notifications("dead-instance", now, now.plus(Duration::seconds(30)), 1)
        .unwrap();
    assert_eq!(held.len(), 1);
    let courier = flaky(0, false);
    let pass = w.engine.deliver_notifications(&courier, "live", &schedule).unwrap();
    assert_eq!(pass.delivered.len(), 1);
    assert!(!pass.delivered.contains(&held[0].id));
    advance(&w, 31_000);
    assert_eq!(
        w.engine.deliver_notifications(&courier, "live", &schedule).unwrap().delivered,
        [held[0].id.clone()]
    );
    // A permanent refusal is not retried.
    let other =
        w.engine.request(input("gina", &[(OpAction::Grant, "erin", "apps:read")]), 2).unwrap().change.id;
    let refusing = flaky(1000, true);
    let pass = w.engine.deliver_notifications(&refusing, "live", &schedule).unwrap();
    // Its two notices, then the two dead letters told of them (refused too, and told of no more).
    assert_eq!(pass.dead.len(), 4);
    assert!(
        w.engine
            .notifications(Some(&other), None, 10)
            .unwrap()
            .iter()
            .all(|n| n.attempts == 1 && n.state == NoticeState::Dead)
    );
    assert!(
        w.engine
            .notifications(Some(&id), None, 10)
            .unwrap()
            .iter()
            .all(|n| n.state == NoticeState::Delivered)
    );
}

#[test]
fn time_bound_access_is_warned_of_a_day_then_an_hour_before_it_ends_once_each() {
    let w = world();
    let admin = Actor::System(SystemActor::Admin);
    let reach = |who: &str, email: &str| {
        w.engine
            .add_identity_reached(admin.clone(), n(who), IdentityKind::Human, None, None, Some(email))
            .unwrap()
    };
    reach("gina", "gina@example.com");
    w.engine
        .add_identity(admin.clone(), n("svc-gina"), IdentityKind::ServiceAccount, Some(&n("gina")), None)
        .unwrap();
    let rules = writ_policy::PolicyBundle::default_pack().files()["rules.toml"].clone()
        + "\n[[notify]]\nid = \"expiring\"\non = [\"access.expiring\"]\nto = [\"holder\", \"owner\"]\nchannels = [\"email\"]\n";
    w.engine.load_policy(admin, policy_with(&rules)).unwrap();
    let mut request = input("alice", &[(OpAction::Grant, "svc-gina", "apps:read")]);
    request.ops[0].duration = Some(Duration::hours(8));
    let id = w.engine.request(request, 1).unwrap().change.id;
    w.engine.approve(&id, &n("bob"), None, None).unwrap();
    w.engine.execute(&id, None).unwrap();
    w.engine.verify(&id).unwrap();
    let ends_at = w.engine.grants_of(&n("svc-gina")).unwrap()[0].expires_at.unwrap();

    // Within the day: warned once, the owner told (the service account has no address).
    let first = w.engine.warn_expiring().unwrap();
    assert_eq!(
        first.iter().map(|x| (x.ends_at, x.before)).collect::<Vec<_>>(),
        [(ends_at, Duration::hours(24))]
    );
    assert!(w.engine.warn_expiring().unwrap().is_empty(), "once");
    let expiring = |w: &World| {
        w.engine
            .notifications(Some(&id), None, 100)
            .unwrap()
            .into_iter()
            .filter(|x| x.notice.kind == "access.expiring")
            .map(|x| x.notice.address)
            .collect::<Vec<_>>()
    };
    assert_eq!(expiring(&w), ["gina@example.com"]);
    let warning = w
        .engine
        .notifications(Some(&id), None, 100)
        .unwrap()
        .into_iter()
        .find(|x| x.notice.kind == "access.expiring")
        .unwrap();
    let message = w.engine.message(warning).unwrap();
    assert!(message.text.contains(&format!("apps:read of svc-gina at {ends_at}")), "{}", message.text);
    assert_eq!(message.payload["data"]["ends"]["at"], ends_at.to_rfc3339());
    // Within the hour: warned again, once.
    advance(&w, 7 * 3_600_000 + 5 * 60_000);
    let second = w.engine.warn_expiring().unwrap();
    assert_eq!(second.iter().map(|x| x.before).collect::<Vec<_>>(), [Duration::hours(1)]);
    assert!(w.engine.warn_expiring().unwrap().is_empty(), "once");
    assert_eq!(expiring(&w).len(), 2);
    // The core refuses a warning given already, or about a grant the change did not make.
    let again = writ_core::machine::Command::WarnExpiry {
        identity: n("svc-gina"),
        entitlement: EntitlementRef::parse("apps:read").unwrap(),
        ends_at,
        before: Duration::hours(1),
    };
    assert_eq!(w.engine.transition(&id, again).unwrap_err().code(), "state.invalid_transition");
    let other = writ_core::machine::Command::WarnExpiry {
        identity: n("dave"),
        entitlement: EntitlementRef::parse("apps:read").unwrap(),
        ends_at,
        before: Duration::hours(1),
    };
    assert_eq!(w.engine.transition(&id, other).unwrap_err().code(), "state.invalid_transition");
    // The trail says so; past the end nothing more is warned.
    let warnings = w.engine.load(&id).unwrap().change.warnings;
    assert_eq!(
        warnings.iter().map(|x| x.before).collect::<Vec<_>>(),
        [Duration::hours(24), Duration::hours(1)]
    );
    advance(&w, 3_600_000);
    assert!(w.engine.warn_expiring().unwrap().is_empty());
}

#[test]
fn an_outbox_row_the_ledger_does_not_back_is_not_sent_and_a_finding_says_so() {
    let w = reached();
    let id = w.engine.request(input("gina", &[(OpAction::Grant, "erin", "apps:read")]), 1).unwrap().change.id;
    let event = w.engine.notifications(Some(&id), None, 1).unwrap()[0].event;
    // Rows an SQL edit added: to an address nobody registered, for an event that does not
    // exist, for a webhook that is not its group's.
    let db = rusqlite::Connection::open(w._dir.path().join("writ.db")).unwrap();
    for (n, event, recipient, channel, address) in [
        (7, event, "frank", "email", "attacker@example.net"),
        (8, 99_999, "frank", "email", "frank@example.com"),
        (9, event, "group:security", "webhook", "other"),
    ] {
        db.execute(
            "INSERT INTO notifications (id, event_idx, change_id, kind, recipient, channel, address, clear, state, attempts, next_ms, created_ms)
             VALUES (?1, ?2, ?3, 'approval.requested', ?4, ?5, ?6, 1, 'pending', 0, 0, 0)",
            rusqlite::params![format!("NTF-{event}-{n}"), i64::try_from(event).unwrap(), id.as_str(), recipient, channel, address],
        )
        .unwrap();
    }
    let courier = flaky(0, false);
    let schedule = Schedule::default();
    let pass = w.engine.deliver_notifications(&courier, "a", &schedule).unwrap();
    let sent = courier.sent.lock().unwrap().clone();
    let forged = [format!("NTF-{event}-7"), "NTF-99999-8".to_owned(), format!("NTF-{event}-9")];
    assert!(sent.contains(&format!("NTF-{event}-0")) && sent.contains(&format!("NTF-{event}-1")), "{sent:?}");
    assert!(forged.iter().all(|f| !sent.contains(f)), "a forged row was sent: {sent:?}");
    let mut dead = pass.dead.clone();
    dead.sort();
    let mut expected = forged.to_vec();
    expected.sort();
    assert_eq!(dead, expected);
    for forged in &pass.dead {
        let finding = w.engine.finding(&crate::findings::finding_id(DEAD_LETTER, forged)).unwrap();
        assert!(finding.detail.contains("does not match the ledger"), "{}", finding.detail);
    }
}

#[test]
fn an_exception_is_warned_of_before_its_term_ends_once_each_and_again_after_a_renewal() {
    use crate::exceptions::Term;
    let w = world();
    let (change, _) = missed_breakglass(&w);
    let admin = Actor::System(SystemActor::Admin);
    w.engine
        .add_identity_reached(
            admin.clone(),
            n("olga"),
            IdentityKind::Human,
            None,
            None,
            Some("olga@example.com"),
        )
        .unwrap();
    let rules = writ_policy::PolicyBundle::default_pack().files()["rules.toml"]
        .replace("incident-responders = []", "incident-responders = [\"alice\"]")
        + "\n[[notify]]\nid = \"exceptions\"\non = [\"exception.expiring\"]\nto = [\"owner\", \"requester\"]\nchannels = [\"email\"]\n";
    w.engine.load_policy(admin, policy_with(&rules)).unwrap();
    let input = exception_input("dave", "olga", change.as_str(), Term::For(Duration::hours(30)));
    let id = w.engine.request_exception(input, 1).unwrap().id.to_string();
    w.engine.approve_exception(&n("bob"), &id).unwrap();
    w.engine.approve_exception(&n("alice"), &id).unwrap();
    let told = |w: &World| {
        w.engine
            .notifications(None, None, 100)
            .unwrap()
            .into_iter()
            .filter(|x| x.notice.kind == "exception.expiring")
            .map(|x| x.notice.address)
            .collect::<Vec<_>>()
    };
    assert!(w.engine.warn_expiring_exceptions().unwrap().is_empty(), "30 hours left: not yet");
    advance(&w, 7 * 3_600_000);
    assert_eq!(w.engine.warn_expiring_exceptions().unwrap().len(), 1, "within the day");
    assert!(w.engine.warn_expiring_exceptions().unwrap().is_empty(), "once");
    assert_eq!(told(&w), ["olga@example.com"], "the owner (dave, who asked, has no address)");
    advance(&w, 22 * 3_600_000 + 10 * 60_000);
    assert_eq!(w.engine.warn_expiring_exceptions().unwrap().len(), 1, "within the hour");
    assert!(w.engine.warn_expiring_exceptions().unwrap().is_empty(), "once");
    assert_eq!(w.engine.exception(&id).unwrap().warned, Some(Duration::hours(1)));
    // The warnings are projections of the ledger like the rest of the exception.
    assert!(w.engine.check_projections().unwrap().is_empty());
    // A renewed term is warned of again.
    w.engine
        .renew_exception(&n("dave"), &id, Term::For(Duration::hours(20)), "audit still open".into())
        .unwrap();
    w.engine.approve_exception(&n("bob"), &id).unwrap();
    w.engine.approve_exception(&n("alice"), &id).unwrap();
    assert_eq!(w.engine.exception(&id).unwrap().warned, None);
    assert_eq!(w.engine.warn_expiring_exceptions().unwrap().len(), 1);
    assert_eq!(told(&w).len(), 3);
}

#[test]
fn a_failed_verification_proposes_the_rollback_to_its_owner() {
    let w = reached();
    let admin = Actor::System(SystemActor::Admin);
    let routes = "\n[[notify]]\nid = \"undo\"\non = [\"change.verification_failed\"]\nto = [\"rollback_owner\"]\nchannels = [\"email\"]\n";
    let rules = format!(
        "{}{routes}",
        RULES_WITH_SECURITY.replace("security = [\"carol\"]", "security = [\"erin\", \"frank\"]")
    );
    w.engine.load_policy(admin, policy_with(&rules)).unwrap();
    let input = RequestInput {
        rollback_owner: Some(n("gina")),
        ..input("alice", &[(OpAction::Grant, "dave", "apps:read")])
    };
    let id = w.engine.request(input, 7).unwrap().change.id;
    assert_eq!(w.engine.load(&id).unwrap().change.rollback_owner, Some(n("gina")));
    w.engine.approve(&id, &n("bob"), None, None).unwrap();
    w.engine.execute(&id, None).unwrap();
    revoke_out_of_band(&w, &id, "dave", "read");
    assert_eq!(w.engine.verify(&id).unwrap().change.state, ChangeState::VerificationFailed);
    let proposed: Vec<Notification> = w
        .engine
        .notifications(Some(&id), None, 100)
        .unwrap()
        .into_iter()
        .filter(|x| x.notice.kind == "change.verification_failed")
        .collect();
    assert_eq!(proposed.iter().map(|x| x.notice.address.as_str()).collect::<Vec<_>>(), ["gina@example.com"]);
    let message = w.engine.message(proposed.into_iter().next().unwrap()).unwrap();
    assert!(message.text.contains(&format!("writ change rollback {id} --as gina")), "{}", message.text);
    assert_eq!(message.payload["data"]["rollback_owner"], "gina");
}
