//! Checks of the [`Committer`] over a backend: ordering, acknowledgements, poisoning.

use std::sync::Arc;

use super::{keys, v, FailingStore, Fixture};
use crate::store::{Committer, Op, Store, StoreError, Table};

/// The [`Committer`] commits in submission order and acknowledges only durable writes.
pub async fn committer_orders_and_acks<F: Fixture>(fx: &F) {
    let store = Arc::new(fx.open().await);
    let committer = Committer::builder()
        .max_batch_ops(64)
        .spawn(Arc::clone(&store));
    let t = Table::Jobs;

    // Submission order, not await order, decides.
    let acks = vec![
        committer.submit(vec![Op::put(t, "k", "1")]),
        committer.submit(vec![Op::delete(t, "k")]),
        committer.submit(vec![Op::put(t, "k", "3")]),
    ];
    let counters: Vec<_> = (0u32..200)
        .map(|i| committer.submit(vec![Op::put(t, "counter", i.to_be_bytes())]))
        .collect();
    for ack in counters.into_iter().rev().chain(acks) {
        ack.await.unwrap();
    }
    assert_eq!(store.get(t, b"k").await.unwrap(), v("3"));
    assert_eq!(
        store.get(t, b"counter").await.unwrap(),
        Some(199u32.to_be_bytes().to_vec())
    );

    // Many writers: each ack means the write is readable; writers that submit under a lock keep
    // the lock's order.
    const WRITERS: u32 = 32;
    const WRITES: u32 = 10;
    let seq = Arc::new(tokio::sync::Mutex::new(0u32));
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (committer, store, seq) = (committer.clone(), Arc::clone(&store), Arc::clone(&seq));
            tokio::spawn(async move {
                for i in 0..WRITES {
                    let key = format!("w{w:02}-{i:02}");
                    let ack = {
                        let mut seq = seq.lock().await;
                        *seq += 1;
                        committer.submit(vec![
                            Op::put(Table::Log, key.as_bytes(), w.to_be_bytes()),
                            Op::put(Table::Meta, "seq", seq.to_be_bytes()),
                        ])
                    };
                    ack.await.unwrap();
                    let stored = store.get(Table::Log, key.as_bytes()).await.unwrap();
                    assert_eq!(
                        stored,
                        Some(w.to_be_bytes().to_vec()),
                        "acked write {key} not readable"
                    );
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    committer.flush().await.unwrap();
    assert_eq!(
        store.len(Table::Log).await.unwrap(),
        u64::from(WRITERS * WRITES)
    );
    assert_eq!(
        store.get(Table::Meta, b"seq").await.unwrap(),
        Some((WRITERS * WRITES).to_be_bytes().to_vec()),
        "the last submission under the lock must win"
    );

    let stats = committer.stats();
    let submissions = 203 + u64::from(WRITERS * WRITES) + 1;
    assert_eq!(stats.submissions, submissions);
    assert_eq!(stats.ops, 203 + 2 * u64::from(WRITERS * WRITES));
    assert!(
        stats.batches >= 1 && stats.batches < submissions,
        "{stats:?}"
    );
    assert!(stats.bytes > 0);
    assert_eq!(stats.failed_batches, 0);
}

/// A failed commit fails every submitter of its round and poisons the committer for good;
/// nothing of the failed or later submissions reaches the store.
pub async fn committer_poisoning<F: Fixture>(fx: &F) {
    let store = FailingStore::new(fx.open().await);
    let committer = Committer::new(store.clone());
    let t = Table::Devices;
    committer
        .submit(vec![Op::put(t, "before", "kept")])
        .await
        .unwrap();
    assert!(!committer.is_poisoned());

    store.fail_commits(true);
    let a = committer.submit(vec![Op::put(t, "a", "")]);
    let b = committer.submit(vec![Op::put(t, "b", "")]);
    let (a, b) = (a.await.unwrap_err(), b.await.unwrap_err());
    // Each failed either with the commit's own error or, queued behind it, as poisoned.
    assert!(a.is_io(), "{a}");
    assert!(
        b.is_io() || b.poison_cause().is_some_and(StoreError::is_io),
        "{b}"
    );
    assert!(committer.is_poisoned());

    store.fail_commits(false);
    let commits = store.commits();
    for _ in 0..3 {
        let err = committer
            .submit(vec![Op::put(t, "c", "")])
            .await
            .unwrap_err();
        assert!(err.is_poisoned(), "{err}");
        assert!(err.poison_cause().is_some_and(StoreError::is_io));
    }
    let clone = committer.clone();
    assert!(clone.flush().await.unwrap_err().is_poisoned());
    assert_eq!(
        store.commits(),
        commits,
        "a poisoned committer still committed"
    );

    assert_eq!(store.get(t, b"before").await.unwrap(), v("kept"));
    assert_eq!(keys(&store, t).await, vec![b"before".to_vec()]);
    assert_eq!(committer.stats().failed_batches, 1);
}
