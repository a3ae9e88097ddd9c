//! Bot detection and UA parsing measured against outside data: recall on crawler-user-agents,
//! false positives on real browser UAs (`tests/fixtures/ua/`), and known devices.
//!
//! The figures are printed; run with `-- --nocapture` to see them and the misses.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use tollgate::enrich::useragent::{DeviceType, UaAnalyzer, UaInfo, UaParser};

const GOOGLEBOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

/// Least share of known crawler UAs the detector must flag.
const MIN_RECALL: f64 = 0.97;
/// Most share of real browser UAs the detector may flag.
const MAX_FALSE_POSITIVE: f64 = 0.005;

fn fixture(name: &str) -> String {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "fixtures", "ua", name]
        .iter()
        .collect();
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("failed to read fixture {}: {e}", path.display()))
}

fn analyzer() -> UaAnalyzer {
    UaAnalyzer::new(4096).expect("the vendored UA data compiles")
}

fn pct(part: usize, whole: usize) -> f64 {
    100.0 * part as f64 / whole as f64
}

#[derive(serde::Deserialize)]
struct Crawler {
    #[serde(default)]
    instances: Vec<String>,
}

#[test]
fn crawler_recall() {
    let crawlers: Vec<Crawler> = serde_json::from_str(&fixture("crawler-user-agents.json"))
        .expect("crawler-user-agents.json is an array of {pattern, instances}");
    let uas: BTreeSet<String> = crawlers
        .into_iter()
        .flat_map(|c| c.instances)
        .filter(|ua| !ua.trim().is_empty())
        .collect();

    let mut a = analyzer();
    let mut misses: Vec<&String> = Vec::new();
    // Which rule caught them: `ua:list:<pattern>` counts as `ua:list`.
    let mut by_rule: BTreeMap<String, usize> = BTreeMap::new();
    for ua in &uas {
        match &a.analyze(ua).bot {
            Some(why) => {
                let rule = why.splitn(3, ':').take(2).collect::<Vec<_>>().join(":");
                *by_rule.entry(rule).or_default() += 1;
            }
            None => misses.push(ua),
        }
    }
    let flagged = uas.len() - misses.len();
    let recall = flagged as f64 / uas.len() as f64;
    println!(
        "recall: {flagged} of {} crawler UAs flagged ({:.2}%), {} missed",
        uas.len(),
        pct(flagged, uas.len()),
        misses.len()
    );
    for (rule, n) in &by_rule {
        println!("  {rule}: {n}");
    }
    for ua in misses.iter().take(20) {
        println!("  missed: {ua}");
    }
    assert!(uas.len() >= 500, "only {} crawler UAs tested", uas.len());
    assert!(
        recall >= MIN_RECALL,
        "recall {:.2}% is below {:.0}%",
        recall * 100.0,
        MIN_RECALL * 100.0
    );
}

#[test]
fn browser_false_positives() {
    let text = fixture("browsers.txt");
    let uas: BTreeSet<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();

    let mut a = analyzer();
    let flagged: Vec<(&str, String)> = uas
        .iter()
        .filter_map(|ua| a.analyze(ua).bot.clone().map(|why| (*ua, why)))
        .collect();
    let rate = flagged.len() as f64 / uas.len() as f64;
    println!(
        "false positives: {} of {} browser UAs flagged ({:.3}%)",
        flagged.len(),
        uas.len(),
        pct(flagged.len(), uas.len())
    );
    for (ua, why) in &flagged {
        println!("  flagged [{why}]: {ua}");
    }
    assert!(uas.len() >= 1000, "only {} browser UAs tested", uas.len());
    assert!(
        rate <= MAX_FALSE_POSITIVE,
        "false-positive rate {:.3}% is above {:.1}%",
        rate * 100.0,
        MAX_FALSE_POSITIVE * 100.0
    );
}

/// Asserts browser family, OS family and device type, and that a human UA is not a bot.
fn assert_device(
    a: &mut UaAnalyzer,
    ua: &str,
    browser: Option<&str>,
    os: Option<&str>,
    device_type: DeviceType,
) -> std::sync::Arc<UaInfo> {
    let info = a.analyze(ua);
    let d = &info.device;
    assert_eq!(
        (d.browser.as_deref(), d.os.as_deref(), d.device_type),
        (browser, os, device_type),
        "for {ua}: {info:?}"
    );
    if device_type != DeviceType::Bot {
        assert_eq!(info.bot, None, "for {ua}");
    }
    info
}

