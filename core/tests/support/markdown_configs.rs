//! The sealbox configs written in the repository's Markdown: every ```yaml block of every
//! `*.md` that is a whole config (it has a top-level `secrets:` or `stores:`), found by
//! content, not position, so documents can be rewritten freely.
//!
//! A block is loaded as a user would: written to a file in a fresh directory, each `${VAR}` set
//! (to a path in that directory, or a plausible value when the name says what it holds), and
//! absolute paths moved under that directory (documents name system paths such as
//! `/var/lib/...`, which a test cannot write).

#![allow(dead_code)] // each test binary that includes this uses part of it

use std::path::{Path, PathBuf};

use sealbox::config::{Config, ProviderRegistry};

/// One config block: where it is and its text.
pub struct Block {
    pub file: PathBuf,
    pub line: usize,
    pub yaml: String,
}

impl std::fmt::Display for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// The repository root (this file is in core/tests/support).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|p| p.join("Cargo.lock").exists())
        .expect("the workspace root")
        .to_path_buf()
}

/// Every `*.md` under `root`, skipping build output and hidden directories.
pub fn markdown_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let ty = entry.file_type().unwrap();
            if ty.is_dir() {
                if !name.starts_with('.') && name != "target" && name != "node_modules" {
                    dirs.push(path);
                }
            } else if ty.is_file() && name.ends_with(".md") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The ```yaml blocks of `text` that are whole configs.
pub fn config_blocks(file: &Path, text: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        let fence = line.trim_start();
        if !(fence.starts_with("```yaml") || fence.starts_with("```yml")) {
            continue;
        }
        let indent = line.len() - fence.len();
        let mut yaml = String::new();
        for (_, l) in lines.by_ref() {
            if l.trim_start().starts_with("```") {
                break;
            }
            yaml.push_str(l.get(indent..).unwrap_or(l.trim_start()));
            yaml.push('\n');
        }
        let whole = yaml
            .lines()
            .any(|l| l.starts_with("secrets:") || l.starts_with("stores:"));
        if whole {
            blocks.push(Block {
                file: file.to_path_buf(),
                line: n + 1,
                yaml,
            });
        }
    }
    blocks
}

/// Every config block in the repository's Markdown.
pub fn all_blocks() -> Vec<Block> {
    markdown_files(&repo_root())
        .iter()
        .flat_map(|f| config_blocks(f, &std::fs::read_to_string(f).unwrap()))
        .collect()
}

/// The variables a block uses (`${NAME}` and `${NAME:-default}`, not `$${`).
pub fn variables(yaml: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = yaml;
    while let Some(i) = rest.find("${") {
        let escaped = i > 0 && rest.as_bytes()[i - 1] == b'$';
        rest = &rest[i + 2..];
        if escaped {
            continue;
        }
        if let Some(end) = rest.find('}') {
            let name = rest[..end].split(":-").next().unwrap_or("").to_owned();
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names
}

/// A value for variable `name`: what its name says it holds, else a path in `dir`.
pub fn value_for(name: &str, dir: &Path) -> String {
    let n = name.to_ascii_uppercase();
    let has = |w: &str| n.contains(w);
    if has("REGION") {
        "eu-west-1".into()
    } else if has("URL") || has("ENDPOINT") {
        "http://127.0.0.1:9".into()
    } else if has("ARN") {
        "arn:aws:iam::123456789012:role/readme-test".into()
    } else if has("PRINCIPAL") {
        "svc:readme-test".into()
    } else if (has("PASSPHRASE") || has("TOKEN") || has("SECRET") || has("PASSWORD"))
        && !(has("FILE") || has("PATH") || has("DIR"))
    {
        "readme-test-passphrase-5839".into()
    } else {
        let path = dir.join(name.to_ascii_lowercase());
        if has("DIR") || has("MOUNT") {
            std::fs::create_dir_all(&path).unwrap();
        }
        path.display().to_string()
    }
}

fn path_key(key: &str) -> bool {
    matches!(key, "path" | "dir" | "file" | "directory")
        || key.ends_with("_file")
        || key.ends_with("_path")
        || key.ends_with("_dir")
}

/// Moves an absolute path under `root`, creating its parent (or itself, for a directory).
fn rebase(p: &str, root: &Path, is_dir: bool) -> String {
    let moved = root.join(p.trim_start_matches('/'));
    let make = if is_dir {
        Some(moved.as_path())
    } else {
        moved.parent()
    };
    if let Some(d) = make {
        std::fs::create_dir_all(d).unwrap();
    }
    moved.display().to_string()
}

fn rebase_json(value: &mut serde_json::Value, root: &Path) {
    if let serde_json::Value::Object(map) = value {
        for (k, v) in map.iter_mut() {
            match v {
                serde_json::Value::String(s) if path_key(k) && s.starts_with('/') => {
                    *s = rebase(s, root, matches!(k.as_str(), "dir" | "directory"));
                }
                other => rebase_json(other, root),
            }
        }
    }
}

/// Parses `block` as a file in a fresh directory with its variables set; absolute paths moved
/// under that directory. Returns the directory too (it must outlive the client).
pub fn parse(block: &Block) -> (tempfile::TempDir, Result<Config, String>) {
    let dir = tempfile::tempdir().unwrap();
    let vars: Vec<(String, String)> = variables(&block.yaml)
        .into_iter()
        .map(|n| {
            let v = value_for(&n, dir.path());
            (n, v)
        })
        .collect();
    let file = dir.path().join("sealbox.yaml");
    std::fs::write(&file, &block.yaml).unwrap();
    let env = |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let parsed = Config::from_path_with_env(&file, &env).map(|mut c| {
        let root = dir.path().join("root");
        if let Some(s) = c.secrets.as_mut() {
            rebase_json(&mut s.config, &root);
        }
        for s in c.stores.values_mut() {
            rebase_json(&mut s.config, &root);
        }
        if let Some(a) = c.audit.as_mut() {
            for p in [&mut a.path, &mut a.key_file].into_iter().flatten() {
                if p.is_absolute() {
                    *p = rebase(&p.display().to_string(), &root, false).into();
                }
            }
        }
        c
    });
    (dir, parsed.map_err(|e| e.to_string()))
}

/// Parses and builds `block` with `registry`.
pub async fn load(block: &Block, registry: &ProviderRegistry) -> Result<(), String> {
    let (_dir, parsed) = parse(block);
    let client = parsed?.build(registry).await.map_err(|e| e.to_string())?;
    drop(client);
    Ok(())
}

/// The providers a block names: its stores' and their `master_key:` blocks' key providers.
pub fn providers(block: &Block) -> Vec<String> {
    let (_dir, parsed) = parse(block);
    parsed
        .map(|c| {
            c.store_configs()
                .into_iter()
                .flat_map(|(_, _, s)| {
                    let key = s.config["master_key"]["provider"]
                        .as_str()
                        .map(str::to_owned);
                    std::iter::once(s.provider.clone()).chain(key)
                })
                .collect()
        })
        .unwrap_or_default()
}
