//! Field-by-field validation of request bodies, the one mechanism of both API families.
//!
//! `Fields` reads typed values from a JSON object and collects every problem (naming its field,
//! nested ones as `options.maxEvents`, list items as `eventIds[2]`) instead of stopping at the
//! first, so a client learns all it must fix from one answer (422 in the memory family, 400 in
//! the registry family). Each route's request type is built by its `from_body`, which calls
//! `finish` before the handler touches storage: nothing is written for a rejected request.

use crate::error::{Error, FieldError, Result};
use serde_json::{Map, Value};

pub struct Fields<'a> {
    body: &'a Map<String, Value>,
    /// `options.` for the fields of a nested object (`object`).
    prefix: String,
    pub errors: Vec<FieldError>,
}

impl<'a> Fields<'a> {
    pub fn new(body: &'a Map<String, Value>) -> Fields<'a> {
        Fields {
            body,
            prefix: String::new(),
            errors: Vec::new(),
        }
    }

    pub fn error(&mut self, field: &str, message: impl Into<String>) {
        self.errors
            .push(FieldError::new(format!("{}{field}", self.prefix), message));
    }

    /// The fields of a nested object, named `{name}.{field}`: `None` when absent (or an error
    /// when it is not an object). Hand it back to `merge` to keep its errors.
    pub fn object(&mut self, name: &str) -> Option<Fields<'a>> {
        match self.raw(name) {
            None => None,
            Some(Value::Object(o)) => Some(Fields {
                body: o,
                prefix: format!("{}{name}.", self.prefix),
                errors: Vec::new(),
            }),
            Some(_) => {
                self.error(name, "must be an object");
                None
            }
        }
    }

    /// Keeps the errors of a nested object's fields.
    pub fn merge(&mut self, nested: Fields<'_>) {
        self.errors.extend(nested.errors);
    }

    /// Moves the errors a nested object's fields collected so far to the end of this one's
    /// (keeping the order in which a body's fields were read).
    pub fn take_errors(&mut self, nested: &mut Fields<'_>) {
        self.errors.append(&mut nested.errors);
    }

