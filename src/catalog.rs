//! The public connector catalogue (`GET /v1/connectors/registry`).
//!
//! A list of real, publicly hosted MCP servers ships in the binary (`BUILTIN`); at every start it
//! is merged into the global `connector_catalog` table, so a newer binary refreshes the shipped
//! entries. The operator extends the catalogue with `engram connectors add|remove`:
//! - an operator entry (`builtin = 0`) is never overwritten by the merge, so adding a shipped
//!   slug overrides that entry for good;
//! - removing a shipped entry hides it (`hidden = 1`) instead of deleting it, so the next start
//!   does not bring it back; adding it again shows it again.
//!
//! The catalogue is not tenant data: every tenant sees the same list.

use crate::error::{Error, Result};
use crate::store::{catalog as rows, Conn};

pub use crate::store::catalog::Entry;

/// Shipped entries: (slug, name, category, status, MCP endpoint). All are remote MCP servers run
/// by the vendor of the service they expose ("Verified").
pub const BUILTIN: &[(&str, &str, &str, &str, &str)] = &[
    (
        "github",
        "GitHub",
        "Developer Tools",
        "Verified",
        "https://api.githubcopilot.com/mcp/",
    ),
    (
        "sentry",
        "Sentry",
        "Monitoring",
        "Verified",
        "https://mcp.sentry.dev/mcp",
    ),
    (
        "linear",
        "Linear",
        "Project Management",
        "Verified",
        "https://mcp.linear.app/sse",
    ),
    (
        "atlassian",
        "Atlassian (Jira & Confluence)",
        "Project Management",
        "Verified",
        "https://mcp.atlassian.com/v1/sse",
    ),
    (
        "asana",
        "Asana",
        "Project Management",
        "Verified",
        "https://mcp.asana.com/sse",
    ),
    (
        "notion",
        "Notion",
        "Knowledge",
        "Verified",
        "https://mcp.notion.com/mcp",
    ),
    (
        "stripe",
        "Stripe",
        "Payments",
        "Verified",
        "https://mcp.stripe.com",
    ),
    (
        "paypal",
        "PayPal",
        "Payments",
        "Verified",
        "https://mcp.paypal.com/sse",
    ),
    (
        "square",
        "Square",
        "Payments",
        "Verified",
        "https://mcp.squareup.com/sse",
    ),
    (
        "intercom",
        "Intercom",
        "Customer Support",
        "Verified",
        "https://mcp.intercom.com/sse",
    ),
    (
        "neon",
        "Neon Postgres",
        "Database",
        "Verified",
        "https://mcp.neon.tech/sse",
    ),
    (
        "hugging-face",
        "Hugging Face",
        "AI/ML",
        "Verified",
        "https://huggingface.co/mcp",
    ),
    (
        "deepwiki",
        "DeepWiki",
        "Documentation",
        "Verified",
        "https://mcp.deepwiki.com/mcp",
    ),
    (
        "cloudflare-docs",
        "Cloudflare Docs",
        "Documentation",
        "Verified",
        "https://docs.mcp.cloudflare.com/sse",
    ),
];

/// Checks an MCP endpoint: an absolute `http` or `https` URL with a host, without spaces.
/// Returns the URL as given (trimmed) so clients get back exactly what they registered.
pub fn validate_mcp_url(raw: &str) -> std::result::Result<String, String> {
    let s = raw.trim();
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > 2048 {
        return Err("must be at most 2048 characters".into());
    }
    let url = url::Url::parse(s).map_err(|e| format!("must be an absolute http(s) URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "must be an http or https URL, not '{}'",
            url.scheme()
        ));
    }
    if url.host_str().unwrap_or("").is_empty() {
        return Err("must name a host".into());
    }
    if s.chars().any(char::is_whitespace) {
        return Err("must not contain spaces".into());
    }
    Ok(s.to_string())
}

