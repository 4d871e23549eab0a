//! Evaluator tests against a small generated store plus planted boundary records.

use chrono::NaiveDate;
use serde_json::{json, Value};

use super::super::clock;
use super::super::data::{default_counts, GenCtx};
use super::super::query;
use super::super::store::{Row, Store};
use super::*;

fn store() -> Store {
    let ctx = GenCtx {
        seed: 1,
        start: clock::local_midnight(NaiveDate::from_ymd_opt(2024, 1, 1).unwrap()),
        end: clock::local_midnight(NaiveDate::from_ymd_opt(2024, 4, 1).unwrap()),
        counts: default_counts(300, 40, 10, &Default::default()),
        multi_currency: false,
    };
    let s = Store::generate(ctx);
    let plant = |entity: &str, v: Value| {
        let mut t = s.write(entity).unwrap();
        let keys = t.keys_from_json(&v).unwrap();
        t.upsert(Row {
            keys,
            doc: Some(std::sync::Arc::new(v)),
        });
    };
    let meta = |t: &str| json!({ "CreateTime": t, "LastUpdatedTime": t });
    plant(
        "Customer",
        json!({"Id": "1001", "DisplayName": "O'Brien", "Active": true, "MetaData": meta("2024-02-01T10:00:00-08:00")}),
    );
    plant(
        "Customer",
        json!({"Id": "1002", "DisplayName": "back\\slash", "Active": false, "MetaData": meta("2024-02-01T10:00:00-08:00")}),
    );
    plant(
        "Invoice",
        json!({"Id": "2001", "TxnDate": "2024-03-04", "MetaData": meta("2024-03-04T00:00:00-08:00")}),
    );
    plant(
        "Invoice",
        json!({"Id": "2002", "TxnDate": "2024-03-03", "MetaData": meta("2024-03-03T23:59:59-08:00")}),
    );
    plant(
        "Invoice",
        json!({"Id": "2003", "TxnDate": "2024-03-03", "MetaData": meta("2024-03-03T16:00:00-08:00")}),
    );
    s
}

/// Ids matching a query, in order (or the count for COUNT queries, as a single element).
fn run(s: &Store, text: &str) -> Result<Vec<u64>, String> {
    let q = query::parse(text)?;
    let t = s.read(&q.entity).ok_or("no entity")?;
    let c = compile(&q, &t)?;
    let rows = select(&t, &s.ctx, &c);
    if c.count {
        return Ok(vec![rows.len() as u64]);
    }
    Ok(page(&rows, &c).iter().map(|r| r.keys.id).collect())
}

#[test]
fn escaped_strings_match() {
    let s = store();
    assert_eq!(
        run(&s, r"SELECT * FROM Customer WHERE DisplayName = 'O\'Brien'").unwrap(),
        vec![1001]
    );
    // Inactive, so it must name Active to be seen.
    assert_eq!(
        run(
            &s,
            r"SELECT * FROM Customer WHERE DisplayName = 'back\\slash'"
        )
        .unwrap(),
        Vec::<u64>::new()
    );
    assert_eq!(
        run(
            &s,
            r"SELECT * FROM Customer WHERE DisplayName = 'back\\slash' AND Active = false"
        )
        .unwrap(),
        vec![1002]
    );
}

#[test]
fn date_only_literals_are_company_local() {
    let s = store();
    let q = "SELECT * FROM Invoice WHERE MetaData.LastUpdatedTime >= '2024-03-04' AND MetaData.LastUpdatedTime < '2024-03-04T00:00:01'";
    assert_eq!(run(&s, q).unwrap(), vec![2001]);
    let q = "SELECT * FROM Invoice WHERE MetaData.LastUpdatedTime >= '2024-03-04T00:00:00Z' AND MetaData.LastUpdatedTime <= '2024-03-04T00:00:00Z'";
    assert_eq!(run(&s, q).unwrap(), vec![2003]);
    // Lowercase 'Metadata' works too, like in QBO.
    let q = "SELECT * FROM Invoice WHERE Metadata.LastUpdatedTime = '2024-03-03T23:59:59-08:00'";
    assert_eq!(run(&s, q).unwrap(), vec![2002]);
}