/// Long, but a list: one real user agent per case, each with what it must parse to; split up,
/// the cases would only be harder to compare.
#[test]
fn known_devices() {
    let mut a = analyzer();

    let chrome = assert_device(
        &mut a,
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) \
         Chrome/131.0.0.0 Safari/537.36",
        Some("Chrome"),
        Some("Windows"),
        DeviceType::Desktop,
    );
    assert_eq!(chrome.device.browser_version.as_deref(), Some("131.0"));
    assert_eq!(chrome.device.device_type.as_str(), "desktop");

    let safari = assert_device(
        &mut a,
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 \
         (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
        Some("Mobile Safari"),
        Some("iOS"),
        DeviceType::Mobile,
    );
    assert_eq!(safari.device.browser_version.as_deref(), Some("17.5"));

    // Galaxy Tab S9 (SM-X710), Chrome.
    assert_device(
        &mut a,
        "Mozilla/5.0 (Linux; Android 14; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) \
         Chrome/126.0.6478.122 Safari/537.36",
        Some("Chrome"),
        Some("Android"),
        DeviceType::Tablet,
    );
    // Galaxy Tab A (SM-T510), Samsung Internet.
    assert_device(
        &mut a,
        "Mozilla/5.0 (Linux; Android 11; SM-T510) AppleWebKit/537.36 (KHTML, like Gecko) \
         SamsungBrowser/23.0 Chrome/115.0.0.0 Safari/537.36",
        Some("Samsung Internet"),
        Some("Android"),
        DeviceType::Tablet,
    );

    let googlebot = a.analyze(GOOGLEBOT);
    assert!(googlebot.bot.is_some(), "{googlebot:?}");
    assert!(
        UaParser::new().unwrap().is_spider(GOOGLEBOT),
        "uap-core reads Googlebot as a spider"
    );
    assert_eq!(googlebot.device.device_type, DeviceType::Bot);
    assert_eq!(googlebot.device.device_type.as_str(), "bot");

    let curl = a.analyze("curl/8.5.0");
    assert!(curl.bot.is_some(), "{curl:?}");
    assert_eq!(curl.device.browser.as_deref(), Some("curl"), "{curl:?}");
    assert_eq!(curl.device.device_type, DeviceType::Bot);

    assert_device(
        &mut a,
        "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        Some("Firefox"),
        Some("Linux"),
        DeviceType::Desktop,
    );
    assert_device(
        &mut a,
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) \
         Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
        Some("Edge"),
        Some("Windows"),
        DeviceType::Desktop,
    );
    assert_device(
        &mut a,
        "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 \
         (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
        Some("Mobile Safari"),
        Some("iOS"),
        DeviceType::Tablet,
    );
    // Samsung smart TV (Tizen).
    assert_device(
        &mut a,
        "Mozilla/5.0 (SMART-TV; LINUX; Tizen 6.0) AppleWebKit/537.36 (KHTML, like Gecko) \
         76.0.3809.146/6.0 TV Safari/537.36",
        Some("Safari"),
        Some("Tizen"),
        DeviceType::Tv,
    );
    // LG webOS TV.
    let lg = a.analyze(
        "Mozilla/5.0 (Web0S; Linux/SmartTV) AppleWebKit/537.36 (KHTML, like Gecko) \
         Chrome/87.0.4280.88 Safari/537.36 WebAppManager",
    );
    assert_eq!(lg.device.device_type, DeviceType::Tv, "{lg:?}");
    assert_eq!(lg.bot, None);
    // PlayStation 5.
    let ps5 = a.analyze(
        "Mozilla/5.0 (PlayStation; PlayStation 5/2.26) AppleWebKit/605.1.15 \
         (KHTML, like Gecko) Version/13.0 Safari/605.1.15",
    );
    assert_eq!(ps5.device.device_type, DeviceType::Console, "{ps5:?}");
    assert_eq!(ps5.device.device_type.as_str(), "console");
    assert_eq!(ps5.bot, None);

    let headless = a.analyze(
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
         HeadlessChrome/120.0.6099.71 Safari/537.36",
    );
    assert_eq!(headless.bot.as_deref(), Some("ua:headless"));

    assert_eq!(a.analyze("").bot.as_deref(), Some("ua:empty"));
    assert_eq!(a.analyze("   ").bot.as_deref(), Some("ua:empty"));
}

#[test]
fn cache_is_bounded_and_consistent() {
    let capacity = 64;
    let mut a = UaAnalyzer::new(capacity).expect("the vendored UA data compiles");
    let ua = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
    let first = a.analyze(ua);
    let second = a.analyze(ua);
    assert_eq!(first, second);
    assert_eq!(a.cache_len(), 1);

    for i in 0..capacity * 5 {
        a.analyze(&format!(
            "Mozilla/5.0 (X11; Linux x86_64; rv:{i}.0) Firefox/{i}.0"
        ));
        assert!(a.cache_len() <= capacity, "cache grew to {}", a.cache_len());
    }
    // Evicted or not, the answer is the same.
    assert_eq!(a.analyze(ua), first);
    assert!(a.cache_len() <= capacity);
}
