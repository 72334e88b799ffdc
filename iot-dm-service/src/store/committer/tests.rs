//! The committer's unit tests: rounds, order, barriers, poisoning, hooks and close.

use super::*;
use crate::store::conformance::FailingStore;
use crate::store::{MemoryStore, Table};

#[tokio::test]
async fn rounds_respect_the_op_cap_and_keep_order() {
    let store = MemoryStore::new();
    let committer = Committer::builder().max_batch_ops(3).spawn(store.clone());
    let acks: Vec<_> = (0u8..10)
        .map(|i| {
            committer.submit(vec![
                Op::put(Table::Log, [i], [i]),
                Op::put(Table::Meta, "last", [i]),
            ])
        })
        .collect();
    for ack in acks {
        ack.await.unwrap();
    }
    let stats = committer.stats();
    assert_eq!(
        (stats.submissions, stats.ops, stats.bytes),
        (10, 20, 10 * (2 + 5))
    );
    // Two ops per submission and a cap of three: one submission per round.
    assert_eq!(stats.batches, 10);
    assert_eq!(
        store.get(Table::Meta, b"last").await.unwrap(),
        Some(vec![9])
    );
    assert_eq!(store.len(Table::Log).await.unwrap(), 10);
}

#[tokio::test]
async fn a_submission_over_the_caps_is_committed_alone() {
    let store = MemoryStore::new();
    let committer = Committer::builder()
        .max_batch_ops(2)
        .max_batch_bytes(4)
        .spawn(store.clone());
    let big: Vec<_> = (0u8..5)
        .map(|i| Op::put(Table::Jobs, [i], "value"))
        .collect();
    let small = committer.submit(vec![Op::put(Table::Jobs, "x", "")]);
    let big = committer.submit(big);
    small.await.unwrap();
    big.await.unwrap();
    assert_eq!(store.len(Table::Jobs).await.unwrap(), 6);
    assert_eq!(committer.stats().batches, 2);
}

#[tokio::test]
async fn rounds_coalesce_queued_submissions() {
    let store = MemoryStore::new();
    let committer = Committer::new(store.clone());
    // On a current-thread runtime the task cannot run before we await: all 100 queue up.
    let acks: Vec<_> = (0u32..100)
        .map(|i| committer.submit(vec![Op::put(Table::Log, i.to_be_bytes(), "")]))
        .collect();
    for ack in acks {
        ack.await.unwrap();
    }
    let stats = committer.stats();
    assert_eq!(stats.batches, 1, "{stats:?}");
    assert!((stats.avg_batch_ops() - 100.0).abs() < f64::EPSILON);
}

#[tokio::test]
async fn flush_is_a_barrier_without_a_commit() {
    let committer = Committer::new(MemoryStore::new());
    committer.flush().await.unwrap();
    assert_eq!(committer.stats().batches, 0);
    assert_eq!(CommitterStats::default().avg_batch_ops(), 0.0);
    let put = committer.submit(vec![Op::put(Table::Meta, "k", "v")]);
    committer.flush().await.unwrap();
    // The barrier resolved, so the earlier submission is durable and acknowledged too.
    assert_eq!(
        committer
            .store()
            .unwrap()
            .get(Table::Meta, b"k")
            .await
            .unwrap(),
        Some(b"v".to_vec())
    );
    put.await.unwrap();
}

#[tokio::test]
async fn poisoning_rejects_queued_and_later_submissions() {
    let failing = FailingStore::new(MemoryStore::new());
    let committer = Committer::new(failing.clone());
    failing.fail_commits(true);
    let doomed = committer.submit(vec![Op::put(Table::Log, "a", "")]);
    assert!(doomed.await.unwrap_err().is_io());
    assert!(committer.is_poisoned());
    failing.fail_commits(false);
    let err = committer
        .submit(vec![Op::put(Table::Log, "b", "")])
        .await
        .unwrap_err();
    assert!(err.is_poisoned(), "{err}");
    assert!(err.poison_cause().is_some_and(StoreError::is_io));
    assert_eq!(committer.stats().failed_batches, 1);
    assert_eq!(failing.len(Table::Log).await.unwrap(), 0);
}

