//! Envelope addresses: one strict model, and the questions the rules ask of it.
//!
//! [`Address::parse`] accepts only what RFC 5321 calls a mailbox (plus the
//! two forms MTAs complete: a bare local part and `user@`), after angle
//! brackets, a source route (`<@relay1,@relay2:user@domain>`), needless
//! quoting (`"alice"@example.com`) and one trailing dot on the domain are
//! removed. Case is folded (local part and domain, as the rules compare
//! them); the `IPv6:` tag of an address literal keeps its spelling.
//!
//! Anything else is refused, never guessed at: the MTA behind us would
//! otherwise read the same text differently than we do (`x@a;@example.com`,
//! `x@a.example .example.com`, `all\-staff@example.com`).
//!
//! A valid address may still be *routed*: its local part carries a routing
//! operator (`%`, `!`, or an `@` inside quotes) that an MTA turns into
//! another destination (Postfix `allow_percent_hack`, `swap_bangpath`,
//! `resolve_dequoted_address`; Sendmail's ruleset 3). [`Address::route_targets`]
//! follows those hops the way Postfix does.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Address {
    /// Lowercased local part (quotes removed when they were not needed).
    pub local: String,
    /// Lowercased domain without trailing dot; empty for a bare local part.
    pub domain: String,
}

/// Why an argument is not an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressError(pub &'static str);

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// At most this many routing operators in one local part: more is refused
/// as invalid, so that following every route stays cheap and complete.
const MAX_ROUTING_OPERATORS: usize = 16;
/// Distinct addresses reachable through at most 16 operators (each hop
/// strips a prefix or a suffix): well under this.
const MAX_ROUTE_NODES: usize = 512;

impl Address {
    /// Strict parse. `Ok(None)` is the null address `<>` (or nothing).
    pub fn parse(raw: &str) -> Result<Option<Address>, AddressError> {
        let mut s = raw.trim_matches(|c| c == ' ' || c == '\t');
        if s.starts_with('<') || s.ends_with('>') {
            s = s
                .strip_prefix('<')
                .and_then(|t| t.strip_suffix('>'))
                .ok_or(AddressError("unbalanced angle brackets"))?
                .trim_matches(|c| c == ' ' || c == '\t');
        }
        // Source route "@a,@b:user@domain" — obsolete (RFC 5321 §4.1.2), ignored
        // as RFC 5321 says, once each hop is checked to be a domain.
        if let Some(route) = s.strip_prefix('@') {
            let (hops, rest) = route.split_once(':').ok_or(AddressError("empty local part"))?;
            if !hops
                .split(',')
                .all(|h| h.strip_prefix('@').unwrap_or(h).pipe(valid_domain))
            {
                return Err(AddressError("malformed source route"));
            }
            if rest.is_empty() {
                return Err(AddressError("source route to nothing"));
            }
            s = rest;
        }
        if s.is_empty() {
            return Ok(None);
        }
        let (local, domain) = split_local_domain(s)?;
        if local.is_empty() {
            return Err(AddressError("empty local part"));
        }
        let local = canonical_local(local).ok_or(AddressError("invalid local part"))?;
        if local.chars().filter(|c| matches!(c, '@' | '%' | '!')).count() > MAX_ROUTING_OPERATORS {
            return Err(AddressError("too many routing operators"));
        }
        let mut domain = match domain {
            // "user" and "user@": the MTA completes both with its default domain.
            None => String::new(),
            Some(d) => d.strip_suffix('.').unwrap_or(d).to_lowercase(),
        };
        if !domain.is_empty() && !valid_domain(&domain) {
            return Err(AddressError("invalid domain"));
        }
        if let Some(lit) = domain.strip_prefix("[ipv6:") {
            domain = format!("[IPv6:{lit}");
        }
        Ok(Some(Address { local, domain }))
    }

    /// An address as the MTA reported it (`{rcpt_addr}`): no syntax is
    /// refused here, but what does not pass [`Address::parse`] is kept as
    /// an uncertain destination ([`Address::is_routed`] / invalid domain),
    /// so it can only count as non-local.
    pub fn from_mta(raw: &str) -> Address {
        match Address::parse(raw) {
            Ok(Some(a)) => a,
            _ => {
                let s = raw.trim().to_lowercase();
                match s.rsplit_once('@') {
                    Some((l, d)) => Address::new(l, d),
                    // Neither valid nor routed-looking: mark it uncertain.
                    None => Address {
                        local: s,
                        domain: "[invalid]".into(),
                    },
                }
            }
        }
    }

