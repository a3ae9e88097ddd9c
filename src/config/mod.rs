//! Configuration: the file, `TOLLGATE_*` environment overrides and CLI flags, validated into
//! [`Settings`] with every problem reported at once.
//!
//! Precedence is CLI over environment over file over defaults.

mod file;
mod problems;
mod settings;

pub use file::*;
pub use settings::*;

use problems::Problems;

use std::fmt;
use std::path::Path;

/// Values given on the command line; they win over everything else.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub upstream: Option<String>,
    pub listen: Option<String>,
    pub admin: Option<String>,
    pub data_dir: Option<String>,
}

/// Every problem found in a configuration, each naming its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(
            f,
            "{n} configuration problem{}:",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Comma-separated Segment write keys; sets `ingest.write_keys`.
pub const WRITE_KEYS_ENV: &str = "TOLLGATE_WRITE_KEYS";

/// A testing aid: `TOLLGATE_CLOCK_OFFSET_SECS=-259200` runs tollgate three days in the past, so
/// that end-to-end tests can play out "visited on Monday, bought on Wednesday" in seconds.
/// Read by `event::now_us`, once; unset (or not an integer) means no offset. Never set it in
/// production. Defined here, with the other `TOLLGATE_*` names, so that `load` knows it is not
/// a `TOLLGATE_<SECTION>_<KEY>`.
pub const CLOCK_OFFSET_ENV: &str = "TOLLGATE_CLOCK_OFFSET_SECS";

/// Environment variables that map to CLI flags (handled by clap), not to `section_key`.
const CLI_ENV: &[&str] = &[
    "TOLLGATE_UPSTREAM",
    "TOLLGATE_LISTEN",
    "TOLLGATE_ADMIN",
    "TOLLGATE_DATA",
    "TOLLGATE_CONFIG",
    "TOLLGATE_LOG",
    CLOCK_OFFSET_ENV,
];

const SECTIONS: &[&str] = &[
    "server", "upstream", "identity", "capture", "pipeline", "site", "privacy", "enrich", "ingest",
    "inject", "store", "console", "sinks",
];

/// Load a configuration: the optional file, then `TOLLGATE_<SECTION>_<KEY>` variables from
/// `env`, then `overrides`; then validate. Returns every problem at once.
pub fn load(
    path: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    overrides: &Overrides,
) -> Result<Settings, ConfigErrors> {
    let mut errors = Vec::new();
    let mut table = match path {
        None => toml::Table::new(),
        Some(p) => match std::fs::read_to_string(p) {
            Err(e) => {
                return Err(ConfigErrors(vec![format!(
                    "cannot read config file {}: {e}",
                    p.display()
                )]))
            }
            Ok(text) => match text.parse::<toml::Table>() {
                Ok(t) => t,
                Err(e) => {
                    return Err(ConfigErrors(vec![format!(
                        "{}: not valid TOML: {}",
                        p.display(),
                        e.to_string().trim_end()
                    )]))
                }
            },
        },
    };

    let mut problems = Problems::new(&mut errors);
    apply_env(&mut table, env, &mut problems);
    apply_overrides(&mut table, overrides);

    let file = parse_sections(table, &mut problems);
    let settings = settings::validate(&file, &mut problems);
    if errors.is_empty() {
        Ok(settings.expect("validate returns settings when no errors were found"))
    } else {
        Err(ConfigErrors(errors))
    }
}

impl Settings {
    /// Every default, in front of `upstream`; no file and no environment. For the demo,
    /// tests and benchmarks.
    pub fn defaults(upstream: &str) -> Result<Settings, ConfigErrors> {
        load(
            None,
            Vec::new(),
            &Overrides {
                upstream: Some(upstream.to_string()),
                ..Default::default()
            },
        )
    }
}

