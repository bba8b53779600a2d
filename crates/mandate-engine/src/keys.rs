//! The server's Ed25519 signing keys: created at first start, rotated on request, published as a
//! JWKS.
//!
//! Keys live in `<data-dir>/signing-keys/`, one file per key, mode 0600 in a 0700 directory, written
//! atomically (a temporary file renamed into place). We chose files over the database so that a copy
//! of the database (a backup, an export for an auditor) never carries the ability to mint mandates;
//! the PostgreSQL backend will need a shared key store and will revisit this.
//!
//! A key's `kid` is its RFC 7638 thumbprint. Rotation makes a new key the signing key and marks the
//! old one retired; a retired key stays in the JWKS, and keeps verifying, until every mandate it could
//! have signed has expired (its retirement plus the longest mandate lifetime), then it leaves.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::{SigningKey, VerifyingKey};
use mandate_core::jwk::Ed25519PublicJwk;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::RwLock;

#[derive(Debug, Serialize, Deserialize)]
struct KeyFile {
    kid: String,
    created_at: i64,
    retired_at: Option<i64>,
    x: String,
    d: String,
}

#[derive(Clone)]
struct Entry {
    kid: String,
    key: SigningKey,
    created_at: i64,
    retired_at: Option<i64>,
}

/// A key as listed by `GET /v1/keys`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KeyInfo {
    /// The key id (its RFC 7638 thumbprint).
    pub kid: String,
    /// When it was created, Unix seconds.
    pub created_at: i64,
    /// When it stopped signing, Unix seconds; `null` for the signing key.
    pub retired_at: Option<i64>,
    /// When it leaves the JWKS, Unix seconds.
    pub published_until: Option<i64>,
}

/// Why the keys could not be loaded or changed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key directory or a key file could not be read or written.
    #[error("signing key store `{path}`: {message}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// The signing keys.
pub struct KeyRing {
    dir: PathBuf,
    max_lifetime_secs: i64,
    entries: RwLock<Vec<Entry>>,
    /// Held by `rotate` and `reload` for the whole of their work, so that a reload never puts back a
    /// directory read from before a rotation of this node's.
    changing: std::sync::Mutex<()>,
}

fn io(path: &Path, e: impl std::fmt::Display) -> KeyError {
    KeyError::Io { path: path.to_owned(), message: e.to_string() }
}

/// Every key file in `dir`, oldest first.
fn load_dir(dir: &Path) -> Result<Vec<Entry>, KeyError> {
    let mut entries = Vec::new();
    for item in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let path = item.map_err(|e| io(dir, e))?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
        let file: KeyFile = serde_json::from_str(&text).map_err(|e| io(&path, e))?;
        let bytes: [u8; 32] = URL_SAFE_NO_PAD
            .decode(&file.d)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| io(&path, "`d` is not a 32-byte base64url Ed25519 seed"))?;
        let key = SigningKey::from_bytes(&bytes);
        let kid = Ed25519PublicJwk::from_verifying_key(key.verifying_key()).thumbprint();
        if kid != file.kid {
            return Err(io(&path, "the key does not match its `kid`"));
        }
        entries.push(Entry { kid, key, created_at: file.created_at, retired_at: file.retired_at });
    }
    entries.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.kid.cmp(&b.kid)));
    Ok(entries)
}

impl KeyRing {
    /// Loads the keys in `dir`, creating the directory and a first key if there are none.
    /// `max_lifetime_secs` is the longest a mandate may live (how long a retired key stays published).
    pub fn open(dir: &Path, max_lifetime_secs: u32, now: i64) -> Result<Self, KeyError> {
        create_private_dir(dir).map_err(|e| io(dir, e))?;
        let entries = load_dir(dir)?;
        let ring = Self {
            dir: dir.to_owned(),
            max_lifetime_secs: i64::from(max_lifetime_secs),
            entries: RwLock::new(entries),
            changing: std::sync::Mutex::new(()),
        };
        if ring.read().iter().all(|e| e.retired_at.is_some()) {
            ring.rotate(now)?;
        }
        Ok(ring)
    }

