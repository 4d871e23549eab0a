//! Sales forms: Invoice, Estimate, SalesReceipt, CreditMemo, RefundReceipt.

use chrono::Duration;
use serde_json::{json, Value};

use super::chart::{self, account_ref};
use super::lines::{
    class_ref, custom_fields, customer_ref, department_ref, linked, maybe_payment_method,
    maybe_term, sales_lines, tax_detail, usd,
};
use super::names::customer_name;
use super::settle::{self, applied};
use super::{f, money, opt, record, FieldDef, FieldKind, GenCtx, KeyRule, Keys, Rng, Size, Spec};

/// What every sales form can be queried by.
const SALES_FIELDS: &[FieldDef] = &[
    f("TxnDate", FieldKind::TxnDate),
    f("DocNumber", FieldKind::Str),
    f("CustomerRef", FieldKind::Ref),
    f("TotalAmt", FieldKind::Number),
];

const SALES_NEEDS: &[(&str, u64)] = &[
    ("Customer", 1),
    ("Item", 1),
    ("Account", chart::MIN_ACCOUNTS),
];

pub const INVOICE: Spec = Spec {
    name: "Invoice",
    fields: &[
        f("TxnDate", FieldKind::TxnDate),
        f("DueDate", FieldKind::Date),
        f("DocNumber", FieldKind::Str),
        f("CustomerRef", FieldKind::Ref),
        f("TotalAmt", FieldKind::Number),
        f("Balance", FieldKind::Number),
    ],
    keys: KeyRule::Txn {
        max_edits: 5,
        backdate_days: 4,
    },
    size: Size::Invoices,
    needs: SALES_NEEDS,
    render: render_invoice,
};

/// An invoice's customer, lines, tax and total (with tax): its render's first draws, so a
/// payment can work out what the invoice it pays comes to (see `invoice_total`).
pub struct InvoiceBody {
    pub cid: u64,
    pub lines: Vec<Value>,
    pub tax: Value,
    pub total: i64,
}

fn invoice_body(ctx: &GenCtx, r: &mut Rng) -> InvoiceBody {
    let cid = 1 + r.below(ctx.count("Customer").max(1));
    let (lines, subtotal, taxable) = sales_lines(ctx, r);
    let (tax, tax_cents) = tax_detail(ctx, r, taxable);
    InvoiceBody {
        cid,
        lines,
        tax,
        total: subtotal + tax_cents,
    }
}

/// Invoice `id`'s customer and total in cents, without rendering the rest of it.
pub fn invoice_total(ctx: &GenCtx, id: u64) -> (u64, i64) {
    let b = invoice_body(ctx, &mut Rng::new(ctx.seed, "Invoice", id, 2));
    (b.cid, b.total)
}

/// QBO's invoice address: the customer's name, then a street.
fn address(ctx: &GenCtx, r: &mut Rng, id: u64, cid: u64) -> Value {
    json!({
        "Id": id.to_string(), "Line1": customer_name(ctx.seed, cid).2,
        "Line2": format!("{} Main St.", 1 + r.below(999)),
        "City": *r.pick(&["Half Moon Bay", "Bayshore", "São Paulo"]),
        "CountrySubDivisionCode": "CA", "PostalCode": "94213",
    })
}

fn render_invoice(ctx: &GenCtx, k: &Keys, r: &mut Rng) -> Value {
    let body = invoice_body(ctx, r);
    let cid = body.cid;
    // Payments that pay this invoice are linked both ways, and the balance is what is left.
    let paid = applied(ctx, &settle::INVOICES, k.id, body.total);
    let balance = body.total - paid.iter().map(|(_, a)| a).sum::<i64>();
    let links: Vec<Value> = paid.iter().map(|(p, _)| linked(*p, "Payment")).collect();
    let txn = k.txn_date.unwrap_or_default();
    let custom = custom_fields(r, k.id);
    let mut v = record(
        k,
        json!({
            "CustomField": custom, "DocNumber": format!("{}", 1000 + k.id),
            "TxnDate": txn.to_string(), "DueDate": (txn + Duration::days(30)).to_string(),
            "CurrencyRef": usd(),
            "LinkedTxn": links, "Line": body.lines,
            "TxnTaxDetail": body.tax,
            "CustomerRef": customer_ref(ctx, cid),
            "CustomerMemo": if r.chance(30) { json!({ "value": "Thank you for your business — merci!" }) } else { Value::Null },
            "BillAddr": address(ctx, r, 5000 + k.id, cid),
            "ShipAddr": if r.chance(40) { address(ctx, r, 6000 + k.id, cid) } else { Value::Null },
            "SalesTermRef": opt(maybe_term(ctx, r)),
            "BillEmail": if r.chance(70) { json!({ "Address": format!("customer{cid}@example.com") }) } else { Value::Null },
            "TotalAmt": money(body.total), "Balance": money(balance),
            "ApplyTaxAfterDiscount": false, "PrintStatus": "NeedToPrint",
            "EmailStatus": *r.pick(&["NotSet", "NeedToSend", "EmailSent"]),
        }),
    );
    if let Some(c) = class_ref(ctx, r) {
        v["ClassRef"] = c;
    }
    v
}

