//! Bytes ⇄ milter packets, both directions, nothing else.
//!
//! A packet is `u32 len` (big-endian, counting the command byte) + command byte +
//! payload. The decoders validate `len` before waiting for (or allocating) the
//! body, so a peer that announces 4 GiB costs us four bytes of buffer.
//!
//! Decoding is strict: a `str` field must end in exactly one NUL, an empty
//! command must have an empty payload. Field *contents* (addresses, macro
//! values) are kept as raw bytes: the MTA does not promise UTF-8.

use byteorder::{BigEndian, ByteOrder};
use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::protocol::{cmd, reply, LEN_BYTES, OPTNEG_LEN};

/// Why a packet could not be decoded. Every variant ends the milter session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("packet length 0 (no command byte)")]
    ZeroLength,
    #[error("packet length {len} exceeds the cap of {max} bytes")]
    TooLarge { len: u32, max: usize },
    #[error("unknown command byte 0x{0:02x}")]
    UnknownCommand(u8),
    #[error("malformed '{}' packet: {reason}", char::from(*.command))]
    Malformed { command: u8, reason: &'static str },
}

fn malformed(command: u8, reason: &'static str) -> FrameError {
    FrameError::Malformed { command, reason }
}

/// The three numbers exchanged by option negotiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptNeg {
    pub version: u32,
    pub actions: u32,
    pub protocol: u32,
}

/// Address part of a CONNECT packet, by family byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectAddress {
    /// `U`: the MTA does not know (no port, no address on the wire).
    Unknown,
    /// `L`: Unix socket path (Sendmail) or client address text (Postfix).
    Unix { port: u16, path: Bytes },
    /// `4`: dotted quad.
    Inet { port: u16, address: Bytes },
    /// `6`: IPv6 text; Sendmail prefixes it with `IPv6:`.
    Inet6 { port: u16, address: Bytes },
}

/// One MTA → milter command (`SMFIC_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    OptNeg(OptNeg),
    /// `D`: macros for the stage whose command letter is `stage`. May carry no pairs.
    Macro {
        stage: u8,
        macros: Vec<(Bytes, Bytes)>,
    },
    Connect {
        hostname: Bytes,
        address: ConnectAddress,
    },
    Helo(Bytes),
    /// Sender then ESMTP parameters.
    Mail(Vec<Bytes>),
    /// Recipient then ESMTP parameters.
    Rcpt(Vec<Bytes>),
    Data,
    Header {
        name: Bytes,
        value: Bytes,
    },
    EndOfHeaders,
    Body(Bytes),
    /// End of message; libmilter accepts a final body chunk here.
    EndOfMessage(Bytes),
    Unknown(Bytes),
    Abort,
    Quit,
    /// `K`: end this SMTP session, keep the milter connection for the next one.
    QuitNewConnection,
}

impl Command {
    /// The command letter on the wire.
    pub fn letter(&self) -> u8 {
        match self {
            Command::OptNeg(_) => cmd::OPTNEG,
            Command::Macro { .. } => cmd::MACRO,
            Command::Connect { .. } => cmd::CONNECT,
            Command::Helo(_) => cmd::HELO,
            Command::Mail(_) => cmd::MAIL,
            Command::Rcpt(_) => cmd::RCPT,
            Command::Data => cmd::DATA,
            Command::Header { .. } => cmd::HEADER,
            Command::EndOfHeaders => cmd::EOH,
            Command::Body(_) => cmd::BODY,
            Command::EndOfMessage(_) => cmd::BODYEOB,
            Command::Unknown(_) => cmd::UNKNOWN,
            Command::Abort => cmd::ABORT,
            Command::Quit => cmd::QUIT,
            Command::QuitNewConnection => cmd::QUIT_NC,
        }
    }
}

