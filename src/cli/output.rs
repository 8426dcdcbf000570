//! Output helpers for the admin verbs: store-admin-like tables (comfy-table), JSON, prompts.

use std::io::{BufRead, IsTerminal, Write};

use comfy_table::{ContentArrangement, Table, presets};
use serde_json::Value;

/// A table with these headers, laid out like store-admin's (plain columns).
pub fn table(headers: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(headers.iter().copied());
    t
}

/// Prints a table, or a line saying there is nothing when it has no rows.
pub fn print_table(t: &Table, empty: &str) {
    if t.row_count() == 0 {
        println!("{empty}");
    } else {
        println!("{}", t.trim_fmt());
    }
}

/// Prints `v` as pretty JSON.
pub fn print_json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).expect("JSON values always serialize")
    );
}

/// A string field of a JSON object, or `""`.
pub fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

/// Asks for a value at the terminal when `value` is missing; fails with one line naming
/// `flag` when stdin is not a terminal. An empty answer gives `default` when there is one.
pub fn ask(
    value: Option<String>,
    flag: &str,
    question: &str,
    default: Option<&str>,
) -> Result<String, String> {
    if let Some(v) = value {
        return Ok(v);
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(format!(
            "{flag} is required (not asking: stdin is not a terminal)"
        ));
    }
    loop {
        eprint!("{question}: ");
        std::io::stderr().flush().ok();
        let mut line = String::new();
        if stdin
            .lock()
            .read_line(&mut line)
            .map_err(|e| e.to_string())?
            == 0
        {
            return Err(format!("{flag} is required"));
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
    flag: &str,
    what: &str,
    choices: &[(String, String)],
) -> Result<String, String> {
    if let Some(v) = value {
        return Ok(v);
    }
    if !std::io::stdin().is_terminal() {
        return Err(format!(
            "{flag} is required (not asking: stdin is not a terminal)"
        ));
    }
    if choices.is_empty() {
        return Err(format!(
            "{flag} is required, and there is no {what} to choose from"
        ));
    }
    for (i, (_, desc)) in choices.iter().enumerate() {
        eprintln!("  {}) {desc}", i + 1);
    }
    loop {
        let answer = ask(
            None,
            flag,
            &format!("Choose a {what} [1-{}]", choices.len()),
            None,
        )?;
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

/// An RFC 3339 time shortened to whole seconds for tables (`2026-01-02T03:04:05Z`).
pub fn short_time(t: &str) -> String {
    match t.split_once('.') {
        Some((head, _)) if t.ends_with('Z') => format!("{head}Z"),
        _ => t.to_string(),
    }
}
