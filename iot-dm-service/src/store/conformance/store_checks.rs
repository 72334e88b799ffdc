//! Checks of a backend's own contract: reads, writes, scans, atomicity, persistence.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::{keys, keys_of, v, Fixture};
use crate::store::{Op, Store, StoreError, Table, MAX_KEY_LEN, MAX_VALUE_LEN};

/// Point writes and reads: put, overwrite, delete, delete of a missing key, empty batch.
pub async fn put_get_delete<F: Fixture>(fx: &F) {
    let s = fx.open().await;
    let t = Table::Devices;
    assert_eq!(s.get(t, b"a").await.unwrap(), None);
    assert_eq!(s.len(t).await.unwrap(), 0);
    s.commit(vec![Op::put(t, "a", "1"), Op::put(t, "b", "2")])
        .await
        .unwrap();
    assert_eq!(s.get(t, b"a").await.unwrap(), v("1"));
    assert_eq!(s.get(t, b"b").await.unwrap(), v("2"));
    assert_eq!(s.len(t).await.unwrap(), 2);

    s.commit(vec![Op::put(t, "a", "3")]).await.unwrap();
    assert_eq!(s.get(t, b"a").await.unwrap(), v("3"));
    assert_eq!(s.len(t).await.unwrap(), 2);

    s.commit(vec![Op::delete(t, "a"), Op::delete(t, "never-there")])
        .await
        .unwrap();
    assert_eq!(s.get(t, b"a").await.unwrap(), None);
    assert_eq!(s.get(t, b"b").await.unwrap(), v("2"));
    assert_eq!(s.len(t).await.unwrap(), 1);

    s.commit(Vec::new()).await.unwrap();
    assert_eq!(s.len(t).await.unwrap(), 1);
    assert!(!s.backend().is_empty());
}

/// `scan` pages through thousands of keys in ascending order with `after` and `limit`.
pub async fn scan_pages_in_key_order<F: Fixture>(fx: &F) {
    const N: u32 = 3000;
    const PAGE: usize = 137;
    let s = fx.open().await;
    let t = Table::Log;
    let value = |i: u32| i.to_le_bytes().repeat(3);
    // Written in a scrambled order (1237 is prime to 3000), in three batches.
    let order: Vec<u32> = (0..N).map(|i| i * 1237 % N).collect();
    for chunk in order.chunks(1000) {
        let ops = chunk
            .iter()
            .map(|&i| Op::put(t, i.to_be_bytes(), value(i)))
            .collect();
        s.commit(ops).await.unwrap();
    }
    assert_eq!(s.len(t).await.unwrap(), u64::from(N));

    let mut seen = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = s.scan(t, after.as_deref(), PAGE).await.unwrap();
        assert!(page.len() <= PAGE);
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        let full = page.len() == PAGE;
        seen.extend(page);
        if !full {
            break;
        }
    }
    assert_eq!(seen.len(), N as usize);
    for (i, (k, val)) in (0..N).zip(&seen) {
        assert_eq!(k, &i.to_be_bytes().to_vec(), "key {i} out of order");
        assert_eq!(val, &value(i), "value of key {i}");
    }

    assert_eq!(s.scan(t, None, usize::MAX).await.unwrap().len(), N as usize);
    assert!(s.scan(t, None, 0).await.unwrap().is_empty());
    let last = (N - 1).to_be_bytes();
    assert!(s.scan(t, Some(&last), 10).await.unwrap().is_empty());
    // `after` need not be a stored key.
    let between = [0, 0, 0, 5, 0];
    let page = s.scan(t, Some(&between), 2).await.unwrap();
    assert_eq!(
        keys_of(&page),
        vec![6u32.to_be_bytes().to_vec(), 7u32.to_be_bytes().to_vec()]
    );
    // Other tables are not part of the scan.
    assert!(s.scan(Table::Jobs, None, 10).await.unwrap().is_empty());
}