    /// One of `allowed` (exact spelling), `default` when absent.
    pub fn one_of<'v>(&mut self, name: &str, allowed: &[&'v str], default: &'v str) -> &'v str {
        match self.raw(name) {
            None => default,
            Some(Value::String(s)) => match allowed.iter().find(|a| **a == s) {
                Some(a) => a,
                None => {
                    self.error(name, format!("must be one of {}", allowed.join(", ")));
                    default
                }
            },
            Some(_) => {
                self.error(name, format!("must be one of {}", allowed.join(", ")));
                default
            }
        }
    }

    /// A number in `min..=max`; `None` when absent or invalid (`message` names the range).
    pub fn number(&mut self, name: &str, min: f64, max: f64, message: &str) -> Option<f64> {
        let v = self.raw(name)?;
        match v.as_f64() {
            Some(x) if (min..=max).contains(&x) => Some(x),
            _ => {
                self.error(name, message);
                None
            }
        }
    }

    /// The value of a field as sent, `null` included (for fields where null means "clear").
    pub fn given(&self, name: &str) -> Option<&'a Value> {
        self.body.get(name)
    }

    /// The raw value of a field; JSON `null` counts as absent.
    pub fn raw(&self, name: &str) -> Option<&'a Value> {
        self.body.get(name).filter(|v| !v.is_null())
    }

    /// A string of `min..=max` characters after trimming. `None` when absent (an error if
    /// `required`) or invalid.
    pub fn string(&mut self, name: &str, required: bool, min: usize, max: usize) -> Option<String> {
        match self.raw(name) {
            None if required => {
                self.error(name, "is required");
                None
            }
            None => None,
            Some(Value::String(s)) => {
                let t = s.trim();
                let n = t.chars().count();
                if n == 0 {
                    if required {
                        self.error(name, "is required and must not be empty");
                    }
                    None
                } else if n < min {
                    self.error(name, format!("must be at least {min} characters (got {n})"));
                    None
                } else if n > max {
                    self.error(name, format!("must be at most {max} characters (got {n})"));
                    None
                } else {
                    Some(t.to_string())
                }
            }
            Some(_) => {
                self.error(name, "must be a string");
                None
            }
        }
    }

    /// An id: a string of 1 to `max` characters, taken as given. `None` when absent or invalid.
    pub fn id(&mut self, name: &str, max: usize) -> Option<String> {
        match self.raw(name)? {
            Value::String(s) if !s.is_empty() && s.chars().count() <= max => Some(s.clone()),
            Value::String(_) => {
                self.error(name, format!("must be 1 to {max} characters long"));
                None
            }
            _ => {
                self.error(name, "must be a string");
                None
            }
        }
    }

    /// A boolean, `default` when absent.
    pub fn boolean(&mut self, name: &str, default: bool) -> bool {
        match self.raw(name) {
            None => default,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                self.error(name, "must be true or false");
                default
            }
        }
    }

    /// A whole number in `min..=max`, `default` when absent.
    pub fn integer(&mut self, name: &str, min: i64, max: i64, default: i64) -> i64 {
        match self.raw(name) {
            None => default,
            Some(Value::Number(n)) => match n.as_i64() {
                Some(v) if (min..=max).contains(&v) => v,
                Some(v) => {
                    self.error(name, format!("must be between {min} and {max} (got {v})"));
                    default
                }
                None => {
                    self.error(
                        name,
                        format!("must be a whole number between {min} and {max}"),
                    );
                    default
                }
            },
            Some(_) => {
                self.error(
                    name,
                    format!("must be a whole number between {min} and {max}"),
                );
                default
            }
        }
    }

    /// A list of at most `max_items` non-empty strings of at most `max_len` characters each
    /// (trimmed; duplicates dropped, order kept). Empty when absent.
    pub fn string_list(&mut self, name: &str, max_items: usize, max_len: usize) -> Vec<String> {
        let items = match self.raw(name) {
            None => return Vec::new(),
            Some(Value::Array(items)) => items,
            Some(_) => {
                self.error(name, "must be an array of strings");
                return Vec::new();
            }
        };
        if items.len() > max_items {
            self.error(
                name,
                format!("must have at most {max_items} items (got {})", items.len()),
            );
            return Vec::new();
        }
        let mut out: Vec<String> = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match item.as_str().map(str::trim) {
                Some(s) if !s.is_empty() && s.chars().count() <= max_len => {
                    if !out.iter().any(|o| o == s) {
                        out.push(s.to_string());
                    }
                }
                Some(_) => self.error(
                    &format!("{name}[{i}]"),
                    format!("must be 1 to {max_len} characters"),
                ),
                None => self.error(&format!("{name}[{i}]"), "must be a string"),
            }
        }
        out
    }

    /// 400 naming every invalid field, if any.
    pub fn finish(self) -> Result<()> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(Error::invalid(self.errors))
        }
    }
}

/// A normalised email (trimmed, lower case) or a message saying what is wrong with it.
///
/// The check is deliberately practical rather than RFC 5322-complete: one `@`, a non-empty local
/// part of printable characters without spaces, and a domain of at least two dot-separated
/// labels of letters, digits and inner hyphens.
pub fn email(raw: &str) -> std::result::Result<String, &'static str> {
    let s = raw.trim().to_lowercase();
    if s.is_empty() {
        return Err("is required");
    }
    if s.len() > 254 {
        return Err("must be at most 254 characters");
    }
    let Some((local, domain)) = s.split_once('@') else {
        return Err("must be an email address like name@example.org");
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
    if local_ok && domain_ok {
        Ok(s)
    } else {
        Err("must be an email address like name@example.org")
    }
}

#[cfg(test)]
mod tests {
    use super::email;

    #[test]
    fn emails() {
        assert_eq!(
            email(" Doctor@Hospital.org ").unwrap(),
            "doctor@hospital.org"
        );
        assert!(email("a.b+tag@sub.example.co").is_ok());
        for bad in [
            "",
            "plain",
            "@x.org",
            "a@",
            "a@localhost",
            "a b@x.org",
            "a@x..org",
            "a@-x.org",
            "a@@x.org",
            ".a@x.org",
        ] {
            assert!(email(bad).is_err(), "{bad}");
        }
    }
}
