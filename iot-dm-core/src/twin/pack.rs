//! Laying out a batch of twins' documents for scans.
//!
//! A query over a large store reads the same section of every twin, one after another. When
//! the twins were built one at a time, each twin's documents sit together and a section's
//! documents are spread over the whole heap, one or two per memory page: a scan then pays a
//! page-table walk for nearly every twin, and the processor's prefetcher, which follows
//! addresses that rise within a page, cannot run ahead. [`pack_sections`] copies a batch's
//! documents into fresh allocations made section by section, so the tags of consecutive
//! twins are neighbours in memory, and so are their reported properties.
//!
//! The hub lays out every page of twins it loads from its store this way, without copying:
//! it reads a page's records first and makes their documents section by section
//! ([`install_deferred`]). Documents written later (a patch builds a new document) are
//! allocated wherever the allocator puts them, so a twin store that has seen much churn
//! gradually returns to the interleaved layout; it is packed again on the next load.

use super::binary::{DeferredDocs, DOC_FIELDS};
use super::Twin;
use crate::binary::BinaryError;
use crate::doc::Doc;

/// Copies the documents of `twins` into fresh allocations, section by section: all the tags,
/// then all the desired properties, then all the reported properties, then all the
/// configurations (see the [module docs](self)). Contents do not change.
///
/// Only documents held by their twin alone are copied: the shared empty document and
/// documents another owner also holds stay as they are, so packing never adds a copy.
///
/// This is the layout the hub's load gives each page of 1,024 twins; use it for twins built
/// another way (from JSON, one at a time). Pack batches of about a thousand twins: each
/// batch's new documents are allocated while the old ones still exist, so a batch briefly
/// needs twice its documents' memory.
///
/// ```
/// use iot_dm_core::twin::{pack_sections, Twin};
/// use serde_json::json;
/// let mut twins: Vec<Twin> = (0..3)
///     .map(|i| serde_json::from_value(json!({"deviceId": format!("d{i}"), "tags": {"floor": i}})))
///     .collect::<Result<_, _>>()?;
/// let before: Vec<_> = twins.iter().map(Twin::to_json).collect();
/// pack_sections(&mut twins);
/// assert_eq!(twins.iter().map(Twin::to_json).collect::<Vec<_>>(), before);
/// # Ok::<(), serde_json::Error>(())
/// ```
pub fn pack_sections(twins: &mut [Twin]) {
    let empty = Doc::empty();
    // new documents are all allocated before any old one is freed, so that they come from
    // fresh memory in order rather than from the holes the old ones would leave
    let fresh: Vec<Vec<Option<Doc>>> = (0..DOC_FIELDS.len())
        .map(|section| {
            twins
                .iter()
                .map(|t| {
                    let d = t.docs()[section];
                    (!d.same_buffer(&empty) && d.is_unique()).then(|| d.copied())
                })
                .collect()
        })
        .collect();
    for (i, t) in twins.iter_mut().enumerate() {
        for (slot, section) in t.docs_mut().into_iter().zip(&fresh) {
            if let Some(Some(d)) = section.get(i) {
                *slot = d.clone();
            }
        }
    }
    // dropping the vectors' clones makes each twin the sole owner of its documents again
    drop(fresh);
}

