//! The companies (realms) qbo loads, kept in `ops.companies`: what `--all-companies` means,
//! and where a company is marked `paused` by a human or `needs_reauth` when QBO refuses its
//! refresh token, so the rest of the fleet goes on without it.
//!
//! A company's loaded data (`raw.*`, `ops.backfill_*`) and its tokens are keyed by realm id
//! and never depend on this table: removing a company only takes it out of the fleet.

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool};

pub use crate::config::Environment;

/// Whether the fleet loads a company.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type, serde::Serialize)]
#[sqlx(type_name = "ops.company_status", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum CompanyStatus {
    /// Loaded by `--all-companies` commands and workers.
    Active,
    /// QBO refused its refresh token (revoked, expired, or rotated elsewhere): skipped until
    /// `qbo auth login` or `qbo auth import` gives it a new one.
    NeedsReauth,
    /// Skipped until `qbo companies resume`.
    Paused,
}

impl CompanyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CompanyStatus::Active => "active",
            CompanyStatus::NeedsReauth => "needs_reauth",
            CompanyStatus::Paused => "paused",
        }
    }
}

impl std::fmt::Display for CompanyStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Company {
    pub realm_id: String,
    /// CompanyInfo's CompanyName once qbo has loaded company_info; `--name` until then.
    pub display_name: Option<String>,
    #[serde(serialize_with = "environment_name")]
    pub environment: Environment,
    pub status: CompanyStatus,
    pub status_reason: Option<String>,
    pub status_changed_at: DateTime<Utc>,
    pub added_at: DateTime<Utc>,
    pub last_loaded_at: Option<DateTime<Utc>>,
}

fn environment_name<S: serde::Serializer>(e: &Environment, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(e.as_str())
}

