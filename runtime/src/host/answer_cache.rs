//! The hook answer cache (seed 001's deterministic cache key with a TTL), per plugin.
//!
//! Off unless the operator sets `[hooks."<hook>"] cache_ttl_ms`: caching is only right for a
//! hook whose answer depends on nothing but its payload, and only the operator can say that.
//! The key is BLAKE3 over the plugin's name and version, the hook and the payload as canonical
//! JSON (serde_json's `Value` keeps object keys sorted, so equal payloads serialize to equal
//! bytes), each field length-prefixed: the seed's plain concatenation would let `("ab", "c")`
//! and `("a", "bc")` collide. Only successful answers are kept (errors and fail-open defaults
//! never), and the cache is bounded in entries and bytes so a plugin's answers cannot grow the
//! runtime's memory without limit.

use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Instant;

/// Entries kept per plugin at most.
const MAX_ENTRIES: usize = 256;
/// Largest answer kept (serialized bytes); larger answers are not cached.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Bytes of answers kept per plugin at most.
const MAX_TOTAL_BYTES: usize = 4 * 1024 * 1024;

/// A cache key.
pub type Key = [u8; 32];

/// The key of a call (seed 001's algorithm over our fields).
pub fn key(plugin: &str, version: &str, hook: &str, payload: &Value) -> Key {
    let mut h = blake3::Hasher::new();
    let payload = serde_json::to_vec(payload).unwrap_or_default();
    for field in [
        plugin.as_bytes(),
        version.as_bytes(),
        hook.as_bytes(),
        &payload,
    ] {
        h.update(&(field.len() as u64).to_le_bytes());
        h.update(field);
    }
    *h.finalize().as_bytes()
}

/// One plugin's cached answers.
#[derive(Debug, Default)]
pub struct AnswerCache {
    entries: BTreeMap<Key, Entry>,
    bytes: usize,
}

/// An answer is kept serialized: its bytes are what the bounds count, exactly (a parsed `Value`
/// takes several times its text — 32 bytes per array element — so a bound on the text would not
/// bound the memory), and a hit parses them again, which costs far less than the round trip
/// through the plugin it saves.
#[derive(Debug)]
struct Entry {
    expires: Instant,
    answer: Box<str>,
}

impl AnswerCache {
    /// The answer kept for `k`, if it has not expired (an expired one is dropped).
    pub fn get(&mut self, k: &Key, now: Instant) -> Option<Value> {
        if self.entries.get(k).is_some_and(|e| e.expires <= now) {
            self.remove(k);
        }
        self.entries
            .get(k)
            .and_then(|e| serde_json::from_str(&e.answer).ok())
    }

