//! The PostgreSQL block store, for production validators and regulators' queries. Tables live
//! in one schema per store: `blocks` (hash-chained rows: a foreign key from `previous_hash` to
//! the previous row's `hash`, with a genesis row at height 0), `accounts`, `transfers` and
//! `meta` (the applied height).
//!
//! Each block is one database transaction: the block row, the set-based upsert of every
//! account and transfer it touched (absolute final values, so replaying a block is
//! idempotent), and the applied height. Amounts are `NUMERIC(39,0)` and cross the driver as
//! decimal text cast in SQL, never through `rust_decimal` (28 significant digits: too few for
//! u128 amounts).

use tokio_postgres::{Client, NoTls};

use super::{BlockStore, StoreError};
use crate::block::CommittedBlock;
use crate::crypto::Hash32;
use crate::ledger::BlockEffects;

/// The store's private current-thread runtime. Dropping a runtime blocks, which tokio forbids
/// inside an async context; this one shuts down in the background instead, so a validator's
/// store may be dropped anywhere.
#[derive(Debug)]
struct DbRuntime(Option<tokio::runtime::Runtime>);

impl DbRuntime {
    fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.0
            .as_ref()
            .expect("the runtime lives until the store is dropped")
            .block_on(future)
    }
}

impl Drop for DbRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// A block store in a PostgreSQL schema. Its calls block on a private runtime: from async code,
/// call them inside `tokio::task::block_in_place`.
#[derive(Debug)]
pub struct PgStore {
    runtime: DbRuntime,
    client: Client,
    schema: String,
}

fn db(context: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> StoreError {
    let context = context.into();
    move |source| StoreError::Database { context, source }
}

fn i64_of(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Corrupt {
        height: 0,
        reason: format!("{what} {value} does not fit a BIGINT"),
    })
}

impl PgStore {
    /// Connects (`config` is a libpq-style string, e.g. `host=127.0.0.1 user=postgres
    /// dbname=test`) and creates the schema and tables if absent. `schema` must be a plain
    /// lower-case identifier.
    pub fn connect(config: &str, schema: &str) -> Result<Self, StoreError> {
        let valid = !schema.is_empty()
            && schema.len() <= 48
            && schema
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && !schema.as_bytes()[0].is_ascii_digit();
        if !valid {
            return Err(StoreError::Corrupt {
                height: 0,
                reason: format!("schema name {schema:?} is not a plain identifier"),
            });
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| StoreError::Io {
                context: "start the database runtime".into(),
                source,
            })?;
        let client = runtime.block_on(async {
            let (client, connection) = tokio_postgres::connect(config, NoTls)
                .await
                .map_err(db("connect"))?;
            tokio::spawn(async move {
                // The connection ends when the client is dropped; an error surfaces on the
                // client's next query.
                let _ = connection.await;
            });
            Ok::<_, StoreError>(client)
        })?;
        let store = Self {
            runtime: DbRuntime(Some(runtime)),
            client,
            schema: schema.to_string(),
        };
        store.create_tables()?;
        Ok(store)
    }

    fn create_tables(&self) -> Result<(), StoreError> {
        let s = &self.schema;
        let sql = format!(
            "CREATE SCHEMA IF NOT EXISTS {s};
             CREATE TABLE IF NOT EXISTS {s}.blocks (
                 height BIGINT PRIMARY KEY,
                 hash BYTEA NOT NULL UNIQUE,
                 previous_hash BYTEA NOT NULL REFERENCES {s}.blocks(hash),
                 timestamp_us BIGINT NOT NULL,
                 state_hash BYTEA NOT NULL,
                 proposer NUMERIC(20,0) NOT NULL,
                 record BYTEA NOT NULL,
                 record_crc32c BIGINT NOT NULL);
             CREATE TABLE IF NOT EXISTS {s}.accounts (
                 id NUMERIC(39,0) PRIMARY KEY,
                 ledger BIGINT NOT NULL,
                 code INTEGER NOT NULL,
                 flags INTEGER NOT NULL,
                 debits_pending NUMERIC(39,0) NOT NULL,
                 debits_posted NUMERIC(39,0) NOT NULL,
                 credits_pending NUMERIC(39,0) NOT NULL,
                 credits_posted NUMERIC(39,0) NOT NULL,
                 user_data NUMERIC(39,0) NOT NULL,
                 controller BYTEA NOT NULL,
                 timestamp_us BIGINT NOT NULL,
                 updated_height BIGINT NOT NULL);
             CREATE TABLE IF NOT EXISTS {s}.transfers (
                 id NUMERIC(39,0) PRIMARY KEY,
                 debit_account_id NUMERIC(39,0) NOT NULL,
                 credit_account_id NUMERIC(39,0) NOT NULL,
                 amount NUMERIC(39,0) NOT NULL,
                 amount_applied NUMERIC(39,0) NOT NULL,
                 pending_id NUMERIC(39,0) NOT NULL,
                 user_data NUMERIC(39,0) NOT NULL,
                 timeout_s BIGINT NOT NULL,
                 ledger BIGINT NOT NULL,
                 code INTEGER NOT NULL,
                 flags INTEGER NOT NULL,
                 decision_hash BYTEA NOT NULL,
                 status SMALLINT NOT NULL,
                 height BIGINT NOT NULL,
                 timestamp_us BIGINT NOT NULL);
             CREATE INDEX IF NOT EXISTS transfers_decision_hash ON {s}.transfers(decision_hash);
             CREATE TABLE IF NOT EXISTS {s}.meta (
                 singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
                 applied_height BIGINT NOT NULL);
             INSERT INTO {s}.meta (applied_height) VALUES (0) ON CONFLICT DO NOTHING;"
        );
        self.runtime
            .block_on(self.client.batch_execute(&sql))
            .map_err(db("create tables"))
    }