/// Makes the documents of a batch of twins read with [`Twin::read_binary_deferred`], section
/// by section: all the tags, then all the desired properties, and so on, so that each
/// section's documents lie in consecutive memory as [`pack_sections`] would leave them,
/// without a copy. This is how the hub loads its store, a page of records at a time.
///
/// On malformed document bytes, returns the index in `batch` of the twin they belong to.
///
/// ```
/// use iot_dm_core::binary::Reader;
/// use iot_dm_core::twin::{install_deferred, Twin};
/// use serde_json::json;
/// let stored: Vec<Vec<u8>> = (0..3)
///     .map(|i| {
///         let twin: Twin = serde_json::from_value(json!({"deviceId": format!("d{i}"), "tags": {"floor": i}}))?;
///         let mut out = Vec::new();
///         twin.write_binary(&mut out);
///         Ok(out)
///     })
///     .collect::<Result<_, serde_json::Error>>()?;
/// let mut read = Vec::new();
/// for bytes in &stored {
///     read.push(Twin::read_binary_deferred(&mut Reader::new(bytes))?);
/// }
/// let mut batch: Vec<_> = read.iter_mut().map(|(t, d)| (t, *d)).collect();
/// install_deferred(&mut batch).map_err(|(_, e)| e)?;
/// assert_eq!(read[2].0.tags().to_value(), json!({"floor": 2}));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn install_deferred(
    batch: &mut [(&mut Twin, DeferredDocs<'_>)],
) -> Result<(), (usize, BinaryError)> {
    for section in 0..DOC_FIELDS.len() {
        for (i, (twin, docs)) in batch.iter_mut().enumerate() {
            docs.install(twin, section).map_err(|e| (i, e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn twin(i: u32) -> Twin {
        let mut t: Twin = serde_json::from_value(json!({
            "deviceId": format!("dev-{i}"),
            "tags": {"region": "us-west", "floor": i},
            "properties": {
                "desired": {"interval": i},
                "reported": {"firmware": {"version": "1.0"}},
            },
        }))
        .unwrap();
        t.version = 3 + u64::from(i);
        t
    }

    #[test]
    fn packing_keeps_every_twin_exactly_and_moves_its_documents() {
        let mut twins: Vec<Twin> = (0..50).map(twin).collect();
        let before: Vec<_> = twins.iter().map(Twin::to_json).collect();
        let old: Vec<*const u8> = twins.iter().map(|t| t.tags.as_bytes().as_ptr()).collect();
        pack_sections(&mut twins);
        assert_eq!(twins.iter().map(Twin::to_json).collect::<Vec<_>>(), before);
        for (t, p) in twins.iter().zip(old) {
            assert_ne!(t.tags.as_bytes().as_ptr(), p, "tags were not copied");
            assert!(t.tags.is_unique() && t.reported.doc.is_unique());
        }
        // a section's documents are laid out in twin order
        let tags: Vec<usize> = twins
            .iter()
            .map(|t| t.tags.as_bytes().as_ptr() as usize)
            .collect();
        assert!(tags.windows(2).filter(|w| w[0] < w[1]).count() >= tags.len() * 9 / 10);
    }

    #[test]
    fn deferred_documents_are_installed_section_by_section_and_errors_name_the_twin() {
        use crate::binary::Reader;
        let twins: Vec<Twin> = (0..40).map(twin).collect();
        let stored: Vec<Vec<u8>> = twins
            .iter()
            .map(|t| {
                let mut out = Vec::new();
                t.write_binary(&mut out);
                out
            })
            .collect();
        let mut read: Vec<_> = stored
            .iter()
            .map(|b| Twin::read_binary_deferred(&mut Reader::new(b)).unwrap())
            .collect();
        let mut batch: Vec<_> = read.iter_mut().map(|(t, d)| (t, *d)).collect();
        install_deferred(&mut batch).unwrap();
        for ((got, _), want) in read.iter().zip(&twins) {
            assert_eq!(got, want);
        }
        let tags: Vec<usize> = read
            .iter()
            .map(|(t, _)| t.tags.as_bytes().as_ptr() as usize)
            .collect();
        assert!(tags.windows(2).filter(|w| w[0] < w[1]).count() >= tags.len() * 9 / 10);

        // a damaged reported document in the 4th record
        let mut damaged = twins[3].clone();
        damaged.reported.doc = Doc::empty();
        let mut bytes = Vec::new();
        damaged.write_binary(&mut bytes);
        let mut ok = Vec::new();
        twins[3].write_binary(&mut ok);
        // same layout up to the reported document: cut into its bytes
        let at = (0..bytes.len()).find(|&i| bytes[i] != ok[i]).unwrap();
        ok[at + 3] ^= 0xFF;
        let mut read: Vec<_> = stored[..3]
            .iter()
            .chain(std::iter::once(&ok))
            .map(|b| Twin::read_binary_deferred(&mut Reader::new(b)).unwrap())
            .collect();
        let mut batch: Vec<_> = read.iter_mut().map(|(t, d)| (t, *d)).collect();
        let (i, e) = install_deferred(&mut batch).unwrap_err();
        assert_eq!(i, 3);
        assert!(e.to_string().contains("twin.properties.reported"), "{e}");
    }

    #[test]
    fn shared_and_empty_documents_are_left_alone() {
        let mut twins = vec![twin(1), Twin::new("empty".parse().unwrap())];
        let shared = twins[0].reported.doc.clone();
        pack_sections(&mut twins);
        assert!(twins[0].reported.doc.same_buffer(&shared));
        assert!(twins[1].tags.same_buffer(&Doc::empty()));
        assert!(!twins[0].tags.same_buffer(&shared));
    }
}
