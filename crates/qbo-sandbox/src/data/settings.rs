//! What QBO serves only whole: the CompanyInfo and Preferences singletons (Id "1") and the
//! RecurringTransaction templates, each wrapped in its transaction type as QBO sends them
//! (`{"Invoice": {..., "RecurringInfo": {...}}}`).

use chrono::{Datelike, Duration};
use serde_json::{json, Value};

use super::chart::{self, account_ref};
use super::lines::{customer_ref, expense_lines, sales_lines, usd, vendor_ref};
use super::{created_day, money, record, FieldDef, GenCtx, KeyRule, Keys, Rng, Size, Spec};

/// Whole entities are not queryable by anything but `Id` (see `WHOLE_FIELDS`).
const NO_FIELDS: &[FieldDef] = &[];

pub const COMPANY_INFO: Spec = Spec {
    name: "CompanyInfo",
    fields: NO_FIELDS,
    keys: KeyRule::Plain { max_edits: 6 },
    size: Size::Fixed(1),
    needs: &[],
    render: render_company_info,
};

fn render_company_info(_: &GenCtx, k: &Keys, r: &mut Rng) -> Value {
    let addr = json!({ "Id": "1", "Line1": "123 Sierra Way", "City": "San Pablo", "CountrySubDivisionCode": "CA", "PostalCode": "87999", "Lat": "36.6788345", "Long": "-5.4464622" });
    let name_value = |n: &str, v: &str| json!({ "Name": n, "Value": v });
    record(
        k,
        json!({
            "CompanyName": "Sandbox Company_US_1 – Zoë's \"Landscaping\"",
            "LegalName": "Sandbox Company US 1 LLC",
            "CompanyAddr": addr, "CustomerCommunicationAddr": addr, "LegalAddr": addr,
            "PrimaryPhone": { "FreeFormNumber": "(650) 944-4444" },
            "CompanyStartDate": created_day(k).to_string(),
            "FiscalYearStartMonth": "January", "Country": "US",
            "Email": { "Address": "noreply@quickbooks.com" },
            "WebAddr": {}, "SupportedLanguages": "en",
            "NameValue": [
                name_value("NeoEnabled", "true"),
                name_value("IndustryType", "Landscaping Services"),
                name_value("SubscriptionStatus", if r.chance(90) { "SUBSCRIBED" } else { "TRIAL" }),
                name_value("OfferingSku", "QuickBooks Online Plus"),
                name_value("PayrollFeature", "false"),
                name_value("AccountantFeature", "false"),
                name_value("IsQbdtMigrated", "false"),
            ],
        }),
    )
}

pub const PREFERENCES: Spec = Spec {
    name: "Preferences",
    fields: NO_FIELDS,
    keys: KeyRule::Plain { max_edits: 9 },
    size: Size::Fixed(1),
    needs: &[],
    render: render_preferences,
};

fn render_preferences(ctx: &GenCtx, k: &Keys, r: &mut Rng) -> Value {
    let custom = |n: u8, label: &str| {
        json!([
            { "Name": format!("SalesFormsPrefs.UseSalesCustom{n}"), "Type": "BooleanType", "BooleanValue": true },
            { "Name": format!("SalesFormsPrefs.SalesCustomName{n}"), "Type": "StringType", "StringValue": label },
        ])
    };
    record(
        k,
        json!({
            "AccountingInfoPrefs": {
                "TrackDepartments": true, "DepartmentTerminology": "Location",
                "ClassTrackingPerTxn": false, "ClassTrackingPerTxnLine": true,
                "CustomerTerminology": "Customers", "FirstMonthOfFiscalYear": "January",
                "UseAccountNumbers": r.chance(50), "TaxYearMonth": "January",
            },
            "ProductAndServicesPrefs": {
                "ForSales": true, "ForPurchase": true, "QuantityWithPriceAndRate": true,
                "QuantityOnHand": true,
            },
            "SalesFormsPrefs": {
                "CustomField": [{ "CustomField": custom(1, "Crew #") }, { "CustomField": [] }],
                "AllowDeposit": true, "AllowDiscount": true, "AllowShipping": false,
                "AllowServiceDate": false, "AllowEstimates": true,
                "DefaultTerms": { "value": "3" }, "ETransactionEnabledStatus": "NotApplicable",
                "CustomTxnNumbers": false, "IPNSupportEnabled": false,
                "DefaultCustomerMessage": "Thank you for your business — merci!",
            },
            "EmailMessagesPrefs": {
                "InvoiceMessage": { "Subject": "Invoice from Zoë's \"Landscaping\"", "Message": "Your invoice is attached.\n\nThanks — Zoë" },
                "EstimateMessage": { "Subject": "Estimate", "Message": "Please review the attached estimate." },
            },
            "VendorAndPurchasesPrefs": {
                "TrackingByCustomer": true, "BillableExpenseTracking": true,
                "DefaultTerms": { "value": "3" }, "DefaultMarkup": 0,
                "POCustomField": [{ "CustomField": [] }],
            },
            "TimeTrackingPrefs": {
                "UseServices": true, "BillCustomers": true, "ShowBillRateToAll": false,
                "WorkWeekStartDate": "Monday", "MarkTimeEntriesBillable": true,
            },
            "TaxPrefs": { "UsingSalesTax": true, "PartnerTaxEnabled": true },
            // Off unless the company deals in foreign currencies: QBO's flag, which qbo sync
            // reads to decide whether to load exchange rates.
            "CurrencyPrefs": { "MultiCurrencyEnabled": ctx.multi_currency, "HomeCurrency": { "value": "USD" } },
            "ReportPrefs": { "ReportBasis": "Accrual", "CalcAgingReportFromTxnDate": false },
            "OtherPrefs": { "NameValue": [
                { "Name": "SalesFormsPrefs.DefaultCustomerMessage", "Value": "Thank you for your business — merci!" },
                { "Name": "DTXCopyMemo", "Value": "false" },
            ] },
        }),
    )
}

