//! `POST /v1/synthesize`: a token-budgeted context pack for a task (docs/api.md "Memory family").
//!
//! Both request forms are accepted: top-level fields (`query`, `maxTokens`, …) and the SDK's nested
//! `options` object; a field in `options` wins over the same field at the top level, and both
//! are validated when both are given. Every validation error names its field (`options.maxTokens`, `tags[2]`, …) and answers 422. The pack
//! itself comes from `search::pack::synthesize_pack`; this handler validates, counts usage
//! (`syntheses`, tokens used, compression ratio, under the key's mode) and renders.

use crate::auth::Scope;
use crate::error::{Error, FieldError, Result};
use crate::http::{Ctx, Reply};
use crate::search::pack::SynthRequest;
use crate::search::schema::SECTIONS;
use crate::store::usage;
use serde_json::{Map, Value};

const MAX_TAGS: usize = 100;
const MAX_ID_LEN: usize = 256;

/// A field in every spelling given — `options.<key>`, then `<key>` — each validated by `parse`
/// (which reports its own errors under the name it is given): an invalid value in either place
/// is an error even when the other is valid. The value in `options` wins.
fn pick<T>(
    top: &Map<String, Value>,
    options: Option<&Map<String, Value>>,
    key: &str,
    errs: &mut Vec<FieldError>,
    mut parse: impl FnMut(String, &Value, &mut Vec<FieldError>) -> Option<T>,
) -> Option<T> {
    let nested = options
        .and_then(|o| o.get(key))
        .filter(|v| !v.is_null())
        .and_then(|v| parse(format!("options.{key}"), v, errs));
    let top_level = top
        .get(key)
        .filter(|v| !v.is_null())
        .and_then(|v| parse(key.to_string(), v, errs));
    nested.or(top_level)
}

fn string_field(
    top: &Map<String, Value>,
    opts: Option<&Map<String, Value>>,
    key: &str,
    max_len: usize,
    errs: &mut Vec<FieldError>,
) -> Option<String> {
    pick(top, opts, key, errs, |name, v, errs| match v.as_str() {
        Some(s) if s.chars().count() > max_len => {
            errs.push(FieldError::new(
                name,
                format!("must be at most {max_len} characters"),
            ));
            None
        }
        Some("") => {
            errs.push(FieldError::new(name, "must not be empty"));
            None
        }
        Some(s) => Some(s.to_string()),
        None => {
            errs.push(FieldError::new(name, "must be a string"));
            None
        }
    })
}

fn bool_field(
    top: &Map<String, Value>,
    opts: Option<&Map<String, Value>>,
    key: &str,
    default: bool,
    errs: &mut Vec<FieldError>,
) -> bool {
    pick(top, opts, key, errs, |name, v, errs| match v {
        Value::Bool(b) => Some(*b),
        _ => {
            errs.push(FieldError::new(name, "must be a boolean"));
            None
        }
    })
    .unwrap_or(default)
}

fn string_list(
    top: &Map<String, Value>,
    opts: Option<&Map<String, Value>>,
    key: &str,
    allowed: Option<&[&str]>,
    errs: &mut Vec<FieldError>,
) -> Vec<String> {
    pick(top, opts, key, errs, |name, v, errs| {
        let Some(items) = v.as_array() else {
            errs.push(FieldError::new(name, "must be an array of strings"));
            return None;
        };
        if items.len() > MAX_TAGS {
            errs.push(FieldError::new(
                name,
                format!("must have at most {MAX_TAGS} items"),
            ));
            return None;
        }
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match item.as_str() {
                Some(s) if allowed.is_some_and(|a| !a.contains(&s)) => errs.push(FieldError::new(
                    format!("{name}[{i}]"),
                    format!(
                        "must be one of {}, got '{}'",
                        allowed.unwrap_or_default().join(", "),
                        crate::error::echo(s)
                    ),
                )),
                Some(s) if s.is_empty() || s.len() > MAX_ID_LEN => errs.push(FieldError::new(
                    format!("{name}[{i}]"),
                    format!("must be 1-{MAX_ID_LEN} characters"),
                )),
                Some(s) => {
                    if !out.iter().any(|x: &String| x == s) {
                        out.push(s.to_string());
                    }
                }
                None => errs.push(FieldError::new(format!("{name}[{i}]"), "must be a string")),
            }
        }
        Some(out)
    })
    .unwrap_or_default()
}

/// Parses and validates a synthesize body; returns the request and `includeProvenance`.
pub fn parse_request(body: &Map<String, Value>) -> Result<(SynthRequest, bool)> {
    let mut errs = Vec::new();
    let opts = match body.get("options") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m),
        Some(_) => {
            errs.push(FieldError::new("options", "must be an object"));
            None
        }
    };
    // A blank query means no query.
    let query = pick(body, opts, "query", &mut errs, |name, v, errs| match v {
        Value::String(s) => Some((!s.trim().is_empty()).then(|| s.clone())),
        _ => {
            errs.push(FieldError::new(name, "must be a string"));
            None
        }
    })
    .flatten();
    let max_tokens = pick(
        body,
        opts,
        "maxTokens",
        &mut errs,
        |name, v, errs| match v.as_f64() {
            Some(n) if n.fract() == 0.0 && (1.0..=128_000.0).contains(&n) => Some(n as u32),
            Some(n) if n.fract() == 0.0 => {
                errs.push(FieldError::new(
                    name,
                    format!("must be between 1 and 128000, got {n}"),
                ));
                None
            }
            _ => {
                errs.push(FieldError::new(
                    name,
                    "must be an integer between 1 and 128000",
                ));
                None
            }
        },
    )
    .unwrap_or(4000);
    let min_confidence = pick(
        body,
        opts,
        "minConfidence",
        &mut errs,
        |name, v, errs| match v.as_f64() {
            Some(n) if (0.0..=1.0).contains(&n) => Some(n),
            _ => {
                errs.push(FieldError::new(name, "must be a number between 0 and 1"));
                None
            }
        },
    )
    .unwrap_or(0.0);
    let sections = string_list(body, opts, "sections", Some(&SECTIONS), &mut errs);
    let tags = string_list(body, opts, "tags", None, &mut errs);
    let req = SynthRequest {
        query,
        agent_id: string_field(body, opts, "agentId", MAX_ID_LEN, &mut errs),
        session_id: string_field(body, opts, "sessionId", MAX_ID_LEN, &mut errs),
        tags,
        max_tokens,
        min_confidence,
        sections,
        include_artifacts: bool_field(body, opts, "includeArtifacts", true, &mut errs),
        include_memories: bool_field(body, opts, "includeMemories", true, &mut errs),
    };
    let include_provenance = bool_field(body, opts, "includeProvenance", true, &mut errs);
    if !errs.is_empty() {
        return Err(Error::invalid(errs));
    }
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
