//! The `viewer` section: the local browser console's address, password and colour theme.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Secret;

/// Themes the browser console ships.
pub const THEMES: &[&str] = &["dark", "light"];

/// The console's colour theme, `viewer.theme`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Theme {
    Dark,
    Light,
}

impl Theme {
    /// The theme of a validated name (`light`; anything else is the default, `dark`).
    pub fn named(name: &str) -> Theme {
        match name == Theme::Light.as_str() {
            true => Theme::Light,
            false => Theme::Dark,
        }
    }

    /// Its name in `goop.json` (and in the console's `data-theme` attribute).
    pub fn as_str(self) -> &'static str {
        match self {
            Theme::Dark => "dark",
            Theme::Light => "light",
        }
    }
}

/// `viewer`: the local browser console.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Viewer {
    /// `ip:port` of the console; empty disables it.
    pub http_addr: String,
    pub admin_password: Secret,
    pub theme: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Default for Viewer {
    fn default() -> Self {
        Viewer {
            http_addr: "127.0.0.1:8080".into(),
            admin_password: Secret::default(),
            theme: "dark".into(),
            extra: Map::new(),
        }
    }
}

impl Viewer {
    /// The validated theme (validation allows only the names of [`THEMES`]).
    pub fn color_theme(&self) -> Theme {
        Theme::named(&self.theme)
    }

    /// The validated console address, `None` when the console is disabled.
    pub fn http_socket_addr(&self) -> Option<SocketAddr> {
        self.http_addr.parse().ok()
    }
}
