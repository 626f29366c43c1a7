//! Short, fixed-width renderings of durations, times and counts.

/// A duration in the fewest characters that stay readable: `850ms`, `12.3s`,
/// `5m02s`, `2h03m`, `3d04h`.
pub fn age(ns: u64) -> String {
    let ms = ns / 1_000_000;
    let s = ns / 1_000_000_000;
    if ms < 1000 {
        format!("{ms}ms")
    } else if s < 60 {
        format!("{:.1}s", ns as f64 / 1e9)
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else if s < 86_400 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s < 100 * 86_400 {
        format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600)
    } else {
        format!("{}d", s / 86_400)
    }
}

/// A time relative to `t0`, in seconds with milliseconds: `+12.345s`.
pub fn rel(ts_ns: u64, t0_ns: u64) -> String {
    if ts_ns >= t0_ns {
        format!("+{:.3}s", (ts_ns - t0_ns) as f64 / 1e9)
    } else {
        format!("-{:.3}s", (t0_ns - ts_ns) as f64 / 1e9)
    }
}

/// A count with thousands separators: `1,048,576`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate in at most five characters: `950`, `12.5k`, `3.2M`.
pub fn rate(per_sec: f64) -> String {
    if !per_sec.is_finite() || per_sec < 0.0 {
        "?".into()
    } else if per_sec < 1000.0 {
        format!("{per_sec:.0}")
    } else if per_sec < 1e6 {
        format!("{:.1}k", per_sec / 1e3)
    } else {
        format!("{:.1}M", per_sec / 1e6)
    }
}

/// A refcount, `?` when unknown.
pub fn refcount(rc: Option<i32>) -> String {
    rc.map_or_else(|| "?".into(), |r| r.to_string())
}

/// A refcount change: `1→2`, `?→1`.
pub fn change(before: Option<i32>, after: Option<i32>) -> String {
    match (before, after) {
        (Some(b), Some(a)) => format!("{b}→{a}"),
        (None, Some(a)) => format!("?→{a}"),
        (Some(b), None) => format!("{b}→?"),
        (None, None) => "?".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_stay_short() {
        assert_eq!(age(850_000_000), "850ms");
        assert_eq!(age(12_340_000_000), "12.3s");
        assert_eq!(age(302_000_000_000), "5m02s");
        assert_eq!(age(7_380_000_000_000), "2h03m");
        assert_eq!(age(273_600_000_000_000), "3d04h");
        for ns in [0, 1, 59_999_999_999, 3_599_000_000_000, u64::MAX] {
            assert!(age(ns).len() <= 7, "{}", age(ns));
        }
    }

    #[test]
    fn counts_and_rates() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_048_576), "1,048,576");
        assert_eq!(rate(12_500.0), "12.5k");
        assert_eq!(rate(3_200_000.0), "3.2M");
        assert_eq!(rel(1_500_000_000, 1_000_000_000), "+0.500s");
        assert_eq!(rel(0, 1_000_000), "-0.001s");
        assert_eq!(change(Some(1025), Some(1)), "1025→1");
    }
}
