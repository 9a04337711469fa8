//! The operator guides' configuration reference is generated from the key table; this keeps them
//! equal, in English and in Chinese. To refresh them: `scripts/update-readme-reference`.

fn reference_in(relative: &str) -> String {
    let path = format!("{}/{relative}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    let start = text
        .find("<!-- config-reference:start")
        .and_then(|i| text[i..].find("-->").map(|j| i + j + 3))
        .unwrap_or_else(|| panic!("{relative} lacks the config-reference:start marker"));
    let end = text
        .find("<!-- config-reference:end -->")
        .unwrap_or_else(|| panic!("{relative} lacks the config-reference:end marker"));
    text[start..end].trim().to_string()
}

#[test]
fn operator_guides_configuration_reference_matches_the_key_table() {
    let expected = euraflow::config::render_markdown_reference();
    for guide in ["docs/operations.md", "docs/zh-CN/运维手册.md"] {
        assert!(
            reference_in(guide) == expected.trim(),
            "{guide}'s configuration reference is out of date: run scripts/update-readme-reference"
        );
    }
}

/// The README stays short: what it is, the two commands, install, daily commands, and where the
/// rest is. The reference lives in the guides only (one place to keep current).
#[test]
fn readme_points_to_the_guides_and_holds_no_reference() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md is readable");
    assert!(!readme.contains("config-reference:start"));
    for link in [
        "docs/operations.md",
        "docs/zh-CN/运维手册.md",
        "CONTRIBUTING.md",
    ] {
        assert!(readme.contains(link), "README.md does not link {link}");
    }
    assert!(readme.contains("scripts/dev-server") && readme.contains("scripts/test"));
}

/// Every key of the reference also appears in the Chinese guide's mapping of the production
/// guide where the guide named it (the keys an operator of the old deployment looks for).
#[test]
fn the_chinese_guide_maps_the_production_guides_keys() {
    let zh = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/zh-CN/运维手册.md"
    ))
    .expect("the Chinese guide is readable");
    let mapping = &zh[..zh.find("## 2.").expect("the guide has section 2")];
    for key in [
        "EF__DB_PASSWORD",
        "EF__SECRET_KEY",
        "EF__DB_POOL_SIZE",
        "EF__DB_MAX_OVERFLOW",
        "EF__CELERY_CONCURRENCY",
        "EF__API_DEBUG",
        "EF__RATE_LIMIT_ENABLED",
        "max_connections",
        "maxclients",
        "logrotate",
        "supervisorctl",
        "ab -n 10000 -c 100",
        "WebSocket",
        "监控告警",
    ] {
        assert!(
            mapping.contains(key),
            "section 1 of the Chinese guide does not map {key}"
        );
    }
}
