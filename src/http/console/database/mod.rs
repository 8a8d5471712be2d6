//! `/database`: the owner's database editor. Tables with row counts and policies; rows paged and
//! sortable; insert, edit and delete through forms built from the schema; create, rename and drop
//! tables; add and drop columns; policies; the table's own quotas on other peers' rows; a
//! read-only SQL box; CSV and JSON export; CSV import with a preview and a report per row. Every page works without JavaScript; every change is a
//! CSRF-checked form ([`CsrfForm`]) and calls the `DataService`'s typed methods as the owner — the same checks
//! as the JSON API, so the messages are the same.
//!
//! This module holds the list of tables (with the new-table form and the SQL box) and what the
//! pages share; [`table`] is one table's page and its schema forms, [`rows`] the row forms,
//! [`transfer`] export and import.

mod rows;
mod table;
mod transfer;

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::Value;

use super::{ConsoleApp, Frame};
use crate::http::csrf::CsrfForm;
use crate::http::error::HttpError;
use crate::services::data::schema::{self, ColumnType, TableSchema};
use crate::services::data::{Caller, DataError, Row, TableDescription};

/// Largest CSV accepted for import, and rows in it.
const MAX_IMPORT_BYTES: usize = 5 * 1024 * 1024;

pub fn routes() -> Router<ConsoleApp> {
    Router::new()
        .route("/database", get(show_tables))
        .route("/database/create", post(create_table))
        .route("/database/sql", post(run_sql))
        .route("/database/t/{table}", get(table::show_table))
        .route("/database/t/{table}/insert", post(rows::insert_row))
        .route(
            "/database/t/{table}/row/{id}",
            get(rows::show_row).post(rows::save_row),
        )
        .route(
            "/database/t/{table}/row/{id}/delete",
            post(rows::delete_row),
        )
        .route("/database/t/{table}/change", post(table::change_table))
        .route("/database/t/{table}/export.csv", get(transfer::export_csv))
        .route(
            "/database/t/{table}/export.json",
            get(transfer::export_json),
        )
        .route(
            "/database/t/{table}/import",
            post(transfer::import_csv).layer(DefaultBodyLimit::max(3 * MAX_IMPORT_BYTES)),
        )
}

/// The editor acts as the peer's owner.
const OWNER: &Caller = &Caller::Owner;

fn status_of(error: &DataError) -> StatusCode {
    StatusCode::from_u16(error.code()).unwrap_or(StatusCode::BAD_REQUEST)
}

/// The error page for an operation that failed where no page of the editor can show it.
fn error_page(error: &DataError) -> Response {
    HttpError::page(status_of(error), error.to_string()).into_response()
}

#[derive(Deserialize)]
struct NoticeQuery {
    notice: Option<String>,
}

struct TableRow {
    name: String,
    rows: i64,
    access: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "console_database.html")]
struct TablesPage {
    frame: Frame,
    tables: Vec<TableRow>,
    notice: Option<String>,
    error: Option<String>,
    sql: String,
    result: Option<Grid>,
}

/// Rows to show: column names and cells as text.
struct Grid {
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
    truncated: bool,
}

fn cell(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// The cell of `column` in `row` (empty when the row has no such column).
fn cell_of(row: &Row, column: &str) -> String {
    row.get(column).map(cell).unwrap_or_default()
}

/// `rows` in `columns` (all of the first row's, when not given).
fn grid(rows: &[Row], columns: Option<Vec<String>>, truncated: bool) -> Grid {
    let columns = columns.unwrap_or_else(|| {
        rows.first()
            .map(|row| row.keys().cloned().collect())
            .unwrap_or_default()
    });
    let rows = rows
        .iter()
        .map(|row| columns.iter().map(|c| cell_of(row, c)).collect())
        .collect();
    Grid {
        columns,
        rows,
        truncated,
    }
}

/// A column of the table, for forms.
struct Field {
    name: String,
    kind: String,
    required: bool,
    /// Allowed values of an enum.
    values: Vec<String>,
    /// The value shown in the form.
    value: String,
}

/// The form fields of a table's own columns, showing `values`.
fn fields_of(description: &TableDescription, values: &Row) -> Vec<Field> {
    description
        .columns
        .iter()
        .map(|column| Field {
            name: column.name.clone(),
            kind: column.kind.as_str().to_owned(),
            required: column.required,
            values: column.values.clone().unwrap_or_default(),
            value: cell_of(values, &column.name),
        })
        .collect()
}

/// A text from a form or a CSV cell, as the column's JSON type when it parses as one (otherwise
/// the text, which the schema check then names).
fn typed(kind: ColumnType, text: &str) -> Value {
    match kind {
        ColumnType::Integer => text
            .trim()
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::from(text)),
        ColumnType::Real => text
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .unwrap_or_else(|| Value::from(text)),
        _ => Value::from(text),
    }
}

