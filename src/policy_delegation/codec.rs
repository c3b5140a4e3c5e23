//! Postfix's SMTPD access policy protocol, bytes ⇄ frames, nothing else.
//!
//! A request is `name=value` lines, each ended by a newline, and an empty
//! line; an answer is `action=...` and an empty line. Values are not
//! escaped (Postfix never sends a newline inside one). A request is bounded
//! in bytes and attributes; a line that is not `name=value`, a name given
//! twice, or an empty request is a protocol error: the connection is closed
//! and Postfix applies `smtpd_policy_service_default_action`.

use bytes::BytesMut;

/// Bounds on one request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes of one request, its lines and the empty line included.
    pub max_request_bytes: usize,
    /// Attributes of one request (Postfix 3.9 sends about 35).
    pub max_attributes: usize,
}

/// One request: its text and where each attribute is in it, in the order
/// sent (one allocation for the text, one for the index: Postfix sends
/// some 35 attributes per question).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    text: String,
    /// Per attribute: where its name starts, where its `=` is, where its
    /// value ends.
    spans: Vec<(usize, usize, usize)>,
}

impl Request {
    fn attributes(&self) -> impl Iterator<Item = (&str, &str)> {
        self.spans
            .iter()
            .map(|&(start, eq, end)| (&self.text[start..eq], &self.text[eq + 1..end]))
    }

    /// The value of attribute `name`, when sent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.attributes().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The value of `name`, `None` when absent or empty (Postfix sends
    /// every attribute it knows, empty when it has no value).
    pub fn non_empty(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Build a request (tests and clients).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Request {
        let mut r = Request::default();
        for (n, v) in pairs {
            let start = r.text.len();
            r.text.push_str(n);
            let eq = r.text.len();
            r.text.push('=');
            r.text.push_str(v);
            r.spans.push((start, eq, r.text.len()));
            r.text.push('\n');
        }
        r
    }

    /// Wire form of this request (tests and clients).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.text.len() + 1);
        for (n, v) in self.attributes() {
            out.extend_from_slice(n.as_bytes());
            out.push(b'=');
            out.extend_from_slice(v.as_bytes());
            out.push(b'\n');
        }
        out.push(b'\n');
        out
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("request longer than {0} bytes")]
    TooLong(usize),
    #[error("request has more than {0} attributes")]
    TooManyAttributes(usize),
    #[error("line {0} of the request is not name=value")]
    NotAnAttribute(usize),
    #[error("attribute {0:?} given twice")]
    Duplicate(String),
    #[error("empty request")]
    Empty,
}

/// Finds requests in a growing buffer. It remembers how far it has looked,
/// so a request that arrives a byte at a time is scanned once, not once per
/// byte.
#[derive(Debug, Default)]
pub struct Decoder {
    /// Bytes of the buffer already scanned for newlines.
    scanned: usize,
    /// Where the line being scanned starts.
    line_start: usize,
    /// Complete attribute lines so far.
    lines: usize,
}

impl Decoder {
    /// Take one complete request off the front of `buf`, if there is one.
    pub fn decode(&mut self, buf: &mut BytesMut, limits: &Limits) -> Result<Option<Request>, CodecError> {
        while let Some(at) = buf[self.scanned..].iter().position(|&b| b == b'\n') {
            let newline = self.scanned + at;
            let line = trim_cr(&buf[self.line_start..newline]);
            self.scanned = newline + 1;
            if newline + 1 > limits.max_request_bytes {
                return Err(CodecError::TooLong(limits.max_request_bytes));
            }
            if !line.is_empty() {
                self.lines += 1;
                if self.lines > limits.max_attributes {
                    return Err(CodecError::TooManyAttributes(limits.max_attributes));
                }
                self.line_start = self.scanned;
                continue;
            }
            // The empty line: the request is complete.
            let frame = buf.split_to(newline + 1);
            *self = Decoder::default();
            return parse(&frame).map(Some);
        }
        self.scanned = buf.len();
        if buf.len() > limits.max_request_bytes {
            return Err(CodecError::TooLong(limits.max_request_bytes));
        }
        Ok(None)
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The attributes of one complete request (its final empty line included).
/// As the milter path reads its arguments, invalid UTF-8 becomes U+FFFD,
/// which names no user, group or list.
fn parse(frame: &[u8]) -> Result<Request, CodecError> {
    let text = String::from_utf8_lossy(frame).into_owned();
    let mut spans: Vec<(usize, usize, usize)> = Vec::new();
    let mut start = 0;
    for (number, raw) in text.split_inclusive('\n').enumerate() {
        let line_start = start;
        start += raw.len();
        let line = raw.strip_suffix('\n').unwrap_or(raw);
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let eq = match line.bytes().position(|b| b == b'=') {
            Some(i) if i > 0 && line.as_bytes()[..i].iter().all(|&b| is_name_byte(b)) => i,
            _ => return Err(CodecError::NotAnAttribute(number + 1)),
        };
        let name = &line[..eq];
        if spans.iter().any(|&(s, e, _)| &text[s..e] == name) {
            return Err(CodecError::Duplicate(name.to_string()));
        }
        spans.push((line_start, line_start + eq, line_start + line.len()));
    }
    if spans.is_empty() {
        return Err(CodecError::Empty);
    }
    Ok(Request { text, spans })
}

/// Postfix's attribute names: lower case, digits, `_` (and `-` in some
/// `ccert_` forks).
fn is_name_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
}

/// The answer `action=TEXT` and the empty line. `text` is one line already
/// (see [`crate::policy::reply::ReplyTemplate::action`]).
pub fn encode_action(text: &str, out: &mut BytesMut) {
    out.extend_from_slice(b"action=");
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"\n\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_request_bytes: 256,
        max_attributes: 8,
    };

