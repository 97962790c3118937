//! `DEPLOYHOOK_TRUSTED_PROXIES`: the reverse proxies whose `X-Forwarded-For` header is
//! believed. Behind a proxy every connection comes from the proxy's address, so without it
//! a limit per client address (wrong tokens, `web::guesses`) would be one limit for
//! everyone; believing the header from anyone else would let a client pick its address.

use std::net::IpAddr;

/// The most networks the setting may list: it is read on every request that guesses.
const MAX_PROXIES: usize = 64;

/// Addresses and networks (`10.0.0.0/8`, `::1`), IPv4-mapped IPv6 addresses counted as
/// IPv4. Empty: no proxy is trusted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Network>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Network {
    address: IpAddr,
    prefix: u8,
}

impl TrustedProxies {
    /// Parses the setting's entries (already split at commas); blank ones are skipped.
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut networks = Vec::new();
        for entry in entries.into_iter().map(str::trim).filter(|e| !e.is_empty()) {
            networks.push(network(entry)?);
        }
        if networks.len() > MAX_PROXIES {
            return Err(format!(
                "{} networks listed, at most {MAX_PROXIES}: list the proxies' networks \
                 (10.0.0.0/8), not each address",
                networks.len()
            ));
        }
        Ok(Self(networks))
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `address` is one of the proxies.
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        self.0.iter().any(|n| n.contains(address))
    }
}

impl Network {
    fn contains(self, address: IpAddr) -> bool {
        match (self.address, address) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                masked(u128::from(u32::from(net)), self.prefix, 32)
                    == masked(u128::from(u32::from(a)), self.prefix, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                masked(u128::from(net), self.prefix, 128) == masked(u128::from(a), self.prefix, 128)
            }
            _ => false,
        }
    }
}

/// The top `prefix` bits of a `bits`-bit address.
fn masked(address: u128, prefix: u8, bits: u8) -> u128 {
    if prefix == 0 {
        return 0;
    }
    address >> (bits - prefix)
}

/// `ADDRESS` or `ADDRESS/PREFIX`.
fn network(entry: &str) -> Result<Network, String> {
    let shape = "write an address (10.0.0.5, ::1) or a network (10.0.0.0/8, fd00::/8)";
    let (address, prefix) = match entry.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (entry, None),
    };
    let address: IpAddr = address
        .parse()
        .map_err(|_| format!("{entry:?} is not an IP address: {shape}"))?;
    let address = address.to_canonical();
    let bits = if address.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => bits,
        Some(text) => match text.parse::<u8>() {
            Ok(prefix) if prefix <= bits => prefix,
            _ => {
                return Err(format!(
                    "{entry:?}: the prefix must be 0 to {bits}: {shape}"
                ));
            }
        },
    };
    Ok(Network { address, prefix })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn addresses_and_networks_match_what_they_cover_and_nothing_else() {
        let trusted = TrustedProxies::parse(["10.0.0.0/8", " 192.0.2.7 ", "", "fd00::/8"]).unwrap();
        for inside in ["10.1.2.3", "192.0.2.7", "::ffff:10.9.9.9", "fd12::1"] {
            assert!(trusted.contains(ip(inside)), "{inside}");
        }
        for outside in ["11.0.0.1", "192.0.2.8", "fe80::1", "::1"] {
            assert!(!trusted.contains(ip(outside)), "{outside}");
        }
        assert!(
            TrustedProxies::parse(["0.0.0.0/0"])
                .unwrap()
                .contains(ip("8.8.8.8"))
        );
        assert!(TrustedProxies::default().is_empty());
    }

    #[test]
    fn a_malformed_entry_is_refused_saying_what_to_write() {
        for bad in ["10.0.0.0/33", "proxy.internal", "10.0.0.0/x", "::1/129"] {
            let err = TrustedProxies::parse([bad]).unwrap_err();
            assert!(err.contains("write an address"), "{bad}: {err}");
        }
        let many: Vec<String> = (0..65).map(|i| format!("10.0.0.{i}")).collect();
        let err = TrustedProxies::parse(many.iter().map(String::as_str)).unwrap_err();
        assert!(err.contains("at most 64"), "{err}");
    }
}
