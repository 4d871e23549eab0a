//! Money movements: Payment, BillPayment, Deposit, Transfer, CreditCardPayment, and the
//! JournalEntry that posts anything else.

use serde_json::{json, Value};

use super::chart::{self, account_ref};
use super::lines::{
    bill_total, bill_vendor, class_ref, customer_ref, department_ref, linked, maybe_payment_method,
    usd, vendor_ref,
};
use super::sales::invoice_total;
use super::settle;
use super::{f, money, opt, record, FieldDef, FieldKind, GenCtx, KeyRule, Keys, Rng, Size, Spec};

const TXN_FIELDS: &[FieldDef] = &[
    f("TxnDate", FieldKind::TxnDate),
    f("TotalAmt", FieldKind::Number),
];

const fn txn(max_edits: u64) -> KeyRule {
    KeyRule::Txn {
        max_edits,
        backdate_days: 3,
    }
}

pub const PAYMENT: Spec = Spec {
    name: "Payment",
    fields: &[
        f("TxnDate", FieldKind::TxnDate),
        f("CustomerRef", FieldKind::Ref),
        f("TotalAmt", FieldKind::Number),
    ],
    keys: txn(2),
    size: Size::PerInvoice { n: 2, min: 3 },
    needs: &[("Customer", 1), ("Account", chart::MIN_ACCOUNTS)],
    render: render_payment,
};

/// A customer payment applied to the invoice `settle` assigns it (linked both ways, for what
/// the invoice's balance says was applied), sometimes with an unapplied remainder; without
/// invoices it is all unapplied.
fn render_payment(ctx: &GenCtx, k: &Keys, r: &mut Rng) -> Value {
    let paid = settle::document_of_payment(ctx, &settle::INVOICES, k.id).map(|inv| {
        let (cid, total) = invoice_total(ctx, inv);
        let amount = settle::applied_by(ctx, &settle::INVOICES, inv, total, k.id);
        (inv, cid, amount)
    });
    let cid = match paid {
        Some((_, cid, _)) => cid,
        None => 1 + r.below(ctx.count("Customer").max(1)),
    };
    let mut lines = Vec::new();
    let mut applied = 0;
    if let Some((inv, _, amount)) = paid {
        applied += amount;
        lines.push(json!({
            "Amount": money(amount), "LinkedTxn": [linked(inv, "Invoice")],
            "LineEx": { "any": [{ "name": "{http://schema.intuit.com/finance/v3}NameValue",
                "declaredType": "com.intuit.schema.finance.v3.NameValue", "scope": "javax.xml.bind.JAXBElement$GlobalScope",
                "value": { "Name": "txnId", "Value": inv.to_string() }, "nil": false, "globalScope": true, "typeSubstituted": false }] },
        }));
    }
    let unapplied = if lines.is_empty() || r.chance(15) {
        500 + r.below(50_000) as i64
    } else {
        0
    };
    json_merge(
        record(
            k,
            json!({
                "TxnDate": k.txn_date.unwrap_or_default().to_string(),
                "CustomerRef": customer_ref(ctx, cid), "CurrencyRef": usd(),
                "DepositToAccountRef": account_ref(*r.pick(&[chart::UNDEPOSITED_FUNDS, chart::CHECKING])),
                "TotalAmt": money(applied + unapplied), "UnappliedAmt": money(unapplied),
                "ProcessPayment": false, "Line": lines,
                "PaymentRefNum": if r.chance(60) { json!(format!("{}", 5000 + k.id)) } else { Value::Null },
            }),
        ),
        json!({ "PaymentMethodRef": opt(maybe_payment_method(ctx, r)) }),
    )
}

pub const BILL_PAYMENT: Spec = Spec {
    name: "BillPayment",
    fields: &[
        f("TxnDate", FieldKind::TxnDate),
        f("VendorRef", FieldKind::Ref),
        f("PayType", FieldKind::Str),
        f("TotalAmt", FieldKind::Number),
    ],
    keys: txn(1),
    size: Size::PerInvoice { n: 5, min: 2 },
    needs: &[("Vendor", 1), ("Account", chart::MIN_ACCOUNTS)],
    render: render_bill_payment,
};

