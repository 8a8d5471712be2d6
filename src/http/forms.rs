//! Reading form fields into typed settings, with messages in the style of `goop.json` errors.

/// Parses `text` into `target`, or records `<path> ("<text>") must be a whole number`.
pub fn parse_number<T: std::str::FromStr>(
    problems: &mut Vec<String>,
    path: &str,
    text: &str,
    target: &mut T,
) {
    match text.trim().parse::<T>() {
        Ok(value) => *target = value,
        Err(_) => problems.push(format!("{path} ({text:?}) must be a whole number")),
    }
}
