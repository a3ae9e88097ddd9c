//! A report's query string as serde reads it: each key's values, for a params struct to
//! deserialize from.
//!
//! serde_urlencoded (what axum's `Query` uses) gives a struct one value a key, and refuses a
//! key that comes twice ("duplicate field"). The reports' API repeats keys: `dimension=` adds
//! up (`docs/api.md`), and a single-valued parameter given twice has always taken its last
//! value. Those two rules are all this module adds: a field typed `Vec<_>` gets every value of
//! its key, any other field the last; serde does the rest (which keys, their types, defaults,
//! and each value's parser).

use super::ReportError;
use serde::de::value::{Error, MapDeserializer, SeqDeserializer, StrDeserializer};
use serde::de::{self, Deserialize, DeserializeOwned, Deserializer, IntoDeserializer, Visitor};

/// Query values by key: the keys in the order they first come, each with its values in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query(Vec<(String, Vec<String>)>);

impl Query {
    /// Add `value` to `key`'s values.
    pub fn push(&mut self, key: &str, value: &str) {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some((_, values)) => values.push(value.to_string()),
            None => self.0.push((key.to_string(), vec![value.to_string()])),
        }
    }

    /// `T` from these values: its fields are the keys, and a key it has no field for is
    /// ignored. A bad value is [`ReportError::Invalid`] with the message its parser gave.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, ReportError> {
        let entries = self.0.iter().map(|(k, vs)| (k.as_str(), Values(vs)));
        T::deserialize(MapDeserializer::<_, Error>::new(entries))
            .map_err(|e| ReportError::Invalid(e.to_string()))
    }
}

/// A value parsed by `parse`, whose error (which names its parameter) becomes serde's: for
/// `#[serde(deserialize_with)]` and `Deserialize` impls of parameter types.
pub fn parsed<'de, D, T>(
    d: D,
    parse: impl FnOnce(&str) -> Result<T, ReportError>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    let s = String::deserialize(d)?;
    parse(&s).map_err(de::Error::custom)
}

/// The keys `T` reads: the fields of the struct serde deserializes it from (through a
/// `try_from` too), so that a report takes exactly the keys its params struct has.
pub fn fields<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut fields = &[][..];
    // Stops at the struct, having noted its fields: the error is expected.
    let _ = T::deserialize(Fields(&mut fields));
    fields
}

/// The values of one key: a sequence for a `Vec` field, else the last one.
struct Values<'a>(&'a [String]);

impl Values<'_> {
    fn last(&self) -> StrDeserializer<'_, Error> {
        self.0.last().map_or("", String::as_str).into_deserializer()
    }
}

impl<'de> IntoDeserializer<'de, Error> for Values<'_> {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'de> Deserializer<'de> for Values<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.last().deserialize_any(v)
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_some(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        let mut seq = SeqDeserializer::new(self.0.iter().map(String::as_str));
        let out = v.visit_seq(&mut seq)?;
        seq.end()?;
        Ok(out)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        v: V,
    ) -> Result<V::Value, Error> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Error> {
        self.last().deserialize_enum(name, variants, v)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct tuple tuple_struct map struct identifier ignored_any
    }
}

/// A deserializer that only notes the fields of the struct asked of it.
struct Fields<'a>(&'a mut &'static [&'static str]);

impl<'de> Deserializer<'de> for Fields<'_> {
    type Error = Error;

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Error> {
        *self.0 = fields;
        Err(de::Error::custom("only the fields are read"))
    }

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Error> {
        Err(de::Error::custom("not a struct"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Params {
        one: Option<String>,
        #[serde(default)]
        many: Vec<String>,
        #[serde(default, deserialize_with = "number")]
        n: u32,
    }

    fn number<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        parsed(d, |v| {
            v.parse()
                .map_err(|_| ReportError::Invalid(format!("n={v:?}: expected a number")))
        })
    }

    fn query(pairs: &[(&str, &str)]) -> Query {
        let mut q = Query::default();
        for (k, v) in pairs {
            q.push(k, v);
        }
        q
    }

    #[test]
    fn a_list_takes_every_value_and_a_single_one_the_last() {
        let q = query(&[("many", "a"), ("one", "x"), ("other", "?"), ("many", "b")]);
        let p: Params = q.deserialize().unwrap();
        assert_eq!(
            p,
            Params {
                one: Some("x".into()),
                many: vec!["a".into(), "b".into()],
                n: 0
            }
        );
        let q = query(&[("one", "x"), ("one", "y"), ("n", "7")]);
        let p: Params = q.deserialize().unwrap();
        assert_eq!((p.one.as_deref(), p.many.len(), p.n), (Some("y"), 0, 7));
    }

    #[test]
    fn a_parser_s_error_is_the_message() {
        let e = query(&[("n", "x")]).deserialize::<Params>().unwrap_err();
        assert_eq!(e.to_string(), "n=\"x\": expected a number");
    }

    #[test]
    fn the_keys_are_the_struct_s_fields() {
        assert_eq!(fields::<Params>(), ["one", "many", "n"]);
        assert!(fields::<String>().is_empty());
    }
}
