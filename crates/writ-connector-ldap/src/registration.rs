//! How the composition registers the ldap connector: its name, its settings (what each
//! means, which are required, which name a secret file) and how to connect from them.

use crate::{LdapConnector, LdapSettings};

/// The LDAP connector as the composition registers it.
pub static REGISTRATION: writ_connector::Registration = writ_connector::Registration {
    name: "ldap",
    summary: "an LDAP directory: the groups under a base DN are entitlements, user entries their members",
    settings: &[
        writ_connector::Setting::text(
            "url",
            "url",
            "ldap://HOST:PORT or ldapi://SOCKET (a password is only sent to a local one)",
        )
        .required(),
        writ_connector::Setting::text("bind_dn", "bind-dn", "the DN to bind as (anonymous without it)"),
        writ_connector::Setting::text("groups", "groups", "the base DN of the managed groups").required(),
        writ_connector::Setting::text("users", "users", "the base DN of member entries (uid=IDENTITY,USERS)")
            .required(),
        writ_connector::registry::PASSWORD_FILE,
        writ_connector::Setting::text(
            "empty_member",
            "empty-member",
            "the placeholder member of a group that would otherwise be empty (default: cn=empty-membership)",
        ),
        writ_connector::registry::TIMEOUT,
    ],
    keep_open: true,
    public: true,
    connect: |settings| {
        let ldap = LdapSettings {
            url: settings.required("url")?.to_owned(),
            bind_dn: settings.get("bind_dn").map(str::to_owned),
            groups: settings.required("groups")?.to_owned(),
            users: settings.required("users")?.to_owned(),
            empty_member: settings.get("empty_member").unwrap_or("cn=empty-membership").to_owned(),
            timeout: settings.timeout()?,
        };
        let password = settings.secret("password_file")?;
        Ok(std::sync::Arc::new(LdapConnector::connect(settings.target(), ldap, password.as_deref())?))
    },
};
