//! Exact cl100k_base token counts, fast.
//!
//! Token budgets (context packs, session history, invocation accounting) are counted in the
//! cl100k_base encoding of tiktoken-rs. Its tokeniser splits text with a pattern that needs a
//! backtracking engine (a `\s+(?!\S)` lookahead and possessive quantifiers), which costs about
//! 0.4 µs per token and serialises threads on the regex's shared scratch space — more than storing
//! the event whose memory is being counted. `count` gives the same numbers without that engine:
//!
//! - Splitting: the same alternatives in the same order, written for the `regex` crate's
//!   leftmost-first DFA, which prefers alternatives exactly as a backtracking engine does. The one
//!   construct it lacks is the lookahead: the pattern's `\s+(?!\S)` takes a run of whitespace that
//!   is followed by a non-space *minus its last character* (which then starts the next piece, e.g.
//!   `" word"`). Here the plain `\s+` alternative takes the whole run and the run is shortened by
//!   one character afterwards, with the next search starting at that character.
//! - Encoding: a piece that is itself a token counts one; any other is merged byte pair by byte
//!   pair with the lowest-ranked pair first (leftmost on ties), as tiktoken does. The ranks are
//!   read out of tiktoken-rs's own cl100k_base (`decode_bytes` of every rank), so the vocabulary is
//!   the library's, not a copy.
//!
//! Invariant: `count(text) == cl100k_base().encode_ordinary(text).len()` for every text; the unit
//! tests check it on edge cases and on thousands of random mixed-script strings.

use regex::Regex;
use std::collections::HashMap;
use std::sync::OnceLock;

/// cl100k_base's pre-tokenisation pattern, without the lookahead and possessive quantifiers (see
/// the module docs); the alternatives are in the original order.
const PATTERN: &str = r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s+$|\s*[\r\n]|\s+";

/// Ordinary cl100k_base tokens (ranks 0..=100255).
const VOCAB: u32 = 100_256;

struct Encoding {
    splitter: Regex,
    ranks: HashMap<Vec<u8>, u32>,
}

fn encoding() -> &'static Encoding {
    static ENCODING: OnceLock<Encoding> = OnceLock::new();
    ENCODING.get_or_init(|| {
        let bpe = tiktoken_rs::cl100k_base_singleton();
        let ranks = (0..VOCAB)
            .filter_map(|rank| bpe.decode_bytes(&[rank]).ok().map(|b| (b, rank)))
            .collect();
        Encoding {
            splitter: Regex::new(PATTERN).expect("the cl100k split pattern compiles"),
            ranks,
        }
    })
}

/// Loads the encoding now (otherwise the first count pays for it, about 0.1 s).
pub fn warm_up() {
    let _ = encoding();
}

/// The number of cl100k_base tokens of `text` (special tokens are ordinary text).
pub fn count(text: &str) -> u64 {
    let enc = encoding();
    let mut total = 0u64;
    let mut pos = 0;
    // One iterator per restart: a shortened space run ends the iteration early (rare: runs of
    // two or more spaces before a word), everything else is one pass.
    'restart: while pos < text.len() {
        let rest = &text[pos..];
        for m in enc.splitter.find_iter(rest) {
            let piece = m.as_str();
            if m.end() < rest.len() && is_bare_space_run(piece) {
                // `\s+(?!\S)`: the run's last character goes to the next piece.
                if let Some((last, _)) =
                    piece.char_indices().nth(1).and(piece.char_indices().last())
                {
                    total += count_piece(&enc.ranks, &piece.as_bytes()[..last]);
                    pos += m.start() + last;
                    continue 'restart;
                }
            }
            total += count_piece(&enc.ranks, piece.as_bytes());
        }
        break;
    }
    total
}

/// cl100k_base's special tokens (each one token when specials are recognised).
const SPECIALS: [&str; 5] = [
    "<|endoftext|>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|endofprompt|>",
];

/// Like `count`, but a special token written in the text counts as the one token it is
/// (tiktoken's `encode_with_special_tokens`): the text between specials is counted on its own.
pub fn count_with_special(text: &str) -> u64 {
    let mut total = 0;
    let mut rest = text;
    loop {
        let next = SPECIALS
            .iter()
            .filter_map(|s| rest.find(s).map(|at| (at, s.len())))
            .min();
        let Some((at, len)) = next else {
            return total + count(rest);
        };
        total += count(&rest[..at]) + 1;
        rest = &rest[at + len..];
    }
}

/// A whitespace-only piece that the plain `\s+` alternative produced (the earlier whitespace
/// alternatives end at the end of the text or at a line break).
fn is_bare_space_run(piece: &str) -> bool {
    piece.chars().all(char::is_whitespace) && !piece.ends_with(['\r', '\n'])
}

