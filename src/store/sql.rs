//! One way to run SQL on either backend: statements, parameters and rows that the record files
//! (`events`, `memories`, …) use whether the connection is SQLite or PostgreSQL.
//!
//! The interface follows rusqlite's (`prepare_cached`, `query_row`, `query_map`, `execute`,
//! `params!`, `.optional()`), so the SQLite path stays a thin layer over it: parameters are
//! bound borrowed, rows are read in place. On PostgreSQL:
//! - `?N` placeholders become `$N` (`pg_sql`); statements are prepared once per connection and
//!   kept (`PgConn`);
//! - a parameter is converted to the type PostgreSQL inferred for it (an integer bound where
//!   text is expected is sent as its decimal text, and so on), and a column is read as the Rust
//!   type asked for when the value fits (a `bigint` as `u32` when in range, a `boolean` as 0/1);
//! - rows are fetched whole before they are mapped, so a row mapper may run another statement
//!   on the same connection, as it may on SQLite.
//!
//! SQL written for both uses the common subset: `ON CONFLICT … DO NOTHING/UPDATE`, `RETURNING`,
//! `CAST(SUM(x) AS BIGINT)`. The PostgreSQL schema adds the few SQLite functions the queries use
//! (`instr`, `json_each`, `json_extract`, `json_array_length`) and a case-insensitive `nocase`
//! collation, so the same text runs on both (`schema.postgres.sql`).

use crate::error::Error as CrateError;
use bytes::BytesMut;
use rusqlite::types::{ToSqlOutput, ValueRef};
use std::cell::RefCell;
use std::collections::HashMap;
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql as PgToSql, Type};

/// An error of either backend, or a value that does not fit the type asked for.
#[derive(Debug)]
pub enum Error {
    Sqlite(rusqlite::Error),
    Pg(tokio_postgres::Error),
    /// PostgreSQL refused to prepare a statement (the SQL is kept for the message).
    Prepare(tokio_postgres::Error, String),
    /// `query_row` found no row.
    NoRows,
    /// A column's value cannot be read as the type asked for.
    Conversion(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Sqlite(e) => write!(f, "{e}"),
            Error::Pg(e) => write!(f, "{}", Error::pg_text(e)),
            Error::Prepare(e, sql) => {
                let sql: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
                write!(f, "{} (in: {sql})", Error::pg_text(e))
            }
            Error::NoRows => write!(f, "query returned no rows"),
            Error::Conversion(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for Error {}

impl Error {
    fn pg_text(e: &tokio_postgres::Error) -> String {
        match e.as_db_error() {
            Some(db) => format!(
                "{}{}",
                db.message(),
                db.detail().map(|d| format!(" ({d})")).unwrap_or_default()
            ),
            None => e.to_string(),
        }
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        match e {
            rusqlite::Error::QueryReturnedNoRows => Error::NoRows,
            e => Error::Sqlite(e),
        }
    }
}

impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Self {
        Error::Pg(e)
    }
}

impl From<Error> for CrateError {
    fn from(e: Error) -> Self {
        match e {
            // Nothing of the write was kept: trying it again is the remedy (503, retryable).
            e if e.is_conflict() => CrateError::Unavailable(format!(
                "the database ended this write to resolve a conflict with a concurrent one; \
                 nothing of it was kept, retry it ({e})"
            )),
            Error::Sqlite(e) => CrateError::failed("sqlite", e),
            e => CrateError::failed("database", e),
        }
    }
}

impl Error {
    /// PostgreSQL ended the statement to resolve a conflict between concurrent transactions
    /// (a deadlock, or a serialization failure): the same write succeeds when tried again.
    pub fn is_conflict(&self) -> bool {
        match self {
            Error::Pg(e) | Error::Prepare(e, _) => [
                Some(&tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED),
                Some(&tokio_postgres::error::SqlState::T_R_SERIALIZATION_FAILURE),
            ]
            .contains(&e.code()),
            _ => false,
        }
    }

    /// A unique or primary-key constraint refused the write.
    pub fn is_unique_violation(&self) -> bool {
        match self {
            Error::Sqlite(rusqlite::Error::SqliteFailure(f, _)) => {
                f.code == rusqlite::ErrorCode::ConstraintViolation
                    && (f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                        || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
            }
            Error::Pg(e) | Error::Prepare(e, _) => {
                e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
            }
            _ => false,
        }
    }
}

/// `.optional()` on a single-row result: no row is `None`.
pub trait OptionalExtension<T> {
    fn optional(self) -> Result<Option<T>>;
}

impl<T> OptionalExtension<T> for Result<T> {
    fn optional(self) -> Result<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(Error::NoRows) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// A parameter, borrowed from the caller.
#[derive(Clone, Copy, Debug)]
pub enum Arg<'a> {
    Null,
    Int(i64),
    Real(f64),
    Text(&'a str),
    Blob(&'a [u8]),
}

/// A value that can be bound as a parameter.
pub trait ToArg {
    fn to_arg(&self) -> Arg<'_>;
}

impl<T: ToArg + ?Sized> ToArg for &T {
    fn to_arg(&self) -> Arg<'_> {
        (**self).to_arg()
    }
}

impl<T: ToArg> ToArg for Option<T> {
    fn to_arg(&self) -> Arg<'_> {
        match self {
            Some(v) => v.to_arg(),
            None => Arg::Null,
        }
    }
}

impl ToArg for str {
    fn to_arg(&self) -> Arg<'_> {
        Arg::Text(self)
    }
}

impl ToArg for String {
    fn to_arg(&self) -> Arg<'_> {
        Arg::Text(self)
    }
}

impl ToArg for [u8] {
    fn to_arg(&self) -> Arg<'_> {
        Arg::Blob(self)
    }
}

