//! The LDAP target connector end to end on the slapd the test command starts: grants become
//! `member`/`uniqueMember` values with the change ID in the group's description, verification
//! searches the directory and catches a change made behind Writ's back, revocation (also the
//! last member, which the schema requires) and expiry remove the value.

use std::collections::HashSet;

use ldap3::{LdapConn, Mod, Scope, SearchEntry};

use crate::harness::World;
use crate::server::service;

pub(crate) struct Directory {
    pub(crate) url: String,
    pub(crate) bind_dn: String,
    pub(crate) password_file: String,
    /// `ou=<prefix>,dc=writ,dc=test`: this test's own subtree.
    pub(crate) base: String,
    pub(crate) conn: LdapConn,
}

/// A fresh subtree `ou=P` with `ou=people` (users P_dave, P_erin) and `ou=groups` (P-read, a
/// groupOfNames, and P-write, a groupOfUniqueNames, each holding only the placeholder).
pub(crate) fn directory(p: &str) -> Option<Directory> {
    let url = service("WRIT_TEST_LDAP_URL", "slapd")?;
    let bind_dn = service("WRIT_TEST_LDAP_BIND_DN", "slapd")?;
    let password_file = service("WRIT_TEST_LDAP_PASSWORD_FILE", "slapd")?;
    let password = std::fs::read_to_string(&password_file).unwrap();
    let mut conn = LdapConn::new(&url).unwrap();
    conn.simple_bind(&bind_dn, password.trim()).unwrap().success().unwrap();
    let base = format!("ou={p},dc=writ,dc=test");
    // Remove what an earlier run left, deepest entries first.
    if let Ok(found) =
        conn.search(&base, Scope::Subtree, "(objectClass=*)", vec!["1.1"]).and_then(|r| r.success())
    {
        let mut dns: Vec<String> = found.0.into_iter().map(|e| SearchEntry::construct(e).dn).collect();
        dns.sort_by_key(|dn| std::cmp::Reverse(dn.len()));
        for dn in dns {
            conn.delete(&dn).unwrap().success().unwrap();
        }
    }
    let set = |values: &[&str]| values.iter().map(|v| v.to_string()).collect::<HashSet<String>>();
    let mut add = |dn: String, attrs: Vec<(&str, HashSet<String>)>| {
        let attrs = attrs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        conn.add(&dn, attrs).unwrap().success().unwrap();
    };
    add(base.clone(), vec![("objectClass", set(&["organizationalUnit"])), ("ou", set(&[p]))]);
    for ou in ["people", "groups"] {
        add(
            format!("ou={ou},{base}"),
            vec![("objectClass", set(&["organizationalUnit"])), ("ou", set(&[ou]))],
        );
    }
    for who in ["dave", "erin"] {
        let uid = format!("{p}_{who}");
        add(
            format!("uid={uid},ou=people,{base}"),
            vec![
                ("objectClass", set(&["inetOrgPerson"])),
                ("uid", set(&[&uid])),
                ("cn", set(&[who])),
                ("sn", set(&[who])),
            ],
        );
    }
    for (group, class, attribute) in
        [("read", "groupOfNames", "member"), ("write", "groupOfUniqueNames", "uniqueMember")]
    {
        let cn = format!("{p}-{group}");
        add(
            format!("cn={cn},ou=groups,{base}"),
            vec![
                ("objectClass", set(&[class])),
                ("cn", set(&[&cn])),
                (attribute, set(&["cn=empty-membership"])),
            ],
        );
    }
    Some(Directory { url, bind_dn, password_file, base, conn })
}

impl Directory {
    fn add_target(&self, w: &World) -> crate::harness::Run {
        let groups = format!("ou=groups,{}", self.base);
        let users = format!("ou=people,{}", self.base);
        w.writ(&[
            "target",
            "add",
            "dir",
            "--connector",
            "ldap",
            "--url",
            &self.url,
            "--bind-dn",
            &self.bind_dn,
            "--password-file",
            &self.password_file,
            "--groups",
            &groups,
            "--users",
            &users,
            "--json",
        ])
    }

