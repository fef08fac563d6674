//! The two forms of every answer: aligned tables for people, JSON for scripts.

use serde::Serialize;

/// How a command prints its answer.
#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// Left-aligned columns separated by two spaces, with a header line.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let padded: Vec<String> = cells.zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        padded.join("  ").trim_end().to_string() + "\n"
    };
    let mut out = line(&mut headers.iter().copied());
    for row in rows {
        out += &line(&mut row.iter().map(String::as_str));
    }
    out
}

/// The JSON form of an answer (`--format json`): its serde form, the same for every command.
pub fn json(answer: &impl Serialize) -> serde_json::Result<String> {
    serde_json::to_string(answer)
}

/// An answer in the chosen form, ending with a newline.
pub fn answer<T: Serialize>(
    format: Format,
    answer: &T,
    as_table: impl FnOnce(&T) -> String,
) -> serde_json::Result<String> {
    match format {
        Format::Table => Ok(as_table(answer)),
        Format::Json => Ok(json(answer)? + "\n"),
    }
}
