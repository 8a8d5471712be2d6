//! `where` and `order` clauses from callers, made safe by construction: the text is parsed with
//! `sqlparser` (SQLite dialect) and accepted only if every part is one of a short list —
//! the table's own columns, literals, `?` placeholders, comparison, arithmetic and boolean
//! operators, `IN (…)`, `LIKE`, `IS [NOT] NULL`, `BETWEEN` and a few scalar functions. The SQL
//! that runs is then written out from that checked tree (columns quoted, strings re-escaped), never
//! copied from the caller. Anything else — subqueries, other tables, statements, pragmas — is
//! refused with a message that names it.
//!
//! Whole statements (a site script's `goop.db`, the owner's SQL box) are parsed the same way and
//! accepted only if every table they name resolves to a user table of the `_tables` registry or to
//! one of their own `WITH` names; the decision is made on the parsed names, never on the text.

use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, DuplicateTreatment, Expr, FunctionArg, FunctionArgExpr, FunctionArguments,
    ObjectName, ObjectNamePart, OrderBySort, Query, SetExpr, TableFactor, UnaryOperator, Value,
};
use sqlparser::dialect::SQLiteDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Token;

use super::quote_ident;

/// Longest clause accepted.
pub const MAX_CLAUSE_BYTES: usize = 4096;
/// Deepest nesting accepted.
const MAX_DEPTH: usize = 32;
/// Longest `IN (…)` list.
const MAX_IN_LIST: usize = 1000;

/// Scalar functions a clause may use (never aggregates, never anything with side effects).
const FUNCTIONS: &[&str] = &[
    "abs",
    "coalesce",
    "date",
    "datetime",
    "ifnull",
    "instr",
    "julianday",
    "length",
    "lower",
    "ltrim",
    "nullif",
    "round",
    "rtrim",
    "strftime",
    "substr",
    "time",
    "trim",
    "typeof",
    "upper",
];

/// A clause that failed the checks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ClauseError(pub String);

/// A checked `where` clause: SQL to splice after `WHERE`, and how many `?` it binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Where {
    pub sql: String,
    pub placeholders: usize,
}

/// Checks a `where` clause against `columns` (the table's, as introspected).
pub fn parse_where(text: &str, columns: &[String]) -> Result<Where, ClauseError> {
    let mut parser = parser_for(text, "where")?;
    let expr = parser
        .parse_expr()
        .map_err(|e| ClauseError(format!("where: {}", strip_parser_noise(&e.to_string()))))?;
    expect_end(&parser, "where")?;
    let mut writer = Writer {
        columns,
        placeholders: 0,
    };
    let sql = writer.expr(&expr, 0)?;
    Ok(Where {
        sql,
        placeholders: writer.placeholders,
    })
}

/// Checks an `order` clause (`col [ASC|DESC] [NULLS FIRST|LAST], …`); placeholders are refused.
pub fn parse_order(text: &str, columns: &[String]) -> Result<String, ClauseError> {
    let mut parser = parser_for(text, "order")?;
    let items = parser
        .parse_comma_separated(Parser::parse_order_by_expr)
        .map_err(|e| ClauseError(format!("order: {}", strip_parser_noise(&e.to_string()))))?;
    expect_end(&parser, "order")?;
    let mut writer = Writer {
        columns,
        placeholders: 0,
    };
    let mut parts = Vec::new();
    for item in items {
        if item.with_fill.is_some() {
            return Err(ClauseError("order: WITH FILL is not supported".into()));
        }
        let mut part = writer.expr(&item.expr, 0)?;
        match item.options.sort {
            None | Some(OrderBySort::Asc) => part.push_str(" ASC"),
            Some(OrderBySort::Desc) => part.push_str(" DESC"),
            Some(OrderBySort::Using(_)) => {
                return Err(ClauseError("order: USING is not supported".into()));
            }
        }
        match item.options.nulls_first {
            Some(true) => part.push_str(" NULLS FIRST"),
            Some(false) => part.push_str(" NULLS LAST"),
            None => {}
        }
        parts.push(part);
    }
    if writer.placeholders > 0 {
        return Err(ClauseError(
            "order: `?` placeholders are not allowed here".into(),
        ));
    }
    Ok(parts.join(", "))
}

