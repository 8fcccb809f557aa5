//! Canonical JSON: the exact bytes that are signed for certificates, revocation lists, licenses
//! and package statements.
//!
//! Rules: object keys sorted by their UTF-8 bytes (sorted here explicitly, so the output does not
//! depend on which map type serde_json was compiled with), no insignificant whitespace, integers
//! only (a float is an error: two encoders can print the same float differently, which would make
//! signatures unverifiable), strings escaped the way serde_json escapes them, UTF-8 throughout.
//!
//! Hand-written because no well-kept crate implements exactly this subset over `serde_json::Value`
//! (the RFC 8785 crates also canonicalize floats, which we want to reject outright); the whole
//! encoder is the forty lines below.
//!
//! A document that names a key twice in one object has no canonical form: serde_json keeps the
//! last value, other JSON readers keep the first (or refuse), so the signature would cover one
//! reading while another tool acts on the other — and a key can be put in front of the signed
//! one without breaking the signature. Signed documents are therefore read with
//! [`from_slice_unique`], which refuses them; `statement.json` is refused by [`is_canonical`]
//! (the parsed value, re-encoded, is shorter than the bytes).

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Why a value has no canonical form.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CanonicalError {
    /// A non-integer number was found at this JSON pointer.
    #[error("floating-point number at `{0}`: only integers are allowed in signed documents")]
    Float(String),
    /// Nesting deeper than [`MAX_DEPTH`].
    #[error("document nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// Serializing a typed value into JSON failed.
    #[error("cannot represent the value as JSON")]
    Serialize(#[source] serde_json::Error),
}

/// Deepest nesting accepted; our documents are at most four levels deep.
pub const MAX_DEPTH: usize = 32;

/// Canonical bytes of `value`.
pub fn to_vec(value: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::new();
    write(value, &mut out, &mut String::new(), 0)?;
    Ok(out)
}

/// Canonical bytes of any serializable value.
pub fn to_vec_of<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, CanonicalError> {
    to_vec(&serde_json::to_value(value).map_err(CanonicalError::Serialize)?)
}

/// Whether `bytes` are already exactly the canonical form of the JSON they contain.
pub fn is_canonical(bytes: &[u8]) -> bool {
    serde_json::from_slice::<Value>(bytes)
        .ok()
        .and_then(|v| to_vec(&v).ok())
        .is_some_and(|c| c == bytes)
}

/// Parse `bytes` as one JSON value like `serde_json::from_slice`, but refuse an object that
/// names the same key twice instead of keeping the last value.
///
/// The refusal is the only *data* error this parser produces (`serde_json::Error::is_data`);
/// its message names the key and the position (`duplicate key `serial` at line 3 column 14`).
/// Everything else (syntax, end of input, nesting beyond serde_json's limit) is what
/// `serde_json::from_slice` reports.
pub fn from_slice_unique(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    serde_json::from_slice::<Unique>(bytes).map(|u| u.0)
}

/// A [`Value`] whose objects were read without a repeated key.
struct Unique(Value);

impl<'de> Deserialize<'de> for Unique {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UniqueVisitor).map(Unique)
    }
}

struct UniqueVisitor;

impl<'de> Visitor<'de> for UniqueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::from(n))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::from(n))
    }
    fn visit_f64<E>(self, n: f64) -> Result<Value, E> {
        // JSON has no NaN or infinity, so `from_f64` always succeeds on parsed input.
        Ok(serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }
    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Unique(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut m = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            if m.contains_key(&k) {
                return Err(de::Error::custom(format_args!("duplicate key `{k}`")));
            }
            let Unique(v) = map.next_value()?;
            m.insert(k, v);
        }
        Ok(Value::Object(m))
    }
}

