//! A template (or an exported site) checked whole before anything is applied: the manifest, the
//! table schemas (JSON, or a legacy `schema.sql` of `CREATE TABLE` statements translated), the
//! Lua functions (each must compile), `seed.lua` (run in the sandbox: it returns the rows to
//! start with) and exported rows under `data/`, and the site files.
//!
//! Layout of a bundle, paths `/`-separated:
//!
//! ```text
//! manifest.json        required
//! index.html …         the site (every file not named below)
//! schemas/<t>.json     one table each: {"name", "columns", "access"?, "limits"?}
//! schema.sql           legacy: CREATE TABLE statements only
//! lua/…                copied to `lua.script_dir` (functions under lua/functions/)
//! seed.lua             returns {table = {row, …}, …}
//! preview.png          the picture the gallery shows
//! data/<t>.json        exported rows (with their _owner and times)
//! ```

use std::collections::BTreeMap;

use serde_json::{Map, Value as Json};

use super::manifest::Manifest;
use crate::services::data::schema::{self, TableSchema};
use crate::store::data::{SqlValue, TableLimits};

/// Rows `seed.lua` and `data/` may bring in all.
pub const MAX_ROWS: usize = 50_000;

/// The file names a bundle reserves; everything else is the site.
const RESERVED_FILES: [&str; 4] = ["manifest.json", "schema.sql", "seed.lua", PREVIEW];
/// A template's preview picture in the gallery.
pub const PREVIEW: &str = "preview.png";
const RESERVED_DIRS: [&str; 3] = ["schemas/", "lua/", "data/"];

/// A table a template brings.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateTable {
    pub schema: TableSchema,
    pub limits: TableLimits,
}

/// A row to insert when the template is applied: checked column values, with the system
/// columns an export kept (`_owner`, `_owner_email`, `_created_at`, `_updated_at`); a seed row
/// has none and belongs to the owner.
pub use crate::services::data::tables::NewRow;

/// A checked template.
#[derive(Debug, Clone)]
pub struct Template {
    pub manifest: Manifest,
    pub tables: Vec<TemplateTable>,
    /// Site files by path.
    pub site: BTreeMap<String, Vec<u8>>,
    /// Files of `lua.script_dir` by path (`functions/x.lua`).
    pub lua: BTreeMap<String, Vec<u8>>,
    /// Rows per table, tables in the order of `tables`.
    pub rows: Vec<(String, Vec<NewRow>)>,
}

