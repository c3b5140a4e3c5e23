//! Distinguished names as gatehouse compares them. Rules name a group by
//! its name or by its DN, and the two are never confused: a group whose
//! name happens to be spelled like another group's DN is not that group.

use std::borrow::Cow;

/// Whether a rule's group reference is a DN (`cn=Relay,ou=groups,...`)
/// rather than a group name: an `=` and an RDN separator.
pub fn is_dn_reference(reference: &str) -> bool {
    reference.contains('=') && reference.contains(',')
}

/// A DN as compared here: lower case, no blanks around the `,` and `=` that
/// separate RDNs and attribute from value (servers return the spelling they
/// store; memberOf values and change notices may differ in exactly that),
/// escaped characters (`\,` `\ `) kept as they are, and uniqueMember's
/// optional `#'0101'B` UID dropped (it is not part of the DN). Hex escapes
/// (`\2C` for `\,`) are not decoded: the two spellings compare unequal, so
/// a group named one way is never taken for a group named the other.
pub fn dn_key(dn: &str) -> Cow<'_, str> {
    let dn = match dn.rfind("#'") {
        Some(i) if dn.ends_with("'B") => &dn[..i],
        _ => dn,
    };
    if !dn.contains(' ') && !dn.chars().any(char::is_uppercase) {
        return Cow::Borrowed(dn);
    }
    let mut out = String::with_capacity(dn.len());
    // Blanks are written only once something other than a separator
    // follows them, and never right after a separator.
    let (mut blanks, mut after_separator, mut escaped) = (0, true, false);
    for c in dn.chars() {
        if !escaped && matches!(c, ',' | '=' | '+') {
            out.push(c);
            (blanks, after_separator) = (0, true);
        } else if !escaped && c == ' ' {
            blanks += usize::from(!after_separator);
        } else {
            out.extend(std::iter::repeat_n(' ', blanks));
            out.extend(c.to_lowercase());
            (blanks, after_separator) = (0, false);
            escaped = !escaped && c == '\\';
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dn_keys_ignore_case_and_blanks_around_separators() {
        assert_eq!(
            dn_key("cn=relay,ou=groups,dc=example,dc=com"),
            "cn=relay,ou=groups,dc=example,dc=com"
        );
        assert_eq!(
            dn_key("CN=Relay, OU=Groups,DC=Example, DC=com"),
            "cn=relay,ou=groups,dc=example,dc=com"
        );
        assert_eq!(dn_key("cn = Mail Senders , dc=x"), "cn=mail senders,dc=x");
        assert_eq!(
            dn_key("uid=bob,ou=people,dc=example,dc=com#'0101'B"),
            "uid=bob,ou=people,dc=example,dc=com"
        );
    }

    #[test]
    fn escaped_separators_and_blanks_stay_what_they_are() {
        // "Smith, John" and "Smith,John" are two different names.
        assert_ne!(dn_key("cn=Smith\\, John,dc=x"), dn_key("cn=Smith\\,John,dc=x"));
        assert_eq!(dn_key("cn=Smith\\, John,dc=x"), "cn=smith\\, john,dc=x");
        // An escaped trailing blank is part of the value.
        assert_ne!(dn_key("cn=a\\ ,dc=x"), dn_key("cn=a,dc=x"));
        // An escaped comma is not an RDN separator.
        assert_ne!(dn_key("cn=a\\,dc=x"), dn_key("cn=a,dc=x"));
    }

    #[test]
    fn a_dn_reference_has_an_equals_sign_and_a_comma() {
        assert!(is_dn_reference("cn=Relay,ou=groups,dc=example,dc=com"));
        assert!(!is_dn_reference("Mail Senders"));
        assert!(!is_dn_reference("a=b"));
    }
}
