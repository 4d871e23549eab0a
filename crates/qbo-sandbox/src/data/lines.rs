//! References and transaction lines shared by the transaction families: every ref names a
//! record that exists (with the name QBO shows next to it), and each line carries one of
//! QBO's detail types.

use serde_json::{json, Value};

use super::chart::{self, account_ref};
use super::names::{self, customer_name, employee_name, item_basics, vendor_name};
use super::{money, GenCtx, Rng};

pub fn usd() -> Value {
    json!({ "value": "USD", "name": "United States Dollar" })
}

pub fn customer_ref(ctx: &GenCtx, cid: u64) -> Value {
    json!({ "value": cid.to_string(), "name": customer_name(ctx.seed, cid).2 })
}

pub fn vendor_ref(ctx: &GenCtx, vid: u64) -> Value {
    json!({ "value": vid.to_string(), "name": vendor_name(ctx.seed, vid).1 })
}

pub fn employee_ref(ctx: &GenCtx, eid: u64) -> Value {
    json!({ "value": eid.to_string(), "name": employee_name(ctx.seed, eid).2 })
}

pub fn item_ref(ctx: &GenCtx, iid: u64) -> Value {
    json!({ "value": iid.to_string(), "name": item_basics(ctx.seed, iid).0 })
}

pub fn term_ref(id: u64) -> Value {
    json!({ "value": id.to_string(), "name": names::term(id).0 })
}

pub fn payment_method_ref(id: u64) -> Value {
    json!({ "value": id.to_string(), "name": names::payment_method(id).0 })
}

/// A `ClassRef` on some lines and transactions (when the company has classes).
pub fn class_ref(ctx: &GenCtx, r: &mut Rng) -> Option<Value> {
    let id = ctx.pick(r, "Class").filter(|_| r.chance(40))?;
    Some(json!({ "value": id.to_string(), "name": names::class_name(id) }))
}

/// A `DepartmentRef` (QBO's "location") on some transactions.
pub fn department_ref(ctx: &GenCtx, r: &mut Rng) -> Option<Value> {
    let id = ctx.pick(r, "Department").filter(|_| r.chance(35))?;
    Some(json!({ "value": id.to_string(), "name": names::department_name(id) }))
}

/// A `SalesTermRef`/`TermRef` on some transactions.
pub fn maybe_term(ctx: &GenCtx, r: &mut Rng) -> Option<Value> {
    ctx.pick(r, "Term").filter(|_| r.chance(60)).map(term_ref)
}

pub fn maybe_payment_method(ctx: &GenCtx, r: &mut Rng) -> Option<Value> {
    ctx.pick(r, "PaymentMethod")
        .filter(|_| r.chance(70))
        .map(payment_method_ref)
}

/// `TxnTaxDetail` and the tax in cents. Tax is charged (7.25% or whatever the code's first
/// rate is) when lines marked `TAX` add up to `taxable` cents and the company has tax codes;
/// then it names the code and carries QBO's `TaxLine`. Otherwise `{"TotalTax": 0}`.
pub fn tax_detail(ctx: &GenCtx, r: &mut Rng, taxable: i64) -> (Value, i64) {
    let code = ctx.pick(r, "TaxCode").filter(|_| taxable > 0);
    let rates = ctx.count("TaxRate");
    match code.filter(|_| rates > 0) {
        Some(code) => {
            let rate_id = 1 + code % rates;
            let percent = names::tax_rate(rate_id).1;
            let tax = (taxable as f64 * percent / 100.0).round() as i64;
            let detail = json!({
                "TxnTaxCodeRef": { "value": code.to_string() },
                "TotalTax": money(tax),
                "TaxLine": [{
                    "Amount": money(tax), "DetailType": "TaxLineDetail",
                    "TaxLineDetail": {
                        "TaxRateRef": { "value": rate_id.to_string() },
                        "PercentBased": true, "TaxPercent": percent,
                        "NetAmountTaxable": money(taxable),
                    },
                }],
            });
            (detail, tax)
        }
        None => (json!({ "TotalTax": 0 }), 0),
    }
}