#[test]
fn a_closed_committer_fails_with_a_typed_error() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let committer = runtime.block_on(async { Committer::new(MemoryStore::new()) });
    drop(runtime);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let err = runtime
        .block_on(committer.submit(vec![Op::put(Table::Log, "k", "")]))
        .unwrap_err();
    assert!(err.is_closed(), "{err}");
}

#[tokio::test]
async fn an_ack_polled_after_completion_does_not_panic() {
    let mut ack = CommitAck::ready(Ok(()));
    let waker = std::task::Waker::noop();
    let mut cx = Context::from_waker(waker);
    assert!(matches!(
        Pin::new(&mut ack).poll(&mut cx),
        Poll::Ready(Ok(()))
    ));
    assert!(matches!(Pin::new(&mut ack).poll(&mut cx), Poll::Ready(Err(e)) if e.is_closed()));
}

#[tokio::test]
async fn close_commits_what_came_before_and_releases_the_store() {
    let store = MemoryStore::new();
    let committer = Committer::new(store.clone());
    let first = committer.submit(vec![Op::put(Table::Meta, b"a".to_vec(), b"1".to_vec())]);
    committer.close().await.unwrap();
    first.await.unwrap();
    assert_eq!(
        store.get(Table::Meta, b"a").await.unwrap(),
        Some(b"1".to_vec())
    );
    assert!(committer.is_closed());
    assert!(committer.store().is_none(), "the task released the store");
    let late = committer
        .submit(vec![Op::put(Table::Meta, b"b".to_vec(), b"2".to_vec())])
        .await;
    assert!(late.unwrap_err().is_closed());
    assert_eq!(store.get(Table::Meta, b"b").await.unwrap(), None);
}

#[tokio::test]
async fn hooks_run_once_durable_in_submission_order() {
    let store = FailingStore::new(MemoryStore::new());
    let committer = Committer::builder().max_batch_ops(2).spawn(store.clone());
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let acks: Vec<_> = (0u8..6)
        .map(|i| {
            let order = order.clone();
            let probe = store.clone();
            committer.submit_then(
                vec![Op::put(Table::Log, [i], "")],
                OnDurable::new(move || {
                    // the hook runs after the commit that carried its ops: a round holds
                    // at most two ops, so submission i is in round i / 2 or later
                    order.lock().unwrap().push((i, probe.commits()));
                }),
            )
        })
        .collect();
    for ack in acks.into_iter().rev() {
        ack.await.unwrap();
    }
    let seen = order.lock().unwrap().clone();
    assert_eq!(
        seen.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4, 5]
    );
    for (i, commits) in seen {
        assert!(
            commits > u64::from(i / 2),
            "hook {i} ran after {commits} commits"
        );
    }
}

#[tokio::test]
async fn hooks_never_run_for_a_failed_or_refused_commit() {
    let failing = FailingStore::new(MemoryStore::new());
    let committer = Committer::new(failing.clone());
    let ran = Arc::new(AtomicU64::new(0));
    let hook = |ran: &Arc<AtomicU64>| {
        let ran = ran.clone();
        OnDurable::new(move || {
            ran.fetch_add(1, Ordering::SeqCst);
        })
    };
    failing.fail_commits(true);
    let doomed = committer.submit_then(vec![Op::put(Table::Log, "a", "")], hook(&ran));
    assert!(doomed.await.unwrap_err().is_io());
    failing.fail_commits(false);
    let refused = committer.submit_then(vec![Op::put(Table::Log, "b", "")], hook(&ran));
    assert!(refused.await.unwrap_err().is_poisoned());
    assert_eq!(ran.load(Ordering::SeqCst), 0);
}
