//! OIDC bearer tokens: a JWT from the configured issuer, verified against the issuer's published
//! keys (discovery → `jwks_uri`), is a second way to authenticate. The claim named in the
//! configuration (default `sub`) must be the name of a registered Writ identity; roles still
//! come from Writ, never from the token.
//!
//! Accepted: asymmetric signatures only (RS*, PS*, ES256/384, EdDSA), `iss` equal to the
//! configured issuer, `aud` containing the configured audience, `exp` in the future and `nbf`
//! not in the future (60 s leeway). Refused: `alg: none`, HMAC algorithms (which would let a
//! published public key be used as a shared secret), unknown keys, anything else. Keys are
//! cached and fetched again when a token names an unknown key id (at most every 30 s).

use std::sync::RwLock;

use base64::Engine as _;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use writ_core::name::IdentityName;
use writ_engine::access::AuthError;

/// The web interface as an OIDC client (`[web]`): its client id (by default the audience) and
/// its secret, if it is a confidential client (read from a file, never logged).
#[derive(Clone)]
pub struct WebClient {
    pub id: String,
    pub secret: Option<String>,
}

impl std::fmt::Debug for WebClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebClient")
            .field("id", &self.id)
            .field("secret", &self.secret.as_ref().map(|_| "…"))
            .finish()
    }
}

/// The OIDC settings of `writ serve`.
#[derive(Clone, Debug)]
pub struct OidcConfig {
    pub issuer: String,
    pub audience: String,
    pub claim: String,
}

struct Keys {
    set: JwkSet,
    fetched: Instant,
}

pub struct Oidc {
    config: OidcConfig,
    agent: ureq::Agent,
    keys: RwLock<Option<Keys>>,
}

const ACCEPTED: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

const REFETCH_AFTER: Duration = Duration::from_secs(30);
const KEYS_LIVE: Duration = Duration::from_secs(600);

fn refused(why: impl Into<String>) -> AuthError {
    AuthError::Oidc(why.into())
}

