//! Table schemas: parsing and checking them (JSON schemas or plain column definitions), the
//! access policies, and checking a row's values against a schema before it is written.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use crate::store::data::{ColumnDef, SqlValue, StorageType};

/// Columns of its own a table may have (besides the system columns), at creation and after
/// `add-column`.
pub const MAX_COLUMNS: usize = 100;
/// Values an enum column may list.
const MAX_ENUM_VALUES: usize = 100;
/// Longest text of a default or enum value.
const MAX_LITERAL_BYTES: usize = 200;

/// Who may do an operation on a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// This peer only.
    Local,
    /// Anyone, on their own rows (reads see only the caller's rows).
    Owner,
    /// Members of a group of this peer's.
    Group,
    /// Anyone, on every row.
    Open,
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Local => "local",
            Policy::Owner => "owner",
            Policy::Group => "group",
            Policy::Open => "open",
        }
    }

    pub fn parse(text: &str) -> Result<Policy, String> {
        match text {
            "local" => Ok(Policy::Local),
            "owner" => Ok(Policy::Owner),
            "group" => Ok(Policy::Group),
            "open" => Ok(Policy::Open),
            other => Err(format!(
                "policy `{other}` is not one of local, owner, group, open"
            )),
        }
    }
}

/// The policies of a table, per operation, and the group the `group` policy admits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Access {
    #[serde(default = "open")]
    pub read: Policy,
    #[serde(default = "owner")]
    pub insert: Policy,
    #[serde(default = "owner")]
    pub update: Policy,
    #[serde(default = "owner")]
    pub delete: Policy,
    /// Whose members the `group` policy admits, with what rights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupAccess>,
}

/// The group of a table with a `group` policy: members of hosted group `id` are admitted to
/// the operations whose policy is `group`; with `roles`, only to those their role lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupAccess {
    pub id: String,
    /// Role → the operations it may do; empty: every member may do every `group` operation.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub roles: std::collections::BTreeMap<String, Vec<Right>>,
}

/// An operation a role may be given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Right {
    Read,
    Insert,
    Update,
    Delete,
}

fn open() -> Policy {
    Policy::Open
}

fn owner() -> Policy {
    Policy::Owner
}

impl Access {
    /// Checks what serde cannot: the group's id and role names.
    pub fn checked(self) -> Result<Access, String> {
        if let Some(group) = &self.group {
            if !crate::services::groups::valid_id(&group.id) {
                return Err(format!(
                    "group.id {:?} is not a group id (1 to 64 letters, digits, '.', '_' or '-')",
                    group.id
                ));
            }
            if let Some(role) = group
                .roles
                .keys()
                .find(|role| role.is_empty() || role.len() > 32)
            {
                return Err(format!(
                    "group.roles: {role:?} is not a role name (1 to 32 bytes)"
                ));
            }
        }
        Ok(self)
    }

    /// The policies of `[read, insert, update, delete]` by name, each checked (and named when
    /// wrong) as the JSON form `{read, insert, update, delete}` is.
    pub fn from_names(names: [&str; 4]) -> Result<Access, String> {
        use serde::de::IntoDeserializer;
        let policy = |name: &str| {
            let text: serde::de::value::StrDeserializer<'_, serde::de::value::Error> =
                name.into_deserializer();
            Policy::deserialize(text).map_err(|e| e.to_string())
        };
        let [read, insert, update, delete] = names;
        Ok(Access {
            read: policy(read)?,
            insert: policy(insert)?,
            update: policy(update)?,
            delete: policy(delete)?,
            group: None,
        })
    }
}

impl Default for Access {
    fn default() -> Self {
        Access {
            read: Policy::Open,
            insert: Policy::Owner,
            update: Policy::Owner,
            delete: Policy::Owner,
            group: None,
        }
    }
}

/// The type of a column, as schemas name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    Text,
    Integer,
    Real,
    Blob,
    Guid,
    Datetime,
    Date,
    Time,
    Enum,
}

