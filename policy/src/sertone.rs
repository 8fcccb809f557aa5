//! The Sertone hook family (seed 003), as pure decisions: what a caller's request may carry to a
//! plugin, what a plugin's answer must look like, and how the answers of many plugins combine.
//!
//! ## Why rebuild instead of filter
//! Seed 003 promises that plugins see metadata, never payloads. The request a plugin receives is
//! therefore *built* from the documented fields with their documented types ([`pre_request`],
//! [`post_response`]); nothing the caller sent is copied as a whole, so a field added by a
//! caller (or a future control center) cannot reach a plugin until this list names it.
//!
//! ## Combining (`stockade serve --sertone-listen`)
//! Any deny denies, with its reason (the first denial in plugin-name order; all are listed);
//! fees are listed per plugin and, when exactly one plugin charges, also copied to the seed's
//! single-plugin fields so a stock control center honours it; the quality signal is the minimum
//! of the valid signals (neutral `0` when there is none). A plugin that crashed, timed out or
//! answered something invalid is bypassed (fail-open, seed 003) and listed under `bypassed` —
//! unless the operator configured that hook `failure = "closed"` for it, in which case its
//! failure denies.

use serde_json::{json, Map, Value};

/// The hook `POST /sertone/pre-request` maps to.
pub const PRE_REQUEST: &str = "on:sertone.pre_request";
/// The hook `POST /sertone/post-response` maps to.
pub const POST_RESPONSE: &str = "on:sertone.post_response";

/// Longest string field accepted from a caller or a plugin.
pub const MAX_FIELD: usize = 512;

/// Why a caller's request or a plugin's answer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

fn bad(m: impl Into<String>) -> Invalid {
    Invalid(m.into())
}

fn string_field(o: &Map<String, Value>, k: &str) -> Result<Value, Invalid> {
    match o.get(k) {
        Some(Value::String(s)) if s.len() <= MAX_FIELD => Ok(Value::String(s.clone())),
        Some(Value::String(_)) => Err(bad(format!("`{k}` is longer than {MAX_FIELD} bytes"))),
        Some(_) => Err(bad(format!("`{k}` must be a string"))),
        None => Err(bad(format!("`{k}` is missing"))),
    }
}

fn number_field(o: &Map<String, Value>, k: &str) -> Result<Value, Invalid> {
    match o.get(k) {
        Some(Value::Number(n)) if n.as_f64().is_some_and(f64::is_finite) => {
            Ok(Value::Number(n.clone()))
        }
        Some(_) => Err(bad(format!("`{k}` must be a number"))),
        None => Err(bad(format!("`{k}` is missing"))),
    }
}

fn object(v: &Value) -> Result<&Map<String, Value>, Invalid> {
    v.as_object()
        .ok_or_else(|| bad("the body must be a JSON object"))
}

/// The pre-request body a plugin receives, rebuilt from the documented fields only.
pub fn pre_request(body: &Value) -> Result<Value, Invalid> {
    let o = object(body)?;
    Ok(json!({
        "request_id": string_field(o, "request_id")?,
        "api_id": string_field(o, "api_id")?,
        "consumer_wallet_hash": string_field(o, "consumer_wallet_hash")?,
        "endpoint_path": string_field(o, "endpoint_path")?,
        "timestamp": number_field(o, "timestamp")?,
    }))
}

/// The post-response body a plugin receives, rebuilt from the documented fields only.
pub fn post_response(body: &Value) -> Result<Value, Invalid> {
    let o = object(body)?;
    Ok(json!({
        "request_id": string_field(o, "request_id")?,
        "api_id": string_field(o, "api_id")?,
        "latency_ms": number_field(o, "latency_ms")?,
        "status_code": number_field(o, "status_code")?,
        "settled_usdc": decimal(&string_field(o, "settled_usdc")?, "settled_usdc")?,
        "timestamp": number_field(o, "timestamp")?,
    }))
}

/// A USDC amount: a decimal string (`"0.00010"`), no sign, no exponent, at most 12 integer
/// and 18 fractional digits.
pub fn valid_decimal(s: &str) -> bool {
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    let digits = |p: &str, max: usize| {
        !p.is_empty() && p.len() <= max && p.bytes().all(|c| c.is_ascii_digit())
    };
    digits(int, 12) && frac.is_none_or(|f| digits(f, 18))
}

