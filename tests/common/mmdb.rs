//! A small MaxMind DB writer, so geo tests can build the `.mmdb` files they read.
//!
//! Written from the format spec (<https://maxmind.github.io/MaxMind-DB/>, v2.0). A file is
//!
//! ```text
//! [search tree: node_count nodes of two records][16 zero bytes][data section]
//! ["\xAB\xCD\xEFMaxMind.com"][metadata map]
//! ```
//!
//! The tree is binary, one level per bit of a 128-bit address. A record holds a node number
//! (< node_count), "no data" (== node_count), or a data pointer (node_count + 16 + offset in
//! the data section). Databases are always IPv6 (`ip_version` 6) with IPv4 networks stored
//! under `::/96`, where MaxMind puts them and where readers start IPv4 lookups. Unlike
//! MaxMind's builds, `::ffff:0:0/96` is not aliased to the IPv4 space.
//!
//! Networks may nest: a network inside another one overrides it, whatever the order of the
//! entries. Identical records are written once per network (no pointer deduplication).

use std::io;
use std::net::IpAddr;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use ipnet::IpNet;

/// One network of a City-style database.
pub struct Entry {
    pub net: IpNet,
    /// ISO 3166-1 alpha-2 code.
    pub country: &'static str,
    /// English name of the first subdivision.
    pub region: Option<&'static str>,
    /// English city name.
    pub city: Option<&'static str>,
}

/// A data section value. Only the types the geo records and the metadata need.
#[derive(Debug, Clone)]
pub enum Value {
    Str(String),
    U16(u16),
    U32(u32),
    U64(u64),
    Map(Vec<(String, Value)>),
    Array(Vec<Value>),
}

/// A string value.
pub fn s(text: &str) -> Value {
    Value::Str(text.to_string())
}

