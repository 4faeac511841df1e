//! A real `redis-server` on a loopback port, killed on drop, and a
//! synchronous client to look at what ws-api stored. Shared by the
//! gateway's tests (through `tests/common`) and ws-api's (included by path).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long redis-server may take to answer its first PING.
const START_DEADLINE: Duration = Duration::from_secs(15);

pub struct RedisServer {
    child: Child,
    pub port: u16,
}

impl RedisServer {
    /// Starts `redis-server` on a free port.
    pub fn start() -> RedisServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|probe| probe.local_addr())
            .expect("free port")
            .port();
        RedisServer::start_on(port)
    }

    /// Starts `redis-server` on `port`, without persistence, and waits until it answers PING.
    pub fn start_on(port: u16) -> RedisServer {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): `make deps` installs it (apt redis-server)"
                )
            });
        let mut server = RedisServer { child, port };
        let until = Instant::now() + START_DEADLINE;
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("redis-server on port {port} exited at start: {status}");
            }
            let pong = server
                .client()
                .get_connection_with_timeout(Duration::from_secs(1))
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            if pong.is_ok() {
                return server;
            }
            assert!(Instant::now() < until, "redis-server never answered PING");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// redis-server's pid (to SIGSTOP it, say).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).expect("redis url")
    }

    /// Runs one command and returns its reply.
    pub fn query<T: redis::FromRedisValue>(&self, cmd: &mut redis::Cmd) -> T {
        let mut conn = self.client().get_connection().expect("redis connection");
        cmd.query(&mut conn).expect("redis command")
    }

    /// Keys matching `pattern` (KEYS is fine on a test server).
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        self.query(redis::cmd("KEYS").arg(pattern))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
