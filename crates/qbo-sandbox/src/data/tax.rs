//! Sales tax setup: TaxAgency, TaxRate (collected for an agency), TaxCode (a group of rates).
//! QBO's change data capture does not serve these three.

use serde_json::{json, Value};

use super::names::{tax_agency_name, tax_code_name, tax_rate};
use super::{
    clock, created_day, f, record, FieldKind, GenCtx, Inactive, KeyRule, Keys, Rng, Size, Spec,
};

pub const TAX_AGENCY: Spec = Spec {
    name: "TaxAgency",
    fields: &[f("DisplayName", FieldKind::Str)],
    keys: KeyRule::Plain { max_edits: 1 },
    size: Size::Fixed(3),
    needs: &[],
    render: |_, k, r| {
        record(
            k,
            json!({
                "DisplayName": tax_agency_name(k.id),
                "TaxTrackedOnSales": true, "TaxTrackedOnPurchases": r.chance(30),
                "TaxRegistrationNumber": if r.chance(50) { json!(format!("SR-{:06}", 100_000 + k.id)) } else { Value::Null },
                "LastFileDate": Value::Null,
            }),
        )
    },
};

pub const TAX_RATE: Spec = Spec {
    name: "TaxRate",
    fields: &[
        f("Name", FieldKind::Str),
        f("RateValue", FieldKind::Number),
        f("Active", FieldKind::Active),
    ],
    keys: KeyRule::List {
        max_edits: 1,
        inactive: Inactive::Rule(|id| id.is_multiple_of(5)),
    },
    size: Size::Fixed(6),
    needs: &[("TaxAgency", 1)],
    render: render_tax_rate,
};

fn render_tax_rate(ctx: &GenCtx, k: &Keys, _: &mut Rng) -> Value {
    let (name, rate) = tax_rate(k.id);
    let agency = 1 + (k.id - 1) % ctx.count("TaxAgency").max(1);
    record(
        k,
        json!({
            "Name": name, "Description": format!("{name} sales tax"),
            "Active": k.active.unwrap_or(true), "RateValue": rate,
            "AgencyRef": { "value": agency.to_string() },
            "SpecialTaxType": "NONE", "DisplayType": "ReadOnly",
            "EffectiveTaxRate": [{ "RateValue": rate, "EffectiveDate": clock::format_secs(clock::local_midnight(created_day(k))) }],
        }),
    )
}

pub const TAX_CODE: Spec = Spec {
    name: "TaxCode",
    fields: &[f("Name", FieldKind::Str), f("Active", FieldKind::Active)],
    keys: KeyRule::List {
        max_edits: 1,
        inactive: Inactive::Rule(|id| id.is_multiple_of(4)),
    },
    size: Size::Fixed(5),
    needs: &[("TaxRate", 1)],
    render: render_tax_code,
};

/// A code groups one or two rates for sales; purchase rate lists are empty in US companies.
fn render_tax_code(ctx: &GenCtx, k: &Keys, r: &mut Rng) -> Value {
    let rates = ctx.count("TaxRate").max(1);
    let details: Vec<Value> = (0..1 + r.below(2))
        .map(|i| {
            let id = 1 + (k.id + i) % rates;
            json!({
                "TaxRateRef": { "value": id.to_string(), "name": tax_rate(id).0 },
                "TaxTypeApplicable": "TaxOnAmount", "TaxOrder": 0,
            })
        })
        .collect();
    let taxable = !tax_code_name(k.id).contains("Exempt");
    record(
        k,
        json!({
            "Name": tax_code_name(k.id), "Description": format!("{} tax", tax_code_name(k.id)),
            "Active": k.active.unwrap_or(true), "Hidden": false,
            "Taxable": taxable, "TaxGroup": details.len() > 1,
            "SalesTaxRateList": { "TaxRateDetail": details },
            "PurchaseTaxRateList": { "TaxRateDetail": [] },
        }),
    )
}