/// Checks that `sql` is exactly one `SELECT` (or `WITH … SELECT`) statement that names only
/// `user_tables` (the `_tables` registry) — the owner's SQL box.
///
/// The owner is trusted, yet the box is held to the same names as a site's scripts: the `sql` op
/// also answers the owner's own site pages (which may run a template's code), and `_lua_kv` holds
/// the scripts' secrets and `_peer_cache` everyone this peer met. The statement must read and
/// nothing else even before it reaches the read-only connection: a `WITH … DELETE` is refused
/// here, not left for SQLite to refuse.
pub fn check_read_only(sql: &str, user_tables: &[String]) -> Result<(), ClauseError> {
    let statement = one_statement(sql)?;
    if !matches!(statement, sqlparser::ast::Statement::Query(_)) {
        return Err(ClauseError(
            "only a SELECT (or WITH … SELECT) statement may run here".into(),
        ));
    }
    user_tables_only(&statement, user_tables)
}

/// Checks that `sql` is exactly one `SELECT` that names only `user_tables` — what a site's own
/// code may read.
pub fn check_user_query(sql: &str, user_tables: &[String]) -> Result<(), ClauseError> {
    let statement = one_statement(sql)?;
    if !matches!(statement, sqlparser::ast::Statement::Query(_)) {
        return Err(ClauseError(
            "goop.db.query runs one SELECT (or WITH … SELECT); use goop.db.exec to change rows"
                .into(),
        ));
    }
    user_tables_only(&statement, user_tables)
}

/// Checks that `sql` is exactly one `INSERT`, `UPDATE` or `DELETE` that names only `user_tables`.
pub fn check_user_write(sql: &str, user_tables: &[String]) -> Result<(), ClauseError> {
    use sqlparser::ast::Statement;
    let statement = one_statement(sql)?;
    if !matches!(
        statement,
        Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_)
    ) {
        return Err(ClauseError(
            "goop.db.exec runs one INSERT, UPDATE or DELETE".into(),
        ));
    }
    user_tables_only(&statement, user_tables)
}

fn one_statement(sql: &str) -> Result<sqlparser::ast::Statement, ClauseError> {
    if sql.len() > 16 * MAX_CLAUSE_BYTES {
        return Err(ClauseError("the statement is longer than 64 KiB".into()));
    }
    static DIALECT: SQLiteDialect = SQLiteDialect {};
    let mut statements = Parser::parse_sql(&DIALECT, sql)
        .map_err(|e| ClauseError(strip_parser_noise(&e.to_string())))?;
    match statements.len() {
        0 => Err(ClauseError("write one statement".into())),
        1 => Ok(statements.remove(0)),
        _ => Err(ClauseError("one statement at a time".into())),
    }
}

/// True for names SQLite or the peer keep for themselves: `_…` (the peer's system tables and
/// triggers), `sqlite_…` (SQLite's schema and statistics) and `pragma_…` (pragmas as tables).
fn is_system_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.starts_with('_') || lower.starts_with("sqlite_") || lower.starts_with("pragma_")
}

/// Walks every table name of a parsed statement — in `FROM` and joins, subqueries anywhere,
/// `WITH` bodies, `INSERT … SELECT`, `UPDATE … FROM` — and accepts it only if it resolves to a
/// user table or to a `WITH` name in scope. Names are the parser's identifiers with their
/// quoting resolved (`"x"`, `[x]`, `` `x` `` and SQLite's `'x'` all give `x`), compared the way
/// SQLite compares them (ASCII case-insensitively); text is never searched.
fn user_tables_only(
    statement: &sqlparser::ast::Statement,
    user_tables: &[String],
) -> Result<(), ClauseError> {
    use sqlparser::ast::Visit;
    let mut resolver = Resolver {
        user_tables,
        scopes: Vec::new(),
    };
    match statement.visit(&mut resolver) {
        ControlFlow::Break(error) => Err(error),
        ControlFlow::Continue(()) => Ok(()),
    }
}

struct Resolver<'a> {
    user_tables: &'a [String],
    /// The `WITH` names of each enclosing query, innermost last. SQLite makes every name of a
    /// `WITH` visible in all its bodies and in its query, which is the span a scope lives here.
    scopes: Vec<Vec<String>>,
}

