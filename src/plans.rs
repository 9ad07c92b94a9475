//! Plans and their limits (docs/api.md "Common rules"). A tenant's plan sizes its rate limits and
//! monthly quotas; the operator can override any figure per tenant (`limits_json`).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Plan {
    Free,
    Developer,
    Pro,
    Enterprise,
}

/// Limits of one plan; `None` is unlimited.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct PlanLimits {
    pub requests_per_minute: Option<u64>,
    pub burst: Option<u64>,
    pub events_per_month: Option<u64>,
    pub invocations_per_month: Option<u64>,
    pub agents: Option<u64>,
}

impl Plan {
    pub const ALL: [Plan; 4] = [Plan::Free, Plan::Developer, Plan::Pro, Plan::Enterprise];

    pub fn as_str(self) -> &'static str {
        match self {
            Plan::Free => "free",
            Plan::Developer => "developer",
            Plan::Pro => "pro",
            Plan::Enterprise => "enterprise",
        }
    }

    pub fn limits(self) -> PlanLimits {
        let l = |rpm, burst, events, inv, agents| PlanLimits {
            requests_per_minute: Some(rpm),
            burst: Some(burst),
            events_per_month: Some(events),
            invocations_per_month: Some(inv),
            agents: Some(agents),
        };
        match self {
            Plan::Free => l(60, 10, 1_000, 1_000, 5),
            Plan::Developer => l(300, 100, 50_000, 10_000, 25),
            Plan::Pro => l(1_000, 500, 500_000, 10_000, 100),
            Plan::Enterprise => PlanLimits::default(),
        }
    }
}

impl PlanLimits {
    /// The plan's figures with the operator's overrides (a present field wins; JSON `null` in an
    /// override means unlimited).
    pub fn with_overrides(self, overrides: Option<&serde_json::Value>) -> PlanLimits {
        let Some(serde_json::Value::Object(o)) = overrides else {
            return self;
        };
        let pick = |name: &str, base: Option<u64>| match o.get(name) {
            None => base,
            Some(v) => v.as_u64(),
        };
        PlanLimits {
            requests_per_minute: pick("requestsPerMinute", self.requests_per_minute),
            burst: pick("burst", self.burst),
            events_per_month: pick("eventsPerMonth", self.events_per_month),
            invocations_per_month: pick("invocationsPerMonth", self.invocations_per_month),
            agents: pick("agents", self.agents),
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Plan {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "free" => Ok(Plan::Free),
            "developer" => Ok(Plan::Developer),
            "pro" => Ok(Plan::Pro),
            "enterprise" => Ok(Plan::Enterprise),
            other => Err(format!(
                "unknown plan '{}' (expected free, developer, pro or enterprise)",
                crate::error::echo(other)
            )),
        }
    }
}
