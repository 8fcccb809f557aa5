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
//! answered something invalid is bypassed (fail-open, seed 003: the Sertone hooks' default) and
//! listed under `bypassed` — unless the operator configured that hook `failure = "closed"` for
//! it, in which case its failure, an invalid answer included, denies.
//!
//! ## Fees
//! A fee is money a control center pays on the plugin's word, so it is accepted only as far as
//! the operator allowed it ([`Rules`]): at most `max_fee_usdc` (unset: no fee at all), to the
//! pinned `fee_destination` when one is set, in whole micro-USDC (USDC has 6 decimals). Past
//! that, the answer is invalid — a failure, under the hook's failure mode — never a fee trimmed
//! to the cap, which would charge what no one asked.

use crate::protocol::host::{FailureMode, HostPolicy};
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

/// The digits of a decimal string (`"0.00010"`: no sign, no exponent) with at most 12 integer
/// and `max_frac` fractional digits: (integer part, fractional part, empty when none).
fn decimal_parts(s: &str, max_frac: usize) -> Option<(&str, &str)> {
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    let digits = |p: &str, max: usize| {
        !p.is_empty() && p.len() <= max && p.bytes().all(|c| c.is_ascii_digit())
    };
    (digits(int, 12) && frac.is_none_or(|f| digits(f, max_frac))).then(|| (int, frac.unwrap_or("")))
}

/// A caller's amount (`settled_usdc`): a decimal string, no sign, no exponent, at most 12
/// integer and 18 fractional digits. Only passed on to plugins, never acted on.
pub fn valid_decimal(s: &str) -> bool {
    decimal_parts(s, 18).is_some()
}

/// Fractional digits of USDC: an amount finer than this cannot be paid.
pub const USDC_DECIMALS: usize = 6;

