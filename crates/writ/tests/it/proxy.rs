//! A TCP fault proxy between Writ and a target server (PostgreSQL, slapd, OpenBao): the
//! network faults the connector conformance suite injects, switched by the test at run time.
//! Loopback only; one thread per direction per connection.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

/// What the proxy does with the next connections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forward both ways.
    Pass,
    /// Close every new connection at once: the target is down.
    Refuse,
    /// Forward until the client sends `marker`, then close the connection without forwarding
    /// that request: the target went away in the middle of the apply, before the write.
    Cut(Vec<u8>),
    /// Forward the request carrying `marker` to the target, then drop every answer on that
    /// connection: the write takes effect and the client times out ("timeout, then late
    /// success"). One-shot: later connections pass.
    Mute(Vec<u8>),
    /// Accept every new connection and never answer nor forward: a server that is stopped
    /// (SIGSTOP) or lost behind a firewall that drops packets.
    Stall,
}

pub struct Proxy {
    pub port: u16,
    mode: Arc<Mutex<Mode>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `upstream` (`127.0.0.1:PORT`).
    pub fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mode = Arc::new(Mutex::new(Mode::Pass));
        let stop = Arc::new(AtomicBool::new(false));
        let (upstream, shared, stopping) = (upstream.to_owned(), mode.clone(), stop.clone());
        thread::spawn(move || {
            for client in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let mode = shared.lock().unwrap().clone();
                if mode == Mode::Refuse {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                if mode == Mode::Stall {
                    let stopping = stopping.clone();
                    // Held open (nothing read, nothing sent) until the proxy goes away.
                    thread::spawn(move || {
                        while !stopping.load(Ordering::SeqCst) {
                            thread::sleep(std::time::Duration::from_millis(50));
                        }
                        drop(client);
                    });
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream) else { continue };
                let muted = Arc::new(AtomicBool::new(false));
                let (c2, s2, m2, shared2) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap(), muted.clone(), shared.clone());
                thread::spawn(move || requests(c2, s2, &m2, &shared2));
                thread::spawn(move || answers(server, client, &muted));
            }
        });
        Proxy { port, mode, stop }
    }

    pub fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Client to server, watching for the marker of a `Cut` or `Mute` (across reads: the marker
/// may be split).
fn requests(mut client: TcpStream, mut server: TcpStream, muted: &AtomicBool, shared: &Mutex<Mode>) {
    let mut buffer = [0u8; 16 * 1024];
    let mut tail: Vec<u8> = Vec::new();
    loop {
        let n = match client.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &buffer[..n];
        let mode = shared.lock().unwrap().clone();
        if let Mode::Cut(marker) | Mode::Mute(marker) = &mode {
            let mut seen = tail.clone();
            seen.extend_from_slice(chunk);
            if seen.windows(marker.len()).any(|w| w == marker.as_slice()) {
                if matches!(mode, Mode::Cut(_)) {
                    let _ = client.shutdown(Shutdown::Both);
                    let _ = server.shutdown(Shutdown::Both);
                    return;
                }
                // Muted before the request goes out, so no answer to it can slip through.
                muted.store(true, Ordering::SeqCst);
                *shared.lock().unwrap() = Mode::Pass;
            }
            let keep = marker.len().saturating_sub(1).min(seen.len());
            tail = seen[seen.len() - keep..].to_vec();
        }
        if server.write_all(chunk).is_err() {
            break;
        }
    }
    let _ = server.shutdown(Shutdown::Write);
}

/// Server to client, unless muted.
fn answers(mut server: TcpStream, mut client: TcpStream, muted: &AtomicBool) {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        let n = match server.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if muted.load(Ordering::SeqCst) {
            continue;
        }
        if client.write_all(&buffer[..n]).is_err() {
            break;
        }
    }
    if !muted.load(Ordering::SeqCst) {
        let _ = client.shutdown(Shutdown::Write);
    }
}
