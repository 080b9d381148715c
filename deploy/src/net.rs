//! IPv4 networks and MAC addresses.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use thiserror::Error;

/// A textual network value could not be parsed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum NetError {
    /// Not `a.b.c.d/len`.
    #[error("{0:?} is not an IPv4 CIDR block (a.b.c.d/len)")]
    BadCidr(String),
    /// Not a contiguous netmask.
    #[error("{0} is not a contiguous netmask")]
    BadNetmask(Ipv4Addr),
    /// Prefix length above 32.
    #[error("prefix length {0} is above 32")]
    BadPrefix(u32),
    /// Not six colon-separated hex octets.
    #[error("{0:?} is not a MAC address (six hex octets separated by ':')")]
    BadMac(String),
    /// Not three colon-separated hex octets.
    #[error("{0:?} is not a MAC prefix (three hex octets separated by ':')")]
    BadMacPrefix(String),
    /// The MAC prefix is multicast or not locally administered.
    #[error("MAC prefix {0}: first octet must have the locally-administered bit (0x02) set and the multicast bit (0x01) clear, e.g. 02:16:3e")]
    NotLocalMac(MacPrefix),
}

/// Netmask for a prefix length (0..=32).
pub fn prefix_to_mask(prefix: u8) -> Ipv4Addr {
    let bits: u32 = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    };
    Ipv4Addr::from(bits)
}

/// Prefix length of a contiguous netmask.
pub fn mask_to_prefix(mask: Ipv4Addr) -> Result<u8, NetError> {
    let bits = u32::from(mask);
    let ones = bits.leading_ones();
    if bits.checked_shl(ones).unwrap_or(0) != 0 {
        return Err(NetError::BadNetmask(mask));
    }
    Ok(ones as u8)
}

/// An IPv4 network: base address (host bits zero) and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Net {
    base: Ipv4Addr,
    prefix: u8,
}

impl Ipv4Net {
    /// The network containing `addr` with `prefix` bits (host bits cleared).
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Self, NetError> {
        if prefix > 32 {
            return Err(NetError::BadPrefix(u32::from(prefix)));
        }
        let mask = u32::from(prefix_to_mask(prefix));
        Ok(Ipv4Net {
            base: Ipv4Addr::from(u32::from(addr) & mask),
            prefix,
        })
    }
    /// First address (network address).
    pub fn base(&self) -> Ipv4Addr {
        self.base
    }
    /// Prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }
    /// Netmask.
    pub fn netmask(&self) -> Ipv4Addr {
        prefix_to_mask(self.prefix)
    }
    /// Number of addresses in the block.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }
    /// Last address (broadcast address).
    pub fn last(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.base) | !u32::from(self.netmask()))
    }
    /// True when `ip` is in the block.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & u32::from(self.netmask()) == u32::from(self.base)
    }
    /// True when the whole of `other` is inside `self`.
    pub fn covers(&self, other: &Ipv4Net) -> bool {
        other.prefix >= self.prefix && self.contains(other.base)
    }
}

impl FromStr for Ipv4Net {
    type Err = NetError;
    fn from_str(s: &str) -> Result<Self, NetError> {
        let bad = || NetError::BadCidr(s.chars().take(64).collect());
        let (a, p) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = a.trim().parse().map_err(|_| bad())?;
        let p = p.trim();
        if p.is_empty() || p.len() > 2 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let prefix: u32 = p.parse().map_err(|_| bad())?;
        if prefix > 32 {
            return Err(bad());
        }
        let net = Ipv4Net::new(addr, prefix as u8)?;
        if net.base != addr {
            // host bits set: accept only exact blocks so that typos are caught
            return Err(bad());
        }
        Ok(net)
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

fn parse_hex_octets<const N: usize>(s: &str) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    let mut parts = s.split(':');
    for slot in out.iter_mut() {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *slot = u8::from_str_radix(p, 16).ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(out)
}

/// A 48-bit Ethernet MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl FromStr for MacAddr {
    type Err = NetError;
    fn from_str(s: &str) -> Result<Self, NetError> {
        parse_hex_octets::<6>(s)
            .map(MacAddr)
            .ok_or_else(|| NetError::BadMac(s.chars().take(64).collect()))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// The first three octets of every MAC a site network hands out; must be locally administered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacPrefix(pub [u8; 3]);

impl MacPrefix {
    /// A MAC address with this prefix and the given last three octets.
    pub fn with_suffix(&self, suffix: [u8; 3]) -> MacAddr {
        let p = self.0;
        MacAddr([p[0], p[1], p[2], suffix[0], suffix[1], suffix[2]])
    }
}

impl FromStr for MacPrefix {
    type Err = NetError;
    fn from_str(s: &str) -> Result<Self, NetError> {
        let p = parse_hex_octets::<3>(s)
            .map(MacPrefix)
            .ok_or_else(|| NetError::BadMacPrefix(s.chars().take(64).collect()))?;
        if p.0[0] & 0x02 == 0 || p.0[0] & 0x01 != 0 {
            return Err(NetError::NotLocalMac(p));
        }
        Ok(p)
    }
}

impl fmt::Display for MacPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}:{:02x}:{:02x}", self.0[0], self.0[1], self.0[2])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr() {
        let n: Ipv4Net = "192.0.2.16/28".parse().unwrap();
        assert_eq!(n.size(), 16);
        assert_eq!(n.last(), Ipv4Addr::new(192, 0, 2, 31));
        assert!(n.contains(Ipv4Addr::new(192, 0, 2, 20)));
        assert!(!n.contains(Ipv4Addr::new(192, 0, 2, 32)));
        assert!("192.0.2.17/28".parse::<Ipv4Net>().is_err());
        assert!("192.0.2.0/33".parse::<Ipv4Net>().is_err());
        assert!("192.0.2.0".parse::<Ipv4Net>().is_err());
        let big: Ipv4Net = "192.0.2.0/24".parse().unwrap();
        assert!(big.covers(&n));
        assert!(!n.covers(&big));
        assert_eq!("0.0.0.0/0".parse::<Ipv4Net>().unwrap().size(), 1 << 32);
    }

    #[test]
    fn masks() {
        assert_eq!(prefix_to_mask(24), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(prefix_to_mask(0), Ipv4Addr::new(0, 0, 0, 0));
        assert_eq!(prefix_to_mask(32), Ipv4Addr::new(255, 255, 255, 255));
        assert_eq!(mask_to_prefix(Ipv4Addr::new(255, 255, 252, 0)).unwrap(), 22);
        assert_eq!(
            mask_to_prefix(Ipv4Addr::new(255, 255, 255, 255)).unwrap(),
            32
        );
        assert!(mask_to_prefix(Ipv4Addr::new(255, 0, 255, 0)).is_err());
    }

    #[test]
    fn macs() {
        let m: MacAddr = "02:16:3E:0a:0b:0c".parse().unwrap();
        assert_eq!(m.to_string(), "02:16:3e:0a:0b:0c");
        assert!("02:16:3e:0a:0b".parse::<MacAddr>().is_err());
        assert!("02:16:3e:0a:0b:0c:0d".parse::<MacAddr>().is_err());
        assert!("02:16:3e".parse::<MacPrefix>().is_ok());
        assert!(matches!(
            "00:16:3e".parse::<MacPrefix>(),
            Err(NetError::NotLocalMac(_))
        ));
        assert!(matches!(
            "03:16:3e".parse::<MacPrefix>(),
            Err(NetError::NotLocalMac(_))
        ));
    }
}
