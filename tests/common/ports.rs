//! The official SDKs only connect to the standard ports (MQTT 8883, HTTPS 443), so the SDK
//! conformance tests cannot pick free ports. They hold this machine-wide lock while they
//! listen, so that two of them (from this or another checkout, or a parallel test runner)
//! never race for those ports.

use std::fs::{File, OpenOptions};

/// Blocks until this process holds the lock on the standard ports; dropping the file
/// releases it (so does the process ending).
pub fn lock_standard_ports() -> File {
    let path = std::env::temp_dir().join("iot-dm-standard-ports.lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    file.lock()
        .unwrap_or_else(|e| panic!("lock {}: {e}", path.display()));
    file
}
