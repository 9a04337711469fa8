//! The README's configuration reference and the packaged template must list every key.

#[test]
fn readme_documents_every_configuration_key() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for key in euraflow::config::keys::KEYS {
        assert!(
            readme.contains(&format!("| `{}` |", key.name)),
            "README.md lacks {} in its configuration reference",
            key.name
        );
    }
}