impl Company {
    /// `9130350000000001 (Sandbox Company_US_1)`, or the realm id alone while the name is
    /// unknown: how messages name a company.
    pub fn label(&self) -> String {
        match &self.display_name {
            Some(name) => format!("{} ({name})", self.realm_id),
            None => self.realm_id.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CompaniesError {
    #[error("no company with realm id {0} in ops.companies; add it with `qbo companies add --realm-id {0}`")]
    NotFound(String),
    #[error(
        "realm {realm_id} is already a {existing} company; it cannot also be {requested} \
         (`qbo companies remove --realm-id {realm_id}` first if it was added by mistake)"
    )]
    EnvironmentMismatch {
        realm_id: String,
        existing: &'static str,
        requested: &'static str,
    },
    #[error("database error")]
    Db(#[from] sqlx::Error),
}

/// What `add` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Added {
    pub company: Company,
    /// False when the company was already there (then only a new `--name` changed).
    pub created: bool,
}

/// Adds the company, or leaves it as it is if it is already there (a given `name` replaces
/// the one it had). Never changes a status: re-adding a paused company keeps it paused.
pub async fn add(
    pool: &PgPool,
    realm_id: &str,
    environment: Environment,
    name: Option<&str>,
) -> Result<Added, CompaniesError> {
    // `xmax = 0` is true only for a row this statement inserted.
    let row = sqlx::query!(
        r#"INSERT INTO ops.companies (realm_id, environment, display_name)
           VALUES ($1, $2, $3)
           ON CONFLICT (realm_id) DO UPDATE
              SET display_name = COALESCE(EXCLUDED.display_name, ops.companies.display_name)
           RETURNING (xmax = 0) AS "created!",
                     environment AS "environment: Environment""#,
        realm_id,
        environment as _,
        name,
    )
    .fetch_one(pool)
    .await?;
    if row.environment != environment {
        return Err(CompaniesError::EnvironmentMismatch {
            realm_id: realm_id.to_string(),
            existing: row.environment.as_str(),
            requested: environment.as_str(),
        });
    }
    let company = get(pool, realm_id).await?;
    Ok(Added {
        company,
        created: row.created,
    })
}

/// Every company, by realm id.
/// Reads only (the name comes from loaded CompanyInfo in the query, never an UPDATE), so
/// `qbo companies list` needs no write access and takes no locks.
pub async fn list(pool: &PgPool) -> Result<Vec<Company>, CompaniesError> {
    Ok(sqlx::query_as!(
        Company,
        r#"SELECT c.realm_id, COALESCE(n.name, c.display_name) AS display_name,
                  c.environment AS "environment: Environment",
                  c.status AS "status: CompanyStatus", c.status_reason, c.status_changed_at,
                  c.added_at, c.last_loaded_at
             FROM ops.companies c
             LEFT JOIN LATERAL (SELECT NULLIF(r.payload->>'CompanyName', '') AS name
                                  FROM raw.qb_company_info r
                                 WHERE r.realm_id = c.realm_id LIMIT 1) n ON true
            ORDER BY c.realm_id"#
    )
    .fetch_all(pool)
    .await?)
}

pub async fn find(pool: &PgPool, realm_id: &str) -> Result<Option<Company>, CompaniesError> {
    Ok(sqlx::query_as!(
        Company,
        r#"SELECT c.realm_id, COALESCE(n.name, c.display_name) AS display_name,
                  c.environment AS "environment: Environment",
                  c.status AS "status: CompanyStatus", c.status_reason, c.status_changed_at,
                  c.added_at, c.last_loaded_at
             FROM ops.companies c
             LEFT JOIN LATERAL (SELECT NULLIF(r.payload->>'CompanyName', '') AS name
                                  FROM raw.qb_company_info r
                                 WHERE r.realm_id = c.realm_id LIMIT 1) n ON true
            WHERE c.realm_id = $1"#,
        realm_id
    )
    .fetch_optional(pool)
    .await?)
}

pub async fn get(pool: &PgPool, realm_id: &str) -> Result<Company, CompaniesError> {
    find(pool, realm_id)
        .await?
        .ok_or_else(|| CompaniesError::NotFound(realm_id.to_string()))
}

/// The realm ids of the companies `--all-companies` loads: the active ones, by realm id.
pub async fn active_realms(pool: &PgPool) -> Result<Vec<String>, CompaniesError> {
    Ok(sqlx::query_scalar!(
        "SELECT realm_id FROM ops.companies WHERE status = 'active' ORDER BY realm_id"
    )
    .fetch_all(pool)
    .await?)
}

/// The fleet split for an `--all-companies` command: the companies to load and those to
/// skip (with their status, for the line saying why).
#[derive(Debug, Clone, Default)]
pub struct Fleet {
    pub active: Vec<Company>,
    pub skipped: Vec<Company>,
}

impl Fleet {
    /// `skipped realm R (name): paused (reason)`: the line an `--all-companies` command
    /// prints for each company it leaves out.
    pub fn skip_lines(&self) -> Vec<String> {
        self.skipped
            .iter()
            .map(|c| {
                let why = match c.status {
                    CompanyStatus::Paused => "paused; `qbo companies resume` loads it again",
                    CompanyStatus::NeedsReauth => {
                        "needs_reauth: QBO refused its refresh token; run `qbo auth login` or \
                         `qbo auth import` for it"
                    }
                    CompanyStatus::Active => "active",
                };
                match &c.status_reason {
                    Some(r) => format!("skipped company {}: {why} ({r})", c.label()),
                    None => format!("skipped company {}: {why}", c.label()),
                }
            })
            .collect()
    }
}

pub async fn fleet(pool: &PgPool) -> Result<Fleet, CompaniesError> {
    let (active, skipped) = list(pool)
        .await?
        .into_iter()
        .partition(|c| c.status == CompanyStatus::Active);
    Ok(Fleet { active, skipped })
}

/// What a command for every active company says when there is none (`environment` empty
/// when the command does not care which).
pub fn no_active_company(environment: &str) -> String {
    let what = match environment {
        "" => "company".to_string(),
        env => format!("{env} company"),
    };
    format!(
        "no active {what} in `qbo companies`: `qbo auth login` or `qbo companies add \
         --realm-id R` adds one, `qbo companies resume R` resumes a paused one, `qbo auth \
         import --realm-id R` gives a needs_reauth one a token again"
    )
}

/// Sets the company's status and why (`pause`, `resume`, a refused refresh token).
pub async fn set_status(
    pool: &PgPool,
    realm_id: &str,
    status: CompanyStatus,
    reason: Option<&str>,
) -> Result<Company, CompaniesError> {
    let changed = set_status_in(pool, realm_id, status, reason).await?;
    if !changed {
        return Err(CompaniesError::NotFound(realm_id.to_string()));
    }
    get(pool, realm_id).await
}

/// `set_status` inside a caller's transaction (the token store marks `needs_reauth` in the
/// transaction that saw QBO refuse the token). False when the company is not in the table.
/// The change time moves only when the status does.
///
/// `needs_reauth` never replaces `paused`: a human paused the company, and a new token
/// (`reauthorized`) must not start loading it again. Its stale token shows up again, and
/// marks it, once someone resumes it.
pub async fn set_status_in<'e>(
    db: impl PgExecutor<'e>,
    realm_id: &str,
    status: CompanyStatus,
    reason: Option<&str>,
) -> Result<bool, CompaniesError> {
    // A refusal that meets a paused company changes nothing. (In SET, the columns are the
    // row's values before the update.)
    let done = sqlx::query!(
        "UPDATE ops.companies
            SET status_changed_at = CASE
                    WHEN status = $2 OR (status = 'paused' AND $2 = 'needs_reauth'::ops.company_status)
                    THEN status_changed_at ELSE now() END,
                status_reason = CASE
                    WHEN status = 'paused' AND $2 = 'needs_reauth'::ops.company_status
                    THEN status_reason ELSE $3 END,
                status = CASE
                    WHEN status = 'paused' AND $2 = 'needs_reauth'::ops.company_status
                    THEN status ELSE $2 END
          WHERE realm_id = $1",
        realm_id,
        status as _,
        reason,
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// New tokens arrived for the company (`auth login`, `auth import`): a company that needed
/// them is active again; a paused one stays paused.
pub async fn reauthorized<'e>(
    db: impl PgExecutor<'e>,
    realm_id: &str,
) -> Result<(), CompaniesError> {
    sqlx::query!(
        "UPDATE ops.companies
            SET status = 'active', status_reason = NULL, status_changed_at = now()
          WHERE realm_id = $1 AND status = 'needs_reauth'",
        realm_id,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Removes the company from the fleet; false when it was not there. Its raw rows, run
/// history and tokens stay: say so to the user (`qbo auth forget` removes the tokens).
pub async fn remove(pool: &PgPool, realm_id: &str) -> Result<bool, CompaniesError> {
    let done = sqlx::query!("DELETE FROM ops.companies WHERE realm_id = $1", realm_id)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// How many raw rows the company has loaded, over every raw table: what `remove` leaves.
pub async fn raw_rows(pool: &PgPool, realm_id: &str) -> Result<i64, CompaniesError> {
    let mut total = 0;
    for entity in crate::entities::ENTITIES {
        // The one query built at run time: one per raw table, and a fixed list of them in
        // SQL would silently miss an entity added later. Safe because the table names are
        // the registry's compile-time constants (never input), and checked against the
        // raw zone's naming (`raw.qb_<lowercase>`, see the test) before use.
        if !is_raw_table(entity.table) {
            return Err(CompaniesError::Db(sqlx::Error::Protocol(format!(
                "entity table {} is not a raw.qb_ table",
                entity.table
            ))));
        }
        let sql = format!("SELECT count(*) FROM {} WHERE realm_id = $1", entity.table);
        let n: i64 = sqlx::query_scalar(&sql)
            .bind(realm_id)
            .fetch_one(pool)
            .await?;
        total += n;
    }
    Ok(total)
}

/// `raw.qb_` then lowercase letters and underscores: a name that needs no quoting.
fn is_raw_table(name: &str) -> bool {
    name.strip_prefix("raw.qb_")
        .is_some_and(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
}

/// The company finished loading something now (a backfill or sync run ended).
pub async fn touch_loaded(pool: &PgPool, realm_id: &str) -> Result<(), CompaniesError> {
    sqlx::query!(
        "UPDATE ops.companies SET last_loaded_at = now() WHERE realm_id = $1",
        realm_id
    )
    .execute(pool)
    .await?;
    names_from_company_info(pool, Some(realm_id)).await
}

/// Fills display names from the loaded CompanyInfo record, which is the truth once qbo has
/// read it: no request to QBO, so it works for every company whatever its tokens' state.
async fn names_from_company_info(
    pool: &PgPool,
    realm_id: Option<&str>,
) -> Result<(), CompaniesError> {
    sqlx::query!(
        r#"UPDATE ops.companies c
              SET display_name = r.payload->>'CompanyName'
             FROM raw.qb_company_info r
            WHERE r.realm_id = c.realm_id
              AND ($1::text IS NULL OR c.realm_id = $1)
              AND r.payload->>'CompanyName' <> ''
              AND c.display_name IS DISTINCT FROM r.payload->>'CompanyName'"#,
        realm_id
    )
    .execute(pool)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_registry_table_is_an_allowed_raw_table_name() {
        for e in crate::entities::ENTITIES {
            assert!(super::is_raw_table(e.table), "{}", e.table);
        }
        assert!(!super::is_raw_table("raw.qb_x; DROP TABLE y"));
        assert!(!super::is_raw_table("ops.companies"));
    }
}
