//! The facade's public surface, checked against tests/api_surface.txt so
//! that a change to it is deliberate: add or remove a name in src/lib.rs
//! and this test fails until the snapshot says the same
//! (`IOASYNC_BLESS=1 cargo test --test api_surface` rewrites it).
//!
//! The crate root holds only `Loop`, `Error`, `Result`, the prelude and
//! the modules; every other public name lives in exactly one module.

use std::collections::BTreeSet;

const ROOT_ALLOWED: &[&str] = &[
    "Error",
    "Loop",
    "Result",
    "channel",
    "control",
    "error",
    "fs",
    "guide",
    "io",
    "kameo",
    "nats",
    "notifier",
    "prelude",
    "process",
    "runtime",
    "signal",
    "supervision",
    "test_util",
    "time",
    "transport",
    "worker",
];

/// The names a `pub use` brings in (`a::{B, C}` or `a::B`).
fn used_names(stmt: &str) -> Vec<String> {
    let stmt = stmt.trim();
    match stmt.split_once('{') {
        Some((_, rest)) => rest
            .trim_end_matches('}')
            .split(',')
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect(),
        // `a::b as c` brings in `c`.
        None => match stmt.split_once(" as ") {
            Some((_, alias)) => vec![alias.trim().to_string()],
            None => vec![stmt.rsplit("::").next().unwrap().trim().to_string()],
        },
    }
}

/// (root-level public names, `module::Name` for every module's names).
fn surface() -> (BTreeSet<String>, BTreeSet<String>) {
    let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/lib.rs")).unwrap();
    let mut root = BTreeSet::new();
    let mut modules = BTreeSet::new();
    let mut current: Option<String> = None;
    let mut stmt: Option<String> = None;
    for line in src.lines() {
        let t = line.trim();
        if t.starts_with("//") {
            continue;
        }
        if let Some(s) = stmt.as_mut() {
            s.push(' ');
            s.push_str(t);
        } else if let Some(rest) = t.strip_prefix("pub use ") {
            stmt = Some(rest.to_string());
        } else if let Some(rest) = t.strip_prefix("pub mod ") {
            let name = rest.trim_end_matches([';', '{', ' ']).to_string();
            if current.is_none() {
                root.insert(name.clone());
            }
            if rest.ends_with('{') {
                current = Some(name);
            }
            continue;
        } else if t == "}" && !line.starts_with(' ') {
            current = None;
            continue;
        }
        if let Some(s) = stmt.as_ref().filter(|s| s.ends_with(';')) {
            let names = used_names(s.trim_end_matches(';'));
            for n in names {
                match &current {
                    None => {
                        root.insert(n);
                    }
                    Some(m) => {
                        modules.insert(format!("{m}::{n}"));
                    }
                }
            }
            stmt = None;
        }
    }
    (root, modules)
}

#[test]
fn the_crate_root_holds_only_loop_error_result_the_prelude_and_modules() {
    let (root, _) = surface();
    let extra: Vec<_> = root
        .iter()
        .filter(|n| !ROOT_ALLOWED.contains(&n.as_str()))
        .collect();
    assert!(extra.is_empty(), "public at the crate root: {extra:?}");
    assert!(root.contains("Loop") && root.contains("prelude") && root.contains("io"));
}

#[test]
fn every_module_name_is_in_the_committed_snapshot_and_nothing_else() {
    let (_, modules) = surface();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/api_surface.txt");
    let now: String = modules.iter().map(|n| format!("{n}\n")).collect();
    if std::env::var("IOASYNC_BLESS").is_ok() {
        std::fs::write(path, &now).unwrap();
    }
    let committed = std::fs::read_to_string(path).unwrap();
    let was: BTreeSet<String> = committed.lines().map(str::to_string).collect();
    let added: Vec<_> = modules.difference(&was).collect();
    let removed: Vec<_> = was.difference(&modules).collect();
    assert!(
        added.is_empty() && removed.is_empty(),
        "the public surface changed: added {added:?}, removed {removed:?}; \
         if deliberate, rerun with IOASYNC_BLESS=1"
    );
}

#[test]
fn each_name_lives_in_one_module_only() {
    let (_, modules) = surface();
    let mut seen = std::collections::BTreeMap::<&str, Vec<&str>>::new();
    for path in &modules {
        let (m, n) = path.split_once("::").unwrap();
        seen.entry(n).or_default().push(m);
    }
    // `prelude` gathers names from the others, `runtime` and `error` hold
    // the root's own names.
    let twice: Vec<_> = seen
        .iter()
        .filter(|(_, ms)| {
            ms.iter()
                .filter(|m| !["prelude", "runtime", "error"].contains(m))
                .count()
                > 1
        })
        .collect();
    assert!(twice.is_empty(), "names in two modules: {twice:?}");
}

/// The prelude holds every handle trait: their methods need them in scope.
#[test]
fn the_prelude_names_every_handle() {
    // Compiles only if the prelude brings the handle methods into scope.
    #[allow(dead_code)]
    fn methods_in_scope(s: ioasync::notifier::NotifierRef<ioasync::io::Stream>) {
        use ioasync::prelude::*;
        drop(s.info());
    }
    let (_, modules) = surface();
    for handle in modules
        .iter()
        .filter_map(|p| p.split_once("::"))
        // EntryRef names a worker entry, not a notifier.
        .filter(|(m, n)| *m != "prelude" && n.ends_with("Ref") && *n != "EntryRef")
        .map(|(_, n)| n)
    {
        assert!(
            modules.contains(&format!("prelude::{handle}")),
            "{handle} is not in the prelude"
        );
    }
}
