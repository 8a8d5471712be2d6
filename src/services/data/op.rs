//! The operations of the data API as types. [`DataRequest`] is the wire form — the JSON line of
//! `/goop/data/1.0.0`, the body of `/api/data/<op>` — and is decoded here, once, into a
//! [`DataOp`] whose variants hold what each operation needs and nothing else.
//!
//! A request whose op is known but whose own fields are wrong decodes to an [`Undecoded`]: the
//! service reports its problem only after the problems of the caller's rights and of the table
//! the request names, which is the order the API has always reported them in (a peer asking an
//! owner-only op is told so before any missing field; a missing table before a missing `data`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use super::schema::{self, Access, ColumnSchema, TableSchema};
use super::{DataError, limits};
use crate::store::data::TableLimits;

/// One request (the JSON line of `/goop/data/1.0.0`; the body of `/api/data/<op>` without `op`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DataRequest {
    #[serde(default)]
    pub op: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Json>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    #[serde(default, rename = "where", skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<Json>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Json>,
    /// `create-table`: the schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Json>,
    /// `rename-table`: the new name; `drop-column`: the column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `add-column`: the column (an object or a plain definition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<Json>,
    /// `set-policy`: `{read, insert, update, delete}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<Json>,
    /// `sql`: one read-only statement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
    /// `set-limits`: the table's own quotas (`max_rows_per_caller`, `max_bytes_per_caller`,
    /// `max_rows`, `max_bytes`; null or absent: the peer's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Json>,
}

/// Which operation, without its arguments: what decides the checks that come before them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Tables,
    Describe,
    Query,
    QueryOne,
    Count,
    Insert,
    Update,
    Delete,
    Role,
    LuaCall,
    LuaList,
    CreateTable,
    DropTable,
    RenameTable,
    AddColumn,
    DropColumn,
    SetPolicy,
    SetLimits,
    Sql,
}

/// Every op by its wire name.
const OPS: [(OpKind, &str); 19] = [
    (OpKind::Tables, "tables"),
    (OpKind::Describe, "describe"),
    (OpKind::Query, "query"),
    (OpKind::QueryOne, "query-one"),
    (OpKind::Count, "count"),
    (OpKind::Insert, "insert"),
    (OpKind::Update, "update"),
    (OpKind::Delete, "delete"),
    (OpKind::Role, "role"),
    (OpKind::LuaCall, "lua-call"),
    (OpKind::LuaList, "lua-list"),
    (OpKind::CreateTable, "create-table"),
    (OpKind::DropTable, "drop-table"),
    (OpKind::RenameTable, "rename-table"),
    (OpKind::AddColumn, "add-column"),
    (OpKind::DropColumn, "drop-column"),
    (OpKind::SetPolicy, "set-policy"),
    (OpKind::SetLimits, "set-limits"),
    (OpKind::Sql, "sql"),
];

/// What an operation does to a table's rows, for its policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Read,
    Insert,
    Update,
    Delete,
}

impl OpKind {
    fn parse(name: &str) -> Option<OpKind> {
        OPS.iter()
            .find(|(_, wire)| *wire == name)
            .map(|(kind, _)| *kind)
    }

    /// The op's wire name.
    pub fn name(self) -> &'static str {
        OPS.iter()
            .find(|(kind, _)| *kind == self)
            .map_or("", |(_, name)| name)
    }

    /// Schema changes and SQL: never for another peer.
    pub fn owner_only(self) -> bool {
        matches!(
            self,
            OpKind::CreateTable
                | OpKind::DropTable
                | OpKind::RenameTable
                | OpKind::AddColumn
                | OpKind::DropColumn
                | OpKind::SetPolicy
                | OpKind::SetLimits
                | OpKind::Sql
        )
    }

    /// Whether the op needs the peer's Lua functions.
    pub fn is_lua(self) -> bool {
        matches!(self, OpKind::LuaCall | OpKind::LuaList)
    }

    /// Whether the op names a table (its `table` is required).
    pub(super) fn names_table(self) -> bool {
        !matches!(
            self,
            OpKind::Tables
                | OpKind::Role
                | OpKind::LuaCall
                | OpKind::LuaList
                | OpKind::CreateTable
                | OpKind::Sql
        )
    }

    /// The policy the op is held to, checked before its own fields.
    pub fn action(self) -> Option<Action> {
        match self {
            OpKind::Query | OpKind::QueryOne | OpKind::Count => Some(Action::Read),
            OpKind::Insert => Some(Action::Insert),
            OpKind::Update => Some(Action::Update),
            OpKind::Delete => Some(Action::Delete),
            _ => None,
        }
    }
}

