//! Notifications end to end, against the receivers the test command provides: a real SMTP sink
//! (PyPI aiosmtpd, writing a Maildir) and a webhook receiver that checks every delivery's
//! Standard Webhooks signature with the official library (PyPI standardwebhooks,
//! `scripts/webhook_receiver.py`). `writ serve` is a real process, killed with SIGKILL where
//! the test says so.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::World;
use crate::server::{Server, postgres, postgres_database, roles, service, token};

const CEDAR: &str = include_str!("../../../writ-policy/pack/access.cedar");
const RULES: &str = include_str!("../../../writ-policy/pack/rules.toml");
/// The Standard Webhooks secret the receiver and Writ share (24 random bytes, base64).
const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

/// The receivers' python (aiosmtpd and standardwebhooks installed), from the test command.
fn python() -> Option<String> {
    service("WRIT_TEST_NOTIFY_PYTHON", "the notification receivers (aiosmtpd, standardwebhooks)")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A child process killed on drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// aiosmtpd on `port`, writing every message it accepts into `maildir`.
fn smtp_sink(python: &str, port: u16, maildir: &Path) -> Process {
    let child = Command::new(python)
        .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
        .arg(maildir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the SMTP sink", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    Process(child)
}

/// The messages in the sink's Maildir, as text.
fn mails(maildir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(maildir.join("new")) else { return Vec::new() };
    let mut mails: Vec<String> =
        entries.map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap()).collect();
    mails.sort();
    mails
}

/// The webhook receiver: answers 503 to the first `fail` deliveries (or 307 to each with
/// `redirect`), logs each delivery it received.
struct Receiver {
    _process: Process,
    url: String,
    log: PathBuf,
}

impl Receiver {
    fn start(python: &str, dir: &Path, fail: u32, redirect: bool) -> Receiver {
        let secret = dir.join("receiver.whsec");
        std::fs::write(&secret, SECRET).unwrap();
        let log = dir.join("receiver.log");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/webhook_receiver.py");
        let mut command = Command::new(python);
        command.arg(script).arg("--secret-file").arg(&secret).arg("--log").arg(&log);
        command.args(["--fail", &fail.to_string()]);
        if redirect {
            command.arg("--redirect");
        }
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port =
            line.trim().strip_prefix("listening ").unwrap_or_else(|| panic!("receiver: {line:?}")).to_owned();
        Receiver { _process: Process(child), url: format!("http://127.0.0.1:{port}/writ"), log }
    }

    /// Every delivery received, in order.
    fn deliveries(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// The default pack with `security` = erin and frank, escalation after `escalate`, and routes:
/// approval requests to the eligible approvers and the security group (email and webhook),
/// decisions to the requester (email).
fn policy(w: &World, escalate: &str) -> PathBuf {
    let dir = w.dir.path().join("notify-policy");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("access.cedar"), CEDAR).unwrap();
    let mut rules = RULES.replace("security = []", "security = [\"erin\", \"frank\"]").replacen(
        "escalate_after = \"24h\"",
        &format!("escalate_after = \"{escalate}\""),
        1,
    );
    assert!(
        rules.contains("\"erin\", \"frank\"") && rules.contains(&format!("escalate_after = \"{escalate}\""))
    );
    rules.push_str(
        r#"
[[notify]]
id = "approvals"
on = ["approval.requested", "change.escalated"]
to = ["approvers", "escalation", "group:security"]
channels = ["email", "webhook"]

[[notify]]
id = "decisions"
on = ["change.approved", "change.verified", "change.rejected"]
to = ["requester"]
channels = ["email"]
"#,
    );
    std::fs::write(dir.join("rules.toml"), rules).unwrap();
    dir
}

/// A world whose people have addresses: gina requests (gina@example.com), erin and frank
/// approve (the security group); bob approves too but has no address.
fn world() -> World {
    reached(World::new())
}

fn reached(w: World) -> World {
    for (who, email) in
        [("gina", "gina@example.com"), ("erin", "erin@example.com"), ("frank", "frank@example.com")]
    {
        w.writ(&["identity", "add", who, "--kind", "human", "--email", email]).ok();
    }
    w.writ(&["identity", "add", "svc-gina", "--kind", "service_account", "--owner", "gina"]).ok();
    w
}

/// The `[notify]` configuration: the SMTP sink on `smtp_port`, the security group's webhook.
fn config(w: &World, smtp_port: u16, webhook: &str, allow_private: bool, retry: &str) -> PathBuf {
    config_as(w, smtp_port, webhook, allow_private, retry, "standard")
}

/// [`config`] with the webhook's payload format.
fn config_as(
    w: &World,
    smtp_port: u16,
    webhook: &str,
    allow_private: bool,
    retry: &str,
    format: &str,
) -> PathBuf {
    let secret = w.dir.path().join("security.whsec");
    std::fs::write(&secret, SECRET).unwrap();
    std::process::Command::new("chmod").arg("600").arg(&secret).status().unwrap();
    let file = w.dir.path().join("serve.toml");
    std::fs::write(
        &file,
        format!(
            r#"[notify]
from = "Writ <writ@example.com>"
timeout = "2s"
retry = {retry}

[notify.smtp]
host = "127.0.0.1"
port = {smtp_port}
tls = "none"

[notify.webhook.security]
url = "{webhook}"
secret_file = "{}"
allow_private = {allow_private}
format = "{format}"
"#,
            secret.display()
        ),
    )
    .unwrap();
    file
}

fn serve(w: &World, config: &Path, policy: &Path, log: &str) -> Server {
    let db_args = w.db_args();
    let args: Vec<&str> = db_args.iter().map(String::as_str).collect();
    Server::start_with(
        &args,
        &["--config", config.to_str().unwrap(), "--policy-dir", policy.to_str().unwrap()],
        &w.dir.path().join(log),
    )
}

fn request(w: &World) -> String {
    w.request_with(&[
        "--as",
        "gina",
        "--identity",
        "svc-gina",
        "--grant",
        "access:deploy-prod",
        "--justification",
        "the quarterly deploy needs it",
    ])
}

fn notifications(w: &World, change: &str) -> Vec<Value> {
    w.writ(&["notify", "list", "--change", change, "--json"]).json().as_array().unwrap().clone()
}

fn header<'a>(mail: &'a str, name: &str) -> Option<&'a str> {
    mail.lines().find_map(|l| l.strip_prefix(&format!("{name}: ")))
}

