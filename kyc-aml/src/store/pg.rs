//! The production backend: PostgreSQL through `tokio-postgres`, connections from a
//! `deadpool-postgres` pool. Every connection of a store works in one schema (its
//! `search_path`), so tests and tenants can each have their own.

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;
use tokio_postgres::types::{ToSql, Type};

use super::{Dialect, Row, SqlBackend, SqlStore, StoreError, Val};

/// Most connections a store's pool opens.
pub const POOL_SIZE_MAX: usize = 16;

/// A pool of connections to one schema.
#[derive(Debug)]
pub struct PgBackend {
    pool: Pool,
    schema: String,
}

/// The production store.
pub type PgStore = SqlStore<PgBackend>;

fn db(e: tokio_postgres::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

fn pool_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Pool(e.to_string())
}

/// A schema name we accept: lower-case letters, digits and underscores, starting with a
/// letter, at most 63 bytes (PostgreSQL's identifier limit). It is interpolated into SQL, so
/// nothing else gets through.
pub fn schema_name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl PgBackend {
    /// Connects a pool to `config` (a libpq-style string, e.g.
    /// `host=127.0.0.1 user=postgres dbname=test`) working in `schema`, creating the schema if
    /// needed.
    pub async fn connect(config: &str, schema: &str) -> Result<PgBackend, StoreError> {
        if !schema_name_ok(schema) {
            return Err(StoreError::Database(format!(
                "invalid schema name {schema:?}"
            )));
        }
        let mut pg: tokio_postgres::Config = config.parse().map_err(db)?;
        pg.options(format!("-c search_path={schema}"));
        let mgr = Manager::from_config(
            pg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(mgr)
            .max_size(POOL_SIZE_MAX)
            .build()
            .map_err(pool_err)?;
        let backend = PgBackend {
            pool,
            schema: schema.to_string(),
        };
        let client = backend.pool.get().await.map_err(pool_err)?;
        client
            .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
            .await
            .map_err(db)?;
        Ok(backend)
    }

    /// The schema.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Drops the schema and everything in it (tests clean up with this).
    pub async fn drop_schema(&self) -> Result<(), StoreError> {
        let client = self.pool.get().await.map_err(pool_err)?;
        client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema))
            .await
            .map_err(db)
    }
}

fn params_of(v: &[Val]) -> Vec<Box<dyn ToSql + Sync + Send>> {
    v.iter()
        .map(|p| -> Box<dyn ToSql + Sync + Send> {
            match p {
                Val::I64(x) => Box::new(*x),
                Val::Text(x) => Box::new(x.clone()),
                Val::Blob(x) => Box::new(x.clone()),
            }
        })
        .collect()
}

fn row_of(r: &tokio_postgres::Row) -> Result<Row, StoreError> {
    let mut out = Vec::with_capacity(r.len());
    for (i, c) in r.columns().iter().enumerate() {
        let t = c.type_();
        let v = if *t == Type::INT8 {
            Val::I64(r.try_get::<_, Option<i64>>(i).map_err(db)?)
        } else if *t == Type::INT4 {
            Val::I64(r.try_get::<_, Option<i32>>(i).map_err(db)?.map(i64::from))
        } else if *t == Type::TEXT || *t == Type::VARCHAR {
            Val::Text(r.try_get::<_, Option<String>>(i).map_err(db)?)
        } else if *t == Type::BYTEA {
            Val::Blob(r.try_get::<_, Option<Vec<u8>>>(i).map_err(db)?)
        } else {
            return Err(StoreError::Corrupt(format!("unexpected column type {t}")));
        };
        out.push(v);
    }
    Ok(out)
}

impl SqlBackend for PgBackend {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    async fn query(&self, sql: &str, params: Vec<Val>) -> Result<Vec<Row>, StoreError> {
        let client = self.pool.get().await.map_err(pool_err)?;
        let stmt = client.prepare_cached(sql).await.map_err(db)?;
        let boxed = params_of(&params);
        let refs: Vec<&(dyn ToSql + Sync)> = boxed
            .iter()
            .map(|b| b.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let rows = client.query(&stmt, &refs).await.map_err(db)?;
        rows.iter().map(row_of).collect()
    }

    async fn batch(&self, stmts: Vec<(String, Vec<Val>)>) -> Result<Vec<u64>, StoreError> {
        let mut client = self.pool.get().await.map_err(pool_err)?;
        let tx = client.transaction().await.map_err(db)?;
        let mut counts = Vec::with_capacity(stmts.len());
        for (sql, params) in &stmts {
            let stmt = tx.prepare_cached(sql).await.map_err(db)?;
            let boxed = params_of(params);
            let refs: Vec<&(dyn ToSql + Sync)> = boxed
                .iter()
                .map(|b| b.as_ref() as &(dyn ToSql + Sync))
                .collect();
            counts.push(tx.execute(&stmt, &refs).await.map_err(db)?);
        }
        tx.commit().await.map_err(db)?;
        Ok(counts)
    }

    async fn script(&self, sql: &str) -> Result<(), StoreError> {
        let mut client = self.pool.get().await.map_err(pool_err)?;
        let tx = client.transaction().await.map_err(db)?;
        tx.batch_execute(sql).await.map_err(db)?;
        tx.commit().await.map_err(db)
    }
}

impl PgStore {
    /// Connects and migrates.
    pub async fn connect(config: &str, schema: &str) -> Result<PgStore, StoreError> {
        use super::KycStore;
        let s = SqlStore::new(PgBackend::connect(config, schema).await?);
        s.migrate().await?;
        Ok(s)
    }
}