    fn new(local: &str, domain: &str) -> Address {
        Address {
            local: local.to_lowercase(),
            domain: domain.strip_suffix('.').unwrap_or(domain).to_lowercase(),
        }
    }

    pub fn is_postmaster(&self) -> bool {
        self.local == "postmaster"
    }

    /// Whether the domain is syntactically a domain (or empty: a bare local part).
    pub fn has_valid_domain(&self) -> bool {
        self.domain.is_empty() || valid_domain(&self.domain)
    }

    /// A routing operator in the local part, or a local part that is not
    /// valid at all: the destination is not what the domain says.
    pub fn is_routed(&self) -> bool {
        // The common case, without an allocation: asked several times per RCPT.
        if dot_atom(&self.local) {
            return self.local.contains(['@', '%', '!']);
        }
        match unquoted_content(&self.local) {
            Some(content) => content.contains(['@', '%', '!']),
            None => true,
        }
    }

    /// Every address an MTA could make of this routed one, hop after hop:
    /// a quoted `user@host`, the rightmost `%` (`user%host`), the first `!`
    /// (`host!user`), in every order (Postfix swaps a bang path before the
    /// percent hack, Sendmail's rulesets differ): the union, so that no
    /// order reaches an address the rules did not see. Empty when not
    /// routed. A target may have an empty domain (`"user@"@x`).
    pub fn route_targets(&self) -> Vec<Address> {
        let mut out: Vec<Address> = Vec::new();
        let mut queue = vec![self.clone()];
        while let Some(current) = queue.pop() {
            let Some(content) = unquoted_content(&current.local) else {
                continue;
            };
            let hops = [
                content.rsplit_once('@'),
                content.rsplit_once('%'),
                content.split_once('!').map(|(h, u)| (u, h)),
            ];
            for (local, domain) in hops.into_iter().flatten() {
                let next = Address::new(&requote(local), domain);
                if out.len() < MAX_ROUTE_NODES && !out.contains(&next) {
                    out.push(next.clone());
                    queue.push(next);
                }
            }
        }
        out
    }

    /// The address without its recipient-delimiter extension
    /// (`all-staff+tag` → `all-staff` with delimiters `+`), as the MTA's
    /// delivery agent finds the mailbox. `None` when there is none to remove.
    pub fn without_extension(&self, delimiters: &str) -> Option<Address> {
        if delimiters.is_empty() || self.is_routed() {
            return None;
        }
        let cut = self.local.find(|c| delimiters.contains(c))?;
        // Postfix keeps "+foo" whole: a mailbox name is never empty.
        if cut == 0 {
            return None;
        }
        Some(Address {
            local: self.local[..cut].to_string(),
            domain: self.domain.clone(),
        })
    }

    /// A bare local part completed with `domain`, as the MTA completes it
    /// (Postfix `append_at_myorigin`, Sendmail `$j`).
    pub fn completed(mut self, domain: Option<&str>) -> Address {
        if self.domain.is_empty() {
            if let Some(d) = domain {
                self.domain = d.to_string();
            }
        }
        self
    }

    /// Whether `text` is this address as it is displayed (`local@domain`,
    /// or the bare local part): the comparison with a stored address,
    /// without writing this one out.
    pub fn is_written(&self, text: &str) -> bool {
        self.written_as(text, |a, b| a == b)
    }

    /// [`Address::is_written`], ASCII letters in any case.
    pub fn is_written_ignoring_ascii_case(&self, text: &str) -> bool {
        self.written_as(text, |a, b| a.eq_ignore_ascii_case(b))
    }

