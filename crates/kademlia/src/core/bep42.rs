//! BEP 42 (DHT security extension): a node id is tied to the node's IPv4 address.
//!
//! The first 21 bits of the id must equal the first 21 bits of
//! `crc32c((ip & 0x030f3fff) | (r << 29))`, where `r` is the id's last byte (its low 3 bits
//! enter the checksum). Local and private addresses are exempt: a node behind them cannot
//! know the address others see.

use std::net::Ipv4Addr;

use servent_core::Id;

/// CRC-32C (Castagnoli), bitwise; four bytes per id check, so a table is not worth it.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0x82f6_3b78 & mask);
        }
    }
    !crc
}

fn prefix(ip: Ipv4Addr, r: u8) -> u32 {
    let masked = (u32::from(ip) & 0x030f_3fff) | (u32::from(r & 7) << 29);
    crc32c(&masked.to_be_bytes())
}

/// Whether BEP 42 exempts this address (loopback, private, link-local, unspecified…).
pub fn is_exempt(ip: Ipv4Addr) -> bool {
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.octets()[0] == 100 && (ip.octets()[1] & 0xc0) == 64 // 100.64/10 (CGNAT)
}

/// Whether `id` is a valid id for a node at `ip` (always true for exempt addresses).
pub fn is_valid(id: &Id, ip: Ipv4Addr) -> bool {
    if is_exempt(ip) {
        return true;
    }
    let want = prefix(ip, id.0[19]).to_be_bytes();
    id.0[0] == want[0] && id.0[1] == want[1] && (id.0[2] & 0xf8) == (want[2] & 0xf8)
}

/// A valid id for `ip` with the other bits taken from `random`.
pub fn make_id(ip: Ipv4Addr, random: &Id) -> Id {
    let mut id = *random;
    let want = prefix(ip, id.0[19]).to_be_bytes();
    id.0[0] = want[0];
    id.0[1] = want[1];
    id.0[2] = (want[2] & 0xf8) | (id.0[2] & 7);
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id_with(prefix: [u8; 3], last: u8) -> Id {
        let mut id = Id([0x42; 20]);
        id.0[..3].copy_from_slice(&prefix);
        id.0[19] = last;
        id
    }

    #[test]
    fn crc32c_check_value() {
        // The standard check value of CRC-32C.
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn bep42_example_ids_are_valid() {
        // The examples of BEP 42: (ip, rand, first three id bytes).
        let cases = [
            ([124, 31, 75, 21], 1, [0x5f, 0xbf, 0xbf]),
            ([21, 75, 31, 124], 86, [0x5a, 0x3c, 0xe9]),
            ([65, 23, 51, 170], 22, [0xa5, 0xd4, 0x32]),
            ([84, 124, 73, 14], 65, [0x1b, 0x03, 0x21]),
            ([43, 213, 53, 83], 90, [0xe5, 0x6f, 0x6c]),
        ];
        for (ip, r, p) in cases {
            let ip = Ipv4Addr::from(ip);
            assert!(is_valid(&id_with(p, r), ip), "{ip}");
            // another address does not fit
            assert!(!is_valid(&id_with(p, r), Ipv4Addr::new(8, 8, 8, 8)), "{ip}");
        }
    }

    #[test]
    fn made_ids_validate_and_local_addresses_are_exempt() {
        let ip = Ipv4Addr::new(203, 0, 114, 7);
        let id = make_id(ip, &Id([0x99; 20]));
        assert!(is_valid(&id, ip));
        assert!(is_valid(&Id::ZERO, Ipv4Addr::new(127, 0, 0, 5)));
        assert!(is_valid(&Id::ZERO, Ipv4Addr::new(192, 168, 1, 1)));
    }
}