/// Deserialize section by section (and sink by sink), so that a mistake in one does not hide
/// the others.
fn parse_sections(table: toml::Table, problems: &mut Problems) -> FileConfig {
    let mut file = FileConfig::default();
    for (name, value) in table {
        let mut p = problems.under(&name);
        match name.as_str() {
            "server" => section(value, &mut p, &mut file.server),
            "upstream" => section(value, &mut p, &mut file.upstream),
            "identity" => section(value, &mut p, &mut file.identity),
            "capture" => section(value, &mut p, &mut file.capture),
            "pipeline" => section(value, &mut p, &mut file.pipeline),
            "site" => section(value, &mut p, &mut file.site),
            "privacy" => section(value, &mut p, &mut file.privacy),
            "enrich" => section(value, &mut p, &mut file.enrich),
            "ingest" => section(value, &mut p, &mut file.ingest),
            "inject" => section(value, &mut p, &mut file.inject),
            "store" => section(value, &mut p, &mut file.store),
            "console" => section(value, &mut p, &mut file.console),
            "sinks" => file.sinks = settings::sinks::parse(value, &mut p),
            other => problems.report(
                other,
                format!("unknown section (expected one of: {})", SECTIONS.join(", ")),
            ),
        }
    }
    file
}

/// One section into `into`. When serde refuses it, its keys are read one at a time: each key
/// serde refuses (unknown, or of the wrong type) is reported under its own name, and the section
/// keeps the others, so that its checks see what was given and report their own problems too.
fn section<T: serde::de::DeserializeOwned>(value: toml::Value, p: &mut Problems, into: &mut T) {
    let whole = match value.clone().try_into() {
        Ok(v) => v,
        Err(e) => {
            let toml::Value::Table(keys) = value else {
                p.here(e.to_string().trim_end());
                return;
            };
            let mut good = toml::Table::new();
            for (key, v) in keys {
                let one = toml::Table::from_iter([(key.clone(), v.clone())]);
                match toml::Value::Table(one).try_into::<T>() {
                    Ok(_) => {
                        good.insert(key, v);
                    }
                    Err(e) => p.report(&key, e.to_string().trim_end()),
                }
            }
            match toml::Value::Table(good).try_into() {
                Ok(v) => v,
                // Keys that pass alone but not together: none today; said, not lost.
                Err(e) => return p.here(e.to_string().trim_end()),
            }
        }
    };
    *into = whole;
}

fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
    problems: &mut Problems,
) {
    for (var, val) in env {
        if var == WRITE_KEYS_ENV {
            // The Segment write keys have an env name of their own (issue 4's contract).
            let entry = table
                .entry("ingest".to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(t) = entry {
                let keys = val
                    .split(',')
                    .map(str::trim)
                    .filter(|k| !k.is_empty())
                    .map(|k| toml::Value::String(k.to_string()))
                    .collect();
                t.insert("write_keys".into(), toml::Value::Array(keys));
            }
            continue;
        }
        let Some(rest) = var.strip_prefix("TOLLGATE_") else {
            continue;
        };
        if CLI_ENV.contains(&var.as_str()) || rest.is_empty() {
            continue;
        }
        let rest = rest.to_ascii_lowercase();
        // Only TOLLGATE_<SECTION>_<KEY> with a known section configures tollgate; other
        // TOLLGATE_* variables (TOLLGATE_BIN in a script, say) are not ours to judge. A wrong
        // key in a known section is an error, reported when the section is read.
        let Some((section, key)) = rest.split_once('_') else {
            continue;
        };
        if !SECTIONS.contains(&section) {
            continue;
        }
        if section == "sinks" {
            problems.report(
                &var,
                "sinks cannot be set from the environment; use [[sinks]] tables in the configuration file",
            );
            continue;
        }
        let entry = table
            .entry(section.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        match entry {
            toml::Value::Table(t) => {
                t.insert(key.to_string(), env_value(&val));
            }
            _ => problems.report(section, "must be a table"),
        }
    }
}

/// An environment value as TOML: `true`, `42` and `["a", "b"]` keep their types, `a,b` is a
/// list of strings, anything else is a string.
fn env_value(raw: &str) -> toml::Value {
    if let Ok(mut t) = format!("v = {raw}").parse::<toml::Table>() {
        if let Some(v) = t.remove("v") {
            return v;
        }
    }
    if raw.contains(',') {
        return toml::Value::Array(
            raw.split(',')
                .map(|s| toml::Value::String(s.trim().to_string()))
                .collect(),
        );
    }
    toml::Value::String(raw.to_string())
}

fn apply_overrides(table: &mut toml::Table, o: &Overrides) {
    let mut set = |section: &str, key: &str, val: &Option<String>| {
        if let Some(v) = val {
            let entry = table
                .entry(section.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(t) = entry {
                t.insert(key.to_string(), toml::Value::String(v.clone()));
            }
        }
    };
    set("upstream", "url", &o.upstream);
    set("server", "listen", &o.listen);
    set("server", "admin", &o.admin);
    set("server", "data_dir", &o.data_dir);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn load_str(text: &str, env: &[(&str, &str)]) -> Result<Settings, ConfigErrors> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.toml");
        std::fs::write(&p, text).unwrap();
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        load(Some(&p), env, &Overrides::default())
    }

    #[test]
    fn defaults_need_only_an_upstream() {
        let s = load_str("[upstream]\nurl = \"http://127.0.0.1:3000\"\n", &[]).unwrap();
        assert_eq!(s.listen.to_string(), "0.0.0.0:8080");
        assert_eq!(s.admin.to_string(), "127.0.0.1:9080");
        assert_eq!(s.upstream.port, 3000);
        assert!(!s.upstream.tls);
        assert!(s.capture.enabled);
    }

    #[test]
    fn store_memory_limit_threads_and_checkpoints() {
        let up = "[upstream]\nurl = \"http://127.0.0.1:3000\"\n";
        let s = load_str(up, &[]).unwrap();
        assert_eq!(s.store.duckdb, StoreOptions::default());
        assert_eq!(s.store.duckdb.memory_limit, 512 << 20);
        let s = load_str(
            &format!("{up}[store]\nmemory_limit = \"2GiB\"\n"),
            &[("TOLLGATE_STORE_THREADS", "1")],
        )
        .unwrap();
        assert_eq!(s.store.duckdb.memory_limit, 2 << 30);
        assert_eq!(s.store.duckdb.threads, 1);
        let e = load_str(
            &format!("{up}[store]\nmemory_limit = \"512MB\"\nthreads = 5000\n"),
            &[],
        )
        .unwrap_err();
        assert!(
            e.0.iter()
                .any(|m| m.starts_with("store.memory_limit: \"512MB\" is not a size")),
            "{e}"
        );
        assert!(e.0.iter().any(|m| m.starts_with("store.threads")), "{e}");
        let e = load_str(up, &[("TOLLGATE_STORE_MEMORY_LIMIT", "1MiB")]).unwrap_err();
        assert!(e.0.iter().any(|m| m.contains("too small")), "{e}");
        // The idle limit: 48 MiB by default, at most the full one, at least 16 MiB.
        assert_eq!(s.store.duckdb.idle_memory_limit, 48 << 20);
        let small = load_str(up, &[("TOLLGATE_STORE_MEMORY_LIMIT", "32MiB")]).unwrap();
        assert_eq!(small.store.duckdb.idle_memory_limit, 32 << 20);
        let e = load_str(up, &[("TOLLGATE_STORE_IDLE_MEMORY_LIMIT", "8MiB")]).unwrap_err();
        assert!(
            e.0.iter()
                .any(|m| m.starts_with("store.idle_memory_limit: \"8MiB\" is too small")),
            "{e}"
        );
        assert_eq!(s.store.duckdb.checkpoint_threshold, 64 << 20);
        let s = load_str(up, &[("TOLLGATE_STORE_CHECKPOINT_THRESHOLD", "256MiB")]).unwrap();
        assert_eq!(s.store.duckdb.checkpoint_threshold, 256 << 20);
        for bad in ["2GiB", "512KiB", "lots"] {
            let e = load_str(up, &[("TOLLGATE_STORE_CHECKPOINT_THRESHOLD", bad)]).unwrap_err();
            assert!(
                e.0.iter()
                    .any(|m| m.starts_with("store.checkpoint_threshold")),
                "{bad}: {e}"
            );
        }
        assert_eq!(
            s.store.duckdb.dedup_horizon,
            Duration::from_secs(7 * 86_400)
        );
        let s = load_str(&format!("{up}[store]\ndedup_days = 1\n"), &[]).unwrap();
        assert_eq!(s.store.duckdb.dedup_horizon, Duration::from_secs(86_400));
        assert_eq!(s.store.duckdb.dedup_max_keys, 1_000_000);
        let s = load_str(up, &[("TOLLGATE_STORE_DEDUP_MAX_KEYS", "5000")]).unwrap();
        assert_eq!(s.store.duckdb.dedup_max_keys, 5000);
        let e = load_str(up, &[("TOLLGATE_STORE_DEDUP_MAX_KEYS", "10")]).unwrap_err();
        assert!(
            e.0.iter()
                .any(|m| m.starts_with("store.dedup_max_keys: 10 is out of range")),
            "{e}"
        );
        for bad in ["0", "367"] {
            let e = load_str(up, &[("TOLLGATE_STORE_DEDUP_DAYS", bad)]).unwrap_err();
            assert!(
                e.0.iter()
                    .any(|m| m.starts_with(&format!("store.dedup_days: {bad} is out of range"))),
                "{bad}: {e}"
            );
        }
    }

    /// A mistake in a section's keys hides neither its other mistakes nor its good keys.
    #[test]
    fn every_bad_key_of_a_section_is_reported_and_its_good_keys_kept() {
        let e = load_str(
            "[upstream]\nurl = \"http://127.0.0.1:3000\"\nurll = 1\n\
             [server]\nthreads = \"x\"\nlisten = \"nowhere\"\nadmin_tokn = \"t\"\n",
            &[],
        )
        .unwrap_err();
        let has = |prefix: &str| e.0.iter().any(|m| m.starts_with(prefix));
        assert!(has("upstream.urll: unknown field"), "{e}");
        assert!(has("server.threads: invalid type"), "{e}");
        assert!(has("server.admin_tokn: unknown field"), "{e}");
        assert!(has("server.listen: \"nowhere\""), "{e}");
        assert!(!has("upstream.url:"), "the url was given: {e}");
        assert_eq!(e.0.len(), 4, "{e}");
    }

    #[test]
    fn missing_upstream_is_an_error_naming_the_key() {
        let e = load_str("", &[]).unwrap_err();
        assert!(e.0.iter().any(|m| m.starts_with("upstream.url")), "{e}");
    }

    #[test]
    fn env_overrides_file_and_cli_overrides_env() {
        let s = load_str(
            "[upstream]\nurl = \"http://127.0.0.1:3000\"\n[capture]\nenabled = true\n",
            &[
                ("TOLLGATE_CAPTURE_ENABLED", "false"),
                ("TOLLGATE_SERVER_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1"),
            ],
        )
        .unwrap();
        assert!(!s.capture.enabled);
        assert_eq!(s.trusted_proxies.len(), 2);

        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.toml");
        std::fs::write(&p, "[server]\nlisten = \"127.0.0.1:1\"\n").unwrap();
        let s = load(
            Some(&p),
            [(
                "TOLLGATE_SERVER_LISTEN".to_string(),
                "127.0.0.1:2".to_string(),
            )],
            &Overrides {
                upstream: Some("http://localhost:3000".into()),
                listen: Some("127.0.0.1:3".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(s.listen.port(), 3);
    }

    #[test]
    fn admin_hosts_from_one_or_several_env_values() {
        let ok = "[upstream]\nurl = \"http://127.0.0.1:3000\"\n";
        let s = load_str(
            ok,
            &[("TOLLGATE_SERVER_ADMIN_HOSTS", "Analytics.Example.com")],
        )
        .unwrap();
        assert_eq!(s.admin_hosts, ["analytics.example.com"]);
        let s = load_str(ok, &[("TOLLGATE_SERVER_ADMIN_HOSTS", "a.example, [::1]")]).unwrap();
        assert_eq!(s.admin_hosts, ["a.example", "::1"]);
        assert_eq!(s.admin_session_ttl.as_secs(), 12 * 3600);
        let e = load_str(
            ok,
            &[
                ("TOLLGATE_SERVER_ADMIN_HOSTS", "a.example:9080"),
                ("TOLLGATE_SERVER_ADMIN_SESSION_MINS", "0"),
                ("TOLLGATE_SERVER_ADMIN_MAX_CONNECTIONS", "0"),
                ("TOLLGATE_SERVER_ADMIN_HEADER_TIMEOUT_SECS", "0"),
            ],
        )
        .unwrap_err()
        .to_string();
        for key in [
            "server.admin_hosts[0]",
            "server.admin_session_mins",
            "server.admin_max_connections",
            "server.admin_header_timeout_secs",
        ] {
            assert!(e.contains(key), "{key} missing from:\n{e}");
        }
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let e = load_str(
            r#"
[server]
listen = "localhost"
[upstream]
url = "localhost:3000"
[[capture.rules]]
name = "register"
status = "7xx"
[pipeline]
batch_size = 0
"#,
            &[],
        )
        .unwrap_err();
        let text = e.to_string();
        for key in [
            "server.listen",
            "upstream.url",
            "capture.rules[0].status",
            "pipeline.batch_size",
        ] {
            assert!(text.contains(key), "{key} missing from:\n{text}");
        }
        assert_eq!(e.0.len(), 4, "{text}");
    }

    #[test]
    fn env_typos_in_known_sections_are_errors_and_other_variables_are_ignored() {
        let ok = "[upstream]\nurl = \"http://127.0.0.1:3000\"\n";
        assert!(load_str(ok, &[("TOLLGATE_BIN", "/x"), ("TOLLGATE_FOO_BAR", "1")]).is_ok());
        let e = load_str(ok, &[("TOLLGATE_CAPTURE_ENABLD", "false")]).unwrap_err();
        assert!(e.to_string().contains("enabld"), "{e}");
    }

    #[test]
    fn unknown_keys_and_sections_are_named() {
        let e = load_str(
            "[upstream]\nurl = \"http://a:1\"\nurll = 1\n[serverr]\nx = 1\n",
            &[],
        )
        .unwrap_err();
        let text = e.to_string();
        // Named down to the key now, not only the section.
        assert!(text.contains("upstream.urll: unknown field"), "{text}");
        assert!(text.contains("serverr: unknown section"), "{text}");
    }

    const UP: &str = "[upstream]\nurl = \"http://127.0.0.1:3000\"\n";

    #[test]
    fn a_sink_cannot_carry_another_types_keys() {
        let e = load_str(
            &format!(
                "{UP}
[[sinks]]
type = \"clickhouse\"
name = \"ch\"
url = \"http://127.0.0.1:8123\"
dir = \"/tmp/export\"

[[sinks]]
type = \"postgres\"
url = \"postgres://u@h/db\"
format = \"ndjson\"

[[sinks]]
type = \"files\"
name = \"lake\"
dir = \"/tmp/export\"
table = \"events\"
"
            ),
            &[],
        )
        .unwrap_err();
        let text = e.to_string();
        for want in [
            r#"sinks[0].dir: not a key of clickhouse sink "ch""#,
            r#"sinks[1].format: not a key of postgres sink "postgres""#,
            r#"sinks[2].table: not a key of files sink "lake""#,
            r#"`dir` is for type = "files""#,
            r#"`table` is for type = "clickhouse" or "postgres""#,
        ] {
            assert!(text.contains(want), "{want} missing from:\n{text}");
        }
        assert_eq!(e.0.len(), 3, "{text}");
    }

    #[test]
    fn sink_mistakes_are_all_reported_at_once() {
        let e = load_str(
            &format!(
                "{UP}
[[sinks]]
type = \"kafka\"

[[sinks]]
type = \"clickhouse\"
urll = \"http://127.0.0.1:8123\"
batch_sise = 5

[[sinks]]
type = \"postgres\"
url = \"127.0.0.1\"

[[sinks]]
url = \"http://127.0.0.1:8123\"
"
            ),
            &[],
        )
        .unwrap_err();
        let text = e.to_string();
        for want in [
            r#"sinks[0].type: "kafka" is not a sink type (expected clickhouse, postgres or files)"#,
            r#"sinks[1].urll: not a key of clickhouse sink "clickhouse" (expected one of name, url, table, batch_size,"#,
            r#"sinks[1].batch_sise: not a key of clickhouse sink"#,
            "sinks[2].url",
            "sinks[3].type: required (expected clickhouse, postgres or files)",
        ] {
            assert!(text.contains(want), "{want} missing from:\n{text}");
        }
        assert_eq!(e.0.len(), 5, "{text}");
    }
}