/// A filter on rows: `where` (the API's small filter language, `?` placeholders) and the values
/// bound to its placeholders, checked against the table's columns by the service.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    pub condition: Option<String>,
    /// Strings, numbers, booleans or nulls.
    pub args: Vec<Json>,
}

impl Filter {
    /// Rows where `condition` holds with `args` bound.
    pub fn new(condition: impl Into<String>, args: Vec<Json>) -> Filter {
        Filter {
            condition: Some(condition.into()),
            args,
        }
    }
}

/// `query` and `query-one`: which rows of a table, which columns, in what order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Query {
    pub table: String,
    /// Columns to return; empty: all of them.
    pub columns: Vec<String>,
    pub filter: Filter,
    /// `column [asc|desc], …`.
    pub order: Option<String>,
    /// Rows at most (1 to [`crate::store::data::MAX_ROWS`]); `None`: 100.
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

impl Query {
    /// Every row of `table` (up to the default limit), all columns.
    pub fn table(table: impl Into<String>) -> Query {
        Query {
            table: table.into(),
            ..Query::default()
        }
    }
}

/// One operation of the data API, with its arguments.
#[derive(Debug, Clone, PartialEq)]
pub enum DataOp {
    Tables,
    Describe {
        table: String,
    },
    Query(Query),
    QueryOne(Query),
    Count {
        table: String,
        filter: Filter,
    },
    Insert {
        table: String,
        /// The row: column values by name.
        data: Json,
    },
    Update {
        table: String,
        id: i64,
        /// The columns to change.
        data: Json,
    },
    Delete {
        table: String,
        id: i64,
    },
    /// Who the caller is here, and what it may do with `table` when one is named.
    Role {
        table: Option<String>,
    },
    LuaCall {
        function: String,
        params: Json,
    },
    LuaList,
    CreateTable {
        schema: TableSchema,
    },
    DropTable {
        table: String,
    },
    RenameTable {
        table: String,
        new_name: String,
    },
    AddColumn {
        table: String,
        column: ColumnSchema,
    },
    DropColumn {
        table: String,
        column: String,
    },
    SetPolicy {
        table: String,
        access: Access,
    },
    SetLimits {
        table: String,
        limits: TableLimits,
    },
    Sql {
        sql: String,
    },
}

/// A request that did not decode: its problem, and what is checked before it.
#[derive(Debug)]
pub(super) struct Undecoded {
    /// The op, when it was a known one.
    pub(super) kind: Option<OpKind>,
    /// The table it names, when its problem is with a later field.
    pub(super) table: Option<String>,
    pub(super) problem: DataError,
}

impl DataOp {
    pub fn kind(&self) -> OpKind {
        match self {
            DataOp::Tables => OpKind::Tables,
            DataOp::Describe { .. } => OpKind::Describe,
            DataOp::Query(_) => OpKind::Query,
            DataOp::QueryOne(_) => OpKind::QueryOne,
            DataOp::Count { .. } => OpKind::Count,
            DataOp::Insert { .. } => OpKind::Insert,
            DataOp::Update { .. } => OpKind::Update,
            DataOp::Delete { .. } => OpKind::Delete,
            DataOp::Role { .. } => OpKind::Role,
            DataOp::LuaCall { .. } => OpKind::LuaCall,
            DataOp::LuaList => OpKind::LuaList,
            DataOp::CreateTable { .. } => OpKind::CreateTable,
            DataOp::DropTable { .. } => OpKind::DropTable,
            DataOp::RenameTable { .. } => OpKind::RenameTable,
            DataOp::AddColumn { .. } => OpKind::AddColumn,
            DataOp::DropColumn { .. } => OpKind::DropColumn,
            DataOp::SetPolicy { .. } => OpKind::SetPolicy,
            DataOp::SetLimits { .. } => OpKind::SetLimits,
            DataOp::Sql { .. } => OpKind::Sql,
        }
    }

