//! Active Directory as Exchange left it, against a real Samba AD domain
//! controller: the README's recipe, mailbox aliases in `proxyAddresses`, the
//! logins AD users type, nested security and distribution groups with every
//! membership method, disabled accounts, paging, TLS names, and Exchange's
//! delivery restrictions.
//!
//! The DC binds ports 389 and 636, so these tests run only through
//! `bash tests/ad/run.sh` (a private network namespace with the DC that
//! tests/ad/samba.sh starts and fills); a plain `cargo test` lists them as
//! ignored. The test data is described in tests/ad/samba.sh.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use gatehouse::config::DirectorySettings;
use gatehouse::directory::ldap::LdapBackend;
use gatehouse::directory::{Directory, ResolvedUser};

const NEEDS_DC: &str = "needs the Samba AD DC: bash tests/ad/run.sh";

/// What tests/ad/samba.sh wrote about the running DC.
fn dc() -> HashMap<String, String> {
    let path = std::env::var("GATEHOUSE_AD_ENV").expect("GATEHOUSE_AD_ENV (run through tests/ad/run.sh)");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            (
                k.trim().to_string(),
                v.trim().trim_matches(['"', '\'']).to_string(),
            )
        })
        .collect()
}

/// The README's Active Directory block, with only its two file paths
/// pointed at the test DC's CA and the service account's password file.
fn readme_recipe() -> String {
    let readme = include_str!("../README.md");
    let start = readme
        .find("<!-- ad-recipe")
        .expect("README: the ad-recipe marker");
    let block = &readme[start..];
    let open = block.find("```toml\n").expect("README: the recipe's toml block") + "```toml\n".len();
    let len = block[open..].find("```").expect("README: the end of the recipe");
    let recipe = &block[open..open + len];
    let dc = dc();
    let mut text = recipe.to_string();
    for (from, to) in [
        ("/etc/gatehouse/ad-ca.pem", &dc["AD_CA_FILE"]),
        ("/etc/gatehouse/ldap.secret", &dc["AD_BIND_PASSWORD_FILE"]),
    ] {
        assert!(text.contains(from), "the README's recipe no longer names {from}");
        text = text.replace(from, to);
    }
    text
}

/// The policy the tests judge with: relay for "Internet Mail Users" unless
/// in "Relay Deny"; "All Staff" restricted to its members.
const POLICY: &str = r#"
[domains]
local = ["example.com", ".example.com"]

[[listener]]
name = "submission"
match = { daemon_name = "submission" }
allow_anonymous = false
require_sender_match = true
relay = { allow_groups = ["Internet Mail Users"], deny_groups = ["Relay Deny"] }

[[listener]]
name = "default"
match = {}
allow_anonymous = true

[[recipient]]
address = "all-staff@example.com"
require_authenticated = true
accept_from = ["group:All Staff"]
"#;

