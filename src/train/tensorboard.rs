//! TensorBoard event files: scalars that the real TensorBoard reads.
//!
//! An event file is a sequence of TFRecords (`u64` length, masked CRC-32C of the length,
//! payload, masked CRC-32C of the payload), each payload an `Event` protobuf. We write only
//! three messages (`Event`, `Summary`, `Summary.Value` with `simple_value`), so they are
//! encoded by hand below rather than through a protobuf code generator and its build step.
//! A resumed run opens a new file in the same directory; TensorBoard reads them all, so the
//! events the killed run wrote past its checkpoint are first cut from the older files
//! ([`truncate_after`]): each step appears once, as in `metrics.jsonl`.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

pub struct EventWriter {
    out: BufWriter<File>,
    path: PathBuf,
}

impl EventWriter {
    /// Creates `dir` and a new event file in it
    /// (`events.out.tfevents.<secs>.<host>.<pid>.<n>`: TensorBoard looks for `tfevents`),
    /// starting with the file-version record.
    pub fn create(dir: &Path) -> io::Result<EventWriter> {
        static OPENED: AtomicU32 = AtomicU32::new(0);
        std::fs::create_dir_all(dir)?;
        let now = wall_time();
        let host = crate::host::hostname();
        let n = OPENED.fetch_add(1, Ordering::Relaxed);
        let name = format!(
            "events.out.tfevents.{}.{host}.{}.{n}",
            now as u64,
            std::process::id()
        );
        let path = dir.join(name);
        let mut writer = EventWriter {
            out: BufWriter::new(File::create_new(&path)?),
            path,
        };
        let mut event = Vec::new();
        put_double(&mut event, 1, now);
        put_bytes(&mut event, 3, b"brain.Event:2");
        writer.record(&event)?;
        writer.flush()?;
        Ok(writer)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// One scalar point of the curve `tag`.
    pub fn scalar(&mut self, tag: &str, step: u64, value: f32) -> io::Result<()> {
        let mut value_msg = Vec::new();
        put_bytes(&mut value_msg, 1, tag.as_bytes());
        put_key(&mut value_msg, 2, WIRE_FIXED32);
        value_msg.extend_from_slice(&value.to_le_bytes());
        let mut summary = Vec::new();
        put_bytes(&mut summary, 1, &value_msg);
        let mut event = Vec::new();
        put_double(&mut event, 1, wall_time());
        put_key(&mut event, 2, WIRE_VARINT);
        put_varint(&mut event, step);
        put_bytes(&mut event, 5, &summary);
        self.record(&event)
    }

    /// Pushes buffered records to the file (call at log boundaries and at the end).
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn record(&mut self, payload: &[u8]) -> io::Result<()> {
        let len = (payload.len() as u64).to_le_bytes();
        self.out.write_all(&len)?;
        self.out.write_all(&masked_crc(&len).to_le_bytes())?;
        self.out.write_all(payload)?;
        self.out.write_all(&masked_crc(payload).to_le_bytes())
    }
}

fn wall_time() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// TFRecord's CRC: CRC-32C, rotated and offset so that CRCs of CRCs stay well spread.
fn masked_crc(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

const WIRE_VARINT: u8 = 0;
const WIRE_FIXED64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_FIXED32: u8 = 5;

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_key(out: &mut Vec<u8>, field: u8, wire: u8) {
    put_varint(out, u64::from(field) << 3 | u64::from(wire));
}

fn put_double(out: &mut Vec<u8>, field: u8, v: f64) {
    put_key(out, field, WIRE_FIXED64);
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, field: u8, bytes: &[u8]) {
    put_key(out, field, WIRE_LEN);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Removes every event of a step after `step` from the event files in `dir` (the records a
/// killed run wrote past the checkpoint its successor resumes from); a record cut short by
/// the kill goes too. Files are rewritten durably; returns the events removed.
pub fn truncate_after(dir: &Path, step: u64) -> io::Result<usize> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(0);
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        if !entry.file_name().to_string_lossy().contains("tfevents") || !path.is_file() {
            continue;
        }
        let bytes = std::fs::read(&path)?;
        let (kept, dropped) = keep_until(&bytes, step);
        if dropped > 0 {
            crate::durable::write(&path, &kept).map_err(io::Error::other)?;
            removed += dropped;
        }
    }
    Ok(removed)
}

/// The records of `bytes` whose event has no step or a step ≤ `step`, and how many were left
/// out (a torn last record counts as one).
fn keep_until(bytes: &[u8], step: u64) -> (Vec<u8>, usize) {
    let mut kept = Vec::with_capacity(bytes.len());
    let mut dropped = 0;
    let mut rest = bytes;
    while !rest.is_empty() {
        let Some(len) = rest
            .get(..8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
        else {
            dropped += 1;
            break;
        };
        let Some(end) = usize::try_from(len).ok().and_then(|l| l.checked_add(16)) else {
            dropped += 1;
            break;
        };
        let Some(record) = rest.get(..end) else {
            dropped += 1;
            break;
        };
        let payload = &record[12..end - 4];
        if event_step(payload).is_none_or(|s| s <= step) {
            kept.extend_from_slice(record);
        } else {
            dropped += 1;
        }
        rest = &rest[end..];
    }
    (kept, dropped)
}

/// `Event.step` (field 2) of an encoded event, if it has one.
fn event_step(mut event: &[u8]) -> Option<u64> {
    while !event.is_empty() {
        let key = take_varint(&mut event)?;
        let (field, wire) = (key >> 3, (key & 7) as u8);
        match wire {
            WIRE_VARINT => {
                let v = take_varint(&mut event)?;
                if field == 2 {
                    return Some(v);
                }
            }
            WIRE_FIXED64 => event = event.get(8..)?,
            WIRE_FIXED32 => event = event.get(4..)?,
            WIRE_LEN => {
                let n = usize::try_from(take_varint(&mut event)?).ok()?;
                event = event.get(n..)?;
            }
            _ => return None,
        }
    }
    None
}

fn take_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = bytes.split_first()?;
        *bytes = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits an event file into payloads, checking both CRCs of every record.
    fn records(bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            let len = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
            assert_eq!(
                u32::from_le_bytes(rest[8..12].try_into().unwrap()),
                masked_crc(&rest[..8])
            );
            let payload = &rest[12..12 + len];
            assert_eq!(
                u32::from_le_bytes(rest[12 + len..16 + len].try_into().unwrap()),
                masked_crc(payload)
            );
            out.push(payload.to_vec());
            rest = &rest[16 + len..];
        }
        out
    }

    #[test]
    fn truncating_keeps_steps_up_to_the_checkpoint_and_drops_torn_records() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::create(dir.path()).unwrap();
        for step in 1..=6u64 {
            w.scalar("train/loss", step, step as f32).unwrap();
        }
        w.flush().unwrap();
        let path = w.path().to_path_buf();
        drop(w);
        // A kill mid-record: half of a seventh record.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&[9, 0, 0]);
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(truncate_after(dir.path(), 4).unwrap(), 3);
        let steps: Vec<Option<u64>> = records(&std::fs::read(&path).unwrap())
            .iter()
            .map(|r| event_step(r))
            .collect();
        assert_eq!(steps, [None, Some(1), Some(2), Some(3), Some(4)]);
        assert_eq!(
            truncate_after(dir.path(), 4).unwrap(),
            0,
            "nothing left to cut"
        );
    }

    #[test]
    fn varints_match_protobuf() {
        let enc = |v| {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            out
        };
        assert_eq!(enc(1), [1]);
        assert_eq!(enc(300), [0xac, 0x02]);
        assert_eq!(enc(u64::MAX).len(), 10);
    }

    #[test]
    fn records_are_framed_with_valid_crcs() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::create(dir.path()).unwrap();
        w.scalar("train/loss", 7, 0.5).unwrap();
        w.flush().unwrap();
        let bytes = std::fs::read(w.path()).unwrap();
        let recs = records(&bytes);
        assert_eq!(recs.len(), 2);
        assert!(recs[0].windows(13).any(|w| w == b"brain.Event:2"));
        // step 7 as field 2, then the summary holding the tag and the little-endian 0.5f32.
        assert!(recs[1].windows(2).any(|w| w == [0x10, 7]));
        assert!(recs[1].windows(10).any(|w| w == b"train/loss"));
        assert!(recs[1].windows(5).any(|w| w == [0x15, 0, 0, 0, 0x3f]));
    }
}
