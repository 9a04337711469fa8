//! The HTTP side: accept loop and connections (`server`), TLS (`tls`), the route table
//! (`router`), static files, and one file per middleware concern.

pub(crate) mod idle;
pub(crate) mod middleware;
pub(crate) mod router;
pub(crate) mod send_timeout;
pub(crate) mod server;
pub mod static_cache;
pub(crate) mod static_files;
pub mod tls;
