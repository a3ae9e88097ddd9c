//! `[inject]`: the tracker script in HTML pages.

use super::capture::{parse_path, PathPattern};
use super::file::InjectSection;
use super::Problems;

#[derive(Debug, Clone)]
pub struct Inject {
    pub enabled: bool,
    pub exclude: Vec<PathPattern>,
    pub engagement: bool,
    pub compression_level: u32,
}

pub(super) fn validate(s: &InjectSection, p: &mut Problems) -> Inject {
    let mut exclude = Vec::new();
    for (i, path) in s.exclude_paths.iter().enumerate() {
        match parse_path(path) {
            Ok(path) => exclude.push(path),
            Err(e) => p.item("exclude_paths", i).here(e),
        }
    }
    if !(1..=9).contains(&s.compression_level) {
        p.report(
            "compression_level",
            format!("{} is not between 1 and 9", s.compression_level),
        );
    }
    Inject {
        enabled: s.enabled,
        exclude,
        engagement: s.engagement,
        compression_level: s.compression_level,
    }
}
