//! OpenPGP v4 RSA public-key and signature packets, snapd key ids, the signed-data digest and
//! software verification (snapd `asserts/crypto.go`; x/crypto `openpgp/packet/{packet.go,
//! public_key.go,signature.go}`).
//!
//! snapd encodes every public key as a v4 RSA public-key packet with the fixed creation time
//! 2016-01-01T00:00:00Z (`v1FixedTimestamp`) and algorithm 1, prefixes it with the format byte
//! `0x01`, and names the key by SHA3-384 of those bytes in unpadded base64url. Signatures are v4
//! signature packets over SHA-512 with one hashed creation-time subpacket (PROTOCOL.md 2.3/2.4).
//!
//! Files: `packet` (framing, MPIs, the v1 text form), `key` (the public-key packet and key
//! ids), `signature` (signature packets and their verification), `signing` (the signed-data
//! digest and the packet around an HSM signature), `secret_key` (reading an armored, unencrypted
//! RSA secret key for import onto the token).

mod key;
mod packet;
pub mod secret_key;
mod signature;
mod signing;

pub use key::{FIXED_KEY_CREATION_TIME, RsaPublicKey};
pub use packet::{
    HASH_SHA512, PUBKEY_ALGO_RSA, V1, decode_v1, encode_v1, wrap76, write_packet_header,
};
pub use signature::{
    SignaturePacket, check_encoded_signature, verify_digest_info, verify_signature,
};
pub use signing::{
    SHA512_DIGEST_INFO_PREFIX, SigningInput, digest_info, hash_suffix, signing_input,
};
