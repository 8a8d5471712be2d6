//! Secrets in `goop.json`: passwords that `Debug` never prints, and database URLs whose password
//! is replaced before they reach a log, an error or a page.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A password as it appears in `goop.json`: an argon2 PHC string (preferred) or plain text.
/// `Debug` never prints it.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The stored text, for the one place that verifies a login against it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// True when the value is an argon2 PHC string rather than a plain-text password.
    pub fn is_argon2_hash(&self) -> bool {
        self.0.starts_with("$argon2")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("\"<redacted>\"")
        }
    }
}

/// `url` with its password replaced by `<redacted>`: the form of a database URL that may appear
/// in logs, errors and pages. Text that does not parse is redacted whole unless it has no `@`.
pub fn redact_url_password(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(parsed) => match parsed.password() {
            Some(password) => url.replacen(&format!(":{password}@"), ":<redacted>@", 1),
            None => url.to_owned(),
        },
        Err(_) if url.contains('@') => "<redacted>".into(),
        Err(_) => url.to_owned(),
    }
}
