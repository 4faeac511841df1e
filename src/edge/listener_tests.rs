//! The accept loop and the upgrade path, in-process: a glommio executor
//! runs `serve` on a loopback listener with raw TCP clients against it, or
//! the loop itself over a scripted source of accepts. There is no ws-api
//! node, so an upgrade that gets as far as `Connect` is refused as ws-api
//! unavailable, as it is while every node is down.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt, future};
use glommio::channels::local_channel;
use glommio::net::TcpStream;

use crate::codec::sid::Instance;
use crate::config::{self, Config};
use crate::edge::listener::{accept_loop, bind, connection, serve};
use crate::edge::upgrade::Accept;
use crate::metrics::Reject;
use crate::ratelimit::TokenBucket;
use crate::routing::sessions::SessionHandle;
use crate::shard::ws_config;
use crate::testing::{context, run, soon, test_config, until};

/// Core 0's accept path with no limits but `config`'s.
fn accept(config: Config) -> Accept {
    Accept {
        id: 0,
        instance: Instance::new("test:0", 1),
        ws_config: ws_config(&config),
        session: context(config),
        draining: Rc::new(Cell::new(false)),
        connect_limit: None,
        per_ip_limit: None,
        tls: None,
    }
}

/// Binds a loopback listener and runs the accept loop on it.
fn serving(core: &Rc<Accept>) -> SocketAddr {
    let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    glommio::spawn_local(serve(Rc::clone(core), listener)).detach();
    addr
}

/// Sends `request`, then reads until the gateway closes (it does after a refusal).
async fn exchange(addr: SocketAddr, request: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    soon("the response", tcp.read_to_end(&mut response))
        .await
        .unwrap();
    String::from_utf8(response).unwrap()
}

/// A valid upgrade request; `query` carries the token, if any.
fn upgrade(query: &str) -> String {
    format!(
        "GET /gateway/ws{query} HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
}

/// The status line and the body (the reason) of a refusal.
fn refusal(response: &str) -> (&str, &str) {
    let status = response.lines().next().unwrap_or_default();
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.trim_end())
}

/// While accepts fail, the loop waits 5 ms, then twice as long each time;
/// a connection starts it over. Timers never fire early, so the waits are
/// checked from below; a loop that did not back off (or did not start over)
/// fails them.
#[test]
fn failed_accepts_back_off_doubling_and_a_success_starts_over() {
    run(async {
        let fail = || Err(io::Error::from(io::ErrorKind::Other));
        // Seven failures (5 … 320 ms of waiting), one connection, two failures.
        let script: VecDeque<io::Result<u32>> = (0..7)
            .map(|_| fail())
            .chain([Ok(7)])
            .chain((0..2).map(|_| fail()))
            .collect();
        let script = RefCell::new(script);
        let calls = RefCell::new(Vec::new());
        let started = RefCell::new(Vec::new());
        let (spent, spent_rx) = local_channel::new_bounded(1);
        let accepts = accept_loop(
            0,
            || {
                calls.borrow_mut().push(Instant::now());
                let next = script.borrow_mut().pop_front();
                if next.is_none() {
                    let _ = spent.try_send(());
                }
                async move {
                    match next {
                        Some(result) => result,
                        None => future::pending().await,
                    }
                }
            },
            |conn| started.borrow_mut().push(conn),
        );
        soon(
            "the scripted accepts",
            future::or(accepts, async {
                spent_rx.recv().await;
            }),
        )
        .await;

        assert_eq!(*started.borrow(), [7], "the one connection was started");
        let calls = calls.borrow();
        assert_eq!(calls.len(), 11, "every scripted accept, then one more");
        let waited: Vec<Duration> = calls.windows(2).map(|w| w[1] - w[0]).collect();
        let ms = Duration::from_millis;
        for (i, least) in [5, 10, 20, 40, 80, 160, 320].into_iter().enumerate() {
            assert!(waited[i] >= ms(least), "wait {i}: {:?}", waited[i]);
        }
        // After the connection the next accept is at once, and the next
        // failure waits 5 ms again, not 640.
        assert!(waited[7] < ms(320), "after a connection: {:?}", waited[7]);
        assert!(waited[8] >= ms(5), "{:?}", waited[8]);
        assert!(
            waited[8] < ms(320),
            "the backoff started over: {:?}",
            waited[8]
        );
        assert!(waited[9] >= ms(10), "{:?}", waited[9]);
    });
}