impl Template {
    /// Checks the files of a bundle; the first problem found is named, with its file.
    pub fn from_files(files: BTreeMap<String, Vec<u8>>) -> Result<Template, String> {
        let manifest = Manifest::parse(
            files
                .get("manifest.json")
                .ok_or("there is no manifest.json at the top of the bundle")?,
        )?;
        let mut tables: Vec<TemplateTable> = Vec::new();
        let mut add = |table: TemplateTable, from: &str| -> Result<(), String> {
            if tables
                .iter()
                .any(|t| t.schema.name.eq_ignore_ascii_case(&table.schema.name))
            {
                return Err(format!(
                    "{from}: table `{}` is defined twice",
                    table.schema.name
                ));
            }
            tables.push(table);
            Ok(())
        };
        let mut listed = Vec::new();
        for (index, entry) in manifest.schemas.iter().enumerate() {
            match entry {
                Json::String(path) => {
                    let bytes = files.get(path.as_str()).ok_or_else(|| {
                        format!("manifest.json: schemas[{index}] names {path:?}, which is not in the bundle")
                    })?;
                    add(schema_file(path, bytes)?, path)?;
                    listed.push(path.clone());
                }
                Json::Object(_) => add(
                    table_schema(entry)
                        .map_err(|e| format!("manifest.json: schemas[{index}]: {e}"))?,
                    "manifest.json",
                )?,
                _ => {
                    return Err(format!(
                        "manifest.json: schemas[{index}] is neither a schema object nor a file name"
                    ));
                }
            }
        }
        for (path, bytes) in &files {
            if path.starts_with("schemas/") && !listed.contains(path) {
                if !path.ends_with(".json") {
                    return Err(format!("{path}: files under schemas/ are JSON schemas"));
                }
                add(schema_file(path, bytes)?, path)?;
            }
        }
        if let Some(sql) = files.get("schema.sql") {
            for table in super::sql::translate(&text("schema.sql", sql)?)? {
                add(
                    TemplateTable {
                        schema: table,
                        limits: TableLimits::default(),
                    },
                    "schema.sql",
                )?;
            }
        }
        if tables.len() > 64 {
            return Err("a template brings at most 64 tables".into());
        }
        if manifest.require_email {
            for table in &mut tables {
                table.schema.require_email = true;
            }
        }

        let mut lua = BTreeMap::new();
        let mut site = BTreeMap::new();
        for (path, bytes) in &files {
            if let Some(inside) = path.strip_prefix("lua/") {
                if inside.ends_with(".lua") {
                    crate::services::lua::check_source(path, &text(path, bytes)?)
                        .map_err(|e| format!("{path} does not compile: {e}"))?;
                }
                lua.insert(inside.to_owned(), bytes.clone());
            } else if !RESERVED_FILES.contains(&path.as_str())
                && !RESERVED_DIRS.iter().any(|dir| path.starts_with(dir))
            {
                site.insert(path.clone(), bytes.clone());
            }
        }
        for (path, function) in &manifest.generated {
            if !lua.contains_key(&format!("functions/{function}.lua")) {
                return Err(format!(
                    "manifest.json: generated: {path} is made by {function}, but there is no lua/functions/{function}.lua"
                ));
            }
        }
        if !site.contains_key("index.html") {
            return Err("the bundle has no index.html: a site needs its first page".into());
        }

        let mut rows: BTreeMap<String, Vec<NewRow>> = BTreeMap::new();
        let mut count = 0usize;
        if let Some(seed) = files.get("seed.lua") {
            let source = text("seed.lua", seed)?;
            let value = crate::services::lua::evaluate("seed.lua", &source, &seed_limits())
                .map_err(|e| format!("seed.lua failed: {e}"))?;
            let by_table = match value {
                Json::Object(by_table) => by_table,
                Json::Null => Map::new(),
                Json::Array(list) if list.is_empty() => Map::new(),
                _ => {
                    return Err(
                        "seed.lua must return a table of rows by table name: return { posts = { {title = \"Hello\"} } }"
                            .into(),
                    );
                }
            };
            for (table, list) in by_table {
                let schema = find(&tables, &table).ok_or_else(|| {
                    format!("seed.lua: there is no table `{table}` in the template")
                })?;
                let list = rows_of(&list, &format!("seed.lua: {table}"))?;
                for (index, row) in list.iter().enumerate() {
                    let values = schema::check_row(schema, row, true)
                        .map_err(|e| format!("seed.lua: {table}[{}]: {e}", index + 1))?;
                    rows.entry(schema.name.clone()).or_default().push(values);
                    count += 1;
                }
            }
        }
        for (path, bytes) in &files {
            let Some(name) = path
                .strip_prefix("data/")
                .and_then(|p| p.strip_suffix(".json"))
            else {
                continue;
            };
            let schema = find(&tables, name)
                .ok_or_else(|| format!("{path}: there is no table `{name}` in the bundle"))?;
            let list: Json = serde_json::from_slice(bytes)
                .map_err(|e| format!("{path} is not valid JSON: {e}"))?;
            for (index, row) in rows_of(&list, path)?.iter().enumerate() {
                let values = exported_row(schema, row)
                    .map_err(|e| format!("{path}: row {}: {e}", index + 1))?;
                rows.entry(schema.name.clone()).or_default().push(values);
                count += 1;
            }
        }
        if count > MAX_ROWS {
            return Err(format!("the bundle brings more than {MAX_ROWS} rows"));
        }
        let rows = tables
            .iter()
            .filter_map(|t| {
                rows.remove(&t.schema.name)
                    .map(|list| (t.schema.name.clone(), list))
            })
            .collect();
        Ok(Template {
            manifest,
            tables,
            site,
            lua,
            rows,
        })
    }

