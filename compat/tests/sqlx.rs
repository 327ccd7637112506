//! sqlx (SQLite, on its tokio runtime support) from multipool tasks, on a
//! runtime built with `enable_tokio()`.
//!
//! The recipe: nothing to adapt. Build the runtime with `enable_tokio()`
//! and use sqlx as in a tokio program, from any multipool task at any
//! priority. sqlx's `runtime-tokio` finds the tokio context every worker
//! holds (its pool spawns its maintenance tasks with `tokio::spawn` and
//! times out acquires with `tokio::time`); SQLite itself runs each
//! connection on a thread of its own (`sqlx-sqlite-worker-N`), so a query
//! never blocks a multipool worker.
//!
//! The feature set is the smallest for SQLite on tokio:
//! `sqlx = { version = "0.8", default-features = false, features =
//! ["runtime-tokio", "sqlite"] }` (SQLite bundled; no macros, no `any`, no
//! json; sqlx 0.8 builds its `migrate` module whatever the features).

mod common;

use std::path::PathBuf;
use std::time::Instant;

use common::guard;
use multipool::{Priority, Runtime};
use multipool_compat::tokio::{BuilderExt, TokioContext};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

/// Tasks inserting at once, at High, Normal and Low in turn.
const TASKS: usize = 48;
/// Rows each of them inserts, one statement each.
const ROWS: usize = 25;
/// Connections in the pool: fewer than the tasks, so they queue for one.
const CONNECTIONS: u32 = 4;

/// A directory of its own under the system's temporary one, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("multipool-compat-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn label(priority: Priority) -> &'static str {
    match priority {
        Priority::High => "high",
        Priority::Low => "low",
        Priority::Normal => "normal",
    }
}

/// How many rows the table holds, through `executor` (the pool, or a
/// transaction's connection).
async fn count<'e>(executor: impl sqlx::SqliteExecutor<'e>) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM items")
        .fetch_one(executor)
        .await
        .unwrap()
}

/// The whole scenario on a fresh runtime with the given tokio context.
fn scenario(config: &str, tokio: TokioContext) {
    let dir = TempDir::new(&format!("sqlx-{config}"));
    let rt = Runtime::builder()
        .workers(2)
        .tokio_context(tokio)
        .build()
        .unwrap();
    rt.block_on(guard(async {
        // A database file (in WAL mode: readers never wait for the writer;
        // `synchronous = NORMAL`, WAL's usual setting, syncs at checkpoints
        // only) and a pool of a few connections, opened from a multipool
        // task.
        let options = SqliteConnectOptions::new()
            .filename(dir.0.join("test.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal);
        let pool: SqlitePool = multipool::spawn(async move {
            SqlitePoolOptions::new()
                .max_connections(CONNECTIONS)
                .connect_with(options)
                .await
        })
        .await
        .unwrap()
        .expect("open the pool");

        sqlx::query(
            "CREATE TABLE items (
                task INTEGER NOT NULL,
                seq INTEGER NOT NULL,
                priority TEXT NOT NULL,
                on_worker INTEGER NOT NULL,
                PRIMARY KEY (task, seq)
            )",
        )
        .execute(&pool)
        .await
        .expect("create table");

        // Concurrent inserts from many multipool tasks, at three priorities;
        // each row records whether its task saw itself on a multipool task.
        let inserts: Vec<_> = (0..TASKS)
            .map(|task| {
                let pool = pool.clone();
                let priority = [Priority::High, Priority::Normal, Priority::Low][task % 3];
                multipool::spawn(async move {
                    for seq in 0..ROWS {
                        sqlx::query(
                            "INSERT INTO items (task, seq, priority, on_worker) VALUES (?, ?, ?, ?)",
                        )
                        .bind(task as i64)
                        .bind(seq as i64)
                        .bind(label(priority))
                        .bind(multipool::task::try_id().is_some())
                        .execute(&pool)
                        .await?;
                    }
                    Ok::<_, sqlx::Error>(())
                })
                .name("insert")
                .priority(priority)
                .start()
            })
            .collect();
        for insert in inserts {
            insert.await.unwrap().expect("insert");
        }

        // Every row is there, once, from a multipool task.
        let per_priority: Vec<(String, i64, i64, i64)> = sqlx::query_as(
            "SELECT priority, COUNT(*), COUNT(DISTINCT task), SUM(on_worker)
             FROM items GROUP BY priority ORDER BY priority",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        let each = (TASKS / 3) as i64;
        let rows = each * ROWS as i64;
        assert_eq!(
            per_priority,
            vec![
                ("high".into(), rows, each, rows),
                ("low".into(), rows, each, rows),
                ("normal".into(), rows, each, rows),
            ]
        );
        let total = (TASKS * ROWS) as i64;
        assert_eq!(count(&pool).await, total);

        // A transaction, from a Low task: its delete is seen inside it, and
        // gone once it is rolled back.
        let pool2 = pool.clone();
        multipool::spawn(async move {
            let mut tx = pool2.begin().await.unwrap();
            let deleted = sqlx::query("DELETE FROM items WHERE priority = 'low'")
                .execute(&mut *tx)
                .await
                .unwrap()
                .rows_affected();
            assert_eq!(deleted, rows as u64);
            assert_eq!(count(&mut *tx).await, total - rows);
            tx.rollback().await.unwrap();
        })
        .priority(Priority::Low)
        .await
        .unwrap();
        assert_eq!(count(&pool).await, total, "the rollback restored the rows");

        // A transaction dropped without a commit rolls back as well; one
        // committed stays.
        {
            let mut tx = pool.begin().await.unwrap();
            sqlx::query("DELETE FROM items").execute(&mut *tx).await.unwrap();
            assert_eq!(count(&mut *tx).await, 0);
        }
        assert_eq!(count(&pool).await, total, "the dropped transaction left no trace");
        let mut tx = pool.begin().await.unwrap();
        sqlx::query("DELETE FROM items WHERE task = 0")
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(count(&pool).await, total - ROWS as i64);

        pool.close().await;
    }));
}

#[test]
fn sqlx_sqlite_from_multipool_tasks() {
    // `enable_tokio()`'s default (multipool's workers drive tokio), then
    // tokio threads of its own.
    for (config, tokio) in [
        ("enable_tokio", TokioContext::new()),
        ("worker_threads", TokioContext::new().worker_threads(2)),
    ] {
        let started = Instant::now();
        scenario(config, tokio);
        eprintln!(
            "{config}: {} inserts from {TASKS} tasks over {CONNECTIONS} connections, in {:?}",
            TASKS * ROWS,
            started.elapsed()
        );
    }
}
