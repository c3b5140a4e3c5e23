//! Bad configuration files: each is refused with a message naming the file,
//! the line and the key or value at fault. Nothing is half-loaded.

mod common;

use std::path::Path;

use gatehouse::config;

const EXAMPLE: &str = include_str!("../conf/gatehouse.toml");

fn error_of(text: &str) -> String {
    match config::parse(text, Path::new("/etc/gatehouse/gatehouse.toml")) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn the_example_is_valid_and_complete() {
    let c = config::parse(EXAMPLE, Path::new("conf/gatehouse.toml")).unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(c.policy.listeners.len(), 2);
    assert!(c.policy.default_listener.is_some());
    assert_eq!(c.policy.recipients.len(), 1);
}

#[test]
fn errors_name_file_line_and_key() {
    let cases: &[(&str, &str, &str, &[&str])] = &[
        // (replace, with, line marker, expected fragments)
        (
            "default_domain = \"example.com\"",
            "default_domain = \"elsewhere.example\"",
            "default_domain",
            &["addresses.default_domain", "not in domains.local"],
        ),
        (
            "default_domain = \"example.com\"",
            "default_domain = \".example.com\"",
            "default_domain",
            &["addresses.default_domain", "is not a domain"],
        ),
        (
            "recipient_delimiter = \"+\"",
            "recipient_delimiter = \"@\"",
            "recipient_delimiter = ",
            &["addresses.recipient_delimiter"],
        ),
        (
            "recipient_delimiter = \"+\"",
            "recipient_delimiter = \"ab\"",
            "recipient_delimiter = ",
            &["addresses.recipient_delimiter"],
        ),
        (
            "mta_view = \"enforce\"",
            "mta_view = \"ignore\"",
            "mta_view",
            &["unknown variant `ignore`"],
        ),
        (
            "[domains]\n",
            "[domains]\nlokal = []\n",
            "lokal",
            &["unknown field `lokal`"],
        ),
        (
            "idle_timeout = \"5m\"",
            "idle_timeout = \"5 minutes\"",
            "idle_timeout",
            &["unit must be"],
        ),
        (
            "idle_timeout = \"5m\"",
            "idle_timeout = 300",
            "idle_timeout",
            &["invalid type"],
        ),
        (
            "trusted_networks = [\"10.0.0.0/8\"]",
            "trusted_networks = [\"10.0.0.1/8\"]",
            "trusted_networks",
            &["host bits"],
        ),
        (
            "trusted_networks = [\"10.0.0.0/8\"]",
            "trusted_networks = [\"ten\"]",
            "trusted_networks",
            &["not an IP network"],
        ),
        (
            "listen = [\"inet:127.0.0.1:8890\"]",
            "listen = [\"tcp:127.0.0.1:8890\"]",
            "listen =",
            &["unknown type prefix"],
        ),
        (
            "local = [\"example.com\", \".example.com\"]",
            "local = [\"exa mple.com\"]",
            "local =",
            &["not a domain"],
        ),
        (
            "mode = \"enforce\"",
            "mode = \"strict\"",
            "mode = \"strict\"",
            &["unknown variant `strict`"],
        ),
        (
            "on_directory_error = \"tempfail\"",
            "on_directory_error = \"ignore\"",
            "on_directory_error",
            &["unknown variant"],
        ),
        (
            "relay_denied = \"550 5.7.1 {rcpt}: Not permitted to relay\"",
            "relay_denied = \"550 4.7.1 x\"",
            "relay_denied",
            &["class 4 differs"],
        ),
        (
            "local_delivery_domains = []",
            "local_delivery_domains = [\"mx.elsewhere.example\"]",
            "local_delivery_domains",
            &["addresses.local_delivery_domains", "not in domains.local"],
        ),
        (
            "allow_anonymous = false\n",
            "allow_anonymous = \"no\"\n",
            "allow_anonymous = \"no\"",
            &["invalid type"],
        ),
    ];
    for (from, to, marker, fragments) in cases {
        assert!(EXAMPLE.contains(from), "{from}");
        let text = EXAMPLE.replacen(from, to, 1);
        let e = error_of(&text);
        assert!(e.starts_with("/etc/gatehouse/gatehouse.toml: "), "{e}");
        let line = line_of(&text, marker);
        assert!(
            e.contains(&format!("line {line}")),
            "expected line {line} in: {e}"
        );
        for f in *fragments {
            assert!(e.contains(f), "expected {f:?} in: {e}");
        }
    }
}

#[test]
fn cross_field_errors_name_the_table() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "submit = { allow_groups = [\"Mail Senders\"] }",
            "submit = { allow_groups = [\"Mail Sendrs\"] }",
            "group \"Mail Sendrs\" is not defined",
        ),
        (
            "accept_from = [\"group:All Staff\", \"sender:ceo@partner.example\"]",
            "accept_from = [\"team:All Staff\"]",
            "must be \"group:NAME\"",
        ),
        (
            "accept_from = [\"group:All Staff\"",
            "accept_from = [\"user:nobody\"",
            "user \"nobody\" is not defined",
        ),
        (
            "name = \"submission\"",
            "name = \"bridgehead\"",
            "listener \"bridgehead\" is defined twice",
        ),
        (
            "match = { daemon_name = \"submission\" }",
            "match = { daemon_name = \"BRIDGEHEAD\" }",
            "are ambiguous",
        ),
        (
            "match = {}",
            "match = { daemon_port = 25 }",
            "give it no match keys",
        ),
        (
            "address = \"all-staff@example.com\"",
            "address = \"all-staff\"",
            "is not an address",
        ),
        ("login = \"carol\"", "login = \"alice\"", "used twice"),
        // Rules read a name with `=` and `,` as a DN: it would never hold.
        (
            "name = \"All Staff\"",
            "name = \"cn=All Staff,ou=groups\"",
            "rules read it as a DN",
        ),
        (
            "groups = [\"Contractors\", \"Internet Mail Users\", \"Mail Senders\"]",
            "groups = [\"cn=Contractors,ou=groups\"]",
            "rules read it as a DN",
        ),
        // A typo in a member leaves the intended person out of the group.
        (
            "members = [\"group:Full-Time Employees\", \"user:carol\"]",
            "members = [\"group:Full-Time Employees\", \"user:carl\"]",
            "member \"user:carl\" is not defined",
        ),
        (
            "members = [\"group:Full-Time Employees\", \"user:carol\"]",
            "members = [\"group:Full-Time Employes\", \"user:carol\"]",
            "member \"group:Full-Time Employes\" is not defined",
        ),
        (
            "members = [\"group:Full-Time Employees\", \"user:carol\"]",
            "members = [\"carol\"]",
            "must be \"user:LOGIN\"",
        ),
        (
            "max_packet_size = 1048576",
            "max_packet_size = 1000",
            "outside 65536",
        ),
        (
            "socket_mode = \"0660\"",
            "socket_mode = \"rw\"",
            "not an octal file mode",
        ),
    ];
    for (from, to, fragment) in cases {
        assert!(EXAMPLE.contains(from), "{from}");
        let e = error_of(&EXAMPLE.replacen(from, to, 1));
        assert!(e.contains(fragment), "expected {fragment:?} in: {e}");
        assert!(e.starts_with("/etc/gatehouse/gatehouse.toml: "), "{e}");
    }
}