    /// Decodes a wire request: the only place the API's op names and optional fields are read.
    pub(super) fn decode(request: DataRequest) -> Result<DataOp, Undecoded> {
        let DataRequest {
            op,
            table,
            data,
            id,
            filter,
            args,
            columns,
            limit,
            offset,
            order,
            function,
            params,
            schema,
            name,
            column,
            access,
            sql,
            limits,
        } = request;
        let Some(kind) = OpKind::parse(&op) else {
            let problem = if op.is_empty() {
                "`op` is missing".to_owned()
            } else {
                format!(
                    "unknown op `{op}`; ops: tables, describe, query, query-one, count, insert, \
                     update, delete, role, lua-call, lua-list; for the owner: create-table, \
                     drop-table, rename-table, add-column, drop-column, set-policy, set-limits, \
                     sql"
                )
            };
            return Err(Undecoded {
                kind: None,
                table: None,
                problem: DataError::BadRequest(problem),
            });
        };
        let named = table.clone();
        let problem = |problem: DataError| Undecoded {
            kind: Some(kind),
            table: named.clone(),
            problem,
        };
        let bad = |message: String| problem(DataError::BadRequest(message));
        let missing = |message: &str| bad(message.to_owned());
        // Fields are taken in the order their problems are reported: the table first.
        let need_table = |table: Option<String>| table.ok_or_else(|| missing("`table` is missing"));
        let filter = Filter {
            condition: filter,
            args,
        };
        Ok(match kind {
            OpKind::Tables => DataOp::Tables,
            OpKind::Describe => DataOp::Describe {
                table: need_table(table)?,
            },
            OpKind::Query | OpKind::QueryOne => {
                let query = Query {
                    table: need_table(table)?,
                    columns,
                    filter,
                    order,
                    limit,
                    offset,
                };
                if kind == OpKind::Query {
                    DataOp::Query(query)
                } else {
                    DataOp::QueryOne(query)
                }
            }
            OpKind::Count => DataOp::Count {
                table: need_table(table)?,
                filter,
            },
            OpKind::Insert => DataOp::Insert {
                table: need_table(table)?,
                data: data.ok_or_else(|| missing("`data` is missing"))?,
            },
            OpKind::Update => DataOp::Update {
                table: need_table(table)?,
                id: id.ok_or_else(|| missing("`id` (the row's _id) is missing"))?,
                data: data.ok_or_else(|| missing("`data` is missing"))?,
            },
            OpKind::Delete => DataOp::Delete {
                table: need_table(table)?,
                id: id.ok_or_else(|| missing("`id` (the row's _id) is missing"))?,
            },
            OpKind::Role => DataOp::Role { table },
            OpKind::LuaCall => DataOp::LuaCall {
                function: function.ok_or_else(|| missing("`function` is missing"))?,
                params: params.unwrap_or(Json::Object(Map::new())),
            },
            OpKind::LuaList => DataOp::LuaList,
            OpKind::CreateTable => {
                let input = schema.ok_or_else(|| missing("`schema` is missing"))?;
                DataOp::CreateTable {
                    schema: schema::parse_schema(&input).map_err(bad)?,
                }
            }
            OpKind::DropTable => DataOp::DropTable {
                table: need_table(table)?,
            },
            OpKind::RenameTable => DataOp::RenameTable {
                table: need_table(table)?,
                new_name: name.ok_or_else(|| missing("`name` (the new name) is missing"))?,
            },
            OpKind::AddColumn => {
                let table = need_table(table)?;
                let input = column.ok_or_else(|| missing("`column` is missing"))?;
                DataOp::AddColumn {
                    table,
                    column: schema::parse_column(&input).map_err(bad)?,
                }
            }
            OpKind::DropColumn => DataOp::DropColumn {
                table: need_table(table)?,
                column: name.ok_or_else(|| missing("`name` (the column) is missing"))?,
            },
            OpKind::SetPolicy => {
                let table = need_table(table)?;
                let input = access.ok_or_else(|| missing("`access` is missing"))?;
                DataOp::SetPolicy {
                    table,
                    access: serde_json::from_value::<Access>(input)
                        .map_err(|e| e.to_string())
                        .and_then(Access::checked)
                        .map_err(|e| bad(format!("access: {e}")))?,
                }
            }
            OpKind::SetLimits => {
                let table = need_table(table)?;
                let input = limits.ok_or_else(|| missing("`limits` is missing"))?;
                DataOp::SetLimits {
                    table,
                    limits: limits::parse_own_limits(&input).map_err(problem)?,
                }
            }
            OpKind::Sql => DataOp::Sql {
                sql: sql.ok_or_else(|| missing("`sql` is missing"))?,
            },
        })
    }
}