    /// Makes every row the owner's: rows of a template (from a store, or built in) may not speak
    /// for other peers; only an import of an exported site keeps who wrote them.
    pub fn rows_as_the_owners(&mut self) {
        for (_, rows) in &mut self.rows {
            for row in rows {
                row.retain(|(name, _)| !name.starts_with('_'));
            }
        }
    }

    /// The template ships Lua data functions.
    pub fn has_functions(&self) -> bool {
        self.lua
            .keys()
            .any(|path| path.starts_with("functions/") && path.ends_with(".lua"))
    }
}

/// `seed.lua` runs with the default limits of a Lua call.
fn seed_limits() -> crate::services::lua::LuaLimits {
    crate::services::lua::LuaLimits {
        timeout: std::time::Duration::from_secs(5),
        max_memory: 16 * 1024 * 1024,
        per_caller_per_minute: 0,
        global_per_minute: 0,
    }
}

fn find<'a>(tables: &'a [TemplateTable], name: &str) -> Option<&'a TableSchema> {
    tables
        .iter()
        .map(|t| &t.schema)
        .find(|s| s.name.eq_ignore_ascii_case(name))
}

fn text(path: &str, bytes: &[u8]) -> Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| format!("{path} is not UTF-8 text"))
}

fn rows_of<'a>(list: &'a Json, what: &str) -> Result<&'a [Json], String> {
    match list {
        Json::Array(rows) => Ok(rows),
        Json::Object(map) if map.is_empty() => Ok(&[]),
        _ => Err(format!("{what} must be a list of rows")),
    }
}

/// A schema file: a schema object.
fn schema_file(path: &str, bytes: &[u8]) -> Result<TemplateTable, String> {
    let value: Json =
        serde_json::from_slice(bytes).map_err(|e| format!("{path} is not valid JSON: {e}"))?;
    table_schema(&value).map_err(|e| format!("{path}: {e}"))
}

/// A schema object with its optional `limits` (`rows_per_caller`, `bytes_per_caller`, `rows`,
/// `bytes`): the table's own quotas on other peers' rows.
fn table_schema(value: &Json) -> Result<TemplateTable, String> {
    let mut object = value
        .as_object()
        .cloned()
        .ok_or("a schema is a JSON object with `name` and `columns`")?;
    let limits = match object.remove("limits") {
        None => TableLimits::default(),
        Some(Json::Object(limits)) => {
            let mut own = TableLimits::default();
            for (key, value) in limits {
                let n = value
                    .as_i64()
                    .filter(|n| (1..=1 << 50).contains(n))
                    .ok_or_else(|| format!("limits.{key} must be a whole number from 1"))?;
                match key.as_str() {
                    "rows_per_caller" => own.max_rows_per_caller = Some(n),
                    "bytes_per_caller" => own.max_bytes_per_caller = Some(n),
                    "rows" => own.max_rows = Some(n),
                    "bytes" => own.max_bytes = Some(n),
                    other => {
                        return Err(format!(
                            "unknown limit `{other}` (expected rows_per_caller, bytes_per_caller, rows, bytes)"
                        ));
                    }
                }
            }
            own
        }
        Some(_) => return Err("`limits` must be an object".into()),
    };
    Ok(TemplateTable {
        schema: schema::parse_schema(&Json::Object(object))?,
        limits,
    })
}