    fn written_as(&self, text: &str, same: impl Fn(&[u8], &[u8]) -> bool) -> bool {
        let text = text.as_bytes();
        let (local, domain) = (self.local.as_bytes(), self.domain.as_bytes());
        if domain.is_empty() {
            return same(text, local);
        }
        text.len() == local.len() + 1 + domain.len()
            && same(&text[..local.len()], local)
            && text[local.len()] == b'@'
            && same(&text[local.len() + 1..], domain)
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

/// `f(x)` written `x.pipe(f)`, to keep a chain readable.
trait Pipe: Sized {
    fn pipe<T>(self, f: impl FnOnce(Self) -> T) -> T {
        f(self)
    }
}
impl<T> Pipe for T {}

fn atext(c: char) -> bool {
    // RFC 5321 atext; non-ASCII as RFC 6531 (SMTPUTF8) allows.
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            '!' | '#'
                | '$'
                | '%'
                | '&'
                | '\''
                | '*'
                | '+'
                | '-'
                | '/'
                | '='
                | '?'
                | '^'
                | '_'
                | '`'
                | '{'
                | '|'
                | '}'
                | '~'
        )
        || (!c.is_ascii() && !c.is_control())
}

fn dot_atom(s: &str) -> bool {
    if s.is_ascii() {
        // The common case, asked several times per RCPT: one pass over the
        // bytes, no splitting (the same answer as below).
        let mut after_dot = true;
        for &c in s.as_bytes() {
            match c {
                b'.' if after_dot => return false,
                b'.' => after_dot = true,
                _ if atext(char::from(c)) => after_dot = false,
                _ => return false,
            }
        }
        return !after_dot;
    }
    !s.is_empty()
        && s.split('.')
            .all(|part| !part.is_empty() && part.chars().all(atext))
}

/// RFC 5321 domain: dot-separated labels of letters, digits and inner
/// hyphens (underscores tolerated, as MTAs do), or an address literal.
fn valid_domain(d: &str) -> bool {
    if let Some(inner) = d.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        return !inner.is_empty()
            && inner
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".:-".contains(c));
    }
    let label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| {
                c.is_ascii_alphanumeric() || c == '-' || c == '_' || (!c.is_ascii() && c.is_alphanumeric())
            })
    };
    if d.len() > 255 {
        return false;
    }
    if d.is_ascii() {
        // One pass over the bytes (the same answer as the labels below).
        let (mut start, mut last) = (0, b'.');
        for (i, &c) in d.as_bytes().iter().enumerate() {
            match c {
                b'.' if last == b'.' || last == b'-' => return false,
                b'.' => start = i + 1,
                b'-' if last == b'.' => return false,
                _ if c.is_ascii_alphanumeric() || c == b'-' || c == b'_' => {}
                _ => return false,
            }
            if i + 1 - start > 63 {
                return false;
            }
            last = c;
        }
        return last != b'.' && last != b'-';
    }
    d.split('.').all(label)
}

/// Split at the `@` that ends the local part: the last one outside quotes.
/// `None` domain when there is no `@`; an `@` with nothing after it also
/// gives `None` (`user@`, completed like a bare local part).
fn split_local_domain(s: &str) -> Result<(&str, Option<&str>), AddressError> {
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
    if in_quotes {
        return Err(AddressError("unterminated quoted local part"));
    }
    Ok(match at {
        Some(i) if i + 1 == s.len() => (&s[..i], None),
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    })
}

/// The text of a local part: a dot-atom as it is, a quoted string with its
/// quotes and escapes removed. `None` when it is neither.
fn unquoted_content(local: &str) -> Option<String> {
    if dot_atom(local) {
        return Some(local.to_string());
    }
    let inner = local.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        let c = match c {
            '\\' => chars.next()?,
            // An unescaped quote inside: two quoted strings, not one.
            '"' => return None,
            c => c,
        };
        // qtext and quoted-pair: printable characters and space only.
        if c.is_control() {
            return None;
        }
        out.push(c);
    }
    Some(out)
}