#[test]
fn a_match_on_a_socket_that_is_not_listened_on() {
    let text = EXAMPLE.replace(
        "match = { daemon_name = \"submission\" }",
        "match = { socket = \"inet:127.0.0.1:9999\" }",
    );
    assert!(error_of(&text).contains("is not in milter.listen"));
}

#[test]
fn risky_settings_are_warnings() {
    let c = config::parse("[[listener]]\nname = \"default\"\n", Path::new("x.toml")).unwrap();
    assert!(
        c.warnings.iter().any(|w| w.contains("domains.local is empty")),
        "{:?}",
        c.warnings
    );
}

#[test]
fn unreadable_file() {
    let e = config::load(Path::new("/nonexistent/gatehouse.toml"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("/nonexistent/gatehouse.toml: cannot read"), "{e}");
}

#[test]
fn check_command_warns_about_groups_that_resolve_to_nobody() {
    let text = EXAMPLE
        .replace(
            "[domains]\n",
            "[[directory.groups]]\nname = \"Nobody Here\"\nmembers = []\n\n[domains]\n",
        )
        .replace(
            "deny_groups = [\"Contractors\"]",
            "deny_groups = [\"Contractors\", \"Nobody Here\"]",
        )
        .replace(
            "on_directory_error = \"tempfail\"",
            "on_directory_error = \"accept\"",
        );
    let out = common::gatehouse_check(&text);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "warnings only: exit 2: {stdout}");
    assert!(
        stdout.contains(
            "warning: group \"Nobody Here\" (listener \"submission\" relay.deny_groups) resolves to nobody"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("fail open"), "{stdout}");
    // A broken file: exit 1 with the error on stderr.
    let out = common::gatehouse_check("[milter]\nbogus = 1\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field `bogus`"));
}

