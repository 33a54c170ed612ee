//! The two container formats of a model file: numpy's `.npy` arrays inside a ZIP archive, as
//! `numpy.savez` writes them (members stored, not compressed). Only the types a model file holds
//! are read and written: little-endian `f4`, `f8`, `i8`, `b1` and `U` (UTF-32) arrays.

use crate::error::{Error, Result};

/// One array of a model file: its numpy type, shape and raw little-endian bytes.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Array {
    /// numpy's `dtype.str`: `<f4`, `<f8`, `<i8`, `|b1` or `<U{n}`.
    pub descr: String,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

impl Array {
    pub fn scalar_str(text: &str) -> Self {
        let chars: Vec<char> = text.chars().collect();
        let width = chars.len().max(1);
        let mut bytes = Vec::with_capacity(4 * width);
        for c in &chars {
            bytes.extend_from_slice(&(*c as u32).to_le_bytes());
        }
        bytes.resize(4 * width, 0);
        Self {
            descr: format!("<U{width}"),
            shape: Vec::new(),
            bytes,
        }
    }

    pub fn scalar_i64(value: i64) -> Self {
        Self {
            descr: "<i8".into(),
            shape: Vec::new(),
            bytes: value.to_le_bytes().to_vec(),
        }
    }

    pub fn scalar_f64(value: f64) -> Self {
        Self {
            descr: "<f8".into(),
            shape: Vec::new(),
            bytes: value.to_le_bytes().to_vec(),
        }
    }

    pub fn scalar_bool(value: bool) -> Self {
        Self {
            descr: "|b1".into(),
            shape: Vec::new(),
            bytes: vec![value as u8],
        }
    }

    /// The text of a 0-d `U` array.
    pub fn as_str(&self, name: &str) -> Result<String> {
        if !self.descr.starts_with("<U") || !self.shape.is_empty() {
            return Err(invalid(format!("entry {name:?} is not a string")));
        }
        let mut text = String::new();
        for unit in self.bytes.chunks_exact(4) {
            let code = u32::from_le_bytes(unit.try_into().expect("4 bytes"));
            if code == 0 {
                break;
            }
            text.push(
                char::from_u32(code)
                    .ok_or_else(|| invalid(format!("entry {name:?} is not valid text")))?,
            );
        }
        Ok(text)
    }

    /// The value of a 0-d integer array.
    pub fn as_i64(&self, name: &str) -> Result<i64> {
        match (self.descr.as_str(), self.shape.is_empty()) {
            ("<i8", true) => Ok(i64::from_le_bytes(self.bytes[..8].try_into().expect("8"))),
            _ => Err(invalid(format!("entry {name:?} is not an int64 scalar"))),
        }
    }

    /// The value of a 0-d float (or integer) array.
    pub fn as_f64(&self, name: &str) -> Result<f64> {
        match (self.descr.as_str(), self.shape.is_empty()) {
            ("<f8", true) => Ok(f64::from_le_bytes(self.bytes[..8].try_into().expect("8"))),
            ("<i8", true) => Ok(self.as_i64(name)? as f64),
            _ => Err(invalid(format!("entry {name:?} is not a float scalar"))),
        }
    }

    /// The value of a 0-d bool array.
    pub fn as_bool(&self, name: &str) -> Result<bool> {
        match (
            self.descr.as_str(),
            self.shape.is_empty(),
            self.bytes.first(),
        ) {
            ("|b1", true, Some(&b)) if b <= 1 => Ok(b == 1),
            _ => Err(invalid(format!("entry {name:?} is not a bool scalar"))),
        }
    }

    fn item_size(descr: &str) -> Option<usize> {
        match descr {
            "<f4" => Some(4),
            "<f8" | "<i8" => Some(8),
            "|b1" => Some(1),
            _ => descr
                .strip_prefix("<U")
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|&n| n > 0)
                .map(|n| 4 * n),
        }
    }

    /// The shape as the checksum spells it: `repr(tuple(shape))` of
    /// `numpy.ascontiguousarray(array)`, which makes a 0-d array 1-d.
    pub fn shape_repr(&self) -> String {
        match self.shape.as_slice() {
            [] => "(1,)".into(),
            [n] => format!("({n},)"),
            dims => {
                let parts: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
                format!("({})", parts.join(", "))
            }
        }
    }
}

pub(crate) fn invalid(message: String) -> Error {
    Error::InvalidFile(message)
}

// --- .npy -----------------------------------------------------------------------------------

const NPY_MAGIC: &[u8] = b"\x93NUMPY";

