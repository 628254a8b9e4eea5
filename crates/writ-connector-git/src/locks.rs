//! Telling a git lock file a killed process left behind from one a running git holds.
//!
//! Git takes a lock by creating `<file>.lock` exclusively and keeps it open until it renames or
//! removes it, so a lock is live while any process has it open. A lock is judged stale only if
//! no process has it open (read from `/proc/*/fd`), it is at least [`super::STALE_LOCK_AGE`] old
//! (a git between closing and renaming it is caught by the age), and it belongs to this user.
//! Where `/proc` cannot be read, no lock is ever judged stale.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// What a lock file is.
pub enum State {
    Absent,
    /// Left behind: safe to remove.
    Stale,
    /// Held, or not known to be free: why, for the error a person reads.
    Held(&'static str),
}

pub fn inspect(lock: &Path) -> State {
    let Ok(meta) = std::fs::symlink_metadata(lock) else { return State::Absent };
    let ours = std::fs::metadata("/proc/self").is_ok_and(|me| me.uid() == meta.uid());
    if !ours {
        return State::Held("owned by another user");
    }
    let age = meta.modified().ok().and_then(|m| m.elapsed().ok()).unwrap_or_default();
    if age < super::STALE_LOCK_AGE {
        return State::Held("held by a running git (or left less than 2 s ago)");
    }
    match open_anywhere(lock) {
        Some(false) => State::Stale,
        Some(true) => State::Held("held open by a running process"),
        None => State::Held("not known to be free (the process table cannot be read)"),
    }
}

/// Whether any process has `path` open; `None` if that cannot be told.
fn open_anywhere(path: &Path) -> Option<bool> {
    let target = std::fs::canonicalize(path).ok()?;
    let processes = std::fs::read_dir("/proc").ok()?;
    for process in processes.flatten() {
        let is_pid = process.file_name().to_str().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()));
        if !is_pid {
            continue;
        }
        // A process that ended or whose descriptors are not ours to read is skipped: as this
        // user we can read our own processes, which are the only ones that can hold our lock.
        let Ok(fds) = std::fs::read_dir(process.path().join("fd")) else { continue };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|link| link == target) {
                return Some(true);
            }
        }
    }
    Some(false)
}

/// A lock file this process holds open while it exists; removed when dropped.
pub struct Exclusive {
    path: std::path::PathBuf,
    _file: std::fs::File,
}

impl Exclusive {
    /// Takes `path` exclusively, removing a stale one (see [`inspect`]) and waiting for a live
    /// one until `deadline`. The error says what holds it.
    pub fn take(path: &Path, deadline: std::time::Instant) -> Result<Exclusive, String> {
        let mut pause = std::time::Duration::from_millis(10);
        loop {
            match std::fs::OpenOptions::new().write(true).create_new(true).open(path) {
                Ok(mut file) => {
                    use std::io::Write;
                    let _ = writeln!(file, "{}", std::process::id());
                    return Ok(Exclusive { path: path.to_owned(), _file: file });
                }
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => match inspect(path) {
                    State::Stale => {
                        let _ = std::fs::remove_file(path);
                        continue;
                    }
                    State::Absent => continue,
                    State::Held(why) => {
                        if std::time::Instant::now() + pause >= deadline {
                            return Err(format!(
                                "{} is {why}: another Writ apply on this repository has not finished; nothing was written",
                                path.display()
                            ));
                        }
                    }
                },
                Err(error) => return Err(format!("cannot create {}: {error}", path.display())),
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(std::time::Duration::from_millis(100));
        }
    }
}

impl Drop for Exclusive {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
