//! Envelope addresses as the policy compares them: one canonical lowercase
//! form whatever the client typed.
//!
//! Handled: angle brackets, surrounding spaces, source routes
//! (`<@relay1,@relay2:user@domain>`), needlessly quoted local parts
//! (`"alice"@example.com`), a trailing dot on the domain, and the case of the
//! `IPv6:` tag in address literals. The null sender is `<>` or empty.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Address {
    /// Lowercased local part (quotes removed when they were not needed).
    pub local: String,
    /// Lowercased domain without trailing dot; empty for a bare local part.
    pub domain: String,
}

impl Address {
    /// `None` for the null sender.
    pub fn parse(raw: &str) -> Option<Address> {
        let mut s = raw.trim();
        if let Some(inner) = s.strip_prefix('<').and_then(|t| t.strip_suffix('>')) {
            s = inner.trim();
        }
        // Source route: "@a,@b:user@domain" — the route is obsolete (RFC 5321 §4.1.2).
        if s.starts_with('@') {
            if let Some((_, rest)) = s.split_once(':') {
                s = rest;
            }
        }
        if s.is_empty() {
            return None;
        }
        let (local, domain) = split_local_domain(s);
        let local = unquote(local).to_lowercase();
        let mut domain = domain.trim_end_matches('.').to_lowercase();
        if let Some(lit) = domain.strip_prefix("[ipv6:") {
            domain = format!("[IPv6:{lit}");
        }
        Some(Address { local, domain })
    }

    pub fn is_postmaster(&self) -> bool {
        self.local == "postmaster"
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.domain.is_empty() {
            write!(f, "{}", self.local)
        } else {
            write!(f, "{}@{}", self.local, self.domain)
        }
    }
}

/// Split at the last `@` outside a quoted local part.
fn split_local_domain(s: &str) -> (&str, &str) {
    let mut in_quotes = false;
    let mut escaped = false;
    let mut at = None;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '@' if !in_quotes => at = Some(i),
            _ => {}
        }
    }
    match at {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, ""),
    }
}

/// `"alice"` → `alice`; quotes stay when the content needs them.
fn unquote(local: &str) -> String {
    let Some(inner) = local.strip_prefix('"').and_then(|l| l.strip_suffix('"')) else {
        return local.to_string();
    };
    let mut out = String::with_capacity(inner.len());
    let mut escaped = false;
    for c in inner.chars() {
        if escaped {
            out.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else {
            out.push(c);
        }
    }
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c);
    let dot_atom = !out.is_empty()
        && out
            .split('.')
            .all(|part| !part.is_empty() && part.chars().all(atext));
    if dot_atom {
        out
    } else {
        local.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> Option<String> {
        Address::parse(s).map(|a| a.to_string())
    }

    #[test]
    fn normalisation_table() {
        let cases: &[(&str, Option<&str>)] = &[
            ("<Alice@Example.COM>", Some("alice@example.com")),
            (" <alice@example.com> ", Some("alice@example.com")),
            ("alice@example.com", Some("alice@example.com")),
            ("<alice@example.com.>", Some("alice@example.com")),
            (
                "<@relay.example,@r2.example:bob@example.com>",
                Some("bob@example.com"),
            ),
            ("<\"alice\"@example.com>", Some("alice@example.com")),
            ("<\"john doe\"@example.com>", Some("\"john doe\"@example.com")),
            ("<\"a@b\"@example.com>", Some("\"a@b\"@example.com")),
            ("<user@[ipv6:2001:db8::1]>", Some("user@[IPv6:2001:db8::1]")),
            ("<Postmaster>", Some("postmaster")),
            ("<>", None),
            ("", None),
            ("< >", None),
        ];
        for (input, want) in cases {
            assert_eq!(norm(input).as_deref(), *want, "{input}");
        }
    }

    #[test]
    fn postmaster() {
        assert!(Address::parse("<POSTMASTER@example.com>")
            .unwrap()
            .is_postmaster());
        assert!(!Address::parse("<postmaster2@example.com>")
            .unwrap()
            .is_postmaster());
    }
}
