//! Macro storage with libmilter's semantics.
//!
//! One slot per stage; a `D` packet replaces its stage's slot; the commands
//! C/H/M/R clear the slots of later stages; a lookup searches from the latest
//! stage back to CONNECT, so `{daemon_name}` from CONNECT and `{auth_authen}`
//! from MAIL are both visible at RCPT. ABORT clears nothing: the next MAIL's
//! macros overwrite the MAIL slot.

use super::protocol::cmd;

/// Stage letters in protocol order; the slot index is the position here.
const STAGES: [u8; 7] = [
    cmd::CONNECT,
    cmd::HELO,
    cmd::MAIL,
    cmd::RCPT,
    cmd::DATA,
    cmd::EOH,
    cmd::BODYEOB,
];

fn slot(stage: u8) -> Option<usize> {
    STAGES.iter().position(|&s| s == stage)
}

/// `x` and `{x}` name the same macro.
pub(crate) fn bare(name: &[u8]) -> &[u8] {
    match name {
        [b'{', inner @ .., b'}'] => inner,
        other => other,
    }
}

/// The macros one stage's `D` packet left: each pair as a 4-byte name
/// length, the name, a 4-byte value length and the value, in one buffer
/// that the next packet of the stage reuses (a transaction stores its
/// macros without allocating).
#[derive(Debug, Default, Clone)]
struct Slot {
    buf: Vec<u8>,
    pairs: usize,
}

/// A slot that held more than this gives its memory back when cleared:
/// an idle connection keeps only a small buffer per stage.
const KEPT_SLOT_CAPACITY: usize = 1024;

impl Slot {
    fn clear(&mut self) {
        if self.buf.capacity() > KEPT_SLOT_CAPACITY {
            self.buf = Vec::new();
        } else {
            self.buf.clear();
        }
        self.pairs = 0;
    }

    /// One pair. (A part over 4 GiB cannot come from the wire, whose
    /// packets are at most 64 MiB; it would not be kept.)
    fn push(&mut self, name: &[u8], value: &[u8]) {
        let (Ok(n), Ok(v)) = (u32::try_from(name.len()), u32::try_from(value.len())) else {
            return;
        };
        for (len, part) in [(n, name), (v, value)] {
            self.buf.extend_from_slice(&len.to_le_bytes());
            self.buf.extend_from_slice(part);
        }
        self.pairs += 1;
    }

    fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let mut rest = &self.buf[..];
        let mut take = move || {
            let (len, tail) = rest.split_first_chunk::<4>()?;
            let (part, tail) = tail.split_at_checked(u32::from_le_bytes(*len) as usize)?;
            rest = tail;
            Some(part)
        };
        std::iter::from_fn(move || Some((take()?, take()?)))
    }

    /// Bytes of names and values, without the lengths.
    fn bytes(&self) -> usize {
        self.buf.len() - 8 * self.pairs
    }
}

#[derive(Debug, Default, Clone)]
pub struct MacroStore {
    slots: [Slot; 7],
}

impl MacroStore {
    /// Store the macros of one `D` packet, replacing the stage's earlier
    /// ones. Stages without a slot (U, L, B) are ignored, as libmilter does.
    pub fn set<N: AsRef<[u8]>, V: AsRef<[u8]>>(
        &mut self,
        stage: u8,
        macros: impl IntoIterator<Item = (N, V)>,
    ) {
        if let Some(i) = slot(stage) {
            let slot = &mut self.slots[i];
            slot.buf.clear();
            slot.pairs = 0;
            for (n, v) in macros {
                slot.push(n.as_ref(), v.as_ref());
            }
            // What doubling left beyond a large stage's pairs is given back:
            // a connection holds what it was sent, not twice that.
            if slot.buf.capacity() > KEPT_SLOT_CAPACITY {
                slot.buf.shrink_to_fit();
            }
        }
    }

    /// A command of `stage` arrived: macros of later stages belong to an
    /// earlier command and are dropped.
    pub fn clear_after(&mut self, stage: u8) {
        if let Some(i) = slot(stage) {
            for s in &mut self.slots[i + 1..] {
                s.clear();
            }
        }
    }

    /// Forget one stage's macros: a RCPT's `{rcpt_addr}` must never be
    /// read as the next recipient's when the MTA sends none for it.
    pub fn clear_stage(&mut self, stage: u8) {
        if let Some(i) = slot(stage) {
            self.slots[i].clear();
        }
    }

