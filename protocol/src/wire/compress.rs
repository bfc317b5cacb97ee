//! zstd with bounds: compression with a per-thread context and a checksum,
//! decompression into a buffer that never grows past the limit, with the
//! window capped.

use std::cell::RefCell;
use std::fmt;
use std::io::Read;

use super::WireError;

/// Levels above this are clamped to it by [`encode`]: zstd's "ultra" levels
/// (20–22) use windows larger than [`decode`] accepts.
const MAX_LEVEL: i32 = 19;

/// log2 of the largest zstd window [`decode`] accepts (8 MiB). Levels up to 19
/// never use more.
const WINDOW_LOG_MAX: u32 = 23;

pub(super) fn compress(payload: &[u8], level: i32) -> Result<Vec<u8>, WireError> {
    thread_local! {
        /// A compression context per thread, kept between batches: making
        /// one (and faulting in its tables) cost as much as compressing a
        /// small batch.
        static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
            const { RefCell::new(None) };
    }
    let fail = |e: std::io::Error| WireError::Corrupt(format!("compressing batch: {e}"));
    let level = level.min(MAX_LEVEL);
    let new = || -> Result<zstd::bulk::Compressor<'static>, WireError> {
        let mut compressor = zstd::bulk::Compressor::new(level).map_err(fail)?;
        compressor
            .set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))
            .map_err(fail)?;
        Ok(compressor)
    };
    COMPRESSOR.with(|cell| {
        let Ok(mut slot) = cell.try_borrow_mut() else {
            return new()?.compress(payload).map_err(fail);
        };
        if slot.as_ref().is_none_or(|(l, _)| *l != level) {
            *slot = Some((level, new()?));
        }
        match slot.as_mut() {
            Some((_, compressor)) => compressor.compress(payload).map_err(fail),
            None => new()?.compress(payload).map_err(fail),
        }
    })
}

/// Decompresses `body` (one or more zstd frames), refusing more than `max`
/// bytes of output. The output buffer never grows past `max + 1` bytes, the
/// frame header's declared size is never used to allocate, and the zstd
/// window is capped at [`WINDOW_LOG_MAX`].
pub(super) fn decompress_capped(body: &[u8], max: usize) -> Result<Vec<u8>, WireError> {
    thread_local! {
        /// A decompression context per thread, kept between bodies (making
        /// one cost as much as decompressing a small batch). Each use starts
        /// a new session; the window cap is a parameter, which stays.
        static CONTEXT: RefCell<Option<zstd::zstd_safe::DCtx<'static>>> =
            const { RefCell::new(None) };
    }
    let corrupt = |e: &dyn fmt::Display| WireError::Corrupt(format!("zstd: {e}"));
    let new = || {
        let mut context = zstd::zstd_safe::DCtx::try_create()
            .ok_or_else(|| corrupt(&"cannot allocate a decompression context"))?;
        context
            .set_parameter(zstd::zstd_safe::DParameter::WindowLogMax(WINDOW_LOG_MAX))
            .map_err(|code| corrupt(&zstd::zstd_safe::get_error_name(code)))?;
        Ok(context)
    };
    CONTEXT.with(|cell| match cell.try_borrow_mut() {
        Ok(mut slot) => {
            if slot.is_none() {
                *slot = Some(new()?);
            }
            match slot.as_mut() {
                Some(context) => decompress_with(context, body, max),
                None => decompress_with(&mut new()?, body, max),
            }
        }
        Err(_) => decompress_with(&mut new()?, body, max),
    })
}

fn decompress_with(
    context: &mut zstd::zstd_safe::DCtx<'static>,
    body: &[u8],
    max: usize,
) -> Result<Vec<u8>, WireError> {
    let corrupt = |e: &dyn fmt::Display| WireError::Corrupt(format!("zstd: {e}"));
    // Each body starts a new session: zstd asks for a reset after an error,
    // so that a body that failed part-way does not shape the next one's
    // reading. (The buffers the context grew stay, so on a corrupt frame
    // which check fails first, and so zstd's message, can depend on earlier
    // bodies: fuzzing, target `wire`. The outcome does not.)
    context
        .reset(zstd::zstd_safe::ResetDirective::SessionOnly)
        .map_err(|code| corrupt(&zstd::zstd_safe::get_error_name(code)))?;
    let cap = max.saturating_add(1);
    let mut reader = zstd::stream::read::Decoder::with_context(body, context)
        .take(u64::try_from(cap).unwrap_or(u64::MAX));

    // Grow geometrically from a guess based on the body size, never past `cap`.
    let mut out: Vec<u8> = Vec::with_capacity(body.len().saturating_mul(4).max(4096).min(cap));
    loop {
        if out.len() == out.capacity() {
            if out.len() >= cap {
                break;
            }
            let grow = out.capacity().min(cap - out.len());
            out.reserve_exact(grow);
        }
        let filled = out.len();
        let room = out.capacity().min(cap);
        out.resize(room, 0);
        match reader.read(&mut out[filled..]) {
            Ok(0) => {
                out.truncate(filled);
                break;
            }
            Ok(n) => out.truncate(filled + n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => out.truncate(filled),
            Err(e) => return Err(corrupt(&e)),
        }
    }
    if out.len() > max {
        return Err(WireError::TooLarge {
            what: "decompressed",
            limit: max,
        });
    }
    Ok(out)
}