/// One milter → MTA reply (`SMFIR_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Negotiation answer; `macros` are (SMFIM stage index, space-separated names).
    OptNeg {
        negotiated: OptNeg,
        macros: Vec<(u32, Bytes)>,
    },
    Continue,
    Accept,
    Reject,
    Tempfail,
    Discard,
    Skip,
    Progress,
    Shutdown,
    ConnFail,
    /// Full SMTP reply text, without NUL and without trailing CRLF.
    ReplyCode(Bytes),
    AddRcpt(Bytes),
    DelRcpt(Bytes),
    AddRcptPar {
        rcpt: Bytes,
        args: Option<Bytes>,
    },
    ChgFrom {
        sender: Bytes,
        args: Option<Bytes>,
    },
    AddHeader {
        name: Bytes,
        value: Bytes,
    },
    InsHeader {
        index: u32,
        name: Bytes,
        value: Bytes,
    },
    ChgHeader {
        index: u32,
        name: Bytes,
        value: Bytes,
    },
    ReplBody(Bytes),
    Quarantine(Bytes),
}

impl Reply {
    /// True for the replies that end the MTA's wait for a decision.
    pub fn is_decision(&self) -> bool {
        matches!(
            self,
            Reply::Continue
                | Reply::Accept
                | Reply::Reject
                | Reply::Tempfail
                | Reply::Discard
                | Reply::ReplyCode(_)
                | Reply::Shutdown
        )
    }
}

/// Split one complete packet off the front of `buf`.
///
/// `Ok(None)`: more bytes are needed. The length is validated from the first
/// four bytes, before the body has arrived.
pub fn split_packet(buf: &mut BytesMut, max_len: usize) -> Result<Option<(u8, Bytes)>, FrameError> {
    if buf.len() < LEN_BYTES {
        return Ok(None);
    }
    let len = BigEndian::read_u32(&buf[..LEN_BYTES]);
    if len == 0 {
        return Err(FrameError::ZeroLength);
    }
    if len as usize > max_len {
        return Err(FrameError::TooLarge { len, max: max_len });
    }
    let total = LEN_BYTES + len as usize;
    if buf.len() < total {
        return Ok(None);
    }
    buf.advance(LEN_BYTES);
    let mut packet = buf.split_to(len as usize).freeze();
    let letter = packet.get_u8();
    Ok(Some((letter, packet)))
}

/// How many more bytes the packet at the front of `buf` needs (0 if complete or
/// not yet knowable). Lets a reader reserve in bounded steps.
pub fn missing_bytes(buf: &[u8]) -> usize {
    if buf.len() < LEN_BYTES {
        return LEN_BYTES - buf.len();
    }
    let total = LEN_BYTES + BigEndian::read_u32(&buf[..LEN_BYTES]) as usize;
    total.saturating_sub(buf.len())
}

/// Decode one MTA → milter command from the front of `buf`.
pub fn decode_command(buf: &mut BytesMut, max_len: usize) -> Result<Option<Command>, FrameError> {
    match split_packet(buf, max_len)? {
        None => Ok(None),
        Some((letter, payload)) => parse_command(letter, payload).map(Some),
    }
}

/// Decode one milter → MTA reply from the front of `buf`.
pub fn decode_reply(buf: &mut BytesMut, max_len: usize) -> Result<Option<Reply>, FrameError> {
    match split_packet(buf, max_len)? {
        None => Ok(None),
        Some((letter, payload)) => parse_reply(letter, payload).map(Some),
    }
}

