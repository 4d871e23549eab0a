//! Purchase side: Bill, Purchase (expenses, checks, card charges), PurchaseOrder,
//! VendorCredit.

use chrono::Duration;
use serde_json::{json, Value};

use super::chart::{self, account_ref};
use super::lines::{
    custom_fields, department_ref, expense_lines, linked, maybe_term, tax_detail, usd, vendor_ref,
};
use super::settle;
use super::{f, money, opt, record, FieldDef, FieldKind, GenCtx, KeyRule, Keys, Rng, Size, Spec};

const VENDOR_FIELDS: &[FieldDef] = &[
    f("TxnDate", FieldKind::TxnDate),
    f("DocNumber", FieldKind::Str),
    f("VendorRef", FieldKind::Ref),
    f("TotalAmt", FieldKind::Number),
];

const VENDOR_NEEDS: &[(&str, u64)] = &[("Vendor", 1), ("Account", chart::MIN_ACCOUNTS)];

/// Vendor, lines and totals: what bills, purchase orders and vendor credits share.
/// The vendor is the render's first draw (see `lines::bill_vendor`).
fn vendor_form(ctx: &GenCtx, k: &Keys, r: &mut Rng) -> (Value, i64) {
    let vid = 1 + r.below(ctx.count("Vendor").max(1));
    let (lines, total) = expense_lines(ctx, r, true);
    let mut v = record(
        k,
        json!({
            "VendorRef": vendor_ref(ctx, vid),
            "APAccountRef": account_ref(chart::ACCOUNTS_PAYABLE),
            "TxnDate": k.txn_date.unwrap_or_default().to_string(),
            "CurrencyRef": usd(), "Line": lines, "TotalAmt": money(total),
            "DocNumber": if r.chance(70) { json!(format!("V{}-{}", vid, 500 + k.id)) } else { Value::Null },
            "PrivateNote": if r.chance(25) { json!("Paid by José's card — \"reimburse\"") } else { Value::Null },
            "LinkedTxn": [],
        }),
    );
    if let Some(d) = department_ref(ctx, r) {
        v["DepartmentRef"] = d;
    }
    (v, total)
}

pub const BILL: Spec = Spec {
    name: "Bill",
    fields: &[
        f("TxnDate", FieldKind::TxnDate),
        f("DueDate", FieldKind::Date),
        f("DocNumber", FieldKind::Str),
        f("VendorRef", FieldKind::Ref),
        f("TotalAmt", FieldKind::Number),
        f("Balance", FieldKind::Number),
    ],
    keys: KeyRule::Txn {
        max_edits: 3,
        backdate_days: 10,
    },
    size: Size::PerInvoice { n: 4, min: 3 },
    needs: VENDOR_NEEDS,
    render: render_bill,
};

/// A bill, linked to the bill payments `settle` assigns it; its balance is what they left.
fn render_bill(ctx: &GenCtx, k: &Keys, r: &mut Rng) -> Value {
    let (mut v, total) = vendor_form(ctx, k, r);
    let txn = k.txn_date.unwrap_or_default();
    let paid = settle::applied(ctx, &settle::BILLS, k.id, total);
    v["DueDate"] = json!((txn + Duration::days(30)).to_string());
    v["Balance"] = money(total - paid.iter().map(|(_, a)| a).sum::<i64>());
    v["LinkedTxn"] = json!(paid
        .iter()
        .map(|(p, _)| linked(*p, "BillPayment"))
        .collect::<Vec<_>>());
    v["SalesTermRef"] = opt(maybe_term(ctx, r));
    v
}

pub const PURCHASE_ORDER: Spec = Spec {
    name: "PurchaseOrder",
    fields: VENDOR_FIELDS,
    keys: KeyRule::Txn {
        max_edits: 2,
        backdate_days: 2,
    },
    size: Size::PerInvoice { n: 10, min: 2 },
    needs: VENDOR_NEEDS,
    render: render_purchase_order,
};

