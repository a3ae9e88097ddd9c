//! Geo lookup: country, region and city for a client address, from a user-supplied MaxMind DB.
//!
//! The database is optional (`enrich.geo_db`). It can be any City or Country edition of
//! MaxMind's GeoLite2/GeoIP2 or DB-IP's lite files, which share one record layout:
//!
//! ```text
//! { country: { iso_code, names: { en, .. } }, registered_country: { .. },
//!   subdivisions: [ { iso_code, names: { en, .. } }, .. ], city: { names: { en, .. } }, .. }
//! ```
//!
//! [`Geo::open`] runs once at startup and rejects a file that is missing, not a MaxMind DB, or
//! of another type (ASN, ISP, anonymous IP, ..). [`Geo::lookup`] runs once per event in the
//! pipeline and never fails: an unknown address gives an empty [`Location`].

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use maxminddb::{MaxMindDbError, Reader};
use serde::de::{Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::Deserialize;

/// An opened GeoLite2/GeoIP2/DB-IP `.mmdb` (City or Country edition).
///
/// The file is read into memory once rather than memory-mapped. Mapping needs the crate's
/// `mmap` feature and an `unsafe` promise that nobody truncates or rewrites the file while it
/// is mapped, which an updater writing in place breaks (a lookup would then hit SIGBUS). A City
/// file is tens of megabytes; holding that on the heap is a fair price for lookups that cannot
/// crash.
/// `Geo` is `Send + Sync`, so one instance can be shared by every pipeline worker.
#[derive(Debug)]
pub struct Geo {
    reader: Reader<Vec<u8>>,
}

/// Where an address is, as far as the database knows. Every field is `None` when the address
/// is not in the database; a Country edition only ever fills `country`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Location {
    /// ISO 3166-1 alpha-2 code, e.g. `"DE"`.
    pub country: Option<String>,
    /// English name of the largest subdivision (state, province), e.g. `"Bavaria"`, or its
    /// ISO 3166-2 code when the database has no English name.
    pub region: Option<String>,
    /// English city name, e.g. `"Munich"`.
    pub city: Option<String>,
}

/// Why a geo database could not be opened. Each message names the file and suggests a fix.
///
/// The underlying error is part of the message and not also returned by `source()`, so a
/// `{:#}` cause chain does not print it twice.
#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    /// The file could not be read (missing, a directory, no permission).
    #[error(
        "failed to read geo database {path}: {error} (check enrich.geo_db, and that tollgate \
         may read the file)"
    )]
    Read {
        /// The file we tried to read.
        path: PathBuf,
        /// What the OS said.
        error: std::io::Error,
    },

    /// The file is not a MaxMind DB, e.g. a `.tar.gz` download or a CSV edition.
    #[error(
        "geo database {path} is not a MaxMind DB file: {error} (expected an unpacked .mmdb \
         such as GeoLite2-City.mmdb or dbip-city-lite.mmdb)"
    )]
    NotMaxMindDb {
        /// The file we read.
        path: PathBuf,
        /// What the reader found wrong.
        error: MaxMindDbError,
    },

    /// The file is a MaxMind DB, but not one with country/city records (e.g. GeoLite2-ASN).
    #[error(
        "geo database {path} has type {database_type:?}, which has no country or city data \
         (use a City or Country edition: GeoLite2-City, GeoLite2-Country, DBIP-City-Lite, ..)"
    )]
    WrongType {
        /// The file we read.
        path: PathBuf,
        /// `database_type` from the file's metadata.
        database_type: String,
    },
}