/// A fee a control center would pay, in micro-USDC: a decimal string as [`valid_decimal`] but
/// with at most [`USDC_DECIMALS`] fractional digits, so that it is an exact, comparable amount.
pub fn micro_usdc(s: &str) -> Option<u64> {
    let (int, frac) = decimal_parts(s, USDC_DECIMALS)?;
    let mut micro: u64 = 0;
    // 12 integer digits and 6 fractional ones: at most 10^18 - 1, below u64::MAX.
    let padded = frac
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(USDC_DECIMALS);
    for c in int.bytes().chain(padded) {
        micro = micro.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(micro)
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

/// A plugin's answer to `hook` checked as the front checks it: a pre-request answer under the
/// operator's `rules` ([`pre_answer`]: fee cap, pinned destination), a post-response answer's
/// signal ([`post_answer`]). Any other hook's answer is not looked at. The runtime applies it to
/// every answer of a Sertone hook, whoever called — an agent acting as a control center pays on
/// the same word the front does — so an invalid one is a failure under the hook's failure mode
/// on every path, never passed on as it came.
pub fn check_answer(hook: &str, answer: &Value, rules: &Rules) -> Result<(), Invalid> {
    match hook {
        PRE_REQUEST => pre_answer(answer, rules).map(drop),
        POST_RESPONSE => post_answer(answer).map(drop),
        _ => Ok(()),
    }
}

/// What a failed plugin's call of `hook` answers when the hook fails open and the operator set
/// no `default`: what the front counts a bypassed plugin as — no objection before the request
/// (`allow: true`), the neutral signal after it (`quality_signal: 0`). So an agent's own
/// `hook_invoke` of a Sertone hook gets the same meaning the front gives the same failure, not
/// a bare `null`. `None` for every other hook (its fail-open answer is the operator's `default`).
pub fn fail_open_answer(hook: &str) -> Option<Value> {
    match hook {
        PRE_REQUEST => Some(json!({"allow": true})),
        POST_RESPONSE => Some(json!({"quality_signal": 0})),
        _ => None,
    }
}

/// The params of a call of `hook` as they may reach a plugin: a Sertone hook's rebuilt to
/// metadata ([`pre_request`], [`post_response`]), whoever calls it — the HTTP front, an agent
/// on the serve socket or under `run` — since seed 003's "plugins never see payloads" is about
/// the plugin, not the path; any other hook's unchanged.
pub fn metadata_only(hook: &str, payload: &Value) -> Result<Value, Invalid> {
    match hook {
        PRE_REQUEST => pre_request(payload),
        POST_RESPONSE => post_response(payload),
        _ => Ok(payload.clone()),
    }
}

/// What the operator's policy asks of one plugin's pre-request answers (its effective
/// `[hooks."on:sertone.pre_request"]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    /// A failure of the plugin — an invalid answer included — denies instead of being
    /// bypassed.
    pub closed: bool,
    /// The largest fee accepted, in micro-USDC; `None`: no fee above zero is accepted.
    pub max_fee: Option<u64>,
    /// The one address a fee may go to; `None`: any valid address.
    pub fee_destination: Option<String>,
}

impl Rules {
    /// The rules of `hook` under a plugin's effective host policy.
    pub fn of(host: &HostPolicy, hook: &str) -> Self {
        let h = host.hooks.get(hook);
        Self {
            closed: host.failure(hook) == FailureMode::Closed,
            // Validated at load (`HostPolicy::validate`); unparsable would mean no fee.
            max_fee: h
                .and_then(|h| h.max_fee_usdc.as_deref())
                .and_then(micro_usdc),
            fee_destination: h.and_then(|h| h.fee_destination.clone()),
        }
    }
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
    /// What of a denial was not taken as the plugin sent it (a reason cut, a fee field), so
    /// that the combined answer can say so.
    pub dropped: Vec<String>,
}

/// `s` cut to at most `max` bytes, on a character boundary.
fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// Validate a pre-request answer under the operator's `rules`.
///
/// `allow` must be a boolean. A denial is honoured whatever else the answer holds: its fee
/// fields are dropped (a denied request is not charged) and its reason, when not a string or
/// longer than [`MAX_FIELD`], is dropped or cut — turning a denial into an allow because of an
/// optional field would let a malformed answer open what its plugin closed. An allow is taken
/// only when all of it is valid: `reason` a string; a fee a USDC decimal string
/// ([`micro_usdc`]); a fee above zero within `rules.max_fee` and going to an EVM
/// `fee_destination` (the pinned one when `rules` pins one).
pub fn pre_answer(v: &Value, rules: &Rules) -> Result<PreAnswer, Invalid> {
    let o = v
        .as_object()
        .ok_or_else(|| bad("the answer is not a JSON object"))?;
    let allow = o
        .get("allow")
        .and_then(Value::as_bool)
        .ok_or_else(|| bad("`allow` must be a boolean"))?;
    if !allow {
        return Ok(denial(o));
    }
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
            let micro = f.as_str().and_then(micro_usdc).ok_or_else(|| {
                bad(format!(
                    "`additional_fee_usdc` must be a decimal string with at most \
                     {USDC_DECIMALS} fractional digits, such as \"0.00010\""
                ))
            })?;
            if micro == 0 {
                None
            } else {
                Some(fee_within(o, f.as_str().unwrap_or(""), micro, rules)?)
            }
        }
    };
    Ok(PreAnswer {
        allow,
        reason,
        fee,
        dropped: Vec::new(),
    })
}

/// A fee above zero (`fee`, `micro` micro-USDC), checked against the operator's rules.
fn fee_within(
    o: &Map<String, Value>,
    fee: &str,
    micro: u64,
    rules: &Rules,
) -> Result<(String, String), Invalid> {
    let dest = o
        .get("fee_destination")
        .and_then(Value::as_str)
        .filter(|d| valid_address(d))
        .ok_or_else(|| {
            bad("a fee above zero needs `fee_destination`, an EVM address (0x + 40 hex)")
        })?;
    match rules.max_fee {
        None => {
            return Err(bad(
                "a fee above zero, and the operator set no `max_fee_usdc` for this plugin",
            ))
        }
        Some(max) if micro > max => {
            return Err(bad(format!(
                "the fee {fee} is above the operator's `max_fee_usdc` for this plugin"
            )))
        }
        Some(_) => {}
    }
    // Addresses differ in letter case only by their checksum spelling (EIP-55): the same one.
    match &rules.fee_destination {
        Some(pin) if !pin.eq_ignore_ascii_case(dest) => Err(bad(
            "`fee_destination` is not the address the operator pinned for this plugin",
        )),
        Some(pin) => Ok((fee.to_string(), pin.clone())),
        None => Ok((fee.to_string(), dest.to_string())),
    }
}

