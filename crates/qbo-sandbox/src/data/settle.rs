//! Which payments pay which invoices, and how much, derived from ids alone so that both sides
//! agree without a shared table: payment `p` pays invoice `σ(p)`, where `σ` spreads payments
//! over the invoices (a bijection `p -> (p-1)·m mod N + 1` with `m` coprime to N invoices);
//! with more payments than invoices, payment `p` pays the invoice of `((p-1) mod N) + 1`. An
//! invoice's payers are therefore computable from its id, its `LinkedTxn` lists them, and its
//! `Balance` is its total less what they applied.

use super::{GenCtx, Rng};

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

/// The invoice payment `p` pays, if the company has invoices.
pub fn invoice_of_payment(ctx: &GenCtx, p: u64) -> Option<u64> {
    let n = ctx.count("Invoice");
    if n == 0 || p == 0 {
        return None;
    }
    let slot = (p - 1) % n;
    Some((slot as u128 * step(n) as u128 % n as u128) as u64 + 1)
}

/// The payments that pay invoice `i`, in Id order.
pub fn payers_of_invoice(ctx: &GenCtx, i: u64) -> Vec<u64> {
    let (n, payments) = (ctx.count("Invoice"), ctx.count("Payment"));
    if n == 0 || i == 0 || i > n {
        return Vec::new();
    }
    let slot = ((i - 1) as u128 * inverse(step(n), n) as u128 % n as u128) as u64;
    (0..)
        .map(|k| slot + 1 + k * n)
        .take_while(|p| *p <= payments)
        .collect()
}

/// What each payer of invoice `i` (of `total` cents) applied to it, in the payers' order:
/// most invoices with payers are paid in full, the rest in part; every payer applies at
/// least a cent.
pub fn applied(ctx: &GenCtx, i: u64, total: i64) -> Vec<(u64, i64)> {
    let payers = payers_of_invoice(ctx, i);
    if payers.is_empty() {
        return Vec::new();
    }
    let mut r = Rng::new(ctx.seed, "Invoice", i, SETTLE_SALT);
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