/// Merges the shipped entries into the table (refreshing shipped rows, leaving operator rows and
/// hidden flags alone). Returns how many shipped entries are stored.
pub fn seed(conn: &Conn) -> Result<usize> {
    rows::merge_builtin(conn, BUILTIN)?;
    Ok(BUILTIN.len())
}

/// Visible entries ordered by name, optionally of one category (case-insensitive).
pub fn list(conn: &Conn, category: Option<&str>) -> Result<Vec<Entry>> {
    rows::list(conn, category)
}

/// A visible entry by slug.
pub fn get(conn: &Conn, slug: &str) -> Result<Option<Entry>> {
    rows::get(conn, slug)
}

/// Adds or replaces an operator entry. `slug` defaults to the slug of the name.
pub fn add(
    conn: &Conn,
    slug: Option<&str>,
    name: &str,
    category: &str,
    status: &str,
    mcp_url: &str,
) -> Result<Entry> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(Error::validation("name", "must be 1 to 100 characters"));
    }
    let slug = match slug {
        Some(s) => s.trim().to_string(),
        None => crate::store::agents::slugify(name),
    };
    let slug_ok = !slug.is_empty()
        && slug.len() <= 64
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !slug.starts_with('-')
        && !slug.ends_with('-');
    if !slug_ok {
        return Err(Error::validation(
            "slug",
            format!("'{slug}' must be 1 to 64 lower-case letters, digits and inner hyphens"),
        ));
    }
    for (field, value) in [("category", category), ("status", status)] {
        let v = value.trim();
        if v.is_empty() || v.chars().count() > 64 {
            return Err(Error::validation(field, "must be 1 to 64 characters"));
        }
    }
    let url = validate_mcp_url(mcp_url).map_err(|m| Error::validation("url", m))?;
    let entry = Entry {
        slug,
        name: name.to_string(),
        category: category.trim().to_string(),
        status: status.trim().to_string(),
        mcp_url: Some(url),
        builtin: false,
    };
    rows::put_operator(conn, &entry)?;
    Ok(entry)
}

/// Removes an entry: shipped ones are hidden (so the next start does not restore them),
/// operator ones deleted. `false` when no visible entry has that slug.
pub fn remove(conn: &Conn, slug: &str) -> Result<bool> {
    let Some(entry) = get(conn, slug)? else {
        return Ok(false);
    };
    rows::remove(conn, &entry)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        assert!(validate_mcp_url("https://mcp.internal.org/").is_ok());
        assert!(validate_mcp_url("http://127.0.0.1:9000/mcp").is_ok());
        for bad in [
            "",
            "mcp.internal.org",
            "/relative/path",
            "ftp://x.org/",
            "https://",
            "javascript:alert(1)",
            "https://exa mple.org/",
        ] {
            assert!(validate_mcp_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn seed_merge_keeps_operator_changes() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::store::open_direct(dir.path()).unwrap();
        let conn = db.conn();
        seed(&conn).unwrap();
        assert_eq!(list(&conn, None).unwrap().len(), BUILTIN.len());
        assert!(BUILTIN.len() >= 12);
        for (_, _, _, _, url) in BUILTIN {
            validate_mcp_url(url).unwrap();
        }
        // Override a shipped entry and hide another; a later merge keeps both decisions.
        add(
            &conn,
            Some("github"),
            "GitHub Enterprise",
            "Developer Tools",
            "Beta",
            "https://ghe.example.org/mcp",
        )
        .unwrap();
        assert!(remove(&conn, "stripe").unwrap());
        seed(&conn).unwrap();
        assert_eq!(
            get(&conn, "github").unwrap().unwrap().name,
            "GitHub Enterprise"
        );
        assert!(get(&conn, "stripe").unwrap().is_none());
        assert_eq!(list(&conn, Some("payments")).unwrap().len(), 2);
        assert!(!remove(&conn, "stripe").unwrap());
        assert!(add(&conn, None, "Bad", "X", "Y", "not a url").is_err());
    }
}
