//! Text normalisation for signatures: the same kind of thing must map to the same key however its
//! incidental details (numbers, ids, hex, paths, quoting, case) vary, so that evidence from many
//! sessions accumulates on one artifact. Every function here is pure and total.

use regex::Regex;
use std::sync::OnceLock;

struct Patterns {
    uuid: Regex,
    hex: Regex,
    path: Regex,
    quoted: Regex,
    number: Regex,
    space: Regex,
    remark: Regex,
}

fn patterns() -> &'static Patterns {
    static P: OnceLock<Patterns> = OnceLock::new();
    P.get_or_init(|| Patterns {
        uuid: Regex::new(r"(?i)\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
            .expect("uuid pattern"),
        hex: Regex::new(r"(?i)\b(0x[0-9a-f]+|[0-9a-f]*[0-9][0-9a-f]*[a-f][0-9a-f]*|[0-9a-f]*[a-f][0-9a-f]*[0-9][0-9a-f]*)\b")
            .expect("hex pattern"),
        path: Regex::new(r"(?:[A-Za-z]:)?(?:/[\w.\-]+){2,}/?").expect("path pattern"),
        quoted: Regex::new(r#""[^"]*"|'[^']*'|`[^`]*`"#).expect("quote pattern"),
        number: Regex::new(r"\d+(?:\.\d+)*").expect("number pattern"),
        space: Regex::new(r"\s+").expect("space pattern"),
        remark: Regex::new(r"\([^()]*\)|\[[^\[\]]*\]").expect("remark pattern"),
    })
}

/// Most characters a signature keeps.
const MAX_SIGNATURE: usize = 160;

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s.trim().to_string()
}

/// An error message reduced to its kind: ids, hex, paths, quoted values and numbers become
/// placeholders, case and spacing are folded. `"Timeout after 31s on /srv/a/b.txt"` and
/// `"timeout after 5s on /tmp/x"` share the signature `timeout after <n>s on <path>`.
pub fn error_signature(message: &str) -> String {
    let p = patterns();
    let s = message.to_lowercase();
    let s = p.uuid.replace_all(&s, "<id>");
    let s = p.path.replace_all(&s, "<path>");
    let s = p.quoted.replace_all(&s, "<str>");
    let s = p.hex.replace_all(&s, "<hex>");
    let s = p.number.replace_all(&s, "<n>");
    let s = p.space.replace_all(&s, " ");
    truncate(s.trim().to_string(), MAX_SIGNATURE)
}

/// An action label: lowercase words, numbers and ids stripped, at most `max_words` words.
pub fn action_label(text: &str, max_words: usize) -> String {
    let p = patterns();
    let s = text.to_lowercase();
    let s = p.uuid.replace_all(&s, " ");
    let s = p.quoted.replace_all(&s, " ");
    let s = p.number.replace_all(&s, " ");
    let words: Vec<&str> = s
        .split(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | '(' | ')' | '&' | '|'))
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric() && c != '_' && c != '-'))
        .filter(|w| !w.is_empty() && !w.starts_with('-') && w.chars().any(char::is_alphabetic))
        .take(max_words)
        .collect();
    truncate(words.join(" "), MAX_SIGNATURE)
}

const STOPWORDS: &[&str] = &[
    "a", "an", "the", "to", "of", "for", "and", "or", "on", "in", "at", "by", "with", "from",
    "please", "can", "you", "could", "would", "i", "we", "me", "us", "my", "our", "this", "that",
    "it", "is", "are", "be", "need", "want", "let", "lets", "let's", "now", "then", "some", "new",
];

/// A task signature from the first user intent: significant words in order, stopwords, numbers
/// and ids removed, at most eight words. `"Please deploy the payment service v2.4.1 to prod"` →
/// `deploy payment service prod`.
pub fn task_signature(text: &str) -> String {
    // Remarks in brackets ("(ticket 4411)", "[urgent]") are not the task.
    let text = patterns().remark.replace_all(text, " ");
    let label = action_label(&text, 64);
    let words: Vec<&str> = label
        .split(' ')
        .filter(|w| w.len() > 1 && !STOPWORDS.contains(w))
        .filter(|w| !patterns().hex.is_match(w))
        .take(8)
        .collect();
    words.join(" ")
}

/// `deploy payment service` → `Deploy Payment Service`.
pub fn title_case(s: &str) -> String {
    s.split(' ')
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Fact text folded for near-duplicate detection: lowercase words without punctuation.
pub fn fact_key(text: &str) -> String {
    let s: String = text
        .to_lowercase()
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect();
    let words: Vec<&str> = s
        .split_whitespace()
        .filter(|w| !matches!(*w, "a" | "an" | "the"))
        .collect();
    truncate(words.join(" "), MAX_SIGNATURE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_signatures_fold_incidentals() {
        assert_eq!(
            error_signature("Connection refused: db-host-17:5432"),
            error_signature("connection refused: db-host-3:5433")
        );
        assert_eq!(
            error_signature("Timeout after 31s reading /srv/app/a.txt"),
            "timeout after <n>s reading <path>"
        );
        assert_eq!(
            error_signature("object deadbeef12 missing"),
            error_signature("object 0a1b2c3d missing")
        );
    }

    #[test]
    fn task_signatures_keep_intent() {
        assert_eq!(
            task_signature("Please deploy the payment service v2.4.1 to prod"),
            "deploy payment service prod"
        );
        assert_eq!(
            task_signature("Deploy the payment service (ticket 4411) [urgent]"),
            "deploy payment service"
        );
        assert_eq!(
            title_case("deploy payment service"),
            "Deploy Payment Service"
        );
        assert_eq!(
            action_label("kubectl apply -f app.yaml --wait", 3),
            "kubectl apply app.yaml"
        );
    }
}
