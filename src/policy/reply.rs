//! The one place where a decision becomes SMTP reply text.
//!
//! Templates are validated at load so the MTA never sees a malformed reply:
//! 4xx or 5xx, an enhanced code of the same class (Postfix rejects
//! `550 4.7.1`), one line. At render time values from the network are made
//! safe: `%` doubled (Sendmail replaces text with a lone `%`), control
//! characters dropped, the line capped at libmilter's 980 characters.

use bytes::Bytes;

use crate::milter::protocol::MAX_REPLY_LINE;

/// Every reply gatehouse can give.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplyKind {
    AnonymousForbidden,
    SubmitDenied,
    RelayAnonymous,
    RelayDenied,
    RecipientRequiresAuth,
    RecipientNotAuthorized,
    SendAsDenied,
    AnonymousLocalSender,
    InvalidRecipient,
    DirectoryUnavailable,
    NoListener,
}

impl ReplyKind {
    pub const ALL: [ReplyKind; 11] = [
        ReplyKind::AnonymousForbidden,
        ReplyKind::SubmitDenied,
        ReplyKind::RelayAnonymous,
        ReplyKind::RelayDenied,
        ReplyKind::RecipientRequiresAuth,
        ReplyKind::RecipientNotAuthorized,
        ReplyKind::SendAsDenied,
        ReplyKind::AnonymousLocalSender,
        ReplyKind::InvalidRecipient,
        ReplyKind::DirectoryUnavailable,
        ReplyKind::NoListener,
    ];

    /// Key in the `[replies]` table.
    pub fn key(self) -> &'static str {
        match self {
            ReplyKind::AnonymousForbidden => "anonymous_forbidden",
            ReplyKind::SubmitDenied => "submit_denied",
            ReplyKind::RelayAnonymous => "relay_anonymous",
            ReplyKind::RelayDenied => "relay_denied",
            ReplyKind::RecipientRequiresAuth => "recipient_requires_auth",
            ReplyKind::RecipientNotAuthorized => "recipient_not_authorized",
            ReplyKind::SendAsDenied => "send_as_denied",
            ReplyKind::AnonymousLocalSender => "anonymous_local_sender",
            ReplyKind::InvalidRecipient => "invalid_recipient",
            ReplyKind::DirectoryUnavailable => "directory_unavailable",
            ReplyKind::NoListener => "no_listener",
        }
    }

    pub fn default_text(self) -> &'static str {
        match self {
            ReplyKind::AnonymousForbidden => "530 5.7.0 Authentication required",
            ReplyKind::SubmitDenied => "550 5.7.1 Client does not have permissions to submit to this server",
            ReplyKind::RelayAnonymous => "550 5.7.1 {rcpt}: Unable to relay",
            ReplyKind::RelayDenied => "550 5.7.1 {rcpt}: Not permitted to relay",
            ReplyKind::RecipientRequiresAuth => {
                "550 5.7.1 {rcpt}: Authentication required to send to this recipient"
            }
            ReplyKind::RecipientNotAuthorized => "550 5.7.1 {rcpt}: Not authorized to send to this recipient",
            ReplyKind::SendAsDenied => "550 5.7.1 Client does not have permissions to send as this sender",
            ReplyKind::AnonymousLocalSender => {
                "550 5.7.1 Anonymous client does not have permissions to send as this sender"
            }
            ReplyKind::InvalidRecipient => "501 5.1.3 Bad recipient address syntax",
            ReplyKind::DirectoryUnavailable => "451 4.4.3 Directory server unavailable, try again later",
            ReplyKind::NoListener => "451 4.3.0 No policy for this listener, try again later",
        }
    }
}

/// A validated reply: `code SP enhanced SP text`; `{rcpt}` in the text is
/// replaced by `<recipient>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyTemplate {
    pub code: u16,
    pub enhanced: String,
    pub text: String,
}

