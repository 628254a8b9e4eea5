//! The git connector: access as code. A repository keeps entitlements and their members in one
//! TOML file at its root (`access.toml` by default):
//!
//! ```toml
//! [entitlements.deploy-prod]
//! description = "Deploy to production"
//! members = ["alice", "svc-ci"]
//! ```
//!
//! Apply writes a new commit with git plumbing (no hooks), authored by the executor and carrying
//! `Writ-Change: <id>` trailers, then moves the branch with a compare-and-swap
//! (`git update-ref NEW OLD`), so a concurrent push is never overwritten: the apply reads again
//! and retries, with backoff, until its deadline. Observe reads the file at the branch head,
//! never Writ's records.
//!
//! A checked-out branch keeps its index and working tree in step: the access file must have no
//! local modifications (stat-only differences are refreshed away first), or the apply is refused
//! before anything is written; after the branch moves, index and working tree move with it in
//! one `read-tree -m -u`, and if they cannot, the branch is moved back, so the repository never
//! shows a staged change that undoes Writ's write. Lock files (`index.lock`, `HEAD.lock`, the
//! branch's) that a killed process left behind are removed only when no process has them open,
//! they are older than [`STALE_LOCK_AGE`] and owned by this user; a live lock is waited for.

mod locks;
mod registration;

pub use registration::REGISTRATION;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use writ_connector::{
    ApplyContext, ApplyReport, Connector, ConnectorError, Observed, PlanStep, Result, TargetOp, apply_to,
    no_rotation, plan_against,
};
use writ_core::change::ChangeId;
use writ_core::name::{EntitlementName, IdentityName};

/// The access file's name when a target does not set `file`.
pub const DEFAULT_FILE: &str = "access.toml";

/// How long one apply may take, lock waits and compare-and-swap retries included.
pub const APPLY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// A lock file at least this old that no process has open is left over from a killed process.
pub const STALE_LOCK_AGE: std::time::Duration = std::time::Duration::from_secs(2);

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