/// Keys order as byte strings: shorter prefixes first, then by unsigned bytes.
pub async fn scan_orders_bytes_lexicographically<F: Fixture>(fx: &F) {
    let s = fx.open().await;
    let t = Table::Archive;
    let sorted: Vec<Vec<u8>> = vec![
        vec![],
        vec![0],
        vec![0, 0],
        vec![1],
        vec![1, 0],
        vec![0x7f, 0xff],
        vec![0x80],
        vec![0xff],
        vec![0xff, 0xff],
    ];
    let ops = sorted
        .iter()
        .rev()
        .map(|k| Op::put(t, k.clone(), k.clone()))
        .collect();
    s.commit(ops).await.unwrap();
    assert_eq!(keys(&s, t).await, sorted);
    assert_eq!(
        keys_of(&s.scan(t, Some(&[]), usize::MAX).await.unwrap()),
        sorted[1..]
    );
    assert_eq!(
        keys_of(&s.scan(t, Some(&[1]), 3).await.unwrap()),
        sorted[4..7]
    );
    assert_eq!(
        keys_of(&s.scan(t, Some(&[0xfe]), 10).await.unwrap()),
        sorted[7..]
    );
}

/// `DeleteRange` removes `[start, end)`: start included, end excluded, bounds need not exist,
/// an empty range is a no-op and a reversed one fails the whole batch.
pub async fn delete_range_bounds<F: Fixture>(fx: &F) {
    let s = fx.open().await;
    let t = Table::Jobs;
    let all: Vec<u8> = (0..20).collect();
    let ops = all.iter().map(|&i| Op::put(t, [i], [i])).collect();
    s.commit(ops).await.unwrap();
    s.commit(vec![Op::put(Table::Meta, [7], "other table")])
        .await
        .unwrap();

    s.commit(vec![Op::delete_range(t, [5], [10])])
        .await
        .unwrap();
    let expect: Vec<Vec<u8>> = all
        .iter()
        .filter(|&&i| !(5..10).contains(&i))
        .map(|&i| vec![i])
        .collect();
    assert_eq!(keys(&s, t).await, expect);

    s.commit(vec![Op::delete_range(t, [15], [15])])
        .await
        .unwrap();
    assert_eq!(keys(&s, t).await, expect);

    // Bounds that are not stored keys: [0x0b] < start, [0x0d] < end.
    s.commit(vec![Op::delete_range(t, [0x0b, 0x00], [0x0d, 0x80])])
        .await
        .unwrap();
    let expect: Vec<Vec<u8>> = expect
        .into_iter()
        .filter(|k| k != &[0x0c] && k != &[0x0d])
        .collect();
    assert_eq!(keys(&s, t).await, expect);
    assert!(expect.contains(&vec![0x0b]) && expect.contains(&vec![0x0e]));

    let err = s
        .commit(vec![
            Op::put(t, "applied?", ""),
            Op::delete_range(t, [9], [3]),
        ])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::InvalidRange {
                table: Table::Jobs,
                index: 1
            }
        ),
        "{err}"
    );
    assert_eq!(s.get(t, b"applied?").await.unwrap(), None);
    assert_eq!(keys(&s, t).await, expect);

    s.commit(vec![Op::delete_range(t, Vec::new(), [0xff; 4])])
        .await
        .unwrap();
    assert_eq!(s.len(t).await.unwrap(), 0);
    assert_eq!(s.get(Table::Meta, &[7]).await.unwrap(), v("other table"));
}

/// A batch applies in order and all-or-nothing.
pub async fn batches_are_atomic_and_ordered<F: Fixture>(fx: &F) {
    let s = fx.open().await;
    let t = Table::Policies;
    s.commit(vec![Op::put(t, "k", "1"), Op::delete(t, "k")])
        .await
        .unwrap();
    assert_eq!(s.get(t, b"k").await.unwrap(), None);

    s.commit(vec![Op::delete(t, "k"), Op::put(t, "k", "2")])
        .await
        .unwrap();
    assert_eq!(s.get(t, b"k").await.unwrap(), v("2"));

    s.commit(vec![
        Op::put(t, "k", "a"),
        Op::put(t, "k", "b"),
        Op::put(t, "k", "c"),
    ])
    .await
    .unwrap();
    assert_eq!(s.get(t, b"k").await.unwrap(), v("c"));

    s.commit(vec![
        Op::delete_range(t, "", "zzz"),
        Op::put(t, "m", "after range"),
    ])
    .await
    .unwrap();
    assert_eq!(keys(&s, t).await, vec![b"m".to_vec()]);

    let bad_batches = [
        vec![
            Op::put(t, "x", "1"),
            Op::delete(t, "m"),
            Op::put(t, "y", vec![0; MAX_VALUE_LEN + 1]),
        ],
        vec![
            Op::put(t, "x", "1"),
            Op::delete(t, "m"),
            Op::delete(t, vec![0; MAX_KEY_LEN + 1]),
        ],
        vec![
            Op::put(t, "x", "1"),
            Op::delete(t, "m"),
            Op::delete_range(t, "b", "a"),
        ],
    ];
    for batch in bad_batches {
        let err = s.commit(batch).await.unwrap_err();
        assert!(err.is_invalid_batch(), "{err}");
        assert_eq!(
            s.get(t, b"x").await.unwrap(),
            None,
            "part of a failed batch applied"
        );
        assert_eq!(s.get(t, b"m").await.unwrap(), v("after range"));
    }
    assert_eq!(s.len(t).await.unwrap(), 1);
}

