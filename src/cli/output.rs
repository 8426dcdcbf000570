//! Output for the admin verbs: store-admin-like tables (comfy-table), pretty JSON, prompts.
//!
//! Everything goes to a locked stdout through [`write_out`] and the [`outln!`] macro, never
//! `println!` (which panics when stdout is a closed pipe): a write error is an
//! [`Error::Output`], and [`super::run`] treats a closed pipe as success.

use std::fmt;
use std::io::{BufRead, IsTerminal, Write};

use comfy_table::{ContentArrangement, Table, presets};
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::Error;

/// `println!` to stdout that fails with [`Error::Output`] instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::output::write_out(format_args!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use outln;

/// Writes `args` to stdout.
pub fn write_out(args: fmt::Arguments<'_>) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    out.write_fmt(args)
        .and_then(|()| out.flush())
        .map_err(Error::Output)
}

/// Prints `v` as pretty JSON. It goes through `serde_json::Value`, so keys come out sorted,
/// as they always have.
pub fn print_json<T: Serialize>(v: &T) -> Result<(), Error> {
    let value = serde_json::to_value(v).map_err(Error::BadAnswer)?;
    let text = serde_json::to_string_pretty(&value).map_err(Error::BadAnswer)?;
    outln!("{text}")
}

/// Prints `rows` as a JSON array of `json(row)` with `--json`, else as a store-admin-like
/// table with `headers` and a line of `row(row)` each (`empty` when there is none).
pub fn print_rows<'a, T, J: Serialize>(
    rows: &'a [T],
    as_json: bool,
    json: impl Fn(&'a T) -> J,
    headers: &[&str],
    row: impl Fn(&T) -> Vec<String>,
    empty: &str,
) -> Result<(), Error> {
    if as_json {
        return print_json(&rows.iter().map(json).collect::<Vec<_>>());
    }
    if rows.is_empty() {
        return outln!("{empty}");
    }
    let mut t = Table::new();
    t.load_style(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(headers.iter().copied());
    for r in rows {
        t.add_row(row(r));
    }
    outln!("{}", t.trim_fmt())
}

/// A time for tables, in whole seconds (`2026-01-02T03:04:05Z`); empty for none.
pub fn short_time(t: Option<OffsetDateTime>) -> String {
    t.and_then(|t| t.replace_nanosecond(0).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// Asks for a value at the terminal when `value` is missing; fails with one line naming
/// `flag` when stdin is not a terminal. An empty answer gives `default` when there is one.
pub fn ask(
    value: Option<String>,
    flag: &'static str,
    question: &str,
    default: Option<&str>,
) -> Result<String, Error> {
    if let Some(v) = value {
        return Ok(v);
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(Error::NotATerminal { flag });
    }
    loop {
        eprint!("{question}: ");
        std::io::stderr().flush().ok();
        let mut line = String::new();
        if stdin.lock().read_line(&mut line).map_err(Error::Prompt)? == 0 {
            return Err(Error::Missing { flag });
        }
        let line = line.trim();
        if !line.is_empty() {
            return Ok(line.to_string());
        }
        if let Some(d) = default {
            return Ok(d.to_string());
        }
    }
}

/// Asks the user to pick one of `choices` (value, description) by number or value.
pub fn choose(
    value: Option<String>,
    flag: &'static str,
    what: &'static str,
    choices: &[(String, String)],
) -> Result<String, Error> {
    if let Some(v) = value {
        return Ok(v);
    }
    if !std::io::stdin().is_terminal() {
        return Err(Error::NotATerminal { flag });
    }
    if choices.is_empty() {
        return Err(Error::NothingToChoose { flag, what });
    }
    for (i, (_, desc)) in choices.iter().enumerate() {
        eprintln!("  {}) {desc}", i + 1);
    }
    loop {
        let question = format!("Choose a {what} [1-{}]", choices.len());
        let answer = ask(None, flag, &question, None)?;
        if let Ok(n) = answer.parse::<usize>()
            && (1..=choices.len()).contains(&n)
        {
            return Ok(choices[n - 1].0.clone());
        }
        if let Some((v, _)) = choices.iter().find(|(v, _)| *v == answer) {
            return Ok(v.clone());
        }
        eprintln!("no such {what}: {answer}");
    }
}
