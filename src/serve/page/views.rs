//! The status page's HTML: the overview (companies, the backfill form, runs), one run with
//! its windows, and the login form. Every value rendered passes through `Esc`.

use std::fmt::Write;

use chrono::{DateTime, Utc};

use super::data::{CompanyHealth, RunSummary};
use super::html::{layout, pill, progress, Esc, Flash};
use crate::companies::CompanyStatus;
use crate::queue::RunKind;
use crate::store::ChunkRow;

pub struct Overview<'a> {
    pub companies: &'a [CompanyHealth],
    pub runs: &'a [RunSummary],
    pub now: DateTime<Utc>,
    pub flash: Option<Flash>,
    pub logout: bool,
}

pub fn overview(v: &Overview<'_>) -> String {
    let mut body = String::new();
    let _ = write!(
        body,
        r#"<div class="row"><h1 class="grow">Status</h1><label class="row small muted" style="display:flex;gap:.35rem"><input type="checkbox" id="autorefresh" checked style="width:auto"> auto-refresh</label><span class="small muted">as of {} UTC</span></div>"#,
        v.now.format("%Y-%m-%d %H:%M:%S")
    );
    body.push_str(&companies(v.companies, v.now));
    body.push_str(&runs(v.runs, v.now));
    body.push_str(&backfill_form(v.companies));
    layout("Status", v.flash.as_ref(), v.logout, true, &body)
}