/// Pays the bill `settle` assigns it, by check or card, what the bill's balance says was
/// applied (never more than the bill's total, which QBO refuses); without bills, a
/// prepayment.
fn render_bill_payment(ctx: &GenCtx, k: &Keys, r: &mut Rng) -> Value {
    let bill = settle::document_of_payment(ctx, &settle::BILLS, k.id);
    let vid = match bill {
        Some(b) => bill_vendor(ctx, b),
        None => 1 + r.below(ctx.count("Vendor").max(1)),
    };
    let amount = match bill {
        Some(b) => settle::applied_by(ctx, &settle::BILLS, b, bill_total(ctx, b), k.id),
        None => 2_000 + r.below(150_000) as i64,
    };
    let lines: Vec<Value> = bill
        .filter(|_| amount > 0)
        .map(|b| json!({ "Amount": money(amount), "LinkedTxn": [linked(b, "Bill")] }))
        .into_iter()
        .collect();
    let by_check = r.chance(70);
    let mut v = record(
        k,
        json!({
            "TxnDate": k.txn_date.unwrap_or_default().to_string(),
            "VendorRef": vendor_ref(ctx, vid), "CurrencyRef": usd(),
            "APAccountRef": account_ref(chart::ACCOUNTS_PAYABLE),
            "PayType": if by_check { "Check" } else { "CreditCard" },
            "TotalAmt": money(amount), "Line": lines,
            "DocNumber": if by_check { json!(format!("{}", 7000 + k.id)) } else { Value::Null },
        }),
    );
    if by_check {
        v["CheckPayment"] = json!({ "BankAccountRef": account_ref(chart::CHECKING), "PrintStatus": *r.pick(&["NeedToPrint", "NotSet"]) });
    } else {
        v["CreditCardPayment"] = json!({ "CCAccountRef": account_ref(chart::VISA) });
    }
    v
}

pub const DEPOSIT: Spec = Spec {
    name: "Deposit",
    fields: TXN_FIELDS,
    keys: txn(1),
    size: Size::PerInvoice { n: 20, min: 2 },
    needs: &[("Account", chart::MIN_ACCOUNTS)],
    render: render_deposit,
};

/// Deposits undeposited payments (`LinkedTxn`) and other money (`DepositLineDetail`).
fn render_deposit(ctx: &GenCtx, k: &Keys, r: &mut Rng) -> Value {
    let mut lines = Vec::new();
    let mut total = 0;
    if let Some(p) = ctx.pick(r, "Payment").filter(|_| r.chance(60)) {
        let amount = 1_000 + r.below(100_000) as i64;
        total += amount;
        lines.push(json!({
            "Amount": money(amount),
            "LinkedTxn": [{ "TxnId": p.to_string(), "TxnType": "Payment", "TxnLineId": "0" }],
        }));
    }
    for n in 1..=1 + r.below(2) {
        let amount = 500 + r.below(80_000) as i64;
        total += amount;
        let mut detail = json!({
            "AccountRef": account_ref(*r.pick(&[chart::SERVICES, chart::SALES_OF_PRODUCT])),
            "PaymentMethodRef": opt(maybe_payment_method(ctx, r)),
            "CheckNum": if r.chance(30) { json!(format!("{}", 300 + n)) } else { Value::Null },
        });
        if let Some(cid) = ctx.pick(r, "Customer").filter(|_| r.chance(50)) {
            detail["Entity"] = json!({ "value": cid.to_string(), "name": customer_ref(ctx, cid)["name"], "type": "CUSTOMER" });
        }
        lines.push(json!({
            "Id": n.to_string(), "LineNum": n, "Amount": money(amount),
            "DetailType": "DepositLineDetail", "DepositLineDetail": detail,
        }));
    }
    let mut v = record(
        k,
        json!({
            "TxnDate": k.txn_date.unwrap_or_default().to_string(),
            "DepositToAccountRef": account_ref(chart::CHECKING), "CurrencyRef": usd(),
            "TotalAmt": money(total), "Line": lines,
            "PrivateNote": if r.chance(20) { json!("Friday's \"till\" deposit") } else { Value::Null },
        }),
    );
    if let Some(d) = department_ref(ctx, r) {
        v["DepartmentRef"] = d;
    }
    v
}

pub const TRANSFER: Spec = Spec {
    name: "Transfer",
    fields: &[
        f("TxnDate", FieldKind::TxnDate),
        f("Amount", FieldKind::Number),
    ],
    keys: txn(1),
    size: Size::PerInvoice { n: 40, min: 2 },
    needs: &[("Account", chart::MIN_ACCOUNTS)],
    render: render_transfer,
};

fn render_transfer(_: &GenCtx, k: &Keys, r: &mut Rng) -> Value {
    let (from, to) = if r.chance(60) {
        (chart::CHECKING, chart::SAVINGS)
    } else {
        (chart::SAVINGS, chart::CHECKING)
    };
    record(
        k,
        json!({
            "TxnDate": k.txn_date.unwrap_or_default().to_string(),
            "FromAccountRef": account_ref(from), "ToAccountRef": account_ref(to),
            "Amount": money(10_000 + r.below(1_000_000) as i64), "CurrencyRef": usd(),
            "PrivateNote": if r.chance(40) { json!("Monthly sweep — \"rainy day\"") } else { Value::Null },
        }),
    )
}

