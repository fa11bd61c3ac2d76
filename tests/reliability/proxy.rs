//! A fault-injecting TCP proxy on loopback, between a pool and its server.
//!
//! ```text
//!  pool ──► 127.0.0.1:<proxy port> ──► Proxy ──► 127.0.0.1:<server port>
//! ```
//!
//! Switchable at runtime:
//!
//! | call | effect |
//! |---|---|
//! | [`set_mode`](Proxy::set_mode)`(PassThrough)` | forwards both ways |
//! | [`set_mode`](Proxy::set_mode)`(Refuse)` | new connections are accepted and reset at once (as a refused connect looks to the driver); open ones are untouched |
//! | [`set_mode`](Proxy::set_mode)`(Blackhole)` | nothing is forwarded, either way, on any connection; new ones are accepted and held. Bytes read meanwhile are delivered when the mode changes, as TCP would after a partition heals |
//! | [`set_latency`](Proxy::set_latency) | every chunk waits this long before it is forwarded |
//! | [`cut_all`](Proxy::cut_all) | resets every open connection, both sides |
//! | [`cut_after_marker`](Proxy::cut_after_marker) | the next `times` client→server chunks containing `marker` are forwarded, and the connection is reset as soon as the server answers, its answer dropped: the statement ran, the client never learns its outcome |
//! | [`cut_after_bytes`](Proxy::cut_after_bytes) | the next `times` connections whose client sends more than `n` bytes are reset right after byte `n` |
//!
//! Everything stays on 127.0.0.1; dropping the proxy resets every connection it holds.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward both ways.
    PassThrough,
    /// Reset new connections at once.
    Refuse,
    /// Accept, never forward a byte (until the mode changes).
    Blackhole,
}

/// Counters of a [`Proxy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyStats {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections open now (accepted and not yet closed on both sides).
    pub open: usize,
    /// Connections reset because of `Refuse`.
    pub refused: u64,
    /// Connections reset by a cut rule or `cut_all`.
    pub cuts: u64,
}

#[derive(Debug)]
enum Trigger {
    Marker(Vec<u8>),
    Bytes(usize),
}

#[derive(Debug)]
struct Rule {
    trigger: Trigger,
    remaining: usize,
}

struct Shared {
    upstream: SocketAddr,
    mode: watch::Sender<Mode>,
    latency_us: AtomicU64,
    /// Bumped by `cut_all`: every connection task watching it resets its sockets.
    generation: watch::Sender<u64>,
    rule: Mutex<Option<Rule>>,
    accepted: AtomicU64,
    open: AtomicUsize,
    refused: AtomicU64,
    cuts: AtomicU64,
}

/// A running proxy. See the [module docs](self).
pub struct Proxy {
    port: u16,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Starts a proxy on a free loopback port, forwarding to `127.0.0.1:upstream_port`.
    pub async fn start(upstream_port: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let shared = Arc::new(Shared {
            upstream: SocketAddr::from(([127, 0, 0, 1], upstream_port)),
            mode: watch::Sender::new(Mode::PassThrough),
            latency_us: AtomicU64::new(0),
            generation: watch::Sender::new(0),
            rule: Mutex::new(None),
            accepted: AtomicU64::new(0),
            open: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
            cuts: AtomicU64::new(0),
        });
        let accept = tokio::spawn({
            let shared = Arc::clone(&shared);
            async move {
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        continue;
                    };
                    shared.accepted.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(serve(client, Arc::clone(&shared)));
                }
            }
        });
        Proxy {
            port,
            shared,
            accept,
        }
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Switches the mode (see [`Mode`]).
    pub fn set_mode(&self, mode: Mode) {
        self.shared.mode.send_replace(mode);
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        *self.shared.mode.borrow()
    }

    /// Delays every forwarded chunk by `latency` (zero to stop).
    pub fn set_latency(&self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.shared.latency_us.store(us, Ordering::Relaxed);
    }

    /// Resets every open connection. Returns how many were open.
    pub fn cut_all(&self) -> usize {
        let open = self.shared.open.load(Ordering::Relaxed);
        self.shared.generation.send_modify(|g| *g += 1);
        open
    }

    /// Arms the cut-after-statement rule: the next `times` client→server chunks that
    /// contain `marker` are forwarded, then the connection is reset when the server
    /// answers (or after 2 s without an answer), and the answer is dropped.
    pub fn cut_after_marker(&self, marker: &str, times: usize) {
        *self.shared.rule.lock().unwrap() = Some(Rule {
            trigger: Trigger::Marker(marker.as_bytes().to_vec()),
            remaining: times,
        });
    }

    /// Arms the cut-after-bytes rule: the next `times` connections whose client sends
    /// more than `n` bytes are reset right after byte `n` is forwarded.
    pub fn cut_after_bytes(&self, n: usize, times: usize) {
        *self.shared.rule.lock().unwrap() = Some(Rule {
            trigger: Trigger::Bytes(n),
            remaining: times,
        });
    }

    /// Disarms the cut rule; returns how many cuts it had left.
    pub fn disarm(&self) -> usize {
        self.shared
            .rule
            .lock()
            .unwrap()
            .take()
            .map_or(0, |r| r.remaining)
    }

    /// The counters.
    pub fn stats(&self) -> ProxyStats {
        ProxyStats {
            accepted: self.shared.accepted.load(Ordering::Relaxed),
            open: self.shared.open.load(Ordering::Relaxed),
            refused: self.shared.refused.load(Ordering::Relaxed),
            cuts: self.shared.cuts.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.shared.mode.send_replace(Mode::Refuse);
        self.cut_all();
    }
}

