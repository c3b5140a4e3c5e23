//! Distinguished names as gatehouse compares them. Rules name a group by
//! its name or by its DN, and the two are never confused: a group whose
//! name happens to be spelled like another group's DN is not that group.

use std::borrow::Cow;

/// Whether a rule's group reference is a DN (`cn=Relay,ou=groups,...`)
/// rather than a group name: an `=` and an RDN separator.
pub fn is_dn_reference(reference: &str) -> bool {
    reference.contains('=') && reference.contains(',')
}

/// A DN as compared here: lower case, no blanks around the `,` `=` `+`
/// that separate RDNs, attribute and value (servers return the spelling
/// they store; memberOf values and change notices may differ in exactly
/// that), every escape in one form (RFC 4514: `\2C` and `\,` are the same
/// character; a value's special characters stay escaped, an escaped blank
/// is a blank that counts), and uniqueMember's optional `#'0101'B` UID
/// dropped (it is not part of the DN).
pub fn dn_key(dn: &str) -> Cow<'_, str> {
    let dn = match dn.rfind("#'") {
        Some(i) if dn.ends_with("'B") => &dn[..i],
        _ => dn,
    };
    if dn
        .bytes()
        .all(|b| b.is_ascii() && !b.is_ascii_uppercase() && b != b' ' && b != b'\\')
    {
        return Cow::Borrowed(dn);
    }
    let bytes = dn.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    // Blanks are written only once a value's content follows them, and
    // never right after a separator.
    let (mut blanks, mut after_separator) = (0usize, true);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'\\' if i + 1 < bytes.len() => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                let (value, len) = match hex {
                    Some(v) => (v, 3),
                    None => (bytes[i + 1], 2),
                };
                push_content(&mut out, &mut blanks, &mut after_separator, value, true);
                i += len;
                continue;
            }
            b',' | b'=' | b'+' => {
                out.push(b);
                (blanks, after_separator) = (0, true);
            }
            b' ' => blanks += usize::from(!after_separator),
            _ => push_content(&mut out, &mut blanks, &mut after_separator, b, false),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).to_lowercase())
}

/// One byte of a value, after the blanks held back before it; a special
/// character that was escaped stays escaped (it is not a separator).
fn push_content(out: &mut Vec<u8>, blanks: &mut usize, after_separator: &mut bool, b: u8, escaped: bool) {
    out.extend(std::iter::repeat_n(b' ', *blanks));
    (*blanks, *after_separator) = (0, false);
    if escaped && b"\\,=+\"<>;#".contains(&b) {
        out.push(b'\\');
    }
    out.push(b);
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
    fn every_escape_of_a_character_is_one_key() {
        // RFC 4514: a character may be escaped by itself or in hex.
        assert_eq!(dn_key("cn=Smith\\2C John,dc=x"), dn_key("cn=Smith\\, John,dc=x"));
        assert_eq!(dn_key("cn=\\C3\\84rzte,dc=x"), dn_key("cn=Ärzte,dc=x"));
        assert_eq!(dn_key("cn=a\\ b,dc=x"), dn_key("cn=a b,dc=x"));
        assert_eq!(dn_key("cn=a\\2Bb,dc=x"), "cn=a\\+b,dc=x");
        // Title case letters are lowered too (not only "uppercase" ones).
        assert_eq!(dn_key("cn=ǅ,dc=x"), "cn=ǆ,dc=x");
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