impl ColumnType {
    /// The type's name in schemas.
    pub fn as_str(self) -> &'static str {
        match self {
            ColumnType::Text => "text",
            ColumnType::Integer => "integer",
            ColumnType::Real => "real",
            ColumnType::Blob => "blob",
            ColumnType::Guid => "guid",
            ColumnType::Datetime => "datetime",
            ColumnType::Date => "date",
            ColumnType::Time => "time",
            ColumnType::Enum => "enum",
        }
    }

    fn storage(self) -> StorageType {
        match self {
            ColumnType::Integer => StorageType::Integer,
            ColumnType::Real => StorageType::Real,
            ColumnType::Blob => StorageType::Blob,
            _ => StorageType::Text,
        }
    }
}

/// One column of a schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnSchema {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ColumnType,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Json>,
    /// Filled by the peer on insert when not given (guid, datetime, date, time).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auto: bool,
    /// The allowed values of an enum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<String>>,
}

/// A table's schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableSchema {
    pub name: String,
    pub columns: Vec<ColumnSchema>,
    #[serde(default)]
    pub access: Access,
    /// Sets of columns (`_owner` among them if need be) no two rows may share: one vote per
    /// peer and link is `["_owner", "link"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unique: Vec<Vec<String>>,
    /// Other peers insert only when a hub vouched for their email (a template's
    /// `require_email`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_email: bool,
}

/// Unique sets a table may have.
const MAX_UNIQUE: usize = 4;
/// Columns one unique set may name.
const MAX_UNIQUE_COLUMNS: usize = 4;

/// Parses and checks a schema: `{"name", "columns": [...], "access"?}` where each column is an
/// object (`{"name", "type", "required"?, "default"?, "auto"?, "values"?}`) or a plain definition
/// (`"title TEXT NOT NULL"`, `"views INTEGER DEFAULT 0"`). Every problem is reported, by path.
pub fn parse_schema(input: &Json) -> Result<TableSchema, String> {
    let Some(object) = input.as_object() else {
        return Err("the schema must be a JSON object with `name` and `columns`".into());
    };
    let mut problems = Vec::new();
    for key in object.keys() {
        if !matches!(
            key.as_str(),
            "name" | "columns" | "access" | "unique" | "require_email"
        ) {
            problems.push(format!(
                "unknown key `{key}` (expected name, columns, access, unique, require_email)"
            ));
        }
    }
    let access = match object.get("access") {
        None => Ok(Access::default()),
        Some(value) => serde_json::from_value::<Access>(value.clone())
            .map_err(|e| e.to_string())
            .and_then(Access::checked),
    };
    let columns = object.get("columns").and_then(Json::as_array);
    let mut schema = assemble(
        problems,
        object.get("name").and_then(Json::as_str),
        access,
        columns.map(Vec::as_slice),
        |item| match item {
            Json::String(text) => parse_plain_column(text),
            Json::Object(_) => {
                serde_json::from_value::<ColumnSchema>(item.clone()).map_err(|e| e.to_string())
            }
            _ => Err("a column is an object or a string like \"title TEXT\"".into()),
        },
    )?;
    if let Some(unique) = object.get("unique") {
        schema.unique = parse_unique(unique, &schema.columns)?;
    }
    match object.get("require_email") {
        None => {}
        Some(Json::Bool(required)) => schema.require_email = *required,
        Some(_) => return Err("require_email must be true or false".into()),
    }
    Ok(schema)
}