    /// Reads the directory again, so that a key another node created or retired (`mandate keys
    /// rotate` on any node sharing the directory) is used here too. The ring is replaced only by a
    /// complete read that leaves a signing key; otherwise it stays as it was. Answers whether it
    /// changed.
    pub fn reload(&self) -> Result<bool, KeyError> {
        let _changing = self.changing.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = load_dir(&self.dir)?;
        if fresh.iter().all(|e| e.retired_at.is_some()) {
            return Err(io(&self.dir, "no signing key in the directory; keeping the keys in memory"));
        }
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        let same = entries.len() == fresh.len()
            && entries.iter().zip(&fresh).all(|(a, b)| a.kid == b.kid && a.retired_at == b.retired_at);
        if !same {
            *entries = fresh;
        }
        Ok(!same)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Entry>> {
        self.entries.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The signing key and its id.
    pub fn signing(&self) -> (String, SigningKey) {
        let entries = self.read();
        // INVARIANT: `open` and `rotate` always leave exactly one unretired key, the newest.
        match entries.iter().rev().find(|e| e.retired_at.is_none()) {
            Some(e) => (e.kid.clone(), e.key.clone()),
            None => unreachable_signing_key(),
        }
    }

    /// The verifying key for `kid`, if it is still published at `now`.
    pub fn verifying(&self, kid: &str, now: i64) -> Option<VerifyingKey> {
        self.read().iter().find(|e| e.kid == kid && self.published(e, now)).map(|e| e.key.verifying_key())
    }

    fn published(&self, e: &Entry, now: i64) -> bool {
        e.retired_at.is_none_or(|r| now < r + self.max_lifetime_secs)
    }

    /// The JWKS (RFC 7517) of the keys published at `now`.
    pub fn jwks(&self, now: i64) -> serde_json::Value {
        let keys: Vec<serde_json::Value> = self
            .read()
            .iter()
            .filter(|e| self.published(e, now))
            .map(|e| {
                let mut jwk = Ed25519PublicJwk::from_verifying_key(e.key.verifying_key()).to_json();
                jwk["kid"] = e.kid.clone().into();
                jwk["use"] = "sig".into();
                jwk["alg"] = "EdDSA".into();
                jwk
            })
            .collect();
        serde_json::json!({ "keys": keys })
    }

    /// Every key with its dates.
    pub fn list(&self) -> Vec<KeyInfo> {
        self.read()
            .iter()
            .map(|e| KeyInfo {
                kid: e.kid.clone(),
                created_at: e.created_at,
                retired_at: e.retired_at,
                published_until: e.retired_at.map(|r| r + self.max_lifetime_secs),
            })
            .collect()
    }

    /// Creates a new signing key and retires the current one. Returns the new key's id.
    pub fn rotate(&self, now: i64) -> Result<String, KeyError> {
        let _changing = self.changing.lock().unwrap_or_else(|p| p.into_inner());
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        let key = SigningKey::generate(&mut rand_core::OsRng);
        let kid = Ed25519PublicJwk::from_verifying_key(key.verifying_key()).thumbprint();
        let new = Entry { kid: kid.clone(), key, created_at: now, retired_at: None };
        // The new key is on disk before any old key is marked retired: a crash in between leaves two
        // signing keys (harmless; the newest signs) rather than none.
        self.write(&new)?;
        for e in entries.iter_mut().filter(|e| e.retired_at.is_none()) {
            e.retired_at = Some(now);
            self.write(e)?;
        }
        entries.push(new);
        Ok(kid)
    }

    fn write(&self, e: &Entry) -> Result<(), KeyError> {
        let file = KeyFile {
            kid: e.kid.clone(),
            created_at: e.created_at,
            retired_at: e.retired_at,
            x: URL_SAFE_NO_PAD.encode(e.key.verifying_key().as_bytes()),
            d: URL_SAFE_NO_PAD.encode(e.key.to_bytes()),
        };
        let text = serde_json::to_string_pretty(&file).map_err(|err| io(&self.dir, err))?;
        let path = self.dir.join(format!("{}.json", e.kid));
        let tmp = self.dir.join(format!(".{}.json.tmp", e.kid));
        write_private(&tmp, text.as_bytes()).map_err(|err| io(&tmp, err))?;
        std::fs::rename(&tmp, &path).map_err(|err| io(&path, err))
    }
}

#[allow(clippy::panic)]
fn unreachable_signing_key() -> ! {
    // INVARIANT (see `signing`): unreachable while the invariant holds; a panic here is a bug.
    panic!("the key ring has no signing key")
}

/// Writes a file readable only by its owner, and syncs it to disk.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Creates `dir` (and its parents) readable by this user only.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn keys_persist_rotate_and_leave_the_jwks_after_the_longest_mandate() {
        let dir = tempfile::tempdir().unwrap();
        let ring = KeyRing::open(dir.path(), 3600, 1_000).unwrap();
        let (first, _) = ring.signing();
        assert_eq!(ring.jwks(1_000)["keys"].as_array().unwrap().len(), 1);
        let second = ring.rotate(2_000).unwrap();
        assert_ne!(first, second);
        assert_eq!(ring.signing().0, second);
        // The old key verifies for another hour, then leaves.
        assert!(ring.verifying(&first, 5_599).is_some());
        assert_eq!(ring.jwks(5_599)["keys"].as_array().unwrap().len(), 2);
        assert!(ring.verifying(&first, 5_600).is_none());
        assert_eq!(ring.jwks(5_600)["keys"].as_array().unwrap().len(), 1);
        // A restart reads the same keys back.
        let again = KeyRing::open(dir.path(), 3600, 3_000).unwrap();
        assert_eq!(again.signing().0, second);
        assert!(again.verifying(&first, 3_000).is_some());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(format!("{second}.json"))).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_tampered_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ring = KeyRing::open(dir.path(), 3600, 1_000).unwrap();
        let (kid, _) = ring.signing();
        let path = dir.path().join(format!("{kid}.json"));
        let text = std::fs::read_to_string(&path).unwrap();
        let other = URL_SAFE_NO_PAD.encode([9u8; 32]);
        let mut file: KeyFile = serde_json::from_str(&text).unwrap();
        file.d = other;
        std::fs::write(&path, serde_json::to_string(&file).unwrap()).unwrap();
        let err = KeyRing::open(dir.path(), 3600, 1_000).err().unwrap().to_string();
        assert!(err.contains("does not match its `kid`"), "{err}");
    }
}