/// A restricted recipient must be a plain mailbox: a routed or invalid one
/// would never match what the MTA delivers to.
#[test]
fn routed_or_invalid_recipients_are_refused() {
    for bad in [
        "all-staff%elsewhere.example@example.com",
        "elsewhere.example!all-staff@example.com",
        "all-staff@example.com@example.com",
        "all-staff",
    ] {
        let text = EXAMPLE.replace(
            "address = \"all-staff@example.com\"",
            &format!("address = {bad:?}"),
        );
        let e = error_of(&text);
        assert!(e.contains("is not an address"), "{bad}: {e}");
    }
}

/// Trusted clients relay without authenticating: trusted networks with
/// public space wider than [safety] allows are an open relay, refused at
/// load with the listener's line, in any split and on any listener.
#[test]
fn open_relay_trusted_networks_are_refused_in_any_split() {
    for (listener_marker, nets) in [
        ("\nname = \"bridgehead\"", "[\"0.0.0.0/0\"]"),
        ("\nname = \"bridgehead\"", "[\"0.0.0.0/1\", \"128.0.0.0/1\"]"),
        ("\nname = \"bridgehead\"", "[\"::/0\"]"),
        ("\nname = \"submission\"", "[\"0.0.0.0/0\"]"),
        ("\nname = \"default\"", "[\"0.0.0.0/0\"]"),
    ] {
        let text = EXAMPLE
            .replace("trusted_networks = [\"10.0.0.0/8\"]", "# no trusted networks")
            .replace(
                listener_marker,
                &format!("{listener_marker}\ntrusted_networks = {nets}"),
            );
        let e = error_of(&text);
        assert!(e.contains("open relay"), "{nets} on {listener_marker}: {e}");
        assert!(
            e.contains(&format!(
                "line {}",
                line_of(&text, listener_marker.trim_start()) - 1
            )),
            "{nets} on {listener_marker}: names the listener's table: {e}"
        );
        // Acknowledged: loads, with a warning.
        let acknowledged = text.replace(
            &format!("{listener_marker}\n"),
            &format!("{listener_marker}\nacknowledge_open_relay = true\n"),
        );
        let c = config::parse(&acknowledged, Path::new("g.toml")).unwrap();
        assert!(
            c.warnings
                .iter()
                .any(|w| w.contains("open relay") && w.contains("acknowledged")),
            "{:?}",
            c.warnings
        );
    }
}

