//! `/database/t/<table>`: one table's page — its rows, paged and sortable, the form for a new
//! row, the import box — and the forms that change the table: rename, drop, add and drop
//! columns, policies, its own quotas on other peers' rows.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{
    ConsoleApp, Field, Frame, Grid, OWNER, cell_of, error_page, fields_of, grid, status_of,
    tables_error,
};
use crate::http::csrf::CsrfForm;
use crate::http::error::HttpError;
use crate::services::data::limits::own_limits_from_form;
use crate::services::data::schema::{self, Access};
use crate::services::data::{DataError, Filter, OwnLimits, Row};

/// Rows per page.
const PAGE_ROWS: i64 = 50;

#[derive(Template, WebTemplate)]
#[template(path = "console_table.html")]
pub(super) struct TablePage {
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

fn limit_fields(app: &ConsoleApp, own: &OwnLimits) -> Vec<LimitField> {
    let defaults = app.data.limits();
    [
        (
            "rows_per_caller",
            "Rows one peer may keep",
            own.rows_per_caller,
            defaults.max_rows_per_caller,
        ),
        (
            "bytes_per_caller",
            "Bytes one peer may keep",
            own.bytes_per_caller,
            defaults.max_bytes_per_caller,
        ),
        (
            "rows",
            "Rows from all peers together",
            own.rows,
            defaults.max_rows_per_table,
        ),
        (
            "bytes",
            "Bytes from all peers together",
            own.bytes,
            defaults.max_bytes_per_table,
        ),
    ]
    .into_iter()
    .map(|(key, label, own, default)| LimitField {
        key,
        label,
        value: own.map(|n| n.to_string()).unwrap_or_default(),
        default,
    })
    .collect()
}

pub(super) struct ImportReport {
    pub(super) preview: bool,
    pub(super) csv: String,
    pub(super) good: usize,
    pub(super) problems: Vec<(usize, String)>,
}

#[derive(Deserialize, Default)]
pub(super) struct TableQuery {
    pub(super) page: Option<i64>,
    pub(super) sort: Option<String>,
    pub(super) dir: Option<String>,
    pub(super) notice: Option<String>,
}

pub(super) async fn table_page(
    app: &ConsoleApp,
    headers: &HeaderMap,
    table: &str,
    query: TableQuery,
    error: Option<String>,
    form_values: Row,
    import: Option<ImportReport>,
) -> Result<TablePage, DataError> {
    let description = app.data.describe(OWNER, table).await?;
    let total = app.data.count(OWNER, table, &Filter::default()).await?;
    let pages = ((total + PAGE_ROWS - 1) / PAGE_ROWS).max(1);
    let page = query.page.unwrap_or(1).clamp(1, pages);
    let sort = query.sort.unwrap_or_else(|| "_id".into());
    let dir = if query.dir.as_deref() == Some("desc") {
        "desc"
    } else {
        "asc"
    };
    let mut columns: Vec<String> = vec!["_id".into(), "_owner".into()];
    columns.extend(description.columns.iter().map(|c| c.name.clone()));
    columns.push("_updated_at".into());
    let rows = app
        .data
        .query(
            OWNER,
            &crate::services::data::Query {
                columns: columns.clone(),
                order: Some(format!("{sort} {dir}")),
                limit: Some(PAGE_ROWS),
                offset: Some((page - 1) * PAGE_ROWS),
                ..crate::services::data::Query::table(table)
            },
        )
        .await?;
    let access = description.access.clone();
    let policies = [
        ("read", access.read),
        ("insert", access.insert),
        ("update", access.update),
        ("delete", access.delete),
    ]
    .iter()
    .map(|(op, policy)| ((*op).to_owned(), policy.as_str().to_owned()))
    .collect();
    Ok(TablePage {
        frame: app.frame(headers),
        table: table.to_owned(),
        policies,
        limits: limit_fields(app, &description.own_limits),
        fields: fields_of(&description, &form_values),
        ids: rows.iter().map(|r| cell_of(r, "_id")).collect(),
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

pub(super) async fn show_table(
    State(app): State<ConsoleApp>,
    headers: HeaderMap,
    Path(table): Path<String>,
    Query(query): Query<TableQuery>,
) -> Response {
    match table_page(&app, &headers, &table, query, None, Row::new(), None).await {
        Ok(page) => page.into_response(),
        Err(err) => tables_error(&app, &headers, err).await,
    }
}

/// A table page again with an error, under the error's status.
pub(super) async fn table_error(
    app: &ConsoleApp,
    headers: &HeaderMap,
    table: &str,
    error: DataError,
    form_values: Row,
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

#[derive(Deserialize)]
pub(super) struct ChangeForm {
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

pub(super) async fn change_table(
    State(app): State<ConsoleApp>,
    headers: HeaderMap,
    Path(table): Path<String>,
    CsrfForm(form): CsrfForm<ChangeForm>,
) -> Response {
    let data = &app.data;
    let changed = match form.action.as_str() {
        "rename" => data.rename_table(&table, form.name.trim()).await.map(drop),
        "drop" => {
            if form.confirm != table {
                return table_error(
                    &app,
                    &headers,
                    &table,
                    DataError::BadRequest(format!(
                        "to drop `{table}`, type its name in the confirmation field"
                    )),
                    Row::new(),
                )
                .await;
            }
            data.drop_table(&table).await.map(drop)
        }
        "add-column" => match schema::parse_definition(form.column.trim()) {
            Ok(column) => data.add_column(&table, column).await.map(drop),
            Err(problem) => Err(DataError::BadRequest(problem)),
        },
        "drop-column" => data.drop_column(&table, &form.name).await.map(drop),
        "policy" => {
            let names = [&form.read, &form.insert, &form.update, &form.delete];
            match Access::from_names(names.map(String::as_str)) {
                Ok(access) => data.set_policy(&table, access).await.map(drop),
                Err(problem) => Err(DataError::BadRequest(format!("access: {problem}"))),
            }
        }
        "limits" => {
            let quotas = [
                &form.rows_per_caller,
                &form.bytes_per_caller,
                &form.rows,
                &form.bytes,
            ];
            match own_limits_from_form(quotas.map(String::as_str)) {
                Ok(limits) => data.set_limits(&table, limits).await.map(drop),
                Err(err) => Err(err),
            }
        }
        other => {
            return HttpError::page(StatusCode::BAD_REQUEST, format!("unknown action `{other}`"))
                .into_response();
        }
    };
    match changed {
        Ok(()) => match form.action.as_str() {
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
        Err(err) => table_error(&app, &headers, &table, err, Row::new()).await,
    }
}
