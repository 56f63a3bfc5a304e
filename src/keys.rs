//! Signing keys: an ES256 key for access and refresh tokens, an RS256 key for ID tokens (and the
//! ES256 key for clients that register ES256). Private keys live in the store, sealed with
//! AES-256-GCM under a key derived from the master key file (mode 0600), so that every node of a
//! cluster signs with the same keys while a copy of the database alone yields none. After a
//! rotation, a retired key's public half stays in the JWKS for `retention` seconds, long enough
//! for every token it signed to expire.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::KeyPair;
use aws_lc_rs::{aead, hkdf, signature};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::EncodingKey;
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse, ThumbprintHash};
use zeroize::Zeroizing;

use crate::model::SigningAlg;
use crate::secret::{HashKey, random_bytes};
use crate::store::{SharedStore, SigningKeyRecord, StoreError};

/// A failure to create, load or use signing keys.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing a key file failed.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: Arc<std::io::Error>,
    },
    /// Key generation or parsing failed.
    #[error("invalid or unusable key material: {0}")]
    Crypto(&'static str),
    /// The store failed.
    #[error("{0}")]
    Store(Arc<StoreError>),
    /// No usable key of an algorithm exists.
    #[error("no active {0} signing key")]
    NoActiveKey(&'static str),
}

impl From<StoreError> for KeyError {
    fn from(err: StoreError) -> Self {
        KeyError::Store(Arc::new(err))
    }
}

/// Writes `bytes` to a new file readable only by its owner (mode 0600).
pub fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;

    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// The private half, parsed once and kept ready to sign.
enum PrivateKey {
    Ec(signature::EcdsaKeyPair),
    Rsa(signature::RsaKeyPair),
}

/// One signing key: the parsed private key, the parsed public key, the public JWK, and the
/// encoded JOSE header of each token kind it signs (a constant per key).
pub struct SigningKey {
    /// Key id.
    pub kid: String,
    /// Algorithm.
    pub alg: SigningAlg,
    /// The key in `jsonwebtoken`'s form (used to derive the JWK; tests sign with it).
    pub encoding: EncodingKey,
    /// The public JWK, with `kid`, `alg` and `use` set.
    pub jwk: Jwk,
    /// When it was retired, if it was.
    pub retired_at: Option<i64>,
    private: PrivateKey,
    public: signature::ParsedPublicKey,
    headers: [String; 3],
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish()
    }
}

impl SigningKey {
    fn from_pem(pem: &[u8], alg: SigningAlg, retired_at: Option<i64>) -> Result<Self, KeyError> {
        let bad = || KeyError::Crypto("cannot parse private key");
        let parsed = pem::parse(pem).map_err(|_| bad())?;
        let der = Zeroizing::new(parsed.contents().to_vec());
        let (private, public) = match alg {
            SigningAlg::ES256 => {
                let pair = signature::EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    &der,
                )
                .map_err(|_| bad())?;
                let public = signature::ParsedPublicKey::new(
                    &signature::ECDSA_P256_SHA256_FIXED,
                    pair.public_key().as_ref(),
                )
                .map_err(|_| bad())?;
                (PrivateKey::Ec(pair), public)
            }
            SigningAlg::RS256 => {
                let pair = signature::RsaKeyPair::from_pkcs8(&der).map_err(|_| bad())?;
                let public = signature::ParsedPublicKey::new(
                    &signature::RSA_PKCS1_2048_8192_SHA256,
                    pair.public_key().as_ref(),
                )
                .map_err(|_| bad())?;
                (PrivateKey::Rsa(pair), public)
            }
        };