    /// Drops the schema and everything in it (tests clean up with this).
    pub fn drop_schema(self) -> Result<(), StoreError> {
        let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema);
        self.runtime
            .block_on(self.client.batch_execute(&sql))
            .map_err(db("drop schema"))
    }

    /// An account's balances as stored (decimal text), for regulators' queries and tests:
    /// `[debits_pending, debits_posted, credits_pending, credits_posted]`.
    pub fn account_balances(&self, id: u128) -> Result<Option<[u128; 4]>, StoreError> {
        let sql = format!(
            "SELECT debits_pending::text, debits_posted::text, credits_pending::text,
                    credits_posted::text FROM {}.accounts WHERE id = $1::text::numeric",
            self.schema
        );
        let row = self
            .runtime
            .block_on(self.client.query_opt(&sql, &[&id.to_string()]))
            .map_err(db("read account"))?;
        let Some(row) = row else { return Ok(None) };
        let mut out = [0u128; 4];
        for (index, slot) in out.iter_mut().enumerate() {
            let text: String = row.get(index);
            *slot = text.parse().map_err(|_| StoreError::Corrupt {
                height: 0,
                reason: format!("account {id} balance {text:?} is not a u128"),
            })?;
        }
        Ok(Some(out))
    }

    /// The decision hash stored with a transfer (what a regulator matches to the gate's
    /// decision record).
    pub fn transfer_decision_hash(&self, id: u128) -> Result<Option<Hash32>, StoreError> {
        let sql = format!(
            "SELECT decision_hash FROM {}.transfers WHERE id = $1::text::numeric",
            self.schema
        );
        let row = self
            .runtime
            .block_on(self.client.query_opt(&sql, &[&id.to_string()]))
            .map_err(db("read transfer"))?;
        Ok(row.and_then(|row| row.get::<_, Vec<u8>>(0).try_into().ok()))
    }

    /// Flips one byte of a stored block record (tests of corruption detection only).
    pub fn corrupt_record_for_test(&self, height: u64, byte: usize) -> Result<(), StoreError> {
        let sql = format!(
            "UPDATE {}.blocks SET record = set_byte(record, $2, get_byte(record, $2) # 1)
             WHERE height = $1",
            self.schema
        );
        self.runtime
            .block_on(
                self.client
                    .execute(&sql, &[&i64_of(height, "height")?, &(byte as i32)]),
            )
            .map_err(db("corrupt record"))
            .map(|_| ())
    }
}

