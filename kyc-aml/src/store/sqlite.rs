//! The embedded backend: SQLite through `rusqlite` with the bundled library (no system
//! library needed), one connection behind a mutex. Used by `rempart demo` and tests.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::types::{Value, ValueRef};

use super::{Dialect, Row, SqlBackend, SqlStore, StoreError, Val, to_sqlite_placeholders};

/// SQLite connection.
#[derive(Debug)]
pub struct SqliteBackend {
    conn: Mutex<rusqlite::Connection>,
}

/// The embedded store.
pub type SqliteStore = SqlStore<SqliteBackend>;

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

impl SqliteBackend {
    /// Opens (creates) a database file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let conn = rusqlite::Connection::open(path).map_err(db)?;
        Self::setup(conn)
    }

    /// An in-memory database (tests, benchmarks).
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::setup(rusqlite::Connection::open_in_memory().map_err(db)?)
    }

    fn setup(conn: rusqlite::Connection) -> Result<Self, StoreError> {
        // WAL keeps readers off the writer's back; foreign keys are off by default in SQLite.
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;",
        )
        .map_err(db)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, rusqlite::Connection>, StoreError> {
        self.conn
            .lock()
            .map_err(|_| StoreError::Database("connection mutex poisoned".into()))
    }
}

fn to_value(v: Val) -> Value {
    match v {
        Val::I64(Some(i)) => Value::Integer(i),
        Val::Text(Some(s)) => Value::Text(s),
        Val::Blob(Some(b)) => Value::Blob(b),
        _ => Value::Null,
    }
}

fn from_ref(v: ValueRef<'_>) -> Result<Val, StoreError> {
    Ok(match v {
        ValueRef::Null => Val::I64(None),
        ValueRef::Integer(i) => Val::I64(Some(i)),
        ValueRef::Text(t) => Val::Text(Some(
            std::str::from_utf8(t)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?
                .to_string(),
        )),
        ValueRef::Blob(b) => Val::Blob(Some(b.to_vec())),
        ValueRef::Real(_) => return Err(StoreError::Corrupt("unexpected REAL column".into())),
    })
}

impl SqlBackend for SqliteBackend {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    async fn query(&self, sql: &str, params: Vec<Val>) -> Result<Vec<Row>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn
            .prepare_cached(&to_sqlite_placeholders(sql))
            .map_err(db)?;
        let n = stmt.column_count();
        let params: Vec<Value> = params.into_iter().map(to_value).collect();
        let mut rows = stmt.query(rusqlite::params_from_iter(params)).map_err(db)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(db)? {
            let mut row = Vec::with_capacity(n);
            for i in 0..n {
                row.push(from_ref(r.get_ref(i).map_err(db)?)?);
            }
            out.push(row);
        }
        Ok(out)
    }

    async fn batch(&self, stmts: Vec<(String, Vec<Val>)>) -> Result<Vec<u64>, StoreError> {
        let mut conn = self.lock()?;
        let tx = conn.transaction().map_err(db)?;
        let mut counts = Vec::with_capacity(stmts.len());
        for (sql, params) in stmts {
            let params: Vec<Value> = params.into_iter().map(to_value).collect();
            let n = tx
                .prepare_cached(&to_sqlite_placeholders(&sql))
                .map_err(db)?
                .execute(rusqlite::params_from_iter(params))
                .map_err(db)?;
            counts.push(n as u64);
        }
        tx.commit().map_err(db)?;
        Ok(counts)
    }

    async fn script(&self, sql: &str) -> Result<(), StoreError> {
        let mut conn = self.lock()?;
        let tx = conn.transaction().map_err(db)?;
        tx.execute_batch(sql).map_err(db)?;
        tx.commit().map_err(db)
    }
}

impl SqliteStore {
    /// An in-memory store, migrated.
    pub async fn in_memory() -> Result<SqliteStore, StoreError> {
        use super::KycStore;
        let s = SqlStore::new(SqliteBackend::in_memory()?);
        s.migrate().await?;
        Ok(s)
    }

    /// A file-backed store, migrated.
    pub async fn open(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        use super::KycStore;
        let s = SqlStore::new(SqliteBackend::open(path)?);
        s.migrate().await?;
        Ok(s)
    }
}