pub const CREDIT_CARD_PAYMENT: Spec = Spec {
    name: "CreditCardPayment",
    fields: &[
        f("TxnDate", FieldKind::TxnDate),
        f("Amount", FieldKind::Number),
    ],
    keys: txn(1),
    size: Size::PerInvoice { n: 40, min: 2 },
    needs: &[("Account", chart::MIN_ACCOUNTS)],
    render: render_credit_card_payment,
};

fn render_credit_card_payment(ctx: &GenCtx, k: &Keys, r: &mut Rng) -> Value {
    let mut v = record(
        k,
        json!({
            "TxnDate": k.txn_date.unwrap_or_default().to_string(),
            "BankAccountRef": account_ref(chart::CHECKING),
            "CreditCardAccountRef": account_ref(*r.pick(&[chart::VISA, chart::MASTERCARD])),
            "Amount": money(5_000 + r.below(500_000) as i64), "CurrencyRef": usd(),
            "Memo": if r.chance(40) { json!("Paid in full 💳") } else { Value::Null },
            "PrintStatus": "NotSet",
        }),
    );
    if let Some(vid) = ctx.pick(r, "Vendor").filter(|_| r.chance(30)) {
        v["VendorRef"] = vendor_ref(ctx, vid);
    }
    v
}

pub const JOURNAL_ENTRY: Spec = Spec {
    name: "JournalEntry",
    fields: &[
        f("TxnDate", FieldKind::TxnDate),
        f("DocNumber", FieldKind::Str),
        f("TotalAmt", FieldKind::Number),
    ],
    keys: txn(2),
    size: Size::PerInvoice { n: 10, min: 3 },
    needs: &[("Account", chart::MIN_ACCOUNTS)],
    render: render_journal_entry,
};

/// Balanced entries: each debit has a matching credit, with a memo line now and then.
fn render_journal_entry(ctx: &GenCtx, k: &Keys, r: &mut Rng) -> Value {
    let mut lines = Vec::new();
    let mut total = 0;
    let mut n = 0;
    for _ in 0..1 + r.below(3) {
        let amount = 1_000 + r.below(400_000) as i64;
        total += amount;
        let debit = *r.pick(chart::EXPENSES);
        let credit = *r.pick(&[chart::CHECKING, chart::ACCOUNTS_PAYABLE, chart::VISA]);
        for (posting, account) in [("Debit", debit), ("Credit", credit)] {
            let mut detail = json!({ "PostingType": posting, "AccountRef": account_ref(account) });
            if let Some(c) = class_ref(ctx, r) {
                detail["ClassRef"] = c;
            }
            if let Some(d) = department_ref(ctx, r) {
                detail["DepartmentRef"] = d;
            }
            if account == chart::ACCOUNTS_PAYABLE {
                // QBO requires a vendor on A/P lines.
                if let Some(vid) = ctx.pick(r, "Vendor") {
                    detail["Entity"] =
                        json!({ "Type": "Vendor", "EntityRef": vendor_ref(ctx, vid) });
                }
            }
            lines.push(json!({
                "Id": n.to_string(), "Amount": money(amount),
                "Description": if r.chance(40) { json!(format!("Reclass {posting} – {}", k.id)) } else { Value::Null },
                "DetailType": "JournalEntryLineDetail", "JournalEntryLineDetail": detail,
            }));
            n += 1;
        }
    }
    if r.chance(20) {
        lines.push(json!({ "Id": n.to_string(), "Description": "Year-end \"accrual\" memo", "DetailType": "DescriptionOnly", "DescriptionLineDetail": {} }));
    }
    record(
        k,
        json!({
            "TxnDate": k.txn_date.unwrap_or_default().to_string(),
            "DocNumber": if r.chance(60) { json!(format!("JE-{}", k.id)) } else { Value::Null },
            "Adjustment": r.chance(10), "CurrencyRef": usd(),
            "TotalAmt": money(total), "Line": lines, "TxnTaxDetail": {},
            "PrivateNote": if r.chance(30) { json!("Opening balances \\ migration") } else { Value::Null },
        }),
    )
}

/// `a` with `b`'s fields added.
fn json_merge(mut a: Value, b: Value) -> Value {
    if let (Some(obj), Value::Object(extra)) = (a.as_object_mut(), b) {
        obj.extend(extra);
    }
    a
}
