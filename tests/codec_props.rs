//! Property tests of the codec: every command and reply survives an
//! encode/decode round trip (also when split into arbitrary chunks), and
//! arbitrary bytes never make a decoder panic or over-allocate.

use bytes::{Bytes, BytesMut};
use gatehouse::milter::codec::{
    decode_command, decode_reply, encode_command, encode_reply, Command, ConnectAddress, OptNeg, Reply,
};
use proptest::prelude::*;

const CAP: usize = 1 << 20;

/// A string field: any bytes but NUL.
fn field() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(1u8..=255, 0..40).prop_map(Bytes::from)
}

fn raw() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..200).prop_map(Bytes::from)
}

fn optneg() -> impl Strategy<Value = OptNeg> {
    (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(version, actions, protocol)| OptNeg {
        version,
        actions,
        protocol,
    })
}

fn command() -> impl Strategy<Value = Command> {
    let address = prop_oneof![
        Just(ConnectAddress::Unknown),
        (any::<u16>(), field()).prop_map(|(port, path)| ConnectAddress::Unix { port, path }),
        (any::<u16>(), field()).prop_map(|(port, address)| ConnectAddress::Inet { port, address }),
        (any::<u16>(), field()).prop_map(|(port, address)| ConnectAddress::Inet6 { port, address }),
    ];
    prop_oneof![
        optneg().prop_map(Command::OptNeg),
        (any::<u8>(), proptest::collection::vec((field(), field()), 0..5))
            .prop_map(|(stage, macros)| Command::Macro { stage, macros }),
        (field(), address).prop_map(|(hostname, address)| Command::Connect { hostname, address }),
        field().prop_map(Command::Helo),
        proptest::collection::vec(field(), 1..5).prop_map(Command::Mail),
        proptest::collection::vec(field(), 1..5).prop_map(Command::Rcpt),
        Just(Command::Data),
        (field(), field()).prop_map(|(name, value)| Command::Header { name, value }),
        Just(Command::EndOfHeaders),
        raw().prop_map(Command::Body),
        raw().prop_map(Command::EndOfMessage),
        field().prop_map(Command::Unknown),
        Just(Command::Abort),
        Just(Command::Quit),
        Just(Command::QuitNewConnection),
    ]
}

fn reply() -> impl Strategy<Value = Reply> {
    prop_oneof![
        (optneg(), proptest::collection::vec((any::<u32>(), field()), 0..7))
            .prop_map(|(negotiated, macros)| Reply::OptNeg { negotiated, macros }),
        Just(Reply::Continue),
        Just(Reply::Accept),
        Just(Reply::Reject),
        Just(Reply::Tempfail),
        Just(Reply::Discard),
        Just(Reply::Skip),
        Just(Reply::Progress),
        Just(Reply::Shutdown),
        Just(Reply::ConnFail),
        field().prop_map(Reply::ReplyCode),
        field().prop_map(Reply::AddRcpt),
        field().prop_map(Reply::DelRcpt),
        (field(), proptest::option::of(field())).prop_map(|(rcpt, args)| Reply::AddRcptPar { rcpt, args }),
        (field(), proptest::option::of(field())).prop_map(|(sender, args)| Reply::ChgFrom { sender, args }),
        (field(), field()).prop_map(|(name, value)| Reply::AddHeader { name, value }),
        (any::<u32>(), field(), field()).prop_map(|(index, name, value)| Reply::InsHeader {
            index,
            name,
            value
        }),
        (any::<u32>(), field(), field()).prop_map(|(index, name, value)| Reply::ChgHeader {
            index,
            name,
            value
        }),
        raw().prop_map(Reply::ReplBody),
        field().prop_map(Reply::Quarantine),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn commands_round_trip(cmds in proptest::collection::vec(command(), 1..6), cut in any::<prop::sample::Index>()) {
        let mut wire = BytesMut::new();
        for c in &cmds {
            encode_command(c, &mut wire);
        }
        // Deliver in two pieces split anywhere: the decoder must wait, then finish.
        let split = cut.index(wire.len() + 1);
        let mut buf = BytesMut::from(&wire[..split]);
        let mut decoded = Vec::new();
        while let Some(c) = decode_command(&mut buf, CAP).unwrap() {
            decoded.push(c);
        }
        buf.extend_from_slice(&wire[split..]);
        while let Some(c) = decode_command(&mut buf, CAP).unwrap() {
            decoded.push(c);
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(decoded, cmds);
    }

    #[test]
    fn replies_round_trip(replies in proptest::collection::vec(reply(), 1..6)) {
        let mut wire = BytesMut::new();
        for r in &replies {
            encode_reply(r, &mut wire);
        }
        let mut decoded = Vec::new();
        while let Some(r) = decode_reply(&mut wire, CAP).unwrap() {
            decoded.push(r);
        }
        prop_assert_eq!(decoded, replies);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut a = BytesMut::from(&bytes[..]);
        while let Ok(Some(_)) = decode_command(&mut a, 4096) {}
        let mut b = BytesMut::from(&bytes[..]);
        while let Ok(Some(_)) = decode_reply(&mut b, 4096) {}
        prop_assert!(a.capacity() <= bytes.len().max(64) * 2);
    }

    #[test]
    fn valid_frames_with_arbitrary_payloads_never_panic(
        letter in any::<u8>(),
        payload in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut wire = BytesMut::new();
        wire.extend_from_slice(&((payload.len() + 1) as u32).to_be_bytes());
        wire.extend_from_slice(&[letter]);
        wire.extend_from_slice(&payload);
        let mut a = wire.clone();
        let _ = decode_command(&mut a, CAP);
        let _ = decode_reply(&mut wire, CAP);
    }
}
