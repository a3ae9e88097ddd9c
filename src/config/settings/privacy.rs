//! `[privacy]`: consent, Do-Not-Track, cookieless mode, IP handling and redaction.

use super::file::PrivacySection;
use super::{is_token_byte, Problems};

#[derive(Debug, Clone)]
pub struct Privacy {
    pub ip: IpHandling,
    pub honor_gpc: bool,
    pub honor_dnt: bool,
    pub consent: Option<Consent>,
    pub cookieless: bool,
    /// Lower-cased parameter names.
    pub redact_params: Vec<String>,
    pub redact_values: bool,
}

/// `privacy.ip`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpHandling {
    Keep,
    /// Keep this many leading bits of IPv4 and IPv6 addresses.
    Truncate {
        v4: u8,
        v6: u8,
    },
    Drop,
}

/// `privacy.consent_cookie`: consent is given when the cookie is present (with this value, if
/// one is set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consent {
    pub name: String,
    pub value: Option<String>,
}

pub(super) fn validate(pv: &PrivacySection, p: &mut Problems) -> Option<Privacy> {
    let ip = match pv.ip.as_str() {
        "keep" => Some(IpHandling::Keep),
        "drop" => Some(IpHandling::Drop),
        "truncate" => Some(IpHandling::Truncate {
            v4: pv.ipv4_prefix,
            v6: pv.ipv6_prefix,
        }),
        other => {
            p.report(
                "ip",
                format!("{other:?} is not one of keep, truncate, drop"),
            );
            None
        }
    };
    if pv.ipv4_prefix > 32 {
        p.report(
            "ipv4_prefix",
            format!("{} is out of range (0 to 32)", pv.ipv4_prefix),
        );
    }
    if pv.ipv6_prefix > 128 {
        p.report(
            "ipv6_prefix",
            format!("{} is out of range (0 to 128)", pv.ipv6_prefix),
        );
    }
    let consent = consent(&pv.consent_cookie, p);
    Some(Privacy {
        ip: ip?,
        honor_gpc: pv.honor_gpc,
        honor_dnt: pv.honor_dnt,
        consent,
        cookieless: pv.cookieless,
        redact_params: pv
            .redact_params
            .iter()
            .map(|s| s.to_ascii_lowercase())
            .collect(),
        redact_values: pv.redact_values,
    })
}

/// `consent_cookie`: `name` or `name=value`; empty is no consent gating.
fn consent(cookie: &str, p: &mut Problems) -> Option<Consent> {
    let c = cookie.trim();
    if c.is_empty() {
        return None;
    }
    let (name, value) = match c.split_once('=') {
        Some((n, v)) => (n.trim(), Some(v.trim().to_string())),
        None => (c, None),
    };
    if name.is_empty() || !name.bytes().all(is_token_byte) {
        p.report(
            "consent_cookie",
            format!("{name:?} is not a valid cookie name (expected `name` or `name=value`)"),
        );
    }
    Some(Consent {
        name: name.to_string(),
        value,
    })
}