/// A configuration file: the recipe with `changes` applied (`key = value`
/// lines replacing the recipe's line of that key, or added to
/// `[directory.ldap]`), then the policy.
struct Setup {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

fn setup(changes: &[&str]) -> Setup {
    let mut lines: Vec<String> = readme_recipe().lines().map(String::from).collect();
    for change in changes {
        let key = change.split('=').next().unwrap().trim();
        match lines.iter().position(|l| l.starts_with(&format!("{key} ="))) {
            Some(i) => lines[i] = change.to_string(),
            None => {
                let at = lines.iter().position(|l| l == "[directory.ldap]").unwrap() + 1;
                lines.insert(at, change.to_string());
            }
        }
    }
    let text = format!("{}\n{POLICY}", lines.join("\n"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gatehouse.toml");
    std::fs::write(&path, text).unwrap();
    Setup { _dir: dir, path }
}

fn config(s: &Setup) -> gatehouse::config::Config {
    gatehouse::config::load(&s.path).unwrap_or_else(|e| panic!("{e}"))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn directory(changes: &[&str]) -> Arc<Directory> {
    config(&setup(changes)).build_directory().unwrap()
}

fn user(dir: &Directory, login: &str) -> Option<Arc<ResolvedUser>> {
    runtime()
        .block_on(dir.user_by_login(login))
        .unwrap_or_else(|e| panic!("{login}: {e}"))
}

/// The membership path to `group`, as `lookup` prints it.
fn path(u: &ResolvedUser, group: &str) -> Option<String> {
    u.groups.path_to(group).map(|p| p.join(" > "))
}

fn gatehouse(s: &Setup, args: &[&str]) -> (Option<i32>, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .arg(args[0])
        .arg("--config")
        .arg(&s.path)
        .args(&args[1..])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.code(), text)
}

/// `explain` on one envelope: the action of MAIL and of each recipient.
fn explain(s: &Setup, listener: &str, login: Option<&str>, from: &str, rcpts: &[&str]) -> Vec<String> {
    let mut args = vec!["explain", "--listener", listener, "--from", from];
    if let Some(l) = login {
        args.extend(["--login", l]);
    }
    for r in rcpts {
        args.extend(["--rcpt", r]);
    }
    let (_, out) = gatehouse(s, &args);
    let actions: Vec<String> = out
        .lines()
        .filter(|l| l.starts_with("MAIL FROM:") || l.starts_with("RCPT TO:"))
        .map(|l| l.split_whitespace().nth(2).unwrap_or("").to_string())
        .collect();
    assert!(!actions.is_empty(), "explain printed no decision:\n{out}");
    actions
}

#[test]
#[ignore = "needs the Samba AD DC: bash tests/ad/run.sh"]
fn the_readme_recipe_passes_check_against_the_dc() {
    let _ = NEEDS_DC;
    let s = setup(&[]);
    let (code, out) = gatehouse(&s, &["check"]);
    assert_eq!(code, Some(0), "{out}");
    for group in ["Internet Mail Users", "Relay Deny", "All Staff"] {
        assert!(
            out.contains(&format!("group {group:?} = CN={group},")),
            "{group}: {out}"
        );
    }
}

#[test]
#[ignore = "needs the Samba AD DC: bash tests/ad/run.sh"]
fn smtp_proxy_addresses_are_the_users_addresses_and_the_rest_are_not() {
    let dir = directory(&[]);
    let alice = user(&dir, "alice").expect("alice");
    let mut addresses = alice.entry.addresses.clone();
    addresses.sort();
    assert_eq!(
        addresses,
        [
            "a.smith@example.com",
            "alice.smith@sales.example.com",
            "alice@example.com"
        ]
    );
    // Found by an alias, as a sender's address.
    let by_alias = runtime()
        .block_on(dir.user_by_address("A.Smith@example.com"))
        .unwrap()
        .expect("found by alias");
    assert_eq!(by_alias.entry.login, "alice");
    // Her SIP address is nobody's mail address.
    let sip = runtime()
        .block_on(dir.user_by_address("alice.voice@example.com"))
        .unwrap();
    assert!(sip.is_none());
}

#[test]
#[ignore = "needs the Samba AD DC: bash tests/ad/run.sh"]
fn a_mailbox_user_sends_as_any_of_its_smtp_aliases() {
    let s = setup(&[]);
    for from in [
        "alice@example.com",
        "a.smith@example.com",
        "Alice.Smith@Sales.Example.com",
    ] {
        let d = explain(
            &s,
            "submission",
            Some("alice"),
            from,
            &["someone@elsewhere.example"],
        );
        assert_eq!(d, ["accept", "accept"], "alice as {from}");
    }
    // Another user's address, and a non-SMTP proxy address, are not hers.
    for from in ["bob@example.com", "robert@example.com"] {
        let d = explain(
            &s,
            "submission",
            Some("alice"),
            from,
            &["someone@elsewhere.example"],
        );
        assert_eq!(d[0], "reject", "alice as {from}");
    }
}

#[test]
#[ignore = "needs the Samba AD DC: bash tests/ad/run.sh"]
fn ad_users_log_in_by_account_name_upn_and_down_level_name() {
    let dir = directory(&[]);
    for login in [
        "alice",
        "ALICE",
        "alice@corp.example.com",
        "EXAMPLE\\alice",
        "example\\Alice",
    ] {
        let u = user(&dir, login).unwrap_or_else(|| panic!("{login} not found"));
        assert_eq!(u.entry.login, "alice", "{login}");
        assert!(u.groups.contains("Internet Mail Users"), "{login}");
    }
    // Another domain's account of the same name is not alice.
    assert!(user(&dir, "OTHER\\alice").is_none());
    // The implicit UPN (account name @ the domain's DNS name) is a login,
    // and where it is also another user's mail it is nobody's: refused,
    // never that other user.
    assert_eq!(user(&dir, "h.hill@example.com").unwrap().entry.login, "helen");
    assert_eq!(user(&dir, "ivan@example.com").unwrap().entry.login, "ivan");
    let e = runtime()
        .block_on(dir.user_by_login("helen@example.com"))
        .unwrap_err();
    assert!(e.is_permanent(), "{e}");
    let grace = user(&dir, "grace@example.com").expect("grace: UPN, mail and implicit UPN alike");
    assert_eq!(grace.entry.login, "grace");
    // Without netbios_domain a down-level login is nobody.
    let s = setup(&[]);
    let text = std::fs::read_to_string(&s.path)
        .unwrap()
        .replace("netbios_domain = \"EXAMPLE\"\n", "");
    std::fs::write(&s.path, text).unwrap();
    let dir = config(&s).build_directory().unwrap();
    assert!(user(&dir, "EXAMPLE\\alice").is_none());
}

/// bob > Sales > Staff > Internet Mail Users, and Staff is in the
/// distribution group All Staff; grace > Engineering > Full-Time Employees >
/// Managers.
fn assert_nested_groups(membership: &str, sees_distribution_groups: bool) {
    let dir = directory(&[&format!("membership = \"{membership}\"")]);
    let bob = user(&dir, "bob").expect("bob");
    assert_eq!(
        path(&bob, "Sales").as_deref(),
        Some("bob > Sales"),
        "{membership}"
    );
    assert_eq!(
        path(&bob, "staff").as_deref(),
        Some("bob > Sales > Staff"),
        "{membership}"
    );
    assert_eq!(
        path(&bob, "Internet Mail Users").as_deref(),
        Some("bob > Sales > Staff > Internet Mail Users"),
        "{membership}"
    );
    assert_eq!(
        path(&bob, "All Staff").as_deref(),
        sees_distribution_groups.then_some("bob > Sales > Staff > All Staff"),
        "{membership}"
    );
    assert!(!bob.groups.contains("Relay Deny") && !bob.groups.contains("Managers"));
    let grace = user(&dir, "grace").expect("grace");
    assert_eq!(
        path(&grace, "Managers").as_deref(),
        Some("grace > Engineering > Full-Time Employees > Managers"),
        "{membership}"
    );
    // A member of a group of more than 1,500 members.
    let bulk = user(&dir, "user0042").expect("user0042");
    assert_eq!(path(&bulk, "Big Group").as_deref(), Some("user0042 > Big Group"));
}

#[test]
#[ignore = "needs the Samba AD DC: bash tests/ad/run.sh"]
fn nested_groups_resolve_with_ad_in_chain() {
    assert_nested_groups("ad-in-chain", true);
}

#[test]
#[ignore = "needs the Samba AD DC: bash tests/ad/run.sh"]
fn nested_groups_resolve_with_memberof() {
    assert_nested_groups("memberof", true);
}

#[test]
#[ignore = "needs the Samba AD DC: bash tests/ad/run.sh"]
fn nested_security_groups_resolve_with_token_groups() {
    assert_nested_groups("ad-token-groups", false);
    // tokenGroups holds the primary group, which no memberOf names.
    let bob = user(&directory(&["membership = \"ad-token-groups\""]), "bob").unwrap();
    assert_eq!(
        path(&bob, "Domain Users").as_deref(),
        Some("bob > … > Domain Users")
    );
}

#[test]
#[ignore = "needs the Samba AD DC: bash tests/ad/run.sh"]
fn lookup_shows_a_nested_membership_with_its_chain() {
    let s = setup(&[]);
    let (code, out) = gatehouse(&s, &["lookup", "grace"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("  grace > Engineering > Full-Time Employees > Managers\n"),
        "{out}"
    );
    assert!(!out.contains("  grace > Full-Time Employees\n"), "{out}");
    assert!(!out.contains("  grace > Managers\n"), "{out}");
}

#[test]
#[ignore = "needs the Samba AD DC: bash tests/ad/run.sh"]
fn a_disabled_account_is_a_member_of_no_group() {
    for membership in ["ad-in-chain", "memberof", "ad-token-groups"] {
        let dir = directory(&[&format!("membership = \"{membership}\"")]);
        let dave = user(&dir, "dave").expect("dave");
        assert!(dave.entry.disabled, "{membership}");
        assert!(dave.groups.is_empty(), "{membership}: {:?}", dave.groups);
    }
    let s = setup(&[]);
    let d = explain(
        &s,
        "submission",
        Some("dave"),
        "dave@example.com",
        &["x@elsewhere.example"],
    );
    assert_eq!(d, ["reject"], "a disabled account submits nothing");
    let (_, out) = gatehouse(&s, &["lookup", "dave"]);
    assert!(out.contains("account: disabled"), "{out}");
    // alice, enabled and in the same group, relays.
    let d = explain(
        &s,
        "submission",
        Some("alice"),
        "alice@example.com",
        &["x@elsewhere.example"],
    );
    assert_eq!(d, ["accept", "accept"]);
}

#[test]
#[ignore = "needs the Samba AD DC: bash tests/ad/run.sh"]
fn searches_page_past_the_dcs_thousand_entry_limit() {
    let config = config(&setup(&[]));
    let DirectorySettings::Ldap { settings, .. } = config.directory else {
        panic!("not ldap")
    };
    let backend = LdapBackend::new(*settings).unwrap();
    let dc = dc();
    let base = dc
        .get("AD_BULK_DN")
        .cloned()
        .unwrap_or_else(|| "OU=Bulk,DC=example,DC=com".into());
    let entries = runtime()
        .block_on(backend.search(&base, ldap3::Scope::Subtree, "(objectClass=user)", &["1.1"]))
        .unwrap();
    assert_eq!(entries.len(), 1600);
}

#[test]
#[ignore = "needs the Samba AD DC: bash tests/ad/run.sh"]
fn tls_verifies_the_dc_by_the_name_it_is_given() {
    // ldaps by the certificate's name (the recipe), by IP with the name
    // given, and StartTLS.
    for changes in [
        vec![],
        vec![
            "urls = [\"ldaps://127.0.0.1\"]",
            "tls_server_name = \"dc1.example.com\"",
        ],
        vec!["urls = [\"ldap://dc1.example.com\"]", "starttls = true"],
    ] {
        let dir = directory(&changes);
        assert!(user(&dir, "alice").is_some(), "{changes:?}");
    }
    // A name the certificate does not hold is refused, never skipped.
    let dir = directory(&[
        "urls = [\"ldaps://127.0.0.1\"]",
        "tls_server_name = \"dc9.example.com\"",
    ]);
    let err = runtime().block_on(dir.user_by_login("alice")).unwrap_err();
    assert!(
        err.to_string().contains("dc9.example.com") || err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
}

#[test]
#[ignore = "needs the Samba AD DC: bash tests/ad/run.sh"]
fn exchange_restrictions_stored_on_the_dc_are_enforced_under_every_alias() {
    let s = setup(&[]);
    // Board: authenticated senders only; Managers may, Contractors may not.
    for rcpt in ["board@example.com", "Directors@example.com"] {
        let d = explain(&s, "default", None, "someone@elsewhere.example", &[rcpt]);
        assert_eq!(d, ["accept", "reject"], "anonymous to {rcpt}");
        let d = explain(&s, "submission", Some("erin"), "erin@example.com", &[rcpt]);
        assert_eq!(d, ["accept", "accept"], "erin (Managers) to {rcpt}");
        let d = explain(&s, "submission", Some("grace"), "grace@example.com", &[rcpt]);
        assert_eq!(d, ["accept", "accept"], "grace (Managers, nested) to {rcpt}");
        let d = explain(&s, "submission", Some("carol"), "carol@example.com", &[rcpt]);
        assert_eq!(d, ["accept", "reject"], "carol (Contractors) to {rcpt}");
    }
    // ceo: alice only (authOrig); carol refused (unauthOrig).
    for rcpt in ["ceo@example.com", "chief@example.com"] {
        let d = explain(&s, "submission", Some("alice"), "alice@example.com", &[rcpt]);
        assert_eq!(d, ["accept", "accept"], "alice to {rcpt}");
        for sender in ["carol", "bob"] {
            let d = explain(
                &s,
                "submission",
                Some(sender),
                &format!("{sender}@example.com"),
                &[rcpt],
            );
            assert_eq!(d, ["accept", "reject"], "{sender} to {rcpt}");
        }
    }
}

#[test]
#[ignore = "needs the Samba AD DC: bash tests/ad/run.sh"]
fn a_configured_list_is_restricted_under_each_of_its_aliases() {
    let s = setup(&[]);
    for rcpt in [
        "all-staff@example.com",
        "everyone@example.com",
        "Everyone@Example.com",
    ] {
        let d = explain(&s, "default", None, "someone@elsewhere.example", &[rcpt]);
        assert_eq!(d, ["accept", "reject"], "anonymous to {rcpt}");
        let d = explain(&s, "submission", Some("bob"), "bob@example.com", &[rcpt]);
        assert_eq!(d, ["accept", "accept"], "bob (All Staff, nested) to {rcpt}");
        let d = explain(&s, "submission", Some("carol"), "carol@example.com", &[rcpt]);
        assert_eq!(d, ["accept", "reject"], "carol to {rcpt}");
    }
    // Turned off, the rule holds only for the address written in it.
    let off = setup(&["recipient_aliases = false"]);
    let d = explain(
        &off,
        "default",
        None,
        "someone@elsewhere.example",
        &["everyone@example.com"],
    );
    assert_eq!(d, ["accept", "accept"]);
}

#[test]
#[ignore = "needs the Samba AD DC: bash tests/ad/run.sh"]
fn check_refuses_a_distribution_group_with_token_groups() {
    // POLICY names the distribution group "All Staff": tokenGroups never holds it.
    let s = setup(&["membership = \"ad-token-groups\""]);
    let (code, out) = gatehouse(&s, &["check"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("\"All Staff\"") && out.contains("is a distribution group"),
        "{out}"
    );
    // The security groups it names are not flagged.
    assert!(
        !out.lines()
            .any(|l| l.contains("\"Relay Deny\"") && l.contains("distribution group")),
        "{out}"
    );
}

/// Write with `write`, then wait until the follower has applied one more
/// change; how long that took.
async fn followed(dir: &Directory, write: impl FnOnce()) -> std::time::Duration {
    let seen = dir.follow_counters().0;
    let t = std::time::Instant::now();
    write();
    while dir.follow_counters().0 == seen {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(5),
            "change never followed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    t.elapsed()
}

/// Apply an LDIF to the running DC (tests/ad/samba.sh modify).
fn modify_dc(ldif: &str) {
    use std::io::Write;
    let env = std::env::var("GATEHOUSE_AD_ENV").unwrap();
    let dc_dir = std::path::Path::new(&env).parent().unwrap();
    let mut child = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ad/samba.sh"))
        .arg("modify")
        .arg(dc_dir)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(ldif.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success(), "ldbmodify failed:\n{ldif}");
}

#[test]
#[ignore = "needs the Samba AD DC: bash tests/ad/run.sh"]
fn the_uschanged_follower_applies_a_membership_change_on_the_next_lookup() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = directory(&["follow_changes = \"ad\"", "follow_interval = \"200ms\""]);
    let base = dc()["AD_BASE_DN"].clone();
    let member = format!("CN=user0001,{}", dc()["AD_BULK_DN"]);
    let group = format!("CN=Follow Test,{base}");
    rt.block_on(async {
        dir.start_following();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !dir.following() {
            assert!(std::time::Instant::now() < deadline, "the follower never came up");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let groups = |u: Arc<ResolvedUser>| u.groups.contains("Follow Test");
        let before = dir.user_by_login("user0001").await.unwrap().expect("user0001");
        assert!(!groups(before));
        let delay = followed(&dir, || {
            modify_dc(&format!(
                "dn: {group}\nchangetype: add\nobjectClass: group\nsAMAccountName: Follow Test\nmember: {member}\n"
            ))
        })
        .await;
        eprintln!("group created, followed after {delay:?}");
        let now = dir.user_by_login("user0001").await.unwrap().unwrap();
        assert!(groups(now), "the next lookup sees the new group");
        followed(&dir, || {
            modify_dc(&format!(
                "dn: {group}\nchangetype: modify\ndelete: member\nmember: {member}\n"
            ))
        })
        .await;
        let now = dir.user_by_login("user0001").await.unwrap().unwrap();
        assert!(!groups(now), "the next lookup sees the removal");
        modify_dc(&format!("dn: {group}\nchangetype: delete\n"));
    });
}
