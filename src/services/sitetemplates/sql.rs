//! A legacy template's `schema.sql`, translated into table schemas: only `CREATE TABLE`
//! statements are accepted, parsed (never executed), and each column's type, `NOT NULL` and
//! `DEFAULT` carried over. The system columns (`id`/`_id` primary key, `_owner`, timestamps) are
//! the peer's own and dropped; anything else — other statements, constraints, foreign keys,
//! checks — is refused with its name.

use serde_json::Value as Json;
use sqlparser::ast::{ColumnOption, Expr, Statement, Value};
use sqlparser::dialect::SQLiteDialect;
use sqlparser::parser::Parser;

use crate::services::data::schema::{self, Access, ColumnSchema, ColumnType, TableSchema};

/// Largest `schema.sql`.
const MAX_SQL_BYTES: usize = 64 * 1024;

/// The tables of `schema.sql`, each with the default access (anyone reads, everyone writes their
/// own rows).
pub fn translate(sql: &str) -> Result<Vec<TableSchema>, String> {
    if sql.len() > MAX_SQL_BYTES {
        return Err(format!("schema.sql is larger than {MAX_SQL_BYTES} bytes"));
    }
    let statements = Parser::parse_sql(&SQLiteDialect {}, sql)
        .map_err(|e| format!("schema.sql cannot be parsed: {e}"))?;
    let mut tables = Vec::new();
    for statement in statements {
        let Statement::CreateTable(create) = statement else {
            return Err(format!(
                "schema.sql may only hold CREATE TABLE statements, not `{}`",
                first_words(&statement.to_string())
            ));
        };
        let name = create.name.to_string().trim_matches('"').to_owned();
        let fail = |problem: String| format!("schema.sql: table `{name}`: {problem}");
        if create.query.is_some() {
            return Err(fail("CREATE TABLE … AS SELECT is not accepted".into()));
        }
        if let Some(constraint) = create.constraints.first() {
            return Err(fail(format!(
                "the constraint `{constraint}` is not accepted"
            )));
        }
        let mut columns = Vec::new();
        for definition in &create.columns {
            let column_name = definition.name.value.clone();
            let lower = column_name.to_ascii_lowercase();
            let primary = definition
                .options
                .iter()
                .any(|o| matches!(o.option, ColumnOption::PrimaryKey(_)));
            if (primary && (lower == "id" || lower == "_id"))
                || crate::services::data::SYSTEM_COLUMNS.contains(&lower.as_str())
            {
                // The peer's own `_id`, `_owner` and timestamps take their place.
                continue;
            }
            let kind = kind_of(&definition.data_type.to_string())
                .ok_or_else(|| fail(format!("column `{column_name}`: the type `{}` is not known; use TEXT, INTEGER, REAL, BLOB, DATETIME or DATE", definition.data_type)))?;
            let mut out = column(&column_name, kind);
            for option in &definition.options {
                match &option.option {
                    ColumnOption::NotNull => out.required = true,
                    ColumnOption::Null => {}
                    ColumnOption::Default(expr) => match default_of(expr) {
                        Some(Default::Now) if kind == ColumnType::Datetime => out.auto = true,
                        Some(Default::Now) => {
                            return Err(fail(format!(
                                "column `{column_name}`: a CURRENT_TIMESTAMP default needs a DATETIME column"
                            )));
                        }
                        Some(Default::Literal(value)) => out.default = Some(value),
                        None => {
                            return Err(fail(format!(
                                "column `{column_name}`: the default `{expr}` is not a literal"
                            )));
                        }
                    },
                    other => {
                        return Err(fail(format!(
                            "column `{column_name}`: `{other}` is not accepted (only NOT NULL and DEFAULT)"
                        )));
                    }
                }
            }
            columns.push(serde_json::to_value(&out).unwrap_or(Json::Null));
        }
        let parsed = schema::parse_schema(&serde_json::json!({
            "name": name,
            "columns": columns,
            "access": serde_json::to_value(Access::default()).unwrap_or(Json::Null),
        }))
        .map_err(fail)?;
        tables.push(parsed);
    }
    if tables.is_empty() {
        return Err("schema.sql holds no CREATE TABLE statement".into());
    }
    Ok(tables)
}