/// Counts a connection as open while it lives.
struct Open(Arc<Shared>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Resets a socket: `SO_LINGER` 0, then close.
fn reset(socket: TcpStream) {
    let _ = socket.set_zero_linger();
    drop(socket);
}

/// One connection's shared state between its two directions.
#[derive(Default)]
struct Conn {
    /// The statement that triggered a cut rule was forwarded: drop the server's answer
    /// and reset.
    doomed: AtomicBool,
    kill: Notify,
}

async fn serve(client: TcpStream, shared: Arc<Shared>) {
    shared.open.fetch_add(1, Ordering::Relaxed);
    let _open = Open(Arc::clone(&shared));
    let mut generation = shared.generation.subscribe();
    generation.mark_unchanged();
    let mut mode = shared.mode.subscribe();

    // A new connection in blackhole mode is held without a byte read or sent.
    let current = *mode.borrow_and_update();
    let current = if current == Mode::Blackhole {
        tokio::select! {
            m = mode.wait_for(|m| *m != Mode::Blackhole) => m.map(|m| *m).unwrap_or(Mode::Refuse),
            _ = generation.changed() => Mode::Refuse,
        }
    } else {
        current
    };
    if current == Mode::Refuse {
        shared.refused.fetch_add(1, Ordering::Relaxed);
        reset(client);
        return;
    }
    let Ok(upstream) = TcpStream::connect(shared.upstream).await else {
        reset(client);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (mut client, mut upstream) = (client, upstream);
    let conn = Conn::default();
    let cut = {
        let (client_read, client_write) = client.split();
        let (server_read, server_write) = upstream.split();
        let up = pump(client_read, server_write, true, &shared, &conn);
        let down = pump(server_read, client_write, false, &shared, &conn);
        tokio::select! {
            _ = async { tokio::join!(up, down) } => false,
            _ = generation.changed() => true,
            () = conn.kill.notified() => true,
        }
    };
    if cut {
        shared.cuts.fetch_add(1, Ordering::Relaxed);
        reset(client);
        reset(upstream);
    }
}

/// What the cut rule says about a client→server chunk.
enum Verdict {
    Forward,
    /// Forward it, then reset once the server answers.
    ForwardThenDoom,
    /// Forward only this many bytes, then reset.
    CutAfter(usize),
}

/// `window` is the end of the previous chunk (`seen` bytes, already judged) followed by
/// the new chunk of `chunk` bytes; `sent` bytes went before it on this connection.
fn judge(shared: &Shared, window: &[u8], seen: usize, sent: usize, chunk: usize) -> Verdict {
    let mut rule = shared.rule.lock().unwrap();
    let Some(r) = rule.as_mut().filter(|r| r.remaining > 0) else {
        return Verdict::Forward;
    };
    match &r.trigger {
        Trigger::Marker(marker) => {
            // Only a match that ends in the new chunk counts: the rest was judged before.
            let fresh = window
                .windows(marker.len())
                .enumerate()
                .any(|(at, w)| w == marker.as_slice() && at + marker.len() > seen);
            if fresh {
                r.remaining -= 1;
                Verdict::ForwardThenDoom
            } else {
                Verdict::Forward
            }
        }
        Trigger::Bytes(n) if sent + chunk > *n => {
            r.remaining -= 1;
            Verdict::CutAfter(n.saturating_sub(sent))
        }
        Trigger::Bytes(_) => Verdict::Forward,
    }
}

/// Copies one direction until EOF, applying the mode, the latency and the cut rule.
async fn pump(
    mut from: ReadHalf<'_>,
    mut to: WriteHalf<'_>,
    client_to_server: bool,
    shared: &Shared,
    conn: &Conn,
) {
    let mut mode = shared.mode.subscribe();
    let mut buf = vec![0u8; 32 * 1024];
    // The end of the previous chunk, so that a marker split across chunks is found.
    let mut tail: Vec<u8> = Vec::new();
    let mut sent = 0usize;
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) => {
                let _ = to.shutdown().await;
                return;
            }
            Ok(n) => n,
            Err(_) => {
                conn.kill.notify_one();
                return std::future::pending().await;
            }
        };
        if !client_to_server && conn.doomed.load(Ordering::Acquire) {
            // The server answered the statement that armed the cut: drop the answer.
            conn.kill.notify_one();
            return std::future::pending().await;
        }
        // Blackhole: hold the bytes until the mode changes.
        if mode.wait_for(|m| *m != Mode::Blackhole).await.is_err() {
            return std::future::pending().await;
        }
        let latency = shared.latency_us.load(Ordering::Relaxed);
        if latency > 0 {
            tokio::time::sleep(Duration::from_micros(latency)).await;
        }
        let chunk = &buf[..n];
        let verdict = if client_to_server {
            let mut window = std::mem::take(&mut tail);
            let seen = window.len();
            window.extend_from_slice(chunk);
            let verdict = judge(shared, &window, seen, sent, n);
            let keep = window.len().min(256);
            tail = window.split_off(window.len() - keep);
            verdict
        } else {
            Verdict::Forward
        };
        let forward = match verdict {
            Verdict::CutAfter(k) => k.min(n),
            _ => n,
        };
        if to.write_all(&chunk[..forward]).await.is_err() {
            conn.kill.notify_one();
            return std::future::pending().await;
        }
        sent += forward;
        match verdict {
            Verdict::Forward => {}
            Verdict::CutAfter(_) => {
                let _ = to.flush().await;
                conn.kill.notify_one();
                return std::future::pending().await;
            }
            Verdict::ForwardThenDoom => {
                conn.doomed.store(true, Ordering::Release);
                // No answer within 2 s: cut anyway. Nothing more is forwarded meanwhile.
                tokio::time::sleep(Duration::from_secs(2)).await;
                conn.kill.notify_one();
                return std::future::pending().await;
            }
        }
    }
}
