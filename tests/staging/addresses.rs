//! Every address of every name and transaction, and every custom field value, lands once in
//! staging.addresses / staging.custom_fields with the sandbox's values.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::common::*;
use crate::refresh;

/// (owner type, owner id, role, address id, line1, city, postal code)
type Address = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);
/// (type, txn id, index, definition id, name, string value)
type Field = (
    String,
    String,
    i32,
    Option<String>,
    Option<String>,
    Option<String>,
);

const OWNERS: &[&str] = &[
    "Customer",
    "Vendor",
    "Employee",
    "Invoice",
    "SalesReceipt",
    "Estimate",
    "CreditMemo",
    "RefundReceipt",
    "PurchaseOrder",
    "Bill",
    "Purchase",
];

fn text(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

fn sandbox_addresses(w: &World) -> BTreeSet<Address> {
    let mut out = BTreeSet::new();
    for kind in OWNERS {
        for r in w.sandbox.records(kind) {
            let r = qbo::sandbox::record_body(&r);
            for (role, key) in [
                ("billing", "BillAddr"),
                ("shipping", "ShipAddr"),
                ("primary", "PrimaryAddr"),
            ] {
                let a = &r[key];
                if a.is_object() {
                    out.insert((
                        kind.to_string(),
                        text(&r["Id"]).unwrap(),
                        role.to_string(),
                        text(&a["Id"]),
                        text(&a["Line1"]),
                        text(&a["City"]),
                        text(&a["PostalCode"]),
                    ));
                }
            }
        }
    }
    out
}

fn sandbox_fields(w: &World) -> BTreeSet<Field> {
    let mut out = BTreeSet::new();
    for kind in OWNERS.iter().skip(3) {
        for r in w.sandbox.records(kind) {
            let r = qbo::sandbox::record_body(&r);
            for (i, f) in r["CustomField"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                out.insert((
                    kind.to_string(),
                    text(&r["Id"]).unwrap(),
                    i as i32 + 1,
                    text(&f["DefinitionId"]),
                    text(&f["Name"]),
                    text(&f["StringValue"]),
                ));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_and_custom_fields_land_once_with_their_values() {
    let w = World::new(small_company()).await;
    w.backfill("all", "2024-01-01", "2024-03-31", &["--concurrency", "4"])
        .await
        .assert_code(0);
    let out = refresh(&w).await;
    assert!(out.contains("staging.addresses"), "{out}");
    let pool = w.db.pool().await;

    let got: Vec<Address> = sqlx::query_as(
        "SELECT owner_entity, owner_id, address_role, address_id, line1, city, postal_code
         FROM staging.addresses",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let n = got.len();
    let got: BTreeSet<Address> = got.into_iter().collect();
    assert_eq!(got.len(), n, "an address twice");
    let expected = sandbox_addresses(&w);
    let kinds: BTreeSet<&str> = expected.iter().map(|a| a.0.as_str()).collect();
    assert!(
        kinds.contains("Customer") && kinds.contains("Invoice") && kinds.contains("Employee"),
        "the sandbox has addresses of names and transactions: {kinds:?}"
    );
    assert_eq!(got, expected);

    let fields: Vec<Field> = sqlx::query_as(
        "SELECT source_entity, txn_id, field_index, definition_id, name, string_value
         FROM staging.custom_fields",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let n = fields.len();
    let fields: BTreeSet<Field> = fields.into_iter().collect();
    assert_eq!(fields.len(), n, "a custom field twice");
    let expected = sandbox_fields(&w);
    assert!(!expected.is_empty(), "the sandbox has custom fields");
    assert_eq!(fields, expected);

    // Forms with more than QBO's three legacy custom fields (which QBO sends only when asked
    // with include=enhancedAllCustomFields) land whole, the 4th (a number) typed.
    let fourth: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM staging.custom_fields
         WHERE field_index = 4 AND definition_id = '1000000002' AND number_value IS NOT NULL",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(fourth > 0, "a 4th custom field lands");
}
