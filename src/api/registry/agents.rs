//! Agents: deploy, list, get (by id or slug), delete (docs/api.md "Registry family").
//!
//! Deploy validates every field before anything is stored and reports all problems at once
//! (400 `bad_request` with `details`). The slug comes from the name and is unique per tenant: a
//! second agent whose name gives the same slug is refused with 409 (rather than silently getting
//! a suffixed slug), because clients address agents by slug and must not be surprised by which
//! one answers. The plan's agent limit is enforced in the insert's transaction (429
//! `quota_exceeded`). `endpoint` is built from the server's public URL.
//!
//! Scopes: deploy and delete need `agents:deploy`; list and get accept any registry scope.

use super::projects::{member_view, require_project_role};
use crate::auth::{Role, Scope};
use crate::error::{Error, Result};
use crate::fields::Fields;
use crate::http::{Ctx, Reply};
use crate::store::agents::{self, Agent, ListQuery, NewAgent, ScriptRule, ScriptTool};
use serde::Serialize;
use serde_json::{json, Map, Value};

/// Largest instruction, in bytes (docs/api.md: ≤ 32 KiB).
const MAX_INSTRUCTION: usize = 32 * 1024;
const MAX_SCRIPT_RULES: usize = 200;
const MAX_PATTERN: usize = 2000;

fn endpoint(ctx: &Ctx, id: &str) -> String {
    format!("{}/v1/agents/{id}/invoke", ctx.state.public_url())
}

/// An agent in a listing (`GET /v1/agents`).
#[derive(Serialize)]
struct AgentSummary<'a> {
    id: &'a str,
    name: &'a str,
    slug: &'a str,
    description: Option<&'a str>,
    category: Option<&'a str>,
    status: &'a str,
    invocation_count: i64,
    model: &'a str,
    tags: &'a [String],
    public: bool,
    project_id: Option<&'a str>,
    created_at: &'a str,
}

impl<'a> From<&'a Agent> for AgentSummary<'a> {
    fn from(a: &'a Agent) -> AgentSummary<'a> {
        AgentSummary {
            id: &a.id,
            name: &a.name,
            slug: &a.slug,
            description: a.description.as_deref(),
            category: a.category.as_deref(),
            status: &a.status,
            invocation_count: a.invocation_count,
            model: &a.model,
            tags: &a.tags,
            public: a.public,
            project_id: a.project_id.as_deref(),
            created_at: &a.created_at,
        }
    }
}

/// An agent with everything about it (`GET /v1/agents/{id}`).
#[derive(Serialize)]
struct AgentOut<'a> {
    id: &'a str,
    name: &'a str,
    slug: &'a str,
    model: &'a str,
    instruction: &'a str,
    description: Option<&'a str>,
    category: Option<&'a str>,
    tags: &'a [String],
    status: &'a str,
    endpoint: String,
    invocation_count: i64,
    timeout: u32,
    public: bool,
    project_id: Option<&'a str>,
    script: Option<&'a [ScriptRule]>,
    created_by: Option<&'a str>,
    created_at: &'a str,
    updated_at: &'a str,
}

impl<'a> AgentOut<'a> {
    fn new(ctx: &Ctx, a: &'a Agent) -> AgentOut<'a> {
        AgentOut {
            id: &a.id,
            name: &a.name,
            slug: &a.slug,
            model: &a.model,
            instruction: &a.instruction,
            description: a.description.as_deref(),
            category: a.category.as_deref(),
            tags: &a.tags,
            status: &a.status,
            endpoint: endpoint(ctx, &a.id),
            invocation_count: a.invocation_count,
            timeout: a.timeout_secs,
            public: a.public,
            project_id: a.project_id.as_deref(),
            script: a.script.as_deref(),
            created_by: a.created_by.as_deref(),
            created_at: &a.created_at,
            updated_at: &a.updated_at,
        }
    }
}

/// The answer to a deploy (201).
#[derive(Serialize)]
struct AgentDeployed<'a> {
    agent_id: &'a str,
    id: &'a str,
    name: &'a str,
    slug: &'a str,
    status: &'static str,
    endpoint: String,
    project_id: Option<&'a str>,
    created_at: &'a str,
}

