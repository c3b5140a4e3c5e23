//! `[[listener]]` and `[safety]`: the rules per SMTP service, and how wide
//! its trusted networks may be.

use super::context::Section;
use super::directory::DirectorySettings;
use super::raw;
use super::relay_safety;
use super::ConfigError;
use crate::milter::Endpoint;
use crate::policy::{GroupRule, Listener, ListenerMatch};

/// `[[listener]]`, validated: the matched listeners in file order, and the
/// one used when none matches.
pub(super) struct Listeners {
    pub listeners: Vec<Listener>,
    pub default_listener: Option<Listener>,
}

/// What listeners are checked against.
pub(super) struct ListenerScope<'a> {
    pub directory: &'a DirectorySettings,
    pub endpoints: &'a [Endpoint],
    pub limits: relay_safety::TrustLimits,
}

impl TryFrom<Section<'_, raw::RawSafety>> for relay_safety::TrustLimits {
    type Error = ConfigError;

    fn try_from(Section { raw, cx }: Section<'_, raw::RawSafety>) -> Result<Self, ConfigError> {
        Ok(relay_safety::TrustLimits {
            ipv4_prefix: cx.bounded("safety", "trusted_ipv4_prefix", raw.trusted_ipv4_prefix, 0..=32)?,
            ipv6_prefix: cx.bounded("safety", "trusted_ipv6_prefix", raw.trusted_ipv6_prefix, 0..=128)?,
        })
    }
}

type RawListeners<'a> = (Vec<toml::Spanned<raw::RawListener>>, ListenerScope<'a>);

impl TryFrom<Section<'_, RawListeners<'_>>> for Listeners {
    type Error = ConfigError;

    fn try_from(
        Section {
            raw: (raw, scope),
            cx,
        }: Section<'_, RawListeners<'_>>,
    ) -> Result<Self, ConfigError> {
        let mut listeners: Vec<Listener> = Vec::new();
        let mut default_listener = None;
        let mut catch_all = None;
        let mut spans = Vec::new();
        for l in raw {
            let span = l.span();
            let l = l.into_inner();
            if l.name.is_empty() {
                return Err(cx.at(span, "listener without a name".into()));
            }
            if listeners
                .iter()
                .chain(default_listener.iter())
                .any(|x: &Listener| x.name.eq_ignore_ascii_case(&l.name))
            {
                return Err(cx.at(span, format!("listener {:?} is defined twice", l.name)));
            }
            for g in l
                .submit
                .allow_groups
                .iter()
                .chain(&l.submit.deny_groups)
                .chain(&l.relay.allow_groups)
                .chain(&l.relay.deny_groups)
            {
                if !scope.directory.knows_group(g) {
                    return Err(cx.at(
                        span,
                        format!(
                            "listener {:?}: group {g:?} is not defined in the directory",
                            l.name
                        ),
                    ));
                }
            }
            let mm = l.matcher;
            let matcher = ListenerMatch {
                daemon_name: mm.daemon_name,
                daemon_addr: mm.daemon_addr,
                daemon_port: mm.daemon_port,
                socket: mm.socket.map(|s| s.0.to_string()),
                client: mm.client.into_iter().map(|n| n.0).collect(),
            };
            let trusted: Vec<_> = l.trusted_networks.iter().map(|n| n.0).collect();
            match relay_safety::judge(&trusted, scope.limits) {
                relay_safety::Verdict::Narrow => {}
                relay_safety::Verdict::Wide(what) => cx.warn(format!(
                    "listener {:?}: trusted_networks cover {what} (more than [safety] allows): every client there may relay without authenticating",
                    l.name
                )),
                relay_safety::Verdict::OpenRelay(what) if l.acknowledge_open_relay => cx.warn(format!(
                    "listener {:?}: trusted_networks cover {what}: an open relay for those clients (acknowledged)",
                    l.name
                )),
                relay_safety::Verdict::OpenRelay(what) => {
                    return Err(cx.at(
                        span,
                        format!(
                            "listener {:?}: trusted_networks cover {what}: any client there may relay without authenticating (an open relay). Narrow the ranges, or set acknowledge_open_relay = true if that is meant",
                            l.name
                        ),
                    ))
                }
            }
            let listener = Listener {
                name: l.name,
                matcher,
                allow_anonymous: l.allow_anonymous,
                trusted_networks: trusted,
                reject_anonymous_local_sender: l.reject_anonymous_local_sender,
                require_sender_match: l.require_sender_match,
                submit: GroupRule {
                    allow_groups: l.submit.allow_groups,
                    deny_groups: l.submit.deny_groups,
                },
                relay: GroupRule {
                    allow_groups: l.relay.allow_groups,
                    deny_groups: l.relay.deny_groups,
                },
                mode: l.mode,
            };
            if listener.name == "default" {
                if listener.matcher != ListenerMatch::default() {
                    return Err(cx.at(
                        span,
                        "listener \"default\" is used when no other matches: give it no match keys".into(),
                    ));
                }
                default_listener = Some(listener);
                continue;
            }
            if let Some(socket) = &listener.matcher.socket {
                if !scope.endpoints.iter().any(|e| e.to_string() == *socket) {
                    return Err(cx.at(
                        span,
                        format!(
                            "listener {:?}: match.socket {socket:?} is not in milter.listen or policy_service.listen",
                            listener.name
                        ),
                    ));
                }
            }
            for (other, _) in listeners.iter().zip(&spans) {
                if let Some(why) = listener.matcher.ambiguity_with(&other.matcher) {
                    return Err(cx.at(
                        span,
                        format!(
                            "listeners {:?} and {:?} are ambiguous: {why}",
                            other.name, listener.name
                        ),
                    ));
                }
            }
            if listener.matcher == ListenerMatch::default() {
                catch_all = Some((listener.name.clone(), span.clone()));
            }
            spans.push(span);
            listeners.push(listener);
        }
        if let (Some((name, span)), Some(_)) = (catch_all, &default_listener) {
            // It would silently take every session "default" is there for.
            return Err(cx.at(
                span,
                format!("listener {name:?} has no match keys: a second catch-all beside \"default\""),
            ));
        }
        if listeners.is_empty() && default_listener.is_none() {
            // An empty or cut file: refused rather than answering 451 to all.
            return Err(
                cx.err("no [[listener]]: there is no policy to enforce (an empty or truncated file?)".into())
            );
        }
        Ok(Listeners {
            listeners,
            default_listener,
        })
    }
}