impl Resolver<'_> {
    fn resolve(&self, name: &ObjectName) -> ControlFlow<ClauseError> {
        let ident = match name.0.as_slice() {
            [ObjectNamePart::Identifier(ident)] => ident,
            _ => {
                return ControlFlow::Break(ClauseError(format!(
                    "`{name}`: name a table of this site without a schema (`main.`, `temp.` and \
                     attached databases are not reachable)"
                )));
            }
        };
        let table = ident.value.as_str();
        if self
            .scopes
            .iter()
            .flatten()
            .any(|cte| cte.eq_ignore_ascii_case(table))
        {
            return ControlFlow::Continue(());
        }
        if is_system_name(table) {
            return ControlFlow::Break(ClauseError(format!(
                "`{table}` is a system table; only the site's own tables are reachable here"
            )));
        }
        if self
            .user_tables
            .iter()
            .any(|user| user.eq_ignore_ascii_case(table))
        {
            return ControlFlow::Continue(());
        }
        ControlFlow::Break(ClauseError(format!(
            "there is no table `{table}` among the site's own tables"
        )))
    }
}

impl sqlparser::ast::Visitor for Resolver<'_> {
    type Break = ClauseError;

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<ClauseError> {
        if let Err(error) = reads_only(&query.body) {
            return ControlFlow::Break(error);
        }
        let mut names = Vec::new();
        for cte in query.with.iter().flat_map(|with| &with.cte_tables) {
            let name = &cte.alias.name.value;
            // A WITH name never shadows a system table, so that no reading of scopes can make a
            // system table look like one of the statement's own names.
            if is_system_name(name) {
                return ControlFlow::Break(ClauseError(format!(
                    "`{name}`: a WITH name may not start with `_`, `sqlite_` or `pragma_`"
                )));
            }
            names.push(name.clone());
        }
        self.scopes.push(names);
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _query: &Query) -> ControlFlow<ClauseError> {
        self.scopes.pop();
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<ClauseError> {
        match factor {
            TableFactor::Table { name, args, .. } => {
                self.resolve(name)?;
                if args.is_some() {
                    return ControlFlow::Break(ClauseError(format!(
                        "`{name}(…)`: table-valued functions are not allowed; name a table of \
                         this site"
                    )));
                }
                ControlFlow::Continue(())
            }
            TableFactor::Derived { .. } | TableFactor::NestedJoin { .. } => {
                ControlFlow::Continue(())
            }
            other => ControlFlow::Break(ClauseError(format!(
                "`{}` is not allowed in FROM; name a table of this site",
                first_words(&other.to_string())
            ))),
        }
    }

    fn pre_visit_relation(&mut self, name: &ObjectName) -> ControlFlow<ClauseError> {
        self.resolve(name)
    }
}

/// A query body that only reads: `SELECT`, `VALUES` and their set operations (nested queries are
/// checked when the walk reaches them).
fn reads_only(body: &SetExpr) -> Result<(), ClauseError> {
    match body {
        SetExpr::Select(_) | SetExpr::Query(_) | SetExpr::Values(_) => Ok(()),
        SetExpr::SetOperation { left, right, .. } => {
            reads_only(left)?;
            reads_only(right)
        }
        _ => Err(ClauseError(
            "only a SELECT (or WITH … SELECT) statement may run here; a WITH cannot lead to a \
             change"
                .into(),
        )),
    }
}

fn parser_for(text: &str, clause: &str) -> Result<Parser<'static>, ClauseError> {
    if text.len() > MAX_CLAUSE_BYTES {
        return Err(ClauseError(format!(
            "{clause}: longer than {MAX_CLAUSE_BYTES} bytes"
        )));
    }
    static DIALECT: SQLiteDialect = SQLiteDialect {};
    Parser::new(&DIALECT)
        .with_recursion_limit(MAX_DEPTH * 2)
        .try_with_sql(text)
        .map_err(|e| ClauseError(format!("{clause}: {}", strip_parser_noise(&e.to_string()))))
}