impl BlockStore for PgStore {
    fn applied_height(&self) -> Result<u64, StoreError> {
        let sql = format!("SELECT applied_height FROM {}.meta", self.schema);
        let row = self
            .runtime
            .block_on(self.client.query_one(&sql, &[]))
            .map_err(db("read applied height"))?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    fn append(&mut self, block: &CommittedBlock, effects: &BlockEffects) -> Result<(), StoreError> {
        let s = self.schema.clone();
        let header = block.block.header;
        let height = header.height;
        let height_db = i64_of(height, "height")?;
        let hash = block.block.hash();
        let record = block.encode();
        let crc = i64::from(crc32c::crc32c(&record));
        let timestamp_db = i64_of(header.timestamp_us, "timestamp")?;

        // Column vectors for the set-based upserts.
        let accounts = &effects.accounts;
        let a_id: Vec<String> = accounts.iter().map(|a| a.id.to_string()).collect();
        let a_ledger: Vec<i64> = accounts.iter().map(|a| i64::from(a.ledger)).collect();
        let a_code: Vec<i32> = accounts.iter().map(|a| i32::from(a.code)).collect();
        let a_flags: Vec<i32> = accounts.iter().map(|a| i32::from(a.flags.0)).collect();
        let a_dp: Vec<String> = accounts
            .iter()
            .map(|a| a.debits_pending.to_string())
            .collect();
        let a_dq: Vec<String> = accounts
            .iter()
            .map(|a| a.debits_posted.to_string())
            .collect();
        let a_cp: Vec<String> = accounts
            .iter()
            .map(|a| a.credits_pending.to_string())
            .collect();
        let a_cq: Vec<String> = accounts
            .iter()
            .map(|a| a.credits_posted.to_string())
            .collect();
        let a_ud: Vec<String> = accounts.iter().map(|a| a.user_data.to_string()).collect();
        let a_ctl: Vec<Vec<u8>> = accounts.iter().map(|a| a.controller.to_vec()).collect();
        let mut a_ts = Vec::with_capacity(accounts.len());
        for a in accounts {
            a_ts.push(i64_of(a.timestamp_us, "timestamp")?);
        }
        let transfers = &effects.transfers;
        let t_id: Vec<String> = transfers
            .iter()
            .map(|t| t.transfer.id.to_string())
            .collect();
        let t_debit: Vec<String> = transfers
            .iter()
            .map(|t| t.debit_account_id.to_string())
            .collect();
        let t_credit: Vec<String> = transfers
            .iter()
            .map(|t| t.credit_account_id.to_string())
            .collect();
        let t_amount: Vec<String> = transfers
            .iter()
            .map(|t| t.transfer.amount.to_string())
            .collect();
        let t_applied: Vec<String> = transfers
            .iter()
            .map(|t| t.amount_applied.to_string())
            .collect();
        let t_pending: Vec<String> = transfers
            .iter()
            .map(|t| t.transfer.pending_id.to_string())
            .collect();
        let t_ud: Vec<String> = transfers
            .iter()
            .map(|t| t.transfer.user_data.to_string())
            .collect();
        let t_timeout: Vec<i64> = transfers
            .iter()
            .map(|t| i64::from(t.transfer.timeout_s))
            .collect();
        let t_ledger: Vec<i64> = transfers
            .iter()
            .map(|t| i64::from(t.transfer.ledger))
            .collect();
        let t_code: Vec<i32> = transfers
            .iter()
            .map(|t| i32::from(t.transfer.code))
            .collect();
        let t_flags: Vec<i32> = transfers
            .iter()
            .map(|t| i32::from(t.transfer.flags.0))
            .collect();
        let t_decision: Vec<Vec<u8>> = transfers
            .iter()
            .map(|t| t.transfer.decision_hash.to_vec())
            .collect();
        let t_status: Vec<i16> = transfers.iter().map(|t| t.status as i16).collect();
        let mut t_height = Vec::with_capacity(transfers.len());
        let mut t_ts = Vec::with_capacity(transfers.len());
        for t in transfers {
            t_height.push(i64_of(t.height, "height")?);
            t_ts.push(i64_of(t.timestamp_us, "timestamp")?);
        }

        let client = &mut self.client;
        self.runtime.block_on(async {
            let tx = client.transaction().await.map_err(db("begin"))?;
            let applied: i64 = tx
                .query_one(&format!("SELECT applied_height FROM {s}.meta FOR UPDATE"), &[])
                .await
                .map_err(db("lock applied height"))?
                .get(0);
            let next = applied as u64 + 1;
            if height < next {
                let stored = tx
                    .query_opt(&format!("SELECT hash FROM {s}.blocks WHERE height = $1 AND height > 0"), &[&height_db])
                    .await
                    .map_err(db("read stored hash"))?;
                return match stored {
                    Some(row) if row.get::<_, Vec<u8>>(0) == hash.to_vec() => Ok(()),
                    _ => Err(StoreError::Conflict { height }),
                };
            }
            if height > next {
                return Err(StoreError::Gap { expected: next, got: height });
            }
            if height == 1 {
                // The genesis row anchors the chain's foreign key.
                tx.execute(
                    &format!(
                        "INSERT INTO {s}.blocks (height, hash, previous_hash, timestamp_us, state_hash,
                             proposer, record, record_crc32c)
                         VALUES (0, $1, $1, 0, $1, 0, ''::bytea, 0) ON CONFLICT DO NOTHING"
                    ),
                    &[&header.previous_hash.to_vec()],
                )
                .await
                .map_err(db("insert genesis row"))?;
            }
            tx.execute(
                &format!(
                    "INSERT INTO {s}.blocks (height, hash, previous_hash, timestamp_us, state_hash,
                         proposer, record, record_crc32c)
                     VALUES ($1, $2, $3, $4, $5, $6::text::numeric, $7, $8)
                     ON CONFLICT (height) DO NOTHING"
                ),
                &[
                    &height_db,
                    &hash.to_vec(),
                    &header.previous_hash.to_vec(),
                    &timestamp_db,
                    &header.state_hash.to_vec(),
                    &header.proposer.to_string(),
                    &record,
                    &crc,
                ],
            )
            .await
            .map_err(db(format!("insert block {height} (is it chained to the stored head?)")))?;
            if !accounts.is_empty() {
                tx.execute(
                    &format!(
                        "INSERT INTO {s}.accounts (id, ledger, code, flags, debits_pending,
                             debits_posted, credits_pending, credits_posted, user_data, controller,
                             timestamp_us, updated_height)
                         SELECT v.id::numeric, v.ledger, v.code, v.flags, v.dp::numeric,
                             v.dq::numeric, v.cp::numeric, v.cq::numeric, v.ud::numeric, v.ctl,
                             v.ts, $12
                         FROM unnest($1::text[], $2::bigint[], $3::int[], $4::int[], $5::text[],
                             $6::text[], $7::text[], $8::text[], $9::text[], $10::bytea[],
                             $11::bigint[])
                             AS v(id, ledger, code, flags, dp, dq, cp, cq, ud, ctl, ts)
                         ON CONFLICT (id) DO UPDATE SET
                             flags = EXCLUDED.flags,
                             debits_pending = EXCLUDED.debits_pending,
                             debits_posted = EXCLUDED.debits_posted,
                             credits_pending = EXCLUDED.credits_pending,
                             credits_posted = EXCLUDED.credits_posted,
                             updated_height = EXCLUDED.updated_height"
                    ),
                    &[
                        &a_id, &a_ledger, &a_code, &a_flags, &a_dp, &a_dq, &a_cp, &a_cq, &a_ud,
                        &a_ctl, &a_ts, &height_db,
                    ],
                )
                .await
                .map_err(db(format!("upsert accounts of block {height}")))?;
            }
            if !transfers.is_empty() {
                tx.execute(
                    &format!(
                        "INSERT INTO {s}.transfers (id, debit_account_id, credit_account_id, amount,
                             amount_applied, pending_id, user_data, timeout_s, ledger, code, flags,
                             decision_hash, status, height, timestamp_us)
                         SELECT v.id::numeric, v.debit::numeric, v.credit::numeric,
                             v.amount::numeric, v.applied::numeric, v.pending::numeric,
                             v.ud::numeric, v.timeout, v.ledger, v.code, v.flags, v.decision,
                             v.status, v.height, v.ts
                         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                             $6::text[], $7::text[], $8::bigint[], $9::bigint[], $10::int[],
                             $11::int[], $12::bytea[], $13::smallint[], $14::bigint[],
                             $15::bigint[])
                             AS v(id, debit, credit, amount, applied, pending, ud, timeout, ledger,
                                  code, flags, decision, status, height, ts)
                         ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status"
                    ),
                    &[
                        &t_id, &t_debit, &t_credit, &t_amount, &t_applied, &t_pending, &t_ud,
                        &t_timeout, &t_ledger, &t_code, &t_flags, &t_decision, &t_status,
                        &t_height, &t_ts,
                    ],
                )
                .await
                .map_err(db(format!("upsert transfers of block {height}")))?;
            }
            tx.execute(&format!("UPDATE {s}.meta SET applied_height = $1"), &[&height_db])
                .await
                .map_err(db("set applied height"))?;
            tx.commit().await.map_err(db(format!("commit block {height}")))
        })
    }

    fn read(&self, height: u64) -> Result<CommittedBlock, StoreError> {
        let sql = format!(
            "SELECT record, record_crc32c, hash FROM {}.blocks WHERE height = $1 AND height > 0",
            self.schema
        );
        let row = self
            .runtime
            .block_on(self.client.query_opt(&sql, &[&i64_of(height, "height")?]))
            .map_err(db(format!("read block {height}")))?;
        let Some(row) = row else {
            return Err(StoreError::NotFound(height));
        };
        let record: Vec<u8> = row.get(0);
        let crc: i64 = row.get(1);
        let hash: Vec<u8> = row.get(2);
        let corrupt = |reason: &str| StoreError::Corrupt {
            height,
            reason: reason.to_string(),
        };
        if i64::from(crc32c::crc32c(&record)) != crc {
            return Err(corrupt("record fails its CRC32C checksum"));
        }
        let block = CommittedBlock::decode(&record)
            .map_err(|error| corrupt(&format!("record does not decode: {error}")))?;
        if block.block.header.height != height || block.block.hash().to_vec() != hash {
            return Err(corrupt("record does not match its row"));
        }
        Ok(block)
    }
}