        let encoding = match alg {
            SigningAlg::ES256 => EncodingKey::from_ec_pem(pem),
            SigningAlg::RS256 => EncodingKey::from_rsa_pem(pem),
        }
        .map_err(|_| bad())?;
        let mut jwk = Jwk::from_encoding_key(&encoding, alg.jwt_alg())
            .map_err(|_| KeyError::Crypto("cannot derive public key"))?;
        let kid = jwk
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|_| KeyError::Crypto("cannot compute thumbprint"))?;
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        jwk.common.key_algorithm = Some(match alg {
            SigningAlg::ES256 => KeyAlgorithm::ES256,
            SigningAlg::RS256 => KeyAlgorithm::RS256,
        });

        let header = |typ: &str| {
            let json = serde_json::json!({ "alg": alg.as_str(), "typ": typ, "kid": kid });
            URL_SAFE_NO_PAD.encode(json.to_string())
        };
        let headers = [header("at+jwt"), header("rt+jwt"), header("JWT")];
        Ok(Self {
            kid,
            alg,
            encoding,
            jwk,
            retired_at,
            private,
            public,
            headers,
        })
    }

    /// The encoded JOSE header for tokens of type `typ` (`at+jwt`, `rt+jwt` or `JWT`).
    pub fn encoded_header(&self, typ: &str) -> &str {
        match typ {
            "at+jwt" => &self.headers[0],
            "rt+jwt" => &self.headers[1],
            _ => &self.headers[2],
        }
    }

    /// Signs `message` (a JWS signing input).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        match &self.private {
            PrivateKey::Ec(pair) => pair
                .sign(&rng, message)
                .map(|sig| sig.as_ref().to_vec())
                .map_err(|_| KeyError::Crypto("signing failed")),
            PrivateKey::Rsa(pair) => {
                let mut sig = vec![0u8; pair.public_modulus_len()];
                pair.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut sig)
                    .map_err(|_| KeyError::Crypto("signing failed"))?;
                Ok(sig)
            }
        }
    }

    /// Whether `sig` is this key's signature of `message`.
    pub fn verify(&self, message: &[u8], sig: &[u8]) -> bool {
        self.public.verify_sig(message, sig).is_ok()
    }
}

fn generate_pem(alg: SigningAlg) -> Result<Zeroizing<String>, KeyError> {
    let der: Zeroizing<Vec<u8>> = match alg {
        SigningAlg::ES256 => {
            let pair = aws_lc_rs::signature::EcdsaKeyPair::generate(
                &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            )
            .map_err(|_| KeyError::Crypto("EC key generation failed"))?;
            let doc = pair
                .to_pkcs8v1()
                .map_err(|_| KeyError::Crypto("EC key export failed"))?;
            Zeroizing::new(doc.as_ref().to_vec())
        }
        SigningAlg::RS256 => {
            let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .map_err(|_| KeyError::Crypto("RSA key generation failed"))?;
            let doc = pair
                .as_der()
                .map_err(|_| KeyError::Crypto("RSA key export failed"))?;
            Zeroizing::new(doc.as_ref().to_vec())
        }
    };
    let pem = pem::Pem::new("PRIVATE KEY", der.to_vec());
    Ok(Zeroizing::new(pem::encode(&pem)))
}

/// The master key: 32 random bytes in a file of mode 0600 that never enters the database. Every
/// node of a cluster reads the same file. From it are derived (HKDF-SHA-256) the key that seals
/// private signing keys in the store and the key of the keyed hashes of stored secrets.
pub struct MasterKey {
    seal: aead::LessSafeKey,
    hash_key: HashKey,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey([redacted])")
    }
}

fn derive(master: &[u8], info: &[u8]) -> Zeroizing<[u8; 32]> {
    let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"zarish-sphere-auth");
    let prk = salt.extract(master);
    let mut out = Zeroizing::new([0u8; 32]);
    let info = [info];
    #[expect(
        clippy::expect_used,
        reason = "32 bytes is a valid HKDF-SHA-256 output length"
    )]
    prk.expand(&info, hkdf::HKDF_SHA256)
        .and_then(|okm| okm.fill(out.as_mut()))
        .expect("HKDF expand of 32 bytes");
    out
}