impl ToArg for Vec<u8> {
    fn to_arg(&self) -> Arg<'_> {
        Arg::Blob(self)
    }
}

impl ToArg for f64 {
    fn to_arg(&self) -> Arg<'_> {
        Arg::Real(*self)
    }
}

impl ToArg for bool {
    fn to_arg(&self) -> Arg<'_> {
        Arg::Int(*self as i64)
    }
}

macro_rules! int_args {
    ($($t:ty),*) => {$(
        impl ToArg for $t {
            fn to_arg(&self) -> Arg<'_> {
                Arg::Int(*self as i64)
            }
        }
    )*};
}
int_args!(i64, i32, u32, u16, u8, usize);

impl ToArg for u64 {
    fn to_arg(&self) -> Arg<'_> {
        // Larger values are not stored by engram; saturate rather than wrap.
        Arg::Int((*self).min(i64::MAX as u64) as i64)
    }
}

/// An owned parameter (lists built at run time: `params_from_iter`).
#[derive(Clone, Debug)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl ToArg for Value {
    fn to_arg(&self) -> Arg<'_> {
        match self {
            Value::Null => Arg::Null,
            Value::Int(v) => Arg::Int(*v),
            Value::Real(v) => Arg::Real(*v),
            Value::Text(v) => Arg::Text(v),
            Value::Blob(v) => Arg::Blob(v),
        }
    }
}

impl rusqlite::ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match *self {
            Arg::Null => ValueRef::Null,
            Arg::Int(v) => ValueRef::Integer(v),
            Arg::Real(v) => ValueRef::Real(v),
            Arg::Text(v) => ValueRef::Text(v.as_bytes()),
            Arg::Blob(v) => ValueRef::Blob(v),
        }))
    }
}

type BoxError = Box<dyn std::error::Error + Sync + Send>;

impl PgToSql for Arg<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> std::result::Result<IsNull, BoxError> {
        let wrong = || -> BoxError {
            format!("a {self:?} parameter cannot be sent as PostgreSQL type {ty}").into()
        };
        match *self {
            Arg::Null => Ok(IsNull::Yes),
            Arg::Int(v) => match *ty {
                Type::INT8 => v.to_sql(ty, out),
                Type::INT4 => i32::try_from(v)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(v)?.to_sql(ty, out),
                Type::FLOAT8 => (v as f64).to_sql(ty, out),
                Type::FLOAT4 => (v as f32).to_sql(ty, out),
                Type::BOOL => (v != 0).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
                    v.to_string().as_str().to_sql(&Type::TEXT, out)
                }
                _ => Err(wrong()),
            },
            Arg::Real(v) => match *ty {
                Type::FLOAT8 => v.to_sql(ty, out),
                Type::FLOAT4 => (v as f32).to_sql(ty, out),
                Type::INT8 if v.fract() == 0.0 => (v as i64).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR => v.to_string().as_str().to_sql(&Type::TEXT, out),
                _ => Err(wrong()),
            },
            Arg::Text(v) => match *ty {
                Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
                    v.to_sql(&Type::TEXT, out)
                }
                Type::JSON => v.to_sql(&Type::TEXT, out),
                Type::JSONB => {
                    out.extend_from_slice(&[1]);
                    out.extend_from_slice(v.as_bytes());
                    Ok(IsNull::No)
                }
                Type::INT8 => v.parse::<i64>()?.to_sql(ty, out),
                Type::FLOAT8 => v.parse::<f64>()?.to_sql(ty, out),
                _ => Err(wrong()),
            },
            Arg::Blob(v) => match *ty {
                Type::BYTEA => v.to_sql(ty, out),
                _ => Err(wrong()),
            },
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// A statement's parameters: arrays of values, `params![…]`, or `params_from_iter(…)`.
pub trait Params {
    fn args(&self) -> Vec<Arg<'_>>;
}