#[test]
fn wide_private_trusted_networks_warn_and_the_limit_is_configurable() {
    let text = EXAMPLE.replace(
        "trusted_networks = [\"10.0.0.0/8\"]",
        "trusted_networks = [\"10.0.0.0/8\", \"172.16.0.0/12\", \"192.168.0.0/16\"]",
    );
    let c = config::parse(&text, Path::new("g.toml")).unwrap();
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("bridgehead") && w.contains("trusted_networks cover")),
        "{:?}",
        c.warnings
    );
    let strict = EXAMPLE.replace("trusted_ipv4_prefix = 8 ", "trusted_ipv4_prefix = 16 ");
    assert_ne!(strict, EXAMPLE);
    let c = config::parse(&strict, Path::new("g.toml")).unwrap();
    assert!(
        c.warnings.iter().any(|w| w.contains("bridgehead")),
        "{:?}",
        c.warnings
    );
    let public = EXAMPLE.replace(
        "trusted_networks = [\"10.0.0.0/8\"]",
        "trusted_networks = [\"198.51.0.0/16\"]",
    );
    let e = error_of(&public.replace("trusted_ipv4_prefix = 8 ", "trusted_ipv4_prefix = 24 "));
    assert!(e.contains("open relay"), "{e}");
    let e = error_of(&EXAMPLE.replace("trusted_ipv4_prefix = 8 ", "trusted_ipv4_prefix = 33 "));
    assert!(e.contains("safety.trusted_ipv4_prefix"), "{e}");
}

/// A listener without match keys beside "default" would silently take
/// every session default is there for.
#[test]
fn a_second_catch_all_is_refused() {
    let text = EXAMPLE.replace("match = { daemon_name = \"bridgehead\" }", "match = {}");
    let e = error_of(&text);
    assert!(e.contains("second catch-all"), "{e}");
    assert!(
        e.contains(&format!("line {}", line_of(&text, "name = \"bridgehead\"") - 1)),
        "{e}"
    );
}

/// An empty file, or one cut before the listeners, has no policy: refused
/// (a reload of it is refused too, and the running policy stays).
#[test]
fn an_empty_or_truncated_file_is_refused() {
    for text in [
        "",
        "\n# nothing\n",
        &EXAMPLE[..EXAMPLE.find("[[listener]]").unwrap()],
    ] {
        let e = error_of(text);
        assert!(e.contains("no [[listener]]"), "{e}");
    }
}

/// Values that would break the daemon are refused with the line, the key
/// and the allowed range (measured before: `idle_timeout = "0s"` closed every
/// connection, `level = "verbose"` silenced the refusal log, a huge ttl
/// overflowed, `max_connections` was truncated).
#[test]
fn absurd_values_are_refused_with_line_key_and_range() {
    for (from, to, key) in [
        (
            "idle_timeout = \"5m\"",
            "idle_timeout = \"0s\"",
            "milter.idle_timeout",
        ),
        (
            "max_connections = 4096",
            "max_connections = 5000000000",
            "milter.max_connections",
        ),
        (
            "max_packet_size = 1048576",
            "max_packet_size = 1024",
            "milter.max_packet_size",
        ),
        ("level = \"info\"", "level = \"verbose\"", "log.level"),
        ("ttl = \"5m\"", "ttl = \"30000d\"", "cache.ttl"),
        ("capacity = 10000 ", "capacity = 0 ", "cache.capacity"),
    ] {
        let text = EXAMPLE.replacen(from, to, 1);
        assert_ne!(text, EXAMPLE, "{from}");
        let e = error_of(&text);
        let line = line_of(&text, to);
        assert!(e.contains(key), "{to}: {e}");
        assert!(
            e.contains(&format!("line {line}:")),
            "{to}: names line {line}: {e}"
        );
        assert!(
            e.contains("outside") || e.contains("not one of"),
            "{to}: says the range: {e}"
        );
    }
    // Beyond what a duration holds: refused by the parser, at its line.
    let text = EXAMPLE.replacen("ttl = \"5m\"", "ttl = \"300000000000000d\"", 1);
    let e = error_of(&text);
    assert!(
        e.contains("too long") && e.contains(&format!("line {}", line_of(&text, "300000000000000d"))),
        "{e}"
    );
}