fn render_purchase_order(ctx: &GenCtx, k: &Keys, r: &mut Rng) -> Value {
    let (mut v, _) = vendor_form(ctx, k, r);
    let txn = k.txn_date.unwrap_or_default();
    v["POStatus"] = json!(*r.pick(&["Open", "Closed"]));
    v["DueDate"] = json!((txn + Duration::days(14)).to_string());
    v["CustomField"] = custom_fields(r, k.id);
    v["EmailStatus"] = json!("NotSet");
    v["POEmail"] = if r.chance(50) {
        json!({ "Address": "orders@example.com" })
    } else {
        Value::Null
    };
    v["ShipAddr"] = json!({ "Id": "1", "Line1": "123 Sierra Way", "City": "San Pablo", "CountrySubDivisionCode": "CA", "PostalCode": "87999" });
    v
}

pub const VENDOR_CREDIT: Spec = Spec {
    name: "VendorCredit",
    fields: VENDOR_FIELDS,
    keys: KeyRule::Txn {
        max_edits: 1,
        backdate_days: 5,
    },
    size: Size::PerInvoice { n: 40, min: 2 },
    needs: VENDOR_NEEDS,
    render: render_vendor_credit,
};

fn render_vendor_credit(ctx: &GenCtx, k: &Keys, r: &mut Rng) -> Value {
    let (mut v, total) = vendor_form(ctx, k, r);
    v["Balance"] = money(if r.chance(50) { total } else { 0 });
    v
}

pub const PURCHASE: Spec = Spec {
    name: "Purchase",
    fields: &[
        f("TxnDate", FieldKind::TxnDate),
        f("DocNumber", FieldKind::Str),
        f("PaymentType", FieldKind::Str),
        f("AccountRef", FieldKind::Ref),
        f("TotalAmt", FieldKind::Number),
    ],
    keys: KeyRule::Txn {
        max_edits: 2,
        backdate_days: 7,
    },
    size: Size::PerInvoice { n: 4, min: 3 },
    needs: &[("Account", chart::MIN_ACCOUNTS)],
    render: render_purchase,
};

fn render_purchase(ctx: &GenCtx, k: &Keys, r: &mut Rng) -> Value {
    let kind = *r.pick(&["Cash", "Check", "CreditCard"]);
    let account = match kind {
        "CreditCard" => *r.pick(&[chart::VISA, chart::MASTERCARD]),
        _ => chart::CHECKING,
    };
    let (lines, total) = expense_lines(ctx, r, true);
    // Payee: often a vendor, sometimes a customer (a refund by check), sometimes nobody.
    let entity = match r.below(10) {
        0..=5 => ctx
            .pick(r, "Vendor")
            .map(|id| entity_ref(vendor_ref(ctx, id), "Vendor")),
        6 => ctx
            .pick(r, "Customer")
            .map(|id| entity_ref(super::lines::customer_ref(ctx, id), "Customer")),
        _ => None,
    };
    let mut v = record(
        k,
        json!({
            "PaymentType": kind, "AccountRef": account_ref(account),
            "Credit": kind == "CreditCard" && r.chance(10),
            "TxnDate": k.txn_date.unwrap_or_default().to_string(),
            "CurrencyRef": usd(), "Line": lines, "TotalAmt": money(total),
            "TxnTaxDetail": tax_detail(ctx, r, 0).0,
            "DocNumber": if kind == "Check" { json!(format!("{}", 2000 + k.id)) } else { Value::Null },
            "PrintStatus": if kind == "Check" { json!("NotSet") } else { Value::Null },
            "PrivateNote": if r.chance(30) { json!("Lunch with the \"Acme\" crew 🍕") } else { Value::Null },
            "PurchaseEx": { "any": [] },
        }),
    );
    if let Some(e) = entity {
        v["EntityRef"] = e;
    }
    v["PaymentMethodRef"] = opt(super::lines::maybe_payment_method(ctx, r));
    if let Some(d) = department_ref(ctx, r) {
        v["DepartmentRef"] = d;
    }
    v
}

/// QBO's `EntityRef` carries the kind of name it points at.
fn entity_ref(mut reference: Value, kind: &str) -> Value {
    reference["type"] = json!(kind);
    reference
}