    fn decode_all(input: &[u8]) -> Result<Vec<Request>, CodecError> {
        let mut buf = BytesMut::from(input);
        let mut d = Decoder::default();
        let mut out = Vec::new();
        while let Some(r) = d.decode(&mut buf, &LIMITS)? {
            out.push(r);
        }
        Ok(out)
    }

    #[test]
    fn requests_end_at_the_empty_line() {
        let reqs =
            decode_all(b"request=smtpd_access_policy\nsender=a@b\nrecipient=\n\nrequest=x\n\nrest").unwrap();
        assert_eq!(reqs.len(), 2);
        assert_eq!(reqs[0].get("sender"), Some("a@b"));
        assert_eq!(reqs[0].get("recipient"), Some(""));
        assert_eq!(reqs[0].non_empty("recipient"), None);
        assert_eq!(reqs[1].get("request"), Some("x"));
        // A value may hold '=' and blanks.
        let r = decode_all(b"ccert_subject=CN=a b, O=c\r\n\r\n").unwrap();
        assert_eq!(r[0].get("ccert_subject"), Some("CN=a b, O=c"));
    }

    #[test]
    fn byte_at_a_time_is_the_same_request() {
        let wire = Request::from_pairs([("request", "smtpd_access_policy"), ("recipient", "x@y")]).encode();
        let mut buf = BytesMut::new();
        let mut d = Decoder::default();
        let mut got = None;
        for (i, b) in wire.iter().enumerate() {
            buf.extend_from_slice(&[*b]);
            got = d.decode(&mut buf, &LIMITS).unwrap();
            assert_eq!(got.is_some(), i == wire.len() - 1);
        }
        assert_eq!(got.unwrap().get("recipient"), Some("x@y"));
        assert!(buf.is_empty());
    }

    #[test]
    fn malformed_requests_are_errors() {
        assert_eq!(decode_all(b"garbage\n\n"), Err(CodecError::NotAnAttribute(1)));
        assert_eq!(decode_all(b"a=1\n=2\n\n"), Err(CodecError::NotAnAttribute(2)));
        assert_eq!(decode_all(b"A=1\n\n"), Err(CodecError::NotAnAttribute(1)));
        assert_eq!(
            decode_all(b"recipient=a\nrecipient=b\n\n"),
            Err(CodecError::Duplicate("recipient".into()))
        );
        assert_eq!(decode_all(b"\n"), Err(CodecError::Empty));
    }

    #[test]
    fn bounds_hold_before_the_request_ends() {
        // One endless line: refused once over the bound, without a newline.
        let long = vec![b'a'; 300];
        assert_eq!(decode_all(&long), Err(CodecError::TooLong(256)));
        // Many short lines.
        let many = b"a=1\n".repeat(9);
        assert_eq!(decode_all(&many), Err(CodecError::TooManyAttributes(8)));
        // Exactly at the bound is fine.
        let mut exact = b"a=".to_vec();
        exact.extend(vec![b'x'; 256 - 4]);
        exact.extend_from_slice(b"\n\n");
        assert_eq!(exact.len(), 256);
        assert_eq!(decode_all(&exact).unwrap().len(), 1);
    }

    #[test]
    fn answers() {
        let mut out = BytesMut::new();
        encode_action("DUNNO", &mut out);
        assert_eq!(&out[..], b"action=DUNNO\n\n");
    }
}