/// `array` as a version 1.0 `.npy` file.
fn npy_bytes(array: &Array) -> Vec<u8> {
    let shape = match array.shape.as_slice() {
        [] => "()".to_string(),
        [n] => format!("({n},)"),
        dims => {
            let parts: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
            format!("({})", parts.join(", "))
        }
    };
    let mut header = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {shape}, }}",
        array.descr
    );
    // numpy pads the header with spaces so that the data starts at a multiple of 64 bytes.
    let unpadded = NPY_MAGIC.len() + 2 + 2 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(NPY_MAGIC.len() + 4 + header.len() + array.bytes.len());
    out.extend_from_slice(NPY_MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&array.bytes);
    out
}

/// The array in a `.npy` file, after checking that its header and size agree.
fn parse_npy(name: &str, bytes: &[u8]) -> Result<Array> {
    let bad = |what: &str| invalid(format!("entry {name:?}: {what}"));
    if bytes.len() < 10 || &bytes[..6] != NPY_MAGIC {
        return Err(bad("not a .npy array"));
    }
    let (header_len, start) = match (bytes[6], bytes[7]) {
        (1, 0) => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        (2, 0) | (3, 0) if bytes.len() >= 12 => (
            u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")) as usize,
            12,
        ),
        _ => return Err(bad("unsupported .npy version")),
    };
    let header = bytes
        .get(start..start + header_len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| bad("truncated header"))?;
    let field = |key: &str| -> Option<&str> {
        let at = header.find(&format!("'{key}':"))? + key.len() + 3;
        Some(header[at..].trim_start())
    };
    let descr = field("descr")
        .and_then(|rest| rest.strip_prefix('\'')?.split('\'').next())
        .ok_or_else(|| bad("no descr"))?
        .to_string();
    if field("fortran_order").is_none_or(|rest| !rest.starts_with("False")) {
        return Err(bad("only C-ordered arrays are read"));
    }
    let dims = field("shape")
        .and_then(|rest| rest.strip_prefix('(')?.split(')').next())
        .ok_or_else(|| bad("no shape"))?;
    let shape = dims
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| d.parse::<usize>().map_err(|_| bad("a bad shape")))
        .collect::<Result<Vec<usize>>>()?;
    let item = Array::item_size(&descr).ok_or_else(|| bad(&format!("unsupported type {descr}")))?;
    let count = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .and_then(|n| n.checked_mul(item))
        .ok_or_else(|| bad("a shape too large"))?;
    let data = &bytes[start + header_len..];
    if data.len() != count {
        return Err(bad(&format!(
            "declares {count} bytes of data but holds {}",
            data.len()
        )));
    }
    Ok(Array {
        descr,
        shape,
        bytes: data.to_vec(),
    })
}

// --- ZIP ------------------------------------------------------------------------------------

const LOCAL_HEADER: u32 = 0x0403_4b50;
const CENTRAL_HEADER: u32 = 0x0201_4b50;
const END_OF_CENTRAL: u32 = 0x0605_4b50;

/// The CRC-32 (IEEE) that ZIP records for each member.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A ZIP archive of `name.npy` members, stored, in the order given.
pub(crate) fn write_archive(entries: &[(String, Array)]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, array) in entries {
        let file_name = format!("{name}.npy");
        let data = npy_bytes(array);
        let (offset, size) = (u32::try_from(out.len()), u32::try_from(data.len()));
        let (Ok(offset), Ok(size)) = (offset, size) else {
            return Err(invalid(
                "the model is too large for a ZIP archive without ZIP64".into(),
            ));
        };
        let crc = crc32(&data);
        let common = |out: &mut Vec<u8>| {
            out.extend_from_slice(&20u16.to_le_bytes()); // version needed
            out.extend_from_slice(&0u16.to_le_bytes()); // flags
            out.extend_from_slice(&0u16.to_le_bytes()); // stored
            out.extend_from_slice(&0u16.to_le_bytes()); // time
            out.extend_from_slice(&0x21u16.to_le_bytes()); // date: 1980-01-01
            out.extend_from_slice(&crc.to_le_bytes());
            out.extend_from_slice(&size.to_le_bytes());
            out.extend_from_slice(&size.to_le_bytes());
            out.extend_from_slice(&(file_name.len() as u16).to_le_bytes());
            out.extend_from_slice(&0u16.to_le_bytes()); // extra
        };
        out.extend_from_slice(&LOCAL_HEADER.to_le_bytes());
        common(&mut out);
        out.extend_from_slice(file_name.as_bytes());
        out.extend_from_slice(&data);

        central.extend_from_slice(&CENTRAL_HEADER.to_le_bytes());
        central.extend_from_slice(&20u16.to_le_bytes()); // version made by
        common(&mut central);
        central.extend_from_slice(&0u16.to_le_bytes()); // comment
        central.extend_from_slice(&0u16.to_le_bytes()); // disk
        central.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
        central.extend_from_slice(&0u32.to_le_bytes()); // external attributes
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(file_name.as_bytes());
    }
    let central_offset = out.len() as u32;
    let count = entries.len() as u16;
    out.extend_from_slice(&central);
    out.extend_from_slice(&END_OF_CENTRAL.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&central_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    Ok(out)
}

