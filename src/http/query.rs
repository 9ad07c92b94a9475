//! Query-string parsing: percent-decoding and typed getters whose errors name the parameter
//! (400 `validation_error` / `bad_request`).

use crate::error::{Error, Result};

#[derive(Clone, Debug, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

fn decode(s: &str) -> Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| Error::bad_query("query", "malformed percent-encoding"))?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| Error::bad_query("query", "not valid UTF-8"))
}

impl Query {
    pub fn parse(raw: Option<&str>) -> Result<Query> {
        let mut pairs = Vec::new();
        for part in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            pairs.push((decode(k)?, decode(v)?));
        }
        Ok(Query { pairs })
    }

    /// The first value of `name`; an empty value counts as absent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// An integer in `min..=max`, or a 400 naming the parameter.
    pub fn int(&self, name: &str, min: i64, max: i64) -> Result<Option<i64>> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        let n: i64 = v
            .parse()
            .map_err(|_| Error::bad_query(name, format!("must be an integer, got '{v}'")))?;
        if n < min || n > max {
            return Err(Error::bad_query(
                name,
                format!("must be between {min} and {max}, got {n}"),
            ));
        }
        Ok(Some(n))
    }

    /// An integer of at least `min`; values above `max` are clamped to `max`.
    pub fn int_clamped(&self, name: &str, min: i64, max: i64) -> Result<Option<i64>> {
        self.int(name, min, i64::MAX).map(|o| o.map(|n| n.min(max)))
    }

    /// One of `allowed`, or a 400 listing them.
    pub fn one_of(&self, name: &str, allowed: &[&str]) -> Result<Option<String>> {
        match self.get(name) {
            None => Ok(None),
            Some(v) if allowed.contains(&v) => Ok(Some(v.to_string())),
            Some(v) => Err(Error::bad_query(
                name,
                format!("must be one of {}, got '{v}'", allowed.join(", ")),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Query;

    #[test]
    fn decodes_and_validates() {
        let q = Query::parse(Some("a=1&b=h%C3%A9llo+x&c=&d=x")).unwrap();
        assert_eq!(q.get("b"), Some("héllo x"));
        assert_eq!(q.get("c"), None);
        assert_eq!(q.int("a", 1, 5).unwrap(), Some(1));
        assert!(q.int("d", 1, 5).is_err());
        assert!(Query::parse(Some("a=%zz")).is_err());
    }
}