/// A reader never sees half a batch.
pub async fn readers_see_whole_batches<F: Fixture>(fx: &F) {
    const ROUNDS: u32 = 40;
    let s = Arc::new(fx.open().await);
    let t = Table::Meta;
    s.commit(vec![
        Op::put(t, "a", 0u32.to_be_bytes()),
        Op::put(t, "b", 0u32.to_be_bytes()),
    ])
    .await
    .unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (s, done) = (Arc::clone(&s), Arc::clone(&done));
        tokio::spawn(async move {
            let mut reads = 0u32;
            while !done.load(Ordering::SeqCst) || reads == 0 {
                let page = s.scan(t, None, 10).await.unwrap();
                assert_eq!(page.len(), 2);
                assert_eq!(page[0].1, page[1].1, "a reader saw half a batch");
                reads += 1;
                tokio::task::yield_now().await;
            }
        })
    };
    for i in 1..=ROUNDS {
        let val = i.to_be_bytes();
        s.commit(vec![Op::put(t, "a", val), Op::put(t, "b", val)])
            .await
            .unwrap();
    }
    done.store(true, Ordering::SeqCst);
    reader.await.unwrap();
    assert_eq!(
        s.get(t, b"b").await.unwrap(),
        Some(ROUNDS.to_be_bytes().to_vec())
    );
}

/// Tables share no keys, sizes or ranges.
pub async fn tables_are_independent<F: Fixture>(fx: &F) {
    let s = fx.open().await;
    let ops = Table::ALL
        .iter()
        .map(|&t| Op::put(t, "k", t.name()))
        .collect();
    s.commit(ops).await.unwrap();
    for t in Table::ALL {
        assert_eq!(s.get(t, b"k").await.unwrap(), v(t.name()));
        assert_eq!(s.len(t).await.unwrap(), 1);
    }
    s.commit(vec![
        Op::delete(Table::Devices, "k"),
        Op::delete_range(Table::Log, "", "z"),
        Op::put(Table::Jobs, "j", ""),
    ])
    .await
    .unwrap();
    for t in Table::ALL {
        let expect = match t {
            Table::Devices | Table::Log => None,
            _ => v(t.name()),
        };
        assert_eq!(s.get(t, b"k").await.unwrap(), expect, "table {t}");
    }
    assert_eq!(s.len(Table::Jobs).await.unwrap(), 2);
    assert_eq!(s.len(Table::Devices).await.unwrap(), 0);
    assert_eq!(s.len(Table::Configurations).await.unwrap(), 1);
}

/// Empty values are stored and differ from absent ones; the empty key is a key.
pub async fn empty_keys_and_values<F: Fixture>(fx: &F) {
    let s = fx.open().await;
    let t = Table::Configurations;
    s.commit(vec![Op::put(t, "", ""), Op::put(t, "e", "")])
        .await
        .unwrap();
    assert_eq!(s.get(t, b"").await.unwrap(), Some(Vec::new()));
    assert_eq!(s.get(t, b"e").await.unwrap(), Some(Vec::new()));
    assert_eq!(s.get(t, b"f").await.unwrap(), None);
    assert_eq!(s.len(t).await.unwrap(), 2);
    assert_eq!(
        s.scan(t, None, 10).await.unwrap(),
        vec![(Vec::new(), Vec::new()), (b"e".to_vec(), Vec::new())]
    );
    s.commit(vec![Op::delete(t, "")]).await.unwrap();
    assert_eq!(s.get(t, b"").await.unwrap(), None);
    assert_eq!(s.len(t).await.unwrap(), 1);
}

