//! The status page in a real headless Chromium (Debian's `chromium`; skipped with a message
//! where none is installed) and the browser login over plain HTTP.
//!
//! The browser part drives `chromium --headless` as a subprocess (`--dump-dom`,
//! `--screenshot`) against a token-less loopback `qbo serve`, which needs no login. Its
//! screenshots are test artifacts under `target/serve-artifacts/`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use qbo::sandbox::Faults;
use tokio::time::Instant;

use crate::common::*;
use crate::harness::Served;

/// The browser to drive: `QBO_TEST_CHROMIUM`, else the first of the usual names on PATH.
fn browser() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("QBO_TEST_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ]
    .iter()
    .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
    .find(|p| p.is_file())
}

struct Chromium {
    bin: PathBuf,
    profile: tempfile::TempDir,
}

impl Chromium {
    fn command(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.bin);
        cmd.args([
            "--headless",
            "--no-sandbox", // tests run as root in CI containers
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            "--disable-extensions",
        ])
        .arg(format!("--user-data-dir={}", self.profile.path().display()))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
        cmd
    }

    /// The DOM after the page's scripts ran.
    async fn dom(&self, url: &str) -> String {
        let out = tokio::time::timeout(
            Duration::from_secs(120),
            self.command()
                .args(["--virtual-time-budget=2000", "--dump-dom", url])
                .output(),
        )
        .await
        .expect("chromium answers within 2 minutes")
        .expect("run chromium");
        assert!(
            out.status.success(),
            "chromium --dump-dom {url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    async fn screenshot(&self, url: &str, path: &Path, width: u32, height: u32) {
        let out = tokio::time::timeout(
            Duration::from_secs(120),
            self.command()
                .arg(format!("--screenshot={}", path.display()))
                .arg(format!("--window-size={width},{height}"))
                .arg(url)
                .output(),
        )
        .await
        .expect("chromium answers within 2 minutes")
        .expect("run chromium");
        assert!(
            out.status.success() && path.is_file(),
            "chromium --screenshot {url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        println!("screenshot: {}", path.display());
    }
}

fn artifacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/serve-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn count(pool: &sqlx::PgPool, sql: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sql)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_in_chromium_shows_a_running_runs_windows_and_queues_a_backfill_from_its_form() {
    let Some(bin) = browser() else {
        println!("SKIPPED: no chromium found (apt-get install chromium, or set QBO_TEST_CHROMIUM)");
        return;
    };
    let chromium = Chromium {
        bin,
        profile: tempfile::tempdir().unwrap(),
    };
    let w = World::new(small_company()).await;
    let realm = w.sandbox.realm_id().to_string();
    w.import_all_companies().await;
    // Invoices in windows of one page of 5 records: many windows, loaded slowly (one at a
    // time, each request delayed) so the run is still going while the browser looks.
    w.run(&[
        "backfill",
        "invoices",
        "--start",
        "2024-01-01",
        "--end",
        "2024-03-31",
        "--chunk-days",
        "2",
        "--page-size",
        "5",
        "--enqueue",
    ])
    .await
    .assert_code(0);
    w.faults(Faults {
        latency_ms: 400,
        ..Faults::default()
    });
    let served = Served::start(&w, &["--workers", "1", "--concurrency", "1"]).await;
    let pool = w.db.pool().await;
    let deadline = Instant::now() + Duration::from_secs(180);
    while count(
        &pool,
        "SELECT count(*) FROM ops.backfill_report WHERE status = 'success'",
    )
    .await
        < 2
    {
        assert!(Instant::now() < deadline, "no window loaded in 3 minutes");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let run_id: uuid::Uuid =
        sqlx::query_scalar("SELECT run_id FROM ops.backfill_runs WHERE entity = 'invoices'")
            .fetch_one(&pool)
            .await
            .unwrap();
    let windows = count(&pool, "SELECT count(*) FROM ops.backfill_report").await;

    // The overview: the company, the run (running, with its progress bar) and the form.
    let dom = chromium.dom(&served.url("/")).await;
    let short = &run_id.to_string()[..8];
    assert!(dom.contains(&format!("/runs/{run_id}")), "{dom}");
    assert!(dom.contains(short), "{dom}");
    assert!(dom.contains(&realm), "{dom}");
    assert!(dom.contains(r#"class="progress""#), "{dom}");
    assert!(
        dom.contains(r#"<span class="pill busy">running</span>"#),
        "{dom}"
    );

    // The run's page: one row per window, some loaded, some not yet.
    let run_url = served.url(&format!("/runs/{run_id}"));
    let dom = chromium.dom(&run_url).await;
    let rows = dom.matches("<tr><td class=\"num\">").count() as i64;
    assert_eq!(rows, windows, "one row per window: {dom}");
    assert!(
        dom.contains(r#"<span class="pill good">success</span>"#),
        "{dom}"
    );
    assert!(
        dom.contains(r#"<span class="pill idle">pending</span>"#),
        "{dom}"
    );
    assert!(dom.contains("2024-01-01 .. 2024-01-03"), "{dom}");

    let dir = artifacts();
    chromium
        .screenshot(&served.url("/"), &dir.join("status.png"), 1280, 1000)
        .await;
    chromium
        .screenshot(&served.url("/"), &dir.join("status-phone.png"), 390, 1400)
        .await;
    chromium
        .screenshot(&run_url, &dir.join("run.png"), 1280, 1000)
        .await;

    // The form as the browser sends it: the fields its DOM names, urlencoded, to its action.
    let dom = chromium.dom(&served.url("/")).await;
    assert!(
        dom.contains(r#"<form method="post" action="/backfills""#),
        "{dom}"
    );
    for field in [
        r#"name="entity""#,
        r#"name="start""#,
        r#"name="end""#,
        r#"name="company""#,
    ] {
        assert!(dom.contains(field), "{field}: {dom}");
    }
    assert!(
        dom.contains(r#"<option value="customers">customers</option>"#),
        "{dom}"
    );
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // A browser posting the page's form sends the page's origin (this server's address).
    let origin = served.url("");
    // Without it, or from another port of the same host, the post is refused.
    for from in [None, Some("http://127.0.0.1:1")] {
        let mut post = no_redirects.post(served.url("/backfills"));
        if let Some(from) = from {
            post = post.header("origin", from);
        }
        let resp = post
            .form(&[
                ("entity", "customers"),
                ("start", "2024-01-01"),
                ("end", "2024-03-31"),
                ("company", realm.as_str()),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 403, "{from:?}");
        let body = resp.text().await.unwrap();
        assert!(
            body.contains("not posted from this server's own page"),
            "{body}"
        );
    }
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM ops.backfill_runs WHERE entity = 'customers'"
        )
        .await,
        0
    );
    let resp = no_redirects
        .post(served.url("/backfills"))
        .header("origin", &origin)
        .form(&[
            ("entity", "customers"),
            ("start", "2024-01-01"),
            ("end", "2024-03-31"),
            ("company", realm.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 303);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with("/?done=queued&run="), "{location}");
    let customers: uuid::Uuid =
        sqlx::query_scalar("SELECT run_id FROM ops.backfill_runs WHERE entity = 'customers'")
            .fetch_one(&pool)
            .await
            .unwrap();
    // The page it redirects to says so once, and lists the new run.
    let dom = chromium.dom(&served.url(&location)).await;
    assert!(
        dom.contains(&format!(
            r#"<p class="flash ok" role="status">Queued run {customers}: the workers load it."#
        )),
        "{dom}"
    );
    assert!(dom.contains(&format!("/runs/{customers}")), "{dom}");

    // The running run's Cancel button, posted as the browser posts it.
    let cancel = format!("/runs/{run_id}/cancel");
    assert!(dom.contains(&format!(r#"action="{cancel}""#)), "{dom}");
    // Posted from the run's page, a browser sends no Origin only in old versions: the
    // Referer then names the page.
    let resp = no_redirects
        .post(served.url(&cancel))
        .header("referer", served.url(&format!("/runs/{run_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 303);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.starts_with(&format!(
            "/runs/{run_id}?done=cancelled&run={run_id}&windows="
        )),
        "{location}"
    );
    let dom = chromium.dom(&served.url(&location)).await;
    assert!(
        dom.contains(&format!(
            r#"<p class="flash ok" role="status">Run {run_id} is cancelled: its "#
        )),
        "{dom}"
    );
    assert!(
        dom.contains(r#"<span class="pill warn">cancelled</span>"#),
        "{dom}"
    );
    assert!(!dom.contains(&format!(r#"action="{cancel}""#)), "{dom}");
    // Cancelling it again is refused, and the page says why.
    let resp = no_redirects
        .post(served.url(&cancel))
        .header("origin", &origin)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let body = resp.text().await.unwrap();
    assert!(
        body.contains(&format!(
            r#"<p class="flash err" role="alert">run {run_id} was already cancelled"#
        )),
        "{body}"
    );

    // A bad form comes back with the CLI's message.
    let resp = no_redirects
        .post(served.url("/backfills"))
        .header("origin", &origin)
        .form(&[
            ("entity", "nonsense"),
            ("start", "2024-01-01"),
            ("end", "2024-01-02"),
            ("company", "all"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let body = resp.text().await.unwrap();
    assert!(
        body.contains(r#"<p class="flash err" role="alert">"#),
        "{body}"
    );
    assert!(body.contains("nonsense"), "{body}");
    assert_eq!(served.terminate().await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_log_in_with_the_token_and_carry_a_derived_cookie_never_the_token() {
    const TOKEN: &str = "t0ps3cret-page-token";
    let w = World::new(small_company()).await;
    let realm = w.sandbox.realm_id().to_string();
    // A company name with markup: the page must show it as text.
    w.run(&[
        "companies",
        "add",
        "--realm-id",
        &realm,
        "--name",
        "<img src=x onerror=alert(1)>",
    ])
    .await
    .assert_code(0);
    let served =
        Served::start_with(&w, &["--workers", "0"], &[("QBO_SERVE_TOKEN", Some(TOKEN))]).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let location = |r: &reqwest::Response| {
        r.headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_string())
    };

    // A page without the token or a session goes to the login form.
    let r = http.get(served.url("/")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(location(&r).as_deref(), Some("/login"));
    let form = http.get(served.url("/login")).send().await.unwrap();
    assert_eq!(form.status().as_u16(), 200);
    let form = form.text().await.unwrap();
    assert!(
        form.contains(r#"<input type="password" name="token""#),
        "{form}"
    );
    assert!(!form.contains(TOKEN));

    // A wrong token: the form again, no cookie.
    let r = http
        .post(served.url("/login"))
        .form(&[("token", "nope")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.headers().get("set-cookie").is_none());

    // The right one: a cookie derived from the token, HttpOnly and SameSite=Strict.
    let r = http
        .post(served.url("/login"))
        .form(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(location(&r).as_deref(), Some("/"));
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(!set.contains(TOKEN), "{set}");
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap().to_string();
    assert_eq!(
        cookie,
        format!("qbo_session={}", qbo::serve::auth::session_value(TOKEN))
    );

    let page = http
        .get(served.url("/"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let page = page.text().await.unwrap();
    assert!(page.contains("<h2>Companies</h2>"), "{page}");
    assert!(!page.contains(TOKEN), "the token never appears in a page");
    assert!(
        page.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "{page}"
    );
    assert!(!page.contains("<img src=x"), "{page}");

    // The cookie opens the pages, not the API or the metrics.
    for path in ["/api/runs", "/metrics"] {
        let r = http
            .get(served.url(path))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401, "{path}");
    }

    // A form post carrying the cookie must come from this server's page: another port of the
    // same host (same site, so the browser sends the cookie) is refused, as is a post naming
    // no origin; the page's own origin gets through (this form is then refused for its
    // entity, and the page says why, with 400).
    let origin = served.url("");
    let bad_form = [
        ("entity", "nonsense"),
        ("start", "2024-01-01"),
        ("end", "2024-01-02"),
        ("company", "all"),
    ];
    for (name, value) in [
        ("origin", "http://127.0.0.1:1"),
        ("origin", "null"),
        ("referer", "http://evil.example/"),
        ("x-none", "1"),
    ] {
        let r = http
            .post(served.url("/backfills"))
            .header("cookie", &cookie)
            .header(name, value)
            .form(&bad_form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 403, "{name}: {value}");
    }
    let r = http
        .post(served.url("/backfills"))
        .header("cookie", &cookie)
        .header("origin", &origin)
        .form(&bad_form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().await.unwrap().contains("nonsense"));
    // The bearer header needs no origin (a form on another site cannot send it).
    let r = http
        .post(served.url("/backfills"))
        .bearer_auth(TOKEN)
        .form(&bad_form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);

    // The query string cannot put words on the page: only the server's own sentences for an
    // outcome code, with a run id that must be one.
    for query in [
        "?ok=Your+token+expired%2C+paste+it+at+evil.example",
        "?err=Your+token+expired%2C+paste+it+at+evil.example",
        "?done=cancelled&run=evil.example&windows=1",
        "?done=evil.example",
    ] {
        let page = http
            .get(served.url(&format!("/{query}")))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(!page.contains("evil.example"), "{query}: {page}");
        assert!(!page.contains(r#"class="flash"#), "{query}: {page}");
    }

    // The bearer token opens pages too; a forged cookie does not.
    let r = http
        .get(served.url("/"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = http
        .get(served.url("/"))
        .header("cookie", format!("qbo_session={TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    // Actions need it as much as pages.
    let r = http
        .post(served.url("/backfills"))
        .form(&[
            ("entity", "all"),
            ("start", "2024-01-01"),
            ("end", "2024-01-02"),
            ("company", "all"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(location(&r).as_deref(), Some("/login"));

    // Logging out clears the cookie (from the page only: another site cannot log you out).
    let r = http
        .post(served.url("/logout"))
        .header("cookie", &cookie)
        .header("origin", "http://127.0.0.1:1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let r = http
        .post(served.url("/logout"))
        .header("cookie", &cookie)
        .header("origin", &origin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let set = r.headers()["set-cookie"].to_str().unwrap();
    assert!(
        set.starts_with("qbo_session=;") && set.contains("Max-Age=0"),
        "{set}"
    );
    assert_eq!(served.terminate().await, Some(0));
}

/// The README's screenshot (`docs/serve-status.png`): three companies (one loading, one
/// paused, one whose refresh token QBO refused), a finished backfill and sync, and a
/// backfill in progress. Run by hand: `cargo nextest run --test serve readme_screenshot
/// --run-ignored only`, then copy `target/serve-artifacts/readme.png`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "makes the README's screenshot; run by hand"]
async fn readme_screenshot() {
    let Some(bin) = browser() else {
        println!("SKIPPED: no chromium found");
        return;
    };
    let chromium = Chromium {
        bin,
        profile: tempfile::tempdir().unwrap(),
    };
    let today = chrono::Utc::now().date_naive();
    let (from, to) = (
        (today - chrono::Duration::days(40)).to_string(),
        today.to_string(),
    );
    let w = World::new(qbo::sandbox::SandboxConfig {
        companies: 3,
        invoices: 240,
        customers: 60,
        items: 30,
        data_start: today - chrono::Duration::days(40),
        data_end: today - chrono::Duration::days(1),
        ..qbo::sandbox::SandboxConfig::default()
    })
    .await;
    let realms = w.realm_ids();
    let names = [
        "Acme Outdoor Supply",
        "Birch & Co Bakery",
        "Cobalt Freight LLC",
    ];
    for (realm, name) in realms.iter().zip(names) {
        w.run(&["companies", "add", "--realm-id", realm, "--name", name])
            .await
            .assert_code(0);
    }
    w.import_all_companies().await;
    let (a, b, c) = (&realms[0], &realms[1], &realms[2]);
    for realm in [a, b] {
        w.run_for(
            realm,
            &["backfill", "customers", "--start", &from, "--end", &to],
        )
        .await
        .assert_code(0);
        w.run_for(realm, &["sync", "customers"])
            .await
            .assert_code(0);
    }
    w.run(&[
        "companies",
        "pause",
        "--realm-id",
        b,
        "--reason",
        "month-end close",
    ])
    .await
    .assert_code(0);
    let pool = w.db.pool().await;
    sqlx::query(
        "UPDATE ops.companies SET status = 'needs_reauth',
                status_reason = 'QBO refused the refresh token (invalid_grant)'
          WHERE realm_id = $1",
    )
    .bind(c)
    .execute(&pool)
    .await
    .unwrap();
    w.run_for(
        a,
        &[
            "backfill",
            "invoices",
            "--start",
            &from,
            "--end",
            &to,
            "--chunk-days",
            "1",
            "--page-size",
            "5",
            "--enqueue",
        ],
    )
    .await
    .assert_code(0);
    w.faults(Faults {
        latency_ms: 1500,
        ..Faults::default()
    });
    let served = Served::start(&w, &["--workers", "1", "--concurrency", "2"]).await;
    let deadline = Instant::now() + Duration::from_secs(180);
    while count(&pool, "SELECT count(*) FROM ops.backfill_report r JOIN ops.backfill_runs USING (run_id) WHERE r.entity = 'invoices' AND r.status = 'success'").await < 8 {
        assert!(Instant::now() < deadline, "no window loaded in 3 minutes");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let dir = artifacts();
    chromium
        .screenshot(&served.url("/"), &dir.join("readme.png"), 1100, 900)
        .await;
    chromium
        .screenshot(&served.url("/"), &dir.join("readme-phone.png"), 390, 1600)
        .await;
    let run_id: uuid::Uuid =
        sqlx::query_scalar("SELECT run_id FROM ops.backfill_runs WHERE entity = 'invoices'")
            .fetch_one(&pool)
            .await
            .unwrap();
    chromium
        .screenshot(
            &served.url(&format!("/runs/{run_id}")),
            &dir.join("readme-run.png"),
            1100,
            900,
        )
        .await;
    served.terminate().await;
}
