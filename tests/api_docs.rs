//! Every public notifier type and every handle method has a doctest: a
//! new notifier or handle method without an example fails here, so the
//! docs stay at the level the API promises.
//!
//! Reads the sources (actors/*/src/*.rs): a handle trait is a `pub trait`
//! whose name ends in `Ref`; a notifier is a `pub struct` (or `pub type`)
//! with an `impl ... Notifier for` it.

use std::path::Path;

/// The doc comment lines right above line `at` (attributes skipped).
fn doc_above(lines: &[&str], at: usize) -> Vec<String> {
    let mut doc = Vec::new();
    let mut i = at;
    while i > 0 {
        i -= 1;
        let t = lines[i].trim();
        if t.starts_with("///") {
            doc.push(t.to_string());
        } else if t.starts_with("#[") || t.starts_with("#![") {
            continue;
        } else {
            break;
        }
    }
    doc
}

fn has_example(doc: &[String]) -> bool {
    doc.iter().any(|l| l.contains("```"))
}

fn sources() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for krate in std::fs::read_dir(root.join("actors")).unwrap() {
        let src = krate.unwrap().path().join("src");
        let Ok(files) = std::fs::read_dir(&src) else {
            continue;
        };
        for f in files {
            let p = f.unwrap().path();
            if p.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                out.push((p.display().to_string(), text));
            }
        }
    }
    out
}

#[test]
fn every_handle_method_has_a_doctest() {
    let mut missing = Vec::new();
    let mut seen = 0;
    for (file, text) in sources() {
        let lines: Vec<&str> = text.lines().collect();
        let mut in_trait: Option<String> = None;
        let mut depth = 0i32;
        for (n, line) in lines.iter().enumerate() {
            let t = line.trim();
            if in_trait.is_none() {
                if let Some(rest) = t.strip_prefix("pub trait ") {
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if name.ends_with("Ref") && t.ends_with('{') {
                        in_trait = Some(name);
                        depth = 1;
                    }
                }
                continue;
            }
            depth += t.matches('{').count() as i32 - t.matches('}').count() as i32;
            if depth <= 0 {
                in_trait = None;
                continue;
            }
            if let Some(rest) = t.strip_prefix("fn ") {
                let method: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                seen += 1;
                if !has_example(&doc_above(&lines, n)) {
                    let tr = in_trait.as_deref().unwrap_or("?");
                    missing.push(format!("{file}: {tr}::{method}"));
                }
            }
        }
    }
    assert!(
        seen > 40,
        "found only {seen} handle methods: the scan is broken"
    );
    assert!(
        missing.is_empty(),
        "handle methods without a doctest:\n{}",
        missing.join("\n")
    );
}

#[test]
fn every_notifier_type_has_a_doctest() {
    let all = sources();
    let mut notifiers = Vec::new();
    for (_, text) in &all {
        for line in text.lines() {
            let t = line.trim();
            if t.starts_with("impl") && t.contains(" Notifier for ") {
                let after = t.split(" Notifier for ").nth(1).unwrap();
                let name: String = after
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                notifiers.push(name);
            }
        }
    }
    assert!(notifiers.len() > 15, "found only {notifiers:?}");
    let mut missing = Vec::new();
    for name in &notifiers {
        let mut found = false;
        for (file, text) in &all {
            let lines: Vec<&str> = text.lines().collect();
            for (n, line) in lines.iter().enumerate() {
                let t = line.trim();
                let public = [format!("pub struct {name} "), format!("pub struct {name}<")]
                    .iter()
                    .any(|p| t.starts_with(p.as_str()) || t == format!("pub struct {name};"));
                if public {
                    found = true;
                    if !has_example(&doc_above(&lines, n)) {
                        missing.push(format!("{file}: {name}"));
                    }
                }
            }
        }
        // Private notifiers (the Loop's own) need no page.
        let _ = found;
    }
    assert!(
        missing.is_empty(),
        "notifier types without a doctest:\n{}",
        missing.join("\n")
    );
}
