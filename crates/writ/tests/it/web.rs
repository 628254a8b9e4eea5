//! The web interface in a real browser: Debian's headless Chromium driven over W3C WebDriver
//! (ChromeDriver, started by the test command), against real `writ serve` processes and the
//! test command's OpenID Connect provider. People sign in through the provider's own form
//! (authorization code with PKCE) or with a Writ token, and act only through pages.
//! Screenshots of the inbox and the change page are written under the target directory.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::api::Http;
use crate::harness::World;
use crate::server::{oidc_issuer, roles, service};

/// The W3C WebDriver element key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One browser (its own profile, so its own cookies), closed on drop.
struct Browser {
    agent: ureq::Agent,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn open() -> Option<Browser> {
        let driver = service("WRIT_TEST_WEBDRIVER", "ChromeDriver and Chromium")?;
        let binary = service("WRIT_TEST_CHROMIUM", "Chromium")?;
        let profile = tempfile::tempdir().unwrap();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--window-size=1280,1000".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": binary, "args": args },
        }}});
        let mut reply = agent.post(format!("{driver}/session")).send_json(&capabilities).unwrap();
        let body: Value = reply.body_mut().read_json().unwrap();
        let session =
            body["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {body}")).to_owned();
        Some(Browser { agent, session: format!("{driver}/session/{session}"), _profile: profile })
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.session);
        let mut reply = match (method, body) {
            ("GET", _) => self.agent.get(&url).call().unwrap(),
            ("DELETE", _) => self.agent.delete(&url).call().unwrap(),
            (_, body) => self.agent.post(&url).send_json(body.unwrap_or_else(|| json!({}))).unwrap(),
        };
        let body: Value = reply.body_mut().read_json().unwrap();
        body["value"].clone()
    }

    fn go(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url })));
    }

    fn url(&self) -> String {
        self.call("GET", "/url", None).as_str().unwrap().to_owned()
    }

    fn try_find(&self, css: &str) -> Option<String> {
        let found = self.call("POST", "/element", Some(json!({ "using": "css selector", "value": css })));
        found[ELEMENT].as_str().map(str::to_owned)
    }

    /// The element `css` selects, waiting up to 10 s for it to appear.
    fn find(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(element) = self.try_find(css) {
                return element;
            }
            assert!(Instant::now() < deadline, "no element {css} on {}:\n{}", self.url(), self.text("body"));
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn text(&self, css: &str) -> String {
        let Some(element) = self.try_find(css) else { return String::new() };
        self.call("GET", &format!("/element/{element}/text"), None).as_str().unwrap_or_default().to_owned()
    }

    /// Waits up to 10 s for the text of `css` to satisfy `test`; returns it.
    fn wait_text(&self, css: &str, test: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = self.text(css);
            if test(&text) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{css} on {} reads {text:?}:\n{}",
                self.url(),
                self.text("body")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn click(&self, css: &str) {
        let element = self.find(css);
        self.call("POST", &format!("/element/{element}/click"), Some(json!({})));
    }

    fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css);
        self.call("POST", &format!("/element/{element}/value"), Some(json!({ "text": text })));
    }

    fn script(&self, script: &str) -> Value {
        self.call("POST", "/execute/sync", Some(json!({ "script": script, "args": [] })))
    }

    /// Saves a PNG of the page where a person can look at it (not committed).
    fn screenshot(&self, name: &str) {
        use base64::Engine as _;
        let png = self.call("GET", "/screenshot", None);
        let bytes = base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap()).unwrap();
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("web-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, bytes).unwrap();
        eprintln!("screenshot: {}", path.display());
    }

    /// Signs in through the OIDC provider's own authorization form as `subject`.
    fn sign_in_oidc(&self, base: &str, subject: &str) {
        self.go(&format!("{base}/ui/inbox"));
        assert!(self.url().contains("/ui/signin"), "an anonymous visit goes to sign-in: {}", self.url());
        self.click("#oidc");
        self.type_into("input[name=sub]", subject);
        self.click("button[type=submit]:not([value=deny])");
        self.wait_text("#me", |t| t == subject);
    }

    /// Signs in with a Writ API token on the local form.
    fn sign_in_token(&self, base: &str, token: &str, who: &str) {
        self.go(&format!("{base}/ui/signin"));
        self.type_into("#token", token);
        self.click("form[action='/ui/signin/token'] button[type=submit]");
        self.wait_text("#me", |t| t == who);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.agent.delete(&self.session).call();
    }
}

