//! `goop2 hash-password`: turn a password into the argon2id PHC string goop.json stores.

use std::io::{self, IsTerminal, Read};

use anyhow::{Context, bail};

use crate::services::auth;

/// Longest password accepted, in bytes; standard input is read no further than this.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Reads the password (a prompt with confirmation on a terminal, else the first line of
/// standard input) and returns its PHC string.
pub fn run() -> anyhow::Result<String> {
    let password = if io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ").context("cannot read the password")?;
        let again = rpassword::prompt_password("Repeat: ").context("cannot read the password")?;
        if first != again {
            bail!("the passwords do not match");
        }
        first
    } else {
        read_first_line(io::stdin().lock())?
    };
    check_length(&password)?;
    Ok(auth::hash_password(&password)?)
}

fn read_first_line(input: impl Read) -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    input
        .take(MAX_PASSWORD_BYTES as u64 + 2)
        .read_to_end(&mut bytes)
        .context("cannot read the password from standard input")?;
    let text = String::from_utf8(bytes).context("the password is not valid UTF-8")?;
    let line = text.split('\n').next().unwrap_or_default();
    Ok(line.strip_suffix('\r').unwrap_or(line).to_owned())
}

fn check_length(password: &str) -> anyhow::Result<()> {
    if password.is_empty() {
        bail!("the password is empty");
    }
    if password.len() > MAX_PASSWORD_BYTES {
        bail!("the password is longer than {MAX_PASSWORD_BYTES} bytes");
    }
    Ok(())
}
