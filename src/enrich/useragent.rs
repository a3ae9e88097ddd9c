//! User-agent parsing (browser, version, OS, device type) and the cached per-UA verdict that
//! enrichment stores in the `browser`, `os`, `device_type`, `is_bot` and `bot_reason` columns.
//!
//! [`UaParser`] reads a UA with uap-core's `regexes.yaml` (vendored in `data/`) and derives the
//! device type from uap-core's answer plus a few UA tokens. [`UaAnalyzer`] adds the bot rules of
//! [`bots`](crate::enrich::bots) and a bounded cache; it is what the pipeline uses.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use ua_parser::{device, os, user_agent};

use crate::enrich::bots::{BotError, BotRules, MALFORMED_MIN_LEN};

/// uap-core's regexes.yaml, the copy packaged with the `ua-parser` crate (see `data/README.md`).
const UAP_REGEXES: &str = include_str!("data/uap-regexes.yaml");

/// UAs longer than this many bytes are analyzed but not cached. Real browser UAs are well under
/// it (see [`bots`](crate::enrich::bots)); the cap bounds the cache's memory at about
/// `capacity` KiB whatever clients send. Longer UAs are not truncated into a key, because two
/// UAs sharing a prefix must not share a verdict.
pub const MAX_CACHED_UA_LEN: usize = 1024;

/// Why the UA parser could not be built. Only a bad vendored data file causes this.
#[derive(Debug, thiserror::Error)]
pub enum UaError {
    #[error(
        "failed to read uap-core's regexes (src/enrich/data/uap-regexes.yaml): {0} \
         (expected uap-core's regexes.yaml format)"
    )]
    Yaml(#[source] serde_yaml::Error),
    #[error(
        "failed to compile uap-core's regexes (src/enrich/data/uap-regexes.yaml): {0} \
         (is it from a uap-core release newer than the ua-parser crate supports?)"
    )]
    Compile(#[source] ua_parser::Error),
    #[error(transparent)]
    Bots(#[from] BotError),
}

/// The kind of device a UA comes from; the `device_type` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceType {
    Desktop,
    Mobile,
    Tablet,
    Tv,
    Console,
    Bot,
    Other,
}

impl DeviceType {
    /// The column value: `desktop`, `mobile`, `tablet`, `tv`, `console`, `bot` or `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceType::Desktop => "desktop",
            DeviceType::Mobile => "mobile",
            DeviceType::Tablet => "tablet",
            DeviceType::Tv => "tv",
            DeviceType::Console => "console",
            DeviceType::Bot => "bot",
            DeviceType::Other => "other",
        }
    }
}

/// What a UA string says about the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Browser family as uap-core names it (`Chrome`, `Mobile Safari`, `Firefox`, `curl`, …);
    /// `None` when uap-core does not know it.
    pub browser: Option<String>,
    /// `major.minor`, or `major` when the UA has no minor version.
    pub browser_version: Option<String>,
    /// OS family (`Windows`, `Mac OS X`, `iOS`, `Android`, `Linux`, `Chrome OS`, …).
    pub os: Option<String>,
    pub device_type: DeviceType,
}

/// uap-core's parser over the vendored regexes. Built once at start-up (it compiles
/// about a thousand regexes, a few hundred ms for both this and the bot rules); parsing takes
/// `&self`.
pub struct UaParser {
    ua: user_agent::Extractor<'static>,
    os: os::Extractor<'static>,
    spiders: Spiders,
}

impl UaParser {
    /// Loads and compiles the vendored `uap-regexes.yaml`.
    pub fn new() -> Result<Self, UaError> {
        let regexes = uap_regexes()?;
        let ua = user_agent::Builder::new()
            .push_all(regexes.user_agent_parsers)
            .map_err(compile_error)?
            .build()
            .map_err(compile_error)?;
        let os = os::Builder::new()
            .push_all(regexes.os_parsers)
            .map_err(compile_error)?
            .build()
            .map_err(compile_error)?;
        Ok(UaParser {
            ua,
            os,
            spiders: Spiders::new(regexes.device_parsers)?,
        })
    }

