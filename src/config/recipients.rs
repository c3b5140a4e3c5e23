//! `[[recipient]]`: restricted recipients (distribution lists, mailboxes).

use std::collections::HashMap;

use super::addresses::full_address;
use super::context::Section;
use super::directory::DirectorySettings;
use super::raw;
use super::ConfigError;
use crate::policy::{Address, RecipientRule, SenderRef};

/// `[[recipient]]`, validated, by address.
pub(super) struct Recipients(pub HashMap<Address, RecipientRule>);

type RawRecipients<'a> = (Vec<toml::Spanned<raw::RawRecipient>>, &'a DirectorySettings);

impl TryFrom<Section<'_, RawRecipients<'_>>> for Recipients {
    type Error = ConfigError;

    fn try_from(
        Section {
            raw: (raw, directory),
            cx,
        }: Section<'_, RawRecipients<'_>>,
    ) -> Result<Self, ConfigError> {
        let mut recipients = HashMap::new();
        for r in raw {
            let span = r.span();
            let r = r.into_inner();
            let address = full_address(&r.address).ok_or_else(|| {
                cx.at(
                    span.clone(),
                    format!("recipient {:?} is not an address", r.address),
                )
            })?;
            let refs = |list: &[String]| -> Result<Vec<SenderRef>, ConfigError> {
                list.iter()
                    .map(|s| parse_sender_ref(s, directory))
                    .collect::<Result<_, _>>()
                    .map_err(|m| cx.at(span.clone(), format!("recipient {:?}: {m}", r.address)))
            };
            let rule = RecipientRule {
                accept_from: refs(&r.accept_from)?,
                reject_from: refs(&r.reject_from)?,
                address: address.clone(),
                require_authenticated: r.require_authenticated,
                mode: r.mode,
            };
            if recipients.insert(address.clone(), rule).is_some() {
                return Err(cx.at(span, format!("recipient {address} is listed twice")));
            }
        }
        Ok(Recipients(recipients))
    }
}

fn parse_sender_ref(s: &str, directory: &DirectorySettings) -> Result<SenderRef, String> {
    match s.split_once(':') {
        Some(("group", g)) if directory.knows_group(g) => Ok(SenderRef::Group(g.to_string())),
        Some(("group", g)) => Err(format!("group {g:?} is not defined in the directory")),
        Some(("user", u)) if directory.knows_user(u) => Ok(SenderRef::User(u.to_string())),
        Some(("user", u)) => Err(format!("user {u:?} is not defined in the directory")),
        Some(("sender", a)) => full_address(a)
            .map(SenderRef::Sender)
            .ok_or_else(|| format!("{a:?} is not an address")),
        _ => Err(format!(
            "{s:?} must be \"group:NAME\", \"user:LOGIN\" or \"sender:ADDRESS\""
        )),
    }
}
