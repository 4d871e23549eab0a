//! Which payments pay which documents, and how much, derived from ids alone so that both
//! sides agree without a shared table: customer payments pay invoices (`INVOICES`), bill
//! payments pay bills (`BILLS`). Payment `p` pays document `σ(p)`, where `σ` spreads payments
//! over the documents (a bijection `p -> (p-1)·m mod N + 1` with `m` coprime to N documents);
//! with more payments than documents, payment `p` pays the document of `((p-1) mod N) + 1`. A
//! document's payers are therefore computable from its id, its `LinkedTxn` lists them, and its
//! `Balance` is its total less what they applied, which is never more than its total (QBO
//! refuses a payment that applies more than the open balance).

use super::{GenCtx, Rng};

/// Which payments settle which documents.
pub struct Settles {
    /// The documents paid (`Invoice`, `Bill`): the draws that split one among its payers are
    /// salted with this name.
    pub document: &'static str,
    pub payment: &'static str,
}

pub const INVOICES: Settles = Settles {
    document: "Invoice",
    payment: "Payment",
};

pub const BILLS: Settles = Settles {
    document: "Bill",
    payment: "BillPayment",
};

/// Salt of the draws that split an invoice among its payers (apart from its render's draws).
const SETTLE_SALT: u64 = 0x5E77;

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The multiplier of `σ` for `n` invoices: near the golden ratio of `n`, coprime to it.
fn step(n: u64) -> u64 {
    let mut m = (n * 618 / 1000).max(1);
    while gcd(m, n) != 1 {
        m += 1;
    }
    m
}

/// `m⁻¹ mod n`.
fn inverse(m: u64, n: u64) -> u64 {
    let (mut t, mut new_t, mut r, mut new_r) = (0i128, 1i128, n as i128, m as i128);
    while new_r != 0 {
        let q = r / new_r;
        (t, new_t) = (new_t, t - q * new_t);
        (r, new_r) = (new_r, r - q * new_r);
    }
    t.rem_euclid(n as i128) as u64
}

/// The document payment `p` pays, if the company has any.
pub fn document_of_payment(ctx: &GenCtx, s: &Settles, p: u64) -> Option<u64> {
    let n = ctx.count(s.document);
    if n == 0 || p == 0 {
        return None;
    }
    let slot = (p - 1) % n;
    Some((slot as u128 * step(n) as u128 % n as u128) as u64 + 1)
}

/// The payments that pay document `i`, in Id order.
pub fn payers_of(ctx: &GenCtx, s: &Settles, i: u64) -> Vec<u64> {
    let (n, payments) = (ctx.count(s.document), ctx.count(s.payment));
    if n == 0 || i == 0 || i > n {
        return Vec::new();
    }
    let slot = ((i - 1) as u128 * inverse(step(n), n) as u128 % n as u128) as u64;
    (0..)
        .map(|k| slot + 1 + k * n)
        .take_while(|p| *p <= payments)
        .collect()
}

/// What each payer of document `i` (of `total` cents) applied to it, in the payers' order:
/// most documents with payers are paid in full, the rest in part; every payer applies at
/// least a cent, and together never more than the total (a document of less than a cent a
/// payer is paid by its first payers only).
pub fn applied(ctx: &GenCtx, s: &Settles, i: u64, total: i64) -> Vec<(u64, i64)> {
    let mut payers = payers_of(ctx, s, i);
    payers.truncate(total.max(0) as usize);
    if payers.is_empty() {
        return Vec::new();
    }
    let mut r = Rng::new(ctx.seed, s.document, i, SETTLE_SALT);
    let paid = if r.chance(65) {
        total
    } else {
        total * (20 + r.below(70) as i64) / 100
    };
    let k = payers.len() as i64;
    let paid = paid.max(k);
    let each = paid / k;
    let last = paid - each * (k - 1);
    payers
        .iter()
        .enumerate()
        .map(|(j, p)| (*p, if j as i64 == k - 1 { last } else { each }))
        .collect()
}

/// What payment `p` applied to the document it pays (0 when it pays none), given the
/// document's total.
pub fn applied_by(ctx: &GenCtx, s: &Settles, doc: u64, total: i64, p: u64) -> i64 {
    applied(ctx, s, doc, total)
        .into_iter()
        .find(|(payer, _)| *payer == p)
        .map_or(0, |(_, a)| a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigma_and_its_inverse_agree() {
        for n in [1u64, 2, 3, 10, 97, 100, 2000] {
            assert_eq!(inverse(step(n), n) * step(n) % n, 1 % n, "n={n}");
        }
    }
}