/// `unique`: a list of column-name lists, each naming the table's columns or `_owner`.
fn parse_unique(value: &Json, columns: &[ColumnSchema]) -> Result<Vec<Vec<String>>, String> {
    let shape = || {
        format!(
            "unique: a list of at most {MAX_UNIQUE} lists of 1 to {MAX_UNIQUE_COLUMNS} column names, like [[\"_owner\", \"link\"]]"
        )
    };
    let sets: Vec<Vec<String>> = serde_json::from_value(value.clone()).map_err(|_| shape())?;
    if sets.len() > MAX_UNIQUE
        || sets
            .iter()
            .any(|set| set.is_empty() || set.len() > MAX_UNIQUE_COLUMNS)
    {
        return Err(shape());
    }
    for name in sets.iter().flatten() {
        if name != "_owner" && !columns.iter().any(|c| &c.name == name) {
            return Err(format!(
                "unique: `{name}` is not a column of the table (nor `_owner`)"
            ));
        }
    }
    Ok(sets)
}

/// A schema as the console's form gives it: a name, one plain definition per column
/// (`title TEXT NOT NULL`), and the policies of `[read, insert, update, delete]` by name;
/// checked and reported as [`parse_schema`] does.
pub fn schema_from_form(
    name: &str,
    definitions: &[&str],
    policies: [&str; 4],
) -> Result<TableSchema, String> {
    assemble(
        Vec::new(),
        Some(name),
        Access::from_names(policies),
        Some(definitions),
        |text| parse_plain_column(text),
    )
}

/// Checks a schema's parts, adding every problem to `problems`: the name (`None`: missing),
/// the policies, and the columns (`None`: missing), each parsed by `parse`.
fn assemble<T>(
    mut problems: Vec<String>,
    name: Option<&str>,
    access: Result<Access, String>,
    columns: Option<&[T]>,
    parse: impl Fn(&T) -> Result<ColumnSchema, String>,
) -> Result<TableSchema, String> {
    let name = match name {
        Some(name) => name.to_owned(),
        None => {
            problems.push("`name` is missing or not a string".into());
            String::new()
        }
    };
    if !name.is_empty()
        && let Err(problem) = check_name(&name, "table")
    {
        problems.push(problem);
    }
    let access = access.unwrap_or_else(|problem| {
        problems.push(format!("access: {problem}"));
        Access::default()
    });
    let mut checked = Vec::new();
    match columns {
        None => problems.push("`columns` is missing or not an array".into()),
        Some([]) => problems.push("`columns` is empty".into()),
        Some(list) if list.len() > MAX_COLUMNS => {
            problems.push(format!("at most {MAX_COLUMNS} columns are allowed"));
        }
        Some(list) => {
            for (index, item) in list.iter().enumerate() {
                match parse(item).and_then(|column| check_column(column).map_err(|p| p.join("; ")))
                {
                    Ok(column) => checked.push(column),
                    Err(problem) => problems.push(format!("columns[{index}]: {problem}")),
                }
            }
        }
    }
    let mut seen: Vec<String> = Vec::new();
    for column in &checked {
        let lower = column.name.to_ascii_lowercase();
        if seen.contains(&lower) {
            problems.push(format!("column `{}` appears twice", column.name));
        }
        seen.push(lower);
    }
    if problems.is_empty() {
        Ok(TableSchema {
            name,
            columns: checked,
            access,
            unique: Vec::new(),
            require_email: false,
        })
    } else {
        Err(problems.join("; "))
    }
}

/// Parses and checks one column (an object or a plain definition), for `add-column`.
pub fn parse_column(input: &Json) -> Result<ColumnSchema, String> {
    let column = match input {
        Json::String(text) => parse_plain_column(text)?,
        Json::Object(_) => {
            serde_json::from_value::<ColumnSchema>(input.clone()).map_err(|e| e.to_string())?
        }
        _ => return Err("a column is an object or a string like \"title TEXT\"".into()),
    };
    check_column(column).map_err(|problems| problems.join("; "))
}

/// Parses and checks one plain column definition (`notes TEXT DEFAULT ''`), as `add-column`
/// does.
pub fn parse_definition(text: &str) -> Result<ColumnSchema, String> {
    check_column(parse_plain_column(text)?).map_err(|problems| problems.join("; "))
}

