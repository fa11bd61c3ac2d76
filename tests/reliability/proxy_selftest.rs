//! The proxy itself, against a loopback echo server: each mode and rule does what the
//! scenarios rely on.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common::SERIAL;
use crate::proxy::{Mode, Proxy};

/// An echo server; counts the bytes it received.
async fn echo_server() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&received);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = socket.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    counter.fetch_add(n, Ordering::SeqCst);
                    if socket.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (port, received)
}

/// Reads until `n` bytes came, the peer closed or reset, or `within` passed.
async fn read_some(socket: &mut TcpStream, n: usize, within: Duration) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    let end = tokio::time::Instant::now() + within;
    while out.len() < n {
        match tokio::time::timeout_at(end, socket.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (out, true),
            Ok(Ok(k)) => out.extend_from_slice(&buf[..k]),
            Err(_) => return (out, false),
        }
    }
    (out, false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_modes_and_rules() {
    let _serial = SERIAL.lock().await;
    let (port, received) = echo_server().await;
    let proxy = Proxy::start(port).await;
    let connect = || TcpStream::connect(("127.0.0.1", proxy.port()));
    let short = Duration::from_millis(200);

    // Pass-through.
    let mut a = connect().await.unwrap();
    a.write_all(b"hello").await.unwrap();
    assert_eq!(read_some(&mut a, 5, short * 5).await.0, b"hello");

    // Latency: each direction waits.
    proxy.set_latency(Duration::from_millis(100));
    let start = Instant::now();
    a.write_all(b"slow").await.unwrap();
    assert_eq!(read_some(&mut a, 4, short * 10).await.0, b"slow");
    assert!(start.elapsed() >= Duration::from_millis(200));
    proxy.set_latency(Duration::ZERO);

    // Blackhole: nothing moves on an open connection or a new one, until it ends.
    proxy.set_mode(Mode::Blackhole);
    a.write_all(b"held").await.unwrap();
    let mut b = connect().await.unwrap();
    b.write_all(b"new").await.unwrap();
    assert_eq!(read_some(&mut a, 4, short).await, (Vec::new(), false));
    assert_eq!(read_some(&mut b, 3, short).await, (Vec::new(), false));
    proxy.set_mode(Mode::PassThrough);
    assert_eq!(read_some(&mut a, 4, short * 5).await.0, b"held");
    assert_eq!(read_some(&mut b, 3, short * 5).await.0, b"new");

    // Refuse: new connections are reset, open ones keep working.
    proxy.set_mode(Mode::Refuse);
    // The reset may land before `connect` returns, or on the first read.
    if let Ok(mut c) = connect().await {
        let _ = c.write_all(b"no").await;
        assert!(read_some(&mut c, 2, short * 5).await.1, "reset");
    }
    a.write_all(b"still").await.unwrap();
    assert_eq!(read_some(&mut a, 5, short * 5).await.0, b"still");
    proxy.set_mode(Mode::PassThrough);
    assert_eq!(proxy.stats().refused, 1);

    // Cut all: every open connection is reset.
    assert_eq!(proxy.cut_all(), 2);
    assert!(read_some(&mut a, 1, short * 5).await.1);
    assert!(read_some(&mut b, 1, short * 5).await.1);

    // Cut after 3 bytes: the server gets 3, the client is reset.
    let before = received.load(Ordering::SeqCst);
    proxy.cut_after_bytes(3, 1);
    let mut d = connect().await.unwrap();
    d.write_all(b"abcdef").await.unwrap();
    let (got, closed) = read_some(&mut d, 6, short * 5).await;
    assert!(closed && got.len() <= 3, "{got:?}");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(received.load(Ordering::SeqCst) - before, 3);

    // Cut after a marker: the chunk reaches the server, its answer never comes back.
    let before = received.load(Ordering::SeqCst);
    proxy.cut_after_marker("MARK", 1);
    let mut e = connect().await.unwrap();
    e.write_all(b"ok").await.unwrap();
    assert_eq!(read_some(&mut e, 2, short * 5).await.0, b"ok");
    e.write_all(b"xxMARKyy").await.unwrap();
    let (got, closed) = read_some(&mut e, 8, short * 10).await;
    assert!(closed && got.is_empty(), "{got:?}");
    assert_eq!(received.load(Ordering::SeqCst) - before, 2 + 8);
    // Armed once: the next connection passes.
    let mut f = connect().await.unwrap();
    f.write_all(b"MARK").await.unwrap();
    assert_eq!(read_some(&mut f, 4, short * 5).await.0, b"MARK");
    let stats = proxy.stats();
    assert_eq!(stats.cuts, 4, "{stats:?}");
    eprintln!("proxy self-test: {stats:?}");
}
