//! `manifest.json`: what a template says of itself — name, description, version, icon,
//! category, whether it needs a group and how that group is set up, and its table schemas.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

/// Largest `manifest.json`.
pub const MAX_MANIFEST_BYTES: usize = 64 * 1024;

/// A template's manifest, checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default = "first_version")]
    pub version: String,
    /// A short icon name (`pushpin`) or one emoji.
    #[serde(default)]
    pub icon: String,
    #[serde(default)]
    pub category: String,
    #[serde(default)]
    pub requires_groups: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_config: Option<GroupConfig>,
    /// Visitors need an email a hub vouched for to write.
    #[serde(default)]
    pub require_email: bool,
    /// The role a visitor has in the template's group until the owner gives another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_role: Option<String>,
    /// Table schemas: objects, or paths of JSON files in the bundle.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schemas: Vec<Json>,
    /// Pages the peer makes on request with one of the template's Lua functions, by path
    /// (`{"feed.atom": "feed"}`): the function gets `{path}` and returns the page's text.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub generated: std::collections::BTreeMap<String, String>,
    /// Anything else the manifest says (author, homepage, …), kept as it is.
    #[serde(flatten)]
    pub extra: Map<String, Json>,
}

/// How the group of a template that needs one is set up (`group_config`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupConfig {
    /// The group's ID; the template's name when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `persistent` or `ephemeral` (the default).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_members: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_members: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_role: Option<String>,
    #[serde(default)]
    pub invite_only: bool,
    /// Messages the group keeps for those who join.
    #[serde(default)]
    pub history: u32,
    /// The message types the template's pages send (documentation only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub msg_types: Vec<String>,
}

impl GroupConfig {
    /// The group outlives restarts of its host.
    pub fn persistent(&self) -> bool {
        self.kind.as_deref() == Some("persistent")
    }
}

fn first_version() -> String {
    "1.0.0".into()
}

impl Manifest {
    /// Parses and checks `manifest.json`; every problem is named.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, String> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(format!(
                "manifest.json is larger than {MAX_MANIFEST_BYTES} bytes"
            ));
        }
        let value: Json = serde_json::from_slice(bytes)
            .map_err(|e| format!("manifest.json is not valid JSON: {e}"))?;
        if !value.is_object() {
            return Err("manifest.json must be a JSON object".into());
        }
        let manifest: Manifest = serde_path_to_error::deserialize(value)
            .map_err(|e| format!("manifest.json: {}: {}", e.path(), e.inner()))?;
        manifest.check()?;
        Ok(manifest)
    }

    fn check(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        let bounded = |problems: &mut Vec<String>, what: &str, text: &str, max: usize| {
            if text.chars().count() > max {
                problems.push(format!("`{what}` is longer than {max} characters"));
            }
            if text.chars().any(char::is_control) {
                problems.push(format!("`{what}` holds control characters"));
            }
        };
        if self.name.trim().is_empty() {
            problems.push("`name` is empty".into());
        }
        bounded(&mut problems, "name", &self.name, 64);
        bounded(&mut problems, "description", &self.description, 500);
        bounded(&mut problems, "version", &self.version, 32);
        bounded(&mut problems, "icon", &self.icon, 32);
        bounded(&mut problems, "category", &self.category, 32);
        if let Some(role) = &self.default_role {
            bounded(&mut problems, "default_role", role, 32);
        }
        if self.generated.len() > 16 {
            problems.push("`generated` names more than 16 pages".into());
        }
        for (path, function) in &self.generated {
            let plain = !path.is_empty()
                && path.len() <= 200
                && path
                    .split('/')
                    .all(|part| !part.is_empty() && !part.starts_with('.'))
                && !path.starts_with("lua/")
                && path
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
            if !plain {
                problems.push(format!(
                    "generated: {path:?} is not a plain path of the site (letters, digits, -, _, . and /)"
                ));
            }
            if !crate::services::lua::is_plain_name(function) {
                problems.push(format!("generated: {function:?} is not a function name"));
            }
        }
        if self.schemas.len() > 64 {
            problems.push("`schemas` lists more than 64 tables".into());
        }
        if let Some(group) = &self.group_config {
            if let Some(id) = &group.id
                && !crate::services::groups::valid_id(id)
            {
                problems.push(format!(
                    "group_config.id {id:?} is not a group id (1 to 64 letters, digits, '.', '_' or '-')"
                ));
            }
            if let Some(kind) = &group.kind
                && !matches!(kind.as_str(), "persistent" | "ephemeral")
            {
                problems.push(format!(
                    "group_config.type {kind:?} is not `persistent` or `ephemeral`"
                ));
            }
            if group.roles.len() > 16 || group.roles.iter().any(|r| r.is_empty() || r.len() > 32) {
                problems.push("group_config.roles: at most 16 names of 1 to 32 bytes".into());
            }
            if let (Some(min), Some(max)) = (group.min_members, group.max_members)
                && min > max
            {
                problems.push("group_config.min_members is above max_members".into());
            }
            if let Some(role) = &group.default_role
                && !group.roles.is_empty()
                && !group.roles.contains(role)
            {
                problems.push(format!(
                    "group_config.default_role {role:?} is not one of its roles"
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!("manifest.json: {}", problems.join("; ")))
        }
    }

    /// The template's group ID when it needs one: `group_config.id`, else `fallback` (the
    /// template's name).
    pub fn group_id(&self, fallback: &str) -> Option<String> {
        if !self.requires_groups {
            return None;
        }
        Some(
            self.group_config
                .as_ref()
                .and_then(|g| g.id.clone())
                .unwrap_or_else(|| fallback.to_owned()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_with_a_name_only_is_complete() {
        let manifest = Manifest::parse(br#"{"name": "Corkboard"}"#).unwrap();
        assert_eq!(manifest.version, "1.0.0");
        assert!(!manifest.requires_groups);
    }

    #[test]
    fn every_problem_of_a_manifest_is_named() {
        let error =
            Manifest::parse(br#"{"name": "", "group_config": {"type": "forever", "id": "a b"}}"#)
                .unwrap_err();
        assert!(error.contains("`name` is empty"), "{error}");
        assert!(error.contains("group_config.type \"forever\""), "{error}");
        assert!(error.contains("group_config.id \"a b\""), "{error}");
        let error = Manifest::parse(br#"{"name": 3}"#).unwrap_err();
        assert!(error.contains("name"), "{error}");
        assert!(Manifest::parse(b"[1]").unwrap_err().contains("JSON object"));
    }
}
