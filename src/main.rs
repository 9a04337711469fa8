use clap::Parser;

fn main() -> std::process::ExitCode {
    euraflow::cli::run(euraflow::cli::Cli::parse())
}
