//! Every YAML block in the README parses as a sealbox config: the documentation cannot drift
//! from the schema without this failing.

use sealbox::config::Config;

#[test]
fn readme_yaml_blocks_are_valid_configs() {
    let readme = include_str!("../../README.md");
    let mut blocks = 0;
    let mut rest = readme;
    while let Some(start) = rest.find("```yaml\n") {
        let body = &rest[start + "```yaml\n".len()..];
        let end = body.find("```").expect("unterminated yaml block in README");
        let yaml = &body[..end];
        if let Err(e) = Config::from_yaml_str(yaml) {
            panic!(
                "README yaml block #{} does not parse: {e}\n{yaml}",
                blocks + 1
            );
        }
        blocks += 1;
        rest = &body[end..];
    }
    assert!(
        blocks >= 2,
        "expected the README's configuration examples, found {blocks}"
    );
}
