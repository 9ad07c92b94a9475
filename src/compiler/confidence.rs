//! Confidence of a compiled pattern: grows with evidence, scales with consistency, decays with
//! age. Age is measured against the newest event in scope, never the wall clock, so the same
//! events always give the same number (and incremental runs agree with a full one).

/// Evidence at which the evidence factor reaches ~63%.
const EVIDENCE_SCALE: f64 = 4.0;
/// Half-life of the recency bonus, in days.
const HALF_LIFE_DAYS: f64 = 30.0;

/// `evidence` supporting observations, `consistency` in 0..=1 (how often the pattern held),
/// `age_ms` from the pattern's newest evidence to the newest event in scope.
pub fn score(evidence: u64, consistency: f64, age_ms: i64) -> f64 {
    let e = 1.0 - (-(evidence as f64) / EVIDENCE_SCALE).exp();
    // Whole hours: evidence captured seconds apart (e.g. in one run or in several) ages alike.
    let hours = age_ms.max(0) / 3_600_000;
    let days = hours as f64 / 24.0;
    // Old evidence keeps half its weight: a stable old procedure is still worth knowing.
    let r = 0.5 + 0.5 * 0.5f64.powf(days / HALF_LIFE_DAYS);
    round4(e * consistency.clamp(0.0, 1.0) * r)
}

/// Rounded to 4 decimals, so stored and compared values are stable.
pub fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

#[cfg(test)]
mod tests {
    use super::score;

    #[test]
    fn grows_with_evidence_and_decays_with_age() {
        assert!(score(10, 0.9, 0) > score(3, 0.9, 0));
        assert!(score(10, 0.9, 0) > score(10, 0.5, 0));
        assert!(score(10, 0.9, 0) > score(10, 0.9, 90 * 86_400_000));
        assert!(score(0, 1.0, 0) == 0.0);
        assert!(score(1000, 1.0, 0) <= 1.0);
    }
}
