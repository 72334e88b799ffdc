//! Checking a document buffer read from storage before it becomes a [`Doc`](super::Doc).
//!
//! Lookups never read out of bounds whatever the buffer holds, but a damaged buffer could
//! still describe a cycle or a tree deep enough to exhaust the stack of a recursive walk, or
//! hand out keys that are not UTF-8. The check walks the tree the way the builder wrote it
//! (blocks depth-first, each after the one before it, ordinals numbered in the same order),
//! so it accepts exactly the buffers the builder can produce and touches each byte about once.

use super::layout::{
    rec_at, u32_at, HEADER, MAX_INLINE, META_OFF, NODE_COUNT, REC, T_ARRAY, T_INLINE, T_OBJECT,
    T_STR,
};

/// Deepest nesting accepted (serde_json refuses JSON nested deeper than 128).
const MAX_DEPTH: usize = 512;

/// Size of one metadata value (see `layout`).
const META_SIZE: usize = 16;

fn utf8(b: Option<&[u8]>, what: &'static str) -> Result<(), &'static str> {
    match b.map(std::str::from_utf8) {
        Some(Ok(_)) => Ok(()),
        Some(Err(_)) => Err(what),
        None => Err("a key or string lies outside the buffer"),
    }
}

/// Checks that `buf` is a document buffer as the builder writes it.
pub(super) fn check(buf: &[u8]) -> Result<(), &'static str> {
    if buf.len() < HEADER {
        return Err("shorter than the header");
    }
    if u32::try_from(buf.len()).is_err() {
        return Err("longer than 4 GiB");
    }
    let nodes = u32_at(buf, NODE_COUNT) as usize;
    let meta_off = u32_at(buf, META_OFF) as usize;
    let body_end = if meta_off == 0 { buf.len() } else { meta_off };
    if body_end < HEADER || body_end > buf.len() {
        return Err("the metadata offset lies outside the buffer");
    }
    let body = buf.get(..body_end).unwrap_or_default();
    let root = rec_at(body, 0);
    if root.tag != T_OBJECT || root.key_len != 0 {
        return Err("the root is not an object");
    }
    // (record offset, whether its parent is an object, depth) of containers still to visit,
    // in the builder's order
    let mut stack: Vec<(usize, usize)> = vec![(0, 0)];
    let mut seen: usize = 1;
    let mut last_block = 0usize;
    let mut pending: Vec<(usize, usize)> = Vec::new();
    while let Some((off, depth)) = stack.pop() {
        let r = rec_at(body, off);
        let (block, n) = (r.lo() as usize, r.hi() as usize);
        if n == 0 {
            continue;
        }
        if depth >= MAX_DEPTH {
            return Err("nested too deeply");
        }
        if block <= last_block || block < HEADER {
            return Err("a block is out of order");
        }
        last_block = block;
        let end = n
            .checked_mul(REC)
            .and_then(|x| x.checked_add(block + 4))
            .filter(|&e| e <= body_end)
            .ok_or("a block lies outside the buffer")?;
        if u32_at(body, end - 4) as usize != seen {
            return Err("ordinals out of order");
        }
        seen += n;
        if seen > nodes {
            return Err("more nodes than the header counts");
        }
        let object = r.tag == T_OBJECT;
        let mut prev_key: Option<&[u8]> = None;
        pending.clear();
        for i in 0..n {
            let coff = block + i * REC;
            let c = rec_at(body, coff);
            if object {
                let (ko, kl) = (c.key_off as usize, c.key_len as usize);
                let key = body.get(ko..ko + kl);
                utf8(key, "a key is not UTF-8")?;
                if let (Some(p), Some(k)) = (prev_key, key) {
                    if p >= k {
                        return Err("object keys are not sorted and distinct");
                    }
                }
                prev_key = key;
            } else if c.key_len != 0 {
                return Err("an array element has a key");
            }
            match c.tag {
                T_STR => {
                    let (so, sl) = (c.lo() as usize, c.hi() as usize);
                    utf8(body.get(so..so + sl), "a string is not UTF-8")?;
                }
                T_ARRAY | T_OBJECT => pending.push((coff, depth + 1)),
                t if t < T_STR => {}
                t if t >= T_INLINE && usize::from(t - T_INLINE) <= MAX_INLINE => {
                    let len = usize::from(t - T_INLINE);
                    let bytes = c.payload.to_le_bytes();
                    utf8(bytes.get(..len), "an inline string is not UTF-8")?;
                }
                _ => return Err("unknown node tag"),
            }
        }
        // visited in order: the last pushed is popped first
        stack.extend(pending.drain(..).rev());
    }
    if seen != nodes {
        return Err("the header counts another number of nodes");
    }
    if meta_off != 0 {
        check_meta(buf, meta_off, nodes)?;
    }
    Ok(())
}

fn check_meta(buf: &[u8], off: usize, nodes: usize) -> Result<(), &'static str> {
    let count = u32_at(buf, off) as usize;
    let width = u32_at(buf, off + 4) as usize;
    if off + 8 > buf.len() || count == 0 {
        return Err("the metadata region is truncated");
    }
    if !matches!(width, 0 | 1 | 2 | 4) || (width == 0 && count != 1) {
        return Err("the metadata index has an unknown width");
    }
    let index = count
        .checked_mul(META_SIZE)
        .and_then(|x| x.checked_add(off + 8))
        .ok_or("the metadata region is too large")?;
    if nodes.checked_mul(width).and_then(|x| x.checked_add(index)) != Some(buf.len()) {
        return Err("the metadata region has the wrong size");
    }
    let idx = buf.get(index..).unwrap_or_default();
    let ok = match width {
        0 => true,
        1 => idx.iter().all(|&i| usize::from(i) < count),
        2 => idx
            .chunks_exact(2)
            .all(|c| usize::from(u16::from_le_bytes([c[0], c[1]])) < count),
        _ => idx
            .chunks_exact(4)
            .all(|c| (u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as usize) < count),
    };
    if ok {
        Ok(())
    } else {
        Err("a metadata index points past the table")
    }
}
