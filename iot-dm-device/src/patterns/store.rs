//! [`PatternState`]: where the patterns keep what must survive a restart.

use std::collections::HashMap;
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::PatternsError;

/// A small persistent store for the patterns' state: one JSON document per pattern, keyed by
/// the pattern's name (`reboot`, `factoryReset`, `firmware`).
///
/// A pattern saves its state *before* it acts (before answering a method, before the hook
/// reboots or installs), so a device process that really restarts reads back what it was
/// doing and reports how it ended. Use [`FilePatternState`] on a device and
/// [`MemoryPatternState`] in tests and simulations.
///
/// ```
/// use iot_dm_device::patterns::{MemoryPatternState, PatternState};
/// use serde_json::json;
///
/// let state = MemoryPatternState::new();
/// assert_eq!(state.load("reboot")?, None);
/// state.save("reboot", &json!({"state": "rebooting"}))?;
/// assert_eq!(state.load("reboot")?, Some(json!({"state": "rebooting"})));
/// # Ok::<(), iot_dm_device::patterns::PatternsError>(())
/// ```
pub trait PatternState: Send + Sync + fmt::Debug {
    /// The document saved under `key`, if any.
    fn load(&self, key: &str) -> Result<Option<Value>, PatternsError>;
    /// Replaces the document under `key`; returns once it is durable.
    fn save(&self, key: &str, value: &Value) -> Result<(), PatternsError>;
}

impl<T: PatternState + ?Sized> PatternState for Arc<T> {
    fn load(&self, key: &str) -> Result<Option<Value>, PatternsError> {
        (**self).load(key)
    }
    fn save(&self, key: &str, value: &Value) -> Result<(), PatternsError> {
        (**self).save(key, value)
    }
}

/// A [`PatternState`] in memory: it survives a client being dropped and built again in the
/// same process (which is how tests "restart" a device), not the process.
#[derive(Debug, Default, Clone)]
pub struct MemoryPatternState {
    docs: Arc<Mutex<HashMap<String, Value>>>,
}

impl MemoryPatternState {
    /// An empty store.
    pub fn new() -> MemoryPatternState {
        MemoryPatternState::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Value>> {
        // No code panics while holding the lock, so a poisoned map is still consistent.
        self.docs.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl PatternState for MemoryPatternState {
    fn load(&self, key: &str) -> Result<Option<Value>, PatternsError> {
        Ok(self.lock().get(key).cloned())
    }

    fn save(&self, key: &str, value: &Value) -> Result<(), PatternsError> {
        self.lock().insert(key.to_string(), value.clone());
        Ok(())
    }
}

/// A [`PatternState`] in a directory: one `<key>.json` file per pattern, replaced atomically
/// (written to a temporary file, synced, renamed over the old one), so a power loss leaves
/// either the old or the new document.
///
/// ```
/// use iot_dm_device::patterns::{FilePatternState, PatternState};
/// use serde_json::json;
///
/// let dir = std::env::temp_dir().join(format!("iot-dm-doc-state-{}", std::process::id()));
/// let state = FilePatternState::open(&dir)?;
/// state.save("firmware", &json!({"state": "downloading"}))?;
/// // a new process opens the same directory and reads it back
/// let again = FilePatternState::open(&dir)?;
/// assert_eq!(again.load("firmware")?, Some(json!({"state": "downloading"})));
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok::<(), iot_dm_device::patterns::PatternsError>(())
/// ```
#[derive(Debug, Clone)]
pub struct FilePatternState {
    dir: PathBuf,
}

impl FilePatternState {
    /// A store in `dir`, created if missing.
    pub fn open(dir: impl AsRef<Path>) -> Result<FilePatternState, PatternsError> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| PatternsError::Store {
            key: String::new(),
            reason: format!("cannot create {}: {e}", dir.display()),
        })?;
        Ok(FilePatternState { dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, key: &str) -> Result<PathBuf, PatternsError> {
        let valid = !key.is_empty()
            && key.len() <= 64
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid {
            return Err(PatternsError::Store {
                key: key.to_string(),
                reason: "keys are 1 to 64 ASCII letters, digits, - or _".to_string(),
            });
        }
        Ok(self.dir.join(format!("{key}.json")))
    }
}

impl PatternState for FilePatternState {
    fn load(&self, key: &str) -> Result<Option<Value>, PatternsError> {
        let path = self.path(key)?;
        let err = |reason: String| PatternsError::Store {
            key: key.to_string(),
            reason,
        };
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| err(format!("{} is not JSON: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(err(format!("cannot read {}: {e}", path.display()))),
        }
    }

    fn save(&self, key: &str, value: &Value) -> Result<(), PatternsError> {
        let path = self.path(key)?;
        let tmp = self.dir.join(format!(".{key}.json.tmp"));
        let err = |reason: String| PatternsError::Store {
            key: key.to_string(),
            reason,
        };
        let body = serde_json::to_vec(value).map_err(|e| err(e.to_string()))?;
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&body)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            // the rename itself is durable once the directory is synced
            if let Ok(d) = std::fs::File::open(&self.dir) {
                let _ = d.sync_all();
            }
            Ok(())
        };
        write().map_err(|e| err(format!("cannot write {}: {e}", path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn file_state_round_trips_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let state = FilePatternState::open(dir.path().join("nested")).unwrap();
        assert_eq!(state.load("reboot").unwrap(), None);
        state.save("reboot", &json!({"a": 1})).unwrap();
        state.save("reboot", &json!({"a": 2})).unwrap();
        let again = FilePatternState::open(state.dir()).unwrap();
        assert_eq!(again.load("reboot").unwrap(), Some(json!({"a": 2})));
        assert!(matches!(
            state.save("../x", &json!(1)),
            Err(PatternsError::Store { .. })
        ));
        std::fs::write(state.dir().join("broken.json"), b"{nope").unwrap();
        let e = state.load("broken").unwrap_err().to_string();
        assert!(e.contains("not JSON"), "{e}");
    }

    #[test]
    fn memory_state_is_shared_by_clones() {
        let a = MemoryPatternState::new();
        let b = a.clone();
        a.save("firmware", &json!(true)).unwrap();
        assert_eq!(b.load("firmware").unwrap(), Some(json!(true)));
        assert_eq!(b.load("other").unwrap(), None);
    }
}
