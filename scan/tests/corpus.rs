//! Detection quality, measured: the built-in rules over the labelled corpus in `corpus/`
//! (written by `make_corpus.py`; its labels in `corpus-labels.toml`).
//!
//! A finding is a true positive when its value overlaps a labelled credential's first line
//! (whichever rule reported it), and a false positive otherwise. A credential is found when any
//! finding overlaps it. Per rule: precision over what the rule reported; per kind of credential:
//! recall over what was planted. The floors below are the figures measured when they were set,
//! rounded down: a change to the rules that loses detection or adds noise fails here, and one
//! that gains should raise them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sealbox_scan::{Rules, WalkOptions, scan_paths};
use serde::Deserialize;

// Measured when set (68 files, 101 credentials): recall 96.0% (97 found), precision 100% (97
// reported, none false); weakest kind azure-storage-key at 3/4 (a Terraform variable whose key
// is on the line above). The rules were tuned on this corpus (connection strings, INI files,
// escaped quotes, identifier keys), so these are not held-out figures.
/// Every kind taken together: at least this share of the planted credentials is found.
const MIN_RECALL: f64 = 0.95;
/// Every rule taken together: at least this share of what the rules report is a credential
/// (one false positive in the corpus still passes, two fail).
const MIN_PRECISION: f64 = 0.98;
/// Per kind, recall at least this (the weakest kind when measured).
const MIN_KIND_RECALL: f64 = 0.75;
/// Per rule, precision at least this (measured: 100% for every rule).
const MIN_RULE_PRECISION: f64 = 0.85;
/// Each kind is planted at least this many times, so its recall means something.
const MIN_PLANTED: usize = 3;

#[derive(Deserialize)]
struct Labels {
    credential: Vec<Label>,
}

#[derive(Deserialize)]
struct Label {
    file: String,
    line: usize,
    column: usize,
    length: usize,
    kind: String,
}

impl Label {
    /// Whether a value found at `line`, `column` (`length` bytes) overlaps this credential's
    /// first line.
    fn overlaps(&self, file: &str, line: usize, column: usize, length: usize) -> bool {
        file == self.file
            && line == self.line
            && column < self.column + self.length
            && self.column < column + length
    }
}

#[derive(Default)]
struct RuleCount {
    true_pos: usize,
    false_pos: usize,
    false_where: Vec<String>,
}

#[derive(Default)]
struct KindCount {
    planted: usize,
    found: usize,
    found_by_own_rule: usize,
    missed: Vec<String>,
}

fn ratio(n: usize, d: usize) -> f64 {
    if d == 0 { 1.0 } else { n as f64 / d as f64 }
}

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

#[test]
fn the_rules_find_the_planted_credentials_and_little_else() {
    let labels: Labels = toml::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus-labels.toml"),
        )
        .unwrap(),
    )
    .unwrap();
    let rules = Rules::builtin().unwrap();
    let options = WalkOptions {
        no_ignore: true,
        ..WalkOptions::default()
    };
    let root = corpus();
    let report = scan_paths(&rules, std::slice::from_ref(&root), &options).unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);

    let mut by_rule: BTreeMap<String, RuleCount> = BTreeMap::new();
    for r in rules.rules() {
        by_rule.insert(r.id.clone(), RuleCount::default());
    }
    let mut found_by: Vec<Vec<String>> = vec![Vec::new(); labels.credential.len()];
    for f in &report.findings {
        let file = Path::new(&f.path)
            .strip_prefix(&root)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        let count = by_rule.get_mut(&f.rule).unwrap();
        let mut hit = false;
        for (i, l) in labels.credential.iter().enumerate() {
            if l.overlaps(&file, f.line, f.column, f.length) {
                hit = true;
                found_by[i].push(f.rule.clone());
            }
        }
        if hit {
            count.true_pos += 1;
        } else {
            count.false_pos += 1;
            count.false_where.push(format!("{file}:{}", f.line));
        }
    }
    let mut by_kind: BTreeMap<String, KindCount> = BTreeMap::new();
    for (l, rules) in labels.credential.iter().zip(&found_by) {
        let k = by_kind.entry(l.kind.clone()).or_default();
        k.planted += 1;
        if rules.is_empty() {
            k.missed.push(format!("{}:{}", l.file, l.line));
        } else {
            k.found += 1;
        }
        if rules.contains(&l.kind) {
            k.found_by_own_rule += 1;
        }
    }

    // The table, for the README and for whoever changes a rule (`--nocapture` shows it).
    let mut table = String::from(
        "| rule / kind | planted | found | by its rule | recall | reported | false pos. | precision |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rules.rules() {
        let c = &by_rule[&r.id];
        let k = by_kind.get(&r.id);
        let (planted, found, own) =
            k.map_or((0, 0, 0), |k| (k.planted, k.found, k.found_by_own_rule));
        table.push_str(&format!(
            "| {} | {planted} | {found} | {own} | {:.1}% | {} | {} | {:.1}% |\n",
            r.id,
            100.0 * ratio(found, planted),
            c.true_pos + c.false_pos,
            c.false_pos,
            100.0 * ratio(c.true_pos, c.true_pos + c.false_pos),
        ));
    }
    let planted: usize = by_kind.values().map(|k| k.planted).sum();
    let found: usize = by_kind.values().map(|k| k.found).sum();
    let tp: usize = by_rule.values().map(|c| c.true_pos).sum();
    let fp: usize = by_rule.values().map(|c| c.false_pos).sum();
    table.push_str(&format!(
        "| all | {planted} | {found} | | {:.1}% | {} | {fp} | {:.1}% |\n",
        100.0 * ratio(found, planted),
        tp + fp,
        100.0 * ratio(tp, tp + fp),
    ));
    eprintln!(
        "{table}\n{} files, {} bytes",
        report.files_scanned, report.bytes_scanned
    );
    for (kind, k) in &by_kind {
        if !k.missed.is_empty() {
            eprintln!("missed {kind}: {}", k.missed.join(", "));
        }
    }
    for (rule, c) in &by_rule {
        if !c.false_where.is_empty() {
            eprintln!("false positives of {rule}: {}", c.false_where.join(", "));
        }
    }

    for r in rules.rules() {
        let planted = by_kind.get(&r.id).map_or(0, |k| k.planted);
        assert!(
            planted >= MIN_PLANTED,
            "the corpus plants {planted} credentials for rule {}; plant at least {MIN_PLANTED}",
            r.id
        );
    }
    for (kind, k) in &by_kind {
        assert!(
            rules.rules().iter().any(|r| &r.id == kind),
            "label kind {kind} names no rule"
        );
        assert!(
            ratio(k.found, k.planted) >= MIN_KIND_RECALL,
            "recall of {kind}: {}/{}\n{table}",
            k.found,
            k.planted
        );
    }
    for (rule, c) in &by_rule {
        assert!(
            ratio(c.true_pos, c.true_pos + c.false_pos) >= MIN_RULE_PRECISION,
            "precision of {rule}: {}/{}\n{table}",
            c.true_pos,
            c.true_pos + c.false_pos
        );
    }
    assert!(
        ratio(found, planted) >= MIN_RECALL,
        "recall {found}/{planted}\n{table}"
    );
    assert!(
        ratio(tp, tp + fp) >= MIN_PRECISION,
        "precision {tp}/{}\n{table}",
        tp + fp
    );
}