#[test]
fn txn_date_compares_as_date() {
    let s = store();
    let ids = run(
        &s,
        "SELECT * FROM Invoice WHERE TxnDate = '2024-03-03' AND Id >= '2000'",
    )
    .unwrap();
    assert_eq!(ids, vec![2002, 2003]);
    assert!(run(
        &s,
        "SELECT * FROM Invoice WHERE TxnDate = '2024-03-03T00:00:00'"
    )
    .is_err());
}

#[test]
fn in_like_and_numeric_id_order() {
    let s = store();
    assert_eq!(
        run(&s, "SELECT * FROM Invoice WHERE Id IN ('10', '9', 2001)").unwrap(),
        vec![9, 10, 2001]
    );
    let ids = run(&s, "SELECT * FROM Customer WHERE DisplayName LIKE 'o\\'b%'").unwrap();
    assert!(ids.contains(&1001));
    assert_eq!(
        run(&s, "SELECT * FROM Invoice WHERE Id > '8' AND Id < '11'").unwrap(),
        vec![9, 10]
    );
}

#[test]
fn active_filtering_rules() {
    let s = store();
    let all = run(
        &s,
        "SELECT COUNT(*) FROM Customer WHERE Active IN (true, false)",
    )
    .unwrap()[0];
    let visible = run(&s, "SELECT COUNT(*) FROM Customer").unwrap()[0];
    let inactive = run(&s, "SELECT COUNT(*) FROM Customer WHERE Active = false").unwrap()[0];
    assert_eq!(all, 42);
    assert!(inactive >= 1);
    assert_eq!(visible + inactive, all);
    assert!(
        run(&s, "SELECT * FROM Invoice WHERE Active = true").is_err(),
        "Invoice has no Active"
    );
    assert!(run(&s, "SELECT * FROM Customer WHERE Active > false").is_err());
}

#[test]
fn paging_by_offsets_covers_everything_once() {
    let s = store();
    let window = "FROM Invoice WHERE MetaData.LastUpdatedTime >= '2024-02-01' AND MetaData.LastUpdatedTime < '2024-03-01'";
    let total = run(&s, &format!("SELECT COUNT(*) {window}")).unwrap()[0];
    let mut seen = Vec::new();
    let mut start = 1;
    loop {
        let ids = run(&s, &format!("SELECT * {window} ORDERBY MetaData.LastUpdatedTime STARTPOSITION {start} MAXRESULTS 7")).unwrap();
        if ids.is_empty() {
            break;
        }
        start += ids.len();
        seen.extend(ids);
    }
    assert_eq!(seen.len() as u64, total);
    let t = s.read("Invoice").unwrap();
    let times: Vec<i64> = seen.iter().map(|id| t.rows[id].keys.updated_ms).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]));
    // Brute force agrees with the index scan.
    let lo = clock::parse_instant_ms("2024-02-01").unwrap();
    let hi = clock::parse_instant_ms("2024-03-01").unwrap();
    let brute = t
        .rows
        .values()
        .filter(|r| r.keys.updated_ms >= lo && r.keys.updated_ms < hi)
        .count() as u64;
    assert_eq!(brute, total);
}

#[test]
fn orderby_desc_and_other_fields() {
    let s = store();
    let ids = run(&s, "SELECT * FROM Invoice ORDERBY Id DESC MAXRESULTS 3").unwrap();
    assert_eq!(ids, vec![2003, 2002, 2001]);
    let ids = run(
        &s,
        "SELECT * FROM Invoice WHERE TxnDate >= '2024-01-01' ORDERBY TotalAmt DESC MAXRESULTS 1000",
    )
    .unwrap();
    let t = s.read("Invoice").unwrap();
    let amounts: Vec<f64> = ids
        .iter()
        .map(|id| {
            t.render(&s.ctx, &t.rows[id])["TotalAmt"]
                .as_f64()
                .unwrap_or(-1.0)
        })
        .collect();
    // Planted invoices have no TotalAmt: nulls sort first ascending, so last descending.
    assert!(amounts.windows(2).all(|w| w[0] >= w[1]), "{amounts:?}");
}

#[test]
fn validation_errors() {
    let s = store();
    assert!(run(&s, "SELECT * FROM Invoice WHERE Nope = '1'").is_err());
    assert!(run(&s, "SELECT * FROM Invoice WHERE Id LIKE '1%'").is_err());
    assert!(run(
        &s,
        "SELECT * FROM Invoice WHERE MetaData.LastUpdatedTime > 'soon'"
    )
    .is_err());
    assert!(run(
        &s,
        "SELECT * FROM Invoice WHERE MetaData.LastUpdatedTime > 5"
    )
    .is_err());
    assert!(run(&s, "SELECT * FROM Invoice ORDERBY Nope").is_err());
    assert!(run(&s, "SELECT * FROM Invoice STARTPOSITION 0").is_err());
    assert!(run(&s, "SELECT * FROM Invoice MAXRESULTS 1001").is_err());
}

