//! The domain's closed sets of values: job kinds and statuses, key modes, event types, artifact
//! types and statuses, synthesize sections. A leaf module (it imports nothing of the crate), so
//! the storage layer reads rows into these types and every layer above speaks them.
//!
//! Each type has one spelling, used on the wire and in the database (`as_str`, `FromStr`,
//! `Display`); parsing an unknown spelling is an error naming the type and the value. Roles and
//! scopes live in `perms`, plans in `plans`.

use std::fmt;
use std::str::FromStr;

/// Declares a closed set of values spelled as fixed strings.
macro_rules! spelled {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The value's one spelling (wire and database).
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!(
                        concat!("unknown ", $what, " '{}' (one of: {})"),
                        other,
                        [$($text,)+].join(", ")
                    )),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

spelled! {
    /// What a background job does.
    JobKind, "job kind" {
        /// Post-capture processing of one event (salience, episodic memory, index).
        Capture = "capture",
        /// Compiling a tenant's events into memories and artifacts.
        Learn = "learn",
    }
}

spelled! {
    /// Where a job is in its life.
    JobStatus, "job status" {
        Queued = "queued",
        Running = "running",
        Completed = "completed",
        /// Finished, but part of the input could not be processed.
        Partial = "partial",
        Failed = "failed",
    }
}

spelled! {
    /// Whether a key (and what it writes) is live or test traffic.
    KeyMode, "key mode" {
        Live = "live",
        Test = "test",
    }
}

spelled! {
    /// The kinds of event an agent run captures (docs/api.md, "Capture").
    EventType, "event type" {
        Message = "message",
        ToolCall = "tool_call",
        ToolResult = "tool_result",
        FileEdit = "file_edit",
        TestRun = "test_run",
        CommandExec = "command_exec",
        BrowserAction = "browser_action",
        ApiResult = "api_result",
        Outcome = "outcome",
        Observation = "observation",
        FileChange = "file_change",
        Decision = "decision",
        Error = "error",
        StateChange = "state_change",
        Feedback = "feedback",
    }
}

spelled! {
    /// The knowledge artifacts learn compiles.
    ArtifactType, "artifact type" {
        TaskSchema = "task_schema",
        FailurePlaybook = "failure_playbook",
        CausalPattern = "causal_pattern",
        DecisionPolicy = "decision_policy",
    }
}

spelled! {
    /// Whether an artifact is in use.
    ArtifactStatus, "artifact status" {
        Active = "active",
        /// Replaced by a newer version of the same artifact; kept as history.
        Superseded = "superseded",
        /// Its evidence was forgotten or it no longer holds; never packed.
        Deprecated = "deprecated",
    }
}

spelled! {
    /// The kinds of memory.
    MemoryKind, "memory kind" {
        /// What one event recorded (written when the event is processed).
        Episodic = "episodic",
        /// A fact learn distilled from many events.
        Semantic = "semantic",
    }
}

spelled! {
    /// Whether a memory is in use.
    MemoryStatus, "memory status" {
        Active = "active",
        /// Replaced by a newer statement of the same fact; kept as history, never packed.
        Superseded = "superseded",
    }
}

spelled! {
    /// The sections of a synthesized context pack, in the order they are rendered.
    Section, "section" {
        Procedures = "procedures",
        Failures = "failures",
        Decisions = "decisions",
        Facts = "facts",
        Causal = "causal",
        Context = "context",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_round_trips_and_unknown_ones_are_named() {
        for k in JobStatus::ALL {
            assert_eq!(k.as_str().parse::<JobStatus>().unwrap(), *k);
            assert_eq!(k.to_string(), k.as_str());
        }
        for t in EventType::ALL {
            assert_eq!(t.as_str().parse::<EventType>().unwrap(), *t);
        }
        assert_eq!(EventType::ALL.len(), 15);
        let e = "compile".parse::<JobKind>().unwrap_err();
        assert_eq!(e, "unknown job kind 'compile' (one of: capture, learn)");
        assert!("Live".parse::<KeyMode>().is_err(), "spellings are exact");
    }
}