impl Params for [&dyn ToArg; 0] {
    fn args(&self) -> Vec<Arg<'_>> {
        Vec::new()
    }
}

impl Params for &[&dyn ToArg] {
    fn args(&self) -> Vec<Arg<'_>> {
        self.iter().map(|a| a.to_arg()).collect()
    }
}

macro_rules! array_params {
    ($($n:literal),*) => {$(
        impl<T: ToArg> Params for [T; $n] {
            fn args(&self) -> Vec<Arg<'_>> {
                self.iter().map(|a| a.to_arg()).collect()
            }
        }
        impl<T: ToArg> Params for &[T; $n] {
            fn args(&self) -> Vec<Arg<'_>> {
                self.iter().map(|a| a.to_arg()).collect()
            }
        }
    )*};
}
array_params!(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16);

/// Parameters from an iterator of values (a list built at run time).
pub struct ParamsFromIter<T>(Vec<T>);

pub fn params_from_iter<T: ToArg, I: IntoIterator<Item = T>>(iter: I) -> ParamsFromIter<T> {
    ParamsFromIter(iter.into_iter().collect())
}

impl<T: ToArg> Params for ParamsFromIter<T> {
    fn args(&self) -> Vec<Arg<'_>> {
        self.0.iter().map(|a| a.to_arg()).collect()
    }
}

/// `params![a, b, …]`: parameters of mixed types.
macro_rules! params {
    () => { [] as [&dyn $crate::store::sql::ToArg; 0] };
    ($($p:expr),+ $(,)?) => {
        &[$(&$p as &dyn $crate::store::sql::ToArg),+] as &[&dyn $crate::store::sql::ToArg]
    };
}
pub(crate) use params;