/// 1 MiB values round-trip; keys and values past the limits fail with typed errors.
pub async fn large_values_and_limits<F: Fixture>(fx: &F) {
    let s = fx.open().await;
    let t = Table::Archive;
    let big = |seed: u8| -> Vec<u8> {
        (0..1024 * 1024u32)
            .map(|i| (i % 251) as u8 ^ seed)
            .collect()
    };
    s.commit(vec![Op::put(t, "one", big(1)), Op::put(t, "two", big(2))])
        .await
        .unwrap();
    assert_eq!(s.get(t, b"one").await.unwrap(), Some(big(1)));
    let all = s.scan(t, None, 10).await.unwrap();
    assert_eq!(
        all,
        vec![(b"one".to_vec(), big(1)), (b"two".to_vec(), big(2))]
    );
    s.commit(vec![Op::put(t, "one", "small")]).await.unwrap();
    assert_eq!(s.get(t, b"one").await.unwrap(), v("small"));

    let long_key = vec![b'k'; MAX_KEY_LEN];
    s.commit(vec![Op::put(t, long_key.clone(), "at the limit")])
        .await
        .unwrap();
    assert_eq!(s.get(t, &long_key).await.unwrap(), v("at the limit"));

    let err = s
        .commit(vec![Op::put(t, vec![b'k'; MAX_KEY_LEN + 1], "")])
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::KeyTooLarge { len, limit: MAX_KEY_LEN, .. } if len == MAX_KEY_LEN + 1),
        "{err}"
    );
    let err = s
        .commit(vec![Op::put(t, "huge", vec![0; MAX_VALUE_LEN + 1])])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::ValueTooLarge {
                table: Table::Archive,
                index: 0,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(s.get(t, b"huge").await.unwrap(), None);
    assert_eq!(s.len(t).await.unwrap(), 3);
}

/// Committed data survives dropping and reopening the store.
pub async fn reopen_persists<F: Fixture>(fx: &F) {
    let s = fx.open().await;
    s.commit(vec![
        Op::put(Table::Devices, "d1", "twin-1"),
        Op::put(Table::Devices, "d2", "twin-2"),
        Op::put(Table::Meta, "format", [1]),
        Op::put(Table::Log, "gone", ""),
    ])
    .await
    .unwrap();
    s.commit(vec![
        Op::delete(Table::Log, "gone"),
        Op::put(Table::Devices, "d2", "twin-2b"),
    ])
    .await
    .unwrap();
    drop(s);

    let s = fx.open().await;
    assert_eq!(s.get(Table::Devices, b"d1").await.unwrap(), v("twin-1"));
    assert_eq!(s.get(Table::Devices, b"d2").await.unwrap(), v("twin-2b"));
    assert_eq!(s.get(Table::Meta, b"format").await.unwrap(), Some(vec![1]));
    assert_eq!(s.len(Table::Log).await.unwrap(), 0);
    assert_eq!(s.len(Table::Devices).await.unwrap(), 2);
    s.commit(vec![Op::delete(Table::Devices, "d1")])
        .await
        .unwrap();
    drop(s);

    let s = fx.open().await;
    assert_eq!(
        s.scan(Table::Devices, None, 10).await.unwrap(),
        vec![(b"d2".to_vec(), b"twin-2b".to_vec())]
    );
}

/// Commits from many tasks at once all land, whole.
pub async fn concurrent_commits<F: Fixture>(fx: &F) {
    const TASKS: u32 = 8;
    const COMMITS: u32 = 10;
    const OPS: u32 = 5;
    let s = Arc::new(fx.open().await);
    let t = Table::Devices;
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                for c in 0..COMMITS {
                    let mut ops: Vec<Op> = (0..OPS)
                        .map(|o| Op::put(t, format!("{task:02}-{c:02}-{o}"), task.to_be_bytes()))
                        .collect();
                    ops.push(Op::put(Table::Meta, "last", task.to_be_bytes()));
                    s.commit(ops).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(s.len(t).await.unwrap(), u64::from(TASKS * COMMITS * OPS));
    for (k, val) in s.scan(t, None, usize::MAX).await.unwrap() {
        let task: u32 = std::str::from_utf8(&k[..2]).unwrap().parse().unwrap();
        assert_eq!(val, task.to_be_bytes().to_vec());
    }
    let last = s.get(Table::Meta, b"last").await.unwrap().unwrap();
    let last = u32::from_be_bytes(last.try_into().unwrap());
    assert!(last < TASKS);
}