#[test]
fn absurd_ldap_values_are_refused_with_line_and_key() {
    let ldap = |extra: &str| {
        EXAMPLE.replace(
            "backend = \"static\"",
            &format!("backend = \"ldap\"\n\n[directory.ldap]\nurls = [\"ldap://127.0.0.1:1\"]\nbase_dn = \"dc=example,dc=com\"\n{extra}"),
        )
    };
    for (extra, key) in [
        ("failback_after = \"0s\"", "directory.ldap.failback_after"),
        ("timeout = \"0s\"", "directory.ldap.timeout"),
        ("pool_size = 0", "directory.ldap.pool_size"),
        ("follow_interval = \"0s\"", "directory.ldap.follow_interval"),
    ] {
        let text = ldap(extra);
        // The static users and groups of the example belong to the static backend.
        let text = text[..text.find("[[directory.users]]").unwrap()].to_string()
            + &text[text.find("[cache]").unwrap()..];
        let e = error_of(&text);
        assert!(e.contains(key), "{extra}: {e}");
        assert!(
            e.contains(&format!("line {}:", line_of(&text, extra))),
            "{extra}: {e}"
        );
    }
    let e = error_of(&EXAMPLE.replace("backend = \"static\"", "backend = \"ldap\""));
    assert!(
        e.contains(&format!("line {}:", line_of(EXAMPLE, "backend = \"static\"")))
            && e.contains("[directory.ldap]"),
        "{e}"
    );
}

/// Secrets and sockets open to every local user draw a warning with the line.
#[test]
fn world_readable_secrets_and_world_writable_sockets_warn() {
    use std::os::unix::fs::PermissionsExt;
    let text = EXAMPLE
        .replace(
            "listen = [\"inet:127.0.0.1:8890\"]",
            "listen = [\"unix:/run/gatehouse/g.sock\"]",
        )
        .replace("socket_mode = \"0660\"", "socket_mode = \"0777\"");
    let c = config::parse(&text, Path::new("g.toml")).unwrap();
    let line = line_of(&text, "socket_mode = \"0777\"");
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("socket_mode") && w.contains(&format!("line {line}:"))),
        "{:?}",
        c.warnings
    );
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "pw").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let ldap = EXAMPLE.replace(
        "backend = \"static\"",
        &format!(
            "backend = \"ldap\"\n\n[directory.ldap]\nurls = [\"ldap://127.0.0.1:1\"]\nbase_dn = \"dc=example,dc=com\"\nbind_dn = \"cn=gatehouse\"\nbind_password_file = {:?}\n",
            secret.display().to_string()
        ),
    );
    let ldap = ldap[..ldap.find("[[directory.users]]").unwrap()].to_string()
        + &ldap[ldap.find("[cache]").unwrap()..];
    let c = config::parse(&ldap, Path::new("g.toml")).unwrap();
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("readable by every local user")),
        "{:?}",
        c.warnings
    );
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o640)).unwrap();
    let c = config::parse(&ldap, Path::new("g.toml")).unwrap();
    assert!(
        !c.warnings.iter().any(|w| w.contains("readable")),
        "{:?}",
        c.warnings
    );
}

