//! Crash durability: every write the committer acknowledged survives SIGKILL of the process.
//!
//! The test runs its own binary again as a child, selected by an environment variable. The child
//! commits numbered records through a [`Committer`] from many concurrent writers and prints each
//! number after its acknowledgement. The parent kills the child in the middle of that, reopens
//! the store and checks that every number printed is there, intact.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use iot_dm_service::store::{Committer, Op, RedbStore, Store, Table};

/// Set in the child: the directory of the store to write.
const CHILD_ENV: &str = "IOT_DM_STORE_CRASH_CHILD_DIR";
/// Acknowledgements the parent waits for before it kills the child.
const ACKS_BEFORE_KILL: usize = 2_000;
/// The most the parent waits for them.
const WAIT: Duration = Duration::from_secs(20);
/// Concurrent writers in the child.
const WRITERS: u64 = 64;
/// The child stops writing after this many records or this long, if it is never killed.
const CHILD_MAX_RECORDS: u64 = 1_000_000;
const CHILD_MAX_TIME: Duration = Duration::from_secs(60);

fn key(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

/// A ~200-byte record that names its number and carries a checksum of itself.
fn record(n: u64) -> Vec<u8> {
    let body: Vec<u8> = format!("record {n:020} ")
        .into_bytes()
        .into_iter()
        .cycle()
        .take(192)
        .collect();
    let sum = body.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let mut value = body;
    value.extend_from_slice(&sum.to_be_bytes());
    value
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(std::path::Path::new(&dir));
        return;
    }

    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = dir.path().join("crash.redb");
    let started = Instant::now();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "acknowledged_writes_survive_sigkill",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();

    // Read the child's stdout on a thread, so that the wait below is bounded by time.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(n) = line.strip_prefix("ACK ") {
                if tx.send(n.trim().parse::<u64>().unwrap()).is_err() {
                    break;
                }
            }
        }
    });

    let mut acked = Vec::new();
    let deadline = Instant::now() + WAIT;
    while acked.len() < ACKS_BEFORE_KILL {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(n) => acked.push(n),
            Err(_) => break,
        }
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    // While the child lives, its lock on the file is a typed error here.
    let err = runtime.block_on(RedbStore::open(&path)).unwrap_err();
    assert!(err.is_locked(), "{err}");

    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "the child ended on its own: {status}");
    reader.join().unwrap();
    // Acknowledgements printed before the kill count too.
    acked.extend(rx.try_iter());
    assert!(
        acked.len() >= ACKS_BEFORE_KILL,
        "only {} acknowledgements within {WAIT:?}",
        acked.len()
    );

    runtime.block_on(async {
        let store = RedbStore::open(&path).await.unwrap();
        for &n in &acked {
            let value = store.get(Table::Log, &key(n)).await.unwrap();
            assert_eq!(
                value,
                Some(record(n)),
                "acknowledged record {n} lost or damaged"
            );
        }
        // Unacknowledged records may or may not have landed, but whatever is there is whole.
        let all = store.scan(Table::Log, None, usize::MAX).await.unwrap();
        for (k, v) in &all {
            let n = u64::from_be_bytes(k.as_slice().try_into().unwrap());
            assert_eq!(v, &record(n), "record {n} damaged");
        }
        eprintln!(
            "{} acknowledged and {} stored records checked after SIGKILL, in {:?}",
            acked.len(),
            all.len(),
            started.elapsed()
        );
    });
}

/// The child: writes numbered records until killed, printing each acknowledged number.
fn child(dir: &std::path::Path) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("child runtime");
    runtime.block_on(async {
        let store = RedbStore::open(dir.join("crash.redb"))
            .await
            .expect("child opens the store");
        let committer = Committer::new(store);
        let next = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let writers: Vec<_> = (0..WRITERS)
            .map(|_| {
                let (committer, next) = (committer.clone(), Arc::clone(&next));
                tokio::spawn(async move {
                    loop {
                        let n = next.fetch_add(1, Ordering::SeqCst);
                        if n >= CHILD_MAX_RECORDS || started.elapsed() > CHILD_MAX_TIME {
                            return;
                        }
                        committer
                            .submit(vec![Op::put(Table::Log, key(n), record(n))])
                            .await
                            .expect("acknowledged write");
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "ACK {n}").expect("stdout");
                        out.flush().expect("stdout");
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.await.expect("writer task");
        }
    });
}