    /// Reads `ua`. Never fails: what uap-core does not recognise is `None`, and the device type
    /// falls back to [`DeviceType::Other`]. A UA uap-core calls a spider is not told apart here:
    /// [`UaParser::is_spider`] asks that, and [`UaAnalyzer`] makes its device type `Bot`.
    pub fn parse(&self, ua: &str) -> Device {
        let browser = self.ua.extract(ua);
        let os = self
            .os
            .extract(ua)
            .map(|o| o.os.into_owned())
            .filter(|f| f != "Other");
        let (browser, browser_version) = match browser {
            Some(b) if b.family != "Other" => {
                let version = match (b.major, b.minor) {
                    (Some(major), Some(minor)) if !major.is_empty() && !minor.is_empty() => {
                        Some(format!("{major}.{minor}"))
                    }
                    (Some(major), _) if !major.is_empty() => Some(major.to_owned()),
                    _ => None,
                };
                (Some(b.family.into_owned()), version)
            }
            _ => (None, None),
        };
        let device_type = device_type(ua, os.as_deref());
        Device {
            browser,
            browser_version,
            os,
            device_type,
        }
    }

    /// uap-core's device family for `ua` is `Spider`.
    pub fn is_spider(&self, ua: &str) -> bool {
        self.spiders.check(ua)
    }
}

fn compile_error(e: impl Into<ua_parser::Error>) -> UaError {
    UaError::Compile(e.into())
}

/// The vendored regexes, read.
fn uap_regexes() -> Result<ua_parser::Regexes<'static>, UaError> {
    serde_yaml::from_str(UAP_REGEXES).map_err(UaError::Yaml)
}

/// uap-core's answer to "is the device family `Spider`?" without its ~630 device rules compiled
/// up front: compiled, they hold 16 of the 26 MiB uap-core's regexes take (measured), and the
/// family is all tollgate reads of them. uap-core's answer is its first rule that matches. Its
/// list opens with spider rules, so a match among those is a spider; a later spider rule (the
/// generic `bot|crawl|spider|…` one) decides only when no rule before it matches, which takes
/// the whole list. That list is compiled the first time a UA needs it, and [`UaAnalyzer`] asks
/// only when the isbot list found nothing, so real crawlers, which that list names, never get
/// there. The answer is uap-core's own in every case.
struct Spiders {
    /// The spider rules that open the list.
    leading: device::Extractor<'static>,
    /// The spider rules after the first rule of another family.
    later: device::Extractor<'static>,
    /// The whole list, when a UA has needed it.
    all: OnceLock<Option<device::Extractor<'static>>>,
}

impl Spiders {
    const FAMILY: &'static str = "Spider";

    fn new(rules: Vec<device::Parser<'static>>) -> Result<Self, UaError> {
        let is_spider = |r: &device::Parser| r.device_replacement.as_deref() == Some(Self::FAMILY);
        let lead = rules.iter().take_while(|r| is_spider(r)).count();
        let (mut leading, mut later) = (Vec::new(), Vec::new());
        for (i, r) in rules.into_iter().enumerate() {
            if i < lead {
                leading.push(r);
            } else if is_spider(&r) {
                later.push(r);
            }
        }
        Ok(Spiders {
            leading: device_extractor(leading)?,
            later: device_extractor(later)?,
            all: OnceLock::new(),
        })
    }

    fn check(&self, ua: &str) -> bool {
        if self.leading.extract(ua).is_some() {
            return true;
        }
        if self.later.extract(ua).is_none() {
            return false;
        }
        // The vendored file compiled once already, at start-up; were it to fail now, the
        // later rule's match stands.
        self.all
            .get_or_init(|| {
                uap_regexes()
                    .and_then(|r| device_extractor(r.device_parsers))
                    .ok()
            })
            .as_ref()
            .is_none_or(|all| all.extract(ua).is_some_and(|d| d.device == Self::FAMILY))
    }
}

