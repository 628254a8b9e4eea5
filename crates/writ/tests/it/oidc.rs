//! OIDC bearer tokens against a real OpenID provider process (PyPI `oidc-provider-mock`, started
//! by the test command): ID tokens obtained through the authorization-code flow authenticate as
//! the Writ identity named by their subject; forged, foreign, tampered and algorithm-confused
//! tokens are refused and change nothing.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};

use crate::api::Http;
use crate::harness::World;
use crate::server::{oidc_issuer, roles};

const AUDIENCE: &str = "writ-api";

/// An ID token for `subject` issued to `client`, through the provider's authorization-code flow.
fn id_token(issuer: &str, subject: &str, client: &str) -> String {
    let agent: ureq::Agent =
        ureq::Agent::config_builder().http_status_as_error(false).max_redirects(0).build().into();
    let redirect = "http://127.0.0.1/callback";
    let authorize = format!(
        "{issuer}/oauth2/authorize?client_id={client}&redirect_uri={redirect}&response_type=code&scope=openid&state=s1"
    );
    let response = agent
        .post(&authorize)
        .header("content-type", "application/x-www-form-urlencoded")
        .send(format!("sub={subject}"))
        .unwrap();
    let location = response.headers().get("location").unwrap().to_str().unwrap().to_owned();
    let code = location.split("code=").nth(1).unwrap().split('&').next().unwrap().to_owned();
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{client}:secret"));
    let mut token = agent
        .post(format!("{issuer}/oauth2/token"))
        .header("authorization", format!("Basic {basic}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .send(format!("grant_type=authorization_code&code={code}&redirect_uri={redirect}"))
        .unwrap();
    let body: Value = token.body_mut().read_json().unwrap();
    body["id_token"].as_str().unwrap_or_else(|| panic!("no id_token: {body}")).to_owned()
}

fn part(token: &str, n: usize) -> Value {
    serde_json::from_slice(&B64.decode(token.split('.').nth(n).unwrap()).unwrap()).unwrap()
}

fn jwt(header: &Value, claims: &Value, signature: &str) -> String {
    format!("{}.{}.{signature}", B64.encode(header.to_string()), B64.encode(claims.to_string()))
}

fn start(world: World, issuer: &str) -> Http {
    Http::start_with(world, &["--oidc-issuer", issuer, "--oidc-audience", AUDIENCE])
}

#[test]
fn oidc_tokens_from_the_issuer_authenticate_as_writ_identities() {
    let Some(issuer) = oidc_issuer() else { return };
    let http = start(World::new(), &issuer);
    let alice = id_token(&issuer, "alice", AUDIENCE);
    let me = http.api.get("/api/v1/whoami", &alice);
    assert_eq!(me.expect(200)["name"], "alice");
    assert_eq!(me.body["roles"], json!(["requester"]), "roles come from Writ, not from the token");
    let body = json!({ "identity": "dave", "grant": ["access:eng-read"], "justification": "via SSO" });
    let made = http.api.post("/api/v1/changes", &alice, body);
    let id = made.expect(201)["id"].as_str().unwrap().to_owned();
    assert_eq!(made.body["requester"], "alice");
    // carol signs in through the same issuer but is no approver here.
    let carol = id_token(&issuer, "carol", AUDIENCE);
    http.api
        .post(&format!("/api/v1/changes/{id}/approve"), &carol, json!({}))
        .refused(403, "auth.role_required");
    // And the same separation of duties holds: alice, with approver added, cannot approve her own.
    roles(&http.world, "alice", &["approver"]);
    http.api
        .post(&format!("/api/v1/changes/{id}/approve"), &alice, json!({}))
        .refused(403, "sod.self_approval");
}

#[test]
fn forged_foreign_and_confused_oidc_tokens_are_refused_and_change_nothing() {
    let Some(issuer) = oidc_issuer() else { return };
    let http = start(World::new(), &issuer);
    let id = http.request("dave", "eng-read");
    // bob (an approver) signs in; every forgery below starts from his genuine token.
    let genuine = id_token(&issuer, "bob", AUDIENCE);
    let before = http.fingerprint();
    let approve = format!("/api/v1/changes/{id}/approve");
    let refused = |token: &str, why: &str| {
        let reply = http.api.post(&approve, token, json!({}));
        assert_eq!((reply.status, reply.code()), (401, "auth.oidc_refused"), "{why}: {}", reply.body);
    };
    // A subject the provider vouches for but Writ does not know.
    refused(&id_token(&issuer, "mallory", AUDIENCE), "unknown subject");
    // A token the same issuer made for another application.
    refused(&id_token(&issuer, "bob", "another-app"), "foreign audience");
    let (header, claims) = (part(&genuine, 0), part(&genuine, 1));
    let signature = genuine.split('.').nth(2).unwrap();
    // The genuine signature over edited claims.
    let mut promoted = claims.clone();
    promoted["sub"] = json!("root");
    refused(&jwt(&header, &promoted, signature), "edited claims");
    let mut longer = claims.clone();
    longer["exp"] = json!(claims["exp"].as_i64().unwrap() + 86_400);
    refused(&jwt(&header, &longer, signature), "extended expiry");
    // No signature at all.
    refused(&jwt(&json!({ "alg": "none", "typ": "JWT" }), &claims, ""), "alg none");
    // Algorithm confusion: HMAC keyed with the issuer's public key material.
    let jwks: Value = ureq::get(format!("{issuer}/jwks")).call().unwrap().body_mut().read_json().unwrap();
    let public = jwks["keys"][0]["n"].as_str().unwrap().to_owned();
    let confused_header = json!({ "alg": "HS256", "typ": "JWT" });
    let signing_input =
        format!("{}.{}", B64.encode(confused_header.to_string()), B64.encode(claims.to_string()));
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(public.as_bytes()).unwrap();
    mac.update(signing_input.as_bytes());
    refused(
        &format!("{signing_input}.{}", B64.encode(mac.finalize().into_bytes())),
        "HS256 with the public key",
    );
    // Garbage that is neither a Writ token nor a JWT.
    refused("not-a-token", "garbage");
    assert_eq!(http.fingerprint(), before, "a refused OIDC token changed something");
    // A server without an issuer accepts no JWT at all.
    let plain = Http::start(World::new());
    plain.api.get("/api/v1/whoami", &genuine).refused(401, "auth.invalid_token");
    // The genuine token still works, and no token reached the log.
    http.api.post(&approve, &genuine, json!({})).expect(200);
    let log = std::fs::read_to_string(&http.server.log).unwrap();
    assert!(!log.contains(signature), "a token's signature was logged");
}
