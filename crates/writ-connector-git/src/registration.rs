//! How the composition registers the git connector: its name, its settings (what each
//! means, which are required, which name a secret file) and how to connect from them.

use std::path::Path;

use crate::GitConnector;

/// The git connector as the composition registers it.
pub static REGISTRATION: writ_connector::Registration = writ_connector::Registration {
    name: "git",
    summary: "a git repository whose access file lists each entitlement's members; a change is a commit",
    settings: &[
        writ_connector::Setting::text("repo", "repo", "the repository (bare or with a working tree)")
            .required()
            .kind(writ_connector::SettingKind::Path),
        writ_connector::Setting::text(
            "branch",
            "branch",
            "the branch to manage (default: the branch HEAD points at)",
        ),
        writ_connector::Setting::text(
            "file",
            "file",
            "the access file at the repository root (default: access.toml)",
        ),
        writ_connector::Setting::text(
            "repository",
            "repository",
            "the repository's name at its host (e.g. acme/access): a push to it delivered to /hooks that touches the \
             access file and names no Writ change is reported at once as change.unmatched_telemetry",
        ),
    ],
    keep_open: false,
    public: true,
    connect: |settings| {
        let connector = GitConnector::open(
            settings.target(),
            Path::new(settings.required("repo")?),
            settings.get("branch"),
            settings.get("file"),
        )?;
        Ok(std::sync::Arc::new(connector))
    },
};
