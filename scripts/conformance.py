"""Third-party conformance check: drives python-quickbooks and intuit-oauth, unmodified, against
`qbo sandbox`, and checks that every call returns exactly the sandbox's records.

Run by scripts/conformance.sh (which builds qbo and makes a throwaway virtualenv):
    python conformance.py path/to/qbo

The clients are changed only where they name Intuit's hosts: intuit-oauth's discovery URL
(`intuitlib.config.DISCOVERY_URL`, a dict the library reads at every AuthClient) and
python-quickbooks' API root (`QuickBooks.sandbox_api_url_v3`). The sandbox is plain HTTP on
127.0.0.1, so OAUTHLIB_INSECURE_TRANSPORT=1 lets requests-oauthlib send a bearer over it.

What the sandbox holds comes from its own control API (`GET /__sandbox/records/{Entity}`:
every live record, inactive names included). Exit 1 on any difference, listing them.
"""

import datetime
import importlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"

import intuitlib.config  # noqa: E402
from intuitlib.client import AuthClient  # noqa: E402
from intuitlib.exceptions import AuthClientError  # noqa: E402
from quickbooks import QuickBooks  # noqa: E402
from quickbooks.cdc import change_data_capture  # noqa: E402
from quickbooks.helpers import qb_datetime_format  # noqa: E402
from quickbooks.exceptions import ObjectNotFoundException  # noqa: E402

# (python-quickbooks module, class) for every entity it supports that the sandbox serves.
# Not here: ExchangeRate and TaxService (the sandbox does not serve them), JournalCode
# (python-quickbooks has no class for it). CreditCardPayment is here: QBO answers it under
# "CreditCardPaymentTxn", as python-quickbooks expects, and so does the sandbox.
CLASSES = [
    ("account", "Account"), ("attachable", "Attachable"), ("bill", "Bill"),
    ("billpayment", "BillPayment"), ("budget", "Budget"), ("trackingclass", "Class"),
    ("companycurrency", "CompanyCurrency"), ("company_info", "CompanyInfo"),
    ("creditcardpayment_entity", "CreditCardPayment"),
    ("creditmemo", "CreditMemo"), ("customer", "Customer"), ("customertype", "CustomerType"),
    ("department", "Department"), ("deposit", "Deposit"), ("employee", "Employee"),
    ("estimate", "Estimate"), ("invoice", "Invoice"), ("item", "Item"),
    ("journalentry", "JournalEntry"), ("payment", "Payment"),
    ("paymentmethod", "PaymentMethod"), ("preferences", "Preferences"),
    ("purchase", "Purchase"), ("purchaseorder", "PurchaseOrder"),
    ("recurringtransaction", "RecurringTransaction"), ("refundreceipt", "RefundReceipt"),
    ("salesreceipt", "SalesReceipt"), ("taxagency", "TaxAgency"), ("taxcode", "TaxCode"),
    ("taxrate", "TaxRate"), ("term", "Term"), ("timeactivity", "TimeActivity"),
    ("transfer", "Transfer"), ("vendor", "Vendor"), ("vendorcredit", "VendorCredit"),
]
# Name lists: QBO answers only active members unless the query mentions Active.
NAME_LISTS = {
    "Account", "Budget", "Class", "CompanyCurrency", "Customer", "CustomerType", "Department",
    "Employee", "Item", "PaymentMethod", "TaxCode", "TaxRate", "Term", "Vendor",
}
# Served whole: no MetaData filter, read in one piece.
WHOLE = {"CompanyInfo", "Preferences", "RecurringTransaction"}
# Not served by change data capture.
NO_CDC = WHOLE | {"TaxAgency", "TaxCode", "TaxRate", "TimeActivity"}

failures = []
checks = 0


def check(ok, what):
    global checks
    checks += 1
    if not ok:
        failures.append(what)
        print(f"MISMATCH {what}", flush=True)


def body(record):
    """A RecurringTransaction is wrapped in its type: {"Invoice": {...}}."""
    if "Id" not in record and len(record) == 1:
        return next(iter(record.values()))
    return record


def obj_id(obj):
    if getattr(obj, "Id", None) is not None:
        return str(obj.Id)
    for v in vars(obj).values():
        if getattr(v, "Id", None) is not None:
            return str(v.Id)
    return None


