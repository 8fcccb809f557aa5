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

use serde_json::Value;

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
            prop_assert_eq!(back, v);
        }
    }
}
