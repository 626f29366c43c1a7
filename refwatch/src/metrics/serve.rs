//! The `--metrics` endpoint: a minimal HTTP/1.x responder on tokio. `GET
//! /metrics` answers the latest text; anything else 404. A request head is
//! read within [`READ_TIMEOUT`] and [`MAX_REQUEST`] bytes, at most
//! [`MAX_CONNECTIONS`] clients at once: a slow or large client is dropped,
//! never waited for.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Result, anyhow};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
};

use super::CONTENT_TYPE;

/// Largest request head read (request line and headers).
pub const MAX_REQUEST: usize = 8 << 10;

/// Time a client has to send its request head, and then to take the answer.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Clients served at once; more are closed at once.
pub const MAX_CONNECTIONS: usize = 16;

/// The text served: the collector replaces it once a second.
#[derive(Clone, Default)]
pub struct Published(Arc<Mutex<String>>);

impl Published {
    pub fn set(&self, text: String) {
        if let Ok(mut t) = self.0.lock() {
            *t = text;
        }
    }

    pub fn get(&self) -> String {
        self.0.lock().map(|t| t.clone()).unwrap_or_default()
    }
}

/// `--metrics ADDR`: `PORT` (on 127.0.0.1), `IP:PORT` or `[IPv6]:PORT`.
pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    s.parse::<SocketAddr>().map_err(|_| {
        format!("{s:?} is not PORT, IP:PORT or [IPv6]:PORT (e.g. 9464 or 0.0.0.0:9464)")
    })
}

/// Binds the endpoint's address (before anything is attached): the one
/// line a user sees when it is taken or not allowed.
pub fn bind(addr: SocketAddr) -> Result<std::net::TcpListener> {
    let l = std::net::TcpListener::bind(addr)
        .map_err(|e| anyhow!("--metrics {addr}: cannot listen there: {e}"))?;
    l.set_nonblocking(true)
        .map_err(|e| anyhow!("--metrics {addr}: {e}"))?;
    Ok(l)
}

/// Serves `text` on `listener` until the runtime stops.
pub async fn serve(listener: std::net::TcpListener, text: Published) -> Result<()> {
    let listener = TcpListener::from_std(listener)
        .map_err(|e| anyhow!("--metrics: register the listener with tokio: {e}"))?;
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors and the like: wait, do not spin.
                log::warn!("--metrics: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let text = text.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(2 * READ_TIMEOUT, answer(stream, &text)).await;
            drop(permit);
        });
    }
}

async fn answer(mut stream: TcpStream, text: &Published) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let complete = tokio::time::timeout(READ_TIMEOUT, async {
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Ok::<bool, std::io::Error>(false);
            }
            head.extend_from_slice(&buf[..n]);
            if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
                return Ok(true);
            }
            if head.len() >= MAX_REQUEST {
                return Ok(false);
            }
        }
    })
    .await;
    let reply = match complete {
        Ok(Ok(true)) => response(&head, || text.get()),
        Ok(Ok(false)) if head.len() >= MAX_REQUEST => {
            status(431, "Request Header Fields Too Large")
        }
        _ => return Ok(()),
    };
    stream.write_all(&reply).await?;
    stream.shutdown().await?;
    // What the client still sends is read and dropped (bounded): closing
    // with unread bytes would reset the connection before it read the answer.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let mut left = 16 * MAX_REQUEST;
        while left > 0 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
    Ok(())
}

/// The answer to a complete request head.
pub fn response(head: &[u8], text: impl FnOnce() -> String) -> Vec<u8> {
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut words = line.split_ascii_whitespace();
    let (method, target) = (words.next(), words.next());
    let path = target.map(|t| t.split('?').next().unwrap_or(t));
    if method == Some("GET") && path == Some("/metrics") {
        let body = text();
        let mut out = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(body.as_bytes());
        return out;
    }
    status(404, "Not Found")
}

fn status(code: u16, reason: &str) -> Vec<u8> {
    let body = format!("{code} {reason}\n");
    format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