impl Geo {
    /// Read and check the database at `path`. This reads the whole file, so call it once at
    /// startup (or on reload), not per event.
    pub fn open(path: &Path) -> Result<Geo, GeoError> {
        // Read the file ourselves so an I/O problem is told apart from a bad file.
        let bytes = std::fs::read(path).map_err(|error| GeoError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        let reader = Reader::from_source(bytes).map_err(|error| GeoError::NotMaxMindDb {
            path: path.to_path_buf(),
            error,
        })?;
        let database_type = &reader.metadata().database_type;
        if !has_location_records(database_type) {
            return Err(GeoError::WrongType {
                path: path.to_path_buf(),
                database_type: database_type.clone(),
            });
        }
        Ok(Geo { reader })
    }

    /// The database type from the metadata, e.g. "GeoLite2-City", "DBIP-City-Lite".
    pub fn database_type(&self) -> &str {
        &self.reader.metadata().database_type
    }

    /// Look up `ip`. Never fails: an address not in the database, or a lookup error (an IPv6
    /// address in an IPv4-only database, a corrupt record), gives an empty Location.
    ///
    /// An IPv4-mapped IPv6 address (`::ffff:1.2.3.4`, what a dual-stack listener reports for
    /// an IPv4 client) is looked up as the IPv4 address, since not every database aliases
    /// `::ffff:0:0/96` to its IPv4 networks.
    pub fn lookup(&self, ip: IpAddr) -> Location {
        // The reader finds IPv4 addresses in IPv6 databases itself: it starts them at the node
        // for ::/96, where MaxMind-format builders keep the IPv4 space.
        let ip = ip.to_canonical();
        let Ok(found) = self.reader.lookup(ip) else {
            return Location::default();
        };
        let Ok(Some(record)) = found.decode::<Record<'_>>() else {
            return Location::default();
        };
        record.into_location()
    }
}

/// Whether a `database_type` names a database with GeoIP2 City/Country records. The names seen
/// in the wild: `GeoLite2-City`, `GeoIP2-Country`, `GeoIP2-City-Europe`, `GeoIP2-Enterprise`
/// (a superset of City), `DBIP-City-Lite`, `DBIP-Country-Lite`.
/// ASN, ISP, domain, connection-type and anonymous-IP databases name none of these words.
fn has_location_records(database_type: &str) -> bool {
    let t = database_type.to_ascii_lowercase();
    ["city", "country", "enterprise"]
        .iter()
        .any(|word| t.contains(word))
}

// The slice of a record we read. Strings borrow from the database buffer and every other key
// (continent, location, postal, traits, names in other languages, ..) is skipped without being
// decoded, so a lookup allocates only the three Strings it returns.

#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow)]
    country: Option<Place<'a>>,
    /// Where the network is registered; the country for networks with no `country` (e.g.
    /// anycast or satellite ranges).
    #[serde(borrow)]
    registered_country: Option<Place<'a>>,
    /// Largest subdivision first. Only the first is decoded.
    #[serde(borrow, default, deserialize_with = "first_only")]
    subdivisions: Option<Place<'a>>,
    #[serde(borrow)]
    city: Option<Place<'a>>,
}

#[derive(Deserialize)]
struct Place<'a> {
    #[serde(borrow)]
    iso_code: Option<&'a str>,
    #[serde(borrow)]
    names: Option<Names<'a>>,
}

#[derive(Deserialize)]
struct Names<'a> {
    #[serde(borrow)]
    en: Option<&'a str>,
}

impl Place<'_> {
    fn name_en(&self) -> Option<&str> {
        self.names.as_ref().and_then(|n| n.en)
    }
}

impl Record<'_> {
    fn into_location(self) -> Location {
        let country = self
            .country
            .as_ref()
            .and_then(|c| c.iso_code)
            .or_else(|| self.registered_country.as_ref().and_then(|c| c.iso_code));
        let region = self
            .subdivisions
            .as_ref()
            .and_then(|s| s.name_en().or(s.iso_code));
        let city = self.city.as_ref().and_then(Place::name_en);
        Location {
            country: country.map(str::to_owned),
            region: region.map(str::to_owned),
            city: city.map(str::to_owned),
        }
    }
}

/// Decode the first element of an array and skip the rest, so a record with many
/// subdivisions costs no allocation.
fn first_only<'de: 'a, 'a, D>(deserializer: D) -> Result<Option<Place<'a>>, D::Error>
where
    D: Deserializer<'de>,
{
    struct First<'a>(std::marker::PhantomData<Place<'a>>);

    impl<'de: 'a, 'a> Visitor<'de> for First<'a> {
        type Value = Option<Place<'a>>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an array of subdivisions")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let first = seq.next_element::<Place<'a>>()?;
            // The decoder must step over the remaining elements to reach the next key.
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(first)
        }
    }

    deserializer.deserialize_seq(First(std::marker::PhantomData))
}