/// Parse the payload of an MTA → milter command.
pub fn parse_command(letter: u8, mut payload: Bytes) -> Result<Command, FrameError> {
    let command = match letter {
        cmd::OPTNEG => Command::OptNeg(parse_optneg(letter, &mut payload)?),
        cmd::MACRO => {
            if payload.is_empty() {
                return Err(malformed(letter, "no stage letter"));
            }
            // The session keeps only the macros it asked for, copied out of
            // the read buffer (session.rs); nothing here outlives it.
            let stage = payload.get_u8();
            let count = string_count(letter, &payload)?;
            if count % 2 != 0 {
                return Err(malformed(letter, "macro name without value"));
            }
            let mut macros = Vec::with_capacity(count / 2);
            while !payload.is_empty() {
                let name = take_str(letter, &mut payload, "string without NUL")?;
                let value = take_str(letter, &mut payload, "string without NUL")?;
                macros.push((name, value));
            }
            Command::Macro { stage, macros }
        }
        cmd::CONNECT => {
            let hostname = take_str(letter, &mut payload, "hostname without NUL")?;
            if payload.is_empty() {
                return Err(malformed(letter, "no address family"));
            }
            let family = payload.get_u8();
            let address = if family == b'U' {
                ConnectAddress::Unknown
            } else {
                if payload.len() < 2 {
                    return Err(malformed(letter, "no port"));
                }
                let port = payload.get_u16();
                let address = take_str(letter, &mut payload, "address without NUL")?;
                match family {
                    b'L' => ConnectAddress::Unix { port, path: address },
                    b'4' => ConnectAddress::Inet { port, address },
                    b'6' => ConnectAddress::Inet6 { port, address },
                    _ => return Err(malformed(letter, "unknown address family")),
                }
            };
            expect_end(letter, &payload)?;
            Command::Connect { hostname, address }
        }
        cmd::HELO => Command::Helo(single_str(letter, payload)?),
        cmd::MAIL => Command::Mail(non_empty_argv(letter, payload)?),
        cmd::RCPT => Command::Rcpt(non_empty_argv(letter, payload)?),
        cmd::DATA => empty(letter, &payload, Command::Data)?,
        cmd::HEADER => {
            let name = take_str(letter, &mut payload, "header name without NUL")?;
            let value = take_str(letter, &mut payload, "header value without NUL")?;
            expect_end(letter, &payload)?;
            Command::Header { name, value }
        }
        cmd::EOH => empty(letter, &payload, Command::EndOfHeaders)?,
        cmd::BODY => Command::Body(payload),
        cmd::BODYEOB => Command::EndOfMessage(payload),
        cmd::UNKNOWN => Command::Unknown(single_str(letter, payload)?),
        cmd::ABORT => empty(letter, &payload, Command::Abort)?,
        cmd::QUIT => empty(letter, &payload, Command::Quit)?,
        cmd::QUIT_NC => empty(letter, &payload, Command::QuitNewConnection)?,
        other => return Err(FrameError::UnknownCommand(other)),
    };
    Ok(command)
}