/// Reads the key directory again every second (see [`KeyRing::reload`]), logging what changed and
/// what failed.
pub fn spawn_reload(ring: std::sync::Arc<KeyRing>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tick.tick().await;
            let ring = ring.clone();
            match tokio::task::spawn_blocking(move || ring.reload()).await {
                Ok(Ok(true)) => {
                    failing = false;
                    tracing::info!("signing keys changed in the key directory; reloaded");
                }
                Ok(Ok(false)) => failing = false,
                Ok(Err(e)) if !failing => {
                    failing = true;
                    tracing::warn!(error = %e, "the key directory could not be read again; keeping the keys in memory");
                }
                _ => {}
            }
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod reload_tests {
    use super::*;

    #[test]
    fn two_rings_over_one_directory_agree_after_a_reload_and_a_broken_directory_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let a = KeyRing::open(dir.path(), 3600, 1_000).unwrap();
        let b = KeyRing::open(dir.path(), 3600, 1_000).unwrap();
        assert_eq!(a.signing().0, b.signing().0, "the second ring found the first one's key");
        assert!(!b.reload().unwrap(), "nothing changed");
        let new = a.rotate(2_000).unwrap();
        assert!(b.reload().unwrap());
        assert_eq!(b.signing().0, new);
        assert_eq!(b.list().len(), 2);
        // A key file that does not parse: the reload fails and the ring keeps what it had.
        std::fs::write(dir.path().join("broken.json"), "{").unwrap();
        assert!(b.reload().is_err());
        assert_eq!(b.signing().0, new);
    }
}