/// A map value, keys in the given order.
pub fn map<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    Value::Map(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

/// Write a City-style database (database_type "GeoLite2-City", ip_version 6, record_size 24,
/// IPv4 networks under ::/96), with records shaped like GeoLite2's
/// { country: { iso_code, names: { en } }, subdivisions: [ { names: { en } } ],
///   city: { names: { en } } }.
pub fn write_city_db(path: &Path, entries: &[Entry]) -> io::Result<()> {
    write_db_with_type(path, "GeoLite2-City", entries)
}

/// Same but with an arbitrary database_type string (to test rejection of an ASN database).
pub fn write_db_with_type(path: &Path, database_type: &str, entries: &[Entry]) -> io::Result<()> {
    let records: Vec<(IpNet, Value)> = entries.iter().map(|e| (e.net, city_record(e))).collect();
    write_records(path, database_type, 24, &records)
}

/// The GeoLite2-City record for `entry`. The writer knows no country names, so the country's
/// English name repeats its code. `geoname_id`s are made up; they are there so readers have
/// keys to skip, as in real files.
pub fn city_record(entry: &Entry) -> Value {
    let country = map([
        ("geoname_id", Value::U32(1)),
        ("iso_code", s(entry.country)),
        ("names", map([("en", s(entry.country))])),
    ]);
    let mut record = vec![
        ("country".to_string(), country.clone()),
        ("registered_country".to_string(), country),
    ];
    if let Some(region) = entry.region {
        let subdivision = map([
            ("geoname_id", Value::U32(2)),
            ("names", map([("en", s(region))])),
        ]);
        record.push(("subdivisions".to_string(), Value::Array(vec![subdivision])));
    }
    if let Some(city) = entry.city {
        let city = map([
            ("geoname_id", Value::U32(3)),
            ("names", map([("en", s(city))])),
        ]);
        record.push(("city".to_string(), city));
    }
    Value::Map(record)
}

/// Write a database mapping each network to an arbitrary record. `record_size` is 24, 28 or
/// 32 bits; the call fails if the tree and data do not fit in it.
pub fn write_records(
    path: &Path,
    database_type: &str,
    record_size: u16,
    records: &[(IpNet, Value)],
) -> io::Result<()> {
    if !matches!(record_size, 24 | 28 | 32) {
        return Err(invalid(format!(
            "record_size {record_size} is not 24, 28 or 32"
        )));
    }

    // Encode every record into the data section and insert its network into the tree. Less
    // specific networks go in first, so a nested network splits the leaf of its parent.
    let mut order: Vec<&(IpNet, Value)> = records.iter().collect();
    order.sort_by_key(|(net, _)| net.prefix_len() + if net.addr().is_ipv4() { 96 } else { 0 });
    let mut data = Vec::new();
    let mut tree = Tree::new();
    for (net, value) in order {
        let offset = data.len();
        encode(value, &mut data);
        let (bits, prefix_len) = tree_key(net);
        if prefix_len == 0 {
            return Err(invalid(format!("{net}: ::/0 is not supported")));
        }
        tree.insert(bits, prefix_len, offset);
    }

    let mut file = tree.serialize(record_size, data.len())?;
    file.extend_from_slice(&[0; 16]);
    file.extend_from_slice(&data);
    file.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
    encode(
        &metadata(database_type, tree.nodes.len(), record_size),
        &mut file,
    );
    std::fs::write(path, file)
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

fn metadata(database_type: &str, node_count: usize, record_size: u16) -> Value {
    let build_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    map([
        ("binary_format_major_version", Value::U16(2)),
        ("binary_format_minor_version", Value::U16(0)),
        ("build_epoch", Value::U64(build_epoch)),
        ("database_type", s(database_type)),
        ("description", map([("en", s("tollgate test database"))])),
        ("languages", Value::Array(vec![s("en")])),
        ("ip_version", Value::U16(6)),
        ("node_count", Value::U32(node_count as u32)),
        ("record_size", Value::U16(record_size)),
    ])
}

/// The 128-bit tree key and prefix length of a network; IPv4 lives under ::/96.
fn tree_key(net: &IpNet) -> (u128, u8) {
    match net.trunc().addr() {
        IpAddr::V4(a) => (u128::from(u32::from(a)), net.prefix_len() + 96),
        IpAddr::V6(a) => (u128::from(a), net.prefix_len()),
    }
}

// ---- search tree ----

/// One of a node's two children, before numbers are assigned.
#[derive(Debug, Clone, Copy)]
enum Record {
    Empty,
    Node(usize),
    /// Offset into the data section.
    Data(usize),
}

/// Nodes in creation order; node 0 is the root, as readers expect.
struct Tree {
    nodes: Vec<[Record; 2]>,
}

impl Tree {
    fn new() -> Tree {
        Tree {
            nodes: vec![[Record::Empty; 2]],
        }
    }

    /// Point the first `prefix_len` bits of `bits` at data `offset`.
    fn insert(&mut self, bits: u128, prefix_len: u8, offset: usize) {
        let mut node = 0;
        for depth in 0..prefix_len {
            let bit = ((bits >> (127 - depth)) & 1) as usize;
            if depth + 1 == prefix_len {
                // Inserting shortest prefixes first means nothing more specific is below here.
                assert!(
                    !matches!(self.nodes[node][bit], Record::Node(_)),
                    "networks are inserted least specific first"
                );
                self.nodes[node][bit] = Record::Data(offset);
                return;
            }
            node = match self.nodes[node][bit] {
                Record::Node(next) => next,
                // Going below a leaf: the new node inherits the leaf on both sides, so the rest
                // of the enclosing network keeps its data.
                leaf => {
                    self.nodes.push([leaf; 2]);
                    let next = self.nodes.len() - 1;
                    self.nodes[node][bit] = Record::Node(next);
                    next
                }
            };
        }
    }

    /// The tree as bytes: each node is its left then its right record, big-endian.
    fn serialize(&self, record_size: u16, data_len: usize) -> io::Result<Vec<u8>> {
        let node_count = self.nodes.len();
        let limit = 1u64 << record_size;
        if (node_count + 16 + data_len) as u64 >= limit {
            return Err(invalid(format!(
                "database too big for {record_size}-bit records"
            )));
        }
        let value = |r: Record| -> u32 {
            (match r {
                Record::Empty => node_count,
                Record::Node(n) => n,
                Record::Data(offset) => node_count + 16 + offset,
            }) as u32
        };
        let mut out = Vec::with_capacity(node_count * usize::from(record_size) / 4);
        for [left, right] in self.nodes.iter().copied() {
            let (l, r) = (value(left), value(right));
            match record_size {
                24 => {
                    out.extend_from_slice(&l.to_be_bytes()[1..]);
                    out.extend_from_slice(&r.to_be_bytes()[1..]);
                }
                // Seven bytes: the low 24 bits of each record, with their high nibbles packed
                // in the middle byte (left's in the upper half).
                28 => {
                    out.extend_from_slice(&l.to_be_bytes()[1..]);
                    out.push((((l >> 24) & 0x0F) << 4) as u8 | ((r >> 24) & 0x0F) as u8);
                    out.extend_from_slice(&r.to_be_bytes()[1..]);
                }
                _ => {
                    out.extend_from_slice(&l.to_be_bytes());
                    out.extend_from_slice(&r.to_be_bytes());
                }
            }
        }
        Ok(out)
    }
}

// ---- data section encoding ----

// Type numbers from the spec. Types above 7 are "extended": the control byte says 0 and the
// next byte holds the type minus 7.
const STRING: u8 = 2;
const UINT16: u8 = 5;
const UINT32: u8 = 6;
const MAP: u8 = 7;
const UINT64: u8 = 9;
const ARRAY: u8 = 11;

/// Append `value` to `out`.
fn encode(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Str(text) => {
            control(STRING, text.len(), out);
            out.extend_from_slice(text.as_bytes());
        }
        Value::U16(n) => uint(UINT16, u64::from(*n), out),
        Value::U32(n) => uint(UINT32, u64::from(*n), out),
        Value::U64(n) => uint(UINT64, *n, out),
        Value::Map(pairs) => {
            control(MAP, pairs.len(), out);
            for (key, value) in pairs {
                encode(&Value::Str(key.clone()), out);
                encode(value, out);
            }
        }
        Value::Array(items) => {
            control(ARRAY, items.len(), out);
            for item in items {
                encode(item, out);
            }
        }
    }
}

/// An unsigned integer: its big-endian bytes without leading zeros (0 has no bytes).
fn uint(type_number: u8, n: u64, out: &mut Vec<u8>) {
    let bytes = n.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count();
    control(type_number, bytes.len() - skip, out);
    out.extend_from_slice(&bytes[skip..]);
}

/// The control byte (type in the top 3 bits, size in the low 5), the extended type byte if
/// any, then the size bytes for sizes of 29 and up.
fn control(type_number: u8, size: usize, out: &mut Vec<u8>) {
    let (size_field, extra): (u8, Vec<u8>) = match size {
        0..=28 => (size as u8, vec![]),
        29..=284 => (29, vec![(size - 29) as u8]),
        285..=65_820 => (30, ((size - 285) as u16).to_be_bytes().to_vec()),
        _ => (31, ((size - 65_821) as u32).to_be_bytes()[1..].to_vec()),
    };
    if type_number <= 7 {
        out.push(type_number << 5 | size_field);
    } else {
        out.push(size_field);
        out.push(type_number - 7);
    }
    out.extend_from_slice(&extra);
}