fn device_extractor(
    rules: Vec<device::Parser<'static>>,
) -> Result<device::Extractor<'static>, UaError> {
    device::Builder::new()
        .push_all(rules)
        .map_err(compile_error)?
        .build()
        .map_err(compile_error)
}

/// The device type, from uap-core's answers and UA tokens. The first rule that fires wins, and
/// the order matters: TVs and consoles run Android or Windows, and iPads say "Mobile".
///
/// 1. (a bot, by [`UaAnalyzer`]: uap-core's device family `Spider` among its signals)
/// 2. `PlayStation`, `Xbox`, `Nintendo` → console.
/// 3. `SmartTV`, `SMART-TV`, `Smart TV`, `HbbTV`, `AppleTV`, `GoogleTV`, `Android TV`,
///    `CrKey` (Chromecast), `Roku`, `BRAVIA`, `Tizen` with `TV`, `Web0S`/`webOS` with `TV`,
///    and Fire TV models (`AFT` followed by a capital, e.g. `AFTMM`) → tv.
/// 4. `iPad`, `Kindle`, `Silk`, Samsung tablet models (`SM-T…`, `SM-X…`, `SM-P…`), `Tablet`
///    (but not Windows' `Tablet PC`), and Android without `Mobile` → tablet. Chrome on Android
///    says `Mobile` on phones and leaves it out on tablets.
/// 5. `iPhone`, `iPod`, `Windows Phone`, `Opera Mini`, `BlackBerry`/`BB10`, and `Mobile`
///    anywhere else → mobile.
/// 6. A desktop OS: Windows, Mac OS X, Linux distributions, Chrome OS, the BSDs (by uap-core's
///    OS family, or `Windows NT`, `Macintosh`, `X11`, `CrOS`) → desktop.
/// 7. Anything else → other.
///
/// iPads since iPadOS 13 send the Mac UA by default, so they count as desktop: the UA cannot
/// tell them apart.
fn device_type(ua: &str, os: Option<&str>) -> DeviceType {
    let has = |t: &str| ua.contains(t);
    if has("PlayStation") || has("Xbox") || has("Nintendo") {
        return DeviceType::Console;
    }
    let tizen_or_webos_tv =
        (has("Tizen") || has("Web0S") || has("webOS")) && (has("TV") || has("SmartTV"));
    if has("SmartTV")
        || has("SMART-TV")
        || has("Smart TV")
        || has("SMART TV")
        || has("HbbTV")
        || has("AppleTV")
        || has("GoogleTV")
        || has("Android TV")
        || has("CrKey")
        || has("Roku")
        || has("BRAVIA")
        || tizen_or_webos_tv
        || has_fire_tv_model(ua)
    {
        return DeviceType::Tv;
    }
    let android = has("Android") || os == Some("Android");
    let mobile_token = has("Mobile");
    if has("iPad")
        || has("Kindle")
        || has("Silk")
        || has("SM-T")
        || has("SM-X")
        || has("SM-P")
        || (has("Tablet") && !has("Tablet PC"))
        || (android && !mobile_token)
    {
        return DeviceType::Tablet;
    }
    if has("iPhone")
        || has("iPod")
        || has("Windows Phone")
        || has("Opera Mini")
        || has("BlackBerry")
        || has("BB10")
        || mobile_token
    {
        return DeviceType::Mobile;
    }
    let desktop_os = matches!(
        os,
        Some(
            "Windows"
                | "Mac OS X"
                | "Linux"
                | "Ubuntu"
                | "Fedora"
                | "Debian"
                | "Mint"
                | "Arch Linux"
                | "Chrome OS"
                | "FreeBSD"
                | "OpenBSD"
                | "NetBSD"
        )
    );
    if desktop_os || has("Windows NT") || has("Macintosh") || has("X11") || has("CrOS") {
        return DeviceType::Desktop;
    }
    DeviceType::Other
}

