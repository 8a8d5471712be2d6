//! `/database`: the owner's database editor. Tables with row counts and policies; rows paged and
//! sortable; insert, edit and delete through forms built from the schema; create, rename and drop
//! tables; add and drop columns; policies; the table's own quotas on other peers' rows; a
//! read-only SQL box; CSV and JSON export; CSV import with a preview and a report per row. Every page works without JavaScript; every change is a
//! CSRF-checked form and goes through the same `DataService` operations as the JSON API, so the
//! messages are the same.

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::HashMap;

use super::{ConsoleApp, Frame};
use crate::http::csrf::CsrfForm;
use crate::http::error::HttpError;
use crate::services::data::{Caller, DataError, DataRequest, SYSTEM_COLUMNS};

/// Rows per page.
const PAGE_ROWS: i64 = 50;
/// Largest CSV accepted for import, and rows in it.
const MAX_IMPORT_BYTES: usize = 5 * 1024 * 1024;
const MAX_IMPORT_ROWS: usize = 10_000;
/// Rows an export writes at most.
const MAX_EXPORT_ROWS: i64 = 100_000;

pub fn routes() -> Router<ConsoleApp> {
    Router::new()
        .route("/database", get(show_tables))
        .route("/database/create", post(create_table))
        .route("/database/sql", post(run_sql))
        .route("/database/t/{table}", get(show_table))
        .route("/database/t/{table}/insert", post(insert_row))
        .route("/database/t/{table}/row/{id}", get(show_row).post(save_row))
        .route("/database/t/{table}/row/{id}/delete", post(delete_row))
        .route("/database/t/{table}/change", post(change_table))
        .route("/database/t/{table}/export.csv", get(export_csv))
        .route("/database/t/{table}/export.json", get(export_json))
        .route(
            "/database/t/{table}/import",
            post(import_csv).layer(DefaultBodyLimit::max(3 * MAX_IMPORT_BYTES)),
        )
}

async fn owner(app: &ConsoleApp, request: Value) -> Result<Value, DataError> {
    let request: DataRequest = serde_json::from_value(request)
        .map_err(|e| DataError::BadRequest(format!("bad form: {e}")))?;
    app.data.handle(&Caller::Owner, request).await
}

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

