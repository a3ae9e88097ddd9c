//! `[enrich]`: the geo database, bot networks, the site's own domains and the UA cache.

use super::file::EnrichSection;
use super::{nets, Problems};
use ipnet::IpNet;
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct Enrich {
    pub geo_db: Option<PathBuf>,
    pub bot_networks: Vec<IpNet>,
    /// Lower-cased, without a leading dot.
    pub site_domains: Vec<String>,
    pub ua_cache_size: usize,
}

pub(super) fn validate(en: &EnrichSection, p: &mut Problems) -> Enrich {
    let geo_db = match en.geo_db.trim() {
        "" => None,
        path => {
            if !std::path::Path::new(path).is_file() {
                p.report(
                    "geo_db",
                    format!("{path:?} is not a readable file (expected a GeoLite2/DB-IP .mmdb)"),
                );
            }
            Some(PathBuf::from(path))
        }
    };
    let bot_networks = nets(&en.bot_networks, "bot_networks", "192.0.2.0/24", p);
    let mut site_domains = Vec::new();
    for (i, d) in en.site_domains.iter().enumerate() {
        let d = d.trim().trim_start_matches('.').to_ascii_lowercase();
        if d.is_empty() || d.contains(['/', ':', ' ']) {
            p.item("site_domains", i)
                .here(format!("{d:?} is not a domain (expected e.g. example.com)"));
        } else {
            site_domains.push(d);
        }
    }
    Enrich {
        geo_db,
        bot_networks,
        site_domains,
        ua_cache_size: en.ua_cache_size,
    }
}