/// Parse the payload of a milter → MTA reply.
pub fn parse_reply(letter: u8, mut payload: Bytes) -> Result<Reply, FrameError> {
    let parsed = match letter {
        reply::OPTNEG => {
            let negotiated = parse_optneg(letter, &mut payload)?;
            let mut macros = Vec::new();
            while !payload.is_empty() {
                if payload.len() < 4 {
                    return Err(malformed(letter, "truncated macro stage"));
                }
                let stage = payload.get_u32();
                let names = take_str(letter, &mut payload, "macro list without NUL")?;
                macros.push((stage, names));
            }
            Reply::OptNeg { negotiated, macros }
        }
        reply::CONTINUE => empty(letter, &payload, Reply::Continue)?,
        reply::ACCEPT => empty(letter, &payload, Reply::Accept)?,
        reply::REJECT => empty(letter, &payload, Reply::Reject)?,
        reply::TEMPFAIL => empty(letter, &payload, Reply::Tempfail)?,
        reply::DISCARD => empty(letter, &payload, Reply::Discard)?,
        reply::SKIP => empty(letter, &payload, Reply::Skip)?,
        reply::PROGRESS => empty(letter, &payload, Reply::Progress)?,
        reply::SHUTDOWN => empty(letter, &payload, Reply::Shutdown)?,
        reply::CONN_FAIL => empty(letter, &payload, Reply::ConnFail)?,
        reply::REPLYCODE => Reply::ReplyCode(single_str(letter, payload)?),
        reply::ADDRCPT => Reply::AddRcpt(single_str(letter, payload)?),
        reply::DELRCPT => Reply::DelRcpt(single_str(letter, payload)?),
        reply::ADDRCPT_PAR => {
            let (first, second) = one_or_two_strs(letter, payload)?;
            Reply::AddRcptPar {
                rcpt: first,
                args: second,
            }
        }
        reply::CHGFROM => {
            let (first, second) = one_or_two_strs(letter, payload)?;
            Reply::ChgFrom {
                sender: first,
                args: second,
            }
        }
        reply::ADDHEADER => {
            let name = take_str(letter, &mut payload, "header name without NUL")?;
            let value = take_str(letter, &mut payload, "header value without NUL")?;
            expect_end(letter, &payload)?;
            Reply::AddHeader { name, value }
        }
        reply::INSHEADER | reply::CHGHEADER => {
            if payload.len() < 4 {
                return Err(malformed(letter, "no header index"));
            }
            let index = payload.get_u32();
            let name = take_str(letter, &mut payload, "header name without NUL")?;
            let value = take_str(letter, &mut payload, "header value without NUL")?;
            expect_end(letter, &payload)?;
            if letter == reply::INSHEADER {
                Reply::InsHeader { index, name, value }
            } else {
                Reply::ChgHeader { index, name, value }
            }
        }
        reply::REPLBODY => Reply::ReplBody(payload),
        reply::QUARANTINE => Reply::Quarantine(single_str(letter, payload)?),
        other => return Err(FrameError::UnknownCommand(other)),
    };
    Ok(parsed)
}

/// Append one MTA → milter command to `out`.
pub fn encode_command(command: &Command, out: &mut BytesMut) {
    let start = begin(out, command.letter());
    match command {
        Command::OptNeg(o) => put_optneg(out, o),
        Command::Macro { stage, macros } => {
            out.put_u8(*stage);
            for (name, value) in macros {
                put_str(out, name);
                put_str(out, value);
            }
        }
        Command::Connect { hostname, address } => {
            put_str(out, hostname);
            match address {
                ConnectAddress::Unknown => out.put_u8(b'U'),
                ConnectAddress::Unix { port, path } => put_family(out, b'L', *port, path),
                ConnectAddress::Inet { port, address } => put_family(out, b'4', *port, address),
                ConnectAddress::Inet6 { port, address } => put_family(out, b'6', *port, address),
            }
        }
        Command::Helo(s) | Command::Unknown(s) => put_str(out, s),
        Command::Mail(argv) | Command::Rcpt(argv) => {
            for arg in argv {
                put_str(out, arg);
            }
        }
        Command::Header { name, value } => {
            put_str(out, name);
            put_str(out, value);
        }
        Command::Body(raw) | Command::EndOfMessage(raw) => out.put_slice(raw),
        Command::Data
        | Command::EndOfHeaders
        | Command::Abort
        | Command::Quit
        | Command::QuitNewConnection => {}
    }
    finish(out, start);
}

