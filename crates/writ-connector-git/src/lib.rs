//! The git connector: access as code. A repository keeps entitlements and their members in one
//! TOML file at its root (`access.toml` by default):
//!
//! ```toml
//! [entitlements.deploy-prod]
//! description = "Deploy to production"
//! members = ["alice", "svc-ci"]
//! ```
//!
//! Apply writes a new commit with git plumbing (no working-tree edits, no hooks), authored by
//! the executor and carrying `Writ-Change: <id>` trailers, then moves the branch with a
//! compare-and-swap (`git update-ref NEW OLD`), so a concurrent push makes the apply fail
//! instead of overwriting it. Observe reads the file at the branch head, never Writ's records.

mod registration;

pub use registration::REGISTRATION;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};
use writ_connector::{
    ApplyContext, ApplyReport, Connector, ConnectorError, Observed, PlanStep, Result, TargetOp, apply_to,
    no_rotation, plan_against,
};
use writ_core::name::{EntitlementName, IdentityName};

/// The access file's name when a target does not set `file`.
pub const DEFAULT_FILE: &str = "access.toml";

/// A git repository on the local file system holding an access file.
pub struct GitConnector {
    target: String,
    repo: PathBuf,
    branch: String,
    file: String,
}

#[derive(Serialize, Deserialize, Default)]
struct AccessFile {
    #[serde(default)]
    entitlements: BTreeMap<String, EntitlementEntry>,
    #[serde(flatten)]
    rest: BTreeMap<String, toml::Value>,
}

#[derive(Serialize, Deserialize, Default)]
struct EntitlementEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(default)]
    members: BTreeSet<String>,
    #[serde(flatten)]
    rest: BTreeMap<String, toml::Value>,
}

type Members = BTreeMap<EntitlementName, BTreeSet<IdentityName>>;

impl GitConnector {
    /// Opens the repository at `repo`. `branch` defaults to the branch HEAD points at and
    /// `file` to [`DEFAULT_FILE`]. Checks that the branch has a commit with a readable access file.
    pub fn open(target: &str, repo: &Path, branch: Option<&str>, file: Option<&str>) -> Result<GitConnector> {
        let invalid = |detail: String| ConnectorError::Invalid { target: target.to_owned(), detail };
        let file = file.unwrap_or(DEFAULT_FILE).to_owned();
        if file.is_empty() || file.contains('/') || file.starts_with('.') {
            return Err(invalid(format!(
                "access file {file:?} must be a plain file name at the repository root"
            )));
        }
        if !repo.is_dir() {
            return Err(invalid(format!("{} is not a directory", repo.display())));
        }
        let mut connector =
            GitConnector { target: target.to_owned(), repo: repo.to_owned(), branch: String::new(), file };
        let branch = match branch {
            Some(branch) => branch.to_owned(),
            None => connector.git(&["symbolic-ref", "--short", "HEAD"], None).map_err(|_| {
                invalid(format!("{} is not a git repository with a branch checked out", repo.display()))
            })?,
        };
        connector.branch = branch;
        // A branch or access file that is not there is the target's configuration, not an outage.
        let branch_ref = format!("{}^{{commit}}", connector.branch_ref());
        let head = connector
            .git(&["rev-parse", "--verify", "--quiet", &branch_ref], None)
            .map_err(|_| invalid(format!("{} has no branch {:?}", repo.display(), connector.branch)))?;
        connector.git(&["cat-file", "-e", &format!("{head}:{}", connector.file)], None).map_err(|_| {
            invalid(format!("branch {} of {} has no {}", connector.branch, repo.display(), connector.file))
        })?;
        let (head, members) = connector.read()?;
        if head.is_empty() || members.is_empty() {
            return Err(invalid(format!(
                "{} on branch {} defines no entitlements",
                connector.file, connector.branch
            )));
        }
        Ok(connector)
    }

    fn git(&self, args: &[&str], input: Option<&[u8]>) -> Result<String> {
        self.git_env(args, input, &[])
    }