#[test]
fn pages_past_the_end_are_empty_and_empty_ranges_work() {
    let s = store();
    assert!(run(&s, "SELECT * FROM Invoice STARTPOSITION 100000")
        .unwrap()
        .is_empty());
    let q = "SELECT COUNT(*) FROM Invoice WHERE MetaData.LastUpdatedTime > '2024-03-01' AND MetaData.LastUpdatedTime < '2024-02-01'";
    assert_eq!(run(&s, q).unwrap(), vec![0]);
}

#[test]
fn window_for_fail_injection() {
    let s = store();
    let q = query::parse(
        "SELECT * FROM Invoice WHERE TxnDate >= '2024-03-04' AND TxnDate < '2024-03-05'",
    )
    .unwrap();
    let t = s.read("Invoice").unwrap();
    let (lo, hi) = window_ms(&compile(&q, &t).unwrap()).unwrap();
    assert_eq!(lo, clock::parse_instant_ms("2024-03-04").unwrap());
    assert_eq!(hi, clock::parse_instant_ms("2024-03-05").unwrap() - 1);
    let q = query::parse("SELECT * FROM Invoice").unwrap();
    assert_eq!(window_ms(&compile(&q, &t).unwrap()), None);
}

#[test]
fn projections_keep_only_selected_fields_the_record_has() {
    let s = store();
    let q = query::parse(
        "SELECT Id, DueDate, MetaData.CreateTime, CustomerRef FROM Invoice WHERE Id >= '2002'",
    )
    .unwrap();
    let t = s.read("Invoice").unwrap();
    let c = compile(&q, &t).unwrap();
    let rows = select(&t, &s.ctx, &c);
    let out: Vec<Value> = rows.iter().map(|r| output(&t, &s.ctx, r, &c)).collect();
    // Planted invoices have no DueDate or CustomerRef: those keys are simply absent.
    assert_eq!(
        out,
        vec![
            json!({"Id": "2002", "MetaData": {"CreateTime": "2024-03-03T23:59:59-08:00"}, "domain": "QBO", "sparse": true}),
            json!({"Id": "2003", "MetaData": {"CreateTime": "2024-03-03T16:00:00-08:00"}, "domain": "QBO", "sparse": true}),
        ]
    );
    // A generated invoice has them; refs are kept whole.
    let q = query::parse("SELECT CustomerRef FROM Invoice WHERE Id = '1'").unwrap();
    let c = compile(&q, &t).unwrap();
    let row = select(&t, &s.ctx, &c)[0];
    let full = t.render(&s.ctx, row);
    assert_eq!(
        output(&t, &s.ctx, row, &c),
        json!({"CustomerRef": full["CustomerRef"], "domain": "QBO", "sparse": true})
    );
    assert!(full["CustomerRef"]["value"].is_string());
    let q = query::parse("SELECT Id, Bogus FROM Invoice").unwrap();
    assert!(compile(&q, &t).unwrap_err().contains("Bogus"));
}

#[test]
fn projections_look_inside_a_wrapped_template() {
    let fields = [
        FieldDef {
            path: "Id",
            kind: FieldKind::Id,
        },
        FieldDef {
            path: "MetaData.LastUpdatedTime",
            kind: FieldKind::UpdateTime,
        },
    ];
    let t = "2024-03-03T16:00:00-08:00";
    let doc = json!({"Invoice": {"Id": "7", "MetaData": {"CreateTime": t, "LastUpdatedTime": t}, "Line": []}});
    assert_eq!(
        project(&doc, &fields),
        json!({"Invoice": {"Id": "7", "MetaData": {"LastUpdatedTime": t}, "domain": "QBO", "sparse": true}})
    );
    let flat = json!({"Id": "8", "Line": [], "MetaData": {"LastUpdatedTime": t}});
    assert_eq!(
        project(&flat, &fields[..1]),
        json!({"Id": "8", "domain": "QBO", "sparse": true})
    );
}