/// A column value readable as `Self` on either backend.
pub trait FromCol: Sized {
    fn from_sqlite(r: &rusqlite::Row<'_>, i: usize) -> Result<Self>;
    fn from_pg(r: &tokio_postgres::Row, i: usize) -> Result<Self>;
}

fn pg_conversion(r: &tokio_postgres::Row, i: usize, want: &str) -> Error {
    let col = &r.columns()[i];
    Error::Conversion(format!(
        "column {} ({}) cannot be read as {want}",
        col.name(),
        col.type_()
    ))
}

/// A PostgreSQL integer-like column as i64 (`None` for NULL).
fn pg_int(r: &tokio_postgres::Row, i: usize) -> Result<Option<i64>> {
    Ok(match *r.columns()[i].type_() {
        Type::INT8 => r.try_get::<_, Option<i64>>(i)?,
        Type::INT4 => r.try_get::<_, Option<i32>>(i)?.map(i64::from),
        Type::INT2 => r.try_get::<_, Option<i16>>(i)?.map(i64::from),
        Type::BOOL => r.try_get::<_, Option<bool>>(i)?.map(i64::from),
        Type::FLOAT8 => r.try_get::<_, Option<f64>>(i)?.map(|v| v as i64),
        Type::TEXT | Type::VARCHAR => match r.try_get::<_, Option<String>>(i)? {
            Some(s) => Some(
                s.parse::<i64>()
                    .map_err(|_| pg_conversion(r, i, "an integer"))?,
            ),
            None => None,
        },
        _ => return Err(pg_conversion(r, i, "an integer")),
    })
}

fn pg_real(r: &tokio_postgres::Row, i: usize) -> Result<Option<f64>> {
    Ok(match *r.columns()[i].type_() {
        Type::FLOAT8 => r.try_get::<_, Option<f64>>(i)?,
        Type::FLOAT4 => r.try_get::<_, Option<f32>>(i)?.map(f64::from),
        Type::TEXT => match r.try_get::<_, Option<String>>(i)? {
            Some(s) => Some(
                s.parse::<f64>()
                    .map_err(|_| pg_conversion(r, i, "a real"))?,
            ),
            None => None,
        },
        _ => pg_int(r, i)?.map(|v| v as f64),
    })
}

fn pg_text(r: &tokio_postgres::Row, i: usize) -> Result<Option<String>> {
    Ok(match *r.columns()[i].type_() {
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::JSON => {
            r.try_get::<_, Option<String>>(i)?
        }
        Type::INT8 | Type::INT4 | Type::INT2 | Type::BOOL => pg_int(r, i)?.map(|v| v.to_string()),
        Type::FLOAT8 | Type::FLOAT4 => pg_real(r, i)?.map(|v| v.to_string()),
        _ => return Err(pg_conversion(r, i, "text")),
    })
}

fn not_null<T>(v: Option<T>, r: &tokio_postgres::Row, i: usize, want: &str) -> Result<T> {
    v.ok_or_else(|| pg_conversion(r, i, &format!("{want} (it is NULL)")))
}

macro_rules! int_cols {
    ($($t:ty),*) => {$(
        impl FromCol for $t {
            fn from_sqlite(r: &rusqlite::Row<'_>, i: usize) -> Result<Self> {
                Ok(r.get(i)?)
            }
            fn from_pg(r: &tokio_postgres::Row, i: usize) -> Result<Self> {
                let v = not_null(pg_int(r, i)?, r, i, stringify!($t))?;
                <$t>::try_from(v).map_err(|_| pg_conversion(r, i, stringify!($t)))
            }
        }
    )*};
}
int_cols!(i64, i32, u32, u16, u8);

impl FromCol for bool {
    fn from_sqlite(r: &rusqlite::Row<'_>, i: usize) -> Result<Self> {
        Ok(r.get(i)?)
    }
    fn from_pg(r: &tokio_postgres::Row, i: usize) -> Result<Self> {
        Ok(not_null(pg_int(r, i)?, r, i, "a boolean")? != 0)
    }
}

impl FromCol for f64 {
    fn from_sqlite(r: &rusqlite::Row<'_>, i: usize) -> Result<Self> {
        Ok(r.get(i)?)
    }
    fn from_pg(r: &tokio_postgres::Row, i: usize) -> Result<Self> {
        not_null(pg_real(r, i)?, r, i, "a real")
    }
}

impl FromCol for String {
    fn from_sqlite(r: &rusqlite::Row<'_>, i: usize) -> Result<Self> {
        Ok(r.get(i)?)
    }
    fn from_pg(r: &tokio_postgres::Row, i: usize) -> Result<Self> {
        not_null(pg_text(r, i)?, r, i, "text")
    }
}

impl FromCol for Vec<u8> {
    fn from_sqlite(r: &rusqlite::Row<'_>, i: usize) -> Result<Self> {
        Ok(r.get(i)?)
    }
    fn from_pg(r: &tokio_postgres::Row, i: usize) -> Result<Self> {
        not_null(r.try_get::<_, Option<Vec<u8>>>(i)?, r, i, "bytes")
    }
}

impl FromCol for Value {
    fn from_sqlite(r: &rusqlite::Row<'_>, i: usize) -> Result<Self> {
        Ok(match r.get::<_, rusqlite::types::Value>(i)? {
            rusqlite::types::Value::Null => Value::Null,
            rusqlite::types::Value::Integer(v) => Value::Int(v),
            rusqlite::types::Value::Real(v) => Value::Real(v),
            rusqlite::types::Value::Text(v) => Value::Text(v),
            rusqlite::types::Value::Blob(v) => Value::Blob(v),
        })
    }
    fn from_pg(r: &tokio_postgres::Row, i: usize) -> Result<Self> {
        Ok(match *r.columns()[i].type_() {
            Type::BYTEA => r
                .try_get::<_, Option<Vec<u8>>>(i)?
                .map_or(Value::Null, Value::Blob),
            Type::FLOAT8 | Type::FLOAT4 => pg_real(r, i)?.map_or(Value::Null, Value::Real),
            Type::INT8 | Type::INT4 | Type::INT2 | Type::BOOL => {
                pg_int(r, i)?.map_or(Value::Null, Value::Int)
            }
            _ => pg_text(r, i)?.map_or(Value::Null, Value::Text),
        })
    }
}

impl<T: FromCol> FromCol for Option<T> {
    fn from_sqlite(r: &rusqlite::Row<'_>, i: usize) -> Result<Self> {
        match r.get_ref(i)? {
            ValueRef::Null => Ok(None),
            _ => T::from_sqlite(r, i).map(Some),
        }
    }
    fn from_pg(r: &tokio_postgres::Row, i: usize) -> Result<Self> {
        // A NULL of any type reads as None; otherwise as T.
        let null = match *r.columns()[i].type_() {
            Type::BYTEA => r.try_get::<_, Option<Vec<u8>>>(i)?.is_none(),
            Type::FLOAT8 | Type::FLOAT4 | Type::INT8 | Type::INT4 | Type::INT2 | Type::BOOL => {
                pg_real(r, i)?.is_none()
            }
            _ => pg_text(r, i)?.is_none(),
        };
        if null {
            Ok(None)
        } else {
            T::from_pg(r, i).map(Some)
        }
    }
}

/// A row of either backend.
pub enum Row<'a> {
    Sqlite(&'a rusqlite::Row<'a>),
    Pg(&'a tokio_postgres::Row),
}

impl Row<'_> {
    pub fn get<T: FromCol>(&self, i: usize) -> Result<T> {
        match self {
            Row::Sqlite(r) => T::from_sqlite(r, i),
            Row::Pg(r) => T::from_pg(r, i),
        }
    }