/// `CustomField` as QBO keeps it on a form: sometimes empty, sometimes the "Crew #" (a legacy
/// field, DefinitionId 1 to 3), and on every third form with one also a second legacy field and
/// two of QBO Advanced's enhanced fields (long DefinitionIds, any type), which QBO only sends
/// to a request with `include=enhancedAllCustomFields`. The extras follow from the id, so the
/// random stream (and every other value of the company) is as before.
pub fn custom_fields(r: &mut Rng, id: u64) -> Value {
    if !r.chance(50) {
        return json!([]);
    }
    let crew = json!({ "DefinitionId": "1", "Name": "Crew #", "Type": "StringType", "StringValue": format!("{}", 100 + r.below(50)) });
    if !id.is_multiple_of(3) {
        return json!([crew]);
    }
    json!([
        crew,
        { "DefinitionId": "2", "Name": "Job site", "Type": "StringType", "StringValue": format!("Site {id}") },
        { "DefinitionId": "1000000001", "Name": "Project", "Type": "StringType", "StringValue": format!("P-{id}") },
        { "DefinitionId": "1000000002", "Name": "Hours", "Type": "NumberType", "NumberValue": id % 40 },
    ])
}

/// A `SalesItemLineDetail` line, its amount, and that amount again if the line is taxable.
fn sales_item_line(ctx: &GenCtx, r: &mut Rng, n: u64) -> (Value, i64, i64) {
    let iid = 1 + r.below(ctx.count("Item").max(1));
    let (iname, _, price) = item_basics(ctx.seed, iid);
    let qty = 1 + r.below(10) as i64;
    let taxable = r.chance(30);
    let mut detail = json!({
        "ItemRef": { "value": iid.to_string(), "name": iname },
        "UnitPrice": money(price), "Qty": qty,
        "ItemAccountRef": account_ref(chart::SALES_OF_PRODUCT),
        "TaxCodeRef": { "value": if taxable { "TAX" } else { "NON" } },
    });
    if let Some(c) = class_ref(ctx, r) {
        detail["ClassRef"] = c;
    }
    let line = json!({
        "Id": n.to_string(), "LineNum": n, "Amount": money(price * qty),
        "Description": if r.chance(70) { json!(format!("{iname} × {qty}")) } else { Value::Null },
        "DetailType": "SalesItemLineDetail", "SalesItemLineDetail": detail,
    });
    (line, price * qty, if taxable { price * qty } else { 0 })
}

/// Lines of a sales form (estimate, sales receipt, credit memo, refund): item lines, and on
/// some forms a bundle (`GroupLineDetail`), a note (`DescriptionOnly`) and a discount,
/// closed by the `SubTotalLineDetail` QBO always appends. Returns the lines, the total after
/// the discount, and the taxable amount (before it: `ApplyTaxAfterDiscount` is false).
pub fn sales_lines(ctx: &GenCtx, r: &mut Rng) -> (Vec<Value>, i64, i64) {
    let mut lines = Vec::new();
    let (mut total, mut taxable) = (0, 0);
    let mut n = 0;
    for _ in 0..1 + r.below(4) {
        n += 1;
        let (line, amount, tax_base) = sales_item_line(ctx, r, n);
        lines.push(line);
        total += amount;
        taxable += tax_base;
    }
    if r.chance(20) {
        n += 1;
        let mut inner = Vec::new();
        let mut group_total = 0;
        for _ in 0..2 {
            n += 1;
            let (line, amount, tax_base) = sales_item_line(ctx, r, n);
            inner.push(line);
            group_total += amount;
            taxable += tax_base;
        }
        let group = 1 + r.below(ctx.count("Item").max(1));
        lines.push(json!({
            "Id": (n - 2).to_string(), "LineNum": n - 2, "Amount": money(group_total),
            "Description": "Bundle: \"Spring clean-up\"", "DetailType": "GroupLineDetail",
            "GroupLineDetail": { "GroupItemRef": item_ref(ctx, group), "Quantity": 1, "Line": inner },
        }));
        total += group_total;
    }
    if r.chance(25) {
        n += 1;
        lines.push(json!({
            "Id": n.to_string(), "LineNum": n, "DetailType": "DescriptionOnly",
            "Description": "Thanks — see you next season 🌷", "DescriptionLineDetail": {},
        }));
    }
    lines.push(json!({ "Amount": money(total), "DetailType": "SubTotalLineDetail", "SubTotalLineDetail": {} }));
    if r.chance(30) {
        let percent = 5 + r.below(11) as i64;
        let discount = total * percent / 100;
        lines.push(json!({
            "Amount": money(discount), "DetailType": "DiscountLineDetail",
            "DiscountLineDetail": {
                "PercentBased": true, "DiscountPercent": percent,
                "DiscountAccountRef": account_ref(chart::DISCOUNTS_GIVEN),
            },
        }));
        total -= discount;
    }
    (lines, total, taxable)
}

