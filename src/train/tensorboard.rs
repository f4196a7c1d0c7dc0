//! TensorBoard event files: scalars that the real TensorBoard reads.
//!
//! An event file is a sequence of TFRecords (`u64` length, masked CRC-32C of the length,
//! payload, masked CRC-32C of the payload), each payload an `Event` protobuf. We write only
//! three messages (`Event`, `Summary`, `Summary.Value` with `simple_value`), so they are
//! encoded by hand below rather than through a protobuf code generator and its build step.
//! A resumed run opens a new file in the same directory; TensorBoard reads them all.

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
        let host = gethostname::gethostname().to_string_lossy().into_owned();
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
