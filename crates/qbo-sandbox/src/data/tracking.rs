//! Budget (a name list of monthly amounts per account), TimeActivity (hours worked, by
//! duration or by start and end time) and Attachable (files and notes linked to records).

use chrono::{Datelike, Duration, NaiveDate};
use serde_json::{json, Value};

use super::chart::{self, account_ref};
use super::lines::{class_ref, customer_ref, employee_ref, item_ref, vendor_ref};
use super::{clock, f, money, record, FieldKind, GenCtx, Inactive, KeyRule, Keys, Rng, Size, Spec};

pub const BUDGET: Spec = Spec {
    name: "Budget",
    fields: &[
        f("Name", FieldKind::Str),
        f("StartDate", FieldKind::Date),
        f("Active", FieldKind::Active),
    ],
    keys: KeyRule::List {
        max_edits: 2,
        inactive: Inactive::Rule(|id| id.is_multiple_of(3)),
    },
    size: Size::Fixed(3),
    needs: &[("Account", chart::MIN_ACCOUNTS)],
    render: render_budget,
};

/// A fiscal-year budget: one `BudgetDetail` per month and account.
fn render_budget(ctx: &GenCtx, k: &Keys, r: &mut Rng) -> Value {
    let year = clock::local_date(ctx.start).year() + (k.id as i32 - 1) % 2;
    let start = NaiveDate::from_ymd_opt(year, 1, 1).unwrap_or_default();
    let accounts = [chart::SERVICES, *r.pick(chart::EXPENSES)];
    let mut details = Vec::new();
    for month in 1..=12 {
        let day = NaiveDate::from_ymd_opt(year, month, 1).unwrap_or_default();
        for &account in &accounts {
            let mut d = json!({
                "BudgetDate": day.to_string(), "Amount": money(r.below(2_000_000) as i64),
                "AccountRef": account_ref(account),
            });
            if let Some(c) = class_ref(ctx, r) {
                d["ClassRef"] = c;
            }
            details.push(d);
        }
    }
    record(
        k,
        json!({
            "Name": format!("FY{year} – \"plan {}\"", k.id),
            "StartDate": start.to_string(),
            "EndDate": NaiveDate::from_ymd_opt(year, 12, 31).unwrap_or_default().to_string(),
            "BudgetType": "ProfitAndLoss", "BudgetEntryType": "Monthly",
            "Active": k.active.unwrap_or(true), "BudgetDetail": details,
        }),
    )
}

pub const TIME_ACTIVITY: Spec = Spec {
    name: "TimeActivity",
    fields: &[
        f("TxnDate", FieldKind::TxnDate),
        f("NameOf", FieldKind::Str),
        f("EmployeeRef", FieldKind::Ref),
        f("CustomerRef", FieldKind::Ref),
    ],
    keys: KeyRule::Txn {
        max_edits: 2,
        backdate_days: 7,
    },
    size: Size::PerInvoice { n: 5, min: 3 },
    needs: &[("Employee", 1)],
    render: render_time_activity,
};

/// Time worked by an employee (or a contractor vendor), recorded either as Hours/Minutes or
/// as StartTime/EndTime with a break, sometimes billable to a customer.
fn render_time_activity(ctx: &GenCtx, k: &Keys, r: &mut Rng) -> Value {
    let txn = k.txn_date.unwrap_or_default();
    let by_vendor = ctx.count("Vendor") > 0 && r.chance(20);
    let mut v = record(
        k,
        json!({
            "TxnDate": txn.to_string(),
            "NameOf": if by_vendor { "Vendor" } else { "Employee" },
            "BillableStatus": *r.pick(&["Billable", "NotBillable", "HasBeenBilled"]),
            "Taxable": false,
            "HourlyRate": money(2_500 + r.below(10_000) as i64),
            "Description": if r.chance(60) { json!("Pruned the \"big\" oak — Zoë's garden") } else { Value::Null },
        }),
    );
    if by_vendor {
        v["VendorRef"] = vendor_ref(ctx, 1 + r.below(ctx.count("Vendor")));
    } else {
        v["EmployeeRef"] = employee_ref(ctx, 1 + r.below(ctx.count("Employee").max(1)));
    }
    if let Some(cid) = ctx.pick(r, "Customer").filter(|_| r.chance(70)) {
        v["CustomerRef"] = customer_ref(ctx, cid);
    }
    if let Some(iid) = ctx.pick(r, "Item").filter(|_| r.chance(50)) {
        v["ItemRef"] = item_ref(ctx, iid);
    }
    if let Some(c) = class_ref(ctx, r) {
        v["ClassRef"] = c;
    }
    if r.chance(50) {
        v["Hours"] = json!(r.below(9));
        v["Minutes"] = json!(*r.pick(&[0, 15, 30, 45]));
    } else {
        let start = clock::local_midnight(txn) + Duration::hours(7 + r.below(4) as i64);
        let end = start + Duration::minutes(60 + 15 * r.below(24) as i64);
        v["StartTime"] = json!(clock::format_secs(start));
        v["EndTime"] = json!(clock::format_secs(end));
        v["BreakHours"] = json!(0);
        v["BreakMinutes"] = json!(*r.pick(&[0, 30]));
    }
    v
}

pub const ATTACHABLE: Spec = Spec {
    name: "Attachable",
    fields: &[
        f("FileName", FieldKind::Str),
        f("ContentType", FieldKind::Str),
    ],
    keys: KeyRule::Plain { max_edits: 1 },
    size: Size::PerInvoice { n: 20, min: 2 },
    needs: &[],
    render: render_attachable,
};

/// A file (receipt photo, signed PDF) or a plain note, linked to an invoice or a bill when
/// the company has them.
fn render_attachable(ctx: &GenCtx, k: &Keys, r: &mut Rng) -> Value {
    let target = if r.chance(50) {
        ctx.pick(r, "Invoice").map(|id| ("Invoice", id))
    } else {
        ctx.pick(r, "Bill").map(|id| ("Bill", id))
    };
    let refs: Vec<Value> = target
        .map(|(kind, id)| json!({ "EntityRef": { "type": kind, "value": id.to_string() }, "IncludeOnSend": false }))
        .into_iter()
        .collect();
    let mut v = record(k, json!({ "AttachableRef": refs }));
    if r.chance(20) {
        v["Note"] = json!("Customer called: \"leave it by the gate\" — 電話");
        return v;
    }
    let (name, ctype, category) = *r.pick(&[
        ("receipt.jpg", "image/jpeg", "Image"),
        ("signed estimate.pdf", "application/pdf", "Document"),
        ("reçu d'achat.png", "image/png", "Receipt"),
    ]);
    let file = format!("{}-{name}", k.id);
    v["FileName"] = json!(file);
    v["TempDownloadUri"] = json!(format!(
        "https://intuit-qbo-prod-sandbox.s3.amazonaws.com/{}/attachments/{}?X-Amz-Expires=900",
        k.id, file
    ));
    v["Size"] = json!(10_000 + r.below(2_000_000));
    v["ContentType"] = json!(ctype);
    v["Category"] = json!(category);
    if r.chance(40) {
        v["Note"] = json!("Scanned copy");
    }
    v
}
