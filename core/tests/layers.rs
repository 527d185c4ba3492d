//! The core's modules import one way, top to bottom: the client composes the cache, policy,
//! audit, monitor and config; those use the stores and keys; those hold secrets in locked
//! memory; and everything uses the small vocabulary at the bottom. An import back up the list
//! makes a cycle (each layer can then only be read, tested and changed with the ones above it),
//! so this test reads every file of `core/src` and fails on any `crate::` reference from a
//! module to one listed above it, naming the file, line and import.
//!
//! Test-only code (`#[cfg(test)]` items and files) may reach up: a unit test of the store may
//! build a client. Comments, doc links and string literals are not imports.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The top-level modules of `core/src`, top to bottom: each may import only modules listed
/// after it. Blank lines separate the layers; within a layer the order is the one the
/// modules' own imports need.
const ORDER: &[&str] = &[
    "rotation",
    "client",
    //
    "config",
    "cache",
    "monitor",
    "policy",
    "audit",
    //
    "store",
    "keys",
    //
    "secret",
    "memory",
    //
    "principal",
    "process",
    "clock",
    "bytes",
    "error",
];

#[test]
fn core_modules_import_only_modules_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let reexports = root_reexports(&std::fs::read_to_string(src.join("lib.rs")).unwrap());
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let test_only = test_only_files(&files);

    let mut wrong = Vec::new();
    let mut unlisted = BTreeMap::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let Some(from) = top_module(rel) else {
            continue; // lib.rs: the root re-exports every layer.
        };
        let Some(from_at) = ORDER.iter().position(|m| *m == from) else {
            unlisted.insert(from.clone(), rel.display().to_string());
            continue;
        };
        if test_only.contains(file) {
            continue;
        }
        let code = library_code(&blank_comments_and_strings(
            &std::fs::read_to_string(file).unwrap(),
        ));
        for (line, name) in crate_references(&code) {
            let to = if ORDER.contains(&name.as_str()) {
                name.clone()
            } else {
                match reexports.get(&name) {
                    Some(Some(module)) => module.clone(),
                    Some(None) => continue, // a re-exported external crate item
                    None => {
                        wrong.push(format!(
                            "{}:{line}: `crate::{name}` is neither a module nor a root re-export",
                            rel.display()
                        ));
                        continue;
                    }
                }
            };
            let Some(to_at) = ORDER.iter().position(|m| *m == to) else {
                unlisted.insert(to.clone(), format!("imported by {}", rel.display()));
                continue;
            };
            if to_at < from_at {
                wrong.push(format!(
                    "{}:{line}: `{from}` imports `crate::{name}` (module `{to}`), which is above it",
                    rel.display()
                ));
            }
        }
    }
    assert!(
        unlisted.is_empty(),
        "modules missing from ORDER in core/tests/layers.rs (place each in its layer): {unlisted:?}"
    );
    assert!(
        wrong.is_empty(),
        "imports against the layer order {ORDER:?} (move the shared item down to a module \
         both sides may import):\n{}",
        wrong.join("\n")
    );
}

/// The reader above finds an import in each form the sources write one (`use crate::a::B`,
/// `use crate::{a, b::{C, D}}`, a path in code, `$crate::` in a macro) and skips comments,
/// doc links, strings and test-only items: a form it missed would let an upward import
/// through unseen.
#[test]
fn the_parser_sees_every_form_of_import() {
    let code = library_code(&blank_comments_and_strings(
        "use crate::store::SecretName;\n\
         use crate::{error::Error, secret::{Secret, SecretString}, Sealbox};\n\
         // use crate::comment;\n\
         /// [`crate::doc`]\n\
         let s = \"crate::string\";\n\
         let c = '{';\n\
         fn f<'a>(x: &'a str) -> crate::process::ProcessStamp { todo!() }\n\
         macro_rules! m { () => { $crate::keys::KeyId }; }\n\
         #[cfg(test)]\n\
         mod tests {\n    use crate::client::Sealbox;\n    fn g() { let _ = '}'; }\n}\n\
         #[cfg(test)]\n\
         use crate::cache::Shared;\n\
         let r = r#\"crate::raw\"#; crate::memory::wipe_stack();\n",
    ));
    let names: Vec<String> = crate_references(&code)
        .into_iter()
        .map(|(_, n)| n)
        .collect();
    assert_eq!(
        names,
        [
            "store", "error", "secret", "Sealbox", "process", "keys", "memory"
        ]
    );
}

/// What each name `lib.rs` re-exports at the root stands for: the module it comes from, or
/// `None` for another crate's item (`pub use secrecy::ExposeSecret`).
fn root_reexports(lib: &str) -> BTreeMap<String, Option<String>> {
    let code = blank_comments_and_strings(lib);
    let mut out = BTreeMap::new();
    for statement in code.split(';') {
        let Some(path) = statement.trim().strip_prefix("pub use ") else {
            continue;
        };
        let (first, rest) = path.split_once("::").unwrap_or((path, ""));
        let module = ORDER.contains(&first).then(|| first.to_string());
        for name in rest
            .split(|c: char| !is_ident(c as u8))
            .filter(|n| !n.is_empty())
        {
            out.insert(name.to_string(), module.clone());
        }
    }
    out
}