impl ReplyTemplate {
    pub fn parse(s: &str) -> Result<ReplyTemplate, String> {
        let mut parts = s.splitn(3, ' ');
        let code = parts.next().unwrap_or_default();
        let enhanced = parts.next().unwrap_or_default();
        let text = parts.next().unwrap_or_default().trim();
        let code_ok =
            code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit()) && matches!(&code[..1], "4" | "5");
        if !code_ok {
            return Err(format!("{s:?}: reply code must be 4xx or 5xx"));
        }
        let fields: Vec<&str> = enhanced.split('.').collect();
        let enhanced_ok = fields.len() == 3
            && fields
                .iter()
                .all(|f| !f.is_empty() && f.len() <= 3 && f.bytes().all(|b| b.is_ascii_digit()));
        if !enhanced_ok {
            return Err(format!(
                "{s:?}: enhanced status code (like 5.7.1) missing after the reply code"
            ));
        }
        if fields[0] != &code[..1] {
            return Err(format!(
                "{s:?}: enhanced code class {} differs from reply class {}",
                fields[0],
                &code[..1]
            ));
        }
        if text.is_empty() {
            return Err(format!("{s:?}: reply text is empty"));
        }
        if text.chars().any(|c| c.is_control()) {
            return Err(format!("{s:?}: reply text must be one line"));
        }
        Ok(ReplyTemplate {
            code: code.parse().unwrap_or(451),
            enhanced: enhanced.to_string(),
            text: text.to_string(),
        })
    }

    pub fn is_temporary(&self) -> bool {
        self.code < 500
    }

    /// The reply as the MTA should send it, for recipient `rcpt`.
    pub fn render(&self, rcpt: Option<&str>) -> String {
        let text = match rcpt {
            Some(r) => self.text.replace("{rcpt}", &format!("<{r}>")),
            None => self.text.replace("{rcpt}", "<>"),
        };
        format!("{} {} {}", self.code, self.enhanced, text)
    }

    /// The reply as a policy-delegation answer: Postfix writes
    /// `<address>: Recipient address rejected: ` (or `Sender`) before the
    /// text itself, so a leading `{rcpt}:` of the template is left out
    /// rather than said twice.
    pub fn action(&self, rcpt: Option<&str>) -> String {
        let text = self
            .text
            .strip_prefix("{rcpt}")
            .map_or(self.text.as_str(), |t| t.trim_start_matches(':').trim_start());
        let text = match rcpt {
            Some(r) => text.replace("{rcpt}", &format!("<{r}>")),
            None => text.replace("{rcpt}", "<>"),
        };
        action_text(&format!("{} {} {}", self.code, self.enhanced, text))
    }

    /// Wire form for a `y` packet.
    pub fn wire(&self, rcpt: Option<&str>) -> Bytes {
        Bytes::from(sanitize(&self.render(rcpt)))
    }
}

/// Make a reply line safe for both MTAs' milter interfaces.
pub fn sanitize(line: &str) -> String {
    one_line(line, true)
}

/// A reply line as the text of a policy-delegation `action=`: one line, as
/// long as the milter's, `%` as it is (Postfix does not format it).
pub fn action_text(line: &str) -> String {
    one_line(line, false)
}

fn one_line(line: &str, double_percent: bool) -> String {
    let mut out = String::with_capacity(line.len() + 4);
    for c in line.chars() {
        if c.is_control() {
            continue;
        }
        let doubled = double_percent && c == '%';
        if out.len() + c.len_utf8() + usize::from(doubled) > MAX_REPLY_LINE {
            break;
        }
        if doubled {
            out.push('%');
        }
        out.push(c);
    }
    out
}

/// All reply templates, indexed by kind.
#[derive(Debug, Clone)]
pub struct Replies {
    templates: Vec<ReplyTemplate>,
}

impl Default for Replies {
    fn default() -> Self {
        Replies {
            templates: ReplyKind::ALL
                .iter()
                .map(|k| ReplyTemplate::parse(k.default_text()).expect("built-in reply is valid"))
                .collect(),
        }
    }
}

impl Replies {
    pub fn set(&mut self, kind: ReplyKind, template: ReplyTemplate) {
        self.templates[kind as usize] = template;
    }

    pub fn get(&self, kind: ReplyKind) -> &ReplyTemplate {
        &self.templates[kind as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_indexed() {
        let r = Replies::default();
        for k in ReplyKind::ALL {
            assert_eq!(
                r.get(k).render(Some("x@y")).split(' ').next(),
                k.default_text().split(' ').next()
            );
        }
        assert_eq!(
            r.get(ReplyKind::RelayAnonymous).render(Some("bob@example.net")),
            "550 5.7.1 <bob@example.net>: Unable to relay"
        );
    }

    #[test]
    fn invalid_templates() {
        for bad in [
            "250 2.0.0 ok",
            "550 4.7.1 class mismatch",
            "550 text without enhanced code",
            "550 5.7.1",
            "55 5.7.1 short code",
            "550 5.7.1 two\nlines",
            "",
        ] {
            assert!(ReplyTemplate::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn network_values_are_made_safe() {
        let t = ReplyTemplate::parse("550 5.7.1 {rcpt}: Unable to relay").unwrap();
        let wire = t.wire(Some("100%@evil\r\n250 ok"));
        let s = std::str::from_utf8(&wire).unwrap();
        assert_eq!(s, "550 5.7.1 <100%%@evil250 ok>: Unable to relay");
        let long = "a".repeat(5000);
        assert!(t.wire(Some(&long)).len() <= MAX_REPLY_LINE);
        assert!(!t.wire(Some("nul\0byte")).contains(&0u8));
        // The policy-delegation form: one line, '%' kept as it is, the
        // address left to Postfix's own prefix.
        assert_eq!(
            t.action(Some("100%@evil\n\naction=DUNNO")),
            "550 5.7.1 Unable to relay"
        );
        let inner = ReplyTemplate::parse("550 5.7.1 Mail for {rcpt} needs a login").unwrap();
        let action = inner.action(Some("100%@evil\n\naction=DUNNO"));
        assert_eq!(action, "550 5.7.1 Mail for <100%@evilaction=DUNNO> needs a login");
        assert!(inner.action(Some(&long)).len() <= MAX_REPLY_LINE);
    }
}
