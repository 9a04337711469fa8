use clap::Parser;

/// jemalloc instead of glibc's malloc. Measured on the release build (2 cores, wrk c100 over
/// TLS): CPU per request 112 → 96 µs (`/auth/me`), 36 → 33 µs (`index.html`), 51 → 39 µs
/// (`/api/ef/v1/health`) — glibc's arenas lock when a buffer made on one thread is freed on
/// another, which a work-stealing runtime does all the time; PSS at rest 38 → 22 MB, with 1 000
/// keep-alive connections open 75 → 56 MB. (mimalloc was measured earlier: as fast, but 52 MB at
/// rest.) glibc also kept a burst's memory until a `malloc_trim` every 30 s; jemalloc's background
/// thread returns it by itself ([`malloc_conf`]).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read when it starts: one background thread returns freed pages to the
/// system a second after they were freed (no "muzzy" stage in between), so a burst's memory goes
/// back without waiting for the next allocation.
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: &[u8; 85] =
    b"background_thread:true,max_background_threads:1,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

fn main() -> std::process::ExitCode {
    euraflow::cli::run(euraflow::cli::Cli::parse())
}
