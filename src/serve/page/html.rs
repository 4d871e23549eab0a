//! The few pieces of HTML every page shares: escaping, the layout (inline CSS and the
//! auto-refresh script), status pills and progress bars. Every value from the database or the
//! request goes through `esc` (or `Esc` in `format!`) before it reaches a page.

use std::fmt;

/// Writes its text escaped for HTML text and quoted attribute values: `format!("<td>{}</td>", Esc(&name))`.
pub struct Esc<'a>(pub &'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..i])?;
            f.write_str(match rest.as_bytes()[i] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[i + 1..];
        }
        f.write_str(rest)
    }
}

/// A message shown once at the top of a page: the server's own sentence for the outcome of
/// the user's last action, or the error that refused it. Never text taken from a URL.
pub enum Flash {
    Ok(String),
    Err(String),
}

/// A whole page: `title` (escaped here), `body` (already HTML). `refresh` reloads the page
/// every few seconds while nobody is typing in a form (runs move on by themselves).
pub fn layout(
    title: &str,
    flash: Option<&Flash>,
    logout: bool,
    refresh: bool,
    body: &str,
) -> String {
    let flash = match flash {
        Some(Flash::Ok(m)) => format!(r#"<p class="flash ok" role="status">{}</p>"#, Esc(m)),
        Some(Flash::Err(m)) => format!(r#"<p class="flash err" role="alert">{}</p>"#, Esc(m)),
        None => String::new(),
    };
    let logout = match logout {
        true => {
            r#"<form method="post" action="/logout" class="logout"><button class="link">Log out</button></form>"#
        }
        false => "",
    };
    let script = match refresh {
        true => REFRESH_SCRIPT,
        false => "",
    };
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · qbo</title>
<style>{CSS}</style>
</head><body>
<header class="top"><a href="/" class="brand">qbo</a><span class="sub">status</span>{logout}</header>
<main>
{flash}
{body}
</main>
{script}
</body></html>
"#,
        title = Esc(title),
    )
}

/// A run's or a window's status as a coloured pill.
pub fn pill(status: &str) -> String {
    let class = match status {
        "success" | "active" => "good",
        "error" | "needs_reauth" => "bad",
        "partial" | "incomplete" | "paused" | "cancelled" => "warn",
        "running" | "paged" => "busy",
        _ => "idle",
    };
    format!(r#"<span class="pill {class}">{}</span>"#, Esc(status))
}

/// A bar of `done` windows out of `total`, failed ones in red after them; `active` are
/// being loaded now.
pub fn progress(done: i64, failed: i64, active: i64, total: i64) -> String {
    let pct = |n: i64| match total {
        0 => 0.0,
        t => (n as f64 * 100.0 / t as f64).clamp(0.0, 100.0),
    };
    let mut note = String::new();
    if failed > 0 {
        note.push_str(&format!(
            r#", <span class="bad-text">{failed} failed</span>"#
        ));
    }
    if active > 0 {
        note.push_str(&format!(", {active} loading"));
    }
    format!(
        r#"<div class="progress" role="progressbar" aria-valuemin="0" aria-valuemax="{total}" aria-valuenow="{done}"><span class="done" style="width:{:.1}%"></span><span class="failed" style="width:{:.1}%"></span></div><div class="muted small">{done}/{total} windows{note}</div>"#,
        pct(done),
        pct(failed),
    )
}

/// Reloads every 5 s unless a form field has the focus or the box is unticked; drops the
/// one-time flash from the address so a reload does not show it again.
const REFRESH_SCRIPT: &str = r#"<script>
(function () {
  var box = document.getElementById('autorefresh');
  if (box) {
    box.checked = localStorage.getItem('qbo-autorefresh') !== 'off';
    box.addEventListener('change', function () { localStorage.setItem('qbo-autorefresh', box.checked ? 'on' : 'off'); });
  }
  if (/[?&](ok|err)=/.test(location.search)) history.replaceState(null, '', location.pathname);
  setInterval(function () {
    var a = document.activeElement, typing = a && /^(INPUT|SELECT|TEXTAREA)$/.test(a.tagName);
    if ((!box || box.checked) && !typing && document.visibilityState === 'visible') location.reload();
  }, 5000);
})();
</script>"#;

const CSS: &str = r#"
:root { --bg:#f5f6f8; --card:#fff; --ink:#1d2330; --muted:#667085; --line:#e4e7ec;
  --good:#12805c; --good-bg:#e3f6ee; --bad:#c4320a; --bad-bg:#fdeceb; --warn:#9a6700; --warn-bg:#fff4d6;
  --busy:#175cd3; --busy-bg:#e6efff; --accent:#175cd3; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
  font:15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
a { color:var(--accent); text-decoration:none; } a:hover { text-decoration:underline; }
.top { display:flex; align-items:baseline; gap:.6rem; padding:.8rem 1.2rem; background:#101828; color:#fff; }
.top .brand { color:#fff; font-weight:700; font-size:1.15rem; letter-spacing:.02em; }
.top .sub { color:#98a2b3; }
.top .logout { margin-left:auto; }
.top .link { background:none; border:0; color:#d0d5dd; cursor:pointer; font:inherit; padding:0; }
main { max-width:1200px; margin:0 auto; padding:1rem; display:grid; gap:1rem; }
section.card { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:1rem 1.1rem; min-width:0; }
h1 { font-size:1.3rem; margin:.2rem 0 .6rem; } h2 { font-size:1.05rem; margin:0 0 .7rem; }
.row { display:flex; flex-wrap:wrap; gap:.5rem 1rem; align-items:center; }
.grow { flex:1 1 auto; }
.muted { color:var(--muted); } .small { font-size:.82rem; }
.mono { font-family:ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size:.86em; }
.scroll { overflow-x:auto; -webkit-overflow-scrolling:touch; }
table { border-collapse:collapse; width:100%; }
th, td { text-align:left; padding:.45rem .6rem; border-bottom:1px solid var(--line); vertical-align:top; white-space:nowrap; }
th { font-size:.75rem; text-transform:uppercase; letter-spacing:.04em; color:var(--muted); font-weight:600; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; }
td.wrap { white-space:normal; min-width:16rem; max-width:32rem; }
tr:last-child td { border-bottom:0; }
.pill { display:inline-block; padding:.08rem .55rem; border-radius:999px; font-size:.78rem; font-weight:600; }
.pill.good { color:var(--good); background:var(--good-bg); } .pill.bad { color:var(--bad); background:var(--bad-bg); }
.pill.warn { color:var(--warn); background:var(--warn-bg); } .pill.busy { color:var(--busy); background:var(--busy-bg); }
.pill.idle { color:var(--muted); background:#f2f4f7; }
.bad-text { color:var(--bad); }
.progress { display:flex; height:.55rem; min-width:8rem; background:#eaecf0; border-radius:999px; overflow:hidden; }
.progress .done { background:var(--good); } .progress .failed { background:var(--bad); }
.flash { margin:0; padding:.7rem 1rem; border-radius:8px; border:1px solid; }
.flash.ok { color:var(--good); background:var(--good-bg); border-color:#a6e1c8; }
.flash.err { color:var(--bad); background:var(--bad-bg); border-color:#f5b5ab; }
.hint { margin:.35rem 0 0; padding:.45rem .6rem; background:var(--bad-bg); border-radius:6px; white-space:normal; }
.hint code { background:#fff; padding:.05rem .3rem; border-radius:4px; }
form.inline { display:inline; }
.actions { display:flex; flex-wrap:wrap; gap:.35rem; }
button, .btn { font:inherit; font-size:.85rem; padding:.35rem .75rem; border-radius:6px; border:1px solid var(--line);
  background:#fff; color:var(--ink); cursor:pointer; }
button:hover { border-color:#98a2b3; }
button.primary { background:var(--accent); border-color:var(--accent); color:#fff; font-weight:600; }
button.danger { color:var(--bad); border-color:#f5b5ab; }
.fields { display:grid; grid-template-columns:repeat(auto-fit, minmax(11rem, 1fr)); gap:.7rem; align-items:end; }
label { display:grid; gap:.25rem; font-size:.8rem; color:var(--muted); font-weight:600; }
input, select { font:inherit; font-size:.95rem; padding:.4rem .5rem; border:1px solid #d0d5dd; border-radius:6px; background:#fff; color:var(--ink); width:100%; }
.facts { display:grid; grid-template-columns:repeat(auto-fit, minmax(9rem, 1fr)); gap:.6rem 1rem; margin:0 0 .8rem; }
.facts div { display:grid; } .facts dt { font-size:.75rem; color:var(--muted); text-transform:uppercase; letter-spacing:.04em; }
.facts dd { margin:0; }
.login { max-width:26rem; margin:3rem auto; }
@media (max-width: 640px) {
  main { padding:.6rem; gap:.7rem; } section.card { padding:.8rem; }
  th, td { padding:.4rem .45rem; } body { font-size:14px; }
  /* Runs and companies become one card per row; the windows table scrolls instead. */
  table.cards > thead { display:none; }
  table.cards, table.cards > tbody, table.cards > tbody > tr, table.cards > tbody > tr > td { display:block; width:100%; }
  table.cards > tbody > tr { padding:.55rem 0; border-bottom:1px solid var(--line); }
  table.cards > tbody > tr:last-child { border-bottom:0; }
  table.cards > tbody > tr > td { border:0; padding:.12rem 0; white-space:normal; text-align:left; min-width:0 !important; max-width:none; }
  table.cards > tbody > tr > td[data-label]::before { content:attr(data-label); display:inline-block; min-width:9.5rem;
    font-size:.72rem; text-transform:uppercase; letter-spacing:.04em; color:var(--muted); }
}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(value: &str) -> String {
        Esc(value).to_string()
    }

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc(r#"<a href="x">O'Brien & co</a>"#),
            "&lt;a href=&quot;x&quot;&gt;O&#39;Brien &amp; co&lt;/a&gt;"
        );
        assert_eq!(esc("plain"), "plain");
        assert_eq!(esc(""), "");
        assert_eq!(esc("é<"), "é&lt;");
    }

    #[test]
    fn progress_never_overflows() {
        assert!(progress(3, 0, 0, 0).contains("width:0.0%"));
        assert!(progress(5, 5, 0, 10).contains("width:50.0%"));
    }
}