    /// Bytes of names and values held.
    pub fn bytes(&self) -> usize {
        self.slots.iter().map(Slot::bytes).sum()
    }

    pub fn clear(&mut self) {
        for s in &mut self.slots {
            s.clear();
        }
    }

    /// Value of macro `name` (with or without braces), latest stage first.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        let wanted = bare(name.as_bytes());
        self.slots
            .iter()
            .rev()
            .flat_map(|s| s.iter())
            // The first byte first: most names differ there, and a slice
            // comparison is a call to memcmp.
            .find(|(n, _)| {
                let n = bare(n);
                n.first() == wanted.first() && n == wanted
            })
            .map(|(_, v)| v)
    }

    /// Value as text; non-UTF-8 bytes are replaced (values are opaque bytes on the wire).
    pub fn get_str(&self, name: &str) -> Option<std::borrow::Cow<'_, str>> {
        self.get(name).map(String::from_utf8_lossy)
    }

    /// Names of all macros currently known, for diagnostics.
    pub fn names(&self) -> Vec<String> {
        self.slots
            .iter()
            .flat_map(|s| s.iter())
            .map(|(n, _)| String::from_utf8_lossy(n).into_owned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn pair(n: &'static str, v: &'static str) -> (Bytes, Bytes) {
        (Bytes::from_static(n.as_bytes()), Bytes::from_static(v.as_bytes()))
    }

    #[test]
    fn lookup_spans_stages_latest_first() {
        let mut m = MacroStore::default();
        m.set(
            b'C',
            vec![pair("{daemon_name}", "submission"), pair("i", "from-connect")],
        );
        m.set(b'M', vec![pair("{auth_authen}", "alice"), pair("i", "Q123")]);
        assert_eq!(m.get_str("daemon_name").as_deref(), Some("submission"));
        assert_eq!(m.get_str("{auth_authen}").as_deref(), Some("alice"));
        assert_eq!(m.get_str("i").as_deref(), Some("Q123"));
    }

    #[test]
    fn new_mail_clears_rcpt_macros_but_not_connect() {
        let mut m = MacroStore::default();
        m.set(b'C', vec![pair("j", "mx")]);
        m.set(b'R', vec![pair("{rcpt_addr}", "a@b")]);
        m.clear_after(b'M');
        assert!(m.get("rcpt_addr").is_none());
        assert!(m.get("j").is_some());
    }

    /// Replacing and clearing reuse a slot's buffer; a large one is given
    /// back; the byte count is names and values.
    #[test]
    fn slots_count_their_bytes_and_keep_only_small_buffers() {
        let mut m = MacroStore::default();
        m.set(b'M', vec![pair("{auth_authen}", "alice"), pair("i", "")]);
        assert_eq!(m.bytes(), "{auth_authen}alicei".len());
        assert_eq!(m.get("i"), Some(&b""[..]));
        m.set(b'M', [(b"x".as_slice(), vec![b'v'; 5000])]);
        assert_eq!((m.bytes(), m.get("x").map(<[u8]>::len)), (5001, Some(5000)));
        assert!(
            m.slots[2].buf.capacity() <= 5009 + 64,
            "held as sent, not doubled"
        );
        assert!(m.get("auth_authen").is_none());
        m.clear_after(b'H');
        assert_eq!(m.bytes(), 0);
        assert_eq!(m.slots[2].buf.capacity(), 0, "a large buffer is given back");
        m.set(b'M', vec![pair("a", "b")]);
        m.clear_stage(b'M');
        assert!(m.slots[2].buf.capacity() > 0, "a small one is kept");
    }

    #[test]
    fn unknown_stage_is_ignored() {
        let mut m = MacroStore::default();
        m.set(b'U', vec![pair("x", "y")]);
        m.set(b'B', vec![pair("x", "y")]);
        assert!(m.get("x").is_none());
    }

    #[test]
    fn replacing_a_stage_drops_its_old_values() {
        let mut m = MacroStore::default();
        m.set(b'M', vec![pair("{auth_authen}", "alice")]);
        m.set(b'M', Vec::<(&str, &str)>::new());
        assert!(
            m.get("auth_authen").is_none(),
            "second MAIL without AUTH is anonymous"
        );
    }
}
