//! Constants of the milter wire protocol (Sendmail `mfdef.h`), versions 2–6.
//!
//! Names follow libmilter so that a reader can grep the Sendmail and Postfix
//! sources for the same symbol.

/// Size of the length prefix of every packet.
pub const LEN_BYTES: usize = 4;
/// Fixed part of an OPTNEG packet: version, actions, protocol.
pub const OPTNEG_LEN: usize = 12;
/// Highest protocol version gatehouse speaks.
pub const MAX_VERSION: u32 = 6;
/// Lowest protocol version gatehouse accepts (Sendmail 8.13 / old Postfix).
pub const MIN_VERSION: u32 = 2;
/// libmilter's default payload cap; the configured cap may not go below it.
pub const MILTER_MAX_DATA_SIZE: usize = 65535;
/// Longest text libmilter allows in one reply line.
pub const MAX_REPLY_LINE: usize = 980;

/// MTA → milter command letters (`SMFIC_*`).
pub mod cmd {
    pub const ABORT: u8 = b'A';
    pub const BODY: u8 = b'B';
    pub const CONNECT: u8 = b'C';
    pub const MACRO: u8 = b'D';
    pub const BODYEOB: u8 = b'E';
    pub const HELO: u8 = b'H';
    pub const QUIT_NC: u8 = b'K';
    pub const HEADER: u8 = b'L';
    pub const MAIL: u8 = b'M';
    pub const EOH: u8 = b'N';
    pub const OPTNEG: u8 = b'O';
    pub const QUIT: u8 = b'Q';
    pub const RCPT: u8 = b'R';
    pub const DATA: u8 = b'T';
    pub const UNKNOWN: u8 = b'U';
}

/// Milter → MTA reply letters (`SMFIR_*`).
pub mod reply {
    pub const ADDRCPT: u8 = b'+';
    pub const DELRCPT: u8 = b'-';
    pub const ADDRCPT_PAR: u8 = b'2';
    pub const SHUTDOWN: u8 = b'4';
    pub const ACCEPT: u8 = b'a';
    pub const REPLBODY: u8 = b'b';
    pub const CONTINUE: u8 = b'c';
    pub const DISCARD: u8 = b'd';
    pub const CHGFROM: u8 = b'e';
    pub const CONN_FAIL: u8 = b'f';
    pub const ADDHEADER: u8 = b'h';
    pub const INSHEADER: u8 = b'i';
    pub const SETSYMLIST: u8 = b'l';
    pub const CHGHEADER: u8 = b'm';
    pub const PROGRESS: u8 = b'p';
    pub const QUARANTINE: u8 = b'q';
    pub const REJECT: u8 = b'r';
    pub const SKIP: u8 = b's';
    pub const TEMPFAIL: u8 = b't';
    pub const REPLYCODE: u8 = b'y';
    pub const OPTNEG: u8 = b'O';
}

/// Action bits (`SMFIF_*`): modifications the milter may make at end of message.
pub mod action {
    pub const ADDHDRS: u32 = 0x001;
    pub const CHGBODY: u32 = 0x002;
    pub const ADDRCPT: u32 = 0x004;
    pub const DELRCPT: u32 = 0x008;
    pub const CHGHDRS: u32 = 0x010;
    pub const QUARANTINE: u32 = 0x020;
    pub const CHGFROM: u32 = 0x040;
    pub const ADDRCPT_PAR: u32 = 0x080;
    pub const SETSYMLIST: u32 = 0x100;
    pub const ALL: u32 = 0x1FF;
}

/// Protocol bits (`SMFIP_*`): events the MTA leaves out, and stages it expects no reply for.
pub mod proto {
    pub const NOCONNECT: u32 = 0x0000_0001;
    pub const NOHELO: u32 = 0x0000_0002;
    pub const NOMAIL: u32 = 0x0000_0004;
    pub const NORCPT: u32 = 0x0000_0008;
    pub const NOBODY: u32 = 0x0000_0010;
    pub const NOHDRS: u32 = 0x0000_0020;
    pub const NOEOH: u32 = 0x0000_0040;
    pub const NR_HDR: u32 = 0x0000_0080;
    pub const NOUNKNOWN: u32 = 0x0000_0100;
    pub const NODATA: u32 = 0x0000_0200;
    pub const SKIP: u32 = 0x0000_0400;
    pub const RCPT_REJ: u32 = 0x0000_0800;
    pub const NR_CONN: u32 = 0x0000_1000;
    pub const NR_HELO: u32 = 0x0000_2000;
    pub const NR_MAIL: u32 = 0x0000_4000;
    pub const NR_RCPT: u32 = 0x0000_8000;
    pub const NR_DATA: u32 = 0x0001_0000;
    pub const NR_UNKN: u32 = 0x0002_0000;
    pub const NR_EOH: u32 = 0x0004_0000;
    pub const NR_BODY: u32 = 0x0008_0000;
    pub const HDR_LEADSPC: u32 = 0x0010_0000;
    /// Every bit defined by protocol version 6.
    pub const ALL_V6: u32 = 0x001F_FFFF;
}

/// Macro stage indexes (`SMFIM_*`) used in the macro lists of the OPTNEG reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum MacroStage {
    Connect = 0,
    Helo = 1,
    EnvFrom = 2,
    EnvRcpt = 3,
    Data = 4,
    Eom = 5,
    Eoh = 6,
}