def start_sandbox(qbo):
    today = datetime.date.today()
    # Every record last updated 20 to 2 days ago, so CDC (30 days back) sees all of them, and
    # a company small enough that no entity holds more than CDC's 1000 objects.
    cmd = [qbo, "sandbox", "--port", "0", "--invoices", "300", "--customers", "60",
           "--items", "30", "--data-start", str(today - datetime.timedelta(days=20)),
           "--data-end", str(today - datetime.timedelta(days=2))]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    env = {}
    while "QBO_TOKEN_STORE" not in env:
        line = proc.stdout.readline()
        if not line:
            raise SystemExit(f"qbo sandbox exited before printing its exports: {cmd}")
        if line.startswith("export "):
            k, _, v = line[len("export "):].strip().partition("=")
            env[k] = v
    return proc, env


def control(base, path, method="GET"):
    req = urllib.request.Request(f"{base}/__sandbox/{path}", method=method)
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())


def check_oauth(env, base):
    auth = AuthClient(env["QBO_CLIENT_ID"], env["QBO_CLIENT_SECRET"],
                      "http://localhost:8765/callback", "sandbox")
    check(auth.token_endpoint == env["QBO_TOKEN_URL"], "discovery: token endpoint")
    first = env["QBO_REFRESH_TOKEN"]
    auth.refresh(refresh_token=first)
    check(bool(auth.access_token), "refresh: an access token")
    check(auth.refresh_token not in (None, first), "refresh: the refresh token rotates")
    try:
        AuthClient(env["QBO_CLIENT_ID"], env["QBO_CLIENT_SECRET"],
                   "http://localhost:8765/callback", "sandbox").refresh(refresh_token=first)
        check(False, "refresh: a rotated token is refused")
    except AuthClientError as e:
        err = json.loads(e.content)
        check(e.status_code == 400 and err.get("error") == "invalid_grant"
              and "error_description" in err, f"refresh: invalid_grant answer {err}")
    return auth


def all_pages(cls, qb):
    """all() page by page, as a caller must (QBO caps a page at 1000)."""
    ids, start = [], 1
    while True:
        page = cls.all(start_position=start, max_results=1000, qb=qb)
        ids += [obj_id(o) for o in page]
        if len(page) < 1000:
            return ids
        start += 1000


