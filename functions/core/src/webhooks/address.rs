//! Where a delivery may go. On AWS a webhook URL is `https` to a public address: never a
//! private, link-local (the instance metadata service lives at 169.254.169.254), loopback or
//! otherwise reserved one, so a webhook cannot be turned into a probe of the deployment's own
//! network. Literal addresses are checked when the webhook is created and again at delivery;
//! names are checked at delivery, on every address they resolve to (the delivery adapter
//! connects only to addresses that passed). Locally (`make run`) `http` to loopback is allowed,
//! so a receiver on the developer's machine works.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::error::ApiError;

/// The variable the local runner sets to allow `http` to loopback receivers.
pub const ALLOW_LOOPBACK_ENV: &str = "LOYALTY_WEBHOOKS_ALLOW_LOOPBACK_HTTP";
/// Longer URLs are refused (browsers' and proxies' common limit).
pub const MAX_URL_LENGTH: usize = 2048;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UrlPolicy {
    /// `http://` to a loopback address is allowed (the local runner only).
    pub allow_loopback_http: bool,
}

impl UrlPolicy {
    /// What AWS deployments enforce.
    pub const PUBLIC_HTTPS: UrlPolicy = UrlPolicy {
        allow_loopback_http: false,
    };
    /// What the local runner allows.
    pub const LOCAL: UrlPolicy = UrlPolicy {
        allow_loopback_http: true,
    };

    /// The policy a function runs with: [`UrlPolicy::LOCAL`] only when [`ALLOW_LOOPBACK_ENV`]
    /// is `true`.
    pub fn from_env_value(value: Option<&str>) -> UrlPolicy {
        match value.map(str::trim) {
            Some("true") => UrlPolicy::LOCAL,
            _ => UrlPolicy::PUBLIC_HTTPS,
        }
    }

    /// Whether a delivery may connect to `address`.
    pub fn allows(self, address: IpAddr) -> bool {
        if is_loopback(address) {
            return self.allow_loopback_http;
        }
        is_public(address)
    }
}

fn is_loopback(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// A globally routable unicast address.
fn is_public(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(v4: Ipv4Addr) -> bool {
    let [a, b, c, _] = v4.octets();
    !(v4.is_unspecified()
        || v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || v4.is_broadcast()
        || v4.is_multicast()
        || v4.is_documentation()
        || a == 0
        // Carrier-grade NAT, the IETF protocol block, benchmarking, reserved (RFC 6890).
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240)
}

fn is_public_v6(v6: Ipv6Addr) -> bool {
    if let Some(v4) = v6.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let segments = v6.segments();
    // NAT64 (64:ff9b::/96) reaches the IPv4 address in its last 32 bits.
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [.., high, low] = segments;
        return is_public_v4(Ipv4Addr::from((u32::from(high) << 16) | u32::from(low)));
    }
    !(v6.is_unspecified()
        || v6.is_loopback()
        || v6.is_multicast()
        || (segments[0] & 0xfe00) == 0xfc00 // unique local
        || (segments[0] & 0xffc0) == 0xfe80 // link-local
        || (segments[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (segments[0] == 0x2001 && segments[1] == 0x0db8) // documentation
        || segments[..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible and other reserved
}

/// A webhook URL as the policy allows it; `details.field` is `url` when it does not.
pub fn parse_url(text: &str, policy: UrlPolicy) -> Result<url::Url, ApiError> {
    let refuse = |why: &str| ApiError::invalid("url", format!("url {why}"));
    if text.len() > MAX_URL_LENGTH {
        return Err(refuse(&format!(
            "is longer than {MAX_URL_LENGTH} characters"
        )));
    }
    let url = url::Url::parse(text).map_err(|e| refuse(&format!("does not parse: {e}")))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(refuse("may not carry credentials"));
    }
    let loopback = match url.host() {
        None => return Err(refuse("has no host")),
        Some(url::Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
        Some(url::Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if name == "localhost" || name.ends_with(".localhost") {
                Some(IpAddr::V4(Ipv4Addr::LOCALHOST))
            } else {
                None
            }
        }
    }
    .map(|address| {
        if policy.allows(address) {
            Ok(is_loopback(address))
        } else {
            Err(refuse(
                "points at a private, link-local, loopback or reserved address",
            ))
        }
    })
    .transpose()?
    .unwrap_or(false);
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback && policy.allow_loopback_http => Ok(url),
        "http" => Err(refuse("must use https")),
        other => Err(refuse(&format!("must use https, not {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_aws_only_https_to_public_hosts_is_accepted() {
        for good in [
            "https://hooks.example.com/loyalty",
            "https://93.184.216.34:8443/x?y=1",
            "https://[2606:2800:220:1:248:1893:25c8:1946]/",
        ] {
            assert!(parse_url(good, UrlPolicy::PUBLIC_HTTPS).is_ok(), "{good}");
        }
        for bad in [
            "http://hooks.example.com/loyalty",
            "ftp://hooks.example.com/",
            "https://user:pw@hooks.example.com/",
            "https://10.0.0.8/",
            "https://172.16.4.1/",
            "https://192.168.1.1/",
            "https://169.254.169.254/latest/meta-data/",
            "https://127.0.0.1/",
            "https://0x7f.1/",
            "https://localhost/",
            "https://api.localhost/",
            "https://0.0.0.0/",
            "https://100.64.0.1/",
            "https://[::1]/",
            "https://[fe80::1]/",
            "https://[fd00::1]/",
            "https://[::ffff:10.0.0.1]/",
            "https://[64:ff9b::a9fe:a9fe]/",
            "not a url",
        ] {
            let error = parse_url(bad, UrlPolicy::PUBLIC_HTTPS).expect_err(bad);
            assert_eq!(error.details["field"], "url", "{bad}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LENGTH));
        assert!(parse_url(&long, UrlPolicy::PUBLIC_HTTPS).is_err());
    }

    #[test]
    fn locally_http_to_loopback_is_allowed_but_private_networks_still_are_not() {
        for good in [
            "http://127.0.0.1:18500/hooks",
            "http://localhost:8080/",
            "http://[::1]:9000/",
        ] {
            assert!(parse_url(good, UrlPolicy::LOCAL).is_ok(), "{good}");
        }
        for bad in [
            "http://hooks.example.com/",
            "http://10.0.0.8/",
            "https://169.254.169.254/",
        ] {
            assert!(parse_url(bad, UrlPolicy::LOCAL).is_err(), "{bad}");
        }
    }

    #[test]
    fn resolved_addresses_are_judged_by_the_same_rules() {
        let aws = UrlPolicy::PUBLIC_HTTPS;
        assert!(aws.allows("93.184.216.34".parse().expect("ip")));
        assert!(!aws.allows("10.1.2.3".parse().expect("ip")));
        assert!(!aws.allows("169.254.169.254".parse().expect("ip")));
        assert!(!aws.allows("127.0.0.1".parse().expect("ip")));
        assert!(UrlPolicy::LOCAL.allows("127.0.0.1".parse().expect("ip")));
        assert!(!UrlPolicy::LOCAL.allows("192.168.0.1".parse().expect("ip")));
        assert_eq!(UrlPolicy::from_env_value(Some("true")), UrlPolicy::LOCAL);
        assert_eq!(
            UrlPolicy::from_env_value(Some("1")),
            UrlPolicy::PUBLIC_HTTPS
        );
        assert_eq!(UrlPolicy::from_env_value(None), UrlPolicy::PUBLIC_HTTPS);
    }
}
