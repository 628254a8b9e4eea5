//! How the composition registers the postgres connector: its name, its settings (what each
//! means, which are required, which name a secret file) and how to connect from them.

use crate::{PostgresConnector, PostgresSettings};

/// The PostgreSQL connector as the composition registers it.
pub static REGISTRATION: writ_connector::Registration = writ_connector::Registration {
    name: "postgres",
    summary: "a PostgreSQL server: group roles, `login`, and table and schema privileges",
    settings: &[
        writ_connector::Setting::text(
            "dsn",
            "dsn",
            "the connection (libpq key=value or URL) without a password",
        )
        .required(),
        writ_connector::registry::PASSWORD_FILE,
        writ_connector::Setting::text(
            "roles",
            "roles",
            "only these group roles (comma-separated; add `login` for the right to log in) are entitlements \
             (default: every group role but PostgreSQL's own, and `login`)",
        ),
        writ_connector::Setting::text(
            "schemas",
            "schemas",
            "schemas (comma-separated) whose table and schema privileges are entitlements, named \
             table/SCHEMA.TABLE/PRIVILEGE and schema/SCHEMA/PRIVILEGE (default: none)",
        ),
        writ_connector::registry::TIMEOUT,
    ],
    keep_open: true,
    public: true,
    connect: |settings| {
        let postgres = PostgresSettings {
            dsn: settings.required("dsn")?.to_owned(),
            roles: settings.get("roles").map(str::to_owned),
            schemas: settings.get("schemas").map(str::to_owned),
            timeout: settings.timeout()?,
        };
        let password = settings.secret("password_file")?;
        Ok(std::sync::Arc::new(PostgresConnector::connect(
            settings.target(),
            &postgres,
            password.as_deref(),
        )?))
    },
};
