//! For test suites: a fresh database of its own on the PostgreSQL server the test run provides.
//!
//! The test command starts a private PostgreSQL cluster and names it in
//! `MANDATE_TEST_POSTGRES_URL` (a URL whose user may create databases); each test gets a database
//! of its own there, created empty and dropped when the test is done with it. Where the variable is
//! unset, PostgreSQL tests are skipped with a line on stderr, unless `MANDATE_REQUIRE_POSTGRES=1`
//! (as the test command sets), where a missing server is an error: a test run that says it covered
//! PostgreSQL did.

use sqlx::{Connection, PgConnection};
use std::sync::atomic::{AtomicU64, Ordering};

/// The variable naming the server: `postgres://user@host:port/database`.
pub const URL_VAR: &str = "MANDATE_TEST_POSTGRES_URL";
/// The variable that makes a missing server an error instead of a skipped test.
pub const REQUIRE_VAR: &str = "MANDATE_REQUIRE_POSTGRES";

/// A database created for one test.
#[derive(Debug)]
pub struct PostgresDatabase {
    /// Its URL, for `MANDATE_DATABASE_URL` or [`crate::PostgresStore::connect`].
    pub url: String,
    admin_url: String,
    name: String,
}

static NEXT: AtomicU64 = AtomicU64::new(0);

impl PostgresDatabase {
    /// Creates an empty database; `Ok(None)` when no server is configured and none is required.
    pub async fn create() -> Result<Option<Self>, String> {
        let Ok(admin_url) = std::env::var(URL_VAR) else {
            if std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1") {
                return Err(format!("{REQUIRE_VAR}=1 but {URL_VAR} is unset: start scripts/postgres.sh"));
            }
            eprintln!("skipped: no PostgreSQL server ({URL_VAR} is unset)");
            return Ok(None);
        };
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let name = format!("mandate_t{}_{}_{nanos}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let mut url = url::Url::parse(&admin_url).map_err(|e| format!("{URL_VAR}: {e}"))?;
        url.set_path(&name);
        let mut admin = PgConnection::connect(&admin_url).await.map_err(|e| format!("{URL_VAR}: {e}"))?;
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.map_err(|e| e.to_string())?;
        let _ = admin.close().await;
        Ok(Some(Self { url: url.to_string(), admin_url, name }))
    }

    /// Drops the database, closing whatever connections are still open on it.
    pub async fn drop_database(self) -> Result<(), String> {
        let mut admin = PgConnection::connect(&self.admin_url).await.map_err(|e| e.to_string())?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
            .execute(&mut admin)
            .await
            .map_err(|e| e.to_string())?;
        let _ = admin.close().await;
        Ok(())
    }
}