fn expect_end(parser: &Parser<'_>, clause: &str) -> Result<(), ClauseError> {
    let next = parser.peek_token();
    if next.token == Token::EOF {
        Ok(())
    } else {
        Err(ClauseError(format!(
            "{clause}: unexpected `{}` after the expression (one expression only; no `;`, no \
             unbalanced parentheses)",
            next.token
        )))
    }
}

/// sqlparser prefixes its messages with "sql parser error: ".
fn strip_parser_noise(message: &str) -> String {
    message.trim_start_matches("sql parser error: ").to_owned()
}

struct Writer<'a> {
    columns: &'a [String],
    placeholders: usize,
}

impl Writer<'_> {
    fn expr(&mut self, expr: &Expr, depth: usize) -> Result<String, ClauseError> {
        if depth > MAX_DEPTH {
            return Err(ClauseError(format!(
                "the expression nests deeper than {MAX_DEPTH} levels"
            )));
        }
        let next = depth + 1;
        Ok(match expr {
            Expr::Identifier(ident) => self.column(&ident.value)?,
            Expr::CompoundIdentifier(parts) => {
                let name: Vec<&str> = parts.iter().map(|p| p.value.as_str()).collect();
                return Err(ClauseError(format!(
                    "`{}`: qualified names are not allowed; name a column of this table",
                    name.join(".")
                )));
            }
            Expr::Value(value) => self.value(&value.value)?,
            Expr::Nested(inner) => format!("({})", self.expr(inner, next)?),
            Expr::IsNull(inner) => format!("({} IS NULL)", self.expr(inner, next)?),
            Expr::IsNotNull(inner) => format!("({} IS NOT NULL)", self.expr(inner, next)?),
            Expr::UnaryOp { op, expr } => {
                let op = match op {
                    UnaryOperator::Not => "NOT ",
                    UnaryOperator::Minus => "-",
                    UnaryOperator::Plus => "+",
                    other => return Err(unsupported(&other.to_string())),
                };
                format!("({op}{})", self.expr(expr, next)?)
            }
            Expr::BinaryOp { left, op, right } => {
                let op = match op {
                    BinaryOperator::Eq => "=",
                    BinaryOperator::NotEq => "<>",
                    BinaryOperator::Lt => "<",
                    BinaryOperator::LtEq => "<=",
                    BinaryOperator::Gt => ">",
                    BinaryOperator::GtEq => ">=",
                    BinaryOperator::And => "AND",
                    BinaryOperator::Or => "OR",
                    BinaryOperator::Plus => "+",
                    BinaryOperator::Minus => "-",
                    BinaryOperator::Multiply => "*",
                    BinaryOperator::Divide => "/",
                    BinaryOperator::Modulo => "%",
                    BinaryOperator::StringConcat => "||",
                    other => return Err(unsupported(&other.to_string())),
                };
                format!(
                    "({} {op} {})",
                    self.expr(left, next)?,
                    self.expr(right, next)?
                )
            }
            Expr::InList {
                expr,
                list,
                negated,
            } => {
                if list.len() > MAX_IN_LIST {
                    return Err(ClauseError(format!(
                        "IN lists hold at most {MAX_IN_LIST} values"
                    )));
                }
                let items = list
                    .iter()
                    .map(|item| self.expr(item, next))
                    .collect::<Result<Vec<_>, _>>()?;
                let not = if *negated { "NOT " } else { "" };
                format!(
                    "({} {not}IN ({}))",
                    self.expr(expr, next)?,
                    items.join(", ")
                )
            }
            Expr::Between {
                expr,
                negated,
                low,
                high,
            } => {
                let not = if *negated { "NOT " } else { "" };
                format!(
                    "({} {not}BETWEEN {} AND {})",
                    self.expr(expr, next)?,
                    self.expr(low, next)?,
                    self.expr(high, next)?
                )
            }
            Expr::Like {
                negated,
                any,
                expr,
                pattern,
                escape_char,
            } => {
                if *any {
                    return Err(unsupported("LIKE ANY"));
                }
                let not = if *negated { "NOT " } else { "" };
                let escape = match escape_char {
                    Some(escape) => format!(" ESCAPE {}", self.expr(escape, next)?),
                    None => String::new(),
                };
                format!(
                    "({} {not}LIKE {}{escape})",
                    self.expr(expr, next)?,
                    self.expr(pattern, next)?
                )
            }
            Expr::Function(function) => {
                let name = match function.name.0.as_slice() {
                    [ObjectNamePart::Identifier(ident)] => ident.value.to_ascii_lowercase(),
                    _ => return Err(unsupported(&function.name.to_string())),
                };
                if !FUNCTIONS.contains(&name.as_str()) {
                    return Err(ClauseError(format!(
                        "function `{name}` is not allowed; allowed: {}",
                        FUNCTIONS.join(", ")
                    )));
                }
                if function.filter.is_some()
                    || function.over.is_some()
                    || function.null_treatment.is_some()
                    || !function.within_group.is_empty()
                    || !matches!(function.parameters, FunctionArguments::None)
                {
                    return Err(unsupported(&format!("{name}(…) with FILTER/OVER/WITHIN")));
                }
                let args = match &function.args {
                    FunctionArguments::List(list) => {
                        if list.duplicate_treatment == Some(DuplicateTreatment::Distinct)
                            || !list.clauses.is_empty()
                        {
                            return Err(unsupported(&format!("{name}(DISTINCT …)")));
                        }
                        let mut args = Vec::new();
                        for arg in &list.args {
                            match arg {
                                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => {
                                    args.push(self.expr(e, next)?)
                                }
                                other => return Err(unsupported(&other.to_string())),
                            }
                        }
                        args
                    }
                    FunctionArguments::None => Vec::new(),
                    FunctionArguments::Subquery(_) => {
                        return Err(ClauseError("subqueries are not allowed".into()));
                    }
                };
                format!("{name}({})", args.join(", "))
            }
            Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => {
                return Err(ClauseError("`SELECT`: subqueries are not allowed".into()));
            }
            other => return Err(unsupported(&first_words(&other.to_string()))),
        })
    }

    fn column(&self, name: &str) -> Result<String, ClauseError> {
        match self
            .columns
            .iter()
            .find(|column| column.eq_ignore_ascii_case(name))
        {
            Some(column) => Ok(quote_ident(column)),
            None => Err(ClauseError(format!(
                "unknown column `{name}`; this table has: {}",
                self.columns.join(", ")
            ))),
        }
    }

    fn value(&mut self, value: &Value) -> Result<String, ClauseError> {
        Ok(match value {
            Value::Number(text, _) => {
                if !text
                    .chars()
                    .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
                {
                    return Err(unsupported(text));
                }
                text.clone()
            }
            Value::SingleQuotedString(text) => format!("'{}'", text.replace('\'', "''")),
            Value::Boolean(true) => "1".into(),
            Value::Boolean(false) => "0".into(),
            Value::Null => "NULL".into(),
            Value::Placeholder(mark) if mark == "?" => {
                self.placeholders += 1;
                "?".into()
            }
            Value::Placeholder(mark) => {
                return Err(ClauseError(format!(
                    "placeholder `{mark}`: use plain `?` placeholders, bound in order from `args`"
                )));
            }
            // In SQLite "x" names a column.
            Value::DoubleQuotedString(name) => self.column(name)?,
            other => return Err(unsupported(&other.to_string())),
        })
    }
}

