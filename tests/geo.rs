//! Geo lookup against `.mmdb` files built by the test writer, read by the real reader.

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use common::mmdb::{self, map, s, Entry, Value};
use tollgate::enrich::geo::{Geo, GeoError, Location};

fn net(text: &str) -> ipnet::IpNet {
    text.parse().unwrap()
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn loc(country: &str, region: Option<&str>, city: Option<&str>) -> Location {
    Location {
        country: Some(country.to_string()),
        region: region.map(str::to_string),
        city: city.map(str::to_string),
    }
}

/// Networks from the documentation ranges, two of them nested in a larger one.
fn entries() -> Vec<Entry> {
    vec![
        // The nested networks come first, to show that entry order does not matter.
        Entry {
            net: net("198.51.100.128/25"),
            country: "GB",
            region: Some("Scotland"),
            city: Some("Edinburgh"),
        },
        Entry {
            net: net("2001:db8:1::/48"),
            country: "AT",
            region: Some("Vienna"),
            city: Some("Vienna"),
        },
        Entry {
            net: net("198.51.100.0/24"),
            country: "GB",
            region: Some("England"),
            city: Some("London"),
        },
        Entry {
            net: net("203.0.113.7/32"),
            country: "US",
            region: None,
            city: None,
        },
        Entry {
            net: net("2001:db8::/32"),
            country: "DE",
            region: Some("Bavaria"),
            city: Some("Munich"),
        },
    ]
}

fn city_db(dir: &Path) -> PathBuf {
    let path = dir.join("GeoLite2-City.mmdb");
    mmdb::write_city_db(&path, &entries()).unwrap();
    path
}

#[test]
fn finds_ipv4_and_ipv6_networks_with_both_record_sizes() {
    let dir = common::temp_dir();
    for record_size in [24, 28, 32] {
        let path = dir.path().join(format!("city-{record_size}.mmdb"));
        let records: Vec<_> = entries()
            .iter()
            .map(|e| (e.net, mmdb::city_record(e)))
            .collect();
        mmdb::write_records(&path, "GeoLite2-City", record_size, &records).unwrap();
        let geo = Geo::open(&path).unwrap();
        assert_eq!(geo.database_type(), "GeoLite2-City");

        let london = loc("GB", Some("England"), Some("London"));
        assert_eq!(geo.lookup(ip("198.51.100.1")), london, "{record_size}");
        assert_eq!(geo.lookup(ip("198.51.100.127")), london, "{record_size}");
        assert_eq!(
            geo.lookup(ip("2001:db8:ffff::1")),
            loc("DE", Some("Bavaria"), Some("Munich")),
            "{record_size}"
        );
        assert_eq!(geo.lookup(ip("203.0.113.7")), loc("US", None, None));
    }
}

#[test]
fn most_specific_network_wins() {
    let dir = common::temp_dir();
    let geo = Geo::open(&city_db(dir.path())).unwrap();

    let edinburgh = loc("GB", Some("Scotland"), Some("Edinburgh"));
    assert_eq!(geo.lookup(ip("198.51.100.128")), edinburgh);
    assert_eq!(geo.lookup(ip("198.51.100.255")), edinburgh);
    assert_eq!(
        geo.lookup(ip("198.51.100.0")),
        loc("GB", Some("England"), Some("London"))
    );
    assert_eq!(
        geo.lookup(ip("2001:db8:1:2::3")),
        loc("AT", Some("Vienna"), Some("Vienna"))
    );
    assert_eq!(
        geo.lookup(ip("2001:db8:2::3")),
        loc("DE", Some("Bavaria"), Some("Munich"))
    );
}

#[test]
fn address_in_no_network_gives_empty_location() {
    let dir = common::temp_dir();
    let geo = Geo::open(&city_db(dir.path())).unwrap();
    for address in [
        "198.51.101.0",
        "203.0.113.6",
        "203.0.113.8",
        "8.8.8.8",
        "0.0.0.0",
        "255.255.255.255",
        "2001:db9::1",
        "::1",
        "ffff::",
    ] {
        assert_eq!(geo.lookup(ip(address)), Location::default(), "{address}");
    }

    let empty = dir.path().join("empty.mmdb");
    mmdb::write_city_db(&empty, &[]).unwrap();
    let geo = Geo::open(&empty).unwrap();
    assert_eq!(geo.lookup(ip("198.51.100.1")), Location::default());
    assert_eq!(geo.lookup(ip("2001:db8::1")), Location::default());
}

#[test]
fn ipv4_mapped_ipv6_address_is_looked_up_as_ipv4() {
    // The writer, unlike MaxMind, does not alias ::ffff:0:0/96 to the IPv4 networks, so this
    // is found only because Geo unmaps the address.
    let dir = common::temp_dir();
    let geo = Geo::open(&city_db(dir.path())).unwrap();
    assert_eq!(
        geo.lookup(ip("::ffff:198.51.100.200")),
        loc("GB", Some("Scotland"), Some("Edinburgh"))
    );
}

#[test]
fn fallbacks_and_unusual_records() {
    let dir = common::temp_dir();
    let path = dir.path().join("GeoIP2-City.mmdb");
    let names = |en: &str| map([("de", s("x")), ("en", s(en)), ("fr", s("y"))]);
    let records = vec![
        // An anycast network: no `country`, only `registered_country`; extra keys everywhere.
        (
            net("192.0.2.0/24"),
            map([
                (
                    "continent",
                    map([("code", s("EU")), ("names", names("Europe"))]),
                ),
                ("location", map([("accuracy_radius", Value::U16(1000))])),
                (
                    "registered_country",
                    map([("iso_code", s("NL")), ("names", names("Netherlands"))]),
                ),
                ("traits", map([("is_anycast", Value::U16(1))])),
            ]),
        ),
        // A subdivision with only an ISO code; several subdivisions, the first one wins.
        (
            net("2001:db8::/48"),
            map([
                ("country", map([("iso_code", s("ES"))])),
                (
                    "subdivisions",
                    Value::Array(vec![
                        map([("iso_code", s("CT"))]),
                        map([("iso_code", s("B")), ("names", names("Barcelona"))]),
                    ]),
                ),
                ("city", map([("names", names("Barcelona"))])),
                ("postal", map([("code", s("08001"))])),
            ]),
        ),
        // A record that is not a map at all: no Location, and no panic.
        (net("2001:db8:1::/48"), s("just a string")),
        // Keys with the wrong types: the lookup gives up quietly.
        (
            net("2001:db8:2::/48"),
            map([("country", map([("iso_code", Value::U32(7))]))]),
        ),
    ];
    mmdb::write_records(&path, "GeoIP2-City", 24, &records).unwrap();
    let geo = Geo::open(&path).unwrap();

    assert_eq!(geo.lookup(ip("192.0.2.1")), loc("NL", None, None));
    assert_eq!(
        geo.lookup(ip("2001:db8::1")),
        loc("ES", Some("CT"), Some("Barcelona"))
    );
    assert_eq!(geo.lookup(ip("2001:db8:1::1")), Location::default());
    assert_eq!(geo.lookup(ip("2001:db8:2::1")), Location::default());
}

#[test]
fn long_strings_use_the_longer_size_encodings() {
    // Sizes 29..=284 take one extra size byte, 285..=65820 two.
    let dir = common::temp_dir();
    let path = dir.path().join("long.mmdb");
    let city = "Llanfairpwllgwyngyllgogerychwyrndrobwllllantysiliogogogoch";
    let region = "R".repeat(300);
    let record = map([
        ("country", map([("iso_code", s("GB"))])),
        (
            "subdivisions",
            Value::Array(vec![map([("names", map([("en", s(&region))]))])]),
        ),
        ("city", map([("names", map([("en", s(city))]))])),
    ]);
    mmdb::write_records(&path, "GeoLite2-City", 28, &[(net("192.0.2.0/24"), record)]).unwrap();
    let geo = Geo::open(&path).unwrap();
    assert_eq!(
        geo.lookup(ip("192.0.2.9")),
        loc("GB", Some(&region), Some(city))
    );
}

#[test]
fn data_beyond_24_bits_uses_the_high_nibbles_of_28_bit_records() {
    // A 16.8 MB filler string (the longest size encoding) pushes the last record's pointer
    // past 2^24 while its sibling's stays below: the shared nibble byte holds 0 and 1.
    // (Records are laid out in entry order among networks of the same prefix length.)
    let dir = common::temp_dir();
    let path = dir.path().join("big.mmdb");
    let filler = s(&"x".repeat(16_800_000));
    let country = |code: &str| map([("country", map([("iso_code", s(code))]))]);
    let records = [
        (net("192.0.2.0/25"), country("FR")),
        (net("203.0.113.0/25"), filler),
        (net("192.0.2.128/25"), country("IT")),
    ];
    let error = mmdb::write_records(&path, "GeoLite2-Country", 24, &records).unwrap_err();
    assert!(error.to_string().contains("too big"), "{error}");

    mmdb::write_records(&path, "GeoLite2-Country", 28, &records).unwrap();
    let geo = Geo::open(&path).unwrap();
    assert_eq!(geo.lookup(ip("192.0.2.1")), loc("FR", None, None));
    assert_eq!(geo.lookup(ip("192.0.2.200")), loc("IT", None, None));
    // The filler is a string, not a map: no Location, and no panic.
    assert_eq!(geo.lookup(ip("203.0.113.1")), Location::default());
    maxminddb::Reader::open_readfile(&path)
        .unwrap()
        .verify()
        .unwrap();
}

#[test]
fn accepts_city_and_country_editions_of_maxmind_and_dbip() {
    let dir = common::temp_dir();
    for database_type in [
        "GeoLite2-City",
        "GeoLite2-Country",
        "GeoIP2-City",
        "GeoIP2-Country",
        "GeoIP2-Enterprise",
        "DBIP-City-Lite",
        "DBIP-Country-Lite",
    ] {
        let path = dir.path().join(format!("{database_type}.mmdb"));
        mmdb::write_db_with_type(&path, database_type, &entries()).unwrap();
        let geo = Geo::open(&path).unwrap_or_else(|e| panic!("{database_type}: {e}"));
        assert_eq!(geo.database_type(), database_type);
        assert_eq!(
            geo.lookup(ip("203.0.113.7")),
            loc("US", None, None),
            "{database_type}"
        );
    }
}

fn assert_names_path(error: &GeoError, path: &Path) {
    let message = error.to_string();
    assert!(
        message.contains(&path.display().to_string()),
        "{message:?} does not name {}",
        path.display()
    );
}

#[test]
fn missing_file_is_an_error_naming_the_path() {
    let dir = common::temp_dir();
    let path = dir.path().join("nope.mmdb");
    let error = Geo::open(&path).unwrap_err();
    assert!(matches!(error, GeoError::Read { .. }), "{error:?}");
    assert_names_path(&error, &path);

    // A directory cannot be read either.
    let error = Geo::open(dir.path()).unwrap_err();
    assert!(matches!(error, GeoError::Read { .. }), "{error:?}");
    assert_names_path(&error, dir.path());
}

#[test]
fn non_mmdb_file_is_an_error_naming_the_path() {
    let dir = common::temp_dir();
    let path = dir.path().join("GeoLite2-City.tar.gz");
    // Arbitrary bytes from a fixed-seed generator, so a failure can be reproduced.
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let bytes: Vec<u8> = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    std::fs::write(&path, bytes).unwrap();
    let error = Geo::open(&path).unwrap_err();
    assert!(matches!(error, GeoError::NotMaxMindDb { .. }), "{error:?}");
    assert_names_path(&error, &path);

    let path = dir.path().join("empty.mmdb");
    std::fs::write(&path, b"").unwrap();
    let error = Geo::open(&path).unwrap_err();
    assert!(matches!(error, GeoError::NotMaxMindDb { .. }), "{error:?}");
    assert_names_path(&error, &path);
}

#[test]
fn asn_database_is_rejected_with_its_type_and_path() {
    let dir = common::temp_dir();
    for database_type in [
        "GeoLite2-ASN",
        "GeoIP2-ISP",
        "GeoIP2-Anonymous-IP",
        "DBIP-ASN-Lite",
    ] {
        let path = dir.path().join(format!("{database_type}.mmdb"));
        mmdb::write_db_with_type(&path, database_type, &entries()).unwrap();
        let error = Geo::open(&path).unwrap_err();
        assert!(matches!(error, GeoError::WrongType { .. }), "{error:?}");
        assert_names_path(&error, &path);
        assert!(error.to_string().contains(database_type), "{error}");
    }
}

/// The file is a valid MaxMind DB by the reader's own standards, not just ours.
#[test]
fn writer_output_is_a_valid_maxmind_db() {
    let dir = common::temp_dir();
    let path = city_db(dir.path());
    let reader = maxminddb::Reader::open_readfile(&path).unwrap();
    reader.verify().unwrap();

    let m = reader.metadata();
    assert_eq!(m.binary_format_major_version, 2);
    assert_eq!(m.binary_format_minor_version, 0);
    assert_eq!(m.database_type, "GeoLite2-City");
    assert_eq!(m.ip_version, 6);
    assert_eq!(m.record_size, 24);
    assert_eq!(m.languages, ["en"]);
    assert_eq!(
        m.description,
        BTreeMap::from([("en".to_string(), "tollgate test database".to_string())])
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        m.build_epoch <= now && m.build_epoch + 600 > now,
        "{}",
        m.build_epoch
    );
    // Tree, separator and data fill the file up to the metadata marker, and the tree has no
    // more nodes than there are prefix bits to place.
    let bytes = std::fs::read(&path).unwrap();
    let tree_len = m.node_count as usize * 24 / 4;
    assert_eq!(&bytes[tree_len..tree_len + 16], &[0; 16]);
    assert!(m.node_count as usize <= 128 * entries().len());

    // Records decode as the reader's own GeoLite2 City type.
    let found = reader.lookup(ip("198.51.100.200")).unwrap();
    assert_eq!(found.network().unwrap().to_string(), "198.51.100.128/25");
    let city: maxminddb::geoip2::City = found.decode().unwrap().unwrap();
    assert_eq!(city.country.iso_code, Some("GB"));
    assert_eq!(city.country.names.english, Some("GB"));
    assert_eq!(city.subdivisions[0].names.english, Some("Scotland"));
    assert_eq!(city.city.names.english, Some("Edinburgh"));

    let found = reader.lookup(ip("2001:db8:1::1")).unwrap();
    assert_eq!(found.network().unwrap().to_string(), "2001:db8:1::/48");

    // Walking the whole tree finds exactly the networks written, the nested ones having
    // carved their parents into pieces.
    let mut networks: Vec<String> = reader
        .networks(Default::default())
        .unwrap()
        .map(|r| r.unwrap().network().unwrap().to_string())
        .collect();
    networks.sort();
    // 2001:db8::/32 minus 2001:db8:1::/48 is one piece per bit of the third group: the /33 to
    // /47 siblings of the path 0000 0000 0000 000, then 2001:db8::/48.
    let mut expected: Vec<String> = (33..=47)
        .map(|prefix| format!("2001:db8:{:x}::/{prefix}", 1u32 << (48 - prefix)))
        .collect();
    expected.extend(
        [
            "2001:db8::/48",
            "2001:db8:1::/48",
            "198.51.100.0/25",
            "198.51.100.128/25",
            "203.0.113.7/32",
        ]
        .map(String::from),
    );
    expected.sort();
    assert_eq!(networks, expected);
}
