//! `[domains]` and `[addresses]`: which domains are ours, how bare and
//! subaddressed recipients are read.

use std::ops::Range;

use super::context::Section;
use super::raw;
use super::ConfigError;
use crate::policy::{Address, AddressSettings, DomainPattern, MtaView};

impl TryFrom<Section<'_, (raw::RawAddresses, &[DomainPattern])>> for AddressSettings {
    type Error = ConfigError;

    fn try_from(
        Section { raw: (a, local), cx }: Section<'_, (raw::RawAddresses, &[DomainPattern])>,
    ) -> Result<Self, ConfigError> {
        address_settings(a, local).map_err(|(span, m)| cx.at(span, format!("addresses.{m}")))
    }
}

/// `[addresses]`: the default domain must be one of ours (it completes bare
/// local parts, which the MTA delivers here) and defaults to the first
/// exact local domain; the delimiter is a few punctuation characters.
fn address_settings(
    a: raw::RawAddresses,
    local: &[DomainPattern],
) -> Result<AddressSettings, (Range<usize>, String)> {
    let default_domain = match a.default_domain {
        Some(d) => {
            let span = d.span();
            let p = DomainPattern::parse(d.get_ref())
                .ok()
                .filter(|p| !p.subdomains)
                .ok_or_else(|| {
                    (
                        span.clone(),
                        format!("default_domain: {:?} is not a domain", d.get_ref()),
                    )
                })?;
            if !local.iter().any(|l| l.matches(&p.domain)) {
                return Err((
                    span,
                    format!(
                        "default_domain: {:?} is not in domains.local (bare addresses are delivered here)",
                        p.domain
                    ),
                ));
            }
            Some(p.domain)
        }
        None => local.iter().find(|l| !l.subdomains).map(|l| l.domain.clone()),
    };
    let recipient_delimiter = match a.recipient_delimiter {
        Some(d) => {
            let ok = d.get_ref().chars().count() <= 8
                && d.get_ref()
                    .chars()
                    .all(|c| c.is_ascii_punctuation() && !"@.\"\\<>()[],;:".contains(c));
            if !ok {
                return Err((
                    d.span(),
                    format!(
                        "recipient_delimiter: {:?} must be a few punctuation characters such as \"+\" (not @ . \" \\ or brackets)",
                        d.get_ref()
                    ),
                ));
            }
            d.into_inner()
        }
        None => String::new(),
    };
    let mut local_delivery_domains = Vec::new();
    for d in a.local_delivery_domains {
        let span = d.span();
        let pattern = d.into_inner().0;
        if !local.iter().any(|l| l.matches(&pattern.domain)) {
            return Err((
                span,
                format!(
                    "local_delivery_domains: {:?} is not in domains.local",
                    pattern.domain
                ),
            ));
        }
        local_delivery_domains.push(pattern);
    }
    Ok(AddressSettings {
        default_domain,
        recipient_delimiter,
        mta_view: a.mta_view.unwrap_or(MtaView::Enforce),
        local_delivery_domains,
    })
}

/// An address written in the configuration: valid, with a domain, unrouted.
pub(super) fn full_address(s: &str) -> Option<Address> {
    Address::parse(s)
        .ok()
        .flatten()
        .filter(|a| !a.domain.is_empty() && !a.is_routed())
}
