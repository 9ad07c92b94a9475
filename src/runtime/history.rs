//! Token counting and the session history sent back to the model.
//!
//! Invariant: the history handed to a model never exceeds its token budget; the newest turns are
//! kept and the oldest dropped, and it never starts with an assistant message (a model expects
//! the conversation to open with the user).

use super::Msg;
use crate::store::sessions::StoredMessage;

/// Tokens of `text` in the cl100k encoding (an estimate for non-OpenAI models, good enough for
/// budgets and for reporting usage when an upstream does not say).
pub fn count_tokens(text: &str) -> u64 {
    if text.is_empty() {
        return 0;
    }
    crate::tokens::count_with_special(text)
}

/// Most stored messages loaded for one invocation (before the token budget trims them).
pub const MAX_HISTORY_MESSAGES: usize = 64;
/// Token budget of the history sent with each call.
pub const HISTORY_TOKEN_BUDGET: u64 = 4000;

/// The newest messages of `stored` (oldest first) that fit in `budget` tokens, and their tokens.
pub fn within_budget(stored: &[StoredMessage], budget: u64) -> (Vec<Msg>, u64) {
    let cost = |m: &StoredMessage| {
        if m.tokens > 0 {
            m.tokens
        } else {
            count_tokens(&m.content)
        }
    };
    let mut used = 0u64;
    let mut start = stored.len();
    for (i, m) in stored.iter().enumerate().rev() {
        let t = cost(m);
        if used + t > budget {
            break;
        }
        used += t;
        start = i;
    }
    // Never open with an assistant message.
    while stored.get(start).is_some_and(|m| m.role == "assistant") {
        used -= cost(&stored[start]);
        start += 1;
    }
    let out = stored[start..]
        .iter()
        .map(|m| match m.role.as_str() {
            "assistant" => Msg::assistant(m.content.clone(), Vec::new()),
            _ => Msg::user(m.content.clone()),
        })
        .collect();
    (out, used)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(role: &str, content: &str, tokens: u64) -> StoredMessage {
        StoredMessage {
            role: role.into(),
            content: content.into(),
            tokens,
        }
    }

    #[test]
    fn keeps_the_newest_turns_within_the_budget() {
        let stored = vec![
            m("user", "a", 10),
            m("assistant", "b", 10),
            m("user", "c", 10),
            m("assistant", "d", 10),
        ];
        let (h, t) = within_budget(&stored, 25);
        assert_eq!(t, 20);
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].content, "c");
        // 30 tokens would start with an assistant message: it is dropped.
        let (h, _) = within_budget(&stored, 30);
        assert_eq!(h[0].content, "c");
        assert_eq!(within_budget(&stored, 100).0.len(), 4);
        assert!(within_budget(&stored, 5).0.is_empty());
    }

    #[test]
    fn counts_tokens() {
        assert_eq!(count_tokens(""), 0);
        assert!(count_tokens("hello world, how are you?") >= 5);
    }
}