/// Append one milter → MTA reply to `out`.
pub fn encode_reply(r: &Reply, out: &mut BytesMut) {
    let letter = match r {
        Reply::OptNeg { .. } => reply::OPTNEG,
        Reply::Continue => reply::CONTINUE,
        Reply::Accept => reply::ACCEPT,
        Reply::Reject => reply::REJECT,
        Reply::Tempfail => reply::TEMPFAIL,
        Reply::Discard => reply::DISCARD,
        Reply::Skip => reply::SKIP,
        Reply::Progress => reply::PROGRESS,
        Reply::Shutdown => reply::SHUTDOWN,
        Reply::ConnFail => reply::CONN_FAIL,
        Reply::ReplyCode(_) => reply::REPLYCODE,
        Reply::AddRcpt(_) => reply::ADDRCPT,
        Reply::DelRcpt(_) => reply::DELRCPT,
        Reply::AddRcptPar { .. } => reply::ADDRCPT_PAR,
        Reply::ChgFrom { .. } => reply::CHGFROM,
        Reply::AddHeader { .. } => reply::ADDHEADER,
        Reply::InsHeader { .. } => reply::INSHEADER,
        Reply::ChgHeader { .. } => reply::CHGHEADER,
        Reply::ReplBody(_) => reply::REPLBODY,
        Reply::Quarantine(_) => reply::QUARANTINE,
    };
    let start = begin(out, letter);
    match r {
        Reply::OptNeg { negotiated, macros } => {
            put_optneg(out, negotiated);
            for (stage, names) in macros {
                out.put_u32(*stage);
                put_str(out, names);
            }
        }
        Reply::ReplyCode(s) | Reply::AddRcpt(s) | Reply::DelRcpt(s) | Reply::Quarantine(s) => put_str(out, s),
        Reply::AddRcptPar { rcpt: first, args } | Reply::ChgFrom { sender: first, args } => {
            put_str(out, first);
            if let Some(args) = args {
                put_str(out, args);
            }
        }
        Reply::AddHeader { name, value } => {
            put_str(out, name);
            put_str(out, value);
        }
        Reply::InsHeader { index, name, value } | Reply::ChgHeader { index, name, value } => {
            out.put_u32(*index);
            put_str(out, name);
            put_str(out, value);
        }
        Reply::ReplBody(raw) => out.put_slice(raw),
        _ => {}
    }
    finish(out, start);
}

// --- helpers -------------------------------------------------------------

fn begin(out: &mut BytesMut, letter: u8) -> usize {
    let start = out.len();
    out.put_u32(0);
    out.put_u8(letter);
    start
}

fn finish(out: &mut BytesMut, start: usize) {
    let len = (out.len() - start - LEN_BYTES) as u32;
    BigEndian::write_u32(&mut out[start..start + LEN_BYTES], len);
}

fn put_str(out: &mut BytesMut, s: &[u8]) {
    out.put_slice(s);
    out.put_u8(0);
}

fn put_family(out: &mut BytesMut, family: u8, port: u16, address: &[u8]) {
    out.put_u8(family);
    out.put_u16(port);
    put_str(out, address);
}

fn put_optneg(out: &mut BytesMut, o: &OptNeg) {
    out.put_u32(o.version);
    out.put_u32(o.actions);
    out.put_u32(o.protocol);
}

fn parse_optneg(letter: u8, payload: &mut Bytes) -> Result<OptNeg, FrameError> {
    if payload.len() < OPTNEG_LEN {
        return Err(malformed(letter, "shorter than 12 bytes"));
    }
    Ok(OptNeg {
        version: payload.get_u32(),
        actions: payload.get_u32(),
        protocol: payload.get_u32(),
    })
}

/// Take one NUL-terminated string off the front of `payload`.
fn take_str(letter: u8, payload: &mut Bytes, reason: &'static str) -> Result<Bytes, FrameError> {
    match payload.iter().position(|&b| b == 0) {
        Some(nul) => {
            let s = payload.split_to(nul);
            payload.advance(1);
            Ok(s)
        }
        None => Err(malformed(letter, reason)),
    }
}

/// The whole payload is a sequence of NUL-terminated strings (possibly none).
/// NUL-terminated strings in one packet, at most [`MAX_STRINGS`]: each costs
/// a handle of 32 bytes, so an unbounded count would let one packet of empty
/// strings cost 16 times its size. Real MTAs send a few dozen.
pub const MAX_STRINGS: usize = 1024;

/// How many NUL-terminated strings `payload` holds, at most [`MAX_STRINGS`].
fn string_count(letter: u8, payload: &[u8]) -> Result<usize, FrameError> {
    let count = payload.iter().filter(|b| **b == 0).count();
    if count > MAX_STRINGS {
        return Err(malformed(
            letter,
            "more than 1024 strings (macros or arguments) in one packet",
        ));
    }
    Ok(count)
}

