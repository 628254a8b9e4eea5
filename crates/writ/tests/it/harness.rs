//! Test harness: a temporary world with a database, an access repository, and a way to run the
//! binary and fingerprint everything it could have changed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const ACCESS: &str = r#"[entitlements.eng-read]
members = []

[entitlements.deploy-prod]
members = []

[entitlements.finance-read]
members = []
"#;

pub struct World {
    pub dir: tempfile::TempDir,
    pub db: PathBuf,
    pub repo: PathBuf,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from_output(output: Output) -> Run {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Asserts success and returns stdout trimmed.
    pub fn ok(&self) -> String {
        assert_eq!(self.code, 0, "expected success\nstdout: {}\nstderr: {}", self.stdout, self.stderr);
        self.stdout.trim().to_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok()).unwrap()
    }
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git").arg("-C").arg(dir).args(args).output().unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

impl World {
    /// A database with alice, bob, carol, dave (humans), svc-ci (owned by alice) and a git
    /// target `access`.
    pub fn new() -> World {
        World::on(None)
    }

    /// The same world on a PostgreSQL database (`postgres://…`), with its key files in the
    /// temporary directory.
    pub fn on_postgres(url: &str) -> World {
        World::on(Some(url))
    }

    fn on(url: Option<&str>) -> World {
        let dir = tempfile::tempdir().unwrap();
        let db = url.map_or_else(|| dir.path().join("writ.db"), PathBuf::from);
        let repo = dir.path().join("access-repo");
        std::fs::create_dir(&repo).unwrap();
        git(&repo, &["init", "-q", "-b", "main"]);
        std::fs::write(repo.join("access.toml"), ACCESS).unwrap();
        git(&repo, &["add", "access.toml"]);
        git(
            &repo,
            &["-c", "user.name=T", "-c", "user.email=t@example.invalid", "commit", "-q", "-m", "init"],
        );
        let world = World { dir, db, repo };
        world.writ(&["init"]).ok();
        for person in ["alice", "bob", "carol", "dave"] {
            world.writ(&["identity", "add", person, "--kind", "human"]).ok();
        }
        world.writ(&["identity", "add", "svc-ci", "--kind", "service_account", "--owner", "alice"]).ok();
        let repo_arg = world.repo.to_str().unwrap().to_owned();
        world.writ(&["target", "add", "access", "--connector", "git", "--repo", &repo_arg]).ok();
        world
    }

    /// The global options that name this world's database (and, on PostgreSQL, its keys).
    pub fn db_args(&self) -> Vec<String> {
        let mut args = vec!["--db".to_owned(), self.db.to_str().unwrap().to_owned()];
        if self.db.to_str().unwrap().starts_with("postgres://") {
            for (option, file) in [("--ledger-key", "pg.key"), ("--hmac-key", "pg.hmac")] {
                args.push(option.to_owned());
                args.push(self.dir.path().join(file).to_str().unwrap().to_owned());
            }
        }
        args
    }

    pub fn writ(&self, args: &[&str]) -> Run {
        let output = Command::new(env!("CARGO_BIN_EXE_writ"))
            .args(self.db_args())
            .args(args)
            .env_remove("WRIT_DB")
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        Run::from_output(output)
    }

    /// Requests a grant of `entitlement` to `who` by alice and returns the change ID.
    pub fn request(&self, who: &str, entitlement: &str) -> String {
        self.request_with(&[
            "--as",
            "alice",
            "--identity",
            who,
            "--grant",
            entitlement,
            "--justification",
            "needed for the job",
            "--ticket",
            "JIRA-7",
        ])
    }

    /// Runs `change request ARGS --json` and returns the new change ID.
    pub fn request_with(&self, args: &[&str]) -> String {
        let mut all = vec!["change", "request"];
        all.extend_from_slice(args);
        all.push("--json");
        self.writ(&all).json()["id"].as_str().unwrap().to_owned()
    }

    /// Every row of every table, plus every ref and the work tree of the repository.
    pub fn fingerprint(&self) -> String {
        self.fingerprint_except(&[])
    }

    /// [`World::fingerprint`] without the tables named (for example `leases`, which a running
    /// server renews every second).
    pub fn fingerprint_except(&self, skip: &[&str]) -> String {
        let connection = rusqlite::Connection::open(&self.db).unwrap();
        let mut out = String::new();
        let tables: Vec<String> = connection
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        for table in tables.into_iter().filter(|t| !skip.contains(&t.as_str())) {
            let mut statement = connection.prepare(&format!("SELECT * FROM {table} ORDER BY 1")).unwrap();
            let columns = statement.column_count();
            let rows = statement
                .query_map([], |row| {
                    (0..columns)
                        .map(|i| {
                            row.get_ref(i).map(|v| match v {
                                rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                                rusqlite::types::ValueRef::Blob(b) => hex::encode(b),
                                other => format!("{other:?}"),
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
                .unwrap();
            for row in rows {
                out.push_str(&format!("{table}: {}\n", row.unwrap().join("|")));
            }
        }
        out.push_str(&git(&self.repo, &["for-each-ref", "--format=%(refname) %(objectname)"]));
        out.push_str(&git(&self.repo, &["status", "--porcelain"]));
        out.push_str(&std::fs::read_to_string(self.repo.join("access.toml")).unwrap());
        out
    }
}