/// Table and column names: a letter, then letters, digits or `_`, at most 63 characters; never a
/// leading `_` (system) or `sqlite_`.
pub fn check_name(name: &str, what: &str) -> Result<(), String> {
    if name.starts_with('_') {
        return Err(format!(
            "{what} name `{name}`: names starting with `_` are reserved for the system"
        ));
    }
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 63;
    if !valid {
        return Err(format!(
            "{what} name `{name}`: use a letter, then letters, digits or `_` (at most 63)"
        ));
    }
    if name.to_ascii_lowercase().starts_with("sqlite_") {
        return Err(format!(
            "{what} name `{name}`: `sqlite_` names belong to SQLite"
        ));
    }
    Ok(())
}

/// `name TYPE [NOT NULL] [DEFAULT literal]`.
fn parse_plain_column(text: &str) -> Result<ColumnSchema, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let [name, kind, rest @ ..] = words.as_slice() else {
        return Err(format!(
            "`{text}`: write a name and a type, like \"title TEXT\""
        ));
    };
    let kind = match kind.to_ascii_lowercase().as_str() {
        "text" => ColumnType::Text,
        "integer" | "int" => ColumnType::Integer,
        "real" | "float" | "double" => ColumnType::Real,
        "blob" => ColumnType::Blob,
        other => {
            return Err(format!(
                "`{text}`: unknown type `{other}`; use text, integer, real or blob"
            ));
        }
    };
    let mut column = ColumnSchema {
        name: (*name).to_owned(),
        kind,
        required: false,
        default: None,
        auto: false,
        values: None,
    };
    let mut index = 0;
    while index < rest.len() {
        let word = rest[index].to_ascii_uppercase();
        if word == "NOT"
            && rest.get(index + 1).map(|w| w.to_ascii_uppercase()) == Some("NULL".into())
        {
            column.required = true;
            index += 2;
        } else if word == "DEFAULT" {
            let literal = rest[index + 1..].join(" ");
            column.default = Some(parse_literal(&literal).map_err(|e| format!("`{text}`: {e}"))?);
            break;
        } else {
            return Err(format!(
                "`{text}`: unexpected `{}`; only NOT NULL and DEFAULT <value> may follow the type",
                rest[index]
            ));
        }
    }
    Ok(column)
}

/// A literal of a `DEFAULT` clause: `NULL`, a number or `'text'`.
pub fn parse_literal(text: &str) -> Result<Json, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("null") {
        return Ok(Json::Null);
    }
    if let Some(inner) = text.strip_prefix('\'').and_then(|t| t.strip_suffix('\'')) {
        return Ok(Json::from(inner.replace("''", "'")));
    }
    serde_json::from_str::<serde_json::Number>(text)
        .map(Json::Number)
        .map_err(|_| format!("DEFAULT `{text}` is not a number, 'text' or NULL"))
}

fn check_column(column: ColumnSchema) -> Result<ColumnSchema, Vec<String>> {
    let mut problems = Vec::new();
    if let Err(problem) = check_name(&column.name, "column") {
        problems.push(problem);
    }
    match (&column.values, column.kind) {
        (Some(values), ColumnType::Enum) => {
            if values.is_empty() || values.len() > MAX_ENUM_VALUES {
                problems.push(format!("an enum lists 1 to {MAX_ENUM_VALUES} values"));
            }
            if values.iter().any(|v| v.len() > MAX_LITERAL_BYTES) {
                problems.push(format!("enum values are at most {MAX_LITERAL_BYTES} bytes"));
            }
        }
        (None, ColumnType::Enum) => problems.push("an enum needs `values`".into()),
        (Some(_), _) => problems.push("only enum columns take `values`".into()),
        (None, _) => {}
    }
    if column.auto
        && !matches!(
            column.kind,
            ColumnType::Guid | ColumnType::Datetime | ColumnType::Date | ColumnType::Time
        )
    {
        problems.push("`auto` fills guid, datetime, date and time columns only".into());
    }
    if let Some(default) = &column.default {
        if default
            .as_str()
            .is_some_and(|s| s.len() > MAX_LITERAL_BYTES)
        {
            problems.push(format!("defaults are at most {MAX_LITERAL_BYTES} bytes"));
        } else if let Err(problem) = to_sql(&column, default) {
            problems.push(format!("default: {problem}"));
        }
    }
    if problems.is_empty() {
        Ok(column)
    } else {
        Err(problems)
    }
}