#[test]
fn an_approval_request_reaches_both_approvers_by_email_and_the_group_webhook_once_through_failures() {
    let Some(python) = python() else { return };
    let w = world();
    let dir = policy(&w, "24h");
    w.writ(&["policy", "reload", "--dir", dir.to_str().unwrap()]).ok();
    let maildir = w.dir.path().join("maildir");
    let port = free_port();
    let _sink = smtp_sink(&python, port, &maildir);
    let receiver = Receiver::start(&python, w.dir.path(), 3, false);
    let config = config(&w, port, &receiver.url, true, r#"["1s", "1s", "1s", "1s", "1s"]"#);

    // The request commits its notifications with its events (no server is running yet).
    let id = request(&w);
    let pending = notifications(&w, &id);
    let mut to: Vec<(String, String)> = pending
        .iter()
        .map(|n| (n["channel"].as_str().unwrap().to_owned(), n["address"].as_str().unwrap().to_owned()))
        .collect();
    to.sort();
    assert_eq!(
        to,
        [
            ("email".to_owned(), "erin@example.com".to_owned()),
            ("email".to_owned(), "frank@example.com".to_owned()),
            ("webhook".to_owned(), "security".to_owned())
        ],
        "{pending:?}"
    );
    assert!(pending.iter().all(|n| n["state"] == "pending" && n["kind"] == "approval.requested"));

    let _server = serve(&w, &config, &dir, "serve.log");
    wait_for("both emails and the webhook", Duration::from_secs(60), || {
        mails(&maildir).len() == 2 && receiver.deliveries().iter().any(|d| d["status"] == 204)
    });
    // Three 503s, then one 2xx: every attempt signed validly, all under one id.
    let deliveries = receiver.deliveries();
    let statuses: Vec<u64> = deliveries.iter().map(|d| d["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, [503, 503, 503, 204], "{deliveries:?}");
    assert!(deliveries.iter().all(|d| d["verified"] == true), "{deliveries:?}");
    let webhook = pending.iter().find(|n| n["channel"] == "webhook").unwrap();
    assert!(deliveries.iter().all(|d| d["id"] == webhook["id"]));
    let body = &deliveries.last().unwrap()["body"];
    assert_eq!(body["type"], "approval.requested");
    assert_eq!(body["data"]["change"], id.as_str());
    assert_eq!(body["data"]["justification"], Value::Null, "sealed text went out in clear: {body}");

    let mails = mails(&maildir);
    let mut recipients: Vec<&str> = mails.iter().map(|m| header(m, "To").unwrap()).collect();
    recipients.sort();
    assert_eq!(recipients, ["erin@example.com", "frank@example.com"]);
    for mail in &mails {
        assert_eq!(header(mail, "Writ-Change"), Some(id.as_str()), "{mail}");
        assert!(header(mail, "Subject").unwrap().contains(&id), "{mail}");
        assert!(mail.contains("text/plain") && mail.contains("text/html"), "{mail}");
        assert!(!mail.contains("quarterly deploy"), "the sealed justification was sent: {mail}");
    }

    // Nothing is delivered again: the outbox says so, and the receivers saw nothing more.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(receiver.deliveries().len(), 4);
    assert_eq!(mails.len(), crate::notify::mails(&maildir).len());
    let shown = w.writ(&["change", "show", &id, "--json"]).json();
    let listed = shown["notifications"].as_array().unwrap();
    assert_eq!(listed.len(), 3);
    for n in listed {
        assert_eq!(n["state"], "delivered", "{n}");
        let attempts = if n["channel"] == "webhook" { 4 } else { 1 };
        assert_eq!(n["attempts"], attempts, "{n}");
    }
    let text = w.writ(&["change", "show", &id]).ok();
    assert!(text.contains("notifications") && text.contains("delivered after 4 attempt(s)"), "{text}");
    // No secret in the database or the log.
    let log = std::fs::read_to_string(w.dir.path().join("serve.log")).unwrap();
    let key = SECRET.trim_start_matches("whsec_");
    assert!(!log.contains(key) && !w.fingerprint().contains(key));
}

#[test]
fn killing_the_server_between_commit_and_delivery_loses_no_notification() {
    let Some(python) = python() else { return };
    let w = world();
    let dir = policy(&w, "24h");
    let maildir = w.dir.path().join("maildir");
    let port = free_port();
    let receiver = Receiver::start(&python, w.dir.path(), 0, false);
    let config = config(&w, port, &receiver.url, true, r#"["1s", "1s", "1s", "1s", "1s", "1s", "1s", "1s"]"#);
    // The SMTP relay is down: the server commits the request and fails to deliver it.
    roles(&w, "gina", &["requester"]);
    let gina = token(&w, "gina");
    let server = serve(&w, &config, &dir, "serve-1.log");
    let reply = server.api().post(
        "/api/v1/changes",
        &gina,
        serde_json::json!({
            "identity": "svc-gina", "grant": ["access:deploy-prod"], "justification": "the quarterly deploy needs it"
        }),
    );
    let id = reply.expect(201)["id"].as_str().unwrap().to_owned();
    wait_for("a failed attempt", Duration::from_secs(30), || {
        notifications(&w, &id).iter().any(|n| n["channel"] == "email" && n["attempts"].as_u64() >= Some(1))
    });
    server.kill();
    let after_kill = notifications(&w, &id);
    assert!(
        after_kill.iter().filter(|n| n["channel"] == "email").all(|n| n["state"] == "pending"),
        "{after_kill:?}"
    );

    // The relay comes back, and so does a server: every notification arrives, once.
    let _sink = smtp_sink(&python, port, &maildir);
    let _server = serve(&w, &config, &dir, "serve-2.log");
    wait_for("both emails", Duration::from_secs(60), || mails(&maildir).len() == 2);
    // A notification the killed server had claimed waits out its lease (one delivery's
    // timeout and 5 s) before the new server may take it: wait for all, not a fixed time.
    wait_for("every notification delivered", Duration::from_secs(60), || {
        notifications(&w, &id).iter().all(|n| n["state"] == "delivered")
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(mails(&maildir).len(), 2);
    let delivered = notifications(&w, &id);
    assert!(delivered.iter().all(|n| n["state"] == "delivered"), "{delivered:?}");
    let delivered_hooks = receiver.deliveries().iter().filter(|d| d["status"] == 204).count();
    assert_eq!(delivered_hooks, 1, "the webhook was delivered {delivered_hooks} times");
}

#[test]
fn a_notification_that_never_gets_through_is_dead_lettered_and_the_change_still_escalates_and_is_approved() {
    let Some(python) = python() else { return };
    let w = world();
    let dir = policy(&w, "2s");
    let maildir = w.dir.path().join("maildir");
    let port = free_port();
    let _sink = smtp_sink(&python, port, &maildir);
    let receiver = Receiver::start(&python, w.dir.path(), 1000, false);
    let config = config(&w, port, &receiver.url, true, r#"["1s", "1s"]"#);
    let _server = serve(&w, &config, &dir, "serve.log");
    let id = request(&w);
    let webhook = |w: &World| {
        notifications(w, &id)
            .into_iter()
            .find(|n| n["kind"] == "approval.requested" && n["channel"] == "webhook")
            .unwrap()
    };
    wait_for("the dead letter", Duration::from_secs(60), || webhook(&w)["state"] == "dead");
    let dead = webhook(&w);
    assert_eq!(dead["attempts"], 3, "{dead}");
    assert!(dead["last_error"].as_str().unwrap().contains("503"), "{dead}");
    assert_eq!(receiver.deliveries().iter().filter(|d| d["id"] == dead["id"]).count(), 3);
    // A finding says so, naming the notification and how to retry it.
    let findings = w.writ(&["finding", "list", "--json"]).json();
    let finding = findings
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "notify.dead_letter" && f["subject"] == dead["id"])
        .unwrap_or_else(|| panic!("no dead-letter finding: {findings}"));
    assert_eq!(finding["change"], id.as_str());
    assert!(finding["detail"].as_str().unwrap().contains("writ notify retry"));
    let listed = w.writ(&["notify", "list", "--state", "dead", "--json"]).json();
    assert!(listed.as_array().unwrap().iter().any(|n| n["id"] == dead["id"]));

    // The change escalated on its own schedule all the same, and is approved.
    wait_for("the escalation", Duration::from_secs(30), || {
        w.writ(&["change", "show", &id, "--json"]).json()["escalated"].is_object()
    });
    w.writ(&["change", "approve", &id, "--as", "erin"]).ok();
    let shown = w.writ(&["change", "show", &id, "--json"]).json();
    assert_eq!(shown["state"], "approved");
    // The approval is told to the requester by email.
    wait_for("the approval email to gina", Duration::from_secs(30), || {
        mails(&maildir).iter().any(|m| header(m, "To") == Some("gina@example.com"))
    });

    // Retried by an admin, it is due again with the same id; a delivered one is refused.
    let retried = w.writ(&["notify", "retry", dead["id"].as_str().unwrap(), "--json"]).json();
    assert_eq!(retried["id"], dead["id"]);
    let delivered = notifications(&w, &id).into_iter().find(|n| n["state"] == "delivered").unwrap();
    let refused = w.writ(&["notify", "retry", delivered["id"].as_str().unwrap()]);
    assert_ne!(refused.code, 0);
    assert!(refused.stderr.contains("notify.delivered"), "{}", refused.stderr);
}

#[test]
fn a_webhook_at_a_private_address_or_answering_with_a_redirect_is_refused_with_a_clear_error() {
    let Some(python) = python() else { return };
    let w = world();
    let dir = policy(&w, "24h");
    let port = free_port();
    // A loopback webhook that does not say it may be internal: the server does not start.
    let receiver = Receiver::start(&python, w.dir.path(), 0, false);
    for url in [
        receiver.url.as_str(),
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]:9/",
    ] {
        let config = config(&w, port, url, false, "[\"1s\"]");
        let db_args = w.db_args();
        let out = Command::new(env!("CARGO_BIN_EXE_writ"))
            .args(&db_args)
            .args(["serve", "--listen", "127.0.0.1:0", "--config", config.to_str().unwrap()])
            .env_remove("WRIT_DB")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{url}: the server started");
        assert!(stderr.contains("notify.config") && stderr.contains("allow_private"), "{url}: {stderr}");
    }
    assert!(receiver.deliveries().is_empty());

    // A receiver that answers with a redirect: refused at once, not followed, dead-lettered.
    let elsewhere = w.dir.path().join("redirecting");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let redirecting = Receiver::start(&python, &elsewhere, 0, true);
    let config = config(&w, port, &redirecting.url, true, "[\"1s\", \"1s\", \"1s\"]");
    let _server = serve(&w, &config, &dir, "serve.log");
    let id = request(&w);
    let webhook = |w: &World| notifications(w, &id).into_iter().find(|n| n["channel"] == "webhook").unwrap();
    wait_for("the refusal", Duration::from_secs(30), || webhook(&w)["state"] == "dead");
    let dead = webhook(&w);
    assert_eq!(dead["attempts"], 1, "a redirect is not retried: {dead}");
    assert!(dead["last_error"].as_str().unwrap().contains("redirect"), "{dead}");
    assert_eq!(redirecting.deliveries().len(), 1, "the redirect was followed");
}

#[test]
fn notifications_over_the_api_are_for_auditors_and_admins_and_bad_input_changes_nothing() {
    let w = world();
    let dir = policy(&w, "24h");
    w.writ(&["policy", "reload", "--dir", dir.to_str().unwrap()]).ok();
    let id = request(&w);
    let http = crate::api::Http::start(w);
    let api = &http.api;
    let list = format!("/api/v1/notifications?change={id}");
    // Reading all notifications: auditors and admins; the change's own are on the change.
    for (token, status) in [(&http.alice, 403), (&http.bob, 403), (&http.carol, 403), (&http.root, 200)] {
        assert_eq!(api.get(&list, token).status, status);
    }
    let items = api.get(&list, &http.root).expect(200)["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 3);
    let change = api.get(&format!("/api/v1/changes/{id}"), &http.root).expect(200).clone();
    assert_eq!(change["notifications"].as_array().unwrap().len(), 3);
    let one = items[0]["id"].as_str().unwrap();
    api.get(&format!("/api/v1/notifications/{one}"), &http.root).expect(200);
    let before = http.fingerprint();
    // Retrying: admins only; bad ids and states are refused with a code.
    for token in [&http.alice, &http.bob, &http.carol] {
        api.post(&format!("/api/v1/notifications/{one}/retry"), token, serde_json::json!({}))
            .refused(403, "auth.role_required");
    }
    api.get("/api/v1/notifications?state=lost", &http.root).refused(400, "input.invalid_value");
    api.get("/api/v1/notifications?limit=0", &http.root).refused(400, "input.invalid_value");
    api.get("/api/v1/notifications/NTF-x", &http.root).refused(400, "input.invalid_value");
    api.get("/api/v1/notifications/NTF-999999-0", &http.root).refused(404, "not_found");
    api.post("/api/v1/notifications/NTF-999999-0/retry", &http.root, serde_json::json!({}))
        .refused(404, "not_found");
    api.post(&format!("/api/v1/notifications/{one}/retry"), &http.root, serde_json::json!({"now": true}))
        .refused(400, "request.malformed_json");
    assert_eq!(http.fingerprint(), before);
    // A pending one is made due now by an admin.
    let retried = api.post(&format!("/api/v1/notifications/{one}/retry"), &http.root, serde_json::json!({}));
    assert_eq!(retried.expect(200)["state"], "pending");
}

#[test]
fn email_goes_through_a_relay_that_requires_starttls_and_auth_with_credentials_from_a_0600_file() {
    let Some(python) = python() else { return };
    let w = world();
    let dir = policy(&w, "24h");
    let here = w.dir.path();
    // The relay's certificate, from a CA of its own that Writ is told to trust (ca_file).
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl").current_dir(here).args(args).output().unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    openssl(
        &[
            &["req", "-x509"],
            &ec[..],
            &["-days", "2", "-subj", "/CN=writ test CA", "-keyout", "ca.key", "-out", "ca.pem"],
        ]
        .concat(),
    );
    openssl(
        &[&["req"], &ec[..], &["-subj", "/CN=127.0.0.1", "-keyout", "relay.key", "-out", "relay.csr"]]
            .concat(),
    );
    std::fs::write(
        here.join("relay.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "relay.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "relay.ext",
        "-out",
        "relay.pem",
    ]);
    let password = "relay-pw-7f3a9c2e51";
    let credentials = here.join("smtp.credentials");
    std::fs::write(&credentials, format!("writ-relay:{password}\n")).unwrap();
    std::fs::copy(&credentials, here.join("relay.credentials")).unwrap();
    let maildir = here.join("maildir");
    let port = free_port();
    let relay_log = here.join("relay.log");
    let mut child = Command::new(&python)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/smtp_relay.py"))
        .args(["--port", &port.to_string()])
        .arg("--cert")
        .arg(here.join("relay.pem"))
        .arg("--key")
        .arg(here.join("relay.key"))
        .arg("--credentials-file")
        .arg(here.join("relay.credentials"))
        .arg("--maildir")
        .arg(&maildir)
        .arg("--log")
        .arg(&relay_log)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let _relay = Process(child);
    assert_eq!(line.trim(), "listening");
    let config = here.join("relay.toml");
    std::fs::write(
        &config,
        format!(
            "[notify]\nfrom = \"Writ <writ@example.com>\"\ntimeout = \"5s\"\nretry = [\"1s\", \"1s\", \"1s\"]\n\n\
             [notify.smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"starttls\"\nca_file = \"{}\"\ncredentials_file = \"{}\"\n",
            here.join("ca.pem").display(),
            credentials.display()
        ),
    )
    .unwrap();
    let db_args = w.db_args();
    let start = |log: &str| {
        Command::new(env!("CARGO_BIN_EXE_writ"))
            .args(&db_args)
            .args(["serve", "--listen", "127.0.0.1:0", "--config", config.to_str().unwrap()])
            .env_remove("WRIT_DB")
            .stderr(std::fs::File::create(here.join(log)).unwrap())
            .output()
            .unwrap()
    };
    // Readable by others: refused at start, with what to do and never the password.
    Command::new("chmod").arg("644").arg(&credentials).status().unwrap();
    let refused = start("refused.log");
    let said = std::fs::read_to_string(here.join("refused.log")).unwrap();
    assert!(!refused.status.success());
    assert!(said.contains("notify.config") && said.contains("chmod 600"), "{said}");
    assert!(!said.contains(password));

    Command::new("chmod").arg("600").arg(&credentials).status().unwrap();
    let args: Vec<&str> = db_args.iter().map(String::as_str).collect();
    let _server = Server::start_with(
        &args,
        &["--config", config.to_str().unwrap(), "--policy-dir", dir.to_str().unwrap()],
        &here.join("serve.log"),
    );
    let id = request(&w);
    let start = Instant::now();
    while mails(&maildir).len() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no email through the relay: {:?}",
            notifications(&w, &id).iter().map(|n| n["last_error"].clone()).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mails = mails(&maildir);
    assert!(mails.iter().all(|m| header(m, "Writ-Change") == Some(id.as_str())));
    let auths = std::fs::read_to_string(&relay_log).unwrap();
    assert!(auths.lines().all(|l| l == "ok") && auths.lines().count() >= 1, "{auths}");
    // The password is in its file only.
    let log = std::fs::read_to_string(here.join("serve.log")).unwrap();
    assert!(!log.contains(password) && !w.fingerprint().contains(password));
    let shown = w.writ(&["change", "show", &id, "--json"]).json().to_string();
    assert!(!shown.contains(password));
}

#[test]
fn a_chat_tool_gets_a_text_field_signed_like_any_webhook() {
    let Some(python) = python() else { return };
    let w = world();
    let dir = policy(&w, "24h");
    let maildir = w.dir.path().join("maildir");
    let port = free_port();
    let _sink = smtp_sink(&python, port, &maildir);
    let receiver = Receiver::start(&python, w.dir.path(), 0, false);
    let config = config_as(&w, port, &receiver.url, true, "[\"1s\"]", "text");
    let _server = serve(&w, &config, &dir, "serve.log");
    let id = request(&w);
    wait_for("the chat message", Duration::from_secs(30), || !receiver.deliveries().is_empty());
    let delivery = &receiver.deliveries()[0];
    assert_eq!(
        (delivery["verified"].as_bool(), delivery["status"].as_u64()),
        (Some(true), Some(204)),
        "{delivery}"
    );
    let text = delivery["body"]["text"].as_str().unwrap();
    assert!(text.contains(&id) && text.contains("Approval requested"), "{text}");
    assert!(!text.contains("quarterly deploy"), "sealed text in a chat message: {text}");
}

#[test]
fn three_instances_on_one_postgres_deliver_each_notification_once() {
    let Some(python) = python() else { return };
    let Some(pg) = postgres() else { return };
    let w = reached(World::on_postgres(&postgres_database(&pg, "writ_notify_multi")));
    let dir = policy(&w, "24h");
    w.writ(&["policy", "reload", "--dir", dir.to_str().unwrap()]).ok();
    let maildir = w.dir.path().join("maildir");
    let port = free_port();
    let _sink = smtp_sink(&python, port, &maildir);
    let receiver = Receiver::start(&python, w.dir.path(), 0, false);
    let config = config(&w, port, &receiver.url, true, "[\"1s\", \"1s\"]");
    let changes: Vec<String> = (0..8).map(|_| request(&w)).collect();
    let servers: Vec<Server> = (0..3).map(|n| serve(&w, &config, &dir, &format!("serve-{n}.log"))).collect();
    wait_for("every notification", Duration::from_secs(90), || {
        mails(&maildir).len() == 16 && receiver.deliveries().len() == 8
    });
    std::thread::sleep(Duration::from_secs(3));
    // Each once: two emails and one webhook per change, no more.
    assert_eq!(mails(&maildir).len(), 16);
    let mut ids: Vec<String> =
        receiver.deliveries().iter().map(|d| d["id"].as_str().unwrap().to_owned()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 8, "a webhook was delivered twice");
    for change in &changes {
        let mails_about =
            mails(&maildir).iter().filter(|m| header(m, "Writ-Change") == Some(change.as_str())).count();
        assert_eq!(mails_about, 2, "{change}");
        assert!(notifications(&w, change).iter().all(|n| n["state"] == "delivered" && n["attempts"] == 1));
    }
    drop(servers);
}