pub const RECURRING_TRANSACTION: Spec = Spec {
    name: "RecurringTransaction",
    fields: NO_FIELDS,
    keys: KeyRule::Plain { max_edits: 3 },
    size: Size::Fixed(5),
    needs: &[
        ("Customer", 1),
        ("Vendor", 1),
        ("Item", 1),
        ("Account", chart::MIN_ACCOUNTS),
    ],
    render: render_recurring,
};

/// A template: the transaction without a date or number, plus its schedule, wrapped in its
/// type. Invoices and bills alternate with the odd journal entry.
fn render_recurring(ctx: &GenCtx, k: &Keys, r: &mut Rng) -> Value {
    let kind = ["Invoice", "Bill", "Invoice", "JournalEntry"][(k.id as usize - 1) % 4];
    let mut t = record(k, json!({ "CurrencyRef": usd() }));
    let total = match kind {
        "Invoice" => {
            let (lines, total, _) = sales_lines(ctx, r);
            t["CustomerRef"] = customer_ref(ctx, 1 + r.below(ctx.count("Customer").max(1)));
            t["Line"] = json!(lines);
            t["CustomField"] = json!([]);
            total
        }
        "Bill" => {
            let (lines, total) = expense_lines(ctx, r, false);
            t["VendorRef"] = vendor_ref(ctx, 1 + r.below(ctx.count("Vendor").max(1)));
            t["APAccountRef"] = account_ref(chart::ACCOUNTS_PAYABLE);
            t["Line"] = json!(lines);
            total
        }
        _ => {
            let amount = 50_000 + r.below(100_000) as i64;
            let line = |id: &str, posting: &str, account: u64| {
                json!({ "Id": id, "Amount": money(amount), "DetailType": "JournalEntryLineDetail",
                        "JournalEntryLineDetail": { "PostingType": posting, "AccountRef": account_ref(account) } })
            };
            t["Line"] = json!([
                line("0", "Debit", chart::EXPENSES[3]),
                line("1", "Credit", chart::CHECKING)
            ]);
            t["Adjustment"] = json!(false);
            amount
        }
    };
    t["TotalAmt"] = money(total);
    let start = created_day(k) + Duration::days(1);
    let interval = *r.pick(&["Monthly", "Weekly", "Yearly"]);
    let mut schedule = json!({
        "IntervalType": interval, "NumInterval": 1 + r.below(2),
        "StartDate": start.to_string(), "NextDate": (start + Duration::days(30)).to_string(),
    });
    match interval {
        "Monthly" => schedule["DayOfMonth"] = json!(start.day()),
        "Weekly" => schedule["DaysOfWeek"] = json!([start.format("%A").to_string()]),
        _ => schedule["MonthOfYear"] = json!(start.month()),
    }
    if r.chance(30) {
        schedule["MaxOccurrences"] = json!(12);
    }
    t["RecurringInfo"] = json!({
        "Name": format!("{kind} template {} – \"monthly\"", k.id),
        "RecurType": *r.pick(&["Automated", "Reminded", "UnScheduled"]),
        "Active": !k.id.is_multiple_of(4),
        "ScheduleInfo": schedule,
    });
    json!({ kind: t })
}