impl MasterKey {
    /// Loads the master key from `path`, creating it (mode 0600, with its directory 0700) when
    /// the file does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_owned(),
            source: Arc::new(source),
        };
        let bytes = if path.exists() {
            Zeroizing::new(std::fs::read(path).map_err(io)?)
        } else {
            if let Some(dir) = path.parent() {
                create_private_dir(dir).map_err(io)?;
            }
            let fresh = random_bytes::<32>();
            write_private_file(path, fresh.as_ref()).map_err(io)?;
            Zeroizing::new(fresh.to_vec())
        };
        if bytes.len() != 32 {
            return Err(KeyError::Crypto(
                "the master key file must hold exactly 32 bytes",
            ));
        }
        Ok(Self::from_bytes(&bytes))
    }

    fn from_bytes(master: &[u8]) -> Self {
        let seal_bytes = derive(master, b"signing-key-seal/v1");
        let hash_bytes = derive(master, b"stored-secret-hash/v1");
        #[expect(clippy::expect_used, reason = "a 32-byte key is valid for AES-256-GCM")]
        let unbound =
            aead::UnboundKey::new(&aead::AES_256_GCM, seal_bytes.as_ref()).expect("AES-256 key");
        Self {
            seal: aead::LessSafeKey::new(unbound),
            hash_key: HashKey::from_bytes(&hash_bytes),
        }
    }

    /// The key of the keyed hashes of stored secrets.
    pub fn hash_key(&self) -> HashKey {
        self.hash_key.clone()
    }

    /// Seals `plaintext` with AES-256-GCM, bound to `aad`; base64url of nonce || ciphertext.
    pub fn seal(&self, aad: &str, plaintext: &[u8]) -> Result<String, KeyError> {
        let nonce_bytes = random_bytes::<12>();
        let nonce = aead::Nonce::assume_unique_for_key(*nonce_bytes);
        let mut buf = plaintext.to_vec();
        self.seal
            .seal_in_place_append_tag(nonce, aead::Aad::from(aad.as_bytes()), &mut buf)
            .map_err(|_| KeyError::Crypto("sealing failed"))?;
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&buf);
        Ok(URL_SAFE_NO_PAD.encode(out))
    }

    /// Opens what [`MasterKey::seal`] sealed with the same `aad`.
    pub fn open(&self, aad: &str, sealed: &str) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let wrong = KeyError::Crypto(
            "the master key does not open the stored signing keys (every node must use the same master key file)",
        );
        let raw = URL_SAFE_NO_PAD
            .decode(sealed)
            .map_err(|_| KeyError::Crypto("corrupt sealed key"))?;
        if raw.len() < 12 + 16 {
            return Err(KeyError::Crypto("corrupt sealed key"));
        }
        let (nonce, body) = raw.split_at(12);
        let nonce = aead::Nonce::try_assume_unique_for_key(nonce).map_err(|_| wrong.clone())?;
        let mut buf = Zeroizing::new(body.to_vec());
        let plain = self
            .seal
            .open_in_place(nonce, aead::Aad::from(aad.as_bytes()), buf.as_mut_slice())
            .map_err(|_| wrong)?
            .to_vec();
        Ok(Zeroizing::new(plain))
    }
}

/// Creates `dir` with mode 0700 if it does not exist.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;

    if dir.exists() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Creates, rotates and loads signing keys kept sealed in the store.
#[derive(Debug, Clone)]
pub struct KeyVault {
    master: Arc<MasterKey>,
}

impl KeyVault {
    /// A vault sealing with `master`.
    pub fn new(master: Arc<MasterKey>) -> Self {
        Self { master }
    }

    /// The master key, for other sealed secrets (TOTP secrets).
    pub fn master(&self) -> &MasterKey {
        &self.master
    }

    /// Generates a key, seals it and records it in the store. Returns its `kid`.
    pub async fn create_key(
        &self,
        store: &SharedStore,
        alg: SigningAlg,
        now: i64,
    ) -> Result<String, KeyError> {
        let pem = generate_pem(alg)?;
        let key = SigningKey::from_pem(pem.as_bytes(), alg, None)?;
        let sealed_key = self.master.seal(&key.kid, pem.as_bytes())?;
        store
            .insert_signing_key(&SigningKeyRecord {
                kid: key.kid.clone(),
                alg: alg.as_str().to_owned(),
                sealed_key,
                created_at: now,
                retired_at: None,
            })
            .await?;
        Ok(key.kid)
    }

    /// Creates one ES256 and one RS256 key when the store has no active key of that algorithm.
    pub async fn ensure_keys(&self, store: &SharedStore, now: i64) -> Result<(), KeyError> {
        let existing = store.list_signing_keys().await?;
        for alg in [SigningAlg::ES256, SigningAlg::RS256] {
            if !existing
                .iter()
                .any(|k| k.alg == alg.as_str() && k.retired_at.is_none())
            {
                self.create_key(store, alg, now).await?;
            }
        }
        Ok(())
    }