/// How one round of an apply ended.
enum Attempt {
    Done(ApplyReport),
    /// The branch moved between the read and the compare-and-swap.
    Moved(String),
}

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
        let (head, text) = self.read_text()?;
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

    /// One read–write–compare-and-swap round: `Moved` if the branch moved under it (nothing of
    /// this round stays).
    fn try_apply(
        &self,
        context: &ApplyContext,
        ops: &[TargetOp],
        checkout: bool,
        git_dir: &Path,
        deadline: Instant,
    ) -> Result<Attempt> {
        let (head, text) = self.read_text()?;
        let (mut file, mut members) = self.parse(&text)?;
        let applied = apply_to(&self.target, &mut members, ops)?;
        if applied.iter().all(|a| a.before == a.after) {
            return Ok(Attempt::Done(ApplyReport { applied, reference: None }));
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
        if let Err(error) = self.git(&["update-ref", &self.branch_ref(), &commit, &head], None) {
            return Ok(Attempt::Moved(error.to_string()));
        }
        if checkout {
            // Index and working tree follow the branch in one step; if they cannot (a file
            // edited or a lock taken since the check), the branch goes back to where it was.
            let follow = || self.git(&["read-tree", "-m", "-u", &head, &commit], None);
            // A git busy with the index holds its lock for a moment: wait for it, once.
            let followed = follow().or_else(|_| {
                self.clear_stale_locks(git_dir, deadline)?;
                follow()
            });
            if let Err(error) = followed {
                let undone = self.git(&["update-ref", &self.branch_ref(), &head, &commit], None);
                return Err(ConnectorError::Conflict {
                    target: self.target.clone(),
                    detail: match undone {
                        Ok(_) => format!(
                            "the checkout of {} could not follow the new commit, so the branch was moved back and nothing was written: {error}",
                            self.branch
                        ),
                        Err(again) => format!(
                            "the checkout of {} could not follow commit {commit} ({error}) and the branch could not be moved back ({again}); \
                             run `git read-tree -m -u {head} {commit}` in the repository",
                            self.branch
                        ),
                    },
                });
            }
        }
        Ok(Attempt::Done(ApplyReport { applied, reference: Some(commit) }))
    }

    /// The branch head and the access file's text at that commit.
    fn read_text(&self) -> Result<(String, String)> {
        let head =
            self.git(&["rev-parse", "--verify", &format!("{}^{{commit}}", self.branch_ref())], None)?;
        let text = self.git(&["show", &format!("{head}:{}", self.file)], None)?;
        Ok((head, text))
    }

    /// Whether the managed branch is checked out in a working tree.
    /// The repository's git directory, and whether the managed branch is checked out in a
    /// working tree (one `git` for both).
    fn layout(&self) -> Result<(PathBuf, bool)> {
        let answer = self.git(
            &["rev-parse", "--absolute-git-dir", "--is-bare-repository", "--symbolic-full-name", "HEAD"],
            None,
        )?;
        let mut lines = answer.lines();
        let git_dir = PathBuf::from(lines.next().unwrap_or_default());
        let bare = lines.next() == Some("true");
        Ok((git_dir, !bare && lines.next() == Some(self.branch_ref().as_str())))
    }

    /// Refuses (before anything is written) if the checked-out access file differs from the
    /// branch head in the index or the working tree; differences of file times only are
    /// refreshed away first.
    fn require_clean_file(&self) -> Result<()> {
        // `--refresh` exits non-zero when something is modified; the status below says what.
        let _ = self.git(&["update-index", "-q", "--refresh"], None);
        // `XY path`: X the index against HEAD (staged), Y the working tree against the index.
        let status =
            self.git(&["status", "--porcelain=v1", "--untracked-files=no", "--", &self.file], None)?;
        if status.is_empty() {
            return Ok(());
        }
        let staged = !status.starts_with(' ');
        Err(ConnectorError::Conflict {
            target: self.target.clone(),
            detail: format!(
                "{} in the checkout of {} has local modifications ({}); commit or discard them, then execute again (nothing was written)",
                self.file,
                self.repo.display(),
                if staged { "staged" } else { "not staged" }
            ),
        })
    }

    /// Removes the lock files this apply needs that a killed process left behind, and waits
    /// (until `deadline`) for live ones.
    fn clear_stale_locks(&self, git_dir: &Path, deadline: Instant) -> Result<()> {
        let locks = [
            git_dir.join("index.lock"),
            git_dir.join("HEAD.lock"),
            git_dir.join(format!("{}.lock", self.branch_ref())),
        ];
        let mut pause = std::time::Duration::from_millis(20);
        for lock in &locks {
            loop {
                match locks::inspect(lock) {
                    locks::State::Absent => break,
                    locks::State::Stale => {
                        // Removing a lock nobody holds is what git itself advises; a lock that
                        // became live in between is not ours to judge again, so a failure here
                        // is only reported.
                        match std::fs::remove_file(lock) {
                            Ok(()) => {
                                tracing::warn!(target: "writ::connector", target_name = %self.target, lock = %lock.display(), "removed a stale git lock left by a killed process")
                            }
                            Err(error) => {
                                tracing::warn!(target: "writ::connector", target_name = %self.target, lock = %lock.display(), %error, "cannot remove a stale git lock")
                            }
                        }
                    }
                    locks::State::Held(why) => {
                        if Instant::now() + pause >= deadline {
                            return Err(ConnectorError::Unavailable {
                                target: self.target.clone(),
                                detail: format!(
                                    "{} is {why}; nothing was written. If no git process is running there, remove it and execute again",
                                    lock.display()
                                ),
                            });
                        }
                        std::thread::sleep(pause);
                        pause = (pause * 2).min(std::time::Duration::from_millis(250));
                    }
                }
            }
        }
        Ok(())
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
        let deadline = Instant::now() + APPLY_DEADLINE;
        let (git_dir, checkout) = self.layout()?;
        // Writ's applies to one repository, from any process, one at a time.
        let _held = locks::Exclusive::take(&git_dir.join("writ-apply.lock"), deadline)
            .map_err(|detail| ConnectorError::Unavailable { target: self.target.clone(), detail })?;
        let mut pause = std::time::Duration::from_millis(10);
        loop {
            self.clear_stale_locks(&git_dir, deadline)?;
            if checkout {
                self.require_clean_file()?;
            }
            match self.try_apply(context, ops, checkout, &git_dir, deadline)? {
                Attempt::Done(report) => return Ok(report),
                Attempt::Moved(detail) if Instant::now() + pause < deadline => {
                    tracing::debug!(target: "writ::connector", target_name = %self.target, %detail, "branch moved: reading again");
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(std::time::Duration::from_millis(250));
                }
                Attempt::Moved(detail) => {
                    return Err(ConnectorError::Conflict {
                        target: self.target.clone(),
                        detail: format!(
                            "branch {} kept moving for {APPLY_DEADLINE:?}: {detail}",
                            self.branch
                        ),
                    });
                }
            }
        }
    }

    fn stamped(&self, change: &ChangeId, _ops: &[TargetOp]) -> Result<Option<String>> {
        let grep = format!("Writ-Change: {change}");
        let found = self.git(
            &["log", "-1", "--format=%H%n%B", "--fixed-strings", "--grep", &grep, &self.branch_ref()],
            None,
        )?;
        let mut lines = found.lines();
        let commit = lines.next().unwrap_or_default().to_owned();
        // `--grep` matches a substring; the trailer must be the whole line.
        let exact = lines.any(|line| line.trim_end() == grep);
        Ok((exact && !commit.is_empty()).then_some(commit))
    }

    /// Every member in the access file, and the commits to it that carry no `Writ-Change:`
    /// trailer (the newest [`writ_connector::UNSTAMPED_LIMIT`]).
    fn holdings(&self) -> Result<writ_connector::Holdings> {
        let (head, members) = self.read()?;
        let mut holdings = writ_connector::Holdings::from_members(Observed {
            members,
            reference: Some(head.clone()),
            ..Observed::default()
        });
        let limit = format!("--max-count={}", writ_connector::UNSTAMPED_LIMIT);
        // One record per commit: hash, time, author, subject, the change trailers (NUL-separated).
        let format = "--format=%H%x00%ct%x00%an <%ae>%x00%s%x00%(trailers:key=Writ-Change,valueonly,separator=%x2C)%x1e";
        let log = self.git(&["log", &limit, format, &head, "--", &self.file], None)?;
        for record in log.split('\x1e').map(str::trim).filter(|r| !r.is_empty()) {
            let fields: Vec<&str> = record.split('\0').collect();
            let (Some(commit), Some(at), Some(author), Some(subject)) =
                (fields.first(), fields.get(1), fields.get(2), fields.get(3))
            else {
                continue;
            };
            if fields.get(4).is_some_and(|trailers| !trailers.trim().is_empty()) {
                continue;
            }
            let Ok(seconds) = at.parse::<i64>() else { continue };
            holdings.unstamped.push(writ_connector::Unstamped {
                reference: (*commit).to_owned(),
                at: writ_core::time::Timestamp::from_millis(seconds.saturating_mul(1000)),
                summary: format!("{author}: {subject}"),
            });
        }
        Ok(holdings)
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