fn u16_at(bytes: &[u8], at: usize) -> Result<u16> {
    bytes
        .get(at..at + 2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .ok_or_else(|| invalid("the archive is truncated".into()))
}

fn u32_at(bytes: &[u8], at: usize) -> Result<u32> {
    bytes
        .get(at..at + 4)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
        .ok_or_else(|| invalid("the archive is truncated".into()))
}

/// Every `name.npy` member of a ZIP archive, in archive order. Members must be stored (as
/// `numpy.savez` writes them) and match their CRC-32.
pub(crate) fn read_archive(bytes: &[u8]) -> Result<Vec<(String, Array)>> {
    // The end record is the last 22 bytes unless the archive has a comment.
    let end = (0..bytes.len().saturating_sub(21))
        .rev()
        .take(22 + u16::MAX as usize)
        .find(|&at| u32_at(bytes, at).ok() == Some(END_OF_CENTRAL))
        .ok_or_else(|| invalid("not a ZIP archive (no end of central directory)".into()))?;
    let count = u16_at(bytes, end + 10)? as usize;
    let mut at = u32_at(bytes, end + 16)? as usize;
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        if u32_at(bytes, at)? != CENTRAL_HEADER {
            return Err(invalid("a damaged central directory".into()));
        }
        let method = u16_at(bytes, at + 10)?;
        let crc = u32_at(bytes, at + 16)?;
        let size = u32_at(bytes, at + 20)? as usize;
        let name_len = u16_at(bytes, at + 28)? as usize;
        let extra_len = u16_at(bytes, at + 30)? as usize;
        let comment_len = u16_at(bytes, at + 32)? as usize;
        let local = u32_at(bytes, at + 42)? as usize;
        let file_name = bytes
            .get(at + 46..at + 46 + name_len)
            .and_then(|n| std::str::from_utf8(n).ok())
            .ok_or_else(|| invalid("a member name is not text".into()))?;
        let name = file_name
            .strip_suffix(".npy")
            .ok_or_else(|| invalid(format!("unexpected member {file_name:?}")))?
            .to_string();
        if method != 0 {
            return Err(invalid(format!(
                "entry {name:?} is compressed; model files store their members"
            )));
        }
        if u32_at(bytes, local)? != LOCAL_HEADER {
            return Err(invalid(format!("entry {name:?}: a damaged local header")));
        }
        let data_at =
            local + 30 + u16_at(bytes, local + 26)? as usize + u16_at(bytes, local + 28)? as usize;
        let data = bytes
            .get(data_at..data_at + size)
            .ok_or_else(|| invalid(format!("entry {name:?} is truncated")))?;
        if crc32(data) != crc {
            return Err(invalid(format!("entry {name:?} fails its CRC-32")));
        }
        if entries.iter().any(|(n, _): &(String, Array)| *n == name) {
            return Err(invalid(format!("entry {name:?} appears twice")));
        }
        entries.push((name.clone(), parse_npy(&name, data)?));
        at += 46 + name_len + extra_len + comment_len;
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_of_a_known_string() {
        // The standard check value of CRC-32/IEEE.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn archives_round_trip() {
        let entries = vec![
            ("text".to_string(), Array::scalar_str("héllo")),
            ("count".to_string(), Array::scalar_i64(-7)),
            ("flag".to_string(), Array::scalar_bool(true)),
            (
                "matrix".to_string(),
                Array {
                    descr: "<f4".into(),
                    shape: vec![2, 3],
                    bytes: (0..24).collect(),
                },
            ),
        ];
        let bytes = write_archive(&entries).unwrap();
        let back = read_archive(&bytes).unwrap();
        assert_eq!(back, entries);
        assert_eq!(back[0].1.as_str("text").unwrap(), "héllo");
        assert_eq!(back[1].1.as_i64("count").unwrap(), -7);
        assert!(back[2].1.as_bool("flag").unwrap());
        assert_eq!(back[3].1.shape_repr(), "(2, 3)");
    }

    #[test]
    fn damaged_archives_are_errors() {
        let bytes = write_archive(&[("x".to_string(), Array::scalar_f64(1.5))]).unwrap();
        for cut in [0, 10, bytes.len() / 2, bytes.len() - 1] {
            assert!(read_archive(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        let at = flipped.len() / 3;
        flipped[at] ^= 0x40;
        assert!(read_archive(&flipped).is_err());
    }
}