fn companies(list: &[CompanyHealth], now: DateTime<Utc>) -> String {
    let mut out = String::from(r#"<section class="card" id="companies"><h2>Companies</h2>"#);
    if list.is_empty() {
        out.push_str(
            r#"<p class="muted">No company in <code>qbo companies</code> yet: add one with <code>qbo auth login --realm-id R</code> or <code>qbo companies add --realm-id R</code>.</p></section>"#,
        );
        return out;
    }
    out.push_str(
        r#"<div class="scroll"><table class="cards"><thead><tr><th>Company</th><th>Status</th><th>Watermark lag</th><th>Last successful sync</th><th>Last loaded</th></tr></thead><tbody>"#,
    );
    for h in list {
        let c = &h.company;
        let name = match &c.display_name {
            Some(n) => format!(
                r#"{}<div class="muted small mono">{}</div>"#,
                Esc(n),
                Esc(&c.realm_id)
            ),
            None => format!(r#"<span class="mono">{}</span>"#, Esc(&c.realm_id)),
        };
        let mut status = pill(c.status.as_str());
        if let Some(reason) = &c.status_reason {
            let _ = write!(
                status,
                r#"<div class="muted small wrap">{}</div>"#,
                Esc(reason)
            );
        }
        match c.status {
            CompanyStatus::NeedsReauth => {
                let _ = write!(
                    status,
                    r#"<p class="hint small">QBO refused its refresh token. Reconnect it: <code>qbo auth login --realm-id {r}</code> (or <code>qbo auth import --realm-id {r}</code> with a refresh token); its queued work resumes by itself.</p>"#,
                    r = Esc(&c.realm_id)
                );
            }
            CompanyStatus::Paused => {
                let _ = write!(
                    status,
                    r#"<div class="muted small">Workers skip it until <code>qbo companies resume --realm-id {}</code>.</div>"#,
                    Esc(&c.realm_id)
                );
            }
            CompanyStatus::Active => {}
        }
        let lag = match h.worst_lag() {
            None => r#"<span class="muted">no sync yet</span>"#.to_string(),
            Some((entity, at)) => {
                let mut s = format!(
                    r#"{} <span class="muted small">({})</span>"#,
                    Esc(&span(now - *at)),
                    Esc(entity)
                );
                if h.watermarks.len() > 1 {
                    s.push_str(r#"<details class="small"><summary>per entity</summary><table>"#);
                    for (entity, at) in &h.watermarks {
                        let _ = write!(
                            s,
                            r#"<tr><td>{}</td><td class="num">{}</td></tr>"#,
                            Esc(entity),
                            Esc(&span(now - *at))
                        );
                    }
                    s.push_str("</table></details>");
                }
                s
            }
        };
        let _ = write!(
            out,
            r#"<tr><td>{name}</td><td class="wrap" style="min-width:12rem">{status}</td><td data-label="Watermark lag">{lag}</td><td data-label="Last sync">{}</td><td data-label="Last loaded">{}</td></tr>"#,
            when(h.last_sync, now),
            when(c.last_loaded_at, now),
        );
    }
    out.push_str("</tbody></table></div></section>");
    out
}

fn backfill_form(companies: &[CompanyHealth]) -> String {
    let mut entities = String::from(r#"<option value="all">all entities</option>"#);
    for e in crate::entities::ENTITIES {
        let _ = write!(
            entities,
            r#"<option value="{n}">{n}</option>"#,
            n = Esc(e.cli_name)
        );
    }
    let mut realms = String::new();
    if companies.len() != 1 {
        realms.push_str(r#"<option value="all">all active companies</option>"#);
    }
    for h in companies {
        let _ = write!(
            realms,
            r#"<option value="{}">{}</option>"#,
            Esc(&h.company.realm_id),
            Esc(&h.company.label())
        );
    }
    format!(
        r#"<section class="card" id="backfill"><h2>Start a backfill</h2>
<form method="post" action="/backfills" class="fields">
<label>Entity<select name="entity">{entities}</select></label>
<label>Start<input type="date" name="start" required></label>
<label>End<input type="date" name="end" required></label>
<label>Company<select name="company">{realms}</select></label>
<div><button class="primary" type="submit">Queue backfill</button></div>
</form>
<p class="muted small">Queues the runs like <code>qbo backfill ENTITY --start .. --end .. --enqueue</code>; this server's workers (or any <code>qbo worker</code>) load them.</p>
</section>"#
    )
}

fn runs(list: &[RunSummary], now: DateTime<Utc>) -> String {
    let mut out = String::from(r#"<section class="card" id="runs"><h2>Runs</h2>"#);
    if list.is_empty() {
        out.push_str(r#"<p class="muted">No runs yet: start a backfill below.</p></section>"#);
        return out;
    }
    out.push_str(
        r#"<div class="scroll"><table class="cards"><thead><tr><th>Run</th><th>Status</th><th>Progress</th><th>Actions</th><th>Company</th><th class="num">Loaded / expected</th><th>Started</th></tr></thead><tbody>"#,
    );
    for r in list {
        let id = r.run_id.to_string();
        let _ = write!(
            out,
            r#"<tr><td><a href="/runs/{id}"><b>{entity}</b> <span class="mono">{short}</span></a><div class="muted small">{kind} · {range}</div></td><td>{status}</td><td style="min-width:10rem">{progress}</td><td>{actions}</td><td class="mono" data-label="Company">{realm}</td><td class="num" data-label="Loaded / expected">{loaded} / {expected}</td><td data-label="Started">{started}</td></tr>"#,
            short = &id[..8],
            kind = Esc(r.kind.as_str()),
            realm = Esc(&r.realm_id),
            entity = Esc(&r.entity),
            range = range(r),
            status = pill(r.status.as_str()),
            progress = progress(r.succeeded, r.failed, r.active, r.windows),
            loaded = r.loaded,
            expected = r.expected,
            started = when(Some(r.started_at), now),
            actions = actions(r),
        );
    }
    out.push_str("</tbody></table></div></section>");
    out
}

fn range(r: &RunSummary) -> String {
    match r.kind {
        RunKind::Sync => "changes since the watermark".into(),
        RunKind::Backfill => format!("{} .. {}", r.range_start, r.range_end),
        RunKind::Report => format!("report periods {} .. {}", r.range_start, r.range_end),
    }
}

/// The buttons that make sense for a run now: retry failed (it ended with failed windows),
/// resume (interrupted: windows left that nobody loads), cancel (not finished). Syncs have
/// none. Each posts to `/runs/{id}/<action>`, which calls the API's operation.
pub fn actions(r: &RunSummary) -> String {
    if r.kind != RunKind::Backfill {
        return String::new();
    }
    let status = r.status.as_str();
    let mut out = String::from(r#"<div class="actions">"#);
    let mut button = |action: &str, label: &str, class: &str, confirm: &str| {
        let _ = write!(
            out,
            r#"<form class="inline" method="post" action="/runs/{}/{action}"{confirm}><button class="{class}">{label}</button></form>"#,
            r.run_id
        );
    };
    if r.failed > 0 && matches!(status, "partial" | "error") {
        button("retry-failed", "Retry failed", "", "");
    }
    if status == "incomplete" {
        button("resume", "Resume", "", "");
    }
    if matches!(status, "running" | "incomplete") {
        button(
            "cancel",
            "Cancel",
            "danger",
            r#" onsubmit="return confirm('Cancel this run? The windows it has not loaded never will be.')""#,
        );
    }
    out.push_str("</div>");
    out
}

pub fn run_page(
    r: &RunSummary,
    windows: &[ChunkRow],
    now: DateTime<Utc>,
    flash: Option<Flash>,
    logout: bool,
) -> String {
    let id = r.run_id.to_string();
    let mut body = format!(
        r#"<section class="card"><div class="row"><h1 class="grow">Run <span class="mono">{short}</span> · {entity}</h1>{status}</div>
<dl class="facts">
<div><dt>Run id</dt><dd class="mono small">{id}</dd></div>
<div><dt>Company</dt><dd class="mono">{realm}</dd></div>
<div><dt>Kind</dt><dd>{kind}</dd></div>
<div><dt>Range</dt><dd>{range}</dd></div>
<div><dt>Started</dt><dd>{started}</dd></div>
<div><dt>Finished</dt><dd>{finished}</dd></div>
<div><dt>Rows loaded / expected</dt><dd>{loaded} / {expected}</dd></div>
</dl>
{progress}
<div style="margin-top:.8rem">{actions}</div>
</section>"#,
        short = &id[..8],
        entity = Esc(&r.entity),
        status = pill(r.status.as_str()),
        realm = Esc(&r.realm_id),
        kind = Esc(r.kind.as_str()),
        range = range(r),
        started = when(Some(r.started_at), now),
        finished = when(r.finished_at, now),
        loaded = r.loaded,
        expected = r.expected,
        progress = progress(r.succeeded, r.failed, r.active, r.windows),
        actions = actions(r),
    );
    body.push_str(r#"<section class="card" id="windows"><div class="row"><h2 class="grow">Windows</h2><label class="row small muted" style="display:flex;gap:.35rem"><input type="checkbox" id="autorefresh" checked style="width:auto"> auto-refresh</label></div>"#);
    if windows.is_empty() {
        body.push_str(r#"<p class="muted">No windows planned.</p>"#);
    } else {
        body.push_str(r#"<div class="scroll"><table><thead><tr><th class="num">#</th><th>Status</th><th>Window (UTC)</th><th>Via</th><th class="num">Expected</th><th class="num">Loaded</th><th class="num">Attempts</th><th class="num">Requests</th><th>Error</th><th>intuit_tid</th></tr></thead><tbody>"#);
        for w in windows {
            let _ = write!(
                body,
                r#"<tr><td class="num">{}</td><td>{}</td><td class="mono">{}</td><td>{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="wrap">{}</td><td class="mono small">{}</td></tr>"#,
                w.chunk_index,
                pill(w.status.as_str()),
                Esc(&window_cell(w)),
                Esc(&w.read_via),
                w.expected_count
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "–".into()),
                w.row_count,
                w.attempts,
                w.requests,
                Esc(w.error_message.as_deref().unwrap_or("")),
                Esc(w.last_intuit_tid.as_deref().unwrap_or("")),
            );
        }
        body.push_str("</tbody></table></div>");
    }
    body.push_str(r#"<p class="small"><a href="/">← all runs</a></p></section>"#);
    layout(
        &format!("Run {}", &id[..8]),
        flash.as_ref(),
        logout,
        true,
        &body,
    )
}

fn window_cell(w: &ChunkRow) -> String {
    let fmt = match w.kind {
        RunKind::Sync => "%Y-%m-%d %H:%M",
        RunKind::Backfill | RunKind::Report => "%Y-%m-%d",
    };
    format!(
        "{} .. {}",
        w.window_start_utc.format(fmt),
        w.window_end_utc.format(fmt)
    )
}

pub fn login(error: Option<&str>) -> String {
    let error = match error {
        Some(e) => format!(r#"<p class="flash err" role="alert">{}</p>"#, Esc(e)),
        None => String::new(),
    };
    let body = format!(
        r#"<section class="card login"><h1>Log in</h1>{error}
<form method="post" action="/login" class="fields" style="grid-template-columns:1fr">
<label>Token (QBO_SERVE_TOKEN)<input type="password" name="token" autocomplete="current-password" required autofocus></label>
<div><button class="primary" type="submit">Log in</button></div>
</form>
<p class="muted small">The browser keeps a session cookie derived from the token (never the token itself) until you log out.</p></section>"#
    );
    layout("Log in", None, false, false, &body)
}

pub fn not_found(what: &str, logout: bool) -> String {
    let body = format!(
        r#"<section class="card"><h1>Not found</h1><p>{}</p><p><a href="/">← status</a></p></section>"#,
        Esc(what)
    );
    layout("Not found", None, logout, false, &body)
}

pub fn failure(message: &str, logout: bool) -> String {
    let body = format!(
        r#"<section class="card"><h1>Something went wrong</h1><p class="flash err">{}</p><p><a href="/">← status</a></p></section>"#,
        Esc(message)
    );
    layout("Error", None, logout, false, &body)
}

/// `12 min ago` (the exact time on hover), or a dash.
fn when(at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match at {
        None => r#"<span class="muted">–</span>"#.into(),
        Some(at) => format!(
            r#"<span title="{} UTC">{} ago</span>"#,
            at.format("%Y-%m-%d %H:%M:%S"),
            Esc(&span(now - at))
        ),
    }
}

/// A duration the way people say it: `45 s`, `12 min`, `3 h 5 min`, `2 d 4 h`.
pub fn span(d: chrono::TimeDelta) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min", s / 60),
        3600..=86_399 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::span;
    use chrono::TimeDelta;

    #[test]
    fn spans_read_like_speech() {
        assert_eq!(span(TimeDelta::seconds(-3)), "0 s");
        assert_eq!(span(TimeDelta::seconds(45)), "45 s");
        assert_eq!(span(TimeDelta::seconds(720)), "12 min");
        assert_eq!(span(TimeDelta::seconds(3 * 3600 + 300)), "3 h 5 min");
        assert_eq!(span(TimeDelta::seconds(2 * 86_400 + 4 * 3600)), "2 d 4 h");
    }
}
