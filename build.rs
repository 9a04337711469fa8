//! Embeds `migrations/NNNN_name.sql` into the binary as an ordered table, so the binary and the
//! schema it expects can never be installed apart. A misnamed or duplicated migration fails the
//! build rather than a deployment.

// A build script reports a broken input by failing the build: panicking is its error channel.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<(i64, String)> = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("migrations/ must exist") {
        let entry = entry.expect("reading migrations/");
        let name = entry.file_name().to_string_lossy().into_owned();
        println!("cargo:rerun-if-changed={}", entry.path().display());
        if !name.ends_with(".sql") {
            continue;
        }
        let (num, rest) = name
            .split_once('_')
            .unwrap_or_else(|| panic!("migration {name}: expected NNNN_description.sql"));
        let version: i64 = num
            .parse()
            .unwrap_or_else(|_| panic!("migration {name}: {num} is not a number"));
        assert!(
            num.len() == 4 && !rest.is_empty(),
            "migration {name}: expected a four-digit number, e.g. 0007_add_jobs.sql"
        );
        files.push((version, name));
    }
    files.sort();
    for pair in files.windows(2) {
        assert!(
            pair[0].0 != pair[1].0,
            "migrations {} and {} share version {}",
            pair[0].1,
            pair[1].1,
            pair[0].0
        );
    }
    let mut out = String::from("pub static EMBEDDED: &[Migration] = &[\n");
    for (version, name) in &files {
        let path = dir.join(name);
        writeln!(
            out,
            "    Migration {{ version: {version}, name: {name:?}, sql: include_str!({path:?}) }},",
            path = path.display().to_string()
        )
        .expect("write to string");
    }
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("migrations.rs");
    std::fs::write(dest, out).expect("writing migrations.rs");
}