    fn git_env(&self, args: &[&str], input: Option<&[u8]>, env: &[(&str, String)]) -> Result<String> {
        let unavailable =
            |detail: String| ConnectorError::Unavailable { target: self.target.clone(), detail };
        let mut command = Command::new("git");
        command
            .arg("-C")
            .arg(&self.repo)
            .args(["-c", "commit.gpgsign=false", "-c", "core.hooksPath=/dev/null"])
            .args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().map_err(|e| unavailable(format!("cannot run git: {e}")))?;
        if let (Some(bytes), Some(mut stdin)) = (input, child.stdin.take()) {
            stdin.write_all(bytes).map_err(|e| unavailable(format!("writing to git: {e}")))?;
        }
        let output = child.wait_with_output().map_err(|e| unavailable(format!("waiting for git: {e}")))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(unavailable(format!(
                "git {} failed: {}",
                args.first().copied().unwrap_or(""),
                stderr.trim()
            )));
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim_end().to_owned())
    }

    fn branch_ref(&self) -> String {
        format!("refs/heads/{}", self.branch)
    }

    /// The branch head and the parsed access file at that commit.
    fn read(&self) -> Result<(String, Members)> {
        let head =
            self.git(&["rev-parse", "--verify", &format!("{}^{{commit}}", self.branch_ref())], None)?;
        let text = self.git(&["show", &format!("{head}:{}", self.file)], None)?;
        let members = self.parse(&text)?.1;
        Ok((head, members))
    }

    fn parse(&self, text: &str) -> Result<(AccessFile, Members)> {
        let invalid = |detail: String| ConnectorError::Invalid { target: self.target.clone(), detail };
        let file: AccessFile =
            toml::from_str(text).map_err(|e| invalid(format!("{} does not parse: {e}", self.file)))?;
        let mut members = Members::new();
        for (name, entry) in &file.entitlements {
            let entitlement = EntitlementName::parse(name).map_err(|e| invalid(e.to_string()))?;
            let set = entry
                .members
                .iter()
                .map(|m| IdentityName::parse(m).map_err(|e| invalid(e.to_string())))
                .collect::<Result<BTreeSet<_>>>()?;
            members.insert(entitlement, set);
        }
        Ok((file, members))
    }

    fn commit(&self, context: &ApplyContext, parent: &str, content: &str) -> Result<String> {
        let blob = self.git(&["hash-object", "-w", "--stdin"], Some(content.as_bytes()))?;
        let tree_listing = self.git(&["ls-tree", parent], None)?;
        let mut entries: Vec<String> = tree_listing
            .lines()
            .filter(|line| line.split('\t').nth(1) != Some(self.file.as_str()))
            .map(str::to_owned)
            .collect();
        entries.push(format!("100644 blob {blob}\t{}", self.file));
        let tree = self.git(&["mktree"], Some(format!("{}\n", entries.join("\n")).as_bytes()))?;
        let mut message = format!("{}\n\n", context.summary);
        message.push_str(&format!("Writ-Change: {}\n", context.change));
        message.push_str(&format!("Writ-Requested-By: {}\n", context.requester));
        for approver in &context.approvers {
            message.push_str(&format!("Writ-Approved-By: {approver}\n"));
        }
        message.push_str(&format!("Writ-Executed-By: {}\n", context.executor));
        let date = format!("@{} +0000", context.at.as_millis().div_euclid(1000));
        let author_email = format!("{}@writ.invalid", context.executor.replace(':', "."));
        let env = [
            ("GIT_AUTHOR_NAME", context.executor.clone()),
            ("GIT_AUTHOR_EMAIL", author_email),
            ("GIT_AUTHOR_DATE", date.clone()),
            ("GIT_COMMITTER_NAME", "Writ".to_owned()),
            ("GIT_COMMITTER_EMAIL", "writ@writ.invalid".to_owned()),
            ("GIT_COMMITTER_DATE", date),
        ];
        self.git_env(&["commit-tree", &tree, "-p", parent, "-F", "-"], Some(message.as_bytes()), &env)
    }
}

impl Connector for GitConnector {
    fn entitlements(&self) -> Result<Vec<EntitlementName>> {
        Ok(self.read()?.1.into_keys().collect())
    }

    fn plan(&self, ops: &[TargetOp]) -> Result<Vec<PlanStep>> {
        no_rotation(&self.target, "git", ops)?;
        plan_against(&self.target, &self.read()?.1, ops)
    }

    fn apply(&self, context: &ApplyContext, ops: &[TargetOp]) -> Result<ApplyReport> {
        no_rotation(&self.target, "git", ops)?;
        let (head, _) = self.read()?;
        let text = self.git(&["show", &format!("{head}:{}", self.file)], None)?;
        let (mut file, mut members) = self.parse(&text)?;
        let applied = apply_to(&self.target, &mut members, ops)?;
        if applied.iter().all(|a| a.before == a.after) {
            return Ok(ApplyReport { applied, reference: None });
        }
        for op in ops {
            if let Some(entry) = file.entitlements.get_mut(op.entitlement.as_str()) {
                if op.action.leaves_present() {
                    entry.members.insert(op.member.to_string());
                } else {
                    entry.members.remove(op.member.as_str());
                }
            }
        }
        let content = toml::to_string(&file).map_err(|e| ConnectorError::Invalid {
            target: self.target.clone(),
            detail: format!("cannot write {}: {e}", self.file),
        })?;
        let commit = self.commit(context, &head, &content)?;
        self.git(&["update-ref", &self.branch_ref(), &commit, &head], None).map_err(|e| {
            ConnectorError::Conflict {
                target: self.target.clone(),
                detail: format!("branch {} moved during apply: {e}", self.branch),
            }
        })?;
        let bare = self.git(&["rev-parse", "--is-bare-repository"], None)?;
        let checked_out = self.git(&["symbolic-ref", "-q", "HEAD"], None).unwrap_or_default();
        if bare == "false" && checked_out == self.branch_ref() {
            // Bring the index and working tree of a checked-out branch forward; this fails
            // (leaving the commit in place) only if the file has conflicting local edits.
            let _ = self.git(&["read-tree", "-m", "-u", &head, &commit], None);
        }
        Ok(ApplyReport { applied, reference: Some(commit) })
    }

    fn observe(&self, entitlements: &[EntitlementName]) -> Result<Observed> {
        let (head, all) = self.read()?;
        let members =
            entitlements.iter().filter_map(|e| all.get(e).map(|m| (e.clone(), m.clone()))).collect();
        Ok(Observed { members, reference: Some(head), ..Observed::default() })
    }
}

#[cfg(test)]
mod tests;