/// An exported row: its columns checked against the schema, its system columns kept.
fn exported_row(schema: &TableSchema, row: &Json) -> Result<NewRow, String> {
    let mut object = row.as_object().cloned().ok_or("a row is a JSON object")?;
    object.remove("_id");
    let mut system = Vec::new();
    for name in ["_owner", "_owner_email", "_created_at", "_updated_at"] {
        match object.remove(name) {
            None | Some(Json::Null) if name != "_owner" => {}
            Some(Json::String(text)) if text.is_empty() && name != "_owner" => {}
            Some(Json::String(text)) if !text.is_empty() && text.len() <= 256 => {
                system.push((name.to_owned(), SqlValue::Text(text)));
            }
            _ => return Err(format!("`{name}` must be a non-empty string")),
        }
    }
    let mut values = schema::check_row(schema, &Json::Object(object), true)?;
    values.extend(system);
    Ok(values)
}

/// Exported rows of a table as `data/<t>.json` holds them.
pub fn exported_rows(rows: &[Map<String, Json>]) -> Json {
    Json::Array(
        rows.iter()
            .map(|row| {
                let mut row = row.clone();
                row.remove("_id");
                Json::Object(row)
            })
            .collect(),
    )
}

/// A schema as `schemas/<t>.json` holds it, with the table's own limits.
pub fn schema_json(table: &TemplateTable) -> Json {
    let mut value = serde_json::to_value(&table.schema).unwrap_or(Json::Null);
    let own = table.limits;
    let mut limits = Map::new();
    for (key, n) in [
        ("rows_per_caller", own.max_rows_per_caller),
        ("bytes_per_caller", own.max_bytes_per_caller),
        ("rows", own.max_rows),
        ("bytes", own.max_bytes),
    ] {
        if let Some(n) = n {
            limits.insert(key.into(), n.into());
        }
    }
    if let (Json::Object(object), false) = (&mut value, limits.is_empty()) {
        object.insert("limits".into(), Json::Object(limits));
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        list.iter()
            .map(|(p, b)| (p.to_string(), b.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn a_template_is_read_whole() {
        let template = Template::from_files(files(&[
            ("manifest.json", r#"{"name": "Notes", "schemas": ["schemas/notes.json"]}"#),
            (
                "schemas/notes.json",
                r#"{"name": "notes", "columns": ["title TEXT NOT NULL"], "limits": {"rows_per_caller": 1}}"#,
            ),
            ("index.html", "<h1>notes</h1>"),
            ("lua/functions/count.lua", "function call(r) return 1 end"),
            ("seed.lua", "return { notes = { { title = 'first' }, { title = 'second' } } }"),
        ]))
        .unwrap();
        assert_eq!(template.tables.len(), 1);
        assert_eq!(template.tables[0].limits.max_rows_per_caller, Some(1));
        assert_eq!(template.rows[0].1.len(), 2);
        assert!(template.has_functions());
        assert_eq!(template.site.keys().collect::<Vec<_>>(), ["index.html"]);
    }

    #[test]
    fn broken_parts_are_named() {
        let base = [
            ("manifest.json", r#"{"name": "Notes"}"#),
            ("index.html", "x"),
        ];
        let with = |extra: (&'static str, &'static str)| {
            let mut list = base.to_vec();
            list.push(extra);
            Template::from_files(files(&list)).unwrap_err()
        };
        let error = with(("lua/functions/bad.lua", "function call( end"));
        assert!(
            error.contains("lua/functions/bad.lua does not compile"),
            "{error}"
        );
        let error = with((
            "schemas/t.json",
            r#"{"name": "t", "columns": ["a WIDGET"]}"#,
        ));
        assert!(error.contains("unknown type `widget`"), "{error}");
        let error = with(("seed.lua", "return { nothere = { {} } }"));
        assert!(error.contains("no table `nothere`"), "{error}");
        let error = with(("seed.lua", "while true do end"));
        assert!(error.contains("seed.lua failed"), "{error}");
        let error =
            Template::from_files(files(&[("manifest.json", r#"{"name": "x"}"#)])).unwrap_err();
        assert!(error.contains("no index.html"), "{error}");
    }
}
