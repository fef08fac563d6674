//! The few HTML pieces the dashboard is made of: escaping, a page frame with inline CSS
//! (no external assets: the page works offline), tables and links.

use std::fmt::Write;

pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes a path segment of a link.
pub fn segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}\
header{background:#1d2330;color:#fff;padding:12px 24px}header a{color:#fff;margin-right:18px;text-decoration:none}\
main{padding:16px 24px;max-width:1280px}h2{margin-top:28px}table{border-collapse:collapse;background:#fff;margin:8px 0}\
td,th{border:1px solid #d8dce3;padding:4px 8px;text-align:left;font-size:14px}th{background:#eef0f4}\
.card{display:inline-block;vertical-align:top;background:#fff;border:1px solid #d8dce3;margin:6px;padding:8px}\
.ok{color:#1a7f37}.warning{color:#9a6700}.drift,.down{color:#cf222e}.muted{color:#6b7280}code{font-size:13px}";

/// A whole page: title, navigation, body.
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{} · Quiver</title>\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><style>{STYLE}</style></head>\
         <body><header><a href=\"/ui\"><b>Quiver</b></a><a href=\"/ui\">Catalog</a><a href=\"/ui/cluster\">Cluster</a>\
         <a href=\"/ui/audit\">Audit</a>\
         </header><main><h1>{}</h1>{body}</main></body></html>",
        escape(title),
        escape(title)
    )
}

/// A table; cells are HTML already (escape text with `escape`).
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = String::from("<table><tr>");
    for h in headers {
        let _ = write!(out, "<th>{}</th>", escape(h));
    }
    out.push_str("</tr>");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{cell}</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_links_are_escaped() {
        assert_eq!(escape("<a href='x'>&</a>"), "&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt;");
        assert_eq!(segment("driver stats/v1"), "driver%20stats%2Fv1");
        let t = table(&["A<B"], &[vec!["1".into()]]);
        assert!(t.contains("<th>A&lt;B</th>") && t.contains("<td>1</td>"));
    }
}