/// Tokens of one piece: byte-pair merging, lowest rank first, leftmost on ties.
fn count_piece(ranks: &HashMap<Vec<u8>, u32>, piece: &[u8]) -> u64 {
    if piece.len() <= 1 || ranks.contains_key(piece) {
        return 1;
    }
    // Boundaries of the current parts; merging removes the boundary between two parts.
    let mut bounds: Vec<usize> = (0..=piece.len()).collect();
    let rank_at = |bounds: &[usize], i: usize| {
        bounds
            .get(i + 2)
            .and_then(|&end| ranks.get(&piece[bounds[i]..end]).copied())
    };
    let mut pair_ranks: Vec<Option<u32>> =
        (0..bounds.len() - 1).map(|i| rank_at(&bounds, i)).collect();
    loop {
        let mut best: Option<(u32, usize)> = None;
        for (i, r) in pair_ranks.iter().enumerate() {
            if let Some(r) = *r {
                if best.map_or(true, |(b, _)| r < b) {
                    best = Some((r, i));
                }
            }
        }
        let Some((_, i)) = best else {
            break;
        };
        bounds.remove(i + 1);
        pair_ranks.remove(i + 1);
        pair_ranks[i] = rank_at(&bounds, i);
        if i > 0 {
            pair_ranks[i - 1] = rank_at(&bounds, i - 1);
        }
    }
    (bounds.len() - 1) as u64
}

#[cfg(test)]
mod tests {
    use super::count;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// Random strings per generator (raise locally for a deeper check).
    const ITERATIONS: usize = 4000;

    fn reference(text: &str) -> u64 {
        tiktoken_rs::cl100k_base_singleton().count_ordinary(text) as u64
    }

    #[test]
    fn edge_cases_match_tiktoken() {
        let cases = [
            "",
            " ",
            "  ",
            "a",
            "hello world",
            "  hello",
            "hello  ",
            "hello \n",
            "a  \n  b",
            "x\t\ty",
            "  123",
            "\t\t(",
            "1234567",
            "it's I'LL we've THEY'RE he'd I'M 'ſ 'Ss",
            "don't stop'n",
            "foo\r\n\r\nbar\n\n\n",
            "   \n   ",
            "\u{a0}\u{a0}word \u{2028}x\u{3000}y",
            "日本語のテキスト、句読点。",
            "emoji 🎉🎉 mixed 😀x",
            "café naïve Ωmega ΣΑΣ ǅ",
            "e\u{301}\u{301}cole",
            "<|endoftext|> is ordinary here",
            "{\"role\":\"user\",\"content\":\"deploy the payment service\"}",
            "fn main() {\n    println!(\"{}\", 42);\n}\n",
            "!!!???...\n\n",
            " !\n",
            "١٢٣٤ ๑๒๓ Ⅻ ½",
        ];
        for c in cases {
            assert_eq!(count(c), reference(c), "token count of {c:?}");
        }
    }

    #[test]
    fn specials_count_as_one_token_when_recognised() {
        let bpe = tiktoken_rs::cl100k_base_singleton();
        for text in [
            "<|endoftext|>",
            "a<|endoftext|>b",
            "hello  <|fim_prefix|>  \n<|fim_suffix|><|endofprompt|>x ",
            "no specials here",
            "<|endoftext|<|endoftext|>>",
        ] {
            let expected = bpe.encode_with_special_tokens(text).len() as u64;
            assert_eq!(super::count_with_special(text), expected, "{text:?}");
        }
    }

    #[test]
    fn random_mixed_text_matches_tiktoken() {
        let atoms = [
            "a",
            "Z",
            "the",
            " the",
            "ing",
            "'s",
            "'T",
            "'re",
            "'LL",
            "'x",
            "ſ",
            "1",
            "42",
            "12345",
            " ",
            "  ",
            "\t",
            "\n",
            "\r\n",
            "\r",
            "\u{a0}",
            "\u{2028}",
            "\u{3000}",
            ".",
            ",",
            "!",
            "?!",
            "(",
            ")",
            "{",
            "\"",
            "'",
            "-",
            "_",
            "/",
            "\\",
            "é",
            "ß",
            "Ω",
            "ж",
            "日",
            "本",
            "ア",
            "한",
            "ع",
            "١",
            "½",
            "Ⅻ",
            "🎉",
            "😀",
            "\u{301}",
            "\u{200d}",
            "x\u{301}",
            "deploy",
            "payment",
            "kubectl",
            "Service",
            "ERROR:",
            "http://x.y/z?q=1",
            "<|endoftext|>",
        ];
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..ITERATIONS {
            let n = rng.gen_range(0..40);
            let text: String = (0..n)
                .map(|_| atoms[rng.gen_range(0..atoms.len())])
                .collect();
            assert_eq!(count(&text), reference(&text), "token count of {text:?}");
        }
    }

    #[test]
    fn random_code_points_match_tiktoken() {
        let ranges = [
            (0x09u32, 0x0d),
            (0x20, 0x7e),
            (0x80, 0x24f),
            (0x300, 0x36f),
            (0x370, 0x52f),
            (0x600, 0x6ff),
            (0x2000, 0x206f),
            (0x2150, 0x218f),
            (0x3000, 0x30ff),
            (0x4e00, 0x4e80),
            (0xac00, 0xac40),
            (0x1f300, 0x1f64f),
        ];
        let mut rng = StdRng::seed_from_u64(11);
        for _ in 0..ITERATIONS {
            let n = rng.gen_range(0..30);
            let text: String = (0..n)
                .filter_map(|_| {
                    let (lo, hi) = ranges[rng.gen_range(0..ranges.len())];
                    char::from_u32(rng.gen_range(lo..=hi))
                })
                .collect();
            assert_eq!(count(&text), reference(&text), "token count of {text:?}");
        }
    }
}