/// The store's definition of a schema column.
pub fn column_def(column: &ColumnSchema) -> ColumnDef {
    ColumnDef {
        name: column.name.clone(),
        storage: column.kind.storage(),
        // A required column with neither default nor auto fill is enforced by SQLite as well.
        not_null: column.required && column.default.is_none() && !column.auto,
        default: column
            .default
            .as_ref()
            .and_then(|value| to_sql(column, value).ok()),
        one_of: column.values.clone(),
    }
}

/// Checks one JSON value against its column; the value to bind.
pub fn to_sql(column: &ColumnSchema, value: &Json) -> Result<SqlValue, String> {
    let name = &column.name;
    if value.is_null() {
        return if column.required {
            Err(format!("`{name}` is required"))
        } else {
            Ok(SqlValue::Null)
        };
    }
    let text = || {
        value
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("`{name}` must be a string"))
    };
    Ok(match column.kind {
        ColumnType::Text => SqlValue::Text(text()?),
        ColumnType::Integer => match value {
            Json::Number(n) if n.is_i64() => SqlValue::Integer(n.as_i64().unwrap_or_default()),
            Json::Bool(b) => SqlValue::Integer(i64::from(*b)),
            _ => return Err(format!("`{name}` must be an integer")),
        },
        ColumnType::Real => match value.as_f64() {
            Some(x) if x.is_finite() => SqlValue::Real(x),
            _ => return Err(format!("`{name}` must be a number")),
        },
        ColumnType::Blob => {
            use base64::Engine as _;
            let encoded = text()?;
            SqlValue::Blob(
                base64::engine::general_purpose::STANDARD
                    .decode(encoded.as_bytes())
                    .map_err(|_| format!("`{name}` must be base64"))?,
            )
        }
        ColumnType::Guid => {
            let guid = text()?;
            if !is_guid(&guid) {
                return Err(format!(
                    "`{name}` must be a GUID like 3f2b8c1e-0a4d-4e6f-9b7a-1c2d3e4f5a6b"
                ));
            }
            SqlValue::Text(guid.to_ascii_lowercase())
        }
        ColumnType::Datetime => {
            let stamp = text()?;
            if humantime::parse_rfc3339_weak(&stamp).is_err() {
                return Err(format!(
                    "`{name}` must be a date and time like 2026-11-22T10:30:00Z"
                ));
            }
            SqlValue::Text(stamp)
        }
        ColumnType::Date => {
            let date = text()?;
            if humantime::parse_rfc3339_weak(&format!("{date}T00:00:00Z")).is_err()
                || date.len() != 10
            {
                return Err(format!("`{name}` must be a date like 2026-11-22"));
            }
            SqlValue::Text(date)
        }
        ColumnType::Time => {
            let time = text()?;
            let full = if time.len() == 5 {
                format!("{time}:00")
            } else {
                time.clone()
            };
            if humantime::parse_rfc3339_weak(&format!("2000-01-01T{full}Z")).is_err() {
                return Err(format!("`{name}` must be a time like 10:30 or 10:30:15"));
            }
            SqlValue::Text(time)
        }
        ColumnType::Enum => {
            let choice = text()?;
            let values = column.values.as_deref().unwrap_or_default();
            if !values.contains(&choice) {
                return Err(format!("`{name}` must be one of: {}", values.join(", ")));
            }
            SqlValue::Text(choice)
        }
    })
}

