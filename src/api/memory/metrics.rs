//! `GET /v1/usage-metrics` (docs/api.md "Memory family"): the documented fields and the ones the SDK's
//! `get_metrics()` reads, all from the usage counters of the caller's key mode (live or test).
//!
//! The period (`1h` `24h` `7d` `30d`) is covered by whole buckets of the granularity (`minute`
//! `hour` `day`): `period.start` is the start of the first bucket, `period.end` now, and the
//! period totals (`usage.events`, `compilations`, `syntheses`) are the sums of the `series`
//! buckets, so the figures always add up.

use crate::auth::Scope;
use crate::error::{Error, Result};
use crate::http::{Ctx, Reply};
use crate::store::{artifacts, memories, usage};
use chrono::{DateTime, Duration, DurationRound, Utc};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// `GET /v1/usage-metrics`' data.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MetricsOut<'a> {
    plan: &'static str,
    mode: &'static str,
    period: PeriodOut<'a>,
    usage: UsageOut,
    totals: Totals,
    quota: Quota,
}

#[derive(Serialize)]
struct PeriodOut<'a> {
    period: &'a str,
    month: String,
    day: String,
    start: String,
    end: String,
    granularity: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UsageOut {
    events_this_month: i64,
    syntheses_today: i64,
    compilations_today: i64,
    requests_this_minute: u64,
    events: EventSums,
    compilations: CompilationSums,
    syntheses: SynthesisSums,
    series: Vec<SeriesPoint>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EventSums {
    total: i64,
    ingested: i64,
    duplicates: i64,
    errors: i64,
    by_type: BTreeMap<String, i64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CompilationSums {
    total: i64,
    artifacts_created: i64,
    artifacts_updated: i64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SynthesisSums {
    total: i64,
    avg_tokens_used: f64,
    avg_compression_ratio: f64,
}

/// One bucket of the series.
#[derive(Serialize)]
struct SeriesPoint {
    start: String,
    end: String,
    events: i64,
    duplicates: i64,
    errors: i64,
    syntheses: i64,
    compilations: i64,
}

#[derive(Serialize)]
struct Totals {
    events: i64,
    memories: i64,
    artifacts: i64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Quota {
    plan: &'static str,
    events_limit: Option<u64>,
    events_used: u64,
    events_remaining: Option<u64>,
    reset_date: String,
}

/// Most series buckets one request may ask for.
const MAX_BUCKETS: i64 = 1500;

const SERIES_METRICS: [&str; 9] = [
    usage::EVENTS,
    usage::EVENTS_DUPLICATE,
    usage::EVENTS_ERROR,
    usage::SYNTHESES,
    usage::SYNTHESIS_TOKENS,
    usage::SYNTHESIS_COMPRESSION_MILLI,
    usage::COMPILATIONS,
    usage::ARTIFACTS_CREATED,
    usage::ARTIFACTS_UPDATED,
];

fn bucket_name(granularity: &str, t: DateTime<Utc>) -> String {
    match granularity {
        "minute" => usage::minute_bucket(t),
        "day" => usage::day_bucket(t),
        _ => usage::hour_bucket(t),
    }
}

pub async fn usage_metrics(ctx: Ctx) -> Result<Reply> {
    let p = ctx.principal()?;
    p.require(Scope::Read)?;
    let period = ctx
        .query
        .one_of("period", &["1h", "24h", "7d", "30d"])?
        .unwrap_or_else(|| "24h".into());
    let granularity = ctx
        .query
        .one_of("granularity", &["minute", "hour", "day"])?
        .unwrap_or_else(|| "hour".into());
    let span = match period.as_str() {
        "1h" => Duration::hours(1),
        "7d" => Duration::days(7),
        "30d" => Duration::days(30),
        _ => Duration::hours(24),
    };
    let step = match granularity.as_str() {
        "minute" => Duration::minutes(1),
        "day" => Duration::days(1),
        _ => Duration::hours(1),
    };
    if span.num_seconds() / step.num_seconds() > MAX_BUCKETS {
        return Err(Error::bad_query(
            "granularity",
            format!("{granularity} buckets over {period} are too many; use a coarser granularity"),
        ));
    }
    let now = ctx.state.config.clock.now();
    // Whole buckets covering the period; a period shorter than a bucket gets the current one.
    let trunc = |t: DateTime<Utc>| t.duration_trunc(step).map_err(Error::internal);
    let first = trunc(now - span + step)?.min(trunc(now)?);
    let mut starts = Vec::new();
    let mut t = first;
    while t <= now {
        starts.push(t);
        t += step;
    }
    let names: Vec<String> = starts
        .iter()
        .map(|s| bucket_name(&granularity, *s))
        .collect();
    let limits = p.plan.limits().with_overrides(p.limits_override.as_ref());
    let (tenant, mode) = (p.tenant_id.clone(), p.mode);
    let (from, to) = (names[0].clone(), names[names.len() - 1].clone());
    let prefix = from.chars().next().unwrap_or('H');
    // Counts still in memory are written first, so every request answered before this one is in.
    ctx.state.db.flush_usage().await?;
    let (rows, month, today, all_time, memories, artifacts) = ctx
        .state
        .db
        .read(move |c| {
            let rows = usage::in_buckets(c, &tenant, mode, prefix, &from, &to)?;
            let get = |metric: &str, bucket: &str| usage::get(c, &tenant, mode, metric, bucket);
            let month_b = usage::month_bucket(now);
            let day_b = usage::day_bucket(now);
            let month = get(usage::EVENTS, &month_b)?;
            let today = (
                get(usage::SYNTHESES, &day_b)?,
                get(usage::COMPILATIONS, &day_b)?,
            );
            let all_time = get(usage::EVENTS, usage::ALL_TIME)?;
            let memories = memories::count(c, &tenant)?;
            let artifacts = artifacts::count_active(c, &tenant)?;
            Ok((rows, month, today, all_time, memories, artifacts))
        })
        .await?;

    // bucket -> metric -> value, and period sums.
    let mut by_bucket: HashMap<&str, HashMap<&str, i64>> = HashMap::new();
    let mut sums: HashMap<&str, i64> = HashMap::new();
    let mut by_type: BTreeMap<String, i64> = BTreeMap::new();
    let mut type_sums: HashMap<String, i64> = HashMap::new();
    for (bucket, metric, value) in &rows {
        if let Some(t) = metric.strip_prefix("events_type:") {
            *type_sums.entry(t.to_string()).or_default() += value;
            continue;
        }
        if let Some(m) = SERIES_METRICS.iter().find(|m| **m == metric.as_str()) {
            *by_bucket.entry(bucket).or_default().entry(m).or_default() += value;
            *sums.entry(m).or_default() += value;
        }
    }
    by_type.extend(type_sums);
    let sum = |m: &str| sums.get(m).copied().unwrap_or(0);
    let series: Vec<SeriesPoint> = starts
        .iter()
        .zip(&names)
        .map(|(start, name)| {
            let b = by_bucket.get(name.as_str());
            let v = |m: &str| b.and_then(|b| b.get(m)).copied().unwrap_or(0);
            SeriesPoint {
                start: crate::time::rfc3339(*start),
                end: crate::time::rfc3339(*start + step),
                events: v(usage::EVENTS),
                duplicates: v(usage::EVENTS_DUPLICATE),
                errors: v(usage::EVENTS_ERROR),
                syntheses: v(usage::SYNTHESES),
                compilations: v(usage::COMPILATIONS),
            }
        })
        .collect();
    let syntheses = sum(usage::SYNTHESES);
    let avg = |total: i64, scale: f64| {
        if syntheses == 0 {
            0.0
        } else {
            (total as f64 / syntheses as f64 / scale * 100.0).round() / 100.0
        }
    };
    let (_, next_month) = crate::time::month_bounds(now);
    let events_limit = limits.events_per_month;
    let used = month.max(0) as u64;
    let data = MetricsOut {
        plan: p.plan.as_str(),
        mode: p.mode,
        period: PeriodOut {
            period: &period,
            month: now.format("%Y-%m").to_string(),
            day: now.format("%Y-%m-%d").to_string(),
            start: crate::time::rfc3339(first),
            end: crate::time::rfc3339(now),
            granularity: &granularity,
        },
        usage: UsageOut {
            events_this_month: month,
            syntheses_today: today.0,
            compilations_today: today.1,
            requests_this_minute: ctx.state.limits.requests_this_minute(&p.tenant_id),
            events: EventSums {
                total: sum(usage::EVENTS) + sum(usage::EVENTS_DUPLICATE) + sum(usage::EVENTS_ERROR),
                ingested: sum(usage::EVENTS),
                duplicates: sum(usage::EVENTS_DUPLICATE),
                errors: sum(usage::EVENTS_ERROR),
                by_type,
            },
            compilations: CompilationSums {
                total: sum(usage::COMPILATIONS),
                artifacts_created: sum(usage::ARTIFACTS_CREATED),
                artifacts_updated: sum(usage::ARTIFACTS_UPDATED),
            },
            syntheses: SynthesisSums {
                total: syntheses,
                avg_tokens_used: avg(sum(usage::SYNTHESIS_TOKENS), 1.0),
                avg_compression_ratio: avg(sum(usage::SYNTHESIS_COMPRESSION_MILLI), 1000.0),
            },
            series,
        },
        totals: Totals {
            events: all_time,
            memories,
            artifacts,
        },
        quota: Quota {
            plan: p.plan.as_str(),
            events_limit,
            events_used: used,
            events_remaining: events_limit.map(|l| l.saturating_sub(used)),
            reset_date: crate::time::rfc3339(next_month),
        },
    };
    Ok(Reply::ok(data))
}