fn decimal(v: &Value, k: &str) -> Result<Value, Invalid> {
    match v.as_str() {
        Some(s) if valid_decimal(s) => Ok(v.clone()),
        _ => Err(bad(format!(
            "`{k}` must be a decimal string such as \"0.00010\""
        ))),
    }
}

/// Whether `s` is an EVM address: `0x` and 40 hex digits.
pub fn valid_address(s: &str) -> bool {
    s.len() == 42 && s.starts_with("0x") && s[2..].bytes().all(|c| c.is_ascii_hexdigit())
}

/// Whether `hook` is one of the Sertone hooks.
pub fn is_sertone_hook(hook: &str) -> bool {
    hook == PRE_REQUEST || hook == POST_RESPONSE
}

/// A plugin's valid pre-request answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreAnswer {
    /// Let the request through.
    pub allow: bool,
    /// Shown to the consumer on a denial.
    pub reason: Option<String>,
    /// A fee above zero and where it goes.
    pub fee: Option<(String, String)>,
}

/// Validate a pre-request answer: `allow` a boolean; `reason` a string; a fee a decimal string,
/// and a fee above zero needs an EVM `fee_destination`.
pub fn pre_answer(v: &Value) -> Result<PreAnswer, Invalid> {
    let o = v
        .as_object()
        .ok_or_else(|| bad("the answer is not a JSON object"))?;
    let allow = o
        .get("allow")
        .and_then(Value::as_bool)
        .ok_or_else(|| bad("`allow` must be a boolean"))?;
    let reason = match o.get("reason") {
        None | Some(Value::Null) => None,
        Some(_) => Some(
            string_field(o, "reason")?
                .as_str()
                .unwrap_or("")
                .to_string(),
        ),
    };
    let fee = match o.get("additional_fee_usdc") {
        None | Some(Value::Null) => None,
        Some(f) => {
            let f = decimal(f, "additional_fee_usdc")?;
            let f = f.as_str().unwrap_or("0").to_string();
            if f.bytes().any(|c| (b'1'..=b'9').contains(&c)) {
                let dest = o
                    .get("fee_destination")
                    .and_then(Value::as_str)
                    .filter(|d| valid_address(d))
                    .ok_or_else(|| {
                        bad("a fee above zero needs `fee_destination`, an EVM address (0x + 40 hex)")
                    })?;
                Some((f, dest.to_string()))
            } else {
                None
            }
        }
    };
    Ok(PreAnswer { allow, reason, fee })
}

/// Validate a post-response answer: `quality_signal` is -1, 0 or 1.
pub fn post_answer(v: &Value) -> Result<i64, Invalid> {
    match v.get("quality_signal").and_then(Value::as_i64) {
        Some(q @ -1..=1) => Ok(q),
        _ => Err(bad("`quality_signal` must be -1, 0 or 1")),
    }
}

/// What became of one plugin's call.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// It answered (not yet validated).
    Answer(Value),
    /// It failed: crashed, timed out, refused, or was not ready. `closed`: the operator made
    /// this hook fail closed for it.
    Failed {
        /// What went wrong.
        why: String,
        /// Whether the failure denies instead of being bypassed.
        closed: bool,
    },
}

/// Combine the pre-request answers (in plugin-name order) into one answer.
pub fn combine_pre(results: &[(String, Outcome)]) -> Value {
    let mut denials = Vec::new();
    let mut fees = Vec::new();
    let mut bypassed = Vec::new();
    for (plugin, out) in results {
        // A failure: (why, whether it denies).
        let fail = match out {
            Outcome::Answer(v) => match pre_answer(v) {
                Ok(a) if !a.allow => {
                    let reason = a.reason.unwrap_or_else(|| format!("denied by {plugin}"));
                    denials.push(json!({"plugin": plugin, "reason": reason}));
                    None
                }
                Ok(a) => {
                    if let Some((fee, dest)) = a.fee {
                        fees.push(json!({"plugin": plugin, "additional_fee_usdc": fee,
                                          "fee_destination": dest}));
                    }
                    None
                }
                Err(e) => Some((format!("invalid answer: {e}"), false)),
            },
            Outcome::Failed { why, closed } => Some((why.clone(), *closed)),
        };
        if let Some((why, closed)) = fail {
            if closed {
                denials.push(json!({"plugin": plugin,
                    "reason": format!("plugin {plugin} failed and its hook fails closed: {why}")}));
            } else {
                bypassed.push(json!({"plugin": plugin, "why": why}));
            }
        }
    }
    let mut out = Map::new();
    out.insert("allow".into(), Value::Bool(denials.is_empty()));
    if let Some(first) = denials.first() {
        out.insert("reason".into(), first["reason"].clone());
        fees.clear(); // a denied request is not charged
    }
    if let [one] = fees.as_slice() {
        out.insert(
            "additional_fee_usdc".into(),
            one["additional_fee_usdc"].clone(),
        );
        out.insert("fee_destination".into(), one["fee_destination"].clone());
    }
    out.insert("fees".into(), Value::Array(fees));
    out.insert("denials".into(), Value::Array(denials));
    out.insert("bypassed".into(), Value::Array(bypassed));
    Value::Object(out)
}

