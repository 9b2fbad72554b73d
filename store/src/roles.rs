//! The database roles of the platform and their privileges: the operator owns the schema
//! (its leader applies migrations), workers read and write rows but run no DDL, and the
//! webhook reads verdicts and appends admission events. `docs/security.md` prints
//! [`grants`] for the default role names; a test keeps the two equal.

/// Role names to grant to.
#[derive(Clone, Debug)]
pub struct Roles<'a> {
    /// Owns the schema; the operator connects as it and migrates.
    pub owner: &'a str,
    /// The workers (scan, evaluate, federation, mirror, notify).
    pub worker: &'a str,
    /// The Zastava webhook.
    pub webhook: &'a str,
}

impl Default for Roles<'static> {
    fn default() -> Self {
        Roles {
            owner: "stellaops_operator",
            worker: "stellaops_worker",
            webhook: "stellaops_webhook",
        }
    }
}

/// The GRANT statements (run by the owner after the migrations, or by a superuser) that
/// give `roles` exactly what they use. Default privileges make tables of later migrations
/// reach the worker without another GRANT.
pub fn grants(roles: &Roles<'_>) -> String {
    let Roles {
        owner,
        worker,
        webhook,
    } = roles;
    format!(
        "-- Nobody but the owner creates objects in the schema.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO {worker}, {webhook};
-- Workers: rows, never DDL.
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {worker};
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {worker};
ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {worker};
ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public
    GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {worker};
-- The webhook: verdicts to read, admission events to append (the outbox trigger reads
-- the newest id as the inserting role).
GRANT SELECT ON _sqlx_migrations, scan_results TO {webhook};
GRANT SELECT, INSERT ON events_outbox TO {webhook};
GRANT USAGE ON SEQUENCE events_outbox_id_seq TO {webhook};
"
    )
}