    /// The name of column `i` (for messages).
    pub fn column_name(&self, i: usize) -> String {
        match self {
            Row::Sqlite(r) => r.as_ref().column_name(i).unwrap_or("?").to_string(),
            Row::Pg(r) => r
                .columns()
                .get(i)
                .map_or("?".to_string(), |c| c.name().to_string()),
        }
    }
}

/// The runtime PostgreSQL connections run on: a small one of their own, so a connection can be
/// used from any thread (the writer, a blocking reader, even a tokio worker) by handing it the
/// work and waiting on a plain channel.
fn pg_runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("engram-pg")
            .enable_all()
            .build()
            .expect("the PostgreSQL client runtime starts")
    })
}

/// Runs `fut` on the PostgreSQL runtime and waits for it on this thread.
fn pg_run<T: Send + 'static>(fut: impl std::future::Future<Output = T> + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    pg_runtime().spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv()
        .expect("the PostgreSQL runtime answers every request")
}

/// A parameter owned for the trip to the PostgreSQL runtime.
#[derive(Debug)]
struct OwnedArg(Value);

impl PgToSql for OwnedArg {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> std::result::Result<IsNull, BoxError> {
        self.0.to_arg().to_sql(ty, out)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn owned(args: &[Arg<'_>]) -> Vec<OwnedArg> {
    args.iter()
        .map(|a| {
            OwnedArg(match *a {
                Arg::Null => Value::Null,
                Arg::Int(v) => Value::Int(v),
                Arg::Real(v) => Value::Real(v),
                Arg::Text(v) => Value::Text(v.to_string()),
                Arg::Blob(v) => Value::Blob(v.to_vec()),
            })
        })
        .collect()
}

/// The parameters as the client takes them.
fn refs(args: &[OwnedArg]) -> Vec<&(dyn PgToSql + Sync)> {
    args.iter().map(|a| a as &(dyn PgToSql + Sync)).collect()
}

/// A PostgreSQL connection as the store uses it: one client and its prepared statements, used by
/// one thread at a time.
pub struct PgConn {
    client: std::sync::Arc<tokio_postgres::Client>,
    statements: RefCell<HashMap<String, tokio_postgres::Statement>>,
    /// Counter bumps the writer's current group has recorded (`counters`); `None` outside one.
    pub(in crate::store) deferred: RefCell<Option<super::counters::Log>>,
}

impl PgConn {
    /// Connects to `url` (its connection task runs on the PostgreSQL runtime).
    pub fn connect(url: &str) -> Result<PgConn> {
        let url = url.to_string();
        let client = pg_run(async move {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(error = %e, "a PostgreSQL connection ended");
                }
            });
            Ok::<_, tokio_postgres::Error>(client)
        })?;
        Ok(PgConn {
            client: std::sync::Arc::new(client),
            statements: RefCell::new(HashMap::new()),
            deferred: RefCell::new(None),
        })
    }

