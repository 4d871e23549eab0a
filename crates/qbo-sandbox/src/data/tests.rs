use std::collections::BTreeMap;

use chrono::{Duration, NaiveDate};
use serde_json::Value;

use super::*;
use qbo_core::entities::{self, ENTITIES};

fn ctx_with(counts: Counts) -> GenCtx {
    GenCtx {
        seed: 7,
        start: clock::local_midnight(NaiveDate::from_ymd_opt(2024, 1, 1).unwrap()),
        end: clock::local_midnight(NaiveDate::from_ymd_opt(2024, 7, 1).unwrap())
            - Duration::seconds(1),
        counts,
        multi_currency: false,
    }
}

fn ctx() -> GenCtx {
    ctx_with(default_counts(200, 50, 20, &BTreeMap::new()))
}

/// Every record of every entity, rendered.
fn company(c: &GenCtx) -> BTreeMap<&'static str, Vec<Value>> {
    SPECS
        .iter()
        .map(|s| {
            let n = c.count(s.name);
            let docs = (1..=n).map(|id| s.render(c, &s.keys(c, id, n))).collect();
            (s.name, docs)
        })
        .collect()
}

#[test]
fn deterministic_and_in_span() {
    let c = ctx();
    for g in generators() {
        for id in 1..=300 {
            let k = g.keys(&c, id, 300);
            assert_eq!(k, g.keys(&c, id, 300));
            assert_eq!(g.render(&c, &k), g.render(&c, &k));
            assert!(k.created_ms <= k.updated_ms);
            assert!(
                k.created_ms >= c.start.timestamp_millis()
                    && k.updated_ms <= c.end.timestamp_millis()
            );
            assert_eq!(k.updated_ms % 1000, 0);
        }
    }
}

#[test]
fn boundary_records_exist() {
    let c = ctx();
    let invoice = spec("Invoice").unwrap();
    let keys: Vec<Keys> = (1..=500).map(|id| invoice.keys(&c, id, 500)).collect();
    assert!(
        keys.iter().any(|k| k.updated_ms % DAY_MS == 0),
        "a UTC-midnight record"
    );
    let shown: Vec<String> = keys
        .iter()
        .map(|k| clock::format_secs(clock::from_millis(k.updated_ms)))
        .collect();
    assert!(
        shown.iter().any(|s| s.contains("T00:00:00-0")),
        "a local-midnight record"
    );
    assert!(shown
        .iter()
        .any(|s| s.contains("T16:00:00-08:00") || s.contains("T17:00:00-07:00")));
}

#[test]
fn invoice_shape() {
    let c = ctx_with(default_counts(10, 50, 20, &BTreeMap::new()));
    let invoice = spec("Invoice").unwrap();
    let v = invoice.render(&c, &invoice.keys(&c, 3, 10));
    let lines = v["Line"].as_array().unwrap();
    assert_eq!(lines.last().unwrap()["DetailType"], "SubTotalLineDetail");
    let cid: u64 = v["CustomerRef"]["value"].as_str().unwrap().parse().unwrap();
    assert!((1..=50).contains(&cid));
    assert_eq!(v["CustomerRef"]["name"], customer_name(7, cid).2.as_str());
    assert_eq!(v["Id"], "3");
}

#[test]
fn every_registered_entity_has_a_generator_with_the_registry_s_fields() {
    assert_eq!(SPECS.len(), ENTITIES.len());
    for e in ENTITIES {
        let s = spec(e.qbo_name).unwrap_or_else(|| panic!("no generator for {}", e.qbo_name));
        let has = |kind| s.fields.iter().any(|f| f.kind == kind);
        assert_eq!(
            has(FieldKind::TxnDate),
            e.txn_date,
            "{} TxnDate",
            e.qbo_name
        );
        assert_eq!(has(FieldKind::Active), e.name_list, "{} Active", e.qbo_name);
        assert_eq!(
            matches!(s.keys, KeyRule::Txn { .. }),
            e.txn_date,
            "{} keys",
            e.qbo_name
        );
        assert_eq!(matches!(s.keys, KeyRule::List { .. }), e.name_list);
        if e.is_whole() {
            assert!(s.fields.is_empty(), "{} is served whole", e.qbo_name);
        }
    }
}

