//! Application manifests read from the repository a GitHub or GitLab hook reports on.
//!
//! ```toml
//! [[hook.manifests]]
//! repository = "acme/payments"        # as the sender names it (full_name, path_with_namespace)
//! remote = "https://github.com/acme/payments.git"  # fetched from; credentials in a git credential helper
//! mirror = "/var/lib/writ/manifests/payments.git" # a bare copy Writ keeps
//! branch = "main"                     # the deploy branch (default main)
//! path = ".writ/apps"                 # a directory of *.toml manifests, or one .toml file (default)
//! ```
//!
//! For a merge or push onto the deploy branch, Writ fetches the branches into its mirror and
//! reads, at the commit the sender names and at the one before it (the push's `before`, else
//! the commit's first parent), every manifest that differs. The sender's word is only the
//! commit id: the content comes from the repository itself, so a forged payload cannot invent
//! a manifest. If the commit cannot be fetched the delivery is answered 503 and nothing is
//! recorded, so the sender delivers it again.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use serde::Deserialize;
use writ_intake::manifest::{AppRevision, MAX_BYTES, Manifest, Revision};

/// One `[[hook.manifests]]` table.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct ManifestConfig {
    pub repository: String,
    pub remote: String,
    pub mirror: PathBuf,
    pub branch: Option<String>,
    pub path: Option<String>,
}

/// A repository whose manifests a hook reads.
pub struct Manifests {
    repository: String,
    remote: String,
    mirror: PathBuf,
    branch: String,
    path: String,
    /// One git fetch at a time per mirror.
    lock: Mutex<()>,
}

impl Manifests {
    /// Checks a configuration; the error names what to fix.
    pub fn new(config: &ManifestConfig) -> Result<Manifests, String> {
        let remote = config.remote.trim();
        if remote.is_empty() || remote.starts_with('-') {
            return Err(format!(
                "manifests of {}: remote {remote:?} is not a git URL or path",
                config.repository
            ));
        }
        if let Some((_, rest)) = remote.split_once("://")
            && let Some((userinfo, _)) = rest.split_once('@')
            && userinfo.contains(':')
        {
            return Err(format!(
                "manifests of {}: the remote carries a password; configure a git credential helper instead",
                config.repository
            ));
        }
        let path = config.path.clone().unwrap_or_else(|| ".writ/apps".into());
        let path = path.trim_matches('/').to_owned();
        if path.is_empty()
            || path.split('/').any(|part| part.is_empty() || part == "..")
            || path.starts_with('-')
        {
            return Err(format!(
                "manifests of {}: path {path:?} must be a relative path in the repository",
                config.repository
            ));
        }
        let branch = config.branch.clone().unwrap_or_else(|| "main".into());
        if branch.is_empty() || branch.starts_with('-') {
            return Err(format!(
                "manifests of {}: branch {branch:?} is not a branch name",
                config.repository
            ));
        }
        Ok(Manifests {
            repository: config.repository.clone(),
            remote: remote.to_owned(),
            mirror: config.mirror.clone(),
            branch,
            path,
            lock: Mutex::new(()),
        })
    }

    /// Whether a revision lands on this repository's deploy branch.
    pub fn covers(&self, revision: &Revision) -> bool {
        revision.repository.eq_ignore_ascii_case(&self.repository) && revision.branch == self.branch
    }

    /// The manifests `revision` changed, before and after.
    pub fn read(&self, revision: &Revision) -> Result<Vec<AppRevision>, String> {
        let _one = self.lock.lock().map_err(|_| "the manifest mirror lock is poisoned".to_owned())?;
        if !self.mirror.join("HEAD").is_file() {
            std::fs::create_dir_all(&self.mirror).map_err(|e| format!("creating the mirror: {e}"))?;
            self.git(&["init", "--quiet", "--bare"])?;
        }
        let after = &revision.after;
        if !self.has(after) {
            self.git(&[
                "fetch",
                "--quiet",
                "--no-tags",
                "--prune",
                &self.remote,
                "+refs/heads/*:refs/heads/*",
            ])?;
            if !self.has(after) {
                return Err(format!("commit {after} is not on any branch of {}", self.repository));
            }
        }
        let before = match &revision.before {
            Some(before) if self.has(before) => Some(before.clone()),
            _ => Some(format!("{after}^1")).filter(|parent| self.has(parent)),
        };
        let listed = match &before {
            Some(before) => {
                self.git(&["diff", "--name-only", "-z", "--no-renames", before, after, "--", &self.path])?
            }
            None => self.git(&["ls-tree", "-r", "-z", "--name-only", after, "--", &self.path])?,
        };
        let mut apps = Vec::new();
        for path in listed.split('\0').filter(|p| self.is_manifest(p)) {
            let old = before.as_deref().and_then(|b| self.file(b, path).ok().flatten());
            let new = self.file(after, path);
            apps.push(AppRevision {
                path: path.to_owned(),
                before: old.and_then(|text| Manifest::parse(&text).ok()),
                after: new.and_then(|text| text.map(|t| Manifest::parse(&t)).transpose()),
            });
        }
        Ok(apps)
    }

    fn is_manifest(&self, path: &str) -> bool {
        path.ends_with(".toml")
            && (path == self.path || path.strip_prefix(&self.path).is_some_and(|rest| rest.starts_with('/')))
    }

    fn has(&self, commit: &str) -> bool {
        self.git(&["rev-parse", "--quiet", "--verify", &format!("{commit}^{{commit}}")]).is_ok()
    }

    /// A file's text at a commit; `None` if absent there, an error if too large or not UTF-8.
    fn file(&self, commit: &str, path: &str) -> Result<Option<String>, String> {
        let object = format!("{commit}:{path}");
        let Ok(size) = self.git(&["cat-file", "-s", &object]) else { return Ok(None) };
        if size.trim().parse::<u64>().map_or(true, |s| s > MAX_BYTES) {
            return Err(format!("{size} bytes: a manifest is at most {MAX_BYTES}"));
        }
        self.git(&["cat-file", "blob", &object]).map(Some)
    }

    fn git(&self, args: &[&str]) -> Result<String, String> {
        let output = Command::new("git")
            .arg("--git-dir")
            .arg(&self.mirror)
            .args(["-c", "protocol.ext.allow=never", "-c", "core.hooksPath=/dev/null"])
            .args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run git: {e}"))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(format!("git {}: {}", args.first().copied().unwrap_or(""), stderr.trim()));
        }
        String::from_utf8(output.stdout).map_err(|_| "the file is not UTF-8".to_owned())
    }
}
