//! Building the server from a configuration and listeners, so the binary and the tests start
//! exactly the same thing: `Application::build` binds (port 0 works) and reports the addresses;
//! `start` registers the accept loops with the lifecycle.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::config::{Config, ListenAddr};
use crate::db::Database;
use crate::http::router;
use crate::http::server::{HttpServer, ListenerKind};
use crate::http::tls::{CertificateStore, LoadedCertificate};
use crate::lifecycle::{Lifecycle, TaskName};
use crate::redis::Redis;
use crate::state::AppState;
use crate::systemd::InheritedSockets;

pub struct Application {
    state: AppState,
    server: Arc<HttpServer>,
    https: Option<TcpListener>,
    http: TcpListener,
    https_addr: Option<SocketAddr>,
    http_addr: SocketAddr,
    certificates: Option<Arc<CertificateStore>>,
    tls: Option<TlsAcceptor>,
    socket_activated: bool,
}

impl Application {
    pub async fn build(config: Config, inherited: InheritedSockets) -> anyhow::Result<Self> {
        let socket_activated = !inherited.is_empty();
        let config = Arc::new(config);
        let https = match (inherited.https, config.http.https_listen) {
            (Some(l), _) => {
                Some(TcpListener::from_std(l).context("using the https socket from systemd")?)
            }
            (None, ListenAddr::On(addr)) => Some(bind(addr, "EF__HTTPS_LISTEN").await?),
            (None, ListenAddr::Off) => None,
        };
        let http = match inherited.http {
            Some(l) => TcpListener::from_std(l).context("using the http socket from systemd")?,
            None => bind(config.http.http_listen, "EF__API_HOST/EF__API_PORT").await?,
        };
        let https_addr = https.as_ref().and_then(|l| l.local_addr().ok());
        let http_addr = http
            .local_addr()
            .context("reading the plain-HTTP listener's address")?;

        let (certificates, tls) = if https.is_some() {
            let store = CertificateStore::open(config.tls.clone(), &config.server_name)
                .context("loading the TLS certificate")?;
            let acceptor = TlsAcceptor::from(store.server_config()?);
            (Some(store), Some(acceptor))
        } else {
            (None, None)
        };

        let db = Database::new(&config.db)?;
        let redis = Redis::new(&config.redis)?;
        let state = AppState::new(config.clone(), db, redis)?;
        if let Some(store) = &certificates {
            state.stats().set_tls_not_after(store.current().not_after);
        }
        let router = router::build(state.clone());
        let server = HttpServer::new(router, state.clone(), &config.http);
        Ok(Application {
            state,
            server,
            https,
            http,
            https_addr,
            http_addr,
            certificates,
            tls,
            socket_activated,
        })
    }

    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https_addr
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    pub fn socket_activated(&self) -> bool {
        self.socket_activated
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    pub fn certificate(&self) -> Option<Arc<LoadedCertificate>> {
        self.certificates.as_ref().map(|c| c.current())
    }

    /// Start accepting on both listeners, as tasks owned by `lifecycle`.
    pub fn start(self, lifecycle: &Lifecycle) -> Running {
        if let Some(listener) = self.https {
            lifecycle.spawn(
                TaskName::HttpsAcceptor,
                self.server.clone().accept_loop(
                    listener,
                    ListenerKind::Https,
                    self.tls.clone(),
                    lifecycle.shutdown_token(),
                ),
            );
        }
        lifecycle.spawn(
            TaskName::Realtime,
            self.state
                .realtime()
                .clone()
                .run_subscriber(lifecycle.shutdown_token()),
        );
        lifecycle.spawn(
            TaskName::RealtimeStats,
            self.state
                .realtime()
                .clone()
                .run_stats_publisher(lifecycle.shutdown_token()),
        );
        lifecycle.spawn(
            TaskName::AuthCache,
            self.state
                .auth()
                .store
                .cache()
                .clone()
                .run_subscriber(lifecycle.shutdown_token()),
        );
        lifecycle.spawn(
            TaskName::DatabaseMaintenance,
            self.state.db().clone().maintain(lifecycle.shutdown_token()),
        );
        lifecycle.spawn(
            TaskName::HttpAcceptor,
            self.server.clone().accept_loop(
                self.http,
                ListenerKind::Http,
                None,
                lifecycle.shutdown_token(),
            ),
        );
        Running {
            state: self.state,
            server: self.server,
            certificates: self.certificates,
            https_addr: self.https_addr,
            http_addr: self.http_addr,
        }
    }
}

/// A started server: what `serve` needs for reloads, status and shutdown.
pub struct Running {
    state: AppState,
    server: Arc<HttpServer>,
    certificates: Option<Arc<CertificateStore>>,
    pub https_addr: Option<SocketAddr>,
    pub http_addr: SocketAddr,
}

impl Running {
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Re-read the TLS certificate. `Ok(None)` when HTTPS is off.
    pub fn reload_tls(&self) -> anyhow::Result<Option<Arc<LoadedCertificate>>> {
        match &self.certificates {
            Some(store) => {
                let cert = store.reload()?;
                self.state.stats().set_tls_not_after(cert.not_after);
                Ok(Some(cert))
            }
            None => Ok(None),
        }
    }

    /// Let in-flight requests finish within `bound`; returns how many connections were cut.
    /// Websockets are closed with 1001 at once: hyper no longer tracks an HTTP/1.1 one once
    /// upgraded, and an HTTP/2 one would hold its connection's GOAWAY open until the bound.
    pub async fn drain(&self, bound: Duration) -> usize {
        let (cut, sockets) = tokio::join!(
            self.server.drain(bound),
            self.state.realtime().hub().close_all(bound)
        );
        cut + sockets
    }
}

async fn bind(addr: SocketAddr, key: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::PermissionDenied => format!(
                "ports below 1024 need privileges: start the server through its socket units (systemctl start euraflow.socket euraflow-http.socket), or set {key} to a port above 1024"
            ),
            std::io::ErrorKind::AddrInUse => format!(
                "another process listens there (ss -ltnp to see which); stop it or change {key}"
            ),
            _ => format!("check {key}"),
        };
        anyhow::anyhow!("cannot listen on {addr}: {e}; {hint}")
    })
}
