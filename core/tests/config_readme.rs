//! Every whole config in the repository's Markdown (README.md and every other `*.md`) parses
//! and loads with its `${VARS}` set: the documentation cannot drift from the schema without
//! this failing. Blocks are found by content (see `support/markdown_configs.rs`), so the
//! documents can be rewritten and reordered freely. Blocks naming a provider that lives in
//! another crate are loaded by that crate's tests (`providers/*/tests/config_files.rs`).

#[path = "support/markdown_configs.rs"]
mod markdown_configs;

use markdown_configs::{all_blocks, load, parse, providers};
use sealbox::config::ProviderRegistry;

/// Providers registered by crates other than `sealbox`, whose blocks their own tests load (or,
/// for key providers that need a KMS or an HSM, parse).
const LOADED_ELSEWHERE: &[&str] = &[
    "aws",
    "aws-kms",
    "gcp",
    "azure",
    "vault",
    "vault-transit",
    "pkcs11",
];

#[tokio::test]
async fn every_markdown_config_parses_and_loads() {
    let blocks = all_blocks();
    assert!(
        blocks.iter().any(|b| b.file.ends_with("README.md")),
        "expected the README's configuration examples"
    );
    let registry = ProviderRegistry::with_builtins();
    let builtin: Vec<&str> = registry
        .stores
        .names()
        .chain(registry.keys.names())
        .collect();
    let mut loaded = 0;
    for block in &blocks {
        let (_dir, parsed) = parse(block);
        if let Err(e) = parsed {
            panic!("{block}: does not parse: {e}\n{}", block.yaml);
        }
        let names = providers(block);
        if let Some(other) = names.iter().find(|p| !builtin.contains(&p.as_str())) {
            assert!(
                LOADED_ELSEWHERE.contains(&other.as_str()),
                "{block}: provider {other:?} is neither built in nor loaded by another crate's tests"
            );
            continue;
        }
        if let Err(e) = load(block, &registry).await {
            panic!("{block}: does not load: {e}\n{}", block.yaml);
        }
        loaded += 1;
    }
    eprintln!(
        "{} config blocks parsed, {loaded} loaded here",
        blocks.len()
    );
}

#[test]
fn blocks_are_found_by_content_wherever_they_are() {
    let md = "# Title\n\ntext\n\n```yaml\ncache: {ttl: 5m}\n```\n\n1. step\n   ```yaml\n   \
              secrets:\n     provider: local\n     config: {path: ${VAULT_DIR}, key_file: ${KEY_FILE}}\n   ```\n";
    let blocks = markdown_configs::config_blocks(std::path::Path::new("x.md"), md);
    assert_eq!(blocks.len(), 1, "a fragment is not a whole config");
    assert_eq!(blocks[0].line, 10);
    assert!(blocks[0].yaml.starts_with("secrets:\n  provider: local\n"));
    assert_eq!(
        markdown_configs::variables(&blocks[0].yaml),
        ["VAULT_DIR", "KEY_FILE"]
    );
}

#[tokio::test]
async fn a_readme_style_block_with_variables_in_flow_mappings_loads() {
    let md = "```yaml\nsecrets:\n  provider: local\n  config: {path: ${VAULT_DIR}, key_file: ${MASTER_KEY_FILE}}\naudit: {path: ${AUDIT_PATH}}\n```\n";
    let blocks = markdown_configs::config_blocks(std::path::Path::new("x.md"), md);
    load(&blocks[0], &ProviderRegistry::with_builtins())
        .await
        .unwrap();
}
