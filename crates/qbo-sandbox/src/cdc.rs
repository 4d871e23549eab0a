//! Change data capture: `GET /v3/company/{realm}/cdc?entities=A,B&changedSince=T`, after the
//! same gate as the query endpoint. Every record changed or deleted at or after `changedSince`
//! (at most 30 days back), at most 1000 objects in all. Over the cap the sandbox keeps a
//! stable but scrambled 1000, never the oldest first, and says nothing about the rest: a
//! client must read "1000 objects" as "maybe truncated". See docs/sandbox-spec.md.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

use super::data::{EntityGen, Rng};
use super::store::{self, Row, Store, Table};
use super::{clock, envelope};
use qbo_core::entities::{Entity, ENTITIES};

/// Intuit: "CDC operations can track changes within the last 30 days."
pub const HORIZON_DAYS: i64 = 30;
/// Intuit: "Server responses can handle a maximum of 1,000 objects."
pub const MAX_OBJECTS: usize = 1000;

enum Event {
    /// A live record: its current payload, rendered from this snapshot.
    Live(Arc<Row>),
    /// A tombstone: deleted at this instant (epoch ms).
    Deleted(i64),
}

struct Change {
    /// Index of the entity in the request.
    slot: usize,
    id: u64,
    /// Position in the scrambled order.
    rank: u64,
    event: Event,
}

/// The request-log text: the two parameters that say what was asked (nothing secret).
pub fn describe(params: &HashMap<String, String>) -> String {
    let p = |k: &str| params.get(k).map_or("", String::as_str);
    format!(
        "entities={} changedSince={}",
        p("entities"),
        p("changedSince")
    )
}

/// The CDC answer for a request that passed the gate: the body, or a ValidationFault body
/// for a 400.
pub fn answer(
    store: &Store,
    params: &HashMap<String, String>,
    now: DateTime<Utc>,
    time: &str,
) -> Result<Value, Value> {
    let entities = requested(params.get("entities").map(String::as_str)).map_err(|detail| {
        envelope::fault(
            "ValidationFault",
            "2030",
            "Invalid or unsupported entity",
            &detail,
            time,
        )
    })?;
    let since =
        changed_since(params.get("changedSince").map(String::as_str), now).map_err(|detail| {
            envelope::fault(
                "ValidationFault",
                "2010",
                "Request has invalid or unsupported property",
                &detail,
                time,
            )
        })?;
    let mut gens: Vec<Option<&'static dyn EntityGen>> = Vec::new();
    let mut changes = Vec::new();
    for (slot, e) in entities.iter().enumerate() {
        // A served entity the sandbox has no records for simply has no changes.
        let Some(t) = store.read(e.qbo_name) else {
            gens.push(None);
            continue;
        };
        gens.push(Some(t.gen));
        collect(&t, slot, since, store.ctx.seed, &mut changes);
    }
    keep_scrambled(&mut changes, MAX_OBJECTS);
    let mut objects: Vec<Vec<Value>> = vec![Vec::new(); entities.len()];
    for c in changes {
        let obj = match (c.event, gens[c.slot]) {
            (Event::Live(row), Some(gen)) => super::custom_fields::serve(
                store::render(gen, &store.ctx, &row),
                super::custom_fields::wants_all(params),
            ),
            (Event::Live(_), None) => continue,
            (Event::Deleted(ms), _) => deleted(c.id, ms),
        };
        objects[c.slot].push(obj);
    }
    let responses: Vec<Value> = entities
        .iter()
        .zip(objects)
        .map(|(e, objs)| {
            if objs.is_empty() {
                // Harsh like QBO: an entity without changes is an empty object, no key.
                return json!({});
            }
            let n = objs.len();
            json!({ e.list_key: objs, "startPosition": 1, "maxResults": n, "totalCount": n })
        })
        .collect();
    Ok(json!({ "CDCResponse": [{ "QueryResponse": responses }], "time": time }))
}

