//! Storage: the only place with SQL. Each database has its module and its migrations under
//! `migrations/`.

pub mod hub;