/// A client that leaves before its request, and one that sends garbage,
/// end their own tasks; the loop goes on accepting and answering.
#[test]
fn a_failed_connection_does_not_stop_the_accept_loop() {
    run(async {
        let core = Rc::new(accept(test_config()));
        let addr = serving(&core);
        let counters = Arc::clone(&core.session.counters);

        drop(TcpStream::connect(addr).await.unwrap());
        let garbage = exchange(addr, "hello\r\n\r\n").await;
        assert!(garbage.starts_with("HTTP/1.1 400 "), "{garbage}");
        let no_token = exchange(addr, &upgrade("")).await;
        assert_eq!(
            refusal(&no_token),
            ("HTTP/1.1 401 Unauthorized", "missing token")
        );
        assert_eq!(counters.rejects(Reject::BadRequest), 1);
        assert_eq!(counters.rejects(Reject::MissingToken), 1);
    });
}

/// The checks an upgrade passes before it takes a slot, each answered with
/// its status and counted under its reason: the per-core connection limit,
/// the connect rate, shutdown.
#[test]
fn upgrades_over_a_limit_are_refused_and_counted() {
    run(async {
        let config = config::load([
            "ws-gateway",
            "--upstream",
            "127.0.0.1:9",
            "--max-connections-per-core",
            "1",
        ])
        .unwrap();
        // Two upgrades pass the connect rate, and no more for the length of
        // the test (it is checked before the per-core limit).
        let core = Rc::new(Accept {
            connect_limit: Some(RefCell::new(TokenBucket::new(0.001, 2.0))),
            ..accept(config)
        });
        let addr = serving(&core);
        let ctx = Rc::clone(&core.session);

        // The core is full: one session holds its only place.
        let (holder, _rx) = SessionHandle::new(4, 0, Arc::clone(&ctx.counters));
        let slot = ctx.sessions.insert(holder).unwrap();
        let full = exchange(addr, &upgrade("?token=1")).await;
        assert_eq!(
            refusal(&full),
            ("HTTP/1.1 503 Service Unavailable", "too many connections")
        );
        assert_eq!(ctx.counters.rejects(Reject::Overloaded), 1);
        ctx.sessions.remove(slot);

        // The place is free: this one reaches Connect (and ws-api is down).
        let down = exchange(addr, &upgrade("?token=1")).await;
        assert!(refusal(&down).1.starts_with("ws-api unavailable"), "{down}");
        assert_eq!(ctx.counters.rejects(Reject::UpstreamUnavailable), 1);

        // Both tokens of the connect rate are spent.
        let limited = exchange(addr, &upgrade("?token=1")).await;
        assert_eq!(
            refusal(&limited),
            (
                "HTTP/1.1 503 Service Unavailable",
                "connection rate limit: retry later"
            )
        );
        assert_eq!(ctx.counters.rejects(Reject::RateLimited), 1);

        core.draining.set(true);
        let draining = exchange(addr, &upgrade("?token=1")).await;
        assert_eq!(
            refusal(&draining),
            ("HTTP/1.1 503 Service Unavailable", "gateway shutting down")
        );
        assert_eq!(ctx.counters.rejects(Reject::Overloaded), 2);
    });
}

/// An upgrade refused after it took a slot (here: `Connect` fails) gives
/// the slot back and leaves nothing counted online.
#[test]
fn a_refused_connect_gives_back_the_slot() {
    run(async {
        let core = Rc::new(accept(test_config()));
        let addr = serving(&core);
        let ctx = Rc::clone(&core.session);
        let down = exchange(addr, &upgrade("?token=1")).await;
        assert!(down.starts_with("HTTP/1.1 503 "), "{down}");
        assert_eq!(ctx.counters.rejects(Reject::UpstreamUnavailable), 1);
        // The client has its answer before the upgrade's task has dropped
        // its claim.
        until("the slot given back", || ctx.sessions.is_empty()).await;
        assert_eq!(ctx.counters.online.get(), 0);
        assert_eq!(ctx.counters.handshakes.get(), 0);
    });
}

/// Every connection's task holds this future for the connection's life, so
/// an unboxed await of something large in it (an upgrade step, a resume,
/// an `async fn` keeping its arguments twice) costs every idle connection
/// that much: it did, 952 bytes each, until this test. 1,272 bytes today,
/// debug and release (`-Zprint-type-sizes` shows what is in it).
#[test]
fn a_connection_task_stays_small() {
    fn future_size<A, B, F: Future>(_: impl FnOnce(A, B) -> F) -> usize {
        std::mem::size_of::<F>()
    }
    let size = future_size(connection);
    assert!(
        size <= 1400,
        "a connection's task is {size} bytes: box what it awaits once"
    );
}
