//! Key derivation. Every key is SHA-256 over a domain-separation label and its parent:
//!
//! ```text
//! write secret W (32 random bytes, the rw capability)
//!   ├─ read key      R  = H("servent-store/read"   ‖ W)   (the ro capability)
//!   │    ├─ storage index = H("servent-store/si"     ‖ R)   (where the manifest lives)
//!   │    ├─ manifest key  = H("servent-store/mkey"   ‖ R)
//!   │    └─ file key i    = H("servent-store/file"   ‖ R ‖ i)
//!   └─ delete secret D  = H("servent-store/delete" ‖ W), owner tag = H(D)
//! ```
//! A node learns the storage index and the owner tag, neither of which leads back to R or D.

use sha2::{Digest, Sha256};

fn h(label: &str, parts: &[&[u8]]) -> [u8; 32] {
    let mut d = Sha256::new();
    d.update(label.as_bytes());
    for p in parts {
        d.update(p);
    }
    d.finalize().into()
}

/// The read key of a write secret.
pub fn read_key(write: &[u8; 32]) -> [u8; 32] {
    h("servent-store/read", &[write])
}
/// The storage index of a read key.
pub fn storage_index(read: &[u8; 32]) -> [u8; 32] {
    h("servent-store/si", &[read])
}
/// The key that encrypts the manifest.
pub fn manifest_key(read: &[u8; 32]) -> [u8; 32] {
    h("servent-store/mkey", &[read])
}
/// The content key of file `index` of the object.
pub fn file_key(read: &[u8; 32], index: u32) -> [u8; 32] {
    h("servent-store/file", &[read, &index.to_be_bytes()])
}
/// The secret that deletes the object's shards.
pub fn delete_secret(write: &[u8; 32]) -> [u8; 32] {
    h("servent-store/delete", &[write])
}
/// What nodes store as the owner: the hash of the delete secret.
pub fn owner_tag(secret: &[u8; 32]) -> [u8; 32] {
    Sha256::digest(secret).into()
}
/// SHA-256, the shard hash.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}
/// The DHT id (160 bits) a 32-byte key maps to: its first 20 bytes.
pub fn dht_id(key: &[u8; 32]) -> servent_core::Id {
    let mut id = [0u8; 20];
    id.copy_from_slice(&key[..20]);
    servent_core::Id(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_keys_differ() {
        let w = [1u8; 32];
        let r = read_key(&w);
        let all = [
            r,
            storage_index(&r),
            manifest_key(&r),
            file_key(&r, 0),
            file_key(&r, 1),
            delete_secret(&w),
        ];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
