//! The README's configuration reference is generated from the key table; this keeps them equal.
//! To refresh it: `scripts/update-readme-reference`.

#[test]
fn readme_configuration_reference_matches_the_key_table() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("<!-- config-reference:start")
        .and_then(|i| readme[i..].find("-->").map(|j| i + j + 3))
        .expect("README.md lacks the config-reference:start marker");
    let end = readme
        .find("<!-- config-reference:end -->")
        .expect("README.md lacks the config-reference:end marker");
    let expected = euraflow::config::render_markdown_reference();
    assert!(
        readme[start..end].trim() == expected.trim(),
        "README.md's configuration reference is out of date: run scripts/update-readme-reference"
    );
}
