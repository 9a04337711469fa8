//! `euraflow completions SHELL` and the hidden `euraflow manpage`: generated from the command
//! definitions (`cli::Cli`), so the man page and the completions always match the binary. The
//! package build (`packaging/build-deb`) writes them into the `.deb`: `euraflow(8)` and the bash
//! and zsh completions.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;

pub fn completions(shell: Shell) -> ExitCode {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "euraflow", &mut out);
    write_stdout(&out)
}

/// What the operator needs beyond the options: where things are, what the exit codes mean, and
/// where the full guide is.
const EXTRA: &str = r#".SH FILES
.TP
\fI/etc/euraflow/euraflow.env\fR
The configuration (EF__ keys; \fBeuraflow config template\fR prints every key with its default).
.TP
\fI/etc/euraflow/credentials/\fR
\fBsecret_key\fR, \fBdata_key\fR and the optional \fBdb_password\fR and \fBredis_password\fR, passed to the services as systemd credentials.
.TP
\fI/var/lib/euraflow/\fR
State: the generated certificate, backups, the web build (\fIweb/\fR), \fIdownloads/\fR and the first admin's password.
.SH EXIT STATUS
0 success; 1 failure; 65 a migration failed or an applied migration was edited; 69 the database could not be reached; 78 the server refused to start because of its configuration (fix it; restarting does not help).
.SH EXAMPLES
.TP
\fBrunuser \-u euraflow \-\- euraflow check\fR
The go-live checklist, with a fix for every failure.
.TP
\fBrunuser \-u euraflow \-\- euraflow status\fR
Health, connections, queues and workers.
.TP
\fBjournalctl \-u euraflow HTTP_STATUS=500\fR
The requests that failed, from the structured journal.
.SH SEE ALSO
\fBsystemctl\fR(1), \fBjournalctl\fR(1), \fBpg_dump\fR(1).
The operations guide: \fI/usr/share/doc/euraflow/operations.md\fR (Chinese: \fIoperations.zh-CN.md\fR).
"#;

/// `euraflow.8` (with FILES, EXIT STATUS, EXAMPLES, SEE ALSO) and `euraflow-<command>.8` for
/// every visible command and sub-command, which the main page's SUBCOMMANDS section refers to.
pub fn manpages(dir: &Path) -> ExitCode {
    match write_pages(dir) {
        Ok(n) => {
            println!("wrote {n} manual pages into {}", dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn write_pages(dir: &Path) -> anyhow::Result<usize> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let root = Cli::command();
    let mut pages = vec![(root.clone(), true)];
    let mut stack: Vec<(String, clap::Command)> = root
        .get_subcommands()
        .map(|c| ("euraflow".to_owned(), c.clone()))
        .collect();
    while let Some((parent, cmd)) = stack.pop() {
        if cmd.is_hide_set() {
            continue;
        }
        let name = format!("{parent}-{}", cmd.get_name());
        stack.extend(cmd.get_subcommands().map(|c| (name.clone(), c.clone())));
        let cmd = cmd.name(name.clone()).bin_name(name.replace('-', " "));
        pages.push((cmd, false));
    }
    for (cmd, is_root) in &pages {
        let mut out = Vec::new();
        clap_mangen::Man::new(cmd.clone())
            .section("8")
            .manual("euraflow")
            .render(&mut out)
            .context("rendering a manual page")?;
        if *is_root {
            out.extend_from_slice(EXTRA.as_bytes());
        }
        let path = dir.join(format!("{}.8", cmd.get_name()));
        std::fs::write(&path, out).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(pages.len())
}

fn write_stdout(bytes: &[u8]) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: cannot write to standard output: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The main page refers to `euraflow-<command>(8)`: each of those pages exists.
    #[test]
    fn every_command_the_main_page_names_has_its_page() {
        let dir = tempfile::tempdir().unwrap();
        let n = write_pages(dir.path()).unwrap();
        let main = std::fs::read_to_string(dir.path().join("euraflow.8")).unwrap();
        assert!(main.contains(".TH euraflow 8"), "{main}");
        assert!(main.contains(".SH EXIT STATUS") && main.contains("78"));
        let mut referenced = 0;
        for sub in Cli::command()
            .get_subcommands()
            .filter(|c| !c.is_hide_set())
        {
            let page = format!("euraflow-{}", sub.get_name());
            // roff escapes the hyphen
            let named = page.replace('-', "\\-");
            assert!(main.contains(&named), "the main page does not name {page}");
            assert!(
                dir.path().join(format!("{page}.8")).is_file(),
                "no page {page}.8"
            );
            referenced += 1;
        }
        assert!(
            n > referenced,
            "sub-command pages (user create, ...) are written too"
        );
        assert!(dir.path().join("euraflow-user-create.8").is_file());
        assert!(!dir.path().join("euraflow-manpage.8").exists());
    }
}