/// The `entities` list: QBO names (any case), comma-separated, each served by CDC, no repeats.
fn requested(list: Option<&str>) -> Result<Vec<&'static Entity>, String> {
    let list = list.map(str::trim).unwrap_or_default();
    if list.is_empty() {
        return Err("entities is required: a comma-separated list such as Invoice,Customer".into());
    }
    let mut out: Vec<&'static Entity> = Vec::new();
    for name in list.split(',').map(str::trim) {
        let e = ENTITIES
            .iter()
            .find(|e| e.qbo_name.eq_ignore_ascii_case(name))
            .ok_or_else(|| format!("entity '{name}' is unknown"))?;
        if !e.cdc {
            return Err(format!(
                "entity '{}' is not supported by change data capture",
                e.qbo_name
            ));
        }
        if out.iter().any(|o| o.qbo_name == e.qbo_name) {
            return Err(format!("entity '{}' is listed twice", e.qbo_name));
        }
        out.push(e);
    }
    Ok(out)
}

/// `changedSince` as epoch ms: a date or date-time, offset-less read in the company's zone,
/// no older than the 30-day horizon.
fn changed_since(v: Option<&str>, now: DateTime<Utc>) -> Result<i64, String> {
    let v = v.map(str::trim).unwrap_or_default();
    if v.is_empty() {
        return Err(
            "changedSince is required: a date or date-time such as 2026-11-20T10:00:00-08:00"
                .into(),
        );
    }
    let since = clock::parse_instant_ms(v).ok_or_else(|| {
        format!("changedSince '{v}' is not a date (YYYY-MM-DD) or an ISO 8601 date-time")
    })?;
    let horizon = (now - Duration::days(HORIZON_DAYS)).timestamp_millis();
    if since < horizon {
        return Err(format!(
            "changedSince must be within the last {HORIZON_DAYS} days (got {v}, earliest {})",
            clock::format_secs(clock::from_millis(horizon))
        ));
    }
    Ok(since)
}

/// Live rows updated, and tombstones laid, at or after `since`. A re-created Id has no
/// tombstone, so the newest event is the only one.
fn collect(t: &Table, slot: usize, since: i64, seed: u64, out: &mut Vec<Change>) {
    let name = t.entity.qbo_name;
    for ((_, id), row) in t.by_updated.range((since, 0)..) {
        out.push(Change {
            slot,
            id: *id,
            rank: scramble(seed, name, *id),
            event: Event::Live(row.clone()),
        });
    }
    for (id, ms) in t.tombstones.iter().filter(|(_, ms)| **ms >= since) {
        out.push(Change {
            slot,
            id: *id,
            rank: scramble(seed, name, *id),
            event: Event::Deleted(*ms),
        });
    }
}

/// Keeps at most `cap` changes, the first ones in scrambled order, and sorts them that way.
fn keep_scrambled(changes: &mut Vec<Change>, cap: usize) {
    let key = |c: &Change| (c.rank, c.slot, c.id);
    if changes.len() > cap && cap > 0 {
        changes.select_nth_unstable_by_key(cap - 1, key);
        changes.truncate(cap);
    }
    changes.sort_unstable_by_key(key);
}

/// A stable position unrelated to time or Id order: the generators' hash of (seed, entity,
/// Id), under a salt of its own.
fn scramble(seed: u64, entity: &str, id: u64) -> u64 {
    const SCRAMBLE_SALT: u64 = 0xCDC;
    Rng::new(seed, entity, id, SCRAMBLE_SALT).next()
}

/// QBO's minimal shape for a deleted record.
fn deleted(id: u64, ms: i64) -> Value {
    json!({
        "domain": "QBO",
        "status": "Deleted",
        "Id": id.to_string(),
        "MetaData": { "LastUpdatedTime": clock::format_secs(clock::from_millis(ms)) },
    })
}
