//! Parsers for values clap's types do not cover: sizes with units
//! (`--upstream-buffer 4MiB`), Linux CPU lists (`--cpus`), the CPUs this
//! process may run on, and browser origins (`--allowed-origins`, compared
//! with the request's `Origin`).

/// A size in bytes: a plain number (`65536`), or one with a unit, binary
/// (`64KiB`, `4 MiB`, `1GiB`) or decimal (`500kB`, `4MB`, `1GB`).
pub fn size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    let n: usize = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (e.g. 65536, 64KiB, 4MiB)"))?;
    let unit_bytes: usize = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?} (B, KiB, MiB, GiB, kB, MB, GB)"
            ));
        }
    };
    n.checked_mul(unit_bytes)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// A listen address: `ip:port`, `[ipv6]:port`, or `host:port` resolved
/// now (the first address the resolver gives: `localhost` is usually
/// 127.0.0.1 or ::1, whichever /etc/hosts lists first).
pub fn socket_addr(text: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::ToSocketAddrs;
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    if !text.contains(':') {
        return Err(format!(
            "{text:?} has no port (host:port, e.g. 127.0.0.1:8080)"
        ));
    }
    text.to_socket_addrs()
        .map_err(|e| format!("{text:?} does not resolve: {e}"))?
        .next()
        .ok_or_else(|| format!("{text:?} resolves to no address"))
}

/// Parses a Linux CPU list such as `0,2-3`.
pub fn parse_cpu_list(spec: &str) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let num = |s: &str| {
            s.trim()
                .parse::<usize>()
                .map_err(|_| format!("{s:?} is not a CPU number"))
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(format!("range {part:?} is backwards"));
                }
                out.extend(a..=b);
            }
            None => out.push(num(part)?),
        }
    }
    if out.is_empty() {
        return Err("empty CPU list".into());
    }
    let mut sorted = out.clone();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() != out.len() {
        return Err("a CPU is listed twice".into());
    }
    Ok(out)
}

/// CPUs this process may run on (its affinity mask, so containers with a
/// cpuset and `taskset` are honoured).
pub fn online_cpus() -> Vec<usize> {
    match rustix::thread::sched_getaffinity(None) {
        Ok(set) => (0..rustix::thread::CpuSet::MAX_CPU)
            .filter(|c| set.is_set(*c))
            .collect(),
        Err(_) => vec![0],
    }
}

/// `scheme://host[:port]` in lower case, a trailing `/` dropped; `None`
/// for anything else (a path, a query, no scheme).
pub fn normalize_origin(origin: &str) -> Option<String> {
    let (scheme, rest) = origin.trim().split_once("://")?;
    let host = rest.strip_suffix('/').unwrap_or(rest);
    let scheme_ok = !scheme.is_empty()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    let host_ok = !host.is_empty() && !host.contains(['/', '?', '#', '@', ' ']);
    (scheme_ok && host_ok).then(|| format!("{scheme}://{host}").to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_take_host_names() {
        assert_eq!(socket_addr("127.0.0.1:80"), Ok(([127, 0, 0, 1], 80).into()));
        assert_eq!(socket_addr("[::1]:80").map(|a| a.port()), Ok(80));
        let local = socket_addr("localhost:8080").expect("localhost resolves");
        assert!(local.ip().is_loopback() && local.port() == 8080, "{local}");
        assert!(socket_addr("localhost").unwrap_err().contains("no port"));
        assert!(
            socket_addr("no-such-host.invalid:80")
                .unwrap_err()
                .contains("does not resolve")
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(size("65536"), Ok(65536));
        assert_eq!(size("64KiB"), Ok(65536));
        assert_eq!(size(" 4 MiB "), Ok(4 << 20));
        assert_eq!(size("1GiB"), Ok(1 << 30));
        assert_eq!(size("500kB"), Ok(500_000));
        assert_eq!(size("4MB"), Ok(4_000_000));
        assert_eq!(size("12B"), Ok(12));
        assert!(size("4XB").unwrap_err().contains("unknown unit"));
        assert!(size("MiB").is_err());
        assert!(size("-1").is_err());
        assert!(size("99999999999999999999GiB").is_err());
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0,2-3"), Ok(vec![0, 2, 3]));
        assert_eq!(parse_cpu_list(" 1 "), Ok(vec![1]));
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("a").is_err());
        assert!(parse_cpu_list("").is_err());
        assert!(parse_cpu_list("1,0-2").is_err());
    }
}
