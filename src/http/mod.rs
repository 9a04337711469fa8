//! The HTTP side: accept loop and connections (`server`), TLS (`tls`), the route table
//! (`router`), static files, and one file per middleware concern.

pub mod idle;
pub mod middleware;
pub mod router;
pub mod send_timeout;
pub mod server;
pub mod static_files;
pub mod tls;
