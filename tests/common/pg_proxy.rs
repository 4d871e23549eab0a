//! A TCP proxy between qbo and Postgres that a test can cut: every open connection is
//! dropped and new ones are refused until it is restored. It stands in for a Postgres
//! restart without touching the shared server.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

struct State {
    upstream: String,
    open: AtomicBool,
    accepted: AtomicUsize,
    refused: AtomicUsize,
    links: Mutex<Vec<AbortHandle>>,
}

pub struct PgProxy {
    addr: SocketAddr,
    state: Arc<State>,
    accept: AbortHandle,
}

impl PgProxy {
    /// Forwards to the host and port of `db_url`.
    pub async fn start(db_url: &str) -> PgProxy {
        let u = url::Url::parse(db_url).expect("database URL");
        let upstream = format!(
            "{}:{}",
            u.host_str().unwrap_or("127.0.0.1"),
            u.port().unwrap_or(5432)
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            upstream,
            open: AtomicBool::new(true),
            accepted: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
            links: Mutex::new(Vec::new()),
        });
        let s = state.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if !s.open.load(Ordering::SeqCst) {
                    s.refused.fetch_add(1, Ordering::SeqCst);
                    drop(client);
                    continue;
                }
                s.accepted.fetch_add(1, Ordering::SeqCst);
                let upstream = s.upstream.clone();
                let link = tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let mut client = client;
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
                s.links.lock().unwrap().push(link.abort_handle());
            }
        })
        .abort_handle();
        PgProxy {
            addr,
            state,
            accept,
        }
    }

    /// `db_url` with its host and port replaced by the proxy's.
    pub fn url(&self, db_url: &str) -> String {
        let mut u = url::Url::parse(db_url).expect("database URL");
        u.set_host(Some("127.0.0.1")).unwrap();
        u.set_port(Some(self.addr.port())).unwrap();
        u.to_string()
    }

    /// Drops every connection and refuses new ones, like a Postgres that went away.
    pub fn cut(&self) {
        self.state.open.store(false, Ordering::SeqCst);
        for link in self.state.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    pub fn restore(&self) {
        self.state.open.store(true, Ordering::SeqCst);
    }

    /// Connections refused while cut.
    pub fn refused(&self) -> usize {
        self.state.refused.load(Ordering::SeqCst)
    }

    pub fn accepted(&self) -> usize {
        self.state.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for PgProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}
