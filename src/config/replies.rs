//! `[replies]`: the texts the MTA sends for each refusal.

use super::context::Section;
use super::raw;
use super::ConfigError;
use crate::policy::{Replies, ReplyKind, ReplyTemplate};

impl TryFrom<Section<'_, raw::RawReplies>> for Replies {
    type Error = ConfigError;

    fn try_from(Section { raw, cx }: Section<'_, raw::RawReplies>) -> Result<Self, ConfigError> {
        let mut replies = Replies::default();
        for (kind, text) in raw.entries() {
            if let Some(text) = text {
                let span = text.span();
                let t = ReplyTemplate::parse(text.get_ref())
                    .map_err(|m| cx.at(span, format!("replies.{}: {m}", kind.key())))?;
                if kind == ReplyKind::DirectoryUnavailable && !t.is_temporary() {
                    cx.warn("replies.directory_unavailable is permanent (5xx): mail is bounced while the directory is down".into());
                }
                replies.set(kind, t);
            }
        }
        Ok(replies)
    }
}
