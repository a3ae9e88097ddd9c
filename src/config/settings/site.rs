//! `[site]`: the site id written into every event, and the reports' time zone.
//! [`Settings`](super::Settings) holds them itself, as `site_id` and `timezone`.

use super::file::SiteSection;
use super::Problems;

/// `[site]`, validated.
pub(super) struct Site {
    pub id: String,
    pub timezone: chrono_tz::Tz,
}

pub(super) fn validate(s: &SiteSection, p: &mut Problems) -> Option<Site> {
    let timezone = parse_timezone(s.timezone.trim()).map_err(|m| p.report("timezone", m));
    if s.id.trim().is_empty() {
        p.report("id", "must not be empty");
    }
    Some(Site {
        id: s.id.clone(),
        timezone: timezone.ok()?,
    })
}

/// An IANA time zone name such as `Europe/Berlin`.
pub fn parse_timezone(name: &str) -> Result<chrono_tz::Tz, String> {
    name.parse::<chrono_tz::Tz>().map_err(|_| {
        format!("{name:?} is not an IANA time zone (expected e.g. \"UTC\" or \"Europe/Berlin\")")
    })
}
