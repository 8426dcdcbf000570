//! The example configuration file (`serialmint config --example`, shipped by the Debian
//! package as `/etc/serialmint/serialmint.toml`): every setting of [`SETTINGS`], commented out,
//! with its meaning, its environment variable and its default, grouped by section. With every
//! line commented the file changes nothing, so the package's conffile is the defaults.

use std::fmt::Write;

use super::SETTINGS;

/// The whole example file.
pub fn example_toml() -> String {
    let mut out = String::from(
        "# serialmint configuration. Every setting is listed, commented out, with its default.\n\
         # SERIALMINT_* environment variables and --set flags override this file.\n\
         # Keep secrets out of it: use hsm.pin_file and database.url_file (under systemd the\n\
         # packaged unit passes /etc/serialmint/pin and /etc/serialmint/database-url as\n\
         # credentials), not hsm.pin and database.url.\n",
    );
    let mut sections: Vec<&str> = Vec::new();
    for s in SETTINGS {
        let section = s.key.split_once('.').map_or(s.key, |(sec, _)| sec);
        if !sections.contains(&section) {
            sections.push(section);
        }
    }
    for section in sections {
        let _ = write!(out, "\n[{section}]\n");
        for s in SETTINGS
            .iter()
            .filter(|s| s.key.starts_with(&format!("{section}.")))
        {
            let name = &s.key[section.len() + 1..];
            out.push('\n');
            for line in wrap(s.help, 90) {
                let _ = writeln!(out, "# {line}");
            }
            let secret = if s.secret { " (secret)" } else { "" };
            let _ = writeln!(out, "# env {}; default {}{secret}", s.env, s.default);
            let _ = writeln!(out, "#{name} = {}", toml_value(s.default));
        }
    }
    out
}

/// The default as a TOML value: an integer as is, a real default quoted, a placeholder
/// (`(none)`, `number of cores`) as an empty string.
fn toml_value(default: &str) -> String {
    if default.parse::<i64>().is_ok() {
        default.to_owned()
    } else if default.starts_with('(') || default.contains(' ') {
        "\"\"".to_owned()
    } else {
        format!("{default:?}")
    }
}

fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        let line = lines.last_mut().expect("one line at least");
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(word.to_owned());
        } else {
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
    }
    lines
}
