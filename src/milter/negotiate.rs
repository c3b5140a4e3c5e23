//! Option negotiation: ask the MTA for exactly what the policy needs.
//!
//! gatehouse decides at MAIL and RCPT and answers ACCEPT at DATA, so it asks the
//! MTA not to send HELO, headers, EOH, body or unknown commands, and not to wait
//! for a reply to CONNECT. Every bit requested is masked with the offer:
//! Sendmail treats a bit it did not offer as a fatal error.

use bytes::Bytes;

use super::codec::{OptNeg, Reply};
use super::protocol::{action, cmd, proto, MacroStage, MAX_VERSION, MIN_VERSION};

/// Macros requested per stage (v6 only), space-separated names.
#[derive(Debug, Clone, Default)]
pub struct MacroRequest {
    pub lists: Vec<(MacroStage, String)>,
}

/// Protocol bits gatehouse would like, before masking with the offer.
pub const WANTED_PROTOCOL: u32 = proto::NOHELO
    | proto::NOHDRS
    | proto::NOEOH
    | proto::NOBODY
    | proto::NOUNKNOWN
    | proto::NR_CONN
    | proto::NR_HELO
    | proto::NR_HDR
    | proto::NR_EOH
    | proto::NR_BODY
    | proto::NR_UNKN;

/// The outcome of negotiation: what both sides agreed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    pub version: u32,
    pub actions: u32,
    pub protocol: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NegotiationError {
    #[error("MTA offers milter protocol version {0}; gatehouse needs at least 2")]
    VersionTooOld(u32),
}

impl Negotiated {
    /// Whether the MTA waits for a reply to `command` under these options.
    pub fn expects_reply(&self, command: u8) -> bool {
        let no_reply_bit = match command {
            cmd::CONNECT => proto::NR_CONN,
            cmd::HELO => proto::NR_HELO,
            cmd::MAIL => proto::NR_MAIL,
            cmd::RCPT => proto::NR_RCPT,
            cmd::DATA => proto::NR_DATA,
            cmd::HEADER => proto::NR_HDR,
            cmd::EOH => proto::NR_EOH,
            cmd::BODY => proto::NR_BODY,
            cmd::UNKNOWN => proto::NR_UNKN,
            cmd::BODYEOB => return true,
            // OPTNEG is answered by negotiation itself; D, A, Q, K never get a reply.
            _ => return false,
        };
        // v2 has no replies to DATA or UNKNOWN (it has neither command); an MTA
        // that sends them anyway gets the benefit of the doubt and a reply.
        self.protocol & no_reply_bit == 0
    }

    /// Whether the MTA will send DATA, so that gatehouse can answer ACCEPT there
    /// and never see the message content.
    pub fn has_data_stage(&self) -> bool {
        self.version >= 4 && self.protocol & proto::NODATA == 0
    }
}

/// Answer an OPTNEG offer.
pub fn negotiate(offer: OptNeg, macros: &MacroRequest) -> Result<(Negotiated, Reply), NegotiationError> {
    if offer.version < MIN_VERSION {
        return Err(NegotiationError::VersionTooOld(offer.version));
    }
    let version = offer.version.min(MAX_VERSION);
    let send_lists = version >= 6 && offer.actions & action::SETSYMLIST != 0 && !macros.lists.is_empty();
    let actions = if send_lists { action::SETSYMLIST } else { 0 };
    let protocol = WANTED_PROTOCOL & offer.protocol;
    let negotiated = Negotiated {
        version,
        actions,
        protocol,
    };
    let lists = if send_lists {
        macros
            .lists
            .iter()
            .map(|(stage, names)| (*stage as u32, Bytes::from(names.clone())))
            .collect()
    } else {
        Vec::new()
    };
    let reply = Reply::OptNeg {
        negotiated: OptNeg {
            version,
            actions,
            protocol,
        },
        macros: lists,
    };
    Ok((negotiated, reply))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> MacroRequest {
        MacroRequest {
            lists: vec![(MacroStage::Connect, "{daemon_name}".into())],
        }
    }

    #[test]
    fn postfix_v6_full_offer() {
        let offer = OptNeg {
            version: 6,
            actions: 0x1FF,
            protocol: 0x1F_FFFF,
        };
        let (n, reply) = negotiate(offer, &request()).unwrap();
        assert_eq!(n.version, 6);
        assert_eq!(n.actions, action::SETSYMLIST);
        assert_eq!(n.protocol, WANTED_PROTOCOL);
        assert!(!n.expects_reply(cmd::CONNECT));
        assert!(n.expects_reply(cmd::MAIL));
        assert!(n.expects_reply(cmd::RCPT));
        assert!(n.expects_reply(cmd::DATA));
        assert!(n.has_data_stage());
        match reply {
            Reply::OptNeg { macros, .. } => assert_eq!(macros.len(), 1),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn sendmail_813_v2_offer() {
        let offer = OptNeg {
            version: 2,
            actions: 0x3F,
            protocol: 0x7F,
        };
        let (n, reply) = negotiate(offer, &request()).unwrap();
        assert_eq!(n.version, 2);
        assert_eq!(n.actions, 0, "no SETSYMLIST without v6");
        assert_eq!(n.protocol, WANTED_PROTOCOL & 0x7F);
        assert_eq!(n.protocol & !0x7F, 0, "never a bit that was not offered");
        assert!(n.expects_reply(cmd::CONNECT), "v2 has no NR_CONN");
        assert!(!n.has_data_stage());
        assert!(n.expects_reply(cmd::BODYEOB));
        match reply {
            Reply::OptNeg { macros, .. } => assert!(macros.is_empty()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn postfix_v4_has_data_but_no_macro_lists() {
        let offer = OptNeg {
            version: 4,
            actions: 0x1FF,
            protocol: 0x37F,
        };
        let (n, reply) = negotiate(offer, &request()).unwrap();
        assert_eq!(n.version, 4);
        assert!(n.has_data_stage());
        assert_eq!(n.actions, 0);
        assert!(matches!(reply, Reply::OptNeg { ref macros, .. } if macros.is_empty()));
    }

    #[test]
    fn higher_versions_are_answered_with_six() {
        let offer = OptNeg {
            version: 9,
            actions: 0x1FF,
            protocol: 0x1F_FFFF,
        };
        assert_eq!(negotiate(offer, &request()).unwrap().0.version, 6);
    }

    #[test]
    fn version_one_is_refused() {
        let offer = OptNeg {
            version: 1,
            actions: 0xF,
            protocol: 0x3F,
        };
        assert_eq!(
            negotiate(offer, &request()),
            Err(NegotiationError::VersionTooOld(1))
        );
    }

    #[test]
    fn nothing_offered_nothing_requested() {
        let offer = OptNeg {
            version: 6,
            actions: 0,
            protocol: 0,
        };
        let (n, _) = negotiate(offer, &request()).unwrap();
        assert_eq!((n.actions, n.protocol), (0, 0));
        assert!(n.expects_reply(cmd::CONNECT));
        assert!(n.expects_reply(cmd::HEADER));
    }
}
