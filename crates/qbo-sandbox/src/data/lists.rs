//! Name lists: Item, Class, Department, Term, PaymentMethod, CustomerType, JournalCode,
//! CompanyCurrency. Every list has deactivated members (QBO hides them from queries that do
//! not name `Active`).

use serde_json::{json, Value};

use super::chart::{self, account_ref};
use super::names::{self, item_basics};
use super::{
    clock, f, money, record, FieldDef, FieldKind, GenCtx, Inactive, KeyRule, Keys, Rng, Size, Spec,
};

const NAME_FIELDS: &[FieldDef] = &[f("Name", FieldKind::Str), f("Active", FieldKind::Active)];

const HIERARCHY_FIELDS: &[FieldDef] = &[
    f("Name", FieldKind::Str),
    f("FullyQualifiedName", FieldKind::Str),
    f("Active", FieldKind::Active),
];

/// Small lists: every fourth member is deactivated, so even a list of four has one.
const fn small_list() -> KeyRule {
    KeyRule::List {
        max_edits: 2,
        inactive: Inactive::Rule(|id| id.is_multiple_of(4)),
    }
}

pub const ITEM: Spec = Spec {
    name: "Item",
    fields: &[
        f("Name", FieldKind::Str),
        f("FullyQualifiedName", FieldKind::Str),
        f("Sku", FieldKind::Str),
        f("Type", FieldKind::Str),
        f("UnitPrice", FieldKind::Number),
        f("Active", FieldKind::Active),
    ],
    keys: KeyRule::List {
        max_edits: 3,
        inactive: Inactive::Percent(15),
    },
    size: Size::Items,
    needs: &[("Account", chart::MIN_ACCOUNTS)],
    render: render_item,
};

fn render_item(ctx: &GenCtx, k: &Keys, r: &mut Rng) -> Value {
    let (name, kind, price) = item_basics(ctx.seed, k.id);
    let mut v = record(
        k,
        json!({
            "Name": name, "FullyQualifiedName": name, "Active": k.active.unwrap_or(true),
            "Type": kind, "Taxable": r.chance(50), "UnitPrice": money(price),
            "Sku": if r.chance(60) { json!(format!("SKU-{:05}", k.id)) } else { Value::Null },
            "Description": if r.chance(50) { json!(format!("{name} — deluxe")) } else { Value::Null },
            "IncomeAccountRef": account_ref(chart::SALES_OF_PRODUCT),
            "PurchaseCost": money(price / 2), "TrackQtyOnHand": kind == "Inventory",
        }),
    );
    if kind != "Service" {
        v["ExpenseAccountRef"] = account_ref(chart::COST_OF_GOODS_SOLD);
    }
    if kind == "Inventory" {
        v["AssetAccountRef"] = account_ref(chart::INVENTORY_ASSET);
        v["QtyOnHand"] = json!(r.below(500));
        v["InvStartDate"] = json!(clock::local_date(clock::from_millis(k.created_ms)).to_string());
    }
    v
}

/// A list member that may sit under a parent (`Parent:Child`), like classes and locations.
fn nested(k: &Keys, name: String, parent: Option<(u64, String)>, sub_key: &str) -> Value {
    let fq = match &parent {
        Some((_, p)) => format!("{p}:{name}"),
        None => name.clone(),
    };
    let mut v = record(
        k,
        json!({
            "Name": name, "FullyQualifiedName": fq, sub_key: parent.is_some(),
            "Active": k.active.unwrap_or(true),
        }),
    );
    if let Some((id, _)) = parent {
        v["ParentRef"] = json!({ "value": id.to_string() });
    }
    v
}

pub const CLASS: Spec = Spec {
    name: "Class",
    fields: HIERARCHY_FIELDS,
    keys: small_list(),
    size: Size::Fixed(8),
    needs: &[],
    render: |_, k, _| {
        // The third class sits under the first, as `Landscaping:Installation "Pro"`.
        let parent = (k.id == 3).then(|| (1, names::class_name(1)));
        nested(k, names::class_name(k.id), parent, "SubClass")
    },
};

pub const DEPARTMENT: Spec = Spec {
    name: "Department",
    fields: HIERARCHY_FIELDS,
    keys: small_list(),
    size: Size::Fixed(5),
    needs: &[],
    render: |_, k, _| {
        let parent = (k.id == 5).then(|| (2, names::department_name(2)));
        nested(k, names::department_name(k.id), parent, "SubDepartment")
    },
};

pub const TERM: Spec = Spec {
    name: "Term",
    fields: NAME_FIELDS,
    keys: small_list(),
    size: Size::Fixed(6),
    needs: &[],
    render: render_term,
};

fn render_term(_: &GenCtx, k: &Keys, r: &mut Rng) -> Value {
    let (name, due) = names::term(k.id);
    let mut v = record(
        k,
        json!({ "Name": name, "Active": k.active.unwrap_or(true) }),
    );
    if r.chance(80) {
        v["Type"] = json!("STANDARD");
        v["DueDays"] = json!(due);
        if name.starts_with("1%") {
            v["DiscountPercent"] = json!(1);
            v["DiscountDays"] = json!(10);
        }
    } else {
        v["Type"] = json!("DATE_DRIVEN");
        v["DayOfMonthDue"] = json!(1 + r.below(28));
        v["DueNextMonthDays"] = json!(5);
    }
    v
}

pub const PAYMENT_METHOD: Spec = Spec {
    name: "PaymentMethod",
    fields: NAME_FIELDS,
    keys: small_list(),
    size: Size::Fixed(7),
    needs: &[],
    render: |_, k, _| {
        let (name, kind) = names::payment_method(k.id);
        record(
            k,
            json!({ "Name": name, "Type": kind, "Active": k.active.unwrap_or(true) }),
        )
    },
};

pub const CUSTOMER_TYPE: Spec = Spec {
    name: "CustomerType",
    fields: NAME_FIELDS,
    keys: small_list(),
    size: Size::Fixed(4),
    needs: &[],
    render: |_, k, _| {
        record(
            k,
            json!({ "Name": names::customer_type_name(k.id), "Active": k.active.unwrap_or(true) }),
        )
    },
};

pub const JOURNAL_CODE: Spec = Spec {
    name: "JournalCode",
    fields: NAME_FIELDS,
    keys: small_list(),
    size: Size::Fixed(5),
    needs: &[],
    render: |_, k, r| {
        let (name, kind) = names::journal_code(k.id);
        record(
            k,
            json!({
                "Name": name, "Type": kind, "Active": k.active.unwrap_or(true),
                "Description": if r.chance(60) { json!(format!("Journal des opérations « {kind} »")) } else { Value::Null },
            }),
        )
    },
};

pub const COMPANY_CURRENCY: Spec = Spec {
    name: "CompanyCurrency",
    fields: &[
        f("Code", FieldKind::Str),
        f("Name", FieldKind::Str),
        f("Active", FieldKind::Active),
    ],
    keys: small_list(),
    size: Size::Fixed(4),
    needs: &[],
    render: |_, k, _| {
        let (code, name) = names::currency(k.id);
        record(
            k,
            json!({ "Code": code, "Name": name, "Active": k.active.unwrap_or(true) }),
        )
    },
};