/// Amazon Fire TV models are `AFT` plus capitals and digits (`AFTB`, `AFTMM`, `AFTKA`), in the
/// device model slot of an Android UA: after `; `, before ` Build`, `;` or `)`.
fn has_fire_tv_model(ua: &str) -> bool {
    ua.match_indices("; AFT").any(|(i, m)| {
        let rest = &ua[i + m.len()..];
        let model_end = rest
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit()))
            .unwrap_or(rest.len());
        model_end > 0 && rest[model_end..].starts_with([' ', ';', ')'])
    })
}

/// What tollgate derives from a UA string alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UaInfo {
    /// The parsed UA. Its `device_type` is [`DeviceType::Bot`] whenever `bot` is set, so that
    /// device breakdowns never count a bot as a desktop.
    pub device: Device,
    /// The bot reason (see [`bots`](crate::enrich::bots)), or `None` if the UA looks human.
    pub bot: Option<String>,
}

/// Parser, bot rules and a bounded cache keyed by the UA string. Lives on the pipeline thread,
/// hence `&mut self` and no locking.
///
/// The cache is two generations of `HashMap`, each holding up to `capacity / 2` entries. A hit
/// in the older generation moves the entry to the newer one; when the newer one is full, the
/// older is dropped and the newer takes its place. So lookups are O(1), frequent UAs stay, and
/// the cache never holds more than `capacity` entries.
pub struct UaAnalyzer {
    parser: UaParser,
    rules: BotRules,
    generation_cap: usize,
    current: HashMap<Box<str>, Arc<UaInfo>>,
    previous: HashMap<Box<str>, Arc<UaInfo>>,
}

impl UaAnalyzer {
    /// Builds the parser and the bot rules. `capacity` is the most UAs cached; below 2 nothing
    /// is cached.
    pub fn new(capacity: usize) -> Result<Self, UaError> {
        Ok(UaAnalyzer {
            parser: UaParser::new()?,
            rules: BotRules::new()?,
            generation_cap: capacity / 2,
            current: HashMap::new(),
            previous: HashMap::new(),
        })
    }

    /// The device and UA bot verdict for `ua`, from the cache when it has been seen recently.
    /// UAs longer than [`MAX_CACHED_UA_LEN`] are analyzed every time.
    pub fn analyze(&mut self, ua: &str) -> Arc<UaInfo> {
        if let Some(info) = self.current.get(ua) {
            return Arc::clone(info);
        }
        let info = match self.previous.remove_entry(ua) {
            Some((key, info)) => {
                self.insert(key, Arc::clone(&info));
                return info;
            }
            None => Arc::new(self.compute(ua)),
        };
        if ua.len() <= MAX_CACHED_UA_LEN {
            self.insert(ua.into(), Arc::clone(&info));
        }
        info
    }

    /// How many UAs are cached now; never more than the capacity.
    pub fn cache_len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    fn compute(&self, ua: &str) -> UaInfo {
        // A UA this long is no browser's (capture cuts UAs to `limits::USER_AGENT`, still
        // over this): marked without running a single regex over it.
        if ua.len() >= MALFORMED_MIN_LEN {
            return UaInfo {
                device: Device {
                    browser: None,
                    browser_version: None,
                    os: None,
                    device_type: DeviceType::Bot,
                },
                bot: Some("ua:malformed".to_owned()),
            };
        }
        let mut device = self.parser.parse(ua);
        let bot = self.rules.check_ua(ua, || self.parser.is_spider(ua));
        if bot.is_some() {
            device.device_type = DeviceType::Bot;
        }
        UaInfo { device, bot }
    }

