//! The original product's top-level keys (`site`, `peerName`, `rendezvous`), moved to the keys
//! they stand for before typed parsing, so older files load and the next save writes them under
//! their canonical names.

use serde_json::{Map, Value};

/// Top-level keys of the original product's documents and the key each stands for, in order of
/// precedence: the canonical key wins over all of them, and an earlier alias over a later one.
const ALIASES: &[(&str, &str, &str)] = &[
    ("rendezvous", "presence", "rendezvous_wan"),
    ("peerName", "profile", "label"),
    ("site", "profile", "label"),
];

/// Moves each alias of [`ALIASES`] to the key it stands for, unless that key is set already.
/// Aliases leave the document either way, so nothing keeps them and a save writes the canonical
/// keys. Returns the warnings (one per alias, naming its canonical key) and the problems.
pub(super) fn apply_aliases(raw: &mut Value) -> (Vec<String>, Vec<String>) {
    let (mut warnings, mut problems) = (Vec::new(), Vec::new());
    let Some(object) = raw.as_object_mut() else {
        return (warnings, problems);
    };
    // Which alias set a canonical key, so a later alias can say which one won.
    let mut set_by: Vec<(&str, &str, &str)> = Vec::new();
    for &(alias, section, key) in ALIASES {
        let Some(value) = object.remove(alias) else {
            continue;
        };
        let canonical = format!("{section}.{key}");
        if !value.is_string() {
            problems.push(format!(
                "{alias} ({value}) must be a string; it is the original's name for {canonical}"
            ));
            continue;
        }
        let section_value = object
            .entry(section)
            .or_insert_with(|| Value::Object(Map::new()));
        // A section that is not an object is reported by typed parsing.
        let Some(section_object) = section_value.as_object_mut() else {
            continue;
        };
        let winner = set_by
            .iter()
            .find(|(s, k, _)| (*s, *k) == (section, key))
            .map(|(.., winner)| *winner);
        if let Some(winner) = winner {
            warnings.push(format!(
                "goop.json: {alias:?} is ignored: {winner:?} also stands for {canonical} and wins; \
                 {alias:?} is dropped when the file is next saved"
            ));
        } else if section_object.contains_key(key) {
            warnings.push(format!(
                "goop.json: {alias:?} (the original's name for {canonical}) is ignored because \
                 {canonical} is set; {alias:?} is dropped when the file is next saved"
            ));
        } else {
            section_object.insert(key.to_owned(), value);
            set_by.push((section, key, alias));
            warnings.push(format!(
                "goop.json: {alias:?} is the original's name for {canonical}; it is read as \
                 {canonical} and written under that name when the file is next saved"
            ));
        }
    }
    (warnings, problems)
}
