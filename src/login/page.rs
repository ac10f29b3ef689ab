//! The login page: one self-contained HTML document (no external assets,
//! no JavaScript), readable on phones, labelled for screen readers.

use crate::proxy::respond::html_escape;

pub struct Page<'a> {
    pub action: &'a str,
    pub rd: &'a str,
    pub error: Option<&'a str>,
    pub username: &'a str,
    /// `(label, href)` of single sign-on buttons.
    pub providers: &'a [(String, String)],
    pub local_form: bool,
}

pub fn render(p: &Page<'_>) -> String {
    let error = p
        .error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", html_escape(e)))
        .unwrap_or_default();
    let mut sso = String::new();
    for (label, href) in p.providers {
        sso.push_str(&format!(
            "<a class=\"button secondary\" href=\"{}\">Sign in with {}</a>",
            html_escape(href),
            html_escape(label)
        ));
    }
    let form = if p.local_form {
        format!(
            r#"<form method="post" action="{action}">
<input type="hidden" name="rd" value="{rd}">
<label for="username">Username</label>
<input id="username" name="username" autocomplete="username" required autofocus value="{user}">
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form>"#,
            action = html_escape(p.action),
            rd = html_escape(p.rd),
            user = html_escape(p.username),
        )
    } else {
        String::new()
    };
    let divider = if p.local_form && !p.providers.is_empty() {
        "<p class=\"or\">or</p>"
    } else {
        ""
    };
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>Sign in</title>
<style>
:root {{ color-scheme: light dark; --accent: #2563eb; }}
* {{ box-sizing: border-box; }}
body {{ margin: 0; min-height: 100vh; display: grid; place-items: center;
  font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  background: Canvas; color: CanvasText; }}
main {{ width: min(22rem, 92vw); padding: 2rem; border-radius: 12px;
  border: 1px solid color-mix(in srgb, CanvasText 15%, transparent);
  box-shadow: 0 8px 30px rgb(0 0 0 / .08); }}
h1 {{ font-size: 1.35rem; margin: 0 0 1.25rem; }}
label {{ display: block; font-size: .9rem; margin: .75rem 0 .25rem; }}
input {{ width: 100%; padding: .6rem .7rem; font: inherit; border-radius: 8px;
  border: 1px solid color-mix(in srgb, CanvasText 30%, transparent); background: Field; color: FieldText; }}
input:focus {{ outline: 2px solid var(--accent); outline-offset: 1px; }}
button, .button {{ display: block; width: 100%; margin-top: 1.25rem; padding: .65rem; font: inherit;
  font-weight: 600; text-align: center; text-decoration: none; border: 0; border-radius: 8px;
  background: var(--accent); color: #fff; cursor: pointer; }}
.secondary {{ background: transparent; color: var(--accent); border: 1px solid var(--accent); }}
.error {{ margin: 0 0 1rem; padding: .6rem .75rem; border-radius: 8px;
  background: color-mix(in srgb, #dc2626 15%, transparent); }}
.or {{ text-align: center; margin: 1rem 0 0; opacity: .7; }}
</style>
</head>
<body>
<main>
<h1>Sign in</h1>
{error}{form}{divider}{sso}
</main>
</body>
</html>
"#
    )
}