const BILLABLE: &[&str] = &["NotBillable", "Billable", "HasBeenBilled"];

/// Lines of a purchase-side transaction (bill, expense, purchase order, vendor credit):
/// `AccountBasedExpenseLineDetail` and, when `items` is set, `ItemBasedExpenseLineDetail`.
pub fn expense_lines(ctx: &GenCtx, r: &mut Rng, items: bool) -> (Vec<Value>, i64) {
    let mut lines = Vec::new();
    let mut total = 0;
    for n in 1..=1 + r.below(3) {
        let by_item = items && ctx.count("Item") > 0 && r.chance(40);
        let (detail_type, mut detail, amount) = if by_item {
            let iid = 1 + r.below(ctx.count("Item"));
            let (_, _, price) = item_basics(ctx.seed, iid);
            let cost = price / 2;
            let qty = 1 + r.below(20) as i64;
            let detail = json!({
                "ItemRef": item_ref(ctx, iid), "UnitPrice": money(cost), "Qty": qty,
                "BillableStatus": *r.pick(BILLABLE), "TaxCodeRef": { "value": "NON" },
            });
            ("ItemBasedExpenseLineDetail", detail, cost * qty)
        } else {
            let account = *r.pick(chart::EXPENSES);
            let detail = json!({
                "AccountRef": account_ref(account),
                "BillableStatus": *r.pick(BILLABLE), "TaxCodeRef": { "value": "NON" },
            });
            (
                "AccountBasedExpenseLineDetail",
                detail,
                1_000 + r.below(200_000) as i64,
            )
        };
        if let Some(cid) = ctx.pick(r, "Customer").filter(|_| r.chance(25)) {
            detail["CustomerRef"] = customer_ref(ctx, cid);
        }
        if let Some(c) = class_ref(ctx, r) {
            detail["ClassRef"] = c;
        }
        lines.push(json!({
            "Id": n.to_string(), "LineNum": n, "Amount": money(amount),
            "Description": if r.chance(50) { json!(format!("Line {n}: supplies & \"stuff\"")) } else { Value::Null },
            "DetailType": detail_type, detail_type: detail,
        }));
        total += amount;
    }
    (lines, total)
}

/// The vendor of bill `id` (its render's first draw), for bill payments.
pub fn bill_vendor(ctx: &GenCtx, id: u64) -> u64 {
    let mut r = Rng::new(ctx.seed, "Bill", id, 2);
    1 + r.below(ctx.count("Vendor").max(1))
}

/// The total of bill `id` in cents (its render's draws after the vendor: its lines), for
/// the bill payments that pay it.
pub fn bill_total(ctx: &GenCtx, id: u64) -> i64 {
    let mut r = Rng::new(ctx.seed, "Bill", id, 2);
    let _vendor = r.below(ctx.count("Vendor").max(1));
    expense_lines(ctx, &mut r, true).1
}

/// A `LinkedTxn` entry.
pub fn linked(id: u64, kind: &str) -> Value {
    json!({ "TxnId": id.to_string(), "TxnType": kind })
}
