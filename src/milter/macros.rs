//! Macro storage with libmilter's semantics.
//!
//! One slot per stage; a `D` packet replaces its stage's slot; the commands
//! C/H/M/R clear the slots of later stages; a lookup searches from the latest
//! stage back to CONNECT, so `{daemon_name}` from CONNECT and `{auth_authen}`
//! from MAIL are both visible at RCPT. ABORT clears nothing: the next MAIL's
//! macros overwrite the MAIL slot.

use bytes::Bytes;

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

#[derive(Debug, Default, Clone)]
pub struct MacroStore {
    slots: [Vec<(Bytes, Bytes)>; 7],
}

impl MacroStore {
    /// Store the macros of one `D` packet. Stages without a slot (U, L, B) are
    /// ignored, as libmilter does.
    pub fn set(&mut self, stage: u8, macros: Vec<(Bytes, Bytes)>) {
        if let Some(i) = slot(stage) {
            self.slots[i] = macros;
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
        self.slots.iter().flatten().map(|(n, v)| n.len() + v.len()).sum()
    }

    pub fn clear(&mut self) {
        for s in &mut self.slots {
            s.clear();
        }
    }

    /// Value of macro `name` (with or without braces), latest stage first.
    pub fn get(&self, name: &str) -> Option<&Bytes> {
        let wanted = bare(name.as_bytes());
        self.slots
            .iter()
            .rev()
            .flat_map(|s| s.iter())
            .find(|(n, _)| bare(n) == wanted)
            .map(|(_, v)| v)
    }

    /// Value as text; non-UTF-8 bytes are replaced (values are opaque bytes on the wire).
    pub fn get_str(&self, name: &str) -> Option<std::borrow::Cow<'_, str>> {
        self.get(name).map(|v| String::from_utf8_lossy(v))
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
        m.set(b'M', vec![]);
        assert!(
            m.get("auth_authen").is_none(),
            "second MAIL without AUTH is anonymous"
        );
    }
}
