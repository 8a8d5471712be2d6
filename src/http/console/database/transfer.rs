//! A table's rows out and in: CSV and JSON downloads, and a CSV import that is previewed first
//! and then reports what happened to each line.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;

use super::table::{ImportReport, TableQuery, table_error, table_page};
use super::{ConsoleApp, MAX_IMPORT_BYTES, OWNER, cell_of, error_page, typed};
use crate::http::csrf::CsrfForm;
use crate::http::error::HttpError;
use crate::services::data::{DataError, Query, Row, SYSTEM_COLUMNS};

/// Rows in one CSV import at most.
const MAX_IMPORT_ROWS: usize = 10_000;
/// Rows an export writes at most.
const MAX_EXPORT_ROWS: i64 = 100_000;
/// Rows an export reads at once.
const EXPORT_PAGE: i64 = 1000;

/// Every row of a table (as the owner), up to [`MAX_EXPORT_ROWS`], with its columns.
async fn all_rows(app: &ConsoleApp, table: &str) -> Result<(Vec<String>, Vec<Row>), DataError> {
    let description = app.data.describe(OWNER, table).await?;
    let mut columns: Vec<String> = SYSTEM_COLUMNS.into_iter().map(str::to_owned).collect();
    columns.extend(description.columns.iter().map(|c| c.name.clone()));
    let mut rows = Vec::new();
    let mut offset = 0;
    while offset < MAX_EXPORT_ROWS {
        let query = Query {
            columns: columns.clone(),
            order: Some("_id".into()),
            limit: Some(EXPORT_PAGE),
            offset: Some(offset),
            ..Query::table(table)
        };
        let page = app.data.query(OWNER, &query).await?;
        let full = page.len() as i64 == EXPORT_PAGE;
        rows.extend(page);
        if !full {
            break;
        }
        offset += EXPORT_PAGE;
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

pub(super) async fn export_csv(
    State(app): State<ConsoleApp>,
    Path(table): Path<String>,
) -> Response {
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
        result = writer.write_record(columns.iter().map(|c| cell_of(row, c)));
    }
    match result
        .map_err(|e| e.to_string())
        .and_then(|()| writer.into_inner().map_err(|e| e.to_string()))
    {
        Ok(body) => download(body, "text/csv; charset=utf-8", format!("{table}.csv")),
        Err(err) => HttpError::page(StatusCode::INTERNAL_SERVER_ERROR, err).into_response(),
    }
}

pub(super) async fn export_json(
    State(app): State<ConsoleApp>,
    Path(table): Path<String>,
) -> Response {
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
pub(super) struct ImportForm {
    #[serde(default)]
    csv: String,
    /// `preview` or `import`.
    #[serde(default)]
    step: String,
}

pub(super) async fn import_csv(
    State(app): State<ConsoleApp>,
    headers: HeaderMap,
    Path(table): Path<String>,
    CsrfForm(form): CsrfForm<ImportForm>,
) -> Response {
    let fail = |message: String| DataError::BadRequest(message);
    if form.csv.len() > MAX_IMPORT_BYTES {
        let err = fail(format!("the CSV is larger than {MAX_IMPORT_BYTES} bytes"));
        return table_error(&app, &headers, &table, err, Row::new()).await;
    }
    let description = match app.data.describe(OWNER, &table).await {
        Ok(description) => description,
        Err(err) => return error_page(&err),
    };
    let kinds: HashMap<&str, _> = description
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.kind))
        .collect();
    let mut reader = csv::ReaderBuilder::new()
        .flexible(false)
        .from_reader(form.csv.as_bytes());
    let header: Vec<String> = match reader.headers() {
        Ok(names) => names.iter().map(|n| n.trim().to_owned()).collect(),
        Err(err) => {
            let err = fail(format!("the CSV has no header row: {err}"));
            return table_error(&app, &headers, &table, err, Row::new()).await;
        }
    };
    // System columns of an export are skipped; other unknown columns are named.
    let unknown: Vec<&str> = header
        .iter()
        .map(String::as_str)
        .filter(|name| !name.starts_with('_') && !kinds.contains_key(name))
        .collect();
    if !unknown.is_empty() {
        let err = fail(format!(
            "the CSV names unknown columns: {}",
            unknown.join(", ")
        ));
        return table_error(&app, &headers, &table, err, Row::new()).await;
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
                let mut row = Row::new();
                for (name, value) in header.iter().zip(record.iter()) {
                    if name.starts_with('_') || value.is_empty() {
                        continue;
                    }
                    row.insert(name.clone(), typed(kinds[name.as_str()], value));
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
        Err(err) => return table_error(&app, &headers, &table, err, Row::new()).await,
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
        Row::new(),
        Some(report),
    )
    .await
    {
        Ok(page) => page.into_response(),
        Err(err) => error_page(&err),
    }
}