def check_entity(cls, qb, records, realm):
    name = cls.qbo_object_name
    recs = [body(r) for r in records]
    every = sorted(r["Id"] for r in recs)
    active = sorted(r["Id"] for r in recs if r.get("Active", True))
    listed = active if name in NAME_LISTS else every
    versions = {r["Id"]: r["SyncToken"] for r in recs}
    check(bool(every), f"{name}: the sandbox serves records of it")
    if name == "Preferences":
        # python-quickbooks reads Preferences only with get() (GET .../preferences).
        one = cls.get(qb=qb)
        check(obj_id(one) == every[0], "Preferences.get()")
        return

    got = all_pages(cls, qb)
    check(sorted(got) == listed and len(got) == len(set(got)),
          f"{name}.all(): {len(got)} records, expected {len(listed)}")

    n = cls.count(qb=qb)
    check(n == len(listed), f"{name}.count(): {n}, expected {len(listed)}")
    if name in NAME_LISTS:
        n = cls.count("Active IN (true, false)", qb=qb)
        check(n == len(every), f"{name}.count(Active IN (true, false)): {n}, expected {len(every)}")

    where = " WHERE Active IN (true, false)" if name in NAME_LISTS else ""
    desc = cls.query(f"SELECT * FROM {name}{where} ORDER BY Id DESC MAXRESULTS 1000", qb=qb)
    want = sorted(every, key=int, reverse=True)[:1000]
    check([obj_id(o) for o in desc] == want, f"{name}.query(ORDER BY Id DESC): order or ids differ")

    sample = every[len(every) // 2]
    kw = {"Id": sample}
    if name in NAME_LISTS:
        kw["Active"] = next(r.get("Active", True) for r in recs if r["Id"] == sample)
    hit = cls.filter(qb=qb, **kw)
    check([obj_id(o) for o in hit] == [sample], f"{name}.filter({kw}): {[obj_id(o) for o in hit]}")
    if name in NAME_LISTS:
        inactive = sorted(r["Id"] for r in recs if not r.get("Active", True))
        got = cls.filter(Active=False, max_results=1000, qb=qb)
        check(sorted(obj_id(o) for o in got) == inactive, f"{name}.filter(Active=False)")

    for rid in {every[0], sample, every[-1]}:
        key = realm if name == "CompanyInfo" else rid
        one = cls.get(key, qb=qb)
        check(obj_id(one) == rid and str(getattr(body_of(one), "SyncToken", "")) == versions[rid],
              f"{name}.get({key})")


def body_of(obj):
    if getattr(obj, "Id", None) is not None:
        return obj
    for v in vars(obj).values():
        if getattr(v, "Id", None) is not None:
            return v
    return obj


def check_cdc(classes, qb, base, since):
    served = [c for c in classes if c.qbo_object_name not in NO_CDC]
    for cls in served:
        name = cls.qbo_object_name
        want = sorted(body(r)["Id"] for r in control(base, f"records/{name}"))
        want += control(base, f"deleted/{name}")
        json_name = getattr(cls, "qbo_json_object_name", "") or name
        if json_name != name:
            # QBO files CreditCardPayment under CreditCardPaymentTxn in CDC answers too (as
            # Intuit's own Java and .NET SDKs read it); python-quickbooks' change_data_capture
            # looks for the endpoint name there and would see nothing, so read its raw answer.
            stamp = since if isinstance(since, str) else qb_datetime_format(since)
            raw = qb.change_data_capture(name, stamp)
            lists = [qr.get(json_name, []) for qr in raw["CDCResponse"][0]["QueryResponse"]]
            got = [r["Id"] for lst in lists for r in lst]
            check(all(name not in qr for qr in raw["CDCResponse"][0]["QueryResponse"]),
                  f"CDC {name}: answered under {name}, not {json_name}")
        else:
            resp = change_data_capture([cls], since, qb=qb)
            got = [obj_id(o) for o in getattr(resp, name, [])]
        check(sorted(got) == sorted(want) and len(got) == len(set(got)),
              f"CDC {name}: {len(got)} objects, expected {len(want)}")
    # Several entities in one call, each under its own name.
    trio = [c for c in served if c.qbo_object_name in ("Term", "Department", "PaymentMethod")]
    resp = change_data_capture(trio, since, qb=qb)
    for cls in trio:
        name = cls.qbo_object_name
        want = sorted(body(r)["Id"] for r in control(base, f"records/{name}"))
        got = sorted(obj_id(o) for o in getattr(resp, name, []))
        check(got == want, f"CDC {[c.qbo_object_name for c in trio]}: {name} differs")


def main():
    qbo = sys.argv[1]
    started = time.monotonic()
    proc, env = start_sandbox(qbo)
    try:
        base, realm = env["QBO_API_BASE_URL"], env["QBO_REALM_ID"]
        discovery = f"{base}/.well-known/openid_sandbox_configuration/"
        intuitlib.config.DISCOVERY_URL["sandbox"] = discovery
        QuickBooks.sandbox_api_url_v3 = f"{base}/v3"

        auth = check_oauth(env, base)
        qb = QuickBooks(auth_client=auth, refresh_token=auth.refresh_token,
                        company_id=realm, minorversion=75)
        classes = [getattr(importlib.import_module(f"quickbooks.objects.{m}"), c)
                   for m, c in CLASSES]

        # A user deletes an invoice (gone) and a customer (QBO keeps it, inactive), and
        # deactivates an item, before the checks: every call must agree with the sandbox.
        customers = control(base, "records/Customer")
        active = next(c["Id"] for c in customers if c.get("Active", True))
        control(base, f"delete/Customer/{active}", "POST")
        control(base, "delete/Invoice/1", "POST")
        item = next(i["Id"] for i in control(base, "records/Item") if i.get("Active", True))
        control(base, f"deactivate/Item/{item}", "POST")

        for cls in classes:
            name = cls.qbo_object_name
            try:
                check_entity(cls, qb, control(base, f"records/{name}"), realm)
            except Exception as e:  # a client crash is a fidelity failure too
                check(False, f"{name}: {type(e).__name__}: {e}")
        try:
            from quickbooks.objects.invoice import Invoice
            Invoice.get(1, qb=qb)
            check(False, "Invoice.get(deleted id) raises ObjectNotFoundException")
        except ObjectNotFoundException:
            pass
        since = (datetime.date.today() - datetime.timedelta(days=25)).isoformat()
        try:
            check_cdc(classes, qb, base, since)
        except Exception as e:
            check(False, f"CDC: {type(e).__name__}: {e}")
        stats = control(base, "stats")
        print(f"conformance: {len(classes)} entities, {stats['query_requests']} queries, "
              f"{stats['read_requests']} reads, {stats['cdc_requests']} CDC calls, "
              f"{stats['token_requests']} token calls, {time.monotonic() - started:.1f} s",
              flush=True)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    if failures:
        print(f"conformance: {len(failures)} mismatches", file=sys.stderr)
    else:
        print("conformance: python-quickbooks and intuit-oauth see exactly the sandbox's records")
    # The closing line CI reads, in the plain form any runner understands.
    print(f"conformance: {checks - len(failures)} passed, {len(failures)} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