    /// Keep `answer` for `k` until `expires` (unless it is too large), making room first:
    /// expired entries go, then those that expire soonest.
    pub fn put(&mut self, k: Key, answer: &Value, now: Instant, expires: Instant) {
        let Ok(answer) = serde_json::to_string(answer) else {
            return;
        };
        let size = answer.len();
        if size > MAX_ANSWER_BYTES {
            return;
        }
        self.remove(&k);
        let expired: Vec<Key> = self
            .entries
            .iter()
            .filter(|(_, e)| e.expires <= now)
            .map(|(k, _)| *k)
            .collect();
        for k in &expired {
            self.remove(k);
        }
        while self.entries.len() >= MAX_ENTRIES || self.bytes + size > MAX_TOTAL_BYTES {
            let Some(soonest) = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.expires)
                .map(|(k, _)| *k)
            else {
                break;
            };
            self.remove(&soonest);
        }
        self.bytes += size;
        self.entries.insert(
            k,
            Entry {
                expires,
                answer: answer.into_boxed_str(),
            },
        );
    }

    fn remove(&mut self, k: &Key) {
        if let Some(e) = self.entries.remove(k) {
            self.bytes -= e.answer.len();
        }
    }

    /// Entries kept now (expired ones included until they are looked at or make room).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    #[test]
    fn keys_are_canonical_and_every_field_counts() {
        let a = key("p", "1.0.0", "on:h", &json!({"a": 1, "b": [1, 2]}));
        let b = key(
            "p",
            "1.0.0",
            "on:h",
            &serde_json::from_str(r#"{"b":[1,2],"a":1}"#).unwrap(),
        );
        assert_eq!(a, b, "key order does not matter");
        for other in [
            key("q", "1.0.0", "on:h", &json!({"a": 1, "b": [1, 2]})),
            key("p", "1.0.1", "on:h", &json!({"a": 1, "b": [1, 2]})),
            key("p", "1.0.0", "on:i", &json!({"a": 1, "b": [1, 2]})),
            key("p", "1.0.0", "on:h", &json!({"a": 2, "b": [1, 2]})),
        ] {
            assert_ne!(a, other);
        }
        assert_ne!(
            key("ab", "c", "h", &json!(1)),
            key("a", "bc", "h", &json!(1))
        );
    }

    #[test]
    fn cached_floats_come_back_bit_for_bit() {
        // An answer kept as text must parse back to the very number the plugin sent: serde_json's
        // default float parser may be one ulp off (the workspace enables `float_roundtrip`).
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        let mut c = AnswerCache::default();
        let mut bits: u64 = 0x9E37_79B9_7F4A_7C15;
        for i in 0..2000u64 {
            // xorshift over bit patterns: every exponent, sign and mantissa shape.
            bits ^= bits << 13;
            bits ^= bits >> 7;
            bits ^= bits << 17;
            let f = f64::from_bits(bits);
            if !f.is_finite() {
                continue;
            }
            let k = key("p", "1", "h", &json!(i));
            c.put(k, &json!(f), now, later);
            let back = c.get(&k, now).and_then(|v| v.as_f64());
            assert_eq!(back.map(f64::to_bits), Some(f.to_bits()), "{f:e}");
        }
    }

    #[test]
    fn answers_expire_and_the_cache_stays_bounded() {
        let now = Instant::now();
        let mut c = AnswerCache::default();
        let k = key("p", "1", "h", &json!(1));
        c.put(
            k,
            &json!({"ok": true}),
            now,
            now + Duration::from_millis(10),
        );
        assert_eq!(c.get(&k, now), Some(json!({"ok": true})));
        assert_eq!(c.get(&k, now + Duration::from_millis(10)), None, "expired");
        assert_eq!(c.len(), 0);
        // Too large: not kept.
        let big = json!("x".repeat(MAX_ANSWER_BYTES));
        c.put(k, &big, now, now + Duration::from_secs(60));
        assert_eq!(c.get(&k, now), None);
        // Full: the entry expiring soonest makes room.
        for i in 0..MAX_ENTRIES as u64 + 10 {
            let k = key("p", "1", "h", &json!(i));
            c.put(k, &json!(i), now, now + Duration::from_secs(10 + i));
        }
        assert_eq!(c.len(), MAX_ENTRIES);
        assert_eq!(
            c.get(&key("p", "1", "h", &json!(0)), now),
            None,
            "soonest went"
        );
        let last = MAX_ENTRIES as u64 + 9;
        assert_eq!(
            c.get(&key("p", "1", "h", &json!(last)), now),
            Some(json!(last))
        );
        // Bytes: 100 answers of 60 KiB cannot all stay.
        let mut c = AnswerCache::default();
        for i in 0..100u64 {
            let v = json!("y".repeat(60 * 1024));
            c.put(
                key("p", "1", "h", &json!(i)),
                &v,
                now,
                now + Duration::from_secs(60),
            );
        }
        assert!(c.bytes <= MAX_TOTAL_BYTES, "{}", c.bytes);
        assert!(c.len() < 100);
        // What is counted is what is held: the stored text, not the answer's length in some
        // other form (an array of 20,000 zeros is 40 KiB of text, 640 KiB as parsed values).
        let mut c = AnswerCache::default();
        let zeros = json!(vec![0; 20_000]);
        c.put(k, &zeros, now, now + Duration::from_secs(60));
        let held: usize = c.entries.values().map(|e| e.answer.len()).sum();
        assert_eq!((c.bytes, held), (40_001, 40_001));
        assert_eq!(c.get(&k, now), Some(zeros));
    }
}