/// A column of `kind`, nothing else said.
fn column(name: &str, kind: ColumnType) -> ColumnSchema {
    ColumnSchema {
        name: name.to_owned(),
        kind,
        required: false,
        default: None,
        auto: false,
        values: None,
    }
}

fn first_words(statement: &str) -> String {
    statement
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn kind_of(declared: &str) -> Option<ColumnType> {
    let upper = declared.to_ascii_uppercase();
    let base = upper.split('(').next().unwrap_or("").trim();
    Some(match base {
        "TEXT" | "VARCHAR" | "CHAR" | "CHARACTER" | "CLOB" | "STRING" | "NVARCHAR" => {
            ColumnType::Text
        }
        "INTEGER" | "INT" | "BIGINT" | "SMALLINT" | "TINYINT" | "BOOLEAN" | "BOOL" => {
            ColumnType::Integer
        }
        "REAL" | "FLOAT" | "DOUBLE" | "NUMERIC" | "DECIMAL" | "DOUBLE PRECISION" => {
            ColumnType::Real
        }
        "BLOB" => ColumnType::Blob,
        "DATETIME" | "TIMESTAMP" => ColumnType::Datetime,
        "DATE" => ColumnType::Date,
        _ => return None,
    })
}

enum Default {
    Now,
    Literal(Json),
}

fn default_of(expr: &Expr) -> Option<Default> {
    let text = expr.to_string();
    if text.eq_ignore_ascii_case("CURRENT_TIMESTAMP") {
        return Some(Default::Now);
    }
    match expr {
        Expr::Value(value) => match &value.value {
            Value::Boolean(b) => Some(Default::Literal(Json::from(i64::from(*b)))),
            _ => schema::parse_literal(&text).ok().map(Default::Literal),
        },
        Expr::UnaryOp { .. } => schema::parse_literal(&text.replace(' ', ""))
            .ok()
            .map(Default::Literal),
        Expr::Nested(inner) => default_of(inner),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_table_statements_are_translated() {
        let tables = translate(
            "CREATE TABLE posts (id INTEGER PRIMARY KEY AUTOINCREMENT, title TEXT NOT NULL, \
             views INTEGER DEFAULT 0, score REAL DEFAULT -1.5, created_at DATETIME DEFAULT CURRENT_TIMESTAMP, \
             _owner TEXT);\nCREATE TABLE IF NOT EXISTS tags (name VARCHAR(40) DEFAULT 'x');",
        )
        .unwrap();
        assert_eq!(tables.len(), 2);
        let names: Vec<_> = tables[0].columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["title", "views", "score", "created_at"]);
        assert!(tables[0].columns[0].required);
        assert_eq!(tables[0].columns[1].default, Some(Json::from(0)));
        assert_eq!(tables[0].columns[2].default, Some(Json::from(-1.5)));
        assert!(tables[0].columns[3].auto);
        assert_eq!(tables[1].columns[0].default, Some(Json::from("x")));
    }

    #[test]
    fn anything_but_plain_tables_is_refused_by_name() {
        let error = translate("DROP TABLE users").unwrap_err();
        assert!(error.contains("only hold CREATE TABLE"), "{error}");
        let error = translate("CREATE TABLE a (b TEXT REFERENCES c(d))").unwrap_err();
        assert!(error.contains("column `b`"), "{error}");
        let error = translate("CREATE TABLE a (b TEXT, UNIQUE (b))").unwrap_err();
        assert!(error.contains("constraint"), "{error}");
        let error = translate("CREATE TABLE a (b GEOMETRY)").unwrap_err();
        assert!(error.contains("GEOMETRY"), "{error}");
        let error = translate("CREATE TABLE a (b TEXT DEFAULT (lower('X')))").unwrap_err();
        assert!(error.contains("not a literal"), "{error}");
        assert!(translate("CREATE TABLE a (b TEXT); DELETE FROM a").is_err());
    }
}
