//! Who is asking: the client address rate limits count by. The TCP peer, unless the
//! peer is a trusted proxy (TRUSTED_PROXIES); then the right-most `X-Forwarded-For`
//! entry that is not itself a trusted proxy, because every proxy appends the address it
//! saw and only entries added by trusted proxies can be believed.

use std::net::IpAddr;

use actix_web::HttpRequest;
use ipnet::IpNet;

pub fn address(req: &HttpRequest, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    if !is_trusted(peer, trusted) {
        return Some(peer);
    }
    let mut hops: Vec<IpAddr> = Vec::new();
    for header in req.headers().get_all("x-forwarded-for") {
        let Ok(text) = header.to_str() else {
            return Some(peer);
        };
        for entry in text.split(',') {
            match entry.trim().parse::<IpAddr>() {
                Ok(ip) => hops.push(ip),
                // Garbage in the chain: believe nothing beyond the proxy itself.
                Err(_) => return Some(peer),
            }
        }
    }
    Some(
        hops.iter()
            .rev()
            .find(|ip| !is_trusted(**ip, trusted))
            .or(hops.first())
            .copied()
            .unwrap_or(peer),
    )
}

fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    trusted.iter().any(|net| net.contains(&ip))
}

/// TRUSTED_PROXIES: comma-separated addresses or CIDRs.
pub fn parse_trusted(text: &str) -> Result<Vec<IpNet>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("{s:?} is neither an address nor a CIDR"))
        })
        .collect()
}

/// RATE_LIMIT_ORDERS: counts a new order for this client, or refuses it (429, nothing
/// made). Per instance, in memory.
pub fn admit_order(
    state: &crate::state::AppState,
    req: &HttpRequest,
) -> Result<(), crate::error::AppError> {
    let Some(client) = address(req, &state.config.trusted_proxies) else {
        return Ok(());
    };
    state.orders_per_client.admit(&client).map_err(|wait| {
        metrics::counter!("rate_limited_total", "limit" => "orders").increment(1);
        crate::error::AppError::RateLimited {
            code: "rate_limited",
            message: "too many new orders from this address; wait and try again".into(),
            retry_after_secs: wait.as_secs() + 1,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn req(peer: &str, xff: &[&str]) -> HttpRequest {
        let mut r = TestRequest::default().peer_addr(format!("{peer}:5000").parse().unwrap());
        for h in xff {
            r = r.append_header(("X-Forwarded-For", *h));
        }
        r.to_http_request()
    }

    #[test]
    fn the_client_is_the_peer_unless_a_trusted_proxy_forwards_it() {
        let trusted = parse_trusted("10.0.0.0/8, 192.168.1.7").unwrap();
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        // An untrusted peer's header is ignored.
        assert_eq!(
            address(&req("203.0.113.9", &["1.2.3.4"]), &trusted),
            ip("203.0.113.9")
        );
        // Through a trusted proxy: the right-most untrusted entry.
        assert_eq!(
            address(&req("10.1.2.3", &["1.2.3.4, 198.51.100.2"]), &trusted),
            ip("198.51.100.2")
        );
        assert_eq!(
            address(
                &req("10.1.2.3", &["1.2.3.4", "198.51.100.2, 192.168.1.7"]),
                &trusted
            ),
            ip("198.51.100.2")
        );
        // A forged left part cannot hide the real client.
        assert_eq!(
            address(&req("10.1.2.3", &["6.6.6.6, 198.51.100.2"]), &trusted),
            ip("198.51.100.2")
        );
        // No header, or garbage: the proxy itself.
        assert_eq!(address(&req("10.1.2.3", &[]), &trusted), ip("10.1.2.3"));
        assert_eq!(
            address(&req("10.1.2.3", &["nonsense"]), &trusted),
            ip("10.1.2.3")
        );
        assert!(parse_trusted("10.0.0.0/33").is_err());
    }
}