/// A denial, honoured: what of it cannot be taken as sent is dropped and listed.
fn denial(o: &Map<String, Value>) -> PreAnswer {
    let mut dropped = Vec::new();
    let reason = match o.get("reason") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            if s.len() > MAX_FIELD {
                dropped.push(format!(
                    "`reason` cut to {MAX_FIELD} bytes (it had {})",
                    s.len()
                ));
            }
            Some(truncate(s.clone(), MAX_FIELD))
        }
        Some(_) => {
            dropped.push("`reason`: not a string".to_string());
            None
        }
    };
    for k in ["additional_fee_usdc", "fee_destination"] {
        if o.get(k).is_some_and(|v| !v.is_null()) {
            dropped.push(format!("`{k}`: a denied request is not charged"));
        }
    }
    PreAnswer {
        allow: false,
        reason,
        fee: None,
        dropped,
    }
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
    /// It answered, and the runtime's own check of that answer ([`check_answer`], under the
    /// plugin's rules) refused it before the front got it. Why (`invalid answer: …`).
    Invalid(String),
    /// It failed: crashed, timed out, refused, or was not ready. Why.
    Failed(String),
}

/// Why the front bypassed a plugin, as the `bypass` audit record's `detail.reason` says it:
/// decided by what became of the call ([`Outcome`]), never read back from the words of its
/// `why` (which once decided it: any failure whose message began with "invalid answer").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BypassReason {
    /// It answered, and the answer was invalid (refused by the runtime's check, or by the
    /// combination's own).
    InvalidAnswer,
    /// It did not answer: crashed, timed out, answered with an error, or was not ready.
    NoAnswer,
}

impl BypassReason {
    /// The reason of a bypassed plugin's call. A valid answer is never bypassed, so an
    /// [`Outcome::Answer`] among the bypassed is one the combination found invalid.
    pub fn of(out: &Outcome) -> Self {
        match out {
            Outcome::Answer(_) | Outcome::Invalid(_) => Self::InvalidAnswer,
            Outcome::Failed(_) => Self::NoAnswer,
        }
    }

    /// Its name in the audit record (`invalid_answer`, `no_answer`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidAnswer => "invalid_answer",
            Self::NoAnswer => "no_answer",
        }
    }
}

/// One plugin's call: its name, the operator's rules for it, what became of it.
pub type PluginOutcome = (String, Rules, Outcome);

