//! The network lines of the go-live checklist: which of the appliance's ports listen on a public
//! address (8000 plain HTTP, 5432 PostgreSQL, 6379 Redis must not), read from `/proc/net`, and
//! whether a firewall is active.

use std::net::IpAddr;

use super::{Item, Outcome, fail, item, pass};

/// Listening TCP sockets from /proc (no external tools needed).
fn listening() -> Vec<(IpAddr, u16)> {
    let mut out = Vec::new();
    for (file, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() < 4 || cols[3] != "0A" {
                continue;
            }
            let Some((addr, port)) = cols[1].split_once(':') else {
                continue;
            };
            let Ok(port) = u16::from_str_radix(port, 16) else {
                continue;
            };
            if let Some(ip) = parse_proc_ip(addr, v6) {
                out.push((ip, port));
            }
        }
    }
    out
}

pub(super) fn parse_proc_ip(hex: &str, v6: bool) -> Option<IpAddr> {
    if !v6 {
        let n = u32::from_str_radix(hex, 16).ok()?;
        return Some(IpAddr::from(n.to_le_bytes()));
    }
    if hex.len() != 32 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for (i, chunk) in (0..4).map(|i| &hex[i * 8..i * 8 + 8]).enumerate() {
        let word = u32::from_str_radix(chunk, 16).ok()?;
        bytes[i * 4..i * 4 + 4].copy_from_slice(&word.to_le_bytes());
    }
    Some(IpAddr::from(bytes))
}

pub(super) fn port_items() -> Vec<Item> {
    let sockets = listening();
    [
        (8000u16, "euraflow plain HTTP", "EF__API_HOST=127.0.0.1"),
        (
            5432,
            "PostgreSQL",
            "listen_addresses = 'localhost' in postgresql.conf",
        ),
        (6379, "Redis", "bind 127.0.0.1 ::1 in redis.conf"),
    ]
    .iter()
    .map(|(port, what, fix)| {
        let public: Vec<String> = sockets
            .iter()
            .filter(|(ip, p)| p == port && !crate::config::value::canonical_ip(*ip).is_loopback())
            .map(|(ip, _)| ip.to_string())
            .collect();
        let id = match port {
            8000 => "port_8000_private",
            5432 => "port_5432_private",
            _ => "port_6379_private",
        };
        if public.is_empty() {
            pass(id, format!("{what} ({port}) not on a public address"))
        } else {
            fail(
                id,
                format!("{what} listens on {}:{port}", public.join(", ")),
                *fix,
            )
        }
    })
    .collect()
}

pub(super) fn firewall_item() -> Item {
    let run = |cmd: &str, args: &[&str]| {
        std::process::Command::new(cmd)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            })
    };
    if let Some(s) = run("ufw", &["status"]) {
        return item(
            "firewall",
            Outcome::Info,
            format!("ufw: {s}"),
            Some("allow only 22, 80, 443: ufw allow 22,80,443/tcp && ufw enable".into()),
        );
    }
    if let Some(s) = run("nft", &["list", "tables"]) {
        let tables = if s.is_empty() {
            "no tables".to_owned()
        } else {
            s
        };
        return item(
            "firewall",
            Outcome::Info,
            format!("nftables: {tables}"),
            Some("allow only 22, 80 and 443 from outside".into()),
        );
    }
    item(
        "firewall",
        Outcome::Info,
        "no ufw or nftables found",
        Some("allow only 22, 80 and 443 from outside (the guide uses ufw)".into()),
    )
}
