//! The registry of QBO entities the tool knows. Every other module asks this table;
//! nothing else names an entity, so adding one is a line here plus its migration.

use std::fmt;
use std::str::FromStr;

/// How QBO lets us cut an entity's history into windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A transaction: has `TxnDate`, so `--window-field txn-date` is allowed.
    Transaction,
    /// A name list (Customer, Item, ...): QBO hides `Active = false` records unless the
    /// query names `Active`, so every query we send says `Active IN (true, false)`.
    NameList,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entity {
    /// Name on the command line and in reports, e.g. `invoices`.
    pub cli_name: &'static str,
    /// Name in the QBO query language and response envelope, e.g. `Invoice`.
    pub qbo_name: &'static str,
    /// Raw-zone table, schema-qualified.
    pub table: &'static str,
    pub kind: Kind,
}

impl Entity {
    pub fn has_txn_date(&self) -> bool {
        self.kind == Kind::Transaction
    }

    pub fn hides_inactive(&self) -> bool {
        self.kind == Kind::NameList
    }
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.cli_name)
    }
}

pub const ENTITIES: &[Entity] = &[
    Entity {
        cli_name: "invoices",
        qbo_name: "Invoice",
        table: "raw.qb_invoices",
        kind: Kind::Transaction,
    },
    Entity {
        cli_name: "customers",
        qbo_name: "Customer",
        table: "raw.qb_customers",
        kind: Kind::NameList,
    },
    Entity {
        cli_name: "items",
        qbo_name: "Item",
        table: "raw.qb_items",
        kind: Kind::NameList,
    },
];

#[derive(Debug, thiserror::Error)]
#[error("unknown entity `{0}`; expected one of: {list}, or `all`", list = cli_names().join(", "))]
pub struct UnknownEntity(pub String);

pub fn cli_names() -> Vec<&'static str> {
    ENTITIES.iter().map(|e| e.cli_name).collect()
}

/// Looks an entity up by its CLI name (`invoices`) or its QBO name (`Invoice`).
pub fn find(name: &str) -> Option<&'static Entity> {
    ENTITIES
        .iter()
        .find(|e| e.cli_name.eq_ignore_ascii_case(name) || e.qbo_name.eq_ignore_ascii_case(name))
}

pub fn by_qbo_name(name: &str) -> Option<&'static Entity> {
    ENTITIES.iter().find(|e| e.qbo_name == name)
}

/// What the user asked to load: one entity or all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    One(&'static Entity),
    All,
}

impl Selection {
    pub fn entities(&self) -> Vec<&'static Entity> {
        match self {
            Selection::One(e) => vec![*e],
            Selection::All => ENTITIES.iter().collect(),
        }
    }
}

impl FromStr for Selection {
    type Err = UnknownEntity;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("all") {
            return Ok(Selection::All);
        }
        find(s)
            .map(Selection::One)
            .ok_or_else(|| UnknownEntity(s.to_string()))
    }
}