    /// The prepared statement of `sql`. A parameter whose type PostgreSQL cannot infer from its
    /// first use (`?3 IS NULL OR tenant_id = ?3`) gets the type of the value bound now (a NULL:
    /// text), and the statement is kept prepared that way.
    fn statement(&self, original: &str, args: &[Arg<'_>]) -> Result<tokio_postgres::Statement> {
        if let Some(s) = self.statements.borrow().get(original) {
            return Ok(s.clone());
        }
        let sql = pg_sql(original);
        let types: Vec<Type> = args
            .iter()
            .map(|a| match a {
                Arg::Int(_) => Type::INT8,
                Arg::Real(_) => Type::FLOAT8,
                Arg::Blob(_) => Type::BYTEA,
                Arg::Text(_) | Arg::Null => Type::TEXT,
            })
            .collect();
        let client = self.client.clone();
        let (text, typed) = (sql.clone(), types);
        let s = pg_run(async move {
            match client.prepare(&text).await {
                Err(e)
                    if [
                        Some(&tokio_postgres::error::SqlState::INDETERMINATE_DATATYPE),
                        Some(&tokio_postgres::error::SqlState::AMBIGUOUS_PARAMETER),
                    ]
                    .contains(&e.code()) =>
                {
                    client.prepare_typed(&text, &typed).await
                }
                other => other,
            }
        })
        .map_err(|e| Error::Prepare(e, sql))?;
        let mut cache = self.statements.borrow_mut();
        if cache.len() > 512 {
            cache.clear();
        }
        cache.insert(original.to_string(), s.clone());
        Ok(s)
    }

    fn query(&self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<tokio_postgres::Row>> {
        let stmt = self.statement(sql, args)?;
        let (client, args) = (self.client.clone(), owned(args));
        Ok(pg_run(
            async move { client.query(&stmt, &refs(&args)).await },
        )?)
    }

    fn execute(&self, sql: &str, args: &[Arg<'_>]) -> Result<usize> {
        let stmt = self.statement(sql, args)?;
        let (client, args) = (self.client.clone(), owned(args));
        Ok(pg_run(async move { client.execute(&stmt, &refs(&args)).await })? as usize)
    }

    /// Runs statements without parameters (the simple query protocol).
    pub fn batch(&self, sql: &str) -> Result<()> {
        let (client, sql) = (self.client.clone(), sql.to_string());
        Ok(pg_run(async move { client.batch_execute(&sql).await })?)
    }

    /// Whether the connection is closed (a pool discards it).
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }
}

/// `?N` placeholders as `$N`, outside string literals; without SQLite's index hints
/// (`INDEXED BY name`), which PostgreSQL's planner does not take; and with SQLite's way of fixing
/// a join order (`CROSS JOIN t AS x ON …`) as the inner join it is, and of keeping a column's
/// index out of a plan (a unary `+m.tenant_id`) as the plain column.
pub fn pg_sql(sql: &str) -> String {
    static CROSS: std::sync::OnceLock<(regex::Regex, regex::Regex)> = std::sync::OnceLock::new();
    let (cross, unary) = CROSS.get_or_init(|| {
        (
            regex::Regex::new(r"CROSS JOIN (\w+) AS (\w+)\s+ON ").expect("a valid regex"),
            regex::Regex::new(r"([\s(=])\+([a-z_]+\.[a-z_]+)").expect("a valid regex"),
        )
    });
    let numbered = placeholders(sql);
    let joined = cross.replace_all(&numbered, "JOIN $1 AS $2 ON ");
    let mut out = unary.replace_all(&joined, "$1$2").into_owned();
    while let Some(at) = out.find("INDEXED BY ") {
        let name_at = at + "INDEXED BY ".len();
        let end = out[name_at..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(out.len(), |n| name_at + n);
        out.replace_range(at..end, "");
    }
    out
}

fn placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut in_string = false;
    for c in sql.chars() {
        match c {
            '\'' => {
                in_string = !in_string;
                out.push(c);
            }
            '?' if !in_string => out.push('$'),
            c => out.push(c),
        }
    }
    out
}

/// The connection a read or write closure is given. Code outside this layer can only hand it to
/// this layer's functions: its SQL methods are private to `store`, and it names no driver type in
/// its public interface (`sqlite` exists for tests and benchmarks that seed or inspect rows).
#[derive(Clone, Copy)]
pub struct Conn<'a>(pub(in crate::store) Backend<'a>);

#[derive(Clone, Copy)]
pub(in crate::store) enum Backend<'a> {
    Sqlite(&'a rusqlite::Connection),
    Pg(&'a PgConn),
}

impl<'a> Conn<'a> {
    pub(in crate::store) fn sqlite_of(c: &'a rusqlite::Connection) -> Conn<'a> {
        Conn(Backend::Sqlite(c))
    }

    pub(in crate::store) fn pg_of(c: &'a PgConn) -> Conn<'a> {
        Conn(Backend::Pg(c))
    }

    /// The underlying SQLite connection, for tests and benchmarks only: the server's own code
    /// outside `store` never calls it (a unit test checks). Panics on PostgreSQL.
    #[doc(hidden)]
    pub fn sqlite(&self) -> &'a rusqlite::Connection {
        match self.0 {
            Backend::Sqlite(c) => c,
            Backend::Pg(_) => panic!("Conn::sqlite on a PostgreSQL connection"),
        }
    }

    /// Runs one statement, for tests and benchmarks that seed or change rows directly (either
    /// backend); the server's own code outside `store` never calls it.
    #[doc(hidden)]
    pub fn test_exec(&self, sql: &str, args: &[&dyn ToArg]) -> crate::error::Result<usize> {
        Ok(self.execute(sql, args)?)
    }

    /// The first column of every row of a query, for tests and benchmarks (either backend).
    #[doc(hidden)]
    pub fn test_column<T: FromCol>(
        &self,
        sql: &str,
        args: &[&dyn ToArg],
    ) -> crate::error::Result<Vec<T>> {
        let rows = self.prepare(sql)?.query_map(args, |r| r.get(0))?;
        Ok(rows.collect::<Result<Vec<T>>>()?)
    }

    /// The rowid of the last row this SQLite connection inserted (`None` on PostgreSQL, whose
    /// inserts say it with `RETURNING`). Cheaper than `RETURNING` on SQLite's hot paths.
    pub(in crate::store) fn last_insert_rowid(&self) -> Option<i64> {
        match self.0 {
            Backend::Sqlite(c) => Some(c.last_insert_rowid()),
            Backend::Pg(_) => None,
        }
    }

    /// Whether this is a PostgreSQL connection.
    pub fn is_postgres(&self) -> bool {
        matches!(self.0, Backend::Pg(_))
    }

    pub(in crate::store) fn prepare_cached(&self, sql: &str) -> Result<Stmt<'a>> {
        Ok(match self.0 {
            Backend::Sqlite(c) => Stmt::Sqlite(StmtHolder::Cached(c.prepare_cached(sql)?)),
            Backend::Pg(c) => Stmt::Pg(c, sql.to_string()),
        })
    }

    pub(in crate::store) fn prepare(&self, sql: &str) -> Result<Stmt<'a>> {
        Ok(match self.0 {
            Backend::Sqlite(c) => Stmt::Sqlite(StmtHolder::Plain(c.prepare(sql)?)),
            Backend::Pg(c) => Stmt::Pg(c, sql.to_string()),
        })
    }

    pub(in crate::store) fn execute<P: Params>(&self, sql: &str, params: P) -> Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    pub(in crate::store) fn execute_batch(&self, sql: &str) -> Result<()> {
        match self.0 {
            Backend::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Backend::Pg(c) => c.batch(sql),
        }
    }

    pub(in crate::store) fn query_row<T, P, F>(&self, sql: &str, params: P, f: F) -> Result<T>
    where
        P: Params,
        F: FnOnce(&Row<'_>) -> Result<T>,
    {
        self.prepare_cached(sql)?.query_row(params, f)
    }
}

pub(in crate::store) enum StmtHolder<'a> {
    Cached(rusqlite::CachedStatement<'a>),
    Plain(rusqlite::Statement<'a>),
}

impl<'a> std::ops::Deref for StmtHolder<'a> {
    type Target = rusqlite::Statement<'a>;
    fn deref(&self) -> &Self::Target {
        match self {
            StmtHolder::Cached(s) => s,
            StmtHolder::Plain(s) => s,
        }
    }
}

impl std::ops::DerefMut for StmtHolder<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        match self {
            StmtHolder::Cached(s) => s,
            StmtHolder::Plain(s) => s,
        }
    }
}

/// A prepared statement of either backend.
pub(in crate::store) enum Stmt<'a> {
    Sqlite(StmtHolder<'a>),
    Pg(&'a PgConn, String),
}

impl<'a> Stmt<'a> {
    pub fn execute<P: Params>(&mut self, params: P) -> Result<usize> {
        let args = params.args();
        match self {
            Stmt::Sqlite(s) => Ok(s.execute(rusqlite::params_from_iter(args.iter()))?),
            Stmt::Pg(c, sql) => c.execute(sql, &args),
        }
    }

    pub fn query_row<T, P, F>(&mut self, params: P, f: F) -> Result<T>
    where
        P: Params,
        F: FnOnce(&Row<'_>) -> Result<T>,
    {
        let args = params.args();
        match self {
            Stmt::Sqlite(s) => {
                let mut rows = s.query(rusqlite::params_from_iter(args.iter()))?;
                match rows.next()? {
                    Some(r) => f(&Row::Sqlite(r)),
                    None => Err(Error::NoRows),
                }
            }
            Stmt::Pg(c, sql) => {
                let rows = c.query(sql, &args)?;
                match rows.first() {
                    Some(r) => f(&Row::Pg(r)),
                    None => Err(Error::NoRows),
                }
            }
        }
    }

    /// Every row mapped by `f`, in order.
    pub fn query_map<T, P, F>(
        &mut self,
        params: P,
        mut f: F,
    ) -> Result<std::vec::IntoIter<Result<T>>>
    where
        P: Params,
        F: FnMut(&Row<'_>) -> Result<T>,
    {
        let args = params.args();
        let out: Vec<Result<T>> = match self {
            Stmt::Sqlite(s) => {
                let mut rows = s.query(rusqlite::params_from_iter(args.iter()))?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    out.push(f(&Row::Sqlite(r)));
                }
                out
            }
            Stmt::Pg(c, sql) => c
                .query(sql, &args)?
                .iter()
                .map(|r| f(&Row::Pg(r)))
                .collect(),
        };
        Ok(out.into_iter())
    }

    /// A cursor over the rows (`next()` until `None`).
    pub fn query<P: Params>(&mut self, params: P) -> Result<Rows<'_>> {
        let args = params.args();
        Ok(match self {
            Stmt::Sqlite(s) => {
                // rusqlite's rows borrow the parameters only while binding.
                Rows::Sqlite(s.query(rusqlite::params_from_iter(args.iter()))?)
            }
            Stmt::Pg(c, sql) => Rows::Pg(c.query(sql, &args)?, 0),
        })
    }
}

/// Rows of a statement, read one at a time.
pub(in crate::store) enum Rows<'s> {
    Sqlite(rusqlite::Rows<'s>),
    Pg(Vec<tokio_postgres::Row>, usize),
}

/// One row borrowed from `Rows`.
pub(in crate::store) struct RowRef<'r> {
    row: RowInner<'r>,
}

enum RowInner<'r> {
    Sqlite(&'r rusqlite::Row<'r>),
    Pg(&'r tokio_postgres::Row),
}

impl RowRef<'_> {
    pub fn get<T: FromCol>(&self, i: usize) -> Result<T> {
        match self.row {
            RowInner::Sqlite(r) => T::from_sqlite(r, i),
            RowInner::Pg(r) => T::from_pg(r, i),
        }
    }

    /// The row as a `Row`, for mappers shared with `query_map`.
    pub fn as_row(&self) -> Row<'_> {
        match self.row {
            RowInner::Sqlite(r) => Row::Sqlite(r),
            RowInner::Pg(r) => Row::Pg(r),
        }
    }
}

impl<'s> Rows<'s> {
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<RowRef<'_>>> {
        match self {
            Rows::Sqlite(rows) => Ok(rows.next()?.map(|r| RowRef {
                row: RowInner::Sqlite(r),
            })),
            Rows::Pg(rows, at) => {
                let r = rows.get(*at);
                *at += 1;
                Ok(r.map(|r| RowRef {
                    row: RowInner::Pg(r),
                }))
            }
        }
    }
}
