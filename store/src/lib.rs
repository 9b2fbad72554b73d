//! The platform's shared storage: the PostgreSQL schema (sqlx migrations), the events
//! outbox, and the S3 client and object layout.

pub mod advisories;
pub mod attestation;
mod copy;
pub mod exploits;
pub mod layer_cache;
pub mod lifecycle;
pub mod notify;
pub mod outbox;
pub mod reports;
pub mod retention;
pub mod roles;
pub mod running_images;
pub mod s3;
pub mod scans;
pub mod schedules;
pub mod vex;

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

/// Storage errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A database call failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Applying migrations failed.
    #[error("migration: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// An S3 call failed.
    #[error("object storage: {0}")]
    ObjectStorage(String),
    /// The database schema is older than this binary (migrations not applied yet).
    #[error(
        "the database schema is at migration {found}, this binary needs {needed}: the operator's leader applies migrations at start, or run `stellaops-worker migrate` with the owner role"
    )]
    SchemaBehind {
        /// The newest applied migration.
        found: i64,
        /// The newest migration this binary carries.
        needed: i64,
    },
    /// The write was refused and nothing was changed.
    #[error("{0}")]
    Refused(String),
}

/// Result of a storage call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The migrations embedded in every binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Connect to PostgreSQL (`postgres://user:password@host:port/database`).
pub async fn connect(database_url: &str) -> Result<PgPool> {
    Ok(PgPoolOptions::new()
        .max_connections(8)
        .connect(database_url)
        .await?)
}

/// A lazily connecting pool for lookups on a request path with a deadline (the admission
/// webhook): at most `max_connections`, waiting at most `acquire_timeout` for a connection
/// (a database that is down or saturated fails fast instead of queueing), each statement
/// cancelled by the server after `statement_timeout`.
pub fn lookup_pool(
    database_url: &str,
    max_connections: u32,
    acquire_timeout: std::time::Duration,
    statement_timeout: std::time::Duration,
) -> Result<PgPool> {
    let options: sqlx::postgres::PgConnectOptions = database_url.parse()?;
    let options = options.options([(
        "statement_timeout",
        format!("{}ms", statement_timeout.as_millis()),
    )]);
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(acquire_timeout)
        .connect_lazy_with(options))
}

/// Apply every pending migration. Safe to run concurrently from several Pods: sqlx
/// serialises them with an advisory lock.
pub async fn migrate(pool: &PgPool) -> Result<()> {
    MIGRATOR.run(pool).await?;
    Ok(())
}

/// Check, without DDL, that every migration this binary carries has been applied. Workers
/// and the webhook call this instead of [`migrate`]: they run under roles that cannot
/// change the schema.
pub async fn check_schema(pool: &PgPool) -> Result<()> {
    let needed = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
    let found: Option<i64> =
        sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(pool)
            .await
            .or_else(|e| match &e {
                // No migration table: nothing applied yet.
                sqlx::Error::Database(d) if d.code().as_deref() == Some("42P01") => Ok(None),
                _ => Err(e),
            })?;
    let found = found.unwrap_or(0);
    if found < needed {
        return Err(Error::SchemaBehind { found, needed });
    }
    Ok(())
}
