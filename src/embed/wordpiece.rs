//! The bundled model's tokenizer: BERT-style normalisation and pre-tokenization, then WordPiece
//! (the `tokenizer.json` of potion-base-8M: `BertNormalizer` with lowercase and, following it,
//! accent stripping; `BertPreTokenizer`; `WordPiece` with `##` continuations, `[UNK]`, words over
//! 100 characters unknown). Special tokens are never added (the Model2Vec recipe encodes without
//! them). See `models/potion-base-8M/README.md`.

use std::collections::HashMap;
use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

const MAX_WORD_CHARS: usize = 100;
const CONTINUATION: &str = "##";

pub struct WordPiece {
    vocab: HashMap<String, u32>,
    unk: u32,
}

/// CJK ideographs get spaces around them (each is a word of its own), as BERT does.
fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0x20000..=0x2A6DF | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F | 0x2B820..=0x2CEAF | 0xF900..=0xFAFF | 0x2F800..=0x2FA1F)
}

/// BERT's punctuation: ASCII symbols and anything Unicode does not class as a letter, number,
/// mark, space or control character.
fn is_punctuation(c: char) -> bool {
    c.is_ascii_punctuation()
        || (!c.is_ascii()
            && !c.is_alphanumeric()
            && !c.is_whitespace()
            && !c.is_control()
            && !is_combining_mark(c))
}

fn is_control(c: char) -> bool {
    c != '\t' && c != '\n' && c != '\r' && (c.is_control() || c == '\u{fffd}')
}

impl WordPiece {
    /// From a vocabulary with one token per line (line number = id).
    pub fn from_vocab(text: &str) -> Option<WordPiece> {
        let vocab: HashMap<String, u32> = text
            .lines()
            .enumerate()
            .map(|(i, t)| (t.to_string(), i as u32))
            .collect();
        let unk = *vocab.get("[UNK]")?;
        Some(WordPiece { vocab, unk })
    }

    pub fn unk(&self) -> u32 {
        self.unk
    }

    /// The words of `text` after normalisation and pre-tokenization.
    fn words(text: &str) -> Vec<String> {
        let mut cleaned = String::with_capacity(text.len());
        for c in text.chars() {
            if c == '\0' || is_control(c) {
                continue;
            }
            if c.is_whitespace() {
                cleaned.push(' ');
            } else if is_cjk(c) {
                cleaned.push(' ');
                cleaned.push(c);
                cleaned.push(' ');
            } else {
                cleaned.push(c);
            }
        }
        let lowered = cleaned.to_lowercase();
        let stripped: String = lowered.nfd().filter(|c| !is_combining_mark(*c)).collect();
        let mut words = Vec::new();
        let mut word = String::new();
        for c in stripped.chars() {
            if c.is_whitespace() {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            } else if is_punctuation(c) {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                words.push(c.to_string());
            } else {
                word.push(c);
            }
        }
        if !word.is_empty() {
            words.push(word);
        }
        words
    }

    /// Greedy longest-match-first pieces of one word (`[UNK]` when a part matches nothing).
    fn pieces(&self, word: &str, out: &mut Vec<u32>) {
        let chars: Vec<(usize, char)> = word.char_indices().collect();
        if chars.len() > MAX_WORD_CHARS {
            out.push(self.unk);
            return;
        }
        let mut ids = Vec::new();
        let mut start = 0usize;
        let mut candidate = String::new();
        while start < chars.len() {
            let mut end = chars.len();
            let mut found = None;
            while start < end {
                candidate.clear();
                if start > 0 {
                    candidate.push_str(CONTINUATION);
                }
                let (from, to) = (
                    chars[start].0,
                    chars.get(end).map(|(i, _)| *i).unwrap_or(word.len()),
                );
                candidate.push_str(&word[from..to]);
                if let Some(&id) = self.vocab.get(candidate.as_str()) {
                    found = Some(id);
                    break;
                }
                end -= 1;
            }
            match found {
                Some(id) => {
                    ids.push(id);
                    start = end;
                }
                None => {
                    out.push(self.unk);
                    return;
                }
            }
        }
        out.extend(ids);
    }

    /// Token ids of `text`, without special tokens, at most `max` of them.
    pub fn encode(&self, text: &str, max: usize) -> Vec<u32> {
        let mut out = Vec::new();
        for w in Self::words(text) {
            self.pieces(&w, &mut out);
            if out.len() >= max {
                out.truncate(max);
                break;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> WordPiece {
        WordPiece::from_vocab(
            "[PAD]\n[UNK]\n[CLS]\nhello\nworld\n!\nun\n##aff\n##able\ncafe\n,\nit\n'\ns\n",
        )
        .unwrap()
    }

    #[test]
    fn words_are_normalised_and_split_like_bert() {
        assert_eq!(
            WordPiece::words("Héllo,  WORLD!\u{7}it's 東京"),
            ["hello", ",", "world", "!", "it", "'", "s", "東", "京"]
        );
    }

    #[test]
    fn wordpiece_is_greedy_longest_match_first() {
        let t = tiny();
        assert_eq!(t.encode("unaffable", 100), [6, 7, 8]);
        assert_eq!(t.encode("Café, hello!", 100), [9, 10, 3, 5]);
        // A word that cannot be covered is one [UNK], not pieces of it.
        assert_eq!(t.encode("unknown hello", 100), [1, 3]);
        assert_eq!(t.encode(&"a".repeat(101), 100), [1]);
        assert_eq!(t.encode("hello world hello", 2), [3, 4]);
    }
}