fn split_strings(letter: u8, mut payload: Bytes) -> Result<Vec<Bytes>, FrameError> {
    let mut out = Vec::with_capacity(string_count(letter, &payload)?);
    while !payload.is_empty() {
        out.push(take_str(letter, &mut payload, "string without NUL")?);
    }
    Ok(out)
}

fn non_empty_argv(letter: u8, payload: Bytes) -> Result<Vec<Bytes>, FrameError> {
    let argv = split_strings(letter, payload)?;
    if argv.is_empty() {
        return Err(malformed(letter, "no address"));
    }
    Ok(argv)
}

fn single_str(letter: u8, mut payload: Bytes) -> Result<Bytes, FrameError> {
    let s = take_str(letter, &mut payload, "missing NUL")?;
    expect_end(letter, &payload)?;
    Ok(s)
}

fn one_or_two_strs(letter: u8, mut payload: Bytes) -> Result<(Bytes, Option<Bytes>), FrameError> {
    let first = take_str(letter, &mut payload, "missing NUL")?;
    let second = if payload.is_empty() {
        None
    } else {
        Some(take_str(letter, &mut payload, "missing NUL")?)
    };
    expect_end(letter, &payload)?;
    Ok((first, second))
}

fn expect_end(letter: u8, payload: &Bytes) -> Result<(), FrameError> {
    if payload.is_empty() {
        Ok(())
    } else {
        Err(malformed(letter, "trailing bytes"))
    }
}

