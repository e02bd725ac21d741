//! The maps a newcomer reads stay true: every `file.rs::Item` that
//! `docs/architecture.md` names, and every one in the code column of
//! `docs/controls.md`, exists in the sources (a moved file or a renamed
//! function fails here, not in a reader's hands).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::arithmetic_side_effects,
    reason = "test code"
)]

use std::path::Path;

#[path = "common/sources.rs"]
mod sources;

/// (path under some crate's `src/`, text) of every workspace source file.
fn all_sources(root: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for krate in std::fs::read_dir(root.join("crates")).unwrap() {
        let src = krate.unwrap().path().join("src");
        if !src.is_dir() {
            continue;
        }
        let files = sources::rust_files(&src);
        for f in files {
            let rel = f
                .strip_prefix(&src)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            out.push((rel, std::fs::read_to_string(&f).unwrap()));
        }
    }
    out
}

/// Whether `text` defines `name` (a function, type, constant or module).
fn defines(text: &str, name: &str) -> bool {
    [
        "fn ", "struct ", "enum ", "const ", "trait ", "type ", "mod ",
    ]
    .iter()
    .any(|kw| {
        text.match_indices(&format!("{kw}{name}")).any(|(i, m)| {
            !text[i + m.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
        })
    })
}

/// Every `` `path.rs::A::b` `` in `text`: (path, last segment).
fn references(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices('`') {
        let rest = &text[i + 1..];
        let Some(end) = rest.find('`') else { break };
        let r = &rest[..end];
        if let Some((file, sym)) = r.split_once(".rs::")
            && !file.is_empty()
            && file
                .chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == '/')
        {
            let last = sym.rsplit("::").next().unwrap_or("");
            let last: String = last
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !last.is_empty() {
                out.push((format!("{file}.rs"), last));
            }
        }
    }
    out
}

fn unresolved(srcs: &[(String, String)], refs: Vec<(String, String)>) -> Vec<String> {
    refs.into_iter()
        .filter(|(file, sym)| {
            !srcs
                .iter()
                .any(|(rel, text)| rel == file && defines(text, sym))
        })
        .map(|(f, s)| format!("{f}::{s}"))
        .collect()
}

#[test]
fn the_architecture_and_controls_maps_name_code_that_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let srcs = all_sources(&root);
    let arch = std::fs::read_to_string(root.join("docs/architecture.md")).unwrap();
    let arch_refs = references(&arch);
    assert!(arch_refs.len() > 40, "the pipelines name their functions");
    assert_eq!(unresolved(&srcs, arch_refs), Vec::<String>::new());

    // The code column of each control row (tests are named in the last).
    let controls = std::fs::read_to_string(root.join("docs/controls.md")).unwrap();
    let code: String = controls
        .lines()
        .filter(|l| l.starts_with("| C"))
        .filter_map(|l| l.split(" | ").nth(2))
        .collect::<Vec<_>>()
        .join("\n");
    let refs = references(&code);
    assert!(refs.len() > 40, "controls rows name their code");
    assert_eq!(unresolved(&srcs, refs), Vec::<String>::new());
}

#[test]
fn a_reference_to_code_that_does_not_exist_is_caught() {
    let srcs = vec![("gateway.rs".to_owned(), "fn dispatch() {}".to_owned())];
    let refs = references(
        "`gateway.rs::Gateway::dispatch`, `gateway.rs::dispatcher`, `moved.rs::dispatch`",
    );
    assert_eq!(
        unresolved(&srcs, refs),
        ["gateway.rs::dispatcher", "moved.rs::dispatch"]
    );
}