#[derive(Serialize)]
struct AgentList<'a> {
    agents: Vec<AgentSummary<'a>>,
    total: i64,
    page: i64,
    per_page: i64,
}

#[derive(Serialize)]
struct AgentDeleted<'a> {
    message: &'static str,
    id: &'a str,
    slug: &'a str,
}

/// The fields a script rule may have; any other is an error naming it.
const RULE_FIELDS: [&str; 5] = ["match", "reply", "tool", "delay_ms", "status"];
const TOOL_FIELDS: [&str; 3] = ["connector", "name", "arguments"];
/// The longest a rule may make a step wait (the longest agent timeout).
const MAX_RULE_DELAY_MS: u64 = 300_000;

/// Names every field of `obj` not in `known`.
fn unknown_fields(f: &mut Fields<'_>, at: &str, obj: &Map<String, Value>, known: &[&str]) {
    for k in obj.keys().filter(|k| !known.contains(&k.as_str())) {
        f.error(
            &format!("{at}.{k}"),
            format!("is not a known field (known: {})", known.join(", ")),
        );
    }
}

/// Validates `script`: ordered rules `{match, reply, tool?: {connector, name, arguments?},
/// delay_ms?, status?}`.
fn script_rules(f: &mut Fields<'_>) -> Option<Vec<ScriptRule>> {
    let items = match f.raw("script") {
        None => return None,
        Some(Value::Array(items)) => items,
        Some(_) => {
            f.error("script", "must be an array of rules {match, reply, tool?}");
            return None;
        }
    };
    if items.len() > MAX_SCRIPT_RULES {
        f.error(
            "script",
            format!(
                "must have at most {MAX_SCRIPT_RULES} rules (got {})",
                items.len()
            ),
        );
        return None;
    }
    let mut rules = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = |k: &str| format!("script[{i}].{k}");
        let Some(obj) = item.as_object() else {
            f.error(
                &format!("script[{i}]"),
                "must be an object {match, reply, tool?}",
            );
            continue;
        };
        unknown_fields(f, &format!("script[{i}]"), obj, &RULE_FIELDS);
        let delay_ms = match obj.get("delay_ms") {
            None | Some(Value::Null) => Some(None),
            Some(v) => match v.as_u64() {
                Some(d) if d <= MAX_RULE_DELAY_MS => Some(Some(d)),
                _ => {
                    f.error(
                        &at("delay_ms"),
                        format!("must be an integer from 0 to {MAX_RULE_DELAY_MS}"),
                    );
                    None
                }
            },
        };
        let status = match obj.get("status") {
            None | Some(Value::Null) => Some(None),
            Some(v) => match v.as_u64() {
                Some(s @ 400..=599) => Some(Some(s as u16)),
                _ => {
                    f.error(&at("status"), "must be an HTTP status from 400 to 599");
                    None
                }
            },
        };
        let pattern = match obj.get("match") {
            Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_PATTERN => {
                match regex::RegexBuilder::new(s).size_limit(1 << 20).build() {
                    Ok(_) => Some(s.clone()),
                    Err(e) => {
                        f.error(
                            &at("match"),
                            format!("is not a valid regular expression: {e}"),
                        );
                        None
                    }
                }
            }
            Some(Value::String(_)) => {
                f.error(&at("match"), format!("must be 1 to {MAX_PATTERN} bytes"));
                None
            }
            None | Some(Value::Null) => {
                f.error(&at("match"), "is required (a regular expression)");
                None
            }
            Some(_) => {
                f.error(&at("match"), "must be a string (a regular expression)");
                None
            }
        };
        let reply = match obj.get("reply") {
            Some(Value::String(s)) if s.len() <= MAX_INSTRUCTION => Some(s.clone()),
            Some(Value::String(_)) => {
                f.error(&at("reply"), "must be at most 32768 bytes");
                None
            }
            None | Some(Value::Null) if matches!(status, Some(Some(_))) => Some(String::new()),
            None | Some(Value::Null) => {
                f.error(&at("reply"), "is required (or a status, to fail)");
                None
            }
            Some(_) => {
                f.error(&at("reply"), "must be a string");
                None
            }
        };
        let tool = match obj.get("tool") {
            None | Some(Value::Null) => Some(None),
            Some(Value::Object(t)) => script_tool(f, &at("tool"), t).map(Some),
            Some(_) => {
                f.error(
                    &at("tool"),
                    "must be an object {connector, name, arguments?}",
                );
                None
            }
        };
        if let (Some(pattern), Some(reply), Some(tool), Some(delay_ms), Some(status)) =
            (pattern, reply, tool, delay_ms, status)
        {
            rules.push(ScriptRule {
                pattern,
                reply,
                tool,
                delay_ms,
                status,
            });
        }
    }
    Some(rules)
}

