//! How limits count clients: by IPv4 address, or by IPv6 /64.
//!
//! One IPv6 subscriber usually holds a whole /64 (often far more), so a limit keyed by the full
//! address is a limit on nothing: every request could come from a fresh one. An IPv4 address
//! written as IPv6 (`::ffff:a.b.c.d`) counts as that IPv4 address.

use std::net::{IpAddr, Ipv6Addr};

/// The key a per-client limit counts `ip` under.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> String {
        client_key(text.parse().unwrap()).to_string()
    }

    #[test]
    fn ipv6_addresses_count_by_their_64_bit_prefix() {
        assert_eq!(key("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::");
        assert_eq!(key("2001:db8:1:2::ffff"), "2001:db8:1:2::");
        assert_ne!(key("2001:db8:1:3::1"), key("2001:db8:1:2::1"));
        assert_eq!(key("::1"), "::");
    }

    #[test]
    fn ipv4_counts_by_address_however_written() {
        assert_eq!(key("203.0.113.7"), "203.0.113.7");
        assert_eq!(key("::ffff:203.0.113.7"), "203.0.113.7");
        assert_ne!(key("203.0.113.8"), key("203.0.113.7"));
    }
}