/// Combine the post-response answers: the minimum valid signal (0 when none).
pub fn combine_post(results: &[(String, Outcome)]) -> Value {
    let mut signals = Vec::new();
    let mut bypassed = Vec::new();
    for (plugin, out) in results {
        match out {
            Outcome::Answer(v) => match post_answer(v) {
                Ok(q) => signals.push(json!({"plugin": plugin, "quality_signal": q})),
                Err(e) => {
                    bypassed.push(json!({"plugin": plugin, "why": format!("invalid answer: {e}")}))
                }
            },
            // Advisory (seed 003): a failure never changes the signal, whatever the hook mode.
            Outcome::Failed { why, .. } => bypassed.push(json!({"plugin": plugin, "why": why})),
        }
    }
    let q = signals
        .iter()
        .filter_map(|s| s["quality_signal"].as_i64())
        .min()
        .unwrap_or(0);
    json!({"quality_signal": q, "signals": signals, "bypassed": bypassed})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pre_body() -> Value {
        json!({"request_id": "r1", "api_id": "a", "consumer_wallet_hash": "ab12",
               "endpoint_path": "/v1/data", "timestamp": 1_700_000_000_000_u64})
    }

    #[test]
    fn request_bodies_are_rebuilt_from_the_documented_fields_only() {
        let mut b = pre_body();
        b["payload"] = json!("secret");
        b["authorization"] = json!("Bearer x");
        let r = pre_request(&b).unwrap();
        assert_eq!(r, pre_body());
        let mut b = pre_body();
        b["timestamp"] = json!("now");
        assert_eq!(
            pre_request(&b).unwrap_err().0,
            "`timestamp` must be a number"
        );
        b = pre_body();
        b.as_object_mut().unwrap().remove("api_id");
        assert_eq!(pre_request(&b).unwrap_err().0, "`api_id` is missing");
        assert!(pre_request(&json!([1])).is_err());
        b = pre_body();
        b["request_id"] = json!("x".repeat(MAX_FIELD + 1));
        assert!(pre_request(&b).is_err());

        let post = json!({"request_id": "r1", "api_id": "a", "latency_ms": 12, "status_code": 200,
                          "settled_usdc": "0.00095", "timestamp": 1, "response_body": "secret"});
        let r = post_response(&post).unwrap();
        assert!(r.get("response_body").is_none());
        assert_eq!(r["settled_usdc"], "0.00095");
        let mut p2 = post.clone();
        p2["settled_usdc"] = json!("1e-3");
        assert!(post_response(&p2).is_err());
    }

    #[test]
    fn decimals_and_addresses() {
        for ok in ["0", "0.00010", "12.5", "000001"] {
            assert!(valid_decimal(ok), "{ok}");
        }
        for no in [
            "",
            ".5",
            "5.",
            "-1",
            "1e3",
            "1.2.3",
            " 1",
            "0x10",
            "1234567890123",
        ] {
            assert!(!valid_decimal(no), "{no}");
        }
        assert!(valid_address(&format!("0x{}", "aB".repeat(20))));
        assert!(!valid_address("0xYourPluginWalletAddress"));
    }

    #[test]
    fn answers_are_validated() {
        assert_eq!(
            pre_answer(&json!({"allow": true})).unwrap(),
            PreAnswer {
                allow: true,
                reason: None,
                fee: None
            }
        );
        let dest = format!("0x{}", "1".repeat(40));
        let a = pre_answer(&json!({"allow": true, "additional_fee_usdc": "0.0001",
                                   "fee_destination": dest}))
        .unwrap();
        assert_eq!(a.fee, Some(("0.0001".into(), dest)));
        // A zero fee needs no destination and is no fee.
        let a = pre_answer(&json!({"allow": true, "additional_fee_usdc": "0.000"})).unwrap();
        assert_eq!(a.fee, None);
        for bad in [
            json!({"allow": "yes"}),
            json!({}),
            json!("allow"),
            json!({"allow": true, "additional_fee_usdc": "0.1"}),
            json!({"allow": true, "additional_fee_usdc": 0.1, "fee_destination": format!("0x{}", "1".repeat(40))}),
            json!({"allow": true, "additional_fee_usdc": "0.1", "fee_destination": "0xnothex"}),
            json!({"allow": false, "reason": 5}),
        ] {
            assert!(pre_answer(&bad).is_err(), "{bad}");
        }
        assert_eq!(post_answer(&json!({"quality_signal": -1})), Ok(-1));
        for bad in [
            json!({"quality_signal": 2}),
            json!({"quality_signal": "1"}),
            json!({}),
        ] {
            assert!(post_answer(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn any_deny_denies_fees_are_listed_and_failures_are_bypassed() {
        let d1 = format!("0x{}", "1".repeat(40));
        let d2 = format!("0x{}", "2".repeat(40));
        let ans = |v: Value| Outcome::Answer(v);
        let fee = |f: &str, d: &str| {
            ans(json!({"allow": true, "additional_fee_usdc": f, "fee_destination": d}))
        };
        let r = combine_pre(&[
            ("a".into(), fee("0.1", &d1)),
            ("b".into(), ans(json!({"allow": true}))),
            (
                "c".into(),
                Outcome::Failed {
                    why: "timed out".into(),
                    closed: false,
                },
            ),
            ("d".into(), ans(json!("garbage"))),
        ]);
        assert_eq!(r["allow"], true);
        assert_eq!(r["additional_fee_usdc"], "0.1");
        assert_eq!(r["fee_destination"], d1);
        assert_eq!(r["bypassed"].as_array().unwrap().len(), 2);
        assert_eq!(r["bypassed"][0]["plugin"], "c");

        let r = combine_pre(&[("a".into(), fee("0.1", &d1)), ("b".into(), fee("0.2", &d2))]);
        assert_eq!(r["fees"].as_array().unwrap().len(), 2);
        assert!(
            r.get("additional_fee_usdc").is_none(),
            "two fees: listed only"
        );

        let r = combine_pre(&[
            ("a".into(), fee("0.1", &d1)),
            (
                "b".into(),
                ans(json!({"allow": false, "reason": "rate limit"})),
            ),
            ("c".into(), ans(json!({"allow": false}))),
        ]);
        assert_eq!(r["allow"], false);
        assert_eq!(r["reason"], "rate limit");
        assert_eq!(r["denials"].as_array().unwrap().len(), 2);
        assert_eq!(r["denials"][1]["reason"], "denied by c");
        assert_eq!(r["fees"], json!([]), "a denied request is not charged");

        let r = combine_pre(&[(
            "a".into(),
            Outcome::Failed {
                why: "crashed".into(),
                closed: true,
            },
        )]);
        assert_eq!(r["allow"], false);
        assert_eq!(combine_pre(&[])["allow"], true);
    }

    #[test]
    fn the_quality_signal_is_the_minimum() {
        let ans = |q: i64| Outcome::Answer(json!({"quality_signal": q}));
        let r = combine_post(&[
            ("a".into(), ans(1)),
            ("b".into(), ans(-1)),
            ("c".into(), ans(0)),
        ]);
        assert_eq!(r["quality_signal"], -1);
        let r = combine_post(&[
            ("a".into(), ans(1)),
            (
                "b".into(),
                Outcome::Failed {
                    why: "hung".into(),
                    closed: true,
                },
            ),
            ("c".into(), Outcome::Answer(json!({"quality_signal": 7}))),
        ]);
        assert_eq!(r["quality_signal"], 1);
        assert_eq!(r["bypassed"].as_array().unwrap().len(), 2);
        assert_eq!(combine_post(&[])["quality_signal"], 0);
    }
}