/// The entity a reference field points at, by QBO's naming.
fn target_of(key: &str, v: &Value) -> Option<&'static str> {
    Some(match key {
        "CustomerRef" => "Customer",
        "VendorRef" => "Vendor",
        "EmployeeRef" => "Employee",
        "ItemRef" | "GroupItemRef" => "Item",
        "ClassRef" => "Class",
        "DepartmentRef" => "Department",
        "SalesTermRef" | "TermRef" => "Term",
        "PaymentMethodRef" => "PaymentMethod",
        "TaxRateRef" => "TaxRate",
        "TxnTaxCodeRef" => "TaxCode",
        "AgencyRef" => "TaxAgency",
        "EntityRef" => match v["type"].as_str()? {
            "Vendor" => "Vendor",
            "Customer" => "Customer",
            "Invoice" => "Invoice",
            "Bill" => "Bill",
            other => panic!("EntityRef type {other}"),
        },
        k if k.ends_with("AccountRef") || k == "AccountRef" => "Account",
        _ => return None,
    })
}

/// Every `{..}Ref` and `LinkedTxn` in `v`: (target entity, id, name if given).
fn refs(v: &Value, out: &mut Vec<(&'static str, String, Option<String>)>) {
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                if let Some(t) = target_of(k, x) {
                    let id = x["value"].as_str().unwrap_or_else(|| panic!("{k}: {x}"));
                    out.push((t, id.into(), x["name"].as_str().map(str::to_string)));
                }
                if k == "LinkedTxn" {
                    for l in x.as_array().unwrap() {
                        let t = entities::by_qbo_name(l["TxnType"].as_str().unwrap()).unwrap();
                        out.push((t.qbo_name, l["TxnId"].as_str().unwrap().into(), None));
                    }
                }
                refs(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

#[test]
fn every_reference_names_a_record_that_exists_by_its_name() {
    let c = ctx();
    let all = company(&c);
    let mut checked = BTreeMap::<&str, usize>::new();
    for (entity, docs) in &all {
        for doc in docs {
            let mut found = Vec::new();
            refs(record_body(doc), &mut found);
            for (target, id, name) in found {
                let idx: usize = id.parse().unwrap();
                let rec = all[target]
                    .get(idx - 1)
                    .unwrap_or_else(|| panic!("{entity} refers to missing {target} {id}"));
                if let Some(name) = name {
                    let names = ["Name", "DisplayName", "FullyQualifiedName"];
                    assert!(
                        names.iter().any(|n| rec[n] == name.as_str()),
                        "{entity} names {target} {id} `{name}`, which is {rec}"
                    );
                }
                *checked.entry(target).or_default() += 1;
            }
        }
    }
    for target in [
        "Customer",
        "Vendor",
        "Employee",
        "Item",
        "Account",
        "Class",
        "Department",
        "Term",
        "PaymentMethod",
        "TaxRate",
        "TaxCode",
        "TaxAgency",
        "Invoice",
        "Bill",
        "Payment",
    ] {
        assert!(
            checked.get(target).is_some_and(|n| *n > 0),
            "no ref to {target}: {checked:?}"
        );
    }
}

#[test]
fn a_payment_names_the_customer_of_the_invoice_it_pays() {
    let c = ctx();
    let all = company(&c);
    for p in &all["Payment"] {
        if let Some(first) = p["Line"].as_array().unwrap().first() {
            let inv: usize = first["LinkedTxn"][0]["TxnId"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(p["CustomerRef"], all["Invoice"][inv - 1]["CustomerRef"]);
        }
    }
    for bp in &all["BillPayment"] {
        if let Some(first) = bp["Line"].as_array().unwrap().first() {
            let bill: usize = first["LinkedTxn"][0]["TxnId"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(bp["VendorRef"], all["Bill"][bill - 1]["VendorRef"]);
        }
    }
}

#[test]
fn every_name_list_has_active_and_inactive_members() {
    let c = ctx();
    let all = company(&c);
    for e in ENTITIES.iter().filter(|e| e.name_list) {
        let docs = &all[e.qbo_name];
        let inactive = docs.iter().filter(|d| d["Active"] == false).count();
        assert!(
            inactive > 0 && inactive < docs.len(),
            "{}: {inactive} of {} inactive",
            e.qbo_name,
            docs.len()
        );
    }
}

#[test]
fn the_line_detail_types_all_occur() {
    let c = ctx();
    let text = serde_json::to_string(&company(&c)).unwrap();
    for t in [
        "SalesItemLineDetail",
        "GroupLineDetail",
        "DescriptionOnly",
        "SubTotalLineDetail",
        "DiscountLineDetail",
        "JournalEntryLineDetail",
        "AccountBasedExpenseLineDetail",
        "ItemBasedExpenseLineDetail",
        "DepositLineDetail",
        "\"PostingType\":\"Credit\"",
        "\"CustomField\":[]",
        "\"StringType\"",
        "\"BudgetDetail\"",
        "\"StartTime\"",
        "\"Hours\"",
        "O'Brien",
    ] {
        assert!(text.contains(t), "{t} never occurs");
    }
}

#[test]
fn singletons_and_recurring_templates_have_qbo_s_shapes() {
    let c = ctx();
    let all = company(&c);
    for single in ["CompanyInfo", "Preferences"] {
        assert_eq!(all[single].len(), 1);
        assert_eq!(all[single][0]["Id"], "1");
    }
    assert!(all["CompanyInfo"][0]["CompanyName"].is_string());
    assert_eq!(
        all["Preferences"][0]["CurrencyPrefs"]["HomeCurrency"]["value"],
        "USD"
    );
    for t in &all["RecurringTransaction"] {
        let o = t.as_object().unwrap();
        assert_eq!(o.len(), 1, "wrapped in its type: {t}");
        let kind = o.keys().next().unwrap();
        assert!(["Invoice", "Bill", "JournalEntry"].contains(&kind.as_str()));
        let body = record_body(t);
        assert!(body["Id"].is_string() && body["MetaData"]["LastUpdatedTime"].is_string());
        assert!(body["RecurringInfo"]["ScheduleInfo"]["IntervalType"].is_string());
        assert!(body.get("TxnDate").is_none(), "a template has no date");
    }
}

#[test]
fn budgets_cover_twelve_months_and_journal_entries_balance() {
    let c = ctx();
    let all = company(&c);
    for b in &all["Budget"] {
        assert_eq!(b["BudgetDetail"].as_array().unwrap().len(), 24);
    }
    for je in &all["JournalEntry"] {
        let sum = |posting: &str| -> f64 {
            je["Line"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|l| l["JournalEntryLineDetail"]["PostingType"] == posting)
                .map(|l| l["Amount"].as_f64().unwrap())
                .sum()
        };
        assert!((sum("Debit") - sum("Credit")).abs() < 0.001, "{je}");
    }
}

#[test]
fn sizes_scale_with_the_three_counts_and_overrides_win() {
    let none = BTreeMap::new();
    let small = default_counts(240, 60, 30, &none);
    assert_eq!(small.get("Invoice"), 240);
    assert_eq!(small.get("CompanyInfo"), 1);
    assert_eq!(small.get("Preferences"), 1);
    assert!(small.get("Account") >= chart::MIN_ACCOUNTS);
    for s in SPECS {
        assert!(small.get(s.name) > 0, "{} is empty", s.name);
    }
    let big = default_counts(500_000, 500_000, 500_000, &none);
    assert_eq!(big.get("Invoice"), 500_000);
    assert_eq!(
        big.get("Payment"),
        spec::DERIVED_MAX as u64,
        "derived sizes are capped"
    );
    let overrides = BTreeMap::from([("Bill".to_string(), 7usize)]);
    assert_eq!(default_counts(240, 60, 30, &overrides).get("Bill"), 7);
    assert!(check_counts(&small).is_ok());
}

#[test]
fn a_reference_to_an_empty_entity_is_a_config_error() {
    let overrides = BTreeMap::from([("Vendor".to_string(), 0usize)]);
    let err = check_counts(&default_counts(100, 30, 10, &overrides)).unwrap_err();
    assert!(err.contains("Vendor"), "{err}");
    let overrides = BTreeMap::from([("Account".to_string(), 10usize)]);
    assert!(check_counts(&default_counts(100, 30, 10, &overrides)).is_err());
}

/// Cents of a JSON money amount, failing on more than two decimals (QBO's money).
fn cents(v: &Value) -> i64 {
    let x = v.as_f64().unwrap_or_else(|| panic!("money: {v}"));
    let c = (x * 100.0).round();
    assert!((x * 100.0 - c).abs() < 1e-6, "more than two decimals: {v}");
    c as i64
}

#[test]
fn payments_and_invoices_link_both_ways_and_balances_add_up() {
    for c in [
        ctx(),
        ctx_with(default_counts(
            30,
            10,
            5,
            &BTreeMap::from([("Payment".to_string(), 70)]),
        )),
    ] {
        let all = company(&c);
        let mut applied: BTreeMap<String, Vec<(String, i64)>> = BTreeMap::new();
        for p in &all["Payment"] {
            let mut sum = 0;
            for line in p["Line"].as_array().unwrap() {
                let inv = line["LinkedTxn"][0]["TxnId"].as_str().unwrap().to_string();
                assert_eq!(line["LinkedTxn"][0]["TxnType"], "Invoice");
                let amount = cents(&line["Amount"]);
                assert!(amount > 0, "{p}");
                sum += amount;
                applied
                    .entry(inv)
                    .or_default()
                    .push((p["Id"].as_str().unwrap().into(), amount));
            }
            assert_eq!(
                cents(&p["TotalAmt"]),
                sum + cents(&p["UnappliedAmt"]),
                "{p}"
            );
        }
        let (mut paid_in_full, mut open, mut partly) = (0, 0, 0);
        for inv in &all["Invoice"] {
            let id = inv["Id"].as_str().unwrap();
            let payers = applied.remove(id).unwrap_or_default();
            let linked: Vec<String> = inv["LinkedTxn"]
                .as_array()
                .unwrap()
                .iter()
                .inspect(|l| assert_eq!(l["TxnType"], "Payment"))
                .map(|l| l["TxnId"].as_str().unwrap().to_string())
                .collect();
            let ids: Vec<String> = payers.iter().map(|(p, _)| p.clone()).collect();
            assert_eq!(linked, ids, "invoice {id} links the payments that pay it");
            let total = cents(&inv["TotalAmt"]);
            let balance = cents(&inv["Balance"]);
            assert_eq!(
                balance,
                total - payers.iter().map(|(_, a)| a).sum::<i64>(),
                "{inv}"
            );
            assert!(balance >= 0);
            match (balance, payers.is_empty()) {
                (0, false) => paid_in_full += 1,
                (_, true) => open += 1,
                _ => partly += 1,
            }
            // Lines add up: items, groups and the discount; tax on top.
            let lines = inv["Line"].as_array().unwrap();
            let sub: i64 = lines
                .iter()
                .filter(|l| {
                    matches!(
                        l["DetailType"].as_str(),
                        Some("SalesItemLineDetail" | "GroupLineDetail")
                    )
                })
                .map(|l| cents(&l["Amount"]))
                .sum();
            let discount: i64 = lines
                .iter()
                .filter(|l| l["DetailType"] == "DiscountLineDetail")
                .map(|l| cents(&l["Amount"]))
                .sum();
            let tax = cents(&inv["TxnTaxDetail"]["TotalTax"]);
            assert_eq!(total, sub - discount + tax, "{inv}");
            if tax > 0 {
                let tl = &inv["TxnTaxDetail"]["TaxLine"][0];
                assert_eq!(cents(&tl["Amount"]), tax);
                assert_eq!(tl["DetailType"], "TaxLineDetail");
                assert!(tl["TaxLineDetail"]["TaxRateRef"]["value"].is_string());
            }
            assert!(inv["BillAddr"]["Line1"].is_string(), "{inv}");
        }
        assert!(
            applied.is_empty(),
            "payments of invoices that do not exist: {applied:?}"
        );
        let fewer_payments = all["Payment"].len() < all["Invoice"].len();
        assert!(
            paid_in_full > 0 && partly > 0 && (open > 0) == fewer_payments,
            "{paid_in_full} {open} {partly}"
        );
    }
}

#[test]
fn invoices_carry_every_line_kind_tax_and_terms() {
    let c = ctx();
    let all = company(&c);
    let invoices = &all["Invoice"];
    let kinds: std::collections::BTreeSet<&str> = invoices
        .iter()
        .flat_map(|i| i["Line"].as_array().unwrap())
        .filter_map(|l| l["DetailType"].as_str())
        .collect();
    for kind in [
        "SalesItemLineDetail",
        "GroupLineDetail",
        "DescriptionOnly",
        "DiscountLineDetail",
        "SubTotalLineDetail",
    ] {
        assert!(kinds.contains(kind), "{kind} on some invoice: {kinds:?}");
    }
    assert!(invoices
        .iter()
        .any(|i| i["TxnTaxDetail"]["TaxLine"].is_array()));
    assert!(invoices
        .iter()
        .any(|i| i["SalesTermRef"]["value"].is_string()));
    // Every money amount anywhere has at most two decimals.
    fn walk(v: &Value) {
        match v {
            Value::Object(o) => {
                for (k, x) in o {
                    if matches!(
                        k.as_str(),
                        "Amount"
                            | "TotalAmt"
                            | "Balance"
                            | "UnitPrice"
                            | "TotalTax"
                            | "UnappliedAmt"
                    ) {
                        cents(x);
                    }
                    walk(x);
                }
            }
            Value::Array(a) => a.iter().for_each(walk),
            _ => {}
        }
    }
    all.values().flatten().for_each(walk);
}

/// QBO refuses a bill payment that applies more than the bill's open balance: every bill
/// payment applies at most what its bill had left, the bill links the payments that pay it,
/// and its balance is its total less what they applied.
#[test]
fn bill_payments_and_bills_link_both_ways_and_never_overpay() {
    for c in [
        ctx(),
        ctx_with(default_counts(
            30,
            10,
            5,
            &BTreeMap::from([("BillPayment".to_string(), 40)]),
        )),
    ] {
        let all = company(&c);
        let mut applied: BTreeMap<String, Vec<(String, i64)>> = BTreeMap::new();
        for bp in &all["BillPayment"] {
            let mut sum = 0;
            for line in bp["Line"].as_array().unwrap() {
                assert_eq!(line["LinkedTxn"][0]["TxnType"], "Bill");
                let bill = line["LinkedTxn"][0]["TxnId"].as_str().unwrap().to_string();
                let amount = cents(&line["Amount"]);
                assert!(amount > 0, "{bp}");
                sum += amount;
                applied
                    .entry(bill)
                    .or_default()
                    .push((bp["Id"].as_str().unwrap().into(), amount));
            }
            if sum > 0 {
                assert_eq!(cents(&bp["TotalAmt"]), sum, "{bp}");
            }
        }
        let (mut paid_in_full, mut open, mut partly) = (0, 0, 0);
        for bill in &all["Bill"] {
            let id = bill["Id"].as_str().unwrap();
            let payers = applied.remove(id).unwrap_or_default();
            let linked: Vec<String> = bill["LinkedTxn"]
                .as_array()
                .unwrap()
                .iter()
                .inspect(|l| assert_eq!(l["TxnType"], "BillPayment"))
                .map(|l| l["TxnId"].as_str().unwrap().to_string())
                .collect();
            let ids: Vec<String> = payers.iter().map(|(p, _)| p.clone()).collect();
            assert_eq!(linked, ids, "bill {id} links the payments that pay it");
            let total = cents(&bill["TotalAmt"]);
            let balance = cents(&bill["Balance"]);
            assert_eq!(
                balance,
                total - payers.iter().map(|(_, a)| a).sum::<i64>(),
                "{bill}"
            );
            assert!((0..=total).contains(&balance), "overpaid: {bill}");
            match (balance, payers.is_empty()) {
                (0, false) => paid_in_full += 1,
                (_, true) => open += 1,
                _ => partly += 1,
            }
        }
        assert!(
            applied.is_empty(),
            "payments of bills that do not exist: {applied:?}"
        );
        let fewer_payments = all["BillPayment"].len() < all["Bill"].len();
        assert!(
            paid_in_full > 0 && partly > 0 && (open > 0) == fewer_payments,
            "{paid_in_full} {open} {partly}"
        );
    }
}