fn write(
    v: &Value,
    out: &mut Vec<u8>,
    path: &mut String,
    depth: usize,
) -> Result<(), CanonicalError> {
    if depth > MAX_DEPTH {
        return Err(CanonicalError::TooDeep);
    }
    match v {
        Value::Null | Value::Bool(_) | Value::String(_) => {
            // serde_json's scalar encoding is already minimal and deterministic.
            out.extend_from_slice(
                serde_json::to_string(v)
                    .map_err(CanonicalError::Serialize)?
                    .as_bytes(),
            );
        }
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                out.extend_from_slice(i.to_string().as_bytes());
            } else if let Some(u) = n.as_u64() {
                out.extend_from_slice(u.to_string().as_bytes());
            } else {
                return Err(CanonicalError::Float(if path.is_empty() {
                    "/".into()
                } else {
                    path.clone()
                }));
            }
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let len = path.len();
                path.push_str(&format!("/{i}"));
                write(item, out, path, depth + 1)?;
                path.truncate(len);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(
                    serde_json::to_string(k)
                        .map_err(CanonicalError::Serialize)?
                        .as_bytes(),
                );
                out.push(b':');
                let len = path.len();
                path.push('/');
                path.push_str(k);
                write(&map[k], out, path, depth + 1)?;
                path.truncate(len);
            }
            out.push(b'}');
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sorted_compact_integers() {
        let v = json!({"b": [1, -2, {"z": null, "a": true}], "a": "é\n\"", "A": 18446744073709551615u64});
        assert_eq!(
            String::from_utf8(to_vec(&v).unwrap()).unwrap(),
            r#"{"A":18446744073709551615,"a":"é\n\"","b":[1,-2,{"a":true,"z":null}]}"#
        );
    }

    #[test]
    fn floats_rejected_with_location() {
        let v: Value = serde_json::from_str(r#"{"x":[1,2.5]}"#).unwrap();
        match to_vec(&v) {
            Err(CanonicalError::Float(p)) => assert_eq!(p, "/x/1"),
            other => panic!("{other:?}"),
        }
        let v: Value = serde_json::from_str("1e3").unwrap();
        assert!(to_vec(&v).is_err());
    }

    #[test]
    fn is_canonical_detects_whitespace_and_order() {
        assert!(is_canonical(br#"{"a":1,"b":2}"#));
        assert!(!is_canonical(br#"{"b":2,"a":1}"#));
        assert!(!is_canonical(br#"{"a": 1}"#));
        assert!(!is_canonical(br#"{"a":0,"a":1}"#));
    }

    #[test]
    fn unique_parse_refuses_a_repeated_key_at_any_depth() {
        for doc in [
            r#"{"a":1,"a":1}"#,
            r#"{"a":1,"b":{"c":[{"d":1,"e":2,"d":3}]}}"#,
            r#"[{"x":null,"x":null}]"#,
        ] {
            let e = from_slice_unique(doc.as_bytes()).unwrap_err();
            assert!(e.is_data(), "{doc}: {e}");
            assert!(e.to_string().starts_with("duplicate key `"), "{e}");
        }
        let e = from_slice_unique(br#"{"a":1,"b":{"z":0,"z":1}}"#).unwrap_err();
        assert_eq!(e.to_string(), "duplicate key `z` at line 1 column 21");
        // Keys that differ only after unescaping are the same key.
        assert!(from_slice_unique(br#"{"a":1,"\u0061":2}"#)
            .unwrap_err()
            .is_data());
        // Syntax errors stay syntax errors.
        assert!(from_slice_unique(b"{").unwrap_err().is_eof());
        assert!(from_slice_unique(b"{} x").unwrap_err().is_syntax());
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            ".{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map(".{0,6}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn canonical_is_a_fixed_point(v in json()) {
            let c = to_vec(&v).unwrap();
            prop_assert!(is_canonical(&c));
            let back: Value = serde_json::from_slice(&c).unwrap();
            prop_assert_eq!(&back, &v);
        }

        /// Without a repeated key, the strict parser reads exactly what serde_json reads.
        #[test]
        fn unique_parse_agrees_with_serde_json(v in json()) {
            let pretty = serde_json::to_vec_pretty(&v).unwrap();
            prop_assert_eq!(from_slice_unique(&pretty).unwrap(), v);
        }
    }
}
