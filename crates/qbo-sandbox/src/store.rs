//! The record store: per entity, key fields in a `BTreeMap` by numeric Id plus ordered indexes
//! on `(LastUpdatedTime, Id)` and `(TxnDate, Id)`, so window queries are range scans and a
//! page never clones the dataset. Full JSON is rendered on demand (see `data`), except for
//! records planted by tests, which are kept verbatim. Deleted records leave a tombstone
//! (Id, deletion time) that change data capture reports.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;

use super::clock;
use super::data::{self, EntityGen, FieldDef, GenCtx, Keys, COMMON_FIELDS, WHOLE_FIELDS};
use qbo_core::entities::{self, Entity};

pub struct Row {
    pub keys: Keys,
    /// Verbatim JSON for records planted with `put_record`; `None` means "render from seed".
    pub doc: Option<Arc<Value>>,
}

pub struct Table {
    pub entity: &'static Entity,
    pub gen: &'static dyn EntityGen,
    // Rows are shared by all three maps so an index scan needs no second lookup.
    pub rows: BTreeMap<u64, Arc<Row>>,
    pub by_updated: BTreeMap<(i64, u64), Arc<Row>>,
    pub by_txn: BTreeMap<(NaiveDate, u64), Arc<Row>>,
    /// Deleted Ids and when (epoch ms, whole seconds). A live row never has a tombstone.
    pub tombstones: BTreeMap<u64, i64>,
}

impl Table {
    fn new(entity: &'static Entity, gen: &'static dyn EntityGen) -> Table {
        Table {
            entity,
            gen,
            rows: BTreeMap::new(),
            by_updated: BTreeMap::new(),
            by_txn: BTreeMap::new(),
            tombstones: BTreeMap::new(),
        }
    }

    /// Inserts or replaces a row, keeping both indexes in step. Re-creating a deleted Id
    /// makes it live again: its tombstone goes.
    pub fn upsert(&mut self, row: Row) {
        let id = row.keys.id;
        let row = Arc::new(row);
        self.unlink(id);
        self.tombstones.remove(&id);
        self.by_updated
            .insert((row.keys.updated_ms, id), row.clone());
        if let Some(d) = row.keys.txn_date {
            self.by_txn.insert((d, id), row.clone());
        }
        self.rows.insert(id, row);
    }

    /// Takes a row out of the Id map and both indexes.
    fn unlink(&mut self, id: u64) -> Option<Arc<Row>> {
        let old = self.rows.remove(&id)?;
        self.by_updated.remove(&(old.keys.updated_ms, id));
        if let Some(d) = old.keys.txn_date {
            self.by_txn.remove(&(d, id));
        }
        Some(old)
    }

    /// A user deleting a record at `now`: it vanishes from queries and counts, and leaves a
    /// tombstone at `now` (whole seconds, like QBO's timestamps). False if there is no such
    /// live record.
    pub fn delete(&mut self, id: u64, now: DateTime<Utc>) -> bool {
        if self.unlink(id).is_none() {
            return false;
        }
        self.tombstones.insert(id, whole_seconds(now));
        true
    }

    /// A user deactivating a name (Customer, Item, Account, ...) at `now`, or "deleting" it,
    /// which in QBO is the same plus ` (deleted)` after each of its names. Either way it stays
    /// (served by id, and to queries that ask for `Active`), `Active` becomes false, and
    /// SyncToken and LastUpdatedTime move, so CDC reports a change, never `Deleted`. False if
    /// there is no such record or it is already inactive.
    pub fn deactivate(&mut self, ctx: &GenCtx, id: u64, now: DateTime<Utc>, rename: bool) -> bool {
        let Some(old) = self.rows.get(&id) else {
            return false;
        };
        if old.keys.active == Some(false) {
            return false;
        }
        let mut keys = old.keys.clone();
        keys.sync_token += 1;
        keys.updated_ms = whole_seconds(now);
        keys.active = Some(false);
        let mut doc = self.render(ctx, old);
        let d = data::record_body_mut(&mut doc);
        d["Active"] = Value::Bool(false);
        if rename {
            for name in ["Name", "DisplayName", "FullyQualifiedName"] {
                if let Some(Value::String(s)) = d.get_mut(name) {
                    s.push_str(" (deleted)");
                }
            }
        }
        d["SyncToken"] = Value::String(keys.sync_token.to_string());
        d["MetaData"]["LastUpdatedTime"] =
            Value::String(clock::format_secs(clock::from_millis(keys.updated_ms)));
        self.upsert(Row {
            keys,
            doc: Some(Arc::new(doc)),
        });
        true
    }

    pub fn render(&self, ctx: &GenCtx, row: &Row) -> Value {
        render(self.gen, ctx, row)
    }