fn empty<T>(letter: u8, payload: &Bytes, value: T) -> Result<T, FrameError> {
    if payload.is_empty() {
        Ok(value)
    } else {
        Err(malformed(letter, "payload must be empty"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(letter: u8, payload: &[u8]) -> BytesMut {
        let mut b = BytesMut::new();
        b.put_u32(payload.len() as u32 + 1);
        b.put_u8(letter);
        b.put_slice(payload);
        b
    }

    #[test]
    fn partial_header_and_body_wait_for_more() {
        let full = packet(b'H', b"mx.example.net\0");
        for cut in 0..full.len() {
            let mut part = BytesMut::from(&full[..cut]);
            assert_eq!(decode_command(&mut part, 1 << 20), Ok(None), "cut at {cut}");
            assert_eq!(part.len(), cut, "nothing consumed");
        }
        let mut whole = full.clone();
        assert_eq!(
            decode_command(&mut whole, 1 << 20),
            Ok(Some(Command::Helo(Bytes::from_static(b"mx.example.net"))))
        );
        assert!(whole.is_empty());
    }

    #[test]
    fn zero_length_is_an_error() {
        let mut b = BytesMut::from(&[0u8, 0, 0, 0, b'C'][..]);
        assert_eq!(decode_command(&mut b, 1 << 20), Err(FrameError::ZeroLength));
    }

    #[test]
    fn oversize_is_refused_before_the_body_arrives() {
        let mut b = BytesMut::from(&[0xffu8, 0xff, 0xff, 0xff][..]);
        assert_eq!(
            decode_command(&mut b, 1 << 20),
            Err(FrameError::TooLarge {
                len: u32::MAX,
                max: 1 << 20
            })
        );
        assert!(b.capacity() < 1024, "no allocation for the announced size");
    }

    #[test]
    fn unknown_command_letter() {
        let mut b = packet(b'Z', b"");
        assert_eq!(
            decode_command(&mut b, 1024),
            Err(FrameError::UnknownCommand(b'Z'))
        );
    }

    #[test]
    fn optneg_shorter_than_twelve_bytes() {
        let mut b = packet(b'O', &[0, 0, 0, 6, 0, 0, 1, 0xff]);
        assert!(matches!(
            decode_command(&mut b, 1024),
            Err(FrameError::Malformed { command: b'O', .. })
        ));
    }

    #[test]
    fn missing_nul_in_each_string_command() {
        for letter in [b'H', b'M', b'R', b'U', b'L', b'C'] {
            let mut b = packet(letter, b"no-terminator");
            assert!(
                matches!(decode_command(&mut b, 1024), Err(FrameError::Malformed { .. })),
                "{}",
                letter as char
            );
        }
    }

    #[test]
    fn empty_mail_has_no_address() {
        let mut b = packet(b'M', b"");
        assert!(matches!(
            decode_command(&mut b, 1024),
            Err(FrameError::Malformed { .. })
        ));
    }

    #[test]
    fn postfix_non_smtpd_null_sender_is_one_empty_string() {
        let mut b = packet(b'M', b"\0");
        assert_eq!(
            decode_command(&mut b, 1024),
            Ok(Some(Command::Mail(vec![Bytes::new()])))
        );
    }

    #[test]
    fn empty_macro_packet_and_empty_values_are_normal() {
        let mut b = packet(b'D', b"C");
        assert_eq!(
            decode_command(&mut b, 1024),
            Ok(Some(Command::Macro {
                stage: b'C',
                macros: vec![]
            }))
        );
        let mut b = packet(b'D', b"M{auth_authen}\0\0");
        assert_eq!(
            decode_command(&mut b, 1024),
            Ok(Some(Command::Macro {
                stage: b'M',
                macros: vec![(Bytes::from_static(b"{auth_authen}"), Bytes::new())]
            }))
        );
    }

    #[test]
    fn macro_name_without_value_is_malformed() {
        let mut b = packet(b'D', b"Mi\0");
        assert!(matches!(
            decode_command(&mut b, 1024),
            Err(FrameError::Malformed { .. })
        ));
    }

    #[test]
    fn non_utf8_macro_values_survive() {
        let mut b = packet(b'D', b"M{auth_authen}\0\xff\xfe\0");
        match decode_command(&mut b, 1024).unwrap().unwrap() {
            Command::Macro { macros, .. } => assert_eq!(&macros[0].1[..], b"\xff\xfe"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn connect_families() {
        let mut b = packet(b'C', b"host\0U");
        assert_eq!(
            decode_command(&mut b, 1024).unwrap().unwrap(),
            Command::Connect {
                hostname: Bytes::from_static(b"host"),
                address: ConnectAddress::Unknown
            }
        );
        let mut b = packet(b'C', b"[::1]\x006\x04\xd2IPv6:::1\0");
        assert_eq!(
            decode_command(&mut b, 1024).unwrap().unwrap(),
            Command::Connect {
                hostname: Bytes::from_static(b"[::1]"),
                address: ConnectAddress::Inet6 {
                    port: 1234,
                    address: Bytes::from_static(b"IPv6:::1")
                }
            }
        );
        let mut b = packet(b'C', b"host\0X\0\0a\0");
        assert!(decode_command(&mut b, 1024).is_err());
        let mut b = packet(b'C', b"host\x004\x00");
        assert!(decode_command(&mut b, 1024).is_err(), "truncated port");
    }

    #[test]
    fn empty_commands_refuse_payload() {
        for letter in [b'T', b'N', b'A', b'Q', b'K'] {
            let mut b = packet(letter, b"x");
            assert!(decode_command(&mut b, 1024).is_err());
        }
    }

    #[test]
    fn reply_with_trailing_data_is_refused() {
        let mut b = packet(b'c', b"x");
        assert!(decode_reply(&mut b, 1024).is_err());
    }

    #[test]
    fn two_packets_in_one_buffer() {
        let mut b = packet(b'A', b"");
        b.extend_from_slice(&packet(b'Q', b""));
        assert_eq!(decode_command(&mut b, 1024), Ok(Some(Command::Abort)));
        assert_eq!(decode_command(&mut b, 1024), Ok(Some(Command::Quit)));
        assert_eq!(decode_command(&mut b, 1024), Ok(None));
    }
}