fn state(http: &Http, id: &str) -> String {
    http.api.get(&format!("/api/v1/changes/{id}"), &http.root).expect(200)["state"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The server with OIDC sign-in and, optionally, a configuration file's `[web]` table.
fn start(issuer: &str, web: Option<&str>) -> Http {
    let world = World::new();
    roles(&world, "alice", &["approver"]);
    let mut args = vec![
        "--oidc-issuer".to_owned(),
        issuer.to_owned(),
        "--oidc-audience".to_owned(),
        "writ-web".to_owned(),
    ];
    // A confidential client: its secret in a file of mode 0600 (the provider asks for one).
    let secret = world.dir.path().join("oidc-client.secret");
    std::fs::write(&secret, "web-client-secret\n").unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let path = world.dir.path().join("serve.toml");
    let table = web.unwrap_or_default();
    std::fs::write(&path, format!("[web]\nclient_secret_file = {:?}\n{table}\n", secret.to_str().unwrap()))
        .unwrap();
    args.extend(["--config".to_owned(), path.to_str().unwrap().to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Http::start_with(world, &args)
}

#[test]
fn a_change_goes_from_request_to_review_in_the_browser_with_a_verified_inclusion_proof() {
    let Some(issuer) = oidc_issuer() else { return };
    let Some(alice) = Browser::open() else { return };
    let http = start(&issuer, None);
    let base = http.server.base.clone();

    // alice signs in through OIDC and asks for deploy access for her service account.
    alice.sign_in_oidc(&base, "alice");
    alice.go(&format!("{base}/ui/request?q=deploy"));
    alice.click("#identity option[value=svc-ci]");
    alice.click("input[name=grant][value='access:deploy-prod']");
    alice.type_into("#for", "8h");
    alice.type_into("#justification", "ship the release");
    alice.type_into("#ticket", "OPS-1");
    alice.click("#check");
    // The policy's answer, before anything is submitted.
    let tier = alice.wait_text("#tier", |t| !t.is_empty());
    assert!(!tier.is_empty());
    assert!(alice.text("#approvals").starts_with('1'), "{}", alice.text("#preview"));
    assert_eq!(http.api.get("/api/v1/changes", &http.root).expect(200)["items"], json!([]), "nothing yet");
    alice.click("#submit");
    alice.wait_text("#state", |t| t == "pending_approval");
    let id = alice.url().rsplit('/').next().unwrap().to_owned();
    assert!(id.starts_with("CHG-"), "{id}");
    assert_eq!(alice.text("#who-asked"), "alice");

    // Her own approval is refused, with the core's reason, and changes nothing.
    let why = alice.text("#why-approve");
    assert!(why.contains("sod.self_approval"), "{why}");
    let before = http.fingerprint();
    alice.script("const b = document.querySelector('#step-approve button'); b.disabled = false; b.click();");
    alice.wait_text("#code", |t| t == "sod.self_approval");
    assert_eq!(http.fingerprint(), before, "a refused approval changes nothing");
    assert_eq!(state(&http, &id), "pending_approval");

    // bob signs in through OIDC and approves from his inbox.
    let bob = Browser::open().unwrap();
    bob.sign_in_oidc(&base, "bob");
    bob.wait_text("#approvals", |t| t.contains(&id));
    bob.screenshot("inbox");
    bob.click(&format!("#approvals a[href='/ui/changes/{id}']"));
    bob.click("#step-approve button");
    bob.wait_text("#state", |t| t == "approved");
    assert_eq!(bob.text("#who-approved"), "bob");

    // The executor implements and verifies it (over the API, as an executor service would).
    http.api.post(&format!("/api/v1/changes/{id}/execute"), &http.executor, json!({})).expect(200);
    http.api.post(&format!("/api/v1/changes/{id}/verify"), &http.executor, json!({})).expect(200);

    // carol signs in with her Writ token and reviews it from her inbox.
    let carol = Browser::open().unwrap();
    carol.sign_in_token(&base, &http.carol, "carol");
    carol.wait_text("#reviews", |t| t.contains(&id));
    carol.click(&format!("#reviews a[href='/ui/changes/{id}']"));
    carol.type_into("#step-review input[name=notes]", "deploy access as approved");
    carol.click("#step-review button");
    carol.wait_text("#state", |t| t == "reviewed");
    assert_eq!(carol.text("#reviewed-by"), "carol");
    assert_eq!(carol.text("#verified"), "yes");

    // The trail, every event of it proved in the browser against the signed checkpoint.
    http.settle();
    carol.go(&format!("{base}/ui/changes/{id}"));
    let buttons = carol.script("return document.querySelectorAll('button.verify').length").as_u64().unwrap();
    let events = http.api.get(&format!("/api/v1/changes/{id}"), &http.root).expect(200)["events"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(buttons as usize, events, "every event offers its proof");
    carol.script("document.querySelectorAll('button.verify').forEach(b => b.click())");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let outputs = carol
            .script("return Array.from(document.querySelectorAll('#events output')).map(o => o.textContent)");
        let texts: Vec<&str> = outputs.as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        if texts.iter().all(|t| t.starts_with('\u{2713}')) {
            break;
        }
        assert!(texts.iter().all(|t| !t.starts_with('\u{2717}')), "a proof failed in the browser: {texts:?}");
        assert!(Instant::now() < deadline, "proofs not checked: {texts:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    carol.screenshot("change");

    // The same page as JSON is the API's view.
    let page: Value = {
        let mut reply = ureq::get(format!("{base}/api/v1/changes/{id}"))
            .header("authorization", format!("Bearer {}", http.carol))
            .call()
            .unwrap();
        reply.body_mut().read_json().unwrap()
    };
    let json_page = carol.script(&format!(
        "const r = new XMLHttpRequest(); r.open('GET', '/ui/changes/{id}', false); r.setRequestHeader('Accept', 'application/json'); r.send(); return JSON.parse(r.responseText);"
    ));
    assert_eq!(json_page["events"], page["events"]);
    assert_eq!(json_page["state"], "reviewed");
}

#[test]
fn forged_forms_ended_sessions_and_changes_out_of_scope_are_refused_in_the_browser() {
    let Some(issuer) = oidc_issuer() else { return };
    let Some(bob) = Browser::open() else { return };
    // Idle sessions end after 15 s: long enough for the steps below on a loaded machine.
    let http = start(&issuer, Some("session_idle = \"15s\""));
    let base = http.server.base.clone();
    let id = http.request("svc-ci", "deploy-prod");

    // A form posted without its CSRF token, or with another, is refused and changes nothing.
    bob.sign_in_token(&base, &http.bob, "bob");
    for (why, script) in [
        (
            "no token",
            "const f = document.querySelector('#step-approve'); f.querySelector('input[name=csrf]').remove(); f.submit();",
        ),
        (
            "another token",
            "const f = document.querySelector('#step-approve'); f.querySelector('input[name=csrf]').value = 'x'.repeat(43); f.submit();",
        ),
    ] {
        bob.go(&format!("{base}/ui/changes/{id}"));
        bob.find("#step-approve");
        let before = http.fingerprint();
        bob.script(script);
        bob.wait_text("#code", |t| t == "auth.csrf");
        assert_eq!(http.fingerprint(), before, "{why}: nothing changes");
        assert_eq!(state(&http, &id), "pending_approval", "{why}");
    }

    // A change the viewer may not see: vera acts for vendor acme; alice's change is not hers.
    let vera = Browser::open().unwrap();
    vera.sign_in_token(&base, &http.vera, "vera");
    vera.go(&format!("{base}/ui/changes/{id}"));
    vera.wait_text("#code", |t| t == "auth.vendor_scope");
    assert!(!vera.text("body").contains("svc-ci"), "nothing of the change is shown");
    let proof = vera.script(&format!(
        "const r = new XMLHttpRequest(); r.open('GET', '/ui/changes/{id}/proof/0', false); r.setRequestHeader('Accept', 'application/json'); r.send(); return [r.status, r.responseText];"
    ));
    assert_eq!(proof[0], 403, "{proof}");

    // A session past its expiry is refused: the page asks to sign in again, a form does nothing.
    bob.go(&format!("{base}/ui/changes/{id}"));
    bob.find("#step-approve");
    std::thread::sleep(Duration::from_secs(16));
    let before = http.fingerprint();
    bob.click("#step-approve button");
    bob.wait_text("#notice", |t| t.contains("session has ended"));
    assert_eq!(http.fingerprint(), before, "an expired session's form changes nothing");
    assert_eq!(state(&http, &id), "pending_approval");
    bob.go(&format!("{base}/ui/inbox"));
    assert!(bob.url().contains("/ui/signin"), "{}", bob.url());
    // Signing in again works, and so does the approval.
    bob.sign_in_token(&base, &http.bob, "bob");
    bob.go(&format!("{base}/ui/changes/{id}"));
    bob.click("#step-approve button");
    bob.wait_text("#state", |t| t == "approved");

    // A disabled identity's session ends at its next request.
    vera.sign_in_token(&base, &http.vera, "vera");
    http.world.writ(&["identity", "disable", "vera", "--reason", "left acme"]).ok();
    vera.go(&format!("{base}/ui/inbox"));
    vera.wait_text("#code", |t| t == "auth.identity_disabled");
}

/// A step posted by a viewer who may not take it: (viewer, step, fields, status, code).
type Refusal<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], u16, &'a str);

/// An admin form posted: (visitor, its CSRF token, path, fields, the status it gets).
type AdminCase<'a> = (&'a Visitor, &'a str, &'a str, Vec<(&'a str, &'a str)>, u16);

/// A cookie-keeping client of the web interface, without a browser: for the matrices.
struct Visitor {
    agent: ureq::Agent,
    base: String,
    cookies: std::cell::RefCell<std::collections::BTreeMap<String, String>>,
}

/// A page's answer: status, where it redirects, and its body.
struct Page {
    status: u16,
    location: String,
    body: String,
}

impl Page {
    /// The error code an error page or error JSON shows.
    fn code(&self) -> String {
        if let Ok(json) = serde_json::from_str::<Value>(&self.body) {
            return json["error"]["code"].as_str().unwrap_or_default().to_owned();
        }
        self.body
            .split("<code id=\"code\">")
            .nth(1)
            .and_then(|r| r.split('<').next())
            .unwrap_or_default()
            .to_owned()
    }
}

/// The value of the first `name="csrf"` hidden input of a page.
fn csrf_of(html: &str) -> String {
    html.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_default()
        .to_owned()
}

impl Visitor {
    fn new(base: &str) -> Visitor {
        let agent = ureq::Agent::config_builder().http_status_as_error(false).max_redirects(0).build().into();
        Visitor { agent, base: base.to_owned(), cookies: Default::default() }
    }

    fn cookie_header(&self) -> String {
        self.cookies.borrow().iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    fn keep(&self, reply: &mut ureq::http::Response<ureq::Body>) -> Page {
        for set in reply.headers().get_all("set-cookie") {
            let pair = set.to_str().unwrap().split(';').next().unwrap();
            let (k, v) = pair.split_once('=').unwrap();
            if v.is_empty() {
                self.cookies.borrow_mut().remove(k);
            } else {
                self.cookies.borrow_mut().insert(k.to_owned(), v.to_owned());
            }
        }
        let location =
            reply.headers().get("location").map(|l| l.to_str().unwrap().to_owned()).unwrap_or_default();
        let body = reply.body_mut().read_to_string().unwrap_or_default();
        Page { status: reply.status().as_u16(), location, body }
    }

    fn get(&self, path: &str, json: bool) -> Page {
        let url = if path.starts_with("http") { path.to_owned() } else { format!("{}{path}", self.base) };
        let accept = if json { "application/json" } else { "text/html" };
        let mut reply = self
            .agent
            .get(&url)
            .header("cookie", self.cookie_header())
            .header("accept", accept)
            .call()
            .unwrap();
        self.keep(&mut reply)
    }

    /// A download: its media type and bytes.
    fn download(&self, path: &str) -> (String, Vec<u8>) {
        let mut reply = self
            .agent
            .get(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .call()
            .unwrap();
        assert_eq!(reply.status(), 200, "{path}");
        let media = reply.headers().get("content-type").unwrap().to_str().unwrap().to_owned();
        (media, reply.body_mut().read_to_vec().unwrap())
    }

    fn post(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let body = serde_urlencoded::to_string(fields).unwrap();
        let mut reply = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .header("content-type", "application/x-www-form-urlencoded")
            .send(body)
            .unwrap();
        self.keep(&mut reply)
    }

    /// Signs in with a token; returns the session's CSRF token.
    fn sign_in(&self, token: &str) -> String {
        let form = self.get("/ui/signin", false);
        let signed = self.post("/ui/signin/token", &[("csrf", &csrf_of(&form.body)), ("token", token)]);
        assert_eq!((signed.status, signed.location.as_str()), (303, "/ui/inbox"), "{}", signed.body);
        csrf_of(&self.get("/ui/inbox", false).body)
    }
}

#[test]
fn each_page_answers_each_role_as_the_api_would_and_refused_steps_change_nothing() {
    let Some(issuer) = oidc_issuer() else { return };
    let http = start(&issuer, None);
    let base = http.server.base.clone();
    let id = http.request("svc-ci", "deploy-prod");
    let change = format!("/ui/changes/{id}");
    let viewers = [
        ("alice", &http.alice),
        ("bob", &http.bob),
        ("carol", &http.carol),
        ("root", &http.root),
        ("vera", &http.vera),
        ("writ-executor", &http.executor),
    ];
    let sessions: Vec<(&str, Visitor, String)> = viewers
        .iter()
        .map(|(who, token)| {
            let visitor = Visitor::new(&base);
            let csrf = visitor.sign_in(token);
            (*who, visitor, csrf)
        })
        .collect();
    // (page, who may see it); everyone else gets 403 with the API's code.
    let everyone = ["alice", "bob", "carol", "root", "vera", "writ-executor"];
    let pages: [(&str, &[&str]); 9] = [
        ("/ui/inbox", &everyone),
        ("/ui/request", &["alice", "vera"]),
        ("/ui/changes", &everyone),
        (&change, &["alice", "bob", "carol", "root", "writ-executor"]),
        ("/ui/breakglass", &everyone),
        ("/ui/findings", &["root"]),
        ("/ui/exceptions", &["root"]),
        ("/ui/audit", &["root"]),
        ("/ui/admin", &["root"]),
    ];
    for (page, allowed) in pages {
        for (who, visitor, _) in &sessions {
            for json in [false, true] {
                let got = visitor.get(page, json);
                if allowed.contains(who) {
                    assert_eq!(got.status, 200, "{who} {page} json={json}: {}", got.body);
                    if json {
                        serde_json::from_str::<Value>(&got.body).unwrap_or_else(|e| panic!("{page}: {e}"));
                    } else {
                        assert!(got.body.contains(&format!("<span id=\"me\">{who}</span>")), "{who} {page}");
                    }
                } else {
                    assert_eq!(got.status, 403, "{who} {page} json={json}: {}", got.body);
                    assert!(
                        ["auth.role_required", "auth.vendor_scope"].contains(&got.code().as_str()),
                        "{who} {page}: {}",
                        got.code()
                    );
                    assert!(
                        !got.body.contains("svc-ci"),
                        "{who} {page}: a refusal shows nothing of the change"
                    );
                }
            }
        }
    }
    // The change as JSON is the API's view of it.
    let root = &sessions[3].1;
    // The audit page's verification is the API's, and its bundle verifies offline.
    http.settle();
    let report: Value = serde_json::from_str(&root.get("/ui/audit/verify", true).body).unwrap();
    assert_eq!(report, *http.api.get("/api/v1/ledger/verify", &http.root).expect(200));
    let (media, tar) = root.download("/ui/audit/bundle");
    assert_eq!(media, "application/x-tar");
    let archive = http.world.dir.path().join("web-bundle.tar");
    std::fs::write(&archive, tar).unwrap();
    let bundle = http.world.dir.path().join("web-bundle");
    std::fs::create_dir(&bundle).unwrap();
    let unpacked =
        std::process::Command::new("tar").arg("-xf").arg(&archive).arg("-C").arg(&bundle).status().unwrap();
    assert!(unpacked.success());
    let key = std::fs::read_to_string(format!("{}.key", http.world.db.display())).unwrap();
    let trusted = writ_ledger::checkpoint::NoteSigner::parse(&key).unwrap().verifier().to_text();
    let verified = std::process::Command::new(env!("CARGO_BIN_EXE_writ"))
        .args(["audit", "verify", bundle.to_str().unwrap(), "--trusted-key", &trusted])
        .env_remove("WRIT_DB")
        .output()
        .unwrap();
    assert!(verified.status.success(), "{}", String::from_utf8_lossy(&verified.stderr));
    assert_eq!(sessions[0].1.get("/ui/audit/bundle", true).status, 403, "alice is no auditor");
    let page: Value = serde_json::from_str(&root.get(&change, true).body).unwrap();
    let api = http.api.get(&format!("/api/v1/changes/{id}"), &http.root);
    assert_eq!(page, *api.expect(200));

    // Steps posted by viewers who may not take them: refused with the step's own code, nothing
    // changes. (viewer, step, fields, status, code)
    let reason = [("reason", "no")];
    let notes = [("notes", "fine")];
    let refusals: [Refusal; 10] = [
        ("alice", "approve", &[], 403, "sod.self_approval"),
        ("carol", "approve", &[], 403, "auth.role_required"),
        ("root", "approve", &[], 403, "auth.role_required"),
        ("vera", "approve", &[], 403, "auth.role_required"),
        ("writ-executor", "execute", &[], 409, "state.invalid_transition"),
        ("bob", "cancel", &reason, 403, "auth.role_required"),
        ("carol", "review", &notes, 409, "state.invalid_transition"),
        ("bob", "reject", &[], 400, "request.missing_field"),
        ("bob", "delete", &[], 404, "not_found"),
        ("vera", "cancel", &reason, 403, "auth.vendor_scope"),
    ];
    for (who, step, fields, status, code) in refusals {
        let (_, visitor, csrf) = sessions.iter().find(|(w, _, _)| *w == who).unwrap();
        let before = http.fingerprint();
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend_from_slice(fields);
        let got = visitor.post(&format!("{change}/{step}"), &all);
        assert_eq!((got.status, got.code().as_str()), (status, code), "{who} {step}: {}", got.body);
        assert_eq!(http.fingerprint(), before, "{who} {step}: nothing changes");
    }
    // Another session's CSRF token is not this one's.
    let (_, bob, _) = &sessions[1];
    let before = http.fingerprint();
    let got = bob.post(&format!("{change}/approve"), &[("csrf", &sessions[0].2)]);
    assert_eq!((got.status, got.code().as_str()), (403, "auth.csrf"));
    assert_eq!(http.fingerprint(), before);
    // With its own, bob approves.
    let got = bob.post(&format!("{change}/approve"), &[("csrf", &sessions[1].2)]);
    assert_eq!((got.status, got.location.as_str()), (303, change.as_str()), "{}", got.body);
    assert_eq!(state(&http, &id), "approved");
    // A proof is served only for the change's own events.
    let proof = bob.get(&format!("{change}/proof/0"), true);
    assert_eq!(proof.status, 404, "event 0 is the registry's, not the change's: {}", proof.body);

    // Signed out, the session is gone; its cookie no longer opens a page.
    let (_, alice, csrf) = &sessions[0];
    let kept = alice.cookie_header();
    assert_eq!(alice.post("/ui/signout", &[("csrf", csrf)]).status, 303);
    let replayed = Visitor::new(&base);
    for pair in kept.split("; ") {
        let (k, v) = pair.split_once('=').unwrap();
        replayed.cookies.borrow_mut().insert(k.to_owned(), v.to_owned());
    }
    let got = replayed.get("/ui/inbox", true);
    assert_eq!((got.status, got.code().as_str()), (401, "auth.session_expired"));
    // A made-up cookie is no session at all.
    let forged = Visitor::new(&base);
    forged.cookies.borrow_mut().insert("writ_session".into(), "AAAA.BBBB".into());
    assert_eq!(forged.get("/ui/inbox", true).code(), "auth.missing_token");
    // A token that is not one: refused at sign-in, no session.
    let stranger = Visitor::new(&base);
    let form = stranger.get("/ui/signin", false);
    let got = stranger
        .post("/ui/signin/token", &[("csrf", &csrf_of(&form.body)), ("token", "writ_0000000000000000_00")]);
    assert_eq!(got.status, 401);
    assert!(got.body.contains("id=\"error\""), "{}", got.body);
    assert_eq!(stranger.get("/ui/inbox", true).status, 401);
    // Without the sign-in form's token: refused.
    let got = stranger.post("/ui/signin/token", &[("csrf", "x"), ("token", &http.bob)]);
    assert_eq!(got.code(), "auth.csrf");
}

#[test]
fn an_oidc_sign_in_is_bound_to_its_browser_and_its_state_is_taken_once() {
    let Some(issuer) = oidc_issuer() else { return };
    let http = start(&issuer, None);
    let base = http.server.base.clone();
    // The provider's authorization form, answered as `subject`: where it sends the browser back.
    let authorize = |location: &str, subject: &str| {
        let agent: ureq::Agent =
            ureq::Agent::config_builder().http_status_as_error(false).max_redirects(0).build().into();
        let answer = agent
            .post(location)
            .header("content-type", "application/x-www-form-urlencoded")
            .send(format!("sub={subject}"))
            .unwrap();
        answer.headers().get("location").unwrap().to_str().unwrap().to_owned()
    };
    // The first half: to the provider, with PKCE and a nonce.
    let started = Visitor::new(&base);
    let go = started.get("/ui/signin/oidc", false);
    assert_eq!(go.status, 303);
    for parameter in
        ["code_challenge_method=S256", "code_challenge=", "nonce=", "state=", "response_type=code"]
    {
        assert!(go.location.contains(parameter), "{parameter}: {}", go.location);
    }
    // bob authorizes at the provider's form; the provider sends the browser back with a code.
    let back = authorize(&go.location, "bob");
    assert!(back.contains("/ui/auth/callback?"), "{back}");
    // Delivered to another browser: refused, and the state is spent.
    let other = Visitor::new(&base);
    other.get("/ui/signin", false);
    let got = other.get(&back, false);
    assert_eq!(got.status, 401);
    assert!(got.body.contains("started in another browser"), "{}", got.body);
    assert_eq!(other.get("/ui/inbox", true).status, 401);
    // Replayed to the browser that started it: the state was taken, so refused too.
    let got = started.get(&back, false);
    assert_eq!(got.status, 401);
    assert!(got.body.contains("unknown, used or too old"), "{}", got.body);
    assert_eq!(started.get("/ui/inbox", true).status, 401);
    // A fresh sign-in in one browser works, once.
    let go = started.get("/ui/signin/oidc", false);
    let back = authorize(&go.location, "bob");
    let got = started.get(&back, false);
    assert_eq!((got.status, got.location.as_str()), (303, "/ui/inbox"), "{}", got.body);
    assert_eq!(started.get("/ui/inbox", true).status, 200);
    // An identity the provider vouches for but Writ does not know is not signed in.
    let nobody = Visitor::new(&base);
    let go = nobody.get("/ui/signin/oidc", false);
    let back = authorize(&go.location, "mallory");
    let got = nobody.get(&back, false);
    assert_eq!(got.status, 401);
    assert!(got.body.contains("mallory is not a registered Writ identity"), "{}", got.body);
    assert_eq!(nobody.get("/ui/inbox", true).status, 401);
}

#[test]
fn an_admin_changes_roles_tokens_and_standing_and_a_finding_gets_an_exception_from_the_pages() {
    let Some(issuer) = oidc_issuer() else { return };
    let http = start(&issuer, None);
    let base = http.server.base.clone();
    let root = Visitor::new(&base);
    let root_csrf = root.sign_in(&http.root);
    let bob = Visitor::new(&base);
    let bob_csrf = bob.sign_in(&http.bob);

    // Admin forms: refused to a non-admin, and to malformed input, with nothing changed.
    let grant = [("identity", "carol"), ("role", "approver"), ("assign", "grant")];
    let cases: [AdminCase; 5] = [
        (&bob, &bob_csrf, "/ui/admin/roles", grant.to_vec(), 403),
        (&bob, &bob_csrf, "/ui/admin/identities/dave/state", vec![("to", "disabled"), ("reason", "x")], 403),
        (
            &root,
            &root_csrf,
            "/ui/admin/roles",
            vec![("identity", "carol"), ("role", "god"), ("assign", "grant")],
            400,
        ),
        (
            &root,
            &root_csrf,
            "/ui/admin/roles",
            vec![("identity", "carol"), ("role", "approver"), ("assign", "maybe")],
            400,
        ),
        (
            &root,
            &root_csrf,
            "/ui/admin/identities/dave/state",
            vec![("to", "disabled"), ("reason", " ")],
            400,
        ),
    ];
    for (visitor, csrf, path, fields, status) in cases {
        let before = http.fingerprint();
        let mut all = vec![("csrf", csrf)];
        all.extend(fields.iter().copied());
        let got = visitor.post(path, &all);
        assert_eq!(got.status, status, "{path} {fields:?}: {}", got.body);
        assert_eq!(http.fingerprint(), before, "{path} {fields:?}: nothing changes");
    }
    // A role granted from the page is in force, and recorded.
    let mut all = vec![("csrf", root_csrf.as_str())];
    all.extend(grant);
    assert_eq!(root.post("/ui/admin/roles", &all).location, "/ui/admin");
    let admin: Value = serde_json::from_str(&root.get("/ui/admin", true).body).unwrap();
    assert!(admin["roles"].as_array().unwrap().contains(&json!(["carol", "approver"])), "{}", admin["roles"]);
    // A token revoked from the page ends its API use and the session opened with it.
    let bob_id = http.bob.split('_').nth(1).unwrap();
    let got = root.post(&format!("/ui/admin/tokens/{bob_id}/revoke"), &[("csrf", &root_csrf)]);
    assert_eq!(got.location, "/ui/admin", "{}", got.body);
    http.api.get("/api/v1/changes", &http.bob).refused(401, "auth.token_revoked");
    assert_eq!(bob.get("/ui/inbox", true).code(), "auth.token_revoked");
    // An identity disabled from the page.
    let got = root.post(
        "/ui/admin/identities/dave/state",
        &[("csrf", &root_csrf), ("to", "disabled"), ("reason", "left")],
    );
    assert_eq!(got.location, "/ui/admin", "{}", got.body);
    let admin: Value = serde_json::from_str(&root.get("/ui/admin", true).body).unwrap();
    let dave = admin["identities"].as_array().unwrap().iter().find(|i| i["name"] == "dave").unwrap().clone();
    assert_eq!(dave["state"], "disabled");

    // A finding from reconciliation gets an exception requested from the findings page.
    let edited = crate::harness::ACCESS
        .replace("[entitlements.eng-read]\nmembers = []", "[entitlements.eng-read]\nmembers = [\"carol\"]");
    std::fs::write(http.world.repo.join("access.toml"), edited).unwrap();
    crate::harness::git(
        &http.world.repo,
        &["-c", "user.name=M", "-c", "user.email=m@example.invalid", "commit", "-qam", "by hand"],
    );
    http.api.post("/api/v1/reconcile", &http.root, json!({ "target": "access" })).expect(200);
    let findings: Value = serde_json::from_str(&root.get("/ui/findings", true).body).unwrap();
    let finding = findings["items"][0]["id"].as_str().unwrap().to_owned();
    // Only a requester is offered the form: root (admin, auditor) is not; alice, made an
    // auditor here, is.
    let form = format!("/ui/findings/{finding}/except");
    assert!(!root.get("/ui/findings", false).body.contains(&form));
    let auditor =
        [("csrf", root_csrf.as_str()), ("identity", "alice"), ("role", "auditor"), ("assign", "grant")];
    assert_eq!(root.post("/ui/admin/roles", &auditor).location, "/ui/admin");
    let alice = Visitor::new(&base);
    let alice_csrf = alice.sign_in(&http.alice);
    assert!(alice.get("/ui/findings", false).body.contains(&form));
    let before = http.fingerprint();
    let missing =
        alice.post(&format!("/ui/findings/{finding}/except"), &[("csrf", &alice_csrf), ("owner", "alice")]);
    assert_eq!((missing.status, missing.code().as_str()), (400, "request.missing_field"), "{}", missing.body);
    assert_eq!(http.fingerprint(), before);
    let asked = alice.post(
        &format!("/ui/findings/{finding}/except"),
        &[
            ("csrf", &alice_csrf),
            ("owner", "alice"),
            ("compensating_control", "weekly review of the group"),
            ("justification", "contractor until March"),
            ("for", "30d"),
        ],
    );
    assert_eq!(asked.location, "/ui/exceptions", "{}", asked.body);
    let exceptions: Value = serde_json::from_str(&root.get("/ui/exceptions", true).body).unwrap();
    let exception = &exceptions["items"][0];
    assert_eq!(exception["requester"], "alice");
    assert_eq!(exception["compensating_control"], "weekly review of the group");
    let exception_id = exception["id"].as_str().unwrap().to_owned();
    let approve = format!("/ui/exceptions/{exception_id}/approve");

    // It waits in an approver's inbox; its requester and a vendor's approver may not approve it.
    let victor = Visitor::new(&base);
    let victor_csrf = victor.sign_in(&http.victor);
    for (who, visitor, csrf) in [("alice", &alice, &alice_csrf), ("victor", &victor, &victor_csrf)] {
        let before = http.fingerprint();
        let refused = visitor.post(&approve, &[("csrf", csrf)]);
        assert_eq!(refused.status, 403, "{who}: {}", refused.body);
        assert_eq!(http.fingerprint(), before, "{who}: nothing changes");
    }
    let carol = Visitor::new(&base);
    let carol_csrf = carol.sign_in(&http.carol);
    let inbox: Value = serde_json::from_str(&carol.get("/ui/inbox", true).body).unwrap();
    assert_eq!(inbox["exceptions"][0]["id"], exception_id.as_str(), "{inbox}");
    let approved = carol.post(&approve, &[("csrf", &carol_csrf)]);
    assert_eq!(approved.location, "/ui/inbox", "{}", approved.body);
    let exceptions: Value = serde_json::from_str(&root.get("/ui/exceptions", true).body).unwrap();
    assert_eq!(exceptions["items"][0]["approvals"][0]["approver"], "carol");
}

#[test]
fn glass_is_broken_from_the_page_only_by_whom_policy_lets_and_shows_its_deadline() {
    let Some(issuer) = oidc_issuer() else { return };
    let http = start(&issuer, None);
    crate::breakglass::load_policy(&http.world, "policy-web", "24h");
    let base = http.server.base.clone();
    let fields = |csrf: &str| {
        vec![
            ("csrf".to_owned(), csrf.to_owned()),
            ("grant".to_owned(), "access:deploy-prod".to_owned()),
            ("for".to_owned(), "30m".to_owned()),
            ("reason".to_owned(), "INC-9: deploys fail".to_owned()),
            ("ticket".to_owned(), "INC-9".to_owned()),
        ]
    };
    // bob is no incident responder: refused by policy, nothing changes.
    let bob = Visitor::new(&base);
    let bob_csrf = bob.sign_in(&http.bob);
    let before = http.fingerprint();
    let owned = fields(&bob_csrf);
    let pairs: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let refused = bob.post("/ui/breakglass", &pairs);
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(http.fingerprint(), before, "a refused break-glass changes nothing");
    // alice is: the access is granted at once, and the page shows its deadline.
    let alice = Visitor::new(&base);
    let alice_csrf = alice.sign_in(&http.alice);
    let owned = fields(&alice_csrf);
    let pairs: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let broken = alice.post("/ui/breakglass", &pairs);
    assert!(broken.location.starts_with("/ui/changes/CHG-"), "{} {}", broken.status, broken.body);
    let id = broken.location.rsplit('/').next().unwrap().to_owned();
    assert_eq!(state(&http, &id), "verified");
    let listed: Value = serde_json::from_str(&alice.get("/ui/breakglass", true).body).unwrap();
    let line = &listed["items"][0];
    assert_eq!(line["id"], id.as_str());
    assert!(line["approval_due"].as_str().unwrap().ends_with('Z'), "{line}");
    // bob approves it after the fact from the change page.
    let approved = bob.post(&format!("/ui/changes/{id}/approve"), &[("csrf", &bob_csrf)]);
    assert_eq!(approved.status, 303, "{}", approved.body);
    let view = http.api.get(&format!("/api/v1/changes/{id}"), &http.root);
    assert_eq!(view.expect(200)["approvals"][0]["approver"], "bob");
}

#[test]
fn the_request_form_asks_for_the_window_policy_demands_and_the_change_page_shows_it() {
    let Some(issuer) = oidc_issuer() else { return };
    let http = start(&issuer, None);
    crate::record::load_policy(&http.world);
    let alice = Visitor::new(&http.server.base);
    let csrf = alice.sign_in(&http.alice);
    let form = |window: Option<(&'static str, &'static str)>| {
        let mut fields = vec![
            ("csrf", csrf.clone()),
            ("identity", "svc-ci".to_owned()),
            ("grant", "access:finance-read".to_owned()),
            ("justification", "quarter close".to_owned()),
        ];
        if let Some((start, end)) = window {
            fields.extend([
                ("window_start", start.to_owned()),
                ("window_end", end.to_owned()),
                ("window_zone", "Europe/Berlin".to_owned()),
            ]);
        }
        fields
    };
    let post = |path: &str, fields: Vec<(&str, String)>| {
        let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        alice.post(path, &pairs)
    };
    let before = http.fingerprint();
    let asked = post("/ui/request/preview", form(None));
    assert!(
        asked.body.contains("policy.window_required") && asked.body.contains("maintenance window"),
        "{}",
        asked.body
    );
    let windowed = form(Some(("2031-03-04T22:00", "2031-03-05T01:00")));
    let answered = post("/ui/request/preview", windowed.clone());
    assert!(
        answered.body.contains("required by <code>tier.change-window</code>: any window"),
        "{}",
        answered.body
    );
    let refused = post("/ui/request", form(None));
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(http.fingerprint(), before, "previews and a refused request record nothing");
    let submitted = post("/ui/request", windowed);
    assert!(submitted.location.starts_with("/ui/changes/CHG-"), "{} {}", submitted.status, submitted.body);
    let page = alice.get(&submitted.location, false);
    assert!(
        page.body.contains("Maintenance window") && page.body.contains("given in Europe/Berlin"),
        "{}",
        page.body
    );
    let view: Value = serde_json::from_str(&alice.get(&submitted.location, true).body).unwrap();
    assert_eq!(view["window"]["start"], "2031-03-04T21:00:00.000Z");
    assert_eq!(view["window"]["demanded_by"], serde_json::json!(["tier.change-window"]));
    // The page offers a comment to its requester; a comment without text is refused.
    assert!(page.body.contains("id=\"step-comment\""), "{}", page.body);
    let path = format!("{}/comment", submitted.location);
    let before = http.fingerprint();
    let empty = post(&path, vec![("csrf", csrf.clone()), ("text", " ".to_owned())]);
    assert_eq!(empty.status, 400, "{}", empty.body);
    assert_eq!(http.fingerprint(), before);
    let commented =
        post(&path, vec![("csrf", csrf.clone()), ("text", "window agreed with the CAB".to_owned())]);
    assert_eq!(commented.status, 303, "{}", commented.body);
    let page = alice.get(&submitted.location, false);
    assert!(page.body.contains("window agreed with the CAB"), "{}", page.body);
}

#[test]
fn the_rollback_owner_rolls_a_change_back_from_its_page() {
    let Some(issuer) = oidc_issuer() else { return };
    let http = start(&issuer, None);
    let w = &http.world;
    let id = w.request_with(&[
        "--as",
        "carol",
        "--identity",
        "dave",
        "--grant",
        "access:eng-read",
        "--justification",
        "on call",
        "--rollback-owner",
        "alice",
    ]);
    w.writ(&["change", "approve", &id, "--as", "bob"]).ok();
    w.writ(&["change", "execute", &id]).ok();
    w.writ(&["change", "verify", &id]).ok();
    let alice = Visitor::new(&http.server.base);
    let csrf = alice.sign_in(&http.alice);
    let page = alice.get(&format!("/ui/changes/{id}"), false);
    assert!(
        page.body.contains("id=\"step-rollback\"") && page.body.contains("Rollback owner"),
        "{}",
        page.body
    );
    // bob approved it: he is offered no rollback, and a forced one is refused.
    let bob = Visitor::new(&http.server.base);
    let bob_csrf = bob.sign_in(&http.bob);
    assert!(!bob.get(&format!("/ui/changes/{id}"), false).body.contains("id=\"step-rollback\""));
    let before = http.fingerprint();
    let forced = bob
        .post(&format!("/ui/changes/{id}/rollback"), &[("csrf", &bob_csrf), ("justification", "mine now")]);
    assert_eq!(forced.status, 403, "{}", forced.body);
    assert_eq!(http.fingerprint(), before);
    let rolled = alice.post(
        &format!("/ui/changes/{id}/rollback"),
        &[("csrf", &csrf), ("justification", "pager rota ended")],
    );
    assert_eq!(rolled.status, 303, "{}", rolled.body);
    let undo: Value = serde_json::from_str(&alice.get(&rolled.location, true).body).unwrap();
    assert_eq!(
        (undo["rollback_of"].as_str(), undo["requester"].as_str()),
        (Some(id.as_str()), Some("alice"))
    );
    assert_eq!(undo["operations"][0]["action"], "revoke");
}