/// Combine the pre-request answers (in plugin-name order) into one answer.
pub fn combine_pre(results: &[PluginOutcome]) -> Value {
    let mut denials = Vec::new();
    let mut fees = Vec::new();
    let mut bypassed = Vec::new();
    for (plugin, rules, out) in results {
        // An invalid answer is a failure like a crash or a timeout: the plugin's failure mode
        // decides, so `failure = "closed"` cannot be sidestepped by answering garbage.
        let why = match out {
            Outcome::Answer(v) => match pre_answer(v, rules) {
                Ok(a) if !a.allow => {
                    let reason = a.reason.unwrap_or_else(|| format!("denied by {plugin}"));
                    let mut d = json!({"plugin": plugin, "reason": reason});
                    if !a.dropped.is_empty() {
                        d["dropped"] = json!(a.dropped);
                    }
                    denials.push(d);
                    continue;
                }
                Ok(a) => {
                    if let Some((fee, dest)) = a.fee {
                        fees.push(json!({"plugin": plugin, "additional_fee_usdc": fee,
                                          "fee_destination": dest}));
                    }
                    continue;
                }
                Err(e) => format!("invalid answer: {e}"),
            },
            Outcome::Invalid(why) | Outcome::Failed(why) => why.clone(),
        };
        if rules.closed {
            denials.push(json!({"plugin": plugin,
                "reason": format!("plugin {plugin} failed and its hook fails closed: {why}")}));
        } else {
            bypassed.push(json!({"plugin": plugin, "why": why}));
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

/// Combine the post-response answers: the minimum valid signal (0 when none). Advisory (seed
/// 003): a failure never changes the signal, whatever the hook's failure mode.
pub fn combine_post(results: &[PluginOutcome]) -> Value {
    let mut signals = Vec::new();
    let mut bypassed = Vec::new();
    for (plugin, _, out) in results {
        match out {
            Outcome::Answer(v) => match post_answer(v) {
                Ok(q) => signals.push(json!({"plugin": plugin, "quality_signal": q})),
                Err(e) => {
                    bypassed.push(json!({"plugin": plugin, "why": format!("invalid answer: {e}")}))
                }
            },
            Outcome::Invalid(why) | Outcome::Failed(why) => {
                bypassed.push(json!({"plugin": plugin, "why": why}))
            }
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

    /// Rules allowing fees up to 1 USDC to any address, failing open.
    fn fees_ok() -> Rules {
        Rules {
            closed: false,
            max_fee: Some(1_000_000),
            fee_destination: None,
        }
    }

    fn addr(c: &str) -> String {
        format!("0x{}", c.repeat(40))
    }

    #[test]
    fn check_answer_looks_at_the_sertone_hooks_answers_only() {
        let none = Rules::default();
        let fee = json!({"allow": true, "additional_fee_usdc": "0.5",
                         "fee_destination": addr("b")});
        let e = check_answer(PRE_REQUEST, &fee, &none).unwrap_err();
        assert!(e.0.contains("max_fee_usdc"), "{e}");
        check_answer(PRE_REQUEST, &fee, &fees_ok()).unwrap();
        check_answer(POST_RESPONSE, &json!({"quality_signal": -1}), &none).unwrap();
        assert!(check_answer(POST_RESPONSE, &json!({"quality_signal": 2}), &none).is_err());
        // Another hook's answer is the plugin's business.
        check_answer("on:other", &fee, &none).unwrap();
        check_answer("on:other", &json!("anything"), &none).unwrap();
    }

    #[test]
    fn answers_are_validated() {
        let r = fees_ok();
        assert_eq!(
            pre_answer(&json!({"allow": true}), &r).unwrap(),
            PreAnswer {
                allow: true,
                reason: None,
                fee: None,
                dropped: vec![],
            }
        );
        let dest = addr("1");
        let a = pre_answer(
            &json!({"allow": true, "additional_fee_usdc": "0.0001", "fee_destination": dest}),
            &r,
        )
        .unwrap();
        assert_eq!(a.fee, Some(("0.0001".into(), dest)));
        // A zero fee needs no destination and is no fee.
        let a = pre_answer(&json!({"allow": true, "additional_fee_usdc": "0.000"}), &r).unwrap();
        assert_eq!(a.fee, None);
        for bad in [
            json!({"allow": "yes"}),
            json!({}),
            json!("allow"),
            json!({"allow": true, "additional_fee_usdc": "0.1"}),
            json!({"allow": true, "additional_fee_usdc": 0.1, "fee_destination": addr("1")}),
            json!({"allow": true, "additional_fee_usdc": "0.1", "fee_destination": "0xnothex"}),
            json!({"allow": true, "reason": 5}),
        ] {
            assert!(pre_answer(&bad, &r).is_err(), "{bad}");
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
    fn usdc_amounts_have_six_decimals_at_most() {
        assert_eq!(micro_usdc("0.00010"), Some(100));
        assert_eq!(micro_usdc("1"), Some(1_000_000));
        assert_eq!(micro_usdc("12.5"), Some(12_500_000));
        assert_eq!(
            micro_usdc("999999999999.999999"),
            Some(999_999_999_999_999_999)
        );
        for no in [
            "0.0000001",
            "999999999999.999999999999999999",
            "-1",
            "1e3",
            "",
            ".5",
        ] {
            assert_eq!(micro_usdc(no), None, "{no}");
        }
    }

    #[test]
    fn fees_are_capped_and_their_destination_pinned() {
        let fee = |f: &str, d: &str| json!({"allow": true, "additional_fee_usdc": f, "fee_destination": d});
        // No cap set: no fee above zero is accepted (a zero fee still is no fee).
        let none = Rules::default();
        let e = pre_answer(&fee("0.0001", &addr("1")), &none).unwrap_err();
        assert!(e.0.contains("max_fee_usdc"), "{e}");
        assert!(pre_answer(&fee("0", &addr("1")), &none).is_ok());
        // Up to the cap, not past it; 18 decimals are no USDC amount.
        let capped = Rules {
            max_fee: Some(micro_usdc("0.001").unwrap()),
            ..Rules::default()
        };
        assert!(pre_answer(&fee("0.001", &addr("1")), &capped).is_ok());
        assert!(pre_answer(&fee("0.001001", &addr("1")), &capped).is_err());
        assert!(pre_answer(
            &fee("999999999999.999999999999999999", &addr("1")),
            &fees_ok()
        )
        .is_err());
        assert!(pre_answer(&fee("0.0000001", &addr("1")), &fees_ok()).is_err());
        // A pinned destination: only it (in any letter case), and it is what is reported.
        let pin = addr("a");
        let pinned = Rules {
            fee_destination: Some(pin.clone()),
            ..fees_ok()
        };
        let a = pre_answer(&fee("0.5", &addr("A")), &pinned).unwrap();
        assert_eq!(a.fee, Some(("0.5".into(), pin)));
        let e = pre_answer(&fee("0.5", &addr("b")), &pinned).unwrap_err();
        assert!(e.0.contains("pinned"), "{e}");
        // Combined: a fee past the cap is a failure, never copied to the top-level fields.
        let r = combine_pre(&[(
            "greedy".into(),
            capped.clone(),
            Outcome::Answer(fee("999999999999.999999", &addr("1"))),
        )]);
        assert_eq!(r["allow"], true);
        assert!(r.get("additional_fee_usdc").is_none(), "{r}");
        assert_eq!(r["fees"], json!([]));
        assert_eq!(r["bypassed"][0]["plugin"], "greedy");
    }

    #[test]
    fn invalid_answers_fail_closed_when_the_hook_does() {
        let closed = Rules {
            closed: true,
            ..Rules::default()
        };
        let long = "x".repeat(MAX_FIELD + 1);
        for answer in [
            json!({"allow": "yes"}),
            json!({"allow": true, "reason": long}),
            json!({"allow": true, "additional_fee_usdc": "-1"}),
            json!("garbage"),
        ] {
            let r = combine_pre(&[("p".into(), closed.clone(), Outcome::Answer(answer.clone()))]);
            assert_eq!(r["allow"], false, "{answer}: {r}");
            assert!(
                r["reason"].as_str().unwrap().contains("invalid answer"),
                "{r}"
            );
            assert_eq!(r["bypassed"], json!([]));
            // The same answer under a fail-open hook is bypassed.
            let r = combine_pre(&[("p".into(), Rules::default(), Outcome::Answer(answer))]);
            assert_eq!(r["allow"], true, "{r}");
            assert_eq!(r["bypassed"][0]["plugin"], "p");
        }
    }

    #[test]
    fn a_denial_is_honoured_whatever_its_optional_fields() {
        // "é" is two bytes: the cut falls inside one and must move back to a boundary.
        let long = format!("{}{}", "a".repeat(MAX_FIELD - 1), "é".repeat(50));
        for (answer, dropped) in [
            (json!({"allow": false, "reason": long}), "`reason` cut"),
            (
                json!({"allow": false, "additional_fee_usdc": "-1"}),
                "additional_fee_usdc",
            ),
            (
                json!({"allow": false, "reason": 5, "fee_destination": "nope"}),
                "not a string",
            ),
        ] {
            let r = combine_pre(&[(
                "p".into(),
                Rules::default(),
                Outcome::Answer(answer.clone()),
            )]);
            assert_eq!(r["allow"], false, "{answer}: {r}");
            assert_eq!(r["bypassed"], json!([]), "{r}");
            let d = r["denials"][0]["dropped"].to_string();
            assert!(d.contains(dropped), "{answer}: {r}");
        }
        let a = pre_answer(&json!({"allow": false, "reason": long}), &Rules::default()).unwrap();
        let reason = a.reason.unwrap();
        assert_eq!(
            reason.len(),
            MAX_FIELD - 1,
            "cut back to the character boundary"
        );
        assert!(long.starts_with(&reason));
    }

    #[test]
    fn sertone_params_are_rebuilt_on_every_path() {
        let mut b = pre_body();
        b["request_body"] = json!("SECRET");
        b["authorization"] = json!("Bearer SECRET");
        assert_eq!(metadata_only(PRE_REQUEST, &b).unwrap(), pre_body());
        assert!(metadata_only(PRE_REQUEST, &json!({"request_body": "SECRET"})).is_err());
        assert!(metadata_only(POST_RESPONSE, &pre_body()).is_err());
        // Other hooks' payloads are theirs.
        assert_eq!(metadata_only("on:flow.new", &b).unwrap(), b);
    }

    #[test]
    fn a_bypass_reason_is_what_became_of_the_call_not_its_words() {
        let r = |o: Outcome| BypassReason::of(&o).as_str();
        assert_eq!(
            r(Outcome::Invalid("`allow` must be a boolean".into())),
            "invalid_answer"
        );
        assert_eq!(r(Outcome::Answer(json!("garbage"))), "invalid_answer");
        assert_eq!(
            r(Outcome::Failed("no answer within 400 ms".into())),
            "no_answer"
        );
        // The words once decided it: a failure said as "invalid answer…" is still none.
        assert_eq!(
            r(Outcome::Failed("invalid answer: said so".into())),
            "no_answer"
        );
        // An answer the runtime refused is bypassed (or denies, failing closed) with its why.
        let closed = Rules {
            closed: true,
            ..Rules::default()
        };
        let why = "invalid answer: `allow` must be a boolean";
        let v = combine_pre(&[("p".into(), Rules::default(), Outcome::Invalid(why.into()))]);
        assert_eq!(v["bypassed"], json!([{"plugin": "p", "why": why}]));
        let v = combine_pre(&[("p".into(), closed, Outcome::Invalid(why.into()))]);
        assert_eq!(v["allow"], false, "{v}");
        let v = combine_post(&[("p".into(), Rules::default(), Outcome::Invalid(why.into()))]);
        assert_eq!(v["bypassed"], json!([{"plugin": "p", "why": why}]));
    }

    #[test]
    fn any_deny_denies_fees_are_listed_and_failures_are_bypassed() {
        let d1 = addr("1");
        let d2 = addr("2");
        let ok = fees_ok;
        let ans = |v: Value| Outcome::Answer(v);
        let fee = |f: &str, d: &str| {
            ans(json!({"allow": true, "additional_fee_usdc": f, "fee_destination": d}))
        };
        let r = combine_pre(&[
            ("a".into(), ok(), fee("0.1", &d1)),
            ("b".into(), ok(), ans(json!({"allow": true}))),
            ("c".into(), ok(), Outcome::Failed("timed out".into())),
            ("d".into(), ok(), ans(json!("garbage"))),
        ]);
        assert_eq!(r["allow"], true);
        assert_eq!(r["additional_fee_usdc"], "0.1");
        assert_eq!(r["fee_destination"], d1);
        assert_eq!(r["bypassed"].as_array().unwrap().len(), 2);
        assert_eq!(r["bypassed"][0]["plugin"], "c");

        let r = combine_pre(&[
            ("a".into(), ok(), fee("0.1", &d1)),
            ("b".into(), ok(), fee("0.2", &d2)),
        ]);
        assert_eq!(r["fees"].as_array().unwrap().len(), 2);
        assert!(
            r.get("additional_fee_usdc").is_none(),
            "two fees: listed only"
        );

        let r = combine_pre(&[
            ("a".into(), ok(), fee("0.1", &d1)),
            (
                "b".into(),
                ok(),
                ans(json!({"allow": false, "reason": "rate limit"})),
            ),
            ("c".into(), ok(), ans(json!({"allow": false}))),
        ]);
        assert_eq!(r["allow"], false);
        assert_eq!(r["reason"], "rate limit");
        assert_eq!(r["denials"].as_array().unwrap().len(), 2);
        assert_eq!(r["denials"][1]["reason"], "denied by c");
        assert!(r["denials"][0].get("dropped").is_none(), "nothing dropped");
        assert_eq!(r["fees"], json!([]), "a denied request is not charged");

        let closed = Rules {
            closed: true,
            ..Rules::default()
        };
        let r = combine_pre(&[("a".into(), closed, Outcome::Failed("crashed".into()))]);
        assert_eq!(r["allow"], false);
        assert_eq!(combine_pre(&[])["allow"], true);
    }

    #[test]
    fn the_quality_signal_is_the_minimum() {
        let ans = |q: i64| Outcome::Answer(json!({"quality_signal": q}));
        let r = combine_post(&[
            ("a".into(), Rules::default(), ans(1)),
            ("b".into(), Rules::default(), ans(-1)),
            ("c".into(), Rules::default(), ans(0)),
        ]);
        assert_eq!(r["quality_signal"], -1);
        let closed = Rules {
            closed: true,
            ..Rules::default()
        };
        let r = combine_post(&[
            ("a".into(), closed.clone(), ans(1)),
            ("b".into(), closed.clone(), Outcome::Failed("hung".into())),
            (
                "c".into(),
                closed,
                Outcome::Answer(json!({"quality_signal": 7})),
            ),
        ]);
        assert_eq!(r["quality_signal"], 1);
        assert_eq!(r["bypassed"].as_array().unwrap().len(), 2);
        assert_eq!(combine_post(&[])["quality_signal"], 0);
    }
}
