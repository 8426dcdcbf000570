//! Secrets from files (`hsm.pin_file`, `database.url_file`, `hsm.more_pins_file`): each read
//! once, when the configuration loads, into the secret it stands for. A file is refused when
//! group or others have any access to it (the fix, `chmod 600`, is in the message), when it is
//! not a regular file, empty, larger than 64 KiB or not UTF-8; a trailing newline is not part
//! of the secret. Giving a secret both directly and as a file is an error naming both
//! settings. No message holds any of a file's content.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use secrecy::{ExposeSecret, SecretString};

use super::{Config, ConfigError, SecretFileError};

/// Largest secret file read.
const MAX_LEN: u64 = 64 * 1024;

impl Config {
    /// Replaces each secret whose file setting is set with the file's content.
    pub(super) fn read_secret_files(&mut self) -> Result<(), ConfigError> {
        if let Some(path) = &self.token_pin_file {
            refuse_both(
                !self.token_pin.expose_secret().is_empty(),
                ["hsm.pin", "SERIALMINT_TOKEN_PIN"],
                ["hsm.pin_file", "SERIALMINT_TOKEN_PIN_FILE"],
            )?;
            self.token_pin = SecretString::from(read("hsm.pin_file", path)?);
        }
        if let Some(path) = &self.database_url_file {
            refuse_both(
                !self.database_url.expose_secret().is_empty(),
                ["database.url", "SERIALMINT_DATABASE_URL"],
                ["database.url_file", "SERIALMINT_DATABASE_URL_FILE"],
            )?;
            self.database_url = SecretString::from(read("database.url_file", path)?);
        }
        if let Some(path) = &self.more_pins_file {
            refuse_both(
                !self.more_token_pins.is_empty(),
                ["hsm.more_pins", "SERIALMINT_HSM_MORE_PINS"],
                ["hsm.more_pins_file", "SERIALMINT_HSM_MORE_PINS_FILE"],
            )?;
            let text = read("hsm.more_pins_file", path)?;
            self.more_token_pins = text
                .lines()
                .map(|l| l.trim_end_matches('\r'))
                .filter(|l| !l.is_empty())
                .map(SecretString::from)
                .collect();
        }
        Ok(())
    }
}

fn refuse_both(
    direct_set: bool,
    [key, env]: [&'static str; 2],
    [file_key, file_env]: [&'static str; 2],
) -> Result<(), ConfigError> {
    if direct_set {
        return Err(ConfigError::SecretAndFile {
            key,
            env,
            file_key,
            file_env,
        });
    }
    Ok(())
}

/// The content of the secret file `path` (for setting `key`), a trailing newline removed.
fn read(key: &'static str, path: &Path) -> Result<String, ConfigError> {
    let refuse = |why| ConfigError::SecretFile {
        key,
        path: path.to_owned(),
        why,
    };
    let file = std::fs::File::open(path).map_err(|e| refuse(SecretFileError::Read(e)))?;
    // The mode of the file opened, not of whatever the path names a moment later.
    let meta = file
        .metadata()
        .map_err(|e| refuse(SecretFileError::Read(e)))?;
    if !meta.is_file() {
        return Err(refuse(SecretFileError::NotAFile));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(refuse(SecretFileError::TooOpen {
            mode,
            path: path.to_owned(),
        }));
    }
    let mut bytes = Vec::new();
    file.take(MAX_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| refuse(SecretFileError::Read(e)))?;
    if bytes.len() as u64 > MAX_LEN {
        return Err(refuse(SecretFileError::TooLarge));
    }
    let mut text = String::from_utf8(bytes).map_err(|_| refuse(SecretFileError::NotText))?;
    let kept = text.trim_end_matches(['\n', '\r']).len();
    text.truncate(kept);
    if text.is_empty() {
        return Err(refuse(SecretFileError::Empty));
    }
    Ok(text)
}
