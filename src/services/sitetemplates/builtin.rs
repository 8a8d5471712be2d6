//! The templates built into the binary (`web/apps/<name>/`): blog, corkboard, guestbook, …, with
//! their previews (`docs/screenshots/<name>.png`, taken by the browser tests).

use std::collections::BTreeMap;

#[derive(rust_embed::Embed)]
#[folder = "web/apps/"]
struct Apps;

/// The browser tests' screenshots of the built-in templates, shown as their previews.
#[derive(rust_embed::Embed)]
#[folder = "docs/screenshots/"]
#[include = "*.png"]
struct Previews;

/// The preview picture (PNG) of built-in template `name`.
pub fn preview(name: &str) -> Option<Vec<u8>> {
    Previews::get(&format!("{name}.png")).map(|file| file.data.into_owned())
}

/// The names of the built-in templates, sorted.
pub fn names() -> Vec<String> {
    let mut names: Vec<String> = Apps::iter()
        .filter_map(|path| {
            path.strip_suffix("/manifest.json")
                .filter(|name| !name.contains('/'))
                .map(str::to_owned)
        })
        .collect();
    names.sort();
    names
}

/// The `manifest.json` of built-in template `name`.
pub fn manifest(name: &str) -> Option<Vec<u8>> {
    Apps::get(&format!("{name}/manifest.json")).map(|file| file.data.into_owned())
}

/// The files of built-in template `name`, by path inside it.
pub fn files(name: &str) -> Option<BTreeMap<String, Vec<u8>>> {
    let prefix = format!("{name}/");
    let files: BTreeMap<String, Vec<u8>> = Apps::iter()
        .filter_map(|path| {
            let inside = path.strip_prefix(&prefix)?.to_owned();
            let file = Apps::get(&path)?;
            Some((inside, file.data.into_owned()))
        })
        .collect();
    files.contains_key("manifest.json").then_some(files)
}
