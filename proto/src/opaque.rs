//! The OPAQUE cipher suite both ends must agree on: ristretto255 for the
//! OPRF and the key exchange (3DH, SHA-512), Argon2id as the key-stretching
//! function run by the client only.

pub struct Suite;

impl opaque_ke::CipherSuite for Suite {
    type OprfCs = opaque_ke::Ristretto255;
    type KeGroup = opaque_ke::Ristretto255;
    type KeyExchange = opaque_ke::key_exchange::tripledh::TripleDh;
    type Ksf = argon2::Argon2<'static>;
}

pub use opaque_ke;