fn script_tool(f: &mut Fields<'_>, at: &str, t: &Map<String, Value>) -> Option<ScriptTool> {
    unknown_fields(f, at, t, &TOOL_FIELDS);
    let mut text = |k: &str| match t.get(k) {
        Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= 200 => {
            Some(s.trim().to_string())
        }
        _ => {
            f.error(
                &format!("{at}.{k}"),
                "is required: a string of 1 to 200 characters",
            );
            None
        }
    };
    let connector = text("connector");
    let name = text("name");
    let arguments = match t.get("arguments") {
        None | Some(Value::Null) => Some(json!({})),
        Some(v @ Value::Object(_)) => Some(v.clone()),
        Some(_) => {
            f.error(&format!("{at}.arguments"), "must be an object");
            None
        }
    };
    Some(ScriptTool {
        connector: connector?,
        name: name?,
        arguments: arguments?,
    })
}

pub async fn deploy(ctx: Ctx) -> Result<Reply> {
    let p = ctx.principal()?.clone();
    p.require(Scope::AgentsDeploy)?;
    let body = ctx.json_object(false)?;
    let mut f = Fields::new(&body);
    let name = f.string("name", true, 1, 64);
    if let Some(n) = &name {
        if agents::slugify(n).is_empty() {
            f.error(
                "name",
                "must contain at least one ASCII letter or digit (the slug is made of them)",
            );
        }
    }
    let instruction = match f.raw("instruction") {
        None => {
            f.error("instruction", "is required");
            None
        }
        Some(Value::String(s)) if s.trim().is_empty() => {
            f.error("instruction", "is required and must not be empty");
            None
        }
        Some(Value::String(s)) if s.len() > MAX_INSTRUCTION => {
            f.error(
                "instruction",
                format!(
                    "must be at most 32 KiB ({MAX_INSTRUCTION} bytes; got {})",
                    s.len()
                ),
            );
            None
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            f.error("instruction", "must be a string");
            None
        }
    };
    let model = f.string("model", true, 1, 128);
    let description = f.string("description", false, 0, 2000);
    let category = f.string("category", false, 0, 64);
    let tags = f.string_list("tags", 20, 64);
    let timeout = f.integer("timeout", 5, 300, 30);
    let public = f.boolean("public", false);
    let project_id = f.string("project_id", false, 0, 64);
    let script = script_rules(&mut f);
    f.finish()?;

    let new = NewAgent {
        project_id,
        name: name.unwrap_or_default(),
        model: model.unwrap_or_default(),
        instruction: instruction.unwrap_or_default(),
        description,
        category,
        tags,
        timeout_secs: timeout as u32,
        public,
        script,
        created_by: p.developer_id.clone(),
    };
    let limit = p
        .plan
        .limits()
        .with_overrides(p.limits_override.as_ref())
        .agents;
    let agent = ctx
        .state
        .db
        .write(move |c| {
            if let Some(project_id) = &new.project_id {
                let view = match member_view(c, &p, project_id) {
                    Ok(v) => v,
                    Err(Error::NotFound(_)) => {
                        return Err(Error::validation(
                            "project_id",
                            "no such project, or you have no role in it",
                        ))
                    }
                    Err(e) => return Err(e),
                };
                require_project_role(&view, Role::Developer, "deploying an agent into a project")?;
            }
            agents::insert(c, &p.tenant_id, &new, limit)
        })
        .await?;
    Ok(Reply::created(AgentDeployed {
        agent_id: &agent.id,
        id: &agent.id,
        name: &agent.name,
        slug: &agent.slug,
        status: "deployed",
        endpoint: endpoint(&ctx, &agent.id),
        project_id: agent.project_id.as_deref(),
        created_at: &agent.created_at,
    }))
}

