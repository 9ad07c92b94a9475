//! `POST /v1/synthesize`: a token-budgeted context pack for a task (docs/api.md "Memory family").
//!
//! Both request forms are accepted: top-level fields (`query`, `maxTokens`, …) and the SDK's nested
//! `options` object; a field in `options` wins over the same field at the top level, and both
//! are validated when both are given. Every validation error names its field (`options.maxTokens`, `tags[2]`, …) and answers 422. The pack
//! itself comes from `search::pack::synthesize_pack`; this handler validates, counts usage
//! (`syntheses`, tokens used, compression ratio, under the key's mode) and renders.

use crate::auth::Scope;
use crate::error::Result;
use crate::fields::Fields;
use crate::http::{Ctx, Reply};
use crate::search::pack::SynthRequest;
use crate::search::schema::SECTIONS;
use crate::store::usage;
use serde_json::{Map, Value};

const MAX_TAGS: usize = 100;
const MAX_ID_LEN: usize = 256;

/// A field in every spelling given — `options.<key>`, then `<key>` — each read by `read` from
/// its object (errors are named after the spelling that has them): an invalid value in either
/// place is an error even when the other is valid. The value in `options` wins.
fn pick<'a, T>(
    top: &mut Fields<'a>,
    options: &mut Option<Fields<'a>>,
    key: &str,
    mut read: impl FnMut(&mut Fields<'a>, &str) -> Option<T>,
) -> Option<T> {
    let nested = options.as_mut().and_then(|o| {
        let v = read(o, key);
        top.take_errors(o);
        v
    });
    let top_level = read(top, key);
    nested.or(top_level)
}

fn id(f: &mut Fields<'_>, key: &str) -> Option<String> {
    match f.raw(key)? {
        Value::String(s) if s.chars().count() > MAX_ID_LEN => {
            f.error(key, format!("must be at most {MAX_ID_LEN} characters"));
            None
        }
        Value::String(s) if s.is_empty() => {
            f.error(key, "must not be empty");
            None
        }
        Value::String(s) => Some(s.clone()),
        _ => {
            f.error(key, "must be a string");
            None
        }
    }
}

fn boolean(f: &mut Fields<'_>, key: &str) -> Option<bool> {
    match f.raw(key)? {
        Value::Bool(b) => Some(*b),
        _ => {
            f.error(key, "must be a boolean");
            None
        }
    }
}

/// A list of distinct strings (at most `MAX_TAGS`), each one of `allowed` when given.
fn list(f: &mut Fields<'_>, key: &str, allowed: Option<&[&str]>) -> Option<Vec<String>> {
    let v = f.raw(key)?;
    let Some(items) = v.as_array() else {
        f.error(key, "must be an array of strings");
        return None;
    };
    if items.len() > MAX_TAGS {
        f.error(key, format!("must have at most {MAX_TAGS} items"));
        return None;
    }
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let name = format!("{key}[{i}]");
        match item.as_str() {
            Some(s) if allowed.is_some_and(|a| !a.contains(&s)) => f.error(
                &name,
                format!(
                    "must be one of {}, got '{}'",
                    allowed.unwrap_or_default().join(", "),
                    crate::error::echo(s)
                ),
            ),
            Some(s) if s.is_empty() || s.len() > MAX_ID_LEN => {
                f.error(&name, format!("must be 1-{MAX_ID_LEN} characters"))
            }
            Some(s) => {
                if !out.iter().any(|x| x == s) {
                    out.push(s.to_string());
                }
            }
            None => f.error(&name, "must be a string"),
        }
    }
    Some(out)
}

/// Parses and validates a synthesize body; returns the request and `includeProvenance`.
pub fn parse_request(body: &Map<String, Value>) -> Result<(SynthRequest, bool)> {
    let mut f = Fields::new(body);
    let mut opts = f.object("options");
    // A blank query means no query.
    let query = pick(&mut f, &mut opts, "query", |f, key| match f.raw(key)? {
        Value::String(s) => Some((!s.trim().is_empty()).then(|| s.clone())),
        _ => {
            f.error(key, "must be a string");
            None
        }
    })
    .flatten();
    let max_tokens = pick(&mut f, &mut opts, "maxTokens", |f, key| {
        match f.raw(key)?.as_f64() {
            Some(n) if n.fract() == 0.0 && (1.0..=128_000.0).contains(&n) => Some(n as u32),
            Some(n) if n.fract() == 0.0 => {
                f.error(key, format!("must be between 1 and 128000, got {n}"));
                None
            }
            _ => {
                f.error(key, "must be an integer between 1 and 128000");
                None
            }
        }
    })
    .unwrap_or(4000);
    let min_confidence = pick(&mut f, &mut opts, "minConfidence", |f, key| {
        f.number(key, 0.0, 1.0, "must be a number between 0 and 1")
    })
    .unwrap_or(0.0);
    let sections = pick(&mut f, &mut opts, "sections", |f, key| {
        list(f, key, Some(&SECTIONS))
    })
    .unwrap_or_default();
    let tags = pick(&mut f, &mut opts, "tags", |f, key| list(f, key, None)).unwrap_or_default();
    let agent_id = pick(&mut f, &mut opts, "agentId", id);
    let session_id = pick(&mut f, &mut opts, "sessionId", id);
    let include_artifacts = pick(&mut f, &mut opts, "includeArtifacts", boolean).unwrap_or(true);
    let include_memories = pick(&mut f, &mut opts, "includeMemories", boolean).unwrap_or(true);
    let include_provenance = pick(&mut f, &mut opts, "includeProvenance", boolean).unwrap_or(true);
    if let Some(o) = opts {
        f.merge(o);
    }
    f.finish()?;
    let req = SynthRequest {
        query,
        agent_id,
        session_id,
        tags,
        max_tokens,
        min_confidence,
        sections,
        include_artifacts,
        include_memories,
    };
    Ok((req, include_provenance))
}

pub async fn synthesize(ctx: Ctx) -> Result<Reply> {
    let p = ctx.principal()?;
    p.require(Scope::Read)?;
    let (tenant, mode) = (p.tenant_id.clone(), p.mode);
    let body = ctx.json_object(true)?;
    let (req, include_provenance) = parse_request(&body)?;
    let pack = ctx.state.synthesize(&tenant, req).await?;
    // Counted in memory and written within `usage_buffer::FLUSH_INTERVAL` (or before any usage
    // read): a read-only request does not wait for the single writer.
    ctx.state.db.usage().add_many(
        &tenant,
        mode,
        ctx.state.config.clock.now(),
        &[
            (usage::SYNTHESES, 1),
            (usage::SYNTHESIS_TOKENS, pack.used as i64),
            (
                usage::SYNTHESIS_COMPRESSION_MILLI,
                (pack.compression_ratio() * 1000.0) as i64,
            ),
        ],
    );
    Ok(Reply::ok_json_text(crate::search::pack_text::to_json_text(
        &pack,
        include_provenance,
    )))
}
