//! Connection limits against a real socket: a head that trickles in, an idle keep-alive
//! connection, more clients than `server.max_connections`, a half-sent request at shutdown, and
//! what hyper refuses before the router.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use statekeeper::{
    Server,
    config::{BackendMode, Settings},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::oneshot,
    task::JoinHandle,
};

use crate::common::settings;

/// The service with a stop switch and the handle of its serving task.
async fn serve(settings: Settings) -> (SocketAddr, oneshot::Sender<()>, JoinHandle<()>) {
    let server = Server::bind(settings).await.unwrap();
    let address = server.local_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    (address, stop, serving)
}

fn limits(header_read_timeout_ms: u64, max_connections: usize) -> Settings {
    let mut settings = settings(BackendMode::Memory, None);
    settings.server.header_read_timeout_ms = header_read_timeout_ms;
    settings.server.max_connections = max_connections;
    // Streams take at most half the connections.
    settings.topics.max_streams = (max_connections / 2).max(1);
    settings.topics.max_streams_per_tenant = settings.topics.max_streams;
    settings.server.shutdown_grace_ms = 5_000;
    settings
}

/// Reads until the peer closes; returns what was read, or `None` if it stayed open `within`.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(seen),
            Ok(Ok(n)) => seen.extend_from_slice(&buffer[..n]),
        }
    }
}

/// Reads one response head (up to the blank line) within `within`.
/// A connection to `address` that has sent `bytes`.
async fn sent(address: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    stream
}

async fn read_head(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    let deadline = Instant::now() + within;
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        let left = deadline.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Ok(Ok(n)) if n > 0 => seen.extend_from_slice(&buffer[..n]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&seen).to_string())
}

const LIVE: &[u8] = b"GET /health/live HTTP/1.1\r\nhost: x\r\n\r\n";

#[tokio::test]
async fn a_head_sent_a_byte_at_a_time_is_cut_off() {
    let (address, _stop, _serving) = serve(limits(300, 100)).await;
    let mut stream = TcpStream::connect(address).await.unwrap();
    let started = Instant::now();
    let trickle = async {
        for byte in b"GET /health/live HTTP/1.1\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
            if stream.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(3), trickle).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the connection stayed open to the slow client for {:?}",
        started.elapsed()
    );
    assert!(
        read_until_closed(&mut stream, Duration::from_secs(1))
            .await
            .is_some()
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let (address, _stop, _serving) = serve(limits(300, 100)).await;
    let mut stream = sent(address, LIVE).await;
    let head = read_head(&mut stream, Duration::from_secs(2))
        .await
        .unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let started = Instant::now();
    assert!(
        read_until_closed(&mut stream, Duration::from_secs(3))
            .await
            .is_some(),
        "the idle connection was kept for 3 s"
    );
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn connections_past_the_limit_wait_for_a_free_slot() {
    let (address, _stop, _serving) = serve(limits(10_000, 2)).await;
    let first = TcpStream::connect(address).await.unwrap();
    let mut second = sent(address, LIVE).await;
    assert!(
        read_head(&mut second, Duration::from_secs(2))
            .await
            .is_some()
    );
    let mut third = sent(address, LIVE).await;
    assert!(
        read_head(&mut third, Duration::from_millis(500))
            .await
            .is_none(),
        "a third connection was served while two were open"
    );
    drop(first);
    let head = read_head(&mut third, Duration::from_secs(2)).await;
    assert!(
        head.is_some_and(|h| h.starts_with("HTTP/1.1 200")),
        "served once a slot was free"
    );
}

#[tokio::test]
async fn a_half_sent_request_does_not_hold_shutdown() {
    let (address, stop, serving) = serve(limits(10_000, 100)).await;
    let _half_sent = sent(address, b"GET /health/live HTTP/1.1\r\nhost").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(2), serving)
        .await
        .expect("shutdown did not wait out the 5 s grace period")
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn shutdown_finishes_a_request_in_flight() {
    let mut settings = limits(10_000, 100);
    settings.limits.max_body_bytes = 1 << 20;
    let (address, stop, serving) = serve(settings).await;
    // A whole head, then the body slowly: a request being served when shutdown starts.
    let mut stream = sent(address, b"PUT /v1/cache/s/k HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 3\r\n\r\n1").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stream.write_all(b"23").await.unwrap();
    let head = read_head(&mut stream, Duration::from_secs(2))
        .await
        .unwrap();
    assert!(head.starts_with("HTTP/1.1 204"), "{head}");
    tokio::time::timeout(Duration::from_secs(2), serving)
        .await
        .unwrap()
        .unwrap();
}

/// What reaches the router gets the house format; what hyper refuses itself (a head larger
/// than its buffer) is a bare status, as the README says.
#[tokio::test]
async fn rejections_before_and_at_the_router() {
    let (address, _stop, _serving) = serve(limits(10_000, 100)).await;
    let mut stream = sent(
        address,
        b"GET /v1/cache/%FF%FE/k HTTP/1.1\r\nhost: x\r\n\r\n",
    )
    .await;
    let head = read_head(&mut stream, Duration::from_secs(2))
        .await
        .unwrap();
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    assert!(
        head.contains("application/problem+json") && head.contains("x-request-id"),
        "{head}"
    );

    let mut stream = TcpStream::connect(address).await.unwrap();
    let huge = format!(
        "GET /health/live HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(600_000)
    );
    let _ = stream.write_all(huge.as_bytes()).await;
    let answer = read_until_closed(&mut stream, Duration::from_secs(2))
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
}

/// An error answered before the request's body arrived (here a malformed `If-Match`) says
/// `Connection: close`, and the connection does close: a client must not send its next request
/// on it. A success on a connection whose body was read keeps it open.
#[tokio::test]
async fn an_error_before_the_body_is_read_says_the_connection_closes() {
    let (address, _stop, _serving) = serve(limits(10_000, 100)).await;
    let head = "PUT /v1/agent-states/t1/relevance HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
                if-match: \"2\", \"3\"\r\ncontent-length: 3\r\n\r\n";
    let mut stream = sent(address, head.as_bytes()).await;
    let answer = read_head(&mut stream, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    assert!(
        read_until_closed(&mut stream, Duration::from_secs(5))
            .await
            .is_some(),
        "the server closes it"
    );

    // The same write with its body, well formed: answered, and the connection stays open for
    // the next request.
    let put = "PUT /v1/cache/ns/k HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
               content-length: 3\r\n\r\n123";
    let mut stream = sent(address, put.as_bytes()).await;
    let answer = read_head(&mut stream, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
    assert!(!answer.to_ascii_lowercase().contains("connection: close"));
    stream.write_all(LIVE).await.unwrap();
    let answer = read_head(&mut stream, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