impl Oidc {
    pub fn new(config: OidcConfig) -> Oidc {
        let agent: ureq::Agent =
            ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(5))).build().into();
        Oidc { config, agent, keys: RwLock::new(None) }
    }

    fn get_json(&self, url: &str) -> Result<serde_json::Value, AuthError> {
        let mut response = self
            .agent
            .get(url)
            .call()
            .map_err(|e| refused(format!("cannot reach the issuer ({url}): {e}")))?;
        response
            .body_mut()
            .read_json()
            .map_err(|e| refused(format!("the issuer sent invalid JSON ({url}): {e}")))
    }

    /// The issuer's key set, from discovery; refetched when stale or when `refresh` asks and the
    /// cached set is older than [`REFETCH_AFTER`].
    fn keys(&self, refresh: bool) -> Result<JwkSet, AuthError> {
        if let Ok(cached) = self.keys.read()
            && let Some(keys) = cached.as_ref()
        {
            let age = keys.fetched.elapsed();
            if age < KEYS_LIVE && (!refresh || age < REFETCH_AFTER) {
                return Ok(keys.set.clone());
            }
        }
        let issuer = self.config.issuer.trim_end_matches('/');
        let discovery = self.get_json(&format!("{issuer}/.well-known/openid-configuration"))?;
        if discovery.get("issuer").and_then(|i| i.as_str()) != Some(self.config.issuer.as_str()) {
            return Err(refused("the discovery document names another issuer"));
        }
        let jwks_uri = discovery
            .get("jwks_uri")
            .and_then(|u| u.as_str())
            .ok_or_else(|| refused("the discovery document has no jwks_uri"))?;
        let set: JwkSet = serde_json::from_value(self.get_json(jwks_uri)?)
            .map_err(|e| refused(format!("the issuer's key set is malformed: {e}")))?;
        if let Ok(mut cached) = self.keys.write() {
            *cached = Some(Keys { set: set.clone(), fetched: Instant::now() });
        }
        Ok(set)
    }

    /// The Writ identity name a presented JWT stands for, or why it is refused.
    pub fn verify(&self, token: &str) -> Result<IdentityName, AuthError> {
        let claims = self.claims(token, &self.config.audience)?;
        self.subject(&claims)
    }

    /// The identity the configured claim names.
    fn subject(
        &self,
        claims: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<IdentityName, AuthError> {
        let subject = claims
            .get(&self.config.claim)
            .and_then(|v| v.as_str())
            .ok_or_else(|| refused(format!("the token has no string claim `{}`", self.config.claim)))?;
        IdentityName::parse(subject)
            .map_err(|_| refused(format!("claim `{}` is not a valid identity name", self.config.claim)))
    }

    /// The issuer's authorization and token endpoints, from discovery.
    pub fn endpoints(&self) -> Result<(String, String), AuthError> {
        let issuer = self.config.issuer.trim_end_matches('/');
        let discovery = self.get_json(&format!("{issuer}/.well-known/openid-configuration"))?;
        if discovery.get("issuer").and_then(|i| i.as_str()) != Some(self.config.issuer.as_str()) {
            return Err(refused("the discovery document names another issuer"));
        }
        let endpoint = |name: &str| {
            discovery
                .get(name)
                .and_then(|u| u.as_str())
                .map(str::to_owned)
                .ok_or_else(|| refused(format!("the discovery document has no {name}")))
        };
        Ok((endpoint("authorization_endpoint")?, endpoint("token_endpoint")?))
    }

    /// The second half of the authorization code flow (RFC 6749 §4.1.3, with PKCE's
    /// `code_verifier`, RFC 7636): exchanges `code` at the token endpoint, verifies the ID token
    /// it answers (signature, issuer, audience `client.id`, expiry, and `nonce`), and returns
    /// the identity its claim names.
    pub fn redeem(
        &self,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
        client: &WebClient,
        nonce: &str,
    ) -> Result<IdentityName, AuthError> {
        let (_, token_endpoint) = self.endpoints()?;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
        ];
        let mut request = self.agent.post(&token_endpoint).header("Accept", "application/json");
        match &client.secret {
            // client_secret_basic (RFC 6749 §2.3.1): each part form-encoded, then Basic.
            Some(secret) => {
                let pair = serde_urlencoded::to_string([("", client.id.as_str()), ("", secret.as_str())])
                    .unwrap_or_default();
                let mut parts = pair.split('&').map(|p| p.trim_start_matches('='));
                let (id, secret) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
                let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
                request = request.header("Authorization", format!("Basic {basic}"));
            }
            // A public client says who it is in the body; PKCE binds the code to this sign-in.
            None => form.push(("client_id", client.id.as_str())),
        }
        let mut response = request
            .send_form(form)
            .map_err(|e| refused(format!("the issuer's token endpoint refused the code: {e}")))?;
        let answer: serde_json::Value = response
            .body_mut()
            .read_json()
            .map_err(|e| refused(format!("the issuer's token endpoint sent invalid JSON: {e}")))?;
        let id_token = answer
            .get("id_token")
            .and_then(|t| t.as_str())
            .ok_or_else(|| refused("the issuer's token endpoint sent no id_token"))?;
        let claims = self.claims(id_token, &client.id)?;
        let presented = claims.get("nonce").and_then(|n| n.as_str()).unwrap_or_default();
        if !writ_engine::access::constant_time_eq(presented, nonce) {
            return Err(refused("the ID token's nonce is not the one this sign-in sent"));
        }
        self.subject(&claims)
    }

    /// The claims of a JWT from the issuer for `audience`, verified.
    fn claims(
        &self,
        token: &str,
        audience: &str,
    ) -> Result<serde_json::Map<String, serde_json::Value>, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| refused("not a JWT"))?;
        if !ACCEPTED.contains(&header.alg) {
            return Err(refused(format!("algorithm {:?} is not accepted", header.alg)));
        }
        let mut set = self.keys(false)?;
        if let Some(kid) = &header.kid
            && set.find(kid).is_none()
        {
            set = self.keys(true)?;
        }
        let candidates: Vec<_> = set
            .keys
            .iter()
            .filter(|k| header.kid.is_none() || k.common.key_id == header.kid)
            .filter(|k| !matches!(k.algorithm, AlgorithmParameters::OctetKey(_)))
            .collect();
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = 60;
        for jwk in candidates {
            let Ok(key) = DecodingKey::from_jwk(jwk) else { continue };
            match jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(token, &key, &validation)
            {
                Ok(data) => return Ok(data.claims),
                Err(error) => {
                    use jsonwebtoken::errors::ErrorKind as K;
                    match error.kind() {
                        K::InvalidSignature | K::InvalidAlgorithm | K::InvalidKeyFormat => continue,
                        K::ExpiredSignature => return Err(refused("the token has expired")),
                        K::ImmatureSignature => return Err(refused("the token is not valid yet")),
                        K::InvalidIssuer => return Err(refused("the token is from another issuer")),
                        K::InvalidAudience => return Err(refused("the token is for another audience")),
                        K::InvalidToken | K::Base64(_) | K::Json(_) | K::Utf8(_) => {
                            return Err(refused("the token is malformed"));
                        }
                        _ => return Err(refused("the token's claims are invalid")),
                    }
                }
            }
        }
        Err(refused("the signature does not verify with the issuer's keys"))
    }
}
