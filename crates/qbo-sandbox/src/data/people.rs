//! Names a company deals with: Customer, Vendor, Employee (all name lists, some inactive).

use chrono::Duration;
use serde_json::{json, Value};

use super::lines::{term_ref, usd};
use super::names::{customer_name, employee_name, vendor_name};
use super::{
    created_day, f, money, record, FieldKind, GenCtx, Inactive, KeyRule, Keys, Rng, Size, Spec,
};

pub const CUSTOMER: Spec = Spec {
    name: "Customer",
    fields: &[
        f("DisplayName", FieldKind::Str),
        f("GivenName", FieldKind::Str),
        f("FamilyName", FieldKind::Str),
        f("CompanyName", FieldKind::Str),
        f("FullyQualifiedName", FieldKind::Str),
        f("Balance", FieldKind::Number),
        f("Active", FieldKind::Active),
    ],
    keys: KeyRule::List {
        max_edits: 4,
        inactive: Inactive::Percent(12),
    },
    size: Size::Customers,
    needs: &[],
    render: render_customer,
};

fn render_customer(ctx: &GenCtx, k: &Keys, r: &mut Rng) -> Value {
    let (given, family, display) = customer_name(ctx.seed, k.id);
    let balance = if r.chance(40) {
        r.below(500_000) as i64
    } else {
        0
    };
    let email = if r.chance(75) {
        json!({ "Address": format!("customer{}@example.com", k.id) })
    } else {
        Value::Null
    };
    let company = display
        .trim_end_matches(|c: char| c.is_ascii_digit())
        .trim_end()
        .to_string();
    record(
        k,
        json!({
            "GivenName": given, "FamilyName": family, "CompanyName": company,
            "DisplayName": display, "FullyQualifiedName": display, "PrintOnCheckName": display,
            "Active": k.active.unwrap_or(true), "Taxable": r.chance(50), "Job": false,
            "BillWithParent": false, "Balance": money(balance), "BalanceWithJobs": money(balance),
            "CurrencyRef": { "value": "USD", "name": "United States Dollar" },
            "PreferredDeliveryMethod": *r.pick(&["Print", "Email", "None"]),
            "PrimaryEmailAddr": email,
            "BillAddr": { "Id": (1000 + k.id).to_string(), "Line1": format!("{} Main St.", 1 + r.below(999)), "City": *r.pick(&["Half Moon Bay", "Bayshore", "Sodo", "São Paulo"]), "CountrySubDivisionCode": "CA", "PostalCode": "94213" },
            "Notes": if r.chance(20) { json!("Prefers \"quoted\" notes \\ with backslashes") } else { Value::Null },
        }),
    )
}

pub const VENDOR: Spec = Spec {
    name: "Vendor",
    fields: &[
        f("DisplayName", FieldKind::Str),
        f("CompanyName", FieldKind::Str),
        f("Balance", FieldKind::Number),
        f("Active", FieldKind::Active),
    ],
    keys: KeyRule::List {
        max_edits: 3,
        inactive: Inactive::Rule(|id| id % 7 == 3),
    },
    size: Size::PerCustomer { n: 3, min: 4 },
    needs: &[],
    render: render_vendor,
};

fn render_vendor(ctx: &GenCtx, k: &Keys, r: &mut Rng) -> Value {
    let (company, display) = vendor_name(ctx.seed, k.id);
    let balance = if r.chance(35) {
        r.below(300_000) as i64
    } else {
        0
    };
    let mut v = record(
        k,
        json!({
            "DisplayName": display, "CompanyName": company, "PrintOnCheckName": company,
            "Active": k.active.unwrap_or(true), "Vendor1099": r.chance(20),
            "Balance": money(balance), "CurrencyRef": usd(),
            "BillAddr": { "Id": (2000 + k.id).to_string(), "Line1": format!("{} Industrial Pkwy", 10 + r.below(900)), "City": *r.pick(&["Oakland", "Montréal", "Sodo"]), "CountrySubDivisionCode": "CA", "PostalCode": "94612" },
            "PrimaryEmailAddr": if r.chance(60) { json!({ "Address": format!("ap{}@vendor.example.com", k.id) }) } else { Value::Null },
            "PrimaryPhone": if r.chance(70) { json!({ "FreeFormNumber": format!("(650) 555-{:04}", k.id % 10_000) }) } else { Value::Null },
            "WebAddr": Value::Null,
            "AcctNum": if r.chance(40) { json!(format!("ACCT-{:04}", k.id)) } else { Value::Null },
        }),
    );
    if let Some(t) = ctx.pick(r, "Term").filter(|_| r.chance(50)) {
        v["TermRef"] = term_ref(t);
    }
    v
}

pub const EMPLOYEE: Spec = Spec {
    name: "Employee",
    fields: &[
        f("DisplayName", FieldKind::Str),
        f("GivenName", FieldKind::Str),
        f("FamilyName", FieldKind::Str),
        f("Active", FieldKind::Active),
    ],
    keys: KeyRule::List {
        max_edits: 2,
        inactive: Inactive::Rule(|id| id % 5 == 2),
    },
    size: Size::PerCustomer { n: 10, min: 3 },
    needs: &[],
    render: render_employee,
};

fn render_employee(ctx: &GenCtx, k: &Keys, r: &mut Rng) -> Value {
    let (given, family, display) = employee_name(ctx.seed, k.id);
    let hired = created_day(k) - Duration::days(r.below(2_000) as i64);
    let active = k.active.unwrap_or(true);
    record(
        k,
        json!({
            "GivenName": given, "FamilyName": family, "DisplayName": display,
            "PrintOnCheckName": display, "Active": active,
            "EmployeeNumber": if r.chance(70) { json!(format!("E{:03}", k.id)) } else { Value::Null },
            // QBO masks the SSN in every response.
            "SSN": if r.chance(50) { json!("XXX-XX-XXXX") } else { Value::Null },
            "PrimaryAddr": { "Id": (3000 + k.id).to_string(), "Line1": "45 N. Elm Street", "City": "Middlefield", "CountrySubDivisionCode": "CA", "PostalCode": "93242" },
            "PrimaryPhone": { "FreeFormNumber": format!("408-555-{:04}", k.id % 10_000) },
            "BillableTime": r.chance(50),
            "BillRate": if r.chance(40) { money(2_500 + r.below(10_000) as i64) } else { Value::Null },
            "HiredDate": hired.to_string(),
            "ReleasedDate": if active { Value::Null } else { json!((hired + Duration::days(400)).to_string()) },
            "BirthDate": Value::Null,
            "Gender": Value::Null,
        }),
    )
}