/// `core/src/a.rs` and `core/src/a/...` are module `a`; `lib.rs` is the root.
fn top_module(rel: &Path) -> Option<String> {
    let first = rel.components().next()?.as_os_str().to_str()?;
    match first.strip_suffix(".rs") {
        Some("lib") => None,
        Some(m) => Some(m.to_string()),
        None => Some(first.to_string()),
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Files declared with `#[cfg(test)] mod name;`.
fn test_only_files(files: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for file in files {
        let code = blank_comments_and_strings(&std::fs::read_to_string(file).unwrap());
        let lines: Vec<&str> = code.lines().collect();
        // A file `x.rs` or `x/mod.rs` declares its children in `x/`; `lib.rs` and `mod.rs` in
        // their own directory.
        let dir = match file.file_name().and_then(|n| n.to_str()) {
            Some("lib.rs" | "mod.rs") => file.parent().unwrap().to_path_buf(),
            _ => file.with_extension(""),
        };
        for (i, line) in lines.iter().enumerate() {
            if line.trim() != "#[cfg(test)]" {
                continue;
            }
            let next = lines[i + 1..]
                .iter()
                .map(|l| l.trim())
                .find(|l| !l.starts_with("#["))
                .unwrap_or("");
            let decl = next
                .trim_start_matches("pub(crate) ")
                .trim_start_matches("pub(super) ")
                .trim_start_matches("pub ");
            if let Some(name) = decl.strip_prefix("mod ").and_then(|r| r.strip_suffix(';')) {
                out.push(dir.join(format!("{name}.rs")));
                out.push(dir.join(name).join("mod.rs"));
            }
        }
    }
    out
}

/// Names of the modules (or root re-exports) behind every `crate::NAME` and
/// `crate::{NAME, ...}`, with their line numbers.
fn crate_references(code: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let mut from = 0;
    while let Some(at) = code[from..].find("crate::") {
        let start = from + at;
        from = start + "crate::".len();
        // `crate` as a whole word (also `$crate`), not the end of `some_crate::`.
        if start > 0 && is_ident(bytes[start - 1]) {
            continue;
        }
        let line = code[..start].matches('\n').count() + 1;
        if bytes.get(from) == Some(&b'{') {
            // The first identifier of each element at the group's top level.
            let mut depth = 0;
            let mut expect_name = true;
            for (i, &b) in bytes[from..].iter().enumerate() {
                match b {
                    b'{' => {
                        depth += 1;
                        expect_name = depth == 1;
                    }
                    b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    b',' if depth == 1 => expect_name = true,
                    b if expect_name && depth == 1 && is_ident(b) => {
                        let rest = &code[from + i..];
                        let end = rest
                            .find(|c: char| !is_ident(c as u8))
                            .unwrap_or(rest.len());
                        out.push((line, rest[..end].to_string()));
                        expect_name = false;
                    }
                    _ => {}
                }
            }
        } else {
            let rest = &code[from..];
            let end = rest
                .find(|c: char| !is_ident(c as u8))
                .unwrap_or(rest.len());
            if end > 0 {
                out.push((line, rest[..end].to_string()));
            }
        }
    }
    out
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// `code` without its `#[cfg(test)]` items (a test module, function or `use`), lines kept.
fn library_code(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut skipping = false;
    let mut depth = 0i32;
    let mut opened = false;
    for line in code.split_inclusive('\n') {
        if !skipping && line.trim() == "#[cfg(test)]" {
            skipping = true;
            depth = 0;
            opened = false;
        }
        if !skipping {
            out.push_str(line);
            continue;
        }
        for b in line.bytes() {
            match b {
                b'{' => {
                    depth += 1;
                    opened = true;
                }
                b'}' => depth -= 1,
                _ => {}
            }
        }
        out.extend(line.chars().map(|c| if c == '\n' { '\n' } else { ' ' }));
        let attribute = line.trim().starts_with("#[");
        if !attribute && depth == 0 && (opened || line.trim_end().ends_with(';')) {
            skipping = false;
        }
    }
    out
}

/// `source` with comments and the insides of string and char literals replaced by spaces,
/// line breaks kept.
fn blank_comments_and_strings(source: &str) -> String {
    let s: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        let next = s.get(i + 1).copied();
        let prev_ident = i > 0 && (s[i - 1].is_alphanumeric() || s[i - 1] == '_');
        if c == '/' && next == Some('/') {
            while i < s.len() && s[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < s.len() {
                if s[i] == '/' && s.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if s[i] == '*' && s.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(s[i]));
                    i += 1;
                }
            }
        } else if c == 'r'
            && (!prev_ident || (i > 0 && s[i - 1] == 'b' && (i < 2 || !s[i - 2].is_alphanumeric())))
            && matches!(next, Some('"' | '#'))
        {
            // A raw string: r"..." or r#"..."#.
            let mut j = i + 1;
            while s.get(j) == Some(&'#') {
                j += 1;
            }
            if s.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            let hashes = j - i - 1;
            out.push('r');
            out.extend(std::iter::repeat_n(' ', hashes + 1));
            i = j + 1;
            while i < s.len() {
                if s[i] == '"'
                    && s[i + 1..]
                        .iter()
                        .take(hashes)
                        .filter(|&&h| h == '#')
                        .count()
                        == hashes
                {
                    out.push('"');
                    out.extend(std::iter::repeat_n(' ', hashes));
                    i += 1 + hashes;
                    break;
                }
                out.push(blank(s[i]));
                i += 1;
            }
        } else if c == '"' {
            out.push('"');
            i += 1;
            while i < s.len() && s[i] != '"' {
                if s[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < s.len() {
                    out.push(blank(s[i]));
                    i += 1;
                }
            }
            out.push('"');
            i += 1;
        } else if c == '\'' && next == Some('\\') {
            // An escaped char literal: '\n', '\'', '\u{7f}'.
            out.push('\'');
            i += 2;
            out.push(' ');
            while i < s.len() && s[i] != '\'' {
                out.push(' ');
                i += 1;
            }
            out.push('\'');
            i += 1;
        } else if c == '\'' && s.get(i + 2) == Some(&'\'') {
            out.push_str("' '");
            i += 3;
        } else {
            // Code, or a lifetime's quote.
            out.push(c);
            i += 1;
        }
    }
    out
}