/// Quote `content` only if it is not a dot-atom.
pub fn requote(content: &str) -> String {
    if dot_atom(content) {
        return content.to_string();
    }
    let mut q = String::with_capacity(content.len() + 2);
    q.push('"');
    for c in content.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

/// A valid local part in its one canonical spelling: lowercase, unquoted
/// when the quotes were not needed, else re-quoted minimally.
fn canonical_local(local: &str) -> Option<String> {
    if dot_atom(local) {
        return Some(local.to_lowercase());
    }
    unquoted_content(local).map(|c| requote(&c.to_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> Result<Option<String>, AddressError> {
        Address::parse(s).map(|a| a.map(|a| a.to_string()))
    }

    /// The byte-wise checks of ASCII local parts and domains answer as the
    /// label-wise ones (kept here as the reference) do.
    #[test]
    fn ascii_fast_paths_agree_with_the_label_checks() {
        fn dot_atom_by_parts(s: &str) -> bool {
            !s.is_empty() && s.split('.').all(|p| !p.is_empty() && p.chars().all(atext))
        }
        fn domain_by_labels(d: &str) -> bool {
            let label = |l: &str| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            };
            d.len() <= 255 && d.split('.').all(label)
        }
        let alphabet = [
            b'a', b'Z', b'0', b'.', b'-', b'_', b'+', b'%', b'@', b' ', b'"', b'!',
        ];
        // Every string of up to 5 of these characters, and long labels.
        let mut cases: Vec<String> = vec![String::new()];
        for _ in 0..5 {
            let next: Vec<String> = cases
                .iter()
                .filter(|c| c.len() + 1 > cases.last().map_or(0, String::len))
                .flat_map(|c| alphabet.iter().map(move |&b| format!("{c}{}", char::from(b))))
                .collect();
            cases.extend(next);
        }
        for n in [62, 63, 64] {
            let l = "a".repeat(n);
            cases.extend([
                l.clone(),
                format!("{l}.com"),
                format!("x.{l}"),
                format!("x.{l}.y"),
            ]);
        }
        cases.push(format!("{}.com", ["abc"; 70].join(".")));
        assert!(cases.len() > 200_000);
        for c in &cases {
            assert_eq!(dot_atom(c), dot_atom_by_parts(c), "{c:?}");
            assert_eq!(valid_domain(c), domain_by_labels(c), "{c:?}");
        }
    }

    /// `is_written` says what comparing with `to_string()` says, without it.
    #[test]
    fn is_written_compares_as_the_displayed_form() {
        let addresses = ["alice@example.com", "alice", "\"a@b\"@example.com", "a@b.c"];
        let texts = [
            "alice@example.com",
            "Alice@Example.COM",
            "alice",
            "alice@example.co",
            "alice@example.comm",
            "alicexexample.com",
            "@example.com",
            "alice@",
            "a@b.c",
            "\"a@b\"@example.com",
            "",
        ];
        for a in addresses {
            let a = Address::parse(a).unwrap().unwrap();
            for t in texts {
                assert_eq!(a.is_written(t), a.to_string() == t, "{a} vs {t}");
                assert_eq!(
                    a.is_written_ignoring_ascii_case(t),
                    a.to_string().eq_ignore_ascii_case(t),
                    "{a} vs {t}"
                );
            }
        }
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
            ("<\"all\\-staff\"@example.com>", Some("all-staff@example.com")),
            ("<\"john doe\"@example.com>", Some("\"john doe\"@example.com")),
            ("<\"a@b\"@example.com>", Some("\"a@b\"@example.com")),
            ("<user@[ipv6:2001:db8::1]>", Some("user@[IPv6:2001:db8::1]")),
            ("<user@[192.0.2.1]>", Some("user@[192.0.2.1]")),
            ("<Postmaster>", Some("postmaster")),
            ("all-staff", Some("all-staff")),
            ("<all-staff@>", Some("all-staff")),
            (
                "victim%external.org@mx.example.com",
                Some("victim%external.org@mx.example.com"),
            ),
            ("<>", None),
            ("", None),
            ("< >", None),
        ];
        for (input, want) in cases {
            assert_eq!(norm(input), Ok(want.map(String::from)), "{input}");
        }
    }

    #[test]
    fn invalid_syntax_is_refused() {
        for bad in [
            "x@elsewhere.example .example.com",
            "x@elsewhere.example(x).example.com",
            "<x@elsewhere.example>.example.com",
            "x@elsewhere.example;@example.com",
            "x@elsewhere.example#.example.com",
            "x@..example.com",
            "x@example.com..",
            "@example.com",
            "x@elsewhere.example,y@example.com",
            "all-staff@example.com@example.com",
            "all\\-staff@example.com",
            "<all-staff@example.com",
            "all-staff@example.com>",
            "\"unterminated@example.com",
            ".alice@example.com",
            "alice.@example.com",
            "al..ice@example.com",
            "alice@-example.com",
            "alice@exa mple.com",
            "alice@[]",
            "<@relay:>",
            "<@bad route:alice@example.com>",
            "\"a\"b\"@example.com",
            "a\"b@example.com",
            "alice@example.com\0",
        ] {
            assert!(Address::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn routing_operators() {
        let routed = |s: &str| Address::parse(s).unwrap().unwrap();
        for (input, targets) in [
            ("victim%external.org@mx.example.com", vec!["victim@external.org"]),
            ("external.org!victim@mx.example.com", vec!["victim@external.org"]),
            (
                "\"victim@external.org\"@mx.example.com",
                vec!["victim@external.org"],
            ),
            ("a%b%c@x.example", vec!["a%b@c", "a@b"]),
            ("example.com!all-staff", vec!["all-staff@example.com"]),
            ("all-staff%example.com@example.com", vec!["all-staff@example.com"]),
            (
                "\"victim%external.org\"@mx.example.com",
                vec!["victim@external.org"],
            ),
        ] {
            let a = routed(input);
            assert!(a.is_routed(), "{input}");
            let got: Vec<String> = a.route_targets().iter().map(|t| t.to_string()).collect();
            assert_eq!(got, targets, "{input}");
        }
        for plain in [
            "alice@example.com",
            "\"john doe\"@example.com",
            "o'brien@example.com",
            "all-staff",
        ] {
            let a = routed(plain);
            assert!(!a.is_routed(), "{plain}");
            assert!(a.route_targets().is_empty(), "{plain}");
        }
    }

    #[test]
    fn routes_are_followed_in_every_order_and_bounded() {
        let a = |s: &str| Address::parse(s).unwrap().unwrap();
        let targets =
            |s: &str| -> Vec<String> { a(s).route_targets().iter().map(|t| t.to_string()).collect() };
        // Postfix: bang first, then the percent hack, reaches the list.
        let t = targets("mx.example.com!all-staff%example.com@mx.example.com");
        assert!(t.contains(&"all-staff@example.com".to_string()), "{t:?}");
        // Nine hops deep still reaches it.
        let deep = format!(
            "all-staff%example.com{}@mx.example.com",
            "%mx.example.com".repeat(8)
        );
        assert!(targets(&deep).contains(&"all-staff@example.com".to_string()));
        // Past 16 operators: refused, not half followed.
        let too_deep = format!("all-staff{}@x.example", "%y".repeat(17));
        assert!(Address::parse(&too_deep).is_err());
        let worst = format!("{}u{}@x.example", "h!".repeat(8), "%d".repeat(8));
        assert!(a(&worst).route_targets().len() < MAX_ROUTE_NODES);
    }

    #[test]
    fn extension_and_completion() {
        let a = |s: &str| Address::parse(s).unwrap().unwrap();
        assert_eq!(
            a("all-staff+tag@example.com")
                .without_extension("+")
                .unwrap()
                .to_string(),
            "all-staff@example.com"
        );
        assert_eq!(
            a("all-staff-x-y@example.com")
                .without_extension("+-")
                .unwrap()
                .to_string(),
            "all@example.com"
        );
        assert_eq!(a("+foo@example.com").without_extension("+"), None);
        assert_eq!(a("alice@example.com").without_extension("+"), None);
        assert_eq!(a("alice+x@example.com").without_extension(""), None);
        assert_eq!(
            a("all-staff").completed(Some("example.com")).to_string(),
            "all-staff@example.com"
        );
        assert_eq!(
            a("a@b.example").completed(Some("example.com")).to_string(),
            "a@b.example"
        );
    }

    #[test]
    fn mta_view_never_becomes_local_by_accident() {
        let v = Address::from_mta("victim@external.org");
        assert_eq!(v.to_string(), "victim@external.org");
        assert!(!v.is_routed());
        let odd = Address::from_mta("x@a;@example.com");
        assert!(odd.is_routed(), "{odd}");
        let bad_domain = Address::from_mta("x@a b.example.com");
        assert!(!bad_domain.has_valid_domain());
        let bare_junk = Address::from_mta("a b");
        assert_eq!(bare_junk.domain, "[invalid]");
    }

    #[test]
    fn postmaster() {
        let a = |s: &str| Address::parse(s).unwrap().unwrap();
        assert!(a("<POSTMASTER@example.com>").is_postmaster());
        assert!(!a("<postmaster2@example.com>").is_postmaster());
    }
}