#[test]
fn policy_service_settings_are_checked() {
    let on = EXAMPLE.replacen("\nlisten = []", "\nlisten = [\"inet:127.0.0.1:10040\"]", 1);
    let c = config::parse(&on, Path::new("x.toml")).unwrap();
    let p = c.policy_service.expect("policy service on");
    assert_eq!(p.listen.endpoints[0].to_string(), "inet:127.0.0.1:10040");
    assert!(config::parse(EXAMPLE, Path::new("x.toml"))
        .unwrap()
        .policy_service
        .is_none());
    // A listener may match the policy socket.
    let by_socket = on.replace(
        "match = { daemon_name = \"submission\" }",
        "match = { daemon_name = \"submission\", socket = \"inet:127.0.0.1:10040\" }",
    );
    assert!(config::parse(&by_socket, Path::new("x.toml")).is_ok());
    let cases: &[(&str, &str, &[&str])] = &[
        // One socket, one protocol.
        (
            "listen = [\"inet:127.0.0.1:10040\"]",
            "listen = [\"inet:127.0.0.1:8890\"]",
            &["policy_service.listen names inet:127.0.0.1:8890", "milter.listen"],
        ),
        (
            "request_timeout = \"10s\"",
            "request_timeout = \"0s\"",
            &["policy_service.request_timeout", "line"],
        ),
        (
            "max_request_bytes = 16384",
            "max_request_bytes = 100",
            &["policy_service.max_request_bytes", "1024"],
        ),
        (
            "max_attributes = 128",
            "max_attributes = 5",
            &["policy_service.max_attributes"],
        ),
        (
            "listen = [\"inet:127.0.0.1:10040\"]",
            "listen = [\"tcp:10040\"]",
            &["unknown type prefix"],
        ),
    ];
    for (from, to, fragments) in cases {
        assert!(on.contains(from), "{from}");
        let e = error_of(&on.replacen(from, to, 1));
        for f in *fragments {
            assert!(e.contains(f), "expected {f:?} in: {e}");
        }
    }
    // Nothing to serve at all is an error.
    let nothing = EXAMPLE.replacen("listen = [\"inet:127.0.0.1:8890\"]", "listen = []", 1);
    assert!(error_of(&nothing).contains("would serve nothing"));
    let policy_only = on.replacen("listen = [\"inet:127.0.0.1:8890\"]", "listen = []", 1);
    assert!(config::parse(&policy_only, Path::new("x.toml")).is_ok());
}

/// The Active Directory settings refuse what would verify nothing or
/// mistake one user for another.
#[test]
fn active_directory_settings_are_validated() {
    let ldap = |extra: &str| {
        let text = EXAMPLE.replace(
            "backend = \"static\"",
            &format!("backend = \"ldap\"\n\n[directory.ldap]\nbase_dn = \"dc=example,dc=com\"\n{extra}"),
        );
        text[..text.find("[[directory.users]]").unwrap()].to_string() + &text[text.find("[cache]").unwrap()..]
    };
    let ldaps = "urls = [\"ldaps://127.0.0.1\"]";
    for (extra, want) in [
        (
            format!("{ldaps}\ntls_server_name = \"dc1.example.com\""),
            "needs ca_file",
        ),
        (
            "urls = [\"ldap://127.0.0.1\"]\nca_file = \"/dev/null\"\ntls_server_name = \"dc1.example.com\""
                .to_string(),
            "would not use TLS",
        ),
        (
            format!("{ldaps}\nca_file = \"/dev/null\"\ntls_server_name = \"bad name!\""),
            "not a host name",
        ),
        (
            format!("{ldaps}\nnetbios_domain = \"EX\\\\AMPLE\""),
            "down-level domain",
        ),
        (format!("{ldaps}\nnetbios_domain = \"\""), "down-level domain"),
        (
            format!("{ldaps}\nnested = false\nmembership = \"ad-token-groups\""),
            "nested = false cannot hold",
        ),
        (
            format!("{ldaps}\nlogin_attribute = []"),
            "must be one attribute name",
        ),
        (
            format!("{ldaps}\nlogin_attribute = [\"uid)(x=*\"]"),
            "must be one attribute name",
        ),
        (
            format!("{ldaps}\naddress_attributes = [\"mail\", \"*\"]"),
            "not an attribute name",
        ),
    ] {
        let e = error_of(&ldap(&extra));
        assert!(e.contains(want), "{extra}: {e}");
    }
    // A list of login attributes, a down-level domain and proxyAddresses
    // without the filter that finds senders by alias: valid, with a warning.
    let text = ldap(&format!(
        "{ldaps}\nlogin_attribute = [\"sAMAccountName\", \"userPrincipalName\"]\nnetbios_domain = \"EXAMPLE\"\naddress_attributes = [\"mail\", \"proxyAddresses\"]"
    ));
    let c = config::parse(&text, Path::new("g.toml")).unwrap();
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("does not search proxyAddresses")),
        "{:?}",
        c.warnings
    );
}