fn grid(rows: &[Value], columns: Option<Vec<String>>, truncated: bool) -> Grid {
    let columns = columns.unwrap_or_else(|| {
        rows.first()
            .and_then(Value::as_object)
            .map(|row| row.keys().cloned().collect())
            .unwrap_or_default()
    });
    let rows = rows
        .iter()
        .map(|row| columns.iter().map(|c| cell(&row[c.as_str()])).collect())
        .collect();
    Grid {
        columns,
        rows,
        truncated,
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
    match owner(app, json!({"op": "tables"})).await {
        Ok(Value::Array(list)) => {
            for table in list {
                let name = table["name"].as_str().unwrap_or_default().to_owned();
                let rows = owner(app, json!({"op": "count", "table": name}))
                    .await
                    .ok()
                    .and_then(|n| n.as_i64())
                    .unwrap_or(0);
                let access = &table["access"];
                tables.push(TableRow {
                    access: format!(
                        "read {}, insert {}, update {}, delete {}",
                        cell(&access["read"]),
                        cell(&access["insert"]),
                        cell(&access["update"]),
                        cell(&access["delete"])
                    ),
                    name,
                    rows,
                });
            }
        }
        Ok(_) => {}
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

async fn create_table(
    State(app): State<ConsoleApp>,
    headers: HeaderMap,
    CsrfForm(form): CsrfForm<CreateForm>,
) -> Response {
    let columns: Vec<&str> = form
        .columns
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    let request = json!({"op": "create-table", "schema": {
        "name": form.name.trim(),
        "columns": columns,
        "access": {"read": form.read, "insert": form.insert, "update": form.update, "delete": form.delete},
    }});
    match owner(&app, request).await {
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
    match owner(&app, json!({"op": "sql", "sql": form.sql})).await {
        Ok(result) => {
            let rows = result["rows"].as_array().cloned().unwrap_or_default();
            let truncated = result["truncated"] == true;
            tables_page(
                &app,
                &headers,
                None,
                None,
                form.sql,
                Some(grid(&rows, None, truncated)),
            )
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

#[derive(Template, WebTemplate)]
#[template(path = "console_table.html")]
struct TablePage {
    frame: Frame,
    table: String,
    /// Each operation and its policy.
    policies: Vec<(String, String)>,
    /// The table's own quotas on other peers' rows.
    limits: Vec<LimitField>,
    fields: Vec<Field>,
    grid: Grid,
    ids: Vec<String>,
    page: i64,
    pages: i64,
    total: i64,
    sort: String,
    dir: String,
    notice: Option<String>,
    error: Option<String>,
    /// The import preview or report.
    import: Option<ImportReport>,
}

/// One quota of the table: its own value (empty: the peer's default, from goop.json).
struct LimitField {
    /// The form field and `set-limits` key.
    key: &'static str,
    label: &'static str,
    value: String,
    default: i64,
}

fn limit_fields(app: &ConsoleApp, description: &Value) -> Vec<LimitField> {
    let defaults = app.data.limits();
    [
        (
            "rows_per_caller",
            "Rows one peer may keep",
            defaults.max_rows_per_caller,
        ),
        (
            "bytes_per_caller",
            "Bytes one peer may keep",
            defaults.max_bytes_per_caller,
        ),
        (
            "rows",
            "Rows from all peers together",
            defaults.max_rows_per_table,
        ),
        (
            "bytes",
            "Bytes from all peers together",
            defaults.max_bytes_per_table,
        ),
    ]
    .into_iter()
    .map(|(key, label, default)| LimitField {
        key,
        label,
        value: cell(&description["own_limits"][key]),
        default,
    })
    .collect()
}

struct ImportReport {
    preview: bool,
    csv: String,
    good: usize,
    problems: Vec<(usize, String)>,
}

#[derive(Deserialize, Default)]
struct TableQuery {
    page: Option<i64>,
    sort: Option<String>,
    dir: Option<String>,
    notice: Option<String>,
}

fn fields_of(description: &Value, values: &Map<String, Value>) -> Vec<Field> {
    description["columns"]
        .as_array()
        .map(|columns| {
            columns
                .iter()
                .map(|column| {
                    let name = column["name"].as_str().unwrap_or_default().to_owned();
                    Field {
                        value: values.get(&name).map(cell).unwrap_or_default(),
                        kind: column["type"].as_str().unwrap_or("text").to_owned(),
                        required: column["required"] == true,
                        values: column["values"]
                            .as_array()
                            .map(|v| v.iter().map(cell).collect())
                            .unwrap_or_default(),
                        name,
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

#[allow(clippy::too_many_arguments)]
async fn table_page(
    app: &ConsoleApp,
    headers: &HeaderMap,
    table: &str,
    query: TableQuery,
    error: Option<String>,
    form_values: Map<String, Value>,
    import: Option<ImportReport>,
) -> Result<TablePage, DataError> {
    let description = owner(app, json!({"op": "describe", "table": table})).await?;
    let total = owner(app, json!({"op": "count", "table": table}))
        .await?
        .as_i64()
        .unwrap_or(0);
    let pages = ((total + PAGE_ROWS - 1) / PAGE_ROWS).max(1);
    let page = query.page.unwrap_or(1).clamp(1, pages);
    let sort = query.sort.unwrap_or_else(|| "_id".into());
    let dir = if query.dir.as_deref() == Some("desc") {
        "desc"
    } else {
        "asc"
    };
    let mut columns: Vec<String> = vec!["_id".into(), "_owner".into()];
    columns.extend(
        description["columns"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str().map(str::to_owned)),
    );
    columns.push("_updated_at".into());
    let rows = owner(
        app,
        json!({"op": "query", "table": table, "order": format!("{sort} {dir}"),
               "limit": PAGE_ROWS, "offset": (page - 1) * PAGE_ROWS, "columns": columns}),
    )
    .await?;
    let rows = rows.as_array().cloned().unwrap_or_default();
    let policies = ["read", "insert", "update", "delete"]
        .iter()
        .map(|op| ((*op).to_owned(), cell(&description["access"][*op])))
        .collect();
    Ok(TablePage {
        frame: app.frame(headers),
        table: table.to_owned(),
        policies,
        limits: limit_fields(app, &description),
        fields: fields_of(&description, &form_values),
        ids: rows.iter().map(|r| cell(&r["_id"])).collect(),
        grid: grid(&rows, Some(columns), false),
        page,
        pages,
        total,
        sort,
        dir: dir.into(),
        notice: app.notices.open(query.notice),
        error,
        import,
    })
}

async fn show_table(
    State(app): State<ConsoleApp>,
    headers: HeaderMap,
    Path(table): Path<String>,
    Query(query): Query<TableQuery>,
) -> Response {
    match table_page(&app, &headers, &table, query, None, Map::new(), None).await {
        Ok(page) => page.into_response(),
        Err(err) => tables_error(&app, &headers, err).await,
    }
}

/// A table page again with an error, under the error's status.
async fn table_error(
    app: &ConsoleApp,
    headers: &HeaderMap,
    table: &str,
    error: DataError,
    form_values: Map<String, Value>,
) -> Response {
    match table_page(
        app,
        headers,
        table,
        TableQuery::default(),
        Some(error.to_string()),
        form_values,
        None,
    )
    .await
    {
        Ok(page) => (status_of(&error), page).into_response(),
        Err(err) => error_page(&err),
    }
}

/// Form fields `col:<name>` as typed row values; empty fields are left out (or null when
/// `empty_as_null`, so an edit can clear a column).
fn row_from_form(
    description: &Value,
    form: &HashMap<String, String>,
    empty_as_null: bool,
) -> Map<String, Value> {
    let mut row = Map::new();
    for column in description["columns"].as_array().into_iter().flatten() {
        let name = column["name"].as_str().unwrap_or_default();
        let Some(text) = form.get(&format!("col:{name}")) else {
            continue;
        };
        if text.is_empty() {
            if empty_as_null {
                row.insert(name.to_owned(), Value::Null);
            }
            continue;
        }
        row.insert(
            name.to_owned(),
            typed(column["type"].as_str().unwrap_or("text"), text),
        );
    }
    row
}

/// A text from a form or a CSV cell, as the column's JSON type when it parses as one (otherwise
/// the text, which the schema check then names).
fn typed(kind: &str, text: &str) -> Value {
    match kind {
        "integer" => text
            .trim()
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::from(text)),
        "real" => text
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .unwrap_or_else(|| Value::from(text)),
        _ => Value::from(text),
    }
}

async fn insert_row(
    State(app): State<ConsoleApp>,
    headers: HeaderMap,
    Path(table): Path<String>,
    CsrfForm(form): CsrfForm<HashMap<String, String>>,
) -> Response {
    let description = match owner(&app, json!({"op": "describe", "table": table})).await {
        Ok(description) => description,
        Err(err) => return error_page(&err),
    };
    let row = row_from_form(&description, &form, false);
    match owner(&app, json!({"op": "insert", "table": table, "data": row})).await {
        Ok(result) => app.notices.redirect(
            &format!("/database/t/{table}"),
            &format!("Row {} added.", cell(&result["_id"])),
        ),
        Err(err) => table_error(&app, &headers, &table, err, row).await,
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "console_row.html")]
struct RowPage {
    frame: Frame,
    table: String,
    id: i64,
    system: Vec<(String, String)>,
    fields: Vec<Field>,
    error: Option<String>,
}

async fn row_page(
    app: &ConsoleApp,
    headers: &HeaderMap,
    table: &str,
    id: i64,
    edited: Option<(Map<String, Value>, String)>,
) -> Result<RowPage, DataError> {
    let description = owner(app, json!({"op": "describe", "table": table})).await?;
    let row = owner(
        app,
        json!({"op": "query-one", "table": table, "where": "_id = ?", "args": [id]}),
    )
    .await?;
    let Some(stored) = row.as_object() else {
        return Err(DataError::NotFound(format!(
            "`{table}` has no row with _id {id}"
        )));
    };
    let system = SYSTEM_COLUMNS
        .iter()
        .map(|name| ((*name).to_owned(), cell(&stored[*name])))
        .collect();
    let (values, error) = match edited {
        Some((values, error)) => (values, Some(error)),
        None => (stored.clone(), None),
    };
    Ok(RowPage {
        frame: app.frame(headers),
        table: table.to_owned(),
        id,
        system,
        fields: fields_of(&description, &values),
        error,
    })
}

async fn show_row(
    State(app): State<ConsoleApp>,
    headers: HeaderMap,
    Path((table, id)): Path<(String, i64)>,
) -> Response {
    match row_page(&app, &headers, &table, id, None).await {
        Ok(page) => page.into_response(),
        Err(err) => error_page(&err),
    }
}

async fn save_row(
    State(app): State<ConsoleApp>,
    headers: HeaderMap,
    Path((table, id)): Path<(String, i64)>,
    CsrfForm(form): CsrfForm<HashMap<String, String>>,
) -> Response {
    let description = match owner(&app, json!({"op": "describe", "table": table})).await {
        Ok(description) => description,
        Err(err) => return error_page(&err),
    };
    let row = row_from_form(&description, &form, true);
    match owner(
        &app,
        json!({"op": "update", "table": table, "id": id, "data": row}),
    )
    .await
    {
        Ok(_) => app
            .notices
            .redirect(&format!("/database/t/{table}"), &format!("Row {id} saved.")),
        Err(err) => {
            let status = status_of(&err);
            match row_page(&app, &headers, &table, id, Some((row, err.to_string()))).await {
                Ok(page) => (status, page).into_response(),
                Err(err) => error_page(&err),
            }
        }
    }
}

async fn delete_row(
    State(app): State<ConsoleApp>,
    headers: HeaderMap,
    Path((table, id)): Path<(String, i64)>,
    _: CsrfForm,
) -> Response {
    match owner(&app, json!({"op": "delete", "table": table, "id": id})).await {
        Ok(_) => app.notices.redirect(
            &format!("/database/t/{table}"),
            &format!("Row {id} deleted."),
        ),
        Err(err) => table_error(&app, &headers, &table, err, Map::new()).await,
    }
}

#[derive(Deserialize)]
struct ChangeForm {
    /// rename | drop | add-column | drop-column | policy | limits
    action: String,
    #[serde(default)]
    name: String,
    /// `drop`: the table's name typed again.
    #[serde(default)]
    confirm: String,
    #[serde(default)]
    column: String,
    #[serde(default)]
    read: String,
    #[serde(default)]
    insert: String,
    #[serde(default)]
    update: String,
    #[serde(default)]
    delete: String,
    /// `limits`: each quota as typed; empty for the peer's default.
    #[serde(default)]
    rows_per_caller: String,
    #[serde(default)]
    bytes_per_caller: String,
    #[serde(default)]
    rows: String,
    #[serde(default)]
    bytes: String,
}

/// A quota as typed in the form: empty is null (the peer's default); a number is sent as one,
/// anything else as typed, for `set-limits` to name.
fn limit_value(text: &str) -> Value {
    let text = text.trim().replace(['_', ','], "");
    if text.is_empty() {
        Value::Null
    } else {
        text.parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::from(text))
    }
}

async fn change_table(
    State(app): State<ConsoleApp>,
    headers: HeaderMap,
    Path(table): Path<String>,
    CsrfForm(form): CsrfForm<ChangeForm>,
) -> Response {
    let request = match form.action.as_str() {
        "rename" => json!({"op": "rename-table", "table": table, "name": form.name.trim()}),
        "drop" => {
            if form.confirm != table {
                return table_error(
                    &app,
                    &headers,
                    &table,
                    DataError::BadRequest(format!(
                        "to drop `{table}`, type its name in the confirmation field"
                    )),
                    Map::new(),
                )
                .await;
            }
            json!({"op": "drop-table", "table": table})
        }
        "add-column" => json!({"op": "add-column", "table": table, "column": form.column.trim()}),
        "drop-column" => json!({"op": "drop-column", "table": table, "name": form.name}),
        "policy" => json!({"op": "set-policy", "table": table, "access": {
            "read": form.read, "insert": form.insert, "update": form.update, "delete": form.delete}}),
        "limits" => json!({"op": "set-limits", "table": table, "limits": {
            "rows_per_caller": limit_value(&form.rows_per_caller),
            "bytes_per_caller": limit_value(&form.bytes_per_caller),
            "rows": limit_value(&form.rows),
            "bytes": limit_value(&form.bytes)}}),
        other => {
            return HttpError::page(StatusCode::BAD_REQUEST, format!("unknown action `{other}`"))
                .into_response();
        }
    };
    match owner(&app, request).await {
        Ok(_) => match form.action.as_str() {
            "drop" => app
                .notices
                .redirect("/database", &format!("Table {table} dropped.")),
            "rename" => app.notices.redirect(
                &format!("/database/t/{}", form.name.trim()),
                &format!("Renamed from {table}."),
            ),
            _ => app
                .notices
                .redirect(&format!("/database/t/{table}"), "Saved."),
        },
        Err(err) => table_error(&app, &headers, &table, err, Map::new()).await,
    }
}

/// Every row of a table (as the owner), up to [`MAX_EXPORT_ROWS`].
async fn all_rows(app: &ConsoleApp, table: &str) -> Result<(Vec<String>, Vec<Value>), DataError> {
    let description = owner(app, json!({"op": "describe", "table": table})).await?;
    let mut columns: Vec<String> = SYSTEM_COLUMNS.into_iter().map(str::to_owned).collect();
    columns.extend(
        description["columns"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str().map(str::to_owned)),
    );
    let mut rows = Vec::new();
    let mut offset = 0;
    while offset < MAX_EXPORT_ROWS {
        let page = owner(
            app,
            json!({"op": "query", "table": table, "order": "_id", "limit": 1000,
                   "offset": offset, "columns": columns}),
        )
        .await?;
        let page = page.as_array().cloned().unwrap_or_default();
        let len = page.len();
        rows.extend(page);
        if len < 1000 {
            break;
        }
        offset += 1000;
    }
    Ok((columns, rows))
}

fn download(body: Vec<u8>, content_type: &'static str, file: String) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{file}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

async fn export_csv(State(app): State<ConsoleApp>, Path(table): Path<String>) -> Response {
    let (columns, rows) = match all_rows(&app, &table).await {
        Ok(found) => found,
        Err(err) => return error_page(&err),
    };
    let mut writer = csv::Writer::from_writer(Vec::new());
    let mut result = writer.write_record(&columns);
    for row in &rows {
        if result.is_err() {
            break;
        }
        result = writer.write_record(columns.iter().map(|c| cell(&row[c.as_str()])));
    }
    match result
        .map_err(|e| e.to_string())
        .and_then(|()| writer.into_inner().map_err(|e| e.to_string()))
    {
        Ok(body) => download(body, "text/csv; charset=utf-8", format!("{table}.csv")),
        Err(err) => HttpError::page(StatusCode::INTERNAL_SERVER_ERROR, err).into_response(),
    }
}

async fn export_json(State(app): State<ConsoleApp>, Path(table): Path<String>) -> Response {
    match all_rows(&app, &table).await {
        Ok((_, rows)) => download(
            serde_json::to_vec_pretty(&rows).unwrap_or_default(),
            "application/json",
            format!("{table}.json"),
        ),
        Err(err) => error_page(&err),
    }
}

#[derive(Deserialize)]
struct ImportForm {
    #[serde(default)]
    csv: String,
    /// `preview` or `import`.
    #[serde(default)]
    step: String,
}

async fn import_csv(
    State(app): State<ConsoleApp>,
    headers: HeaderMap,
    Path(table): Path<String>,
    CsrfForm(form): CsrfForm<ImportForm>,
) -> Response {
    let fail = |message: String| DataError::BadRequest(message);
    if form.csv.len() > MAX_IMPORT_BYTES {
        let err = fail(format!("the CSV is larger than {MAX_IMPORT_BYTES} bytes"));
        return table_error(&app, &headers, &table, err, Map::new()).await;
    }
    let description = match owner(&app, json!({"op": "describe", "table": table})).await {
        Ok(description) => description,
        Err(err) => return error_page(&err),
    };
    let kinds: HashMap<String, String> = description["columns"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| (cell(&c["name"]), cell(&c["type"])))
        .collect();
    let mut reader = csv::ReaderBuilder::new()
        .flexible(false)
        .from_reader(form.csv.as_bytes());
    let header: Vec<String> = match reader.headers() {
        Ok(names) => names.iter().map(|n| n.trim().to_owned()).collect(),
        Err(err) => {
            let err = fail(format!("the CSV has no header row: {err}"));
            return table_error(&app, &headers, &table, err, Map::new()).await;
        }
    };
    // System columns of an export are skipped; other unknown columns are named.
    let unknown: Vec<&String> = header
        .iter()
        .filter(|name| !name.starts_with('_') && !kinds.contains_key(*name))
        .collect();
    if !unknown.is_empty() {
        let names: Vec<&str> = unknown.iter().map(|s| s.as_str()).collect();
        let err = fail(format!(
            "the CSV names unknown columns: {}",
            names.join(", ")
        ));
        return table_error(&app, &headers, &table, err, Map::new()).await;
    }
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    for (index, record) in reader.records().enumerate() {
        // Line numbers as a spreadsheet shows them: the header is line 1.
        let line = index + 2;
        if rows.len() + problems.len() >= MAX_IMPORT_ROWS {
            problems.push((
                line,
                format!("only {MAX_IMPORT_ROWS} rows are imported at once"),
            ));
            break;
        }
        match record {
            Ok(record) => {
                let mut row = Map::new();
                for (name, value) in header.iter().zip(record.iter()) {
                    if name.starts_with('_') || value.is_empty() {
                        continue;
                    }
                    row.insert(name.clone(), typed(&kinds[name], value));
                }
                rows.push((line, Value::Object(row)));
            }
            Err(err) => problems.push((line, format!("unreadable: {err}"))),
        }
    }
    let preview = form.step != "import";
    let values: Vec<Value> = rows.iter().map(|(_, row)| row.clone()).collect();
    let outcomes = match app.data.import_rows(&table, &values, preview).await {
        Ok(outcomes) => outcomes,
        Err(err) => return table_error(&app, &headers, &table, err, Map::new()).await,
    };
    let mut good = 0;
    for ((line, _), outcome) in rows.iter().zip(outcomes) {
        match outcome {
            Ok(_) => good += 1,
            Err(problem) => problems.push((*line, problem)),
        }
    }
    problems.sort_by_key(|(line, _)| *line);
    let report = ImportReport {
        preview,
        csv: form.csv,
        good,
        problems,
    };
    let query = TableQuery {
        notice: (!preview).then(|| {
            app.notices.seal(&format!(
                "Imported {}.",
                crate::http::text::count(good, "row", "rows")
            ))
        }),
        ..TableQuery::default()
    };
    match table_page(
        &app,
        &headers,
        &table,
        query,
        None,
        Map::new(),
        Some(report),
    )
    .await
    {
        Ok(page) => page.into_response(),
        Err(err) => error_page(&err),
    }
}