    fn insert(&mut self, key: Box<str>, info: Arc<UaInfo>) {
        if self.generation_cap == 0 {
            return;
        }
        if self.current.len() >= self.generation_cap {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(key, info);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fire_tv_token() {
        assert!(has_fire_tv_model(
            "Mozilla/5.0 (Linux; Android 9; AFTMM Build/PS7633) AppleWebKit/537.36"
        ));
        assert!(has_fire_tv_model(
            "Mozilla/5.0 (Linux; Android 7.1.2; AFTN) AppleWebKit/537.36"
        ));
        assert!(!has_fire_tv_model(
            "Mozilla/5.0 (Linux; Android 14; SAFTY) AFTERWORD/1.0"
        ));
    }

    /// The spider check answers as uap-core's whole device list does, for every crawler and
    /// browser UA of the test fixtures and for UAs that match a device rule before the generic
    /// spider rule.
    #[test]
    fn spiders_answer_as_the_whole_device_list() {
        let spiders = Spiders::new(uap_regexes().unwrap().device_parsers).unwrap();
        let all = device_extractor(uap_regexes().unwrap().device_parsers).unwrap();
        let crawlers: Vec<serde_json::Value> = serde_json::from_str(include_str!(
            "../../tests/fixtures/ua/crawler-user-agents.json"
        ))
        .unwrap();
        let mut uas: Vec<String> = crawlers
            .iter()
            .flat_map(|c| c["instances"].as_array().unwrap().iter())
            .map(|i| i.as_str().unwrap().to_owned())
            .collect();
        uas.extend(
            include_str!("../../tests/fixtures/ua/browsers.txt")
                .lines()
                .map(str::to_owned),
        );
        // A Samsung phone's rule comes before the generic spider rule, which "crawler" matches.
        let samsung = "Mozilla/5.0 (Linux; Android 10; SM-G973F) AppleWebKit/537.36 \
                       (KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36 crawler";
        uas.push(samsung.to_owned());
        let (mut yes, mut no) = (0, 0);
        for ua in &uas {
            let want = all.extract(ua).is_some_and(|d| d.device == "Spider");
            assert_eq!(spiders.check(ua), want, "{ua}");
            if want {
                yes += 1
            } else {
                no += 1
            }
        }
        assert!(yes > 500 && no > 500, "{yes} spiders, {no} others");
        assert!(spiders.later.extract(samsung).is_some() && !spiders.check(samsung));
    }

    /// Browsers and the crawlers the isbot list names never compile the whole device list.
    #[test]
    fn common_traffic_leaves_the_device_list_uncompiled() {
        let mut a = UaAnalyzer::new(100).unwrap();
        for ua in [
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) \
             Chrome/131.0.0.0 Safari/537.36",
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
            "curl/8.5.0",
        ] {
            a.analyze(ua);
        }
        assert!(a.parser.spiders.all.get().is_none());
    }

    #[test]
    fn small_capacity_disables_cache() {
        let mut a = UaAnalyzer::new(1).unwrap();
        a.analyze("curl/8.5.0");
        assert_eq!(a.cache_len(), 0);
    }

    #[test]
    fn oversized_uas_are_malformed_without_parsing() {
        let mut a = UaAnalyzer::new(100).unwrap();
        let long = format!(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Googlebot {}",
            "x".repeat(MALFORMED_MIN_LEN)
        );
        let info = a.analyze(&long);
        assert_eq!(info.bot.as_deref(), Some("ua:malformed"));
        assert_eq!(info.device.browser, None, "not parsed");
        assert_eq!(
            a.analyze(crate::event::limits::cap(&long, crate::event::limits::USER_AGENT).0)
                .bot
                .as_deref(),
            Some("ua:malformed"),
            "a UA cut at capture is still malformed"
        );
    }

    #[test]
    fn long_uas_are_not_cached() {
        let mut a = UaAnalyzer::new(16).unwrap();
        let long = format!("Mozilla/5.0 ({})", "x".repeat(MAX_CACHED_UA_LEN));
        let info = a.analyze(&long);
        assert!(info.bot.is_some(), "{info:?}");
        assert_eq!(a.cache_len(), 0);
    }
}