/// `per_page`: 1 or more, default 20; above 100 is clamped to 100 (docs/api.md "Registry family").
fn per_page(ctx: &Ctx) -> Result<i64> {
    let Some(v) = ctx.query.get("per_page") else {
        return Ok(20);
    };
    match v.trim().parse::<i64>() {
        Ok(n) if n >= 1 => Ok(n.min(100)),
        Ok(n) => Err(Error::bad_query(
            "per_page",
            format!("must be at least 1 (values above 100 are clamped to 100), got {n}"),
        )),
        Err(_) => Err(Error::bad_query(
            "per_page",
            format!("must be a whole number from 1 to 100, got '{v}'"),
        )),
    }
}

fn page(ctx: &Ctx) -> Result<i64> {
    let Some(v) = ctx.query.get("page") else {
        return Ok(1);
    };
    match v.trim().parse::<i64>() {
        Ok(n) if n >= 1 => Ok(n),
        Ok(n) => Err(Error::bad_query(
            "page",
            format!("must be 1 or more, got {n}"),
        )),
        Err(_) => Err(Error::bad_query(
            "page",
            format!("must be a whole number of 1 or more, got '{v}'"),
        )),
    }
}

pub async fn list(ctx: Ctx) -> Result<Reply> {
    let p = ctx.principal()?.clone();
    p.require_any(&Scope::REGISTRY)?;
    let page = page(&ctx)?;
    let per_page = per_page(&ctx)?;
    let text = |name: &str| -> Result<Option<String>> {
        match ctx.query.get(name).map(str::trim) {
            None | Some("") => Ok(None),
            Some(s) if s.chars().count() > 200 => {
                Err(Error::bad_query(name, "must be at most 200 characters"))
            }
            Some(s) => Ok(Some(s.to_string())),
        }
    };
    let q = ListQuery {
        category: text("category")?,
        search: text("search")?,
        limit: per_page,
        offset: (page - 1).saturating_mul(per_page),
    };
    let (items, total) = ctx
        .state
        .db
        .read(move |c| agents::list(c, &p.tenant_id, &q))
        .await?;
    Ok(Reply::ok(AgentList {
        agents: items.iter().map(AgentSummary::from).collect(),
        total,
        page,
        per_page,
    }))
}

pub async fn get(ctx: Ctx) -> Result<Reply> {
    let p = ctx.principal()?.clone();
    p.require_any(&Scope::REGISTRY)?;
    let id = ctx.param(0).to_string();
    let agent = ctx
        .state
        .db
        .read(move |c| agents::get(c, &p.tenant_id, &id))
        .await?
        .ok_or_else(|| Error::not_found("agent"))?;
    Ok(Reply::ok(AgentOut::new(&ctx, &agent)))
}

pub async fn delete(ctx: Ctx) -> Result<Reply> {
    let p = ctx.principal()?.clone();
    p.require(Scope::AgentsDeploy)?;
    let id = ctx.param(0).to_string();
    let deleted = ctx
        .state
        .db
        .write(move |c| agents::delete(c, &p.tenant_id, &id))
        .await?
        .ok_or_else(|| Error::not_found("agent"))?;
    Ok(Reply::ok(AgentDeleted {
        message: "Agent deleted successfully",
        id: &deleted.id,
        slug: &deleted.slug,
    }))
}
