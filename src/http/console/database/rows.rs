//! The row forms of the database editor: a new row (on the table's page), one row's page to edit
//! it, and deleting it.

use std::collections::HashMap;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::table::table_error;
use super::{ConsoleApp, Field, Frame, OWNER, cell_of, error_page, fields_of, status_of, typed};
use crate::http::csrf::CsrfForm;
use crate::services::data::{DataError, Filter, Query, Row, SYSTEM_COLUMNS, TableDescription};

/// Form fields `col:<name>` as typed row values; empty fields are left out (or null when
/// `empty_as_null`, so an edit can clear a column).
fn row_from_form(
    description: &TableDescription,
    form: &HashMap<String, String>,
    empty_as_null: bool,
) -> Row {
    let mut row = Row::new();
    for column in &description.columns {
        let name = &column.name;
        let Some(text) = form.get(&format!("col:{name}")) else {
            continue;
        };
        if text.is_empty() {
            if empty_as_null {
                row.insert(name.clone(), Value::Null);
            }
            continue;
        }
        row.insert(name.clone(), typed(column.kind, text));
    }
    row
}

pub(super) async fn insert_row(
    State(app): State<ConsoleApp>,
    headers: HeaderMap,
    Path(table): Path<String>,
    CsrfForm(form): CsrfForm<HashMap<String, String>>,
) -> Response {
    let description = match app.data.describe(OWNER, &table).await {
        Ok(description) => description,
        Err(err) => return error_page(&err),
    };
    let row = row_from_form(&description, &form, false);
    let data = Value::Object(row.clone());
    match app.data.insert(OWNER, &table, &data).await {
        Ok(id) => app
            .notices
            .redirect(&format!("/database/t/{table}"), &format!("Row {id} added.")),
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
    edited: Option<(Row, String)>,
) -> Result<RowPage, DataError> {
    let description = app.data.describe(OWNER, table).await?;
    let query = Query {
        filter: Filter::new("_id = ?", vec![id.into()]),
        ..Query::table(table)
    };
    let Some(stored) = app.data.query_one(OWNER, &query).await? else {
        return Err(DataError::NotFound(format!(
            "`{table}` has no row with _id {id}"
        )));
    };
    let system = SYSTEM_COLUMNS
        .iter()
        .map(|name| ((*name).to_owned(), cell_of(&stored, name)))
        .collect();
    let (values, error) = match edited {
        Some((values, error)) => (values, Some(error)),
        None => (stored, None),
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

pub(super) async fn show_row(
    State(app): State<ConsoleApp>,
    headers: HeaderMap,
    Path((table, id)): Path<(String, i64)>,
) -> Response {
    match row_page(&app, &headers, &table, id, None).await {
        Ok(page) => page.into_response(),
        Err(err) => error_page(&err),
    }
}

pub(super) async fn save_row(
    State(app): State<ConsoleApp>,
    headers: HeaderMap,
    Path((table, id)): Path<(String, i64)>,
    CsrfForm(form): CsrfForm<HashMap<String, String>>,
) -> Response {
    let description = match app.data.describe(OWNER, &table).await {
        Ok(description) => description,
        Err(err) => return error_page(&err),
    };
    let row = row_from_form(&description, &form, true);
    let data = Value::Object(row.clone());
    match app.data.update(OWNER, &table, id, &data).await {
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

pub(super) async fn delete_row(
    State(app): State<ConsoleApp>,
    headers: HeaderMap,
    Path((table, id)): Path<(String, i64)>,
    _: CsrfForm,
) -> Response {
    match app.data.delete(OWNER, &table, id).await {
        Ok(_) => app.notices.redirect(
            &format!("/database/t/{table}"),
            &format!("Row {id} deleted."),
        ),
        Err(err) => table_error(&app, &headers, &table, err, Row::new()).await,
    }
}