/// The part every sales form shares: customer, lines, totals, class/location, custom fields.
/// `doc_prefix` keeps DocNumbers apart between form types.
pub fn sales_form(ctx: &GenCtx, k: &Keys, r: &mut Rng, doc_prefix: &str) -> (Value, i64) {
    let cid = 1 + r.below(ctx.count("Customer").max(1));
    let (lines, subtotal, taxable) = sales_lines(ctx, r);
    let (tax, tax_cents) = tax_detail(ctx, r, taxable);
    let total = subtotal + tax_cents;
    let mut v = record(
        k,
        json!({
        "DocNumber": if r.chance(85) { json!(format!("{doc_prefix}{}", 1000 + k.id)) } else { Value::Null },
        "TxnDate": k.txn_date.unwrap_or_default().to_string(),
        "CurrencyRef": usd(), "CustomField": custom_fields(r, k.id), "Line": lines,
        "CustomerRef": customer_ref(ctx, cid),
        "TxnTaxDetail": tax, "TotalAmt": money(total),
        "ApplyTaxAfterDiscount": false, "PrintStatus": *r.pick(&["NeedToPrint", "NotSet", "PrintComplete"]),
        "EmailStatus": *r.pick(&["NotSet", "NeedToSend", "EmailSent"]),
        "BillEmail": if r.chance(60) { json!({ "Address": format!("customer{cid}@example.com") }) } else { Value::Null },
        "CustomerMemo": if r.chance(30) { json!({ "value": "Merci — \"à bientôt\"!" }) } else { Value::Null },
        "PrivateNote": if r.chance(20) { json!("Left at the back door \\ gate code 1234") } else { Value::Null },
        }),
    );
    if let Some(c) = class_ref(ctx, r) {
        v["ClassRef"] = c;
    }
    if let Some(d) = department_ref(ctx, r) {
        v["DepartmentRef"] = d;
    }
    (v, total)
}

const ESTIMATE_FIELDS: &[FieldDef] = &[
    f("TxnDate", FieldKind::TxnDate),
    f("DocNumber", FieldKind::Str),
    f("CustomerRef", FieldKind::Ref),
    f("TotalAmt", FieldKind::Number),
    f("TxnStatus", FieldKind::Str),
    f("ExpirationDate", FieldKind::Date),
];

pub const ESTIMATE: Spec = Spec {
    name: "Estimate",
    fields: ESTIMATE_FIELDS,
    keys: KeyRule::Txn {
        max_edits: 3,
        backdate_days: 3,
    },
    size: Size::PerInvoice { n: 4, min: 3 },
    needs: SALES_NEEDS,
    render: render_estimate,
};

fn render_estimate(ctx: &GenCtx, k: &Keys, r: &mut Rng) -> Value {
    let (mut v, _) = sales_form(ctx, k, r, "E-");
    let txn = k.txn_date.unwrap_or_default();
    let status = *r.pick(&["Pending", "Accepted", "Closed", "Rejected"]);
    v["TxnStatus"] = json!(status);
    v["ExpirationDate"] = json!((txn + Duration::days(30)).to_string());
    if status == "Accepted" {
        v["AcceptedBy"] = json!("Zoë O'Brien");
        v["AcceptedDate"] = json!((txn + Duration::days(2)).to_string());
    }
    // An estimate turned into an invoice links to it (when the company has invoices).
    v["LinkedTxn"] = match ctx.pick(r, "Invoice").filter(|_| status == "Closed") {
        Some(id) => json!([{ "TxnId": id.to_string(), "TxnType": "Invoice" }]),
        None => json!([]),
    };
    v
}

pub const SALES_RECEIPT: Spec = Spec {
    name: "SalesReceipt",
    fields: SALES_FIELDS,
    keys: KeyRule::Txn {
        max_edits: 2,
        backdate_days: 2,
    },
    size: Size::PerInvoice { n: 5, min: 3 },
    needs: SALES_NEEDS,
    render: render_sales_receipt,
};

fn render_sales_receipt(ctx: &GenCtx, k: &Keys, r: &mut Rng) -> Value {
    let (mut v, _) = sales_form(ctx, k, r, "S-");
    v["Balance"] = json!(0);
    v["DepositToAccountRef"] = account_ref(chart::UNDEPOSITED_FUNDS);
    v["PaymentMethodRef"] = opt(maybe_payment_method(ctx, r));
    v["PaymentRefNum"] = if r.chance(50) {
        json!(format!("{}", 10_000 + r.below(90_000)))
    } else {
        Value::Null
    };
    v
}

pub const CREDIT_MEMO: Spec = Spec {
    name: "CreditMemo",
    fields: SALES_FIELDS,
    keys: KeyRule::Txn {
        max_edits: 2,
        backdate_days: 5,
    },
    size: Size::PerInvoice { n: 20, min: 2 },
    needs: SALES_NEEDS,
    render: render_credit_memo,
};

fn render_credit_memo(ctx: &GenCtx, k: &Keys, r: &mut Rng) -> Value {
    let (mut v, total) = sales_form(ctx, k, r, "CM-");
    let remaining = if r.chance(50) { total } else { 0 };
    v["RemainingCredit"] = money(remaining);
    v["Balance"] = money(remaining);
    v["SalesTermRef"] = opt(maybe_term(ctx, r));
    v
}

pub const REFUND_RECEIPT: Spec = Spec {
    name: "RefundReceipt",
    fields: SALES_FIELDS,
    keys: KeyRule::Txn {
        max_edits: 1,
        backdate_days: 2,
    },
    size: Size::PerInvoice { n: 40, min: 2 },
    needs: SALES_NEEDS,
    render: render_refund_receipt,
};

fn render_refund_receipt(ctx: &GenCtx, k: &Keys, r: &mut Rng) -> Value {
    let (mut v, _) = sales_form(ctx, k, r, "R-");
    v["Balance"] = json!(0);
    v["DepositToAccountRef"] = account_ref(chart::CHECKING);
    v["PaymentMethodRef"] = opt(maybe_payment_method(ctx, r));
    v["PaymentType"] = json!(*r.pick(&["Check", "CreditCard", "Cash"]));
    v["CheckPayment"] = if v["PaymentType"] == "Check" {
        json!({ "PrintStatus": "NotSet" })
    } else {
        Value::Null
    };
    v
}
