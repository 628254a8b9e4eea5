//! How the composition registers the openbao connector: its name, its settings (what each
//! means, which are required, which name a secret file) and how to connect from them.

use crate::{OpenBaoConnector, OpenBaoSettings};

/// The OpenBao connector as the composition registers it.
pub static REGISTRATION: writ_connector::Registration = writ_connector::Registration {
    name: "openbao",
    summary: "OpenBao: database roles, static roles, token policies and PKI roles, each credential \
              delivered to KV with the change ID",
    settings: &[
        writ_connector::Setting::text(
            "addr",
            "url",
            "the server's address, http://127.0.0.1:8200 (loopback only in this build)",
        )
        .required(),
        writ_connector::Setting::text(
            "token_file",
            "token-file",
            "a file holding Writ's OpenBao token (read at each connection, never stored)",
        )
        .required()
        .kind(writ_connector::SettingKind::SecretFile),
        writ_connector::Setting::text(
            "database_mount",
            "database-mount",
            "the database secrets engine's mount (default: database)",
        ),
        writ_connector::Setting::text(
            "kv_mount",
            "kv-mount",
            "the KV v2 mount credentials are delivered to (default: secret)",
        ),
        writ_connector::Setting::text(
            "kv_prefix",
            "kv-prefix",
            "the path under the KV mount credentials are delivered to (default: writ)",
        ),
        writ_connector::Setting::text(
            "policies",
            "policies",
            "ACL policies (comma-separated) Writ may issue tokens for, offered as policy/NAME (default: none)",
        ),
        writ_connector::Setting::text(
            "pki_mount",
            "pki-mount",
            "the PKI engine's mount; its roles are offered as pki/ROLE (default: pki)",
        ),
        writ_connector::Setting::text(
            "pki_domain",
            "pki-domain",
            "certificates are issued for IDENTITY.DOMAIN (default: for IDENTITY)",
        ),
        writ_connector::registry::TIMEOUT,
    ],
    keep_open: false,
    public: true,
    connect: |settings| {
        let openbao = OpenBaoSettings {
            addr: settings.required("addr")?.to_owned(),
            database_mount: settings.get("database_mount").unwrap_or("database").to_owned(),
            kv_mount: settings.get("kv_mount").unwrap_or("secret").to_owned(),
            kv_prefix: settings.get("kv_prefix").unwrap_or("writ").to_owned(),
            policies: settings.list("policies"),
            pki_mount: settings.get("pki_mount").unwrap_or("pki").to_owned(),
            pki_domain: settings.get("pki_domain").map(str::to_owned),
            timeout: settings.timeout()?,
        };
        let token =
            settings.secret("token_file")?.ok_or_else(|| settings.invalid("no token_file setting".into()))?;
        Ok(std::sync::Arc::new(OpenBaoConnector::connect(settings.target(), openbao, &token)?))
    },
};
