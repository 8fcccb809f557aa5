//! Human-friendly quantities in policy files: byte sizes (`"256M"`, `65536`), CPU shares
//! (`"50%"`, `"500m"`), each with an explicit `"unlimited"` so that a reviewer (and `policy lint`)
//! can tell "no limit on purpose" from "forgot to set one" (an omitted key takes the default).

use serde::{Deserialize, Serialize};

/// A byte quantity as written in a policy file: a plain integer (bytes) or a string with a binary
/// suffix `K`, `M`, `G`, `T` (powers of 1024, optional trailing `i`/`B`), or `"unlimited"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum RawSize {
    /// A number of bytes.
    Bytes(u64),
    /// `"256M"`, `"1G"`, `"unlimited"` …
    Text(String),
}

/// A parsed limit: a number, or no limit at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    /// At most this many (bytes, processes, files …).
    Max(u64),
    /// Deliberately unlimited.
    Unlimited,
}

impl Limit {
    /// The number, or `None` when unlimited.
    pub fn max(self) -> Option<u64> {
        match self {
            Limit::Max(n) => Some(n),
            Limit::Unlimited => None,
        }
    }
}

/// Why a quantity did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UnitError {
    /// Not a number with a known suffix.
    #[error("`{0}` is not a size (use bytes, or a number with K, M, G or T, or \"unlimited\")")]
    BadSize(String),
    /// The number does not fit in 64 bits.
    #[error("`{0}` is too large: at most {max} ({t}T), or \"unlimited\"", max = u64::MAX, t = u64::MAX >> 40)]
    Overflow(String),
    /// Not a CPU quantity.
    #[error("`{0}` is not a CPU quota (use \"50%\", \"1500m\" millicores, or \"unlimited\")")]
    BadCpu(String),
}

/// Parse a size, `"unlimited"` included.
pub fn parse_size(raw: &RawSize) -> Result<Limit, UnitError> {
    let s = match raw {
        RawSize::Bytes(n) => return Ok(Limit::Max(*n)),
        RawSize::Text(s) => s.trim(),
    };
    if s.eq_ignore_ascii_case("unlimited") || s.eq_ignore_ascii_case("max") {
        return Ok(Limit::Unlimited);
    }
    let bad = || UnitError::BadSize(s.to_string());
    let mut body = s;
    for suffix in ["iB", "B", "i"] {
        if let Some(b) = body.strip_suffix(suffix) {
            body = b;
            break;
        }
    }
    let (digits, shift) = match body.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(bad()),
            };
            (&body[..i], shift)
        }
        _ => (body, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = digits
        .parse()
        .map_err(|_| UnitError::Overflow(s.to_string()))?;
    n.checked_mul(1u64 << shift)
        .map(Limit::Max)
        .ok_or_else(|| UnitError::Overflow(s.to_string()))
}

/// The CFS period the runtime writes with every CPU quota (`cpu.max`, `cpu.cfs_period_us`):
/// 100 ms, the kernel's default. Here, beside [`CpuQuota::quota_us`], because the largest
/// `cpu_max` that can be applied depends on it ([`MAX_CPU_MILLICORES`]).
pub const CPU_PERIOD_US: u64 = 100_000;

/// The largest CFS quota the kernel accepts, in µs: `max_cfs_runtime` (kernel/sched/core.c),
/// 2^44 − 1 µs, about 203 days; a larger one is refused with EINVAL.
pub const MAX_CPU_QUOTA_US: u64 = (1 << 44) - 1;

/// The largest `cpu_max` that can be applied: [`MAX_CPU_QUOTA_US`] per [`CPU_PERIOD_US`], in
/// millicores (175921860444m: some 176 million CPUs, so only a typo reaches it).
pub const MAX_CPU_MILLICORES: u64 = MAX_CPU_QUOTA_US * 1000 / CPU_PERIOD_US;

/// The smallest CFS quota the kernel accepts, in µs: `min_cfs_quota_period` (kernel/sched/core.c,
/// 1 ms; a smaller one is refused with EINVAL). The runtime never writes less
/// ([`CpuQuota::quota_us`]).
pub const MIN_CPU_QUOTA_US: u64 = 1000;