    /// The group's member values (lower case) and description.
    pub(crate) fn group(&mut self, cn: &str) -> (Vec<String>, String) {
        let dn = format!("cn={cn},ou=groups,{}", self.base);
        let (entries, _) = self
            .conn
            .search(&dn, Scope::Base, "(objectClass=*)", vec!["member", "uniqueMember", "description"])
            .unwrap()
            .success()
            .unwrap();
        let entry = SearchEntry::construct(entries.into_iter().next().unwrap());
        let mut members: Vec<String> = ["member", "uniqueMember"]
            .iter()
            .flat_map(|a| entry.attrs.get(*a).cloned().unwrap_or_default())
            .map(|v| v.to_ascii_lowercase())
            .collect();
        members.sort();
        let description = entry.attrs.get("description").and_then(|d| d.first().cloned()).unwrap_or_default();
        (members, description)
    }

    pub(crate) fn user(&self, who: &str) -> String {
        format!("uid={who},ou=people,{}", self.base)
    }
}

#[test]
fn ldap_grants_are_applied_observed_verified_revoked_and_expired_in_the_directory() {
    let Some(mut dir) = directory("lda") else { return };
    let w = World::new();
    let added = dir.add_target(&w);
    assert_eq!(added.json()["entitlements"], serde_json::json!(["lda-read", "lda-write"]));
    for who in ["lda_dave", "lda_erin"] {
        w.writ(&["identity", "add", who, "--kind", "human"]).ok();
    }

    // One change, both group classes: the values are there, the placeholder gone, and the change
    // ID is on each group.
    let grant = w.request_with(&[
        "--as",
        "alice",
        "--identity",
        "lda_dave",
        "--grant",
        "dir:lda-read",
        "--grant",
        "dir:lda-write",
        "--justification",
        "joins the team",
    ]);
    w.writ(&["change", "approve", &grant, "--as", "bob"]).ok();
    assert_eq!(w.writ(&["change", "execute", &grant]).ok(), format!("{grant} implemented"));
    for group in ["lda-read", "lda-write"] {
        let (members, description) = dir.group(group);
        assert_eq!(members, vec![dir.user("lda_dave")], "{group}");
        assert!(description.contains(&grant) && description.contains("approved by bob"), "{description}");
    }
    assert_eq!(w.writ(&["change", "verify", &grant]).ok(), format!("{grant} verified"));
    // A retry of the same operations changes nothing on the target.
    let again = w.request_with(&[
        "--as",
        "alice",
        "--identity",
        "lda_dave",
        "--grant",
        "dir:lda-read",
        "--justification",
        "again",
    ]);
    w.writ(&["change", "approve", &again, "--as", "bob"]).ok();
    w.writ(&["change", "execute", &again]).ok();
    let shown = w.writ(&["change", "show", &again, "--json"]).json();
    assert_eq!(
        (shown["operations"][0]["before"].as_str(), shown["operations"][0]["after"].as_str()),
        (Some("present"), Some("present"))
    );
    assert!(
        dir.group("lda-read").1.contains(&grant),
        "an apply that changes nothing does not rewrite the trail"
    );

    // Behind Writ's back between apply and verify: verification reads the directory and fails.
    let erin = w.request_with(&[
        "--as",
        "alice",
        "--identity",
        "lda_erin",
        "--grant",
        "dir:lda-write",
        "--justification",
        "review duty",
    ]);
    w.writ(&["change", "approve", &erin, "--as", "bob"]).ok();
    w.writ(&["change", "execute", &erin]).ok();
    let write_dn = format!("cn=lda-write,ou=groups,{}", dir.base);
    let erin_dn = dir.user("lda_erin");
    dir.conn
        .modify(&write_dn, vec![Mod::Delete("uniqueMember", HashSet::from([erin_dn.as_str()]))])
        .unwrap()
        .success()
        .unwrap();
    let verified = w.writ(&["change", "verify", &erin]);
    assert_eq!(verified.code, 7, "{}", verified.stderr);
    assert!(verified.stderr.contains("change.verification_failed"), "{}", verified.stderr);

    // Revoking the last member leaves the placeholder the schema needs, and verifies.
    let revoke = w.request_with(&[
        "--as",
        "alice",
        "--identity",
        "lda_dave",
        "--revoke",
        "dir:lda-read",
        "--justification",
        "left the team",
    ]);
    w.writ(&["change", "approve", &revoke, "--as", "bob"]).ok();
    w.writ(&["change", "execute", &revoke]).ok();
    assert_eq!(dir.group("lda-read").0, vec!["cn=empty-membership".to_owned()]);
    assert!(dir.group("lda-read").1.contains(&revoke));
    assert_eq!(w.writ(&["change", "verify", &revoke]).ok(), format!("{revoke} verified"));

    // Time-bound: gone after expiry through its own change, whose ID is on the group.
    let timed = w.request_with(&[
        "--as",
        "alice",
        "--identity",
        "lda_erin",
        "--grant",
        "dir:lda-read",
        "--for",
        "1s",
        "--justification",
        "one-off export",
    ]);
    w.writ(&["change", "approve", &timed, "--as", "bob"]).ok();
    w.writ(&["change", "execute", &timed]).ok();
    assert_eq!(dir.group("lda-read").0, vec![dir.user("lda_erin")]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let due = w.writ(&["run-due", "--json"]).json();
    let ended = due["expiry_verified"][0].as_str().unwrap().to_owned();
    assert_eq!(dir.group("lda-read").0, vec!["cn=empty-membership".to_owned()]);
    assert!(dir.group("lda-read").1.contains(&ended), "{}", dir.group("lda-read").1);
    assert_eq!(w.writ(&["change", "show", &ended, "--json"]).json()["origin"], timed.as_str());
}

#[test]
fn ldap_targets_refuse_remote_passwords_bad_credentials_and_unknown_groups() {
    let Some(dir) = directory("ldb") else { return };
    let w = World::new();
    let before = w.fingerprint();
    // A password is never sent in clear to a remote host.
    let remote = w.writ(&[
        "target",
        "add",
        "far",
        "--connector",
        "ldap",
        "--url",
        "ldap://ldap.example.com:389",
        "--bind-dn",
        &dir.bind_dn,
        "--password-file",
        &dir.password_file,
        "--groups",
        "ou=groups,dc=example",
        "--users",
        "ou=people,dc=example",
    ]);
    assert_eq!(remote.code, 6, "{}", remote.stderr);
    assert!(remote.stderr.contains("only sent over ldapi:// or to a loopback address"), "{}", remote.stderr);
    // A wrong password: the bind fails and nothing is registered.
    let wrong = w.dir.path().join("wrong.pass");
    std::fs::write(&wrong, "not-the-password\n").unwrap();
    let bad = w.writ(&[
        "target",
        "add",
        "dir",
        "--connector",
        "ldap",
        "--url",
        &dir.url,
        "--bind-dn",
        &dir.bind_dn,
        "--password-file",
        wrong.to_str().unwrap(),
        "--groups",
        &format!("ou=groups,{}", dir.base),
        "--users",
        &format!("ou=people,{}", dir.base),
    ]);
    assert_eq!(bad.code, 6, "{}", bad.stderr);
    assert!(bad.stderr.contains("target dir unavailable"), "{}", bad.stderr);
    let password = std::fs::read_to_string(&dir.password_file).unwrap();
    assert!(!bad.stderr.contains(password.trim()) && !remote.stderr.contains(password.trim()));
    assert_eq!(w.fingerprint(), before, "a refused target leaves nothing behind");

    dir.add_target(&w).ok();
    w.writ(&["identity", "add", "ldb_dave", "--kind", "human"]).ok();
    let unknown = w.writ(&[
        "change",
        "request",
        "--as",
        "alice",
        "--identity",
        "ldb_dave",
        "--grant",
        "dir:ldb-admin",
        "--justification",
        "no such group",
    ]);
    assert_eq!(unknown.code, 4, "{}", unknown.stderr);
}
