//! `euraflow-dev`: developer tools that are not part of the appliance (not in the package).
//!
//! `euraflow-dev fake-ozon --listen 127.0.0.1:8900 --shops 2 --products 250 --postings 400` runs
//! the fake Ozon Seller API (`euraflow::ozon::fake`) until Ctrl-C and prints the credentials of
//! its shops, so the web app can be pointed at a populated Ozon without a seller account.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use euraflow::ozon::fake::{FakeConfig, FakeOzon};

#[derive(Parser)]
#[command(name = "euraflow-dev", about = "Developer tools for euraflow", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a fake Ozon Seller API with generated shops, products and postings.
    FakeOzon {
        /// Address to listen on (plain HTTP).
        #[arg(long, default_value = "127.0.0.1:8900")]
        listen: SocketAddr,
        /// Number of shops (each with its own Client-Id/Api-Key).
        #[arg(long, default_value_t = 2)]
        shops: usize,
        /// Products per shop.
        #[arg(long, default_value_t = 250)]
        products: usize,
        /// FBS postings per shop, spread over the last 30 days.
        #[arg(long, default_value_t = 400)]
        postings: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("euraflow-dev: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::FakeOzon {
            listen,
            shops,
            products,
            postings,
        } => runtime.block_on(fake_ozon(
            listen,
            FakeConfig {
                shops,
                products,
                postings,
                // A long manual session should not grow the fake; counts are kept regardless.
                call_log_capacity: 1000,
            },
        )),
    }
}

async fn fake_ozon(listen: SocketAddr, config: FakeConfig) -> ExitCode {
    let fake = match FakeOzon::start_on(listen, config.clone()).await {
        Ok(f) => f,
        Err(e) => {
            eprintln!("euraflow-dev: cannot start the fake Ozon on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "Fake Ozon Seller API on {} ({} shops, {} products and {} postings each)",
        fake.base_url(),
        config.shops,
        config.products,
        config.postings
    );
    println!(
        "Point the server at it: EF__OZON_API_BASE_URL={}",
        fake.base_url()
    );
    for shop in fake.handle().shops() {
        println!(
            "  shop {}: Client-Id {}  Api-Key {}",
            shop.index, shop.client_id, shop.api_key
        );
    }
    println!("Ctrl-C stops it.");
    if let Err(e) = tokio::signal::ctrl_c().await {
        eprintln!("euraflow-dev: cannot wait for Ctrl-C ({e}); stopping");
    }
    fake.shutdown().await;
    ExitCode::SUCCESS
}