    /// Looks a queryable field up by name, case-insensitively (QBO accepts
    /// `Metadata.LastUpdatedTime` as well as `MetaData.LastUpdatedTime`).
    pub fn field(&self, name: &str) -> Option<FieldDef> {
        // QBO serves whole entities unfiltered: no `MetaData` conditions on them.
        let common = if self.entity.is_whole() {
            WHOLE_FIELDS
        } else {
            COMMON_FIELDS
        };
        common
            .iter()
            .chain(self.gen.fields())
            .find(|f| f.path.eq_ignore_ascii_case(name))
            .copied()
    }

    /// A user edit: SyncToken + 1 and LastUpdatedTime = `now` (whole seconds, like QBO).
    pub fn touch(&mut self, id: u64, now: DateTime<Utc>) -> bool {
        let Some(old) = self.rows.get(&id) else {
            return false;
        };
        let mut keys = old.keys.clone();
        keys.sync_token += 1;
        keys.updated_ms = whole_seconds(now);
        let doc = old.doc.clone().map(|mut doc| {
            let d = data::record_body_mut(Arc::make_mut(&mut doc));
            d["SyncToken"] = Value::String(keys.sync_token.to_string());
            d["MetaData"]["LastUpdatedTime"] =
                Value::String(clock::format_secs(clock::from_millis(keys.updated_ms)));
            doc
        });
        self.upsert(Row { keys, doc });
        true
    }

    /// Reads the key fields out of a planted record.
    pub fn keys_from_json(&self, v: &Value) -> Result<Keys, String> {
        let v = data::record_body(v);
        let id = match &v["Id"] {
            Value::String(s) => s.parse::<u64>().ok(),
            Value::Number(n) => n.as_u64(),
            _ => None,
        }
        .ok_or("record needs a numeric string Id")?;
        let sync_token = match &v["SyncToken"] {
            Value::Null => 0,
            Value::String(s) => s
                .parse()
                .map_err(|_| "SyncToken must be a numeric string")?,
            _ => return Err("SyncToken must be a numeric string".into()),
        };
        let time = |name: &str| {
            v["MetaData"][name]
                .as_str()
                .and_then(clock::parse_instant_ms)
        };
        let updated_ms =
            time("LastUpdatedTime").ok_or("record needs MetaData.LastUpdatedTime (RFC 3339)")?;
        let created_ms = time("CreateTime").unwrap_or(updated_ms);
        let txn_date = match (self.entity.has_txn_date(), &v["TxnDate"]) {
            (true, Value::String(s)) => {
                Some(clock::parse_date(s).ok_or("TxnDate must be YYYY-MM-DD")?)
            }
            _ => None,
        };
        let active = if self.entity.hides_inactive() {
            Some(v["Active"].as_bool().unwrap_or(true))
        } else {
            None
        };
        Ok(Keys {
            id,
            sync_token,
            created_ms,
            updated_ms,
            txn_date,
            active,
        })
    }
}

pub struct Store {
    pub ctx: GenCtx,
    tables: Vec<(&'static Entity, RwLock<Table>)>,
}

impl Store {
    /// Generates every entity that has both a generator and a registry entry, as many of
    /// each as `ctx.counts` says.
    pub fn generate(ctx: GenCtx) -> Store {
        let mut tables = Vec::new();
        for gen in super::data::generators() {
            let Some(entity) = entities::by_qbo_name(gen.qbo_name()) else {
                continue;
            };
            let mut t = Table::new(entity, gen);
            let n = ctx.count(gen.qbo_name());
            for id in 1..=n {
                t.upsert(Row {
                    keys: gen.keys(&ctx, id, n),
                    doc: None,
                });
            }
            tables.push((entity, RwLock::new(t)));
        }
        Store { ctx, tables }
    }

    fn find(&self, name: &str) -> Option<&RwLock<Table>> {
        self.tables
            .iter()
            .find(|(e, _)| e.qbo_name.eq_ignore_ascii_case(name))
            .map(|(_, t)| t)
    }

    pub fn read(&self, name: &str) -> Option<RwLockReadGuard<'_, Table>> {
        self.find(name).map(read)
    }

    pub fn write(&self, name: &str) -> Option<RwLockWriteGuard<'_, Table>> {
        self.find(name)
            .map(|t| t.write().unwrap_or_else(|e| e.into_inner()))
    }
}

/// A row's JSON without the table's lock: rows are immutable snapshots, so a reader may
/// render them after letting go of the table.
pub fn render(gen: &dyn EntityGen, ctx: &GenCtx, row: &Row) -> Value {
    match &row.doc {
        Some(doc) => (**doc).clone(),
        None => gen.render(ctx, &row.keys),
    }
}

fn whole_seconds(t: DateTime<Utc>) -> i64 {
    let ms = t.timestamp_millis();
    ms - ms.rem_euclid(1000)
}

/// A panic while holding the lock cannot leave a table half-updated in a way that matters to a
/// test double, so poisoning is ignored rather than propagated.
fn read(t: &RwLock<Table>) -> RwLockReadGuard<'_, Table> {
    t.read().unwrap_or_else(|e| e.into_inner())
}