/// The smallest `cpu_max`: [`MIN_CPU_QUOTA_US`] per [`CPU_PERIOD_US`], in millicores (10m, or
/// "1%"). A smaller value would be raised to it at launch while `policy explain` showed the
/// smaller one, so it is refused instead.
pub const MIN_CPU_MILLICORES: u64 = MIN_CPU_QUOTA_US * 1000 / CPU_PERIOD_US;

/// A CPU quota, normalised to millicores (1000 = one full CPU).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CpuQuota {
    /// At most this many thousandths of one CPU.
    Millicores(u64),
    /// No CPU quota.
    Unlimited,
}

impl CpuQuota {
    /// The cgroup quota in microseconds per `period_us`, or `None` when unlimited.
    pub fn quota_us(self, period_us: u64) -> Option<u64> {
        match self {
            CpuQuota::Millicores(m) => {
                Some((m.saturating_mul(period_us) / 1000).max(MIN_CPU_QUOTA_US))
            }
            CpuQuota::Unlimited => None,
        }
    }
}

/// Parse `"50%"` (of one CPU), `"1500m"` (millicores) or `"unlimited"`.
pub fn parse_cpu(s: &str) -> Result<CpuQuota, UnitError> {
    let s = s.trim();
    let bad = || UnitError::BadCpu(s.to_string());
    if s.eq_ignore_ascii_case("unlimited") || s.eq_ignore_ascii_case("max") {
        return Ok(CpuQuota::Unlimited);
    }
    let (digits, factor) = if let Some(p) = s.strip_suffix('%') {
        (p, 10)
    } else if let Some(m) = s.strip_suffix('m') {
        (m, 1)
    } else {
        return Err(bad());
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let milli = n.checked_mul(factor).ok_or_else(bad)?;
    if milli == 0 {
        return Err(bad());
    }
    Ok(CpuQuota::Millicores(milli))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> RawSize {
        RawSize::Text(s.to_string())
    }

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_size(&RawSize::Bytes(7)), Ok(Limit::Max(7)));
        assert_eq!(parse_size(&t("4K")), Ok(Limit::Max(4096)));
        assert_eq!(parse_size(&t("256M")), Ok(Limit::Max(256 << 20)));
        assert_eq!(parse_size(&t("1GiB")), Ok(Limit::Max(1 << 30)));
        assert_eq!(parse_size(&t("unlimited")), Ok(Limit::Unlimited));
        assert!(matches!(parse_size(&t("12X")), Err(UnitError::BadSize(_))));
        assert!(matches!(parse_size(&t("")), Err(UnitError::BadSize(_))));
        assert!(matches!(parse_size(&t("-1")), Err(UnitError::BadSize(_))));
        assert!(matches!(
            parse_size(&t("99999999999T")),
            Err(UnitError::Overflow(_))
        ));
    }

    #[test]
    fn cpu_quota_parses_percent_and_millicores() {
        assert_eq!(parse_cpu("50%"), Ok(CpuQuota::Millicores(500)));
        assert_eq!(parse_cpu("1500m"), Ok(CpuQuota::Millicores(1500)));
        assert_eq!(parse_cpu("unlimited"), Ok(CpuQuota::Unlimited));
        assert!(parse_cpu("0%").is_err());
        assert!(parse_cpu("50").is_err());
        assert_eq!(CpuQuota::Millicores(500).quota_us(100_000), Some(50_000));
    }

    proptest::proptest! {
        #[test]
        fn any_text_parses_or_errors_without_panicking(s in ".{0,24}") {
            let _ = parse_size(&RawSize::Text(s.clone()));
            let _ = parse_cpu(&s);
        }

        #[test]
        fn suffixes_scale_exactly(n in 0u64..(1 << 20), i in 0usize..4) {
            let (suffix, shift) = [("K", 10), ("M", 20), ("G", 30), ("T", 40)][i];
            let parsed = parse_size(&RawSize::Text(format!("{n}{suffix}")));
            proptest::prop_assert_eq!(parsed, Ok(Limit::Max(n << shift)));
        }

        #[test]
        fn percent_and_millicores_agree(p in 1u64..10_000) {
            proptest::prop_assert_eq!(parse_cpu(&format!("{p}%")), parse_cpu(&format!("{}m", p * 10)));
        }
    }
}