fn is_guid(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(part, len)| part.len() == len && part.chars().all(|c| c.is_ascii_hexdigit()))
}

/// A random (version 4) GUID.
pub fn new_guid() -> String {
    let mut bytes: [u8; 16] = rand::random();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The value the peer fills in for an `auto` column.
fn auto_value(column: &ColumnSchema) -> Option<SqlValue> {
    if !column.auto {
        return None;
    }
    let now = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    Some(SqlValue::Text(match column.kind {
        ColumnType::Guid => new_guid(),
        ColumnType::Datetime => now,
        ColumnType::Date => now[..10].to_owned(),
        ColumnType::Time => now[11..19].to_owned(),
        _ => return None,
    }))
}

/// Checks a row for insert (`complete`: required columns must be there or fillable) or for
/// update (only the given columns). Returns the columns and values to write.
pub fn check_row(
    schema: &TableSchema,
    data: &Json,
    complete: bool,
) -> Result<Vec<(String, SqlValue)>, String> {
    let Some(object) = data.as_object() else {
        return Err("`data` must be a JSON object of column values".into());
    };
    let mut problems = Vec::new();
    let mut values = Vec::new();
    check_keys(schema, object, &mut problems);
    for column in &schema.columns {
        match object.get(&column.name) {
            Some(value) => match to_sql(column, value) {
                Ok(value) => values.push((column.name.clone(), value)),
                Err(problem) => problems.push(problem),
            },
            None if complete => {
                if let Some(value) = auto_value(column) {
                    values.push((column.name.clone(), value));
                } else if column.required && column.default.is_none() {
                    problems.push(format!("`{}` is required", column.name));
                }
            }
            None => {}
        }
    }
    if !complete && values.is_empty() && problems.is_empty() {
        problems.push("`data` names no column to change".into());
    }
    if problems.is_empty() {
        Ok(values)
    } else {
        Err(problems.join("; "))
    }
}

fn check_keys(schema: &TableSchema, object: &Map<String, Json>, problems: &mut Vec<String>) {
    for key in object.keys() {
        if key.starts_with('_') {
            problems.push(format!(
                "`{key}` is kept by the peer; callers cannot set it"
            ));
        } else if !schema.columns.iter().any(|c| &c.name == key) {
            let names: Vec<&str> = schema.columns.iter().map(|c| c.name.as_str()).collect();
            problems.push(format!(
                "unknown column `{key}`; the columns are: {}",
                names.join(", ")
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_consoles_form_is_checked_and_named_as_the_json_schema_is() {
        let cases: [(&str, &[&str], [&str; 4]); 4] = [
            (
                "notes",
                &["title TEXT NOT NULL", "stars INTEGER DEFAULT 0"],
                ["open", "owner", "owner", "local"],
            ),
            (
                "_notes",
                &["title TEXT", "title TEXT", "x BOGUS"],
                ["open", "everyone", "owner", "nobody"],
            ),
            ("notes", &[], ["", "owner", "owner", "owner"]),
            (
                "9lives",
                &["views integer DEFAULT 'x'"],
                ["open", "owner", "group", "open"],
            ),
        ];
        for (name, columns, [read, insert, update, delete]) in cases {
            let json = serde_json::json!({
                "name": name,
                "columns": columns,
                "access": {"read": read, "insert": insert, "update": update, "delete": delete},
            });
            assert_eq!(
                schema_from_form(name, columns, [read, insert, update, delete]),
                parse_schema(&json),
                "{json}"
            );
        }
    }

    #[test]
    fn a_plain_column_definition_is_checked_as_add_column_checks_it() {
        for text in [
            "notes TEXT DEFAULT ''",
            "notes",
            "_x TEXT",
            "n INTEGER NOT NULL",
        ] {
            assert_eq!(
                parse_definition(text),
                parse_column(&Json::from(text)),
                "{text}"
            );
        }
    }
}