fn unsupported(token: &str) -> ClauseError {
    ClauseError(format!("`{token}` is not supported in a filter"))
}

/// The start of an expression, to name it in a message.
fn first_words(text: &str) -> String {
    let words: Vec<&str> = text.split_whitespace().take(3).collect();
    words.join(" ")
}

#[cfg(test)]
mod tests {
    //! What a caller may write in `where` and `order`, and what it gets for it: one table of
    //! accepted forms with the SQL that runs, one of refused forms with the words of the refusal.

    use super::*;

    fn columns() -> Vec<String> {
        ["title", "stars", "_id", "_owner", "created"]
            .map(String::from)
            .to_vec()
    }

    #[test]
    fn accepted_where_clauses_are_rewritten_from_the_checked_tree() {
        let accepted = [
            ("stars >= ?", r#"("stars" >= ?)"#, 1),
            ("title = 'it''s'", r#"("title" = 'it''s')"#, 0),
            ("stars IN (1, 2, 3)", r#"("stars" IN (1, 2, 3))"#, 0),
            (
                "title LIKE '%a%' AND stars > 2",
                r#"(("title" LIKE '%a%') AND ("stars" > 2))"#,
                0,
            ),
            ("title IS NOT NULL", r#"("title" IS NOT NULL)"#, 0),
            ("stars BETWEEN ? AND ?", r#"("stars" BETWEEN ? AND ?)"#, 2),
            ("lower(title) = ?", r#"(lower("title") = ?)"#, 1),
            (
                "NOT (stars < 1) OR _owner = ?",
                r#"((NOT (("stars" < 1))) OR ("_owner" = ?))"#,
                1,
            ),
            ("stars + 1 > 2 * ?", r#"(("stars" + 1) > (2 * ?))"#, 1),
            ("-stars < 0", r#"((-"stars") < 0)"#, 0),
            (r#""title" = ?"#, r#"("title" = ?)"#, 1),
            (
                "created > datetime('now', '-1 day')",
                r#"("created" > datetime('now', '-1 day'))"#,
                0,
            ),
            // A trailing comment is dropped, not copied.
            ("title = ? -- and more", r#"("title" = ?)"#, 1),
        ];
        for (text, sql, placeholders) in accepted {
            let checked = parse_where(text, &columns()).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(checked.sql, sql, "{text}");
            assert_eq!(checked.placeholders, placeholders, "{text}");
        }
    }

    #[test]
    fn refused_where_clauses_say_what_is_wrong() {
        let refused = [
            (
                "nope = 1",
                "unknown column `nope`; this table has: title, stars",
            ),
            ("stars = (SELECT 1)", "subqueries are not allowed"),
            ("stars IN (SELECT _id FROM t)", "subqueries are not allowed"),
            ("EXISTS (SELECT 1)", "subqueries are not allowed"),
            (
                "title = load_extension('x')",
                "function `load_extension` is not allowed",
            ),
            ("count(*) > 1", "function `count` is not allowed"),
            (
                "sqlite_version() = ?",
                "function `sqlite_version` is not allowed",
            ),
            ("stars = random()", "function `random` is not allowed"),
            ("1; DROP TABLE t", "unexpected `;` after the expression"),
            ("t.title = ?", "qualified names are not allowed"),
            ("stars = :name", "use plain `?` placeholders"),
            ("stars = ?1", "use plain `?` placeholders"),
            ("title COLLATE nocase = ?", "is not supported in a filter"),
            ("CAST(stars AS TEXT) = ?", "is not supported in a filter"),
            ("x'41' = title", "is not supported in a filter"),
            ("title REGEXP ?", "`REGEXP` is not supported"),
            ("title GLOB ?", "`GLOB` is not supported"),
            (
                "CASE WHEN stars > 1 THEN 1 ELSE 0 END = 1",
                "is not supported",
            ),
            ("", "where: Expected: an expression"),
        ];
        for (text, words) in refused {
            match parse_where(text, &columns()) {
                Err(ClauseError(message)) => assert!(message.contains(words), "{text}: {message}"),
                Ok(checked) => panic!("{text} was accepted as {checked:?}"),
            }
        }
    }

    #[test]
    fn order_clauses_name_columns_and_directions_only() {
        let accepted = [
            ("stars DESC", r#""stars" DESC"#),
            ("title, _id DESC", r#""title" ASC, "_id" DESC"#),
            ("stars DESC NULLS LAST", r#""stars" DESC NULLS LAST"#),
            ("lower(title)", r#"lower("title") ASC"#),
        ];
        for (text, sql) in accepted {
            assert_eq!(parse_order(text, &columns()).as_deref(), Ok(sql), "{text}");
        }
        let refused = [
            ("nope", "unknown column `nope`"),
            ("?", "`?` placeholders are not allowed here"),
            ("(SELECT 1)", "subqueries are not allowed"),
            ("stars; DROP TABLE t", "unexpected `;`"),
            ("stars USING <", "unexpected `USING`"),
        ];
        for (text, words) in refused {
            match parse_order(text, &columns()) {
                Err(ClauseError(message)) => assert!(message.contains(words), "{text}: {message}"),
                Ok(sql) => panic!("{text} was accepted as {sql}"),
            }
        }
    }
}