    /// Creates new keys of both algorithms and retires the previous ones.
    pub async fn rotate(&self, store: &SharedStore, now: i64) -> Result<Vec<String>, KeyError> {
        let mut created = Vec::new();
        for alg in [SigningAlg::ES256, SigningAlg::RS256] {
            let kid = self.create_key(store, alg, now).await?;
            store.retire_signing_keys(alg.as_str(), &kid, now).await?;
            created.push(kid);
        }
        Ok(created)
    }

    /// Loads every key that is active or still within its retention window.
    pub async fn load(
        &self,
        store: &SharedStore,
        now: i64,
        retention: i64,
    ) -> Result<KeySet, KeyError> {
        let mut keys = Vec::new();
        for record in store.list_signing_keys().await? {
            if record.retired_at.is_some_and(|at| at + retention <= now) {
                continue;
            }
            let alg: SigningAlg = record
                .alg
                .parse()
                .map_err(|_| KeyError::Crypto("unknown key algorithm"))?;
            let pem = self.master.open(&record.kid, &record.sealed_key)?;
            keys.push(SigningKey::from_pem(&pem, alg, record.retired_at)?);
        }
        KeySet::new(keys)
    }
}

/// The keys in use: the current signer of each algorithm, and every verifiable key by `kid`.
#[derive(Debug)]
pub struct KeySet {
    by_kid: HashMap<String, Arc<SigningKey>>,
    es256: Arc<SigningKey>,
    rs256: Arc<SigningKey>,
    jwks: serde_json::Value,
}

impl KeySet {
    fn new(keys: Vec<SigningKey>) -> Result<Self, KeyError> {
        let keys: Vec<Arc<SigningKey>> = keys.into_iter().map(Arc::new).collect();
        let current = |alg: SigningAlg, name: &'static str| {
            keys.iter()
                .find(|k| k.alg == alg && k.retired_at.is_none())
                .cloned()
                .ok_or(KeyError::NoActiveKey(name))
        };
        let es256 = current(SigningAlg::ES256, "ES256")?;
        let rs256 = current(SigningAlg::RS256, "RS256")?;
        let set = JwkSet {
            keys: keys.iter().map(|k| k.jwk.clone()).collect(),
        };
        let jwks = serde_json::to_value(&set).map_err(|_| KeyError::Crypto("JWKS encoding"))?;
        let by_kid = keys.iter().map(|k| (k.kid.clone(), k.clone())).collect();
        Ok(Self {
            by_kid,
            es256,
            rs256,
            jwks,
        })
    }

    /// The current signing key for `alg`.
    pub fn signer(&self, alg: SigningAlg) -> &Arc<SigningKey> {
        match alg {
            SigningAlg::ES256 => &self.es256,
            SigningAlg::RS256 => &self.rs256,
        }
    }

    /// The key with id `kid`, if it is current or retained.
    pub fn by_kid(&self, kid: &str) -> Option<&Arc<SigningKey>> {
        self.by_kid.get(kid)
    }

    /// The public JWK Set document.
    pub fn jwks(&self) -> &serde_json::Value {
        &self.jwks
    }
}

/// The live key set, swapped whole when keys are reloaded.
#[derive(Debug, Clone)]
pub struct SharedKeys(Arc<RwLock<Arc<KeySet>>>, Arc<AtomicI64>);

impl SharedKeys {
    /// Wraps a loaded key set.
    pub fn new(set: KeySet) -> Self {
        Self(
            Arc::new(RwLock::new(Arc::new(set))),
            Arc::new(AtomicI64::new(0)),
        )
    }

    /// Claims the right to reload at `now`: true at most once per second, so that a flood of
    /// tokens with made-up `kid`s cannot turn into a flood of store reads.
    pub fn claim_reload(&self, now: i64) -> bool {
        let last = self.1.load(Ordering::Relaxed);
        last < now
            && self
                .1
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// The current key set.
    pub fn current(&self) -> Arc<KeySet> {
        match self.0.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the key set.
    pub fn replace(&self, set: KeySet) {
        let mut guard = match self.0.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        *guard = Arc::new(set);
    }
}