async fn tables_page(
    app: &ConsoleApp,
    headers: &HeaderMap,
    notice: Option<String>,
    error: Option<String>,
    sql: String,
    result: Option<Grid>,
) -> TablesPage {
    let mut tables = Vec::new();
    let mut error = error;
    match app.data.tables(OWNER).await {
        Ok(list) => {
            // A count that cannot be read shows as 0; the list is still worth showing.
            let counts = app.data.row_counts().await.unwrap_or_default();
            for table in list {
                let access = table.access;
                tables.push(TableRow {
                    rows: counts.get(&table.name).copied().unwrap_or(0),
                    access: format!(
                        "read {}, insert {}, update {}, delete {}",
                        access.read.as_str(),
                        access.insert.as_str(),
                        access.update.as_str(),
                        access.delete.as_str()
                    ),
                    name: table.name,
                });
            }
        }
        Err(err) => error = Some(err.to_string()),
    }
    TablesPage {
        frame: app.frame(headers),
        tables,
        notice,
        error,
        sql,
        result,
    }
}

/// The table list again with an error, under the error's status.
async fn tables_error(app: &ConsoleApp, headers: &HeaderMap, error: DataError) -> Response {
    let page = tables_page(
        app,
        headers,
        None,
        Some(error.to_string()),
        String::new(),
        None,
    )
    .await;
    (status_of(&error), page).into_response()
}

async fn show_tables(
    State(app): State<ConsoleApp>,
    headers: HeaderMap,
    Query(query): Query<NoticeQuery>,
) -> TablesPage {
    tables_page(
        &app,
        &headers,
        app.notices.open(query.notice),
        None,
        String::new(),
        None,
    )
    .await
}

#[derive(Deserialize)]
struct CreateForm {
    name: String,
    #[serde(default)]
    columns: String,
    read: String,
    insert: String,
    update: String,
    delete: String,
}

impl CreateForm {
    /// The new table's schema, checked as `create-table` checks one.
    fn schema(&self) -> Result<TableSchema, DataError> {
        let columns: Vec<&str> = self
            .columns
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .collect();
        let policies = [&self.read, &self.insert, &self.update, &self.delete].map(String::as_str);
        schema::schema_from_form(self.name.trim(), &columns, policies)
            .map_err(DataError::BadRequest)
    }
}

async fn create_table(
    State(app): State<ConsoleApp>,
    headers: HeaderMap,
    CsrfForm(form): CsrfForm<CreateForm>,
) -> Response {
    let created = match form.schema() {
        Ok(schema) => app.data.create_table(schema).await,
        Err(err) => Err(err),
    };
    match created {
        Ok(_) => Redirect::to(&format!("/database/t/{}", form.name.trim())).into_response(),
        Err(err) => tables_error(&app, &headers, err).await,
    }
}

#[derive(Deserialize)]
struct SqlForm {
    sql: String,
}

async fn run_sql(
    State(app): State<ConsoleApp>,
    headers: HeaderMap,
    CsrfForm(form): CsrfForm<SqlForm>,
) -> Response {
    match app.data.sql(&form.sql).await {
        Ok(found) => {
            let result = grid(&found.rows, None, found.truncated);
            tables_page(&app, &headers, None, None, form.sql, Some(result))
                .await
                .into_response()
        }
        Err(err) => (
            status_of(&err),
            tables_page(&app, &headers, None, Some(err.to_string()), form.sql, None).await,
        )
            .into_response(),
    }
}
