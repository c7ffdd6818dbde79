//! SVHN "format 2" (cropped digits): MATLAB level-5 `.mat` files holding `X` and `y`.
//!
//! Only the subset of the MAT-file format that numeric arrays need is implemented:
//! a 128-byte header, then data elements (8-byte tag: type, byte count; or the 4-byte
//! "small element" tag when the upper 16 bits of the first word are non-zero), each padded
//! to 8 bytes. `miCOMPRESSED` elements are zlib streams holding one more element, normally an
//! `miMATRIX`. An `miMATRIX` holds sub-elements: array flags, dimensions, name, real part.
//!
//! `X` is H x W x C x N (column-major, so element (r, c, ch, n) is at
//! `r + H*c + H*W*ch + H*W*C*n`), which we transpose to row-major CHW per image.
//! `y` is N x 1 (usually stored as double) with the digit 0 labelled 10.

use std::io::Read;
use std::path::Path;

use flate2::read::ZlibDecoder;

use super::{DataError, Dataset, read_file};

const HEADER_LEN: usize = 128;

// Data types (the storage type of an element's bytes).
const MI_INT8: u32 = 1;
const MI_UINT8: u32 = 2;
const MI_INT16: u32 = 3;
const MI_UINT16: u32 = 4;
const MI_INT32: u32 = 5;
const MI_UINT32: u32 = 6;
const MI_SINGLE: u32 = 7;
const MI_DOUBLE: u32 = 9;
const MI_INT64: u32 = 12;
const MI_UINT64: u32 = 13;
const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;

// Array classes (low byte of the array flags). Numeric classes are 6 (double) ..= 15 (uint64).
const MX_DOUBLE_CLASS: u32 = 6;
const MX_UINT64_CLASS: u32 = 15;
const COMPLEX_FLAG: u32 = 0x0800;

/// Loads `X` and `y` from an SVHN `.mat` file.
pub fn load(path: &Path) -> Result<Dataset, DataError> {
    parse(&read_file(path)?, path)
}

/// Parses a MAT file held in memory; `path` only names it in messages.
pub fn parse(bytes: &[u8], path: &Path) -> Result<Dataset, DataError> {
    let file = MatFile::parse_header(bytes, path)?;
    let mut images: Option<(Vec<u8>, [usize; 4])> = None;
    let mut labels: Option<Vec<u32>> = None;
    file.for_each_variable(bytes, |var| {
        match var.name.as_str() {
            "X" => images = Some(file.images(&var)?),
            "y" => labels = Some(file.labels(&var)?),
            _ => {}
        }
        Ok(())
    })?;
    let (images, [h, w, c, n]) = images
        .ok_or_else(|| DataError::invalid(path, "no variable 'X' (images) in this MAT file"))?;
    let labels = labels
        .ok_or_else(|| DataError::invalid(path, "no variable 'y' (labels) in this MAT file"))?;
    if labels.len() != n {
        return Err(DataError::invalid(
            path,
            format!("X holds {n} images but y holds {} labels", labels.len()),
        ));
    }
    Ok(Dataset {
        name: path.display().to_string(),
        images,
        labels,
        channels: c,
        height: h,
        width: w,
        num_classes: 10,
    })
}

/// One data element: its type and payload, and where the next element starts.
struct Element<'a> {
    ty: u32,
    data: &'a [u8],
    /// Offset just after the payload (unpadded) and after the 8-byte padding.
    end: usize,
    padded_end: usize,
}

/// A variable of class numeric, with its real part still in storage form.
struct Variable<'a> {
    name: String,
    class: u32,
    complex: bool,
    dims: Vec<usize>,
    ty: u32,
    data: &'a [u8],
}

/// Reading context: the file's byte order and its path for error messages.
struct MatFile<'p> {
    path: &'p Path,
    big_endian: bool,
}

impl<'p> MatFile<'p> {
    fn parse_header(bytes: &[u8], path: &'p Path) -> Result<Self, DataError> {
        if bytes.len() < HEADER_LEN {
            return Err(DataError::truncated(path, HEADER_LEN - bytes.len()));
        }
        let big_endian = match &bytes[126..128] {
            b"IM" => false,
            b"MI" => true,
            other => {
                return Err(DataError::invalid(
                    path,
                    format!(
                        "not a MATLAB level-5 MAT file (endian indicator {:?}, expected \"IM\" or \"MI\")",
                        String::from_utf8_lossy(other)
                    ),
                ));
            }
        };
        let file = MatFile { path, big_endian };
        let version = file.u16(&bytes[124..126]);
        if version != 0x0100 {
            return Err(DataError::invalid(
                path,
                format!(
                    "unsupported MAT-file version 0x{version:04x} (expected 0x0100; \
                     v7.3/HDF5 files are not supported, re-save with -v7)"
                ),
            ));
        }
        Ok(file)
    }

    fn u16(&self, b: &[u8]) -> u16 {
        let b = b[..2].try_into().expect("2 bytes");
        if self.big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        }
    }

    fn u32(&self, b: &[u8]) -> u32 {
        let b = b[..4].try_into().expect("4 bytes");
        if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    }

    fn u64(&self, b: &[u8]) -> u64 {
        let b = b[..8].try_into().expect("8 bytes");
        if self.big_endian {
            u64::from_be_bytes(b)
        } else {
            u64::from_le_bytes(b)
        }
    }

    fn invalid(&self, message: impl Into<String>) -> DataError {
        DataError::invalid(self.path, message)
    }

    /// Reads the element whose tag starts at `off` in `buf`.
    fn element<'a>(&self, buf: &'a [u8], off: usize) -> Result<Element<'a>, DataError> {
        if buf.len() < off + 8 {
            return Err(DataError::truncated(self.path, off + 8 - buf.len()));
        }
        let first = self.u32(&buf[off..]);
        if first >> 16 != 0 {
            // Small element: type and size share the first word, data in the second.
            let n = (first >> 16) as usize;
            if n > 4 {
                return Err(
                    self.invalid(format!("small data element claims {n} bytes (at most 4)"))
                );
            }
            return Ok(Element {
                ty: first & 0xffff,
                data: &buf[off + 4..off + 4 + n],
                end: off + 8,
                padded_end: off + 8,
            });
        }
        let n = self.u32(&buf[off + 4..]) as usize;
        let end = off + 8 + n;
        if buf.len() < end {
            return Err(DataError::truncated(self.path, end - buf.len()));
        }
        Ok(Element {
            ty: first,
            data: &buf[off + 8..end],
            end,
            padded_end: end.next_multiple_of(8),
        })
    }

    /// Calls `f` on every numeric matrix variable of the file, decompressing as needed.
    fn for_each_variable(
        &self,
        bytes: &[u8],
        mut f: impl FnMut(Variable<'_>) -> Result<(), DataError>,
    ) -> Result<(), DataError> {
        let mut off = HEADER_LEN;
        while off < bytes.len() {
            let el = self.element(bytes, off)?;
            match el.ty {
                MI_MATRIX => {
                    if let Some(var) = self.matrix(el.data)? {
                        f(var)?;
                    }
                }
                MI_COMPRESSED => {
                    let inner = self.inflate(el.data)?;
                    let el = self.element(&inner, 0)?;
                    if el.ty == MI_MATRIX
                        && let Some(var) = self.matrix(el.data)?
                    {
                        f(var)?;
                    }
                }
                _ => {} // Other top-level elements carry nothing we need.
            }
            // Compressed elements are not padded; a missing final padding is tolerated.
            off = if el.ty == MI_COMPRESSED {
                el.end
            } else {
                el.padded_end.min(bytes.len())
            };
        }
        Ok(())
    }

    /// Decompresses an miCOMPRESSED element incrementally: first its inner tag, then exactly
    /// the byte count that tag announces, so a stream inflating to more is never held, and
    /// memory grows only with the data actually present.
    fn inflate(&self, z: &[u8]) -> Result<Vec<u8>, DataError> {
        let err = |e: std::io::Error| {
            self.invalid(format!("cannot decompress miCOMPRESSED element: {e}"))
        };
        let mut d = ZlibDecoder::new(z);
        let mut inner = Vec::with_capacity(8);
        (&mut d).take(8).read_to_end(&mut inner).map_err(err)?;
        if inner.len() < 8 {
            return Err(DataError::truncated(self.path, 8 - inner.len()));
        }
        let first = self.u32(&inner);
        if first >> 16 == 0 {
            let n = u64::from(self.u32(&inner[4..]));
            let cap = super::inflate_cap(z.len() as u64);
            let limit = n.min(cap.saturating_add(1));
            inner.reserve(limit.min(1 << 20) as usize);
            (&mut d).take(limit).read_to_end(&mut inner).map_err(err)?;
            if inner.len() as u64 - 8 > cap {
                return Err(super::bomb_error(self.path, "an miCOMPRESSED element", cap));
            }
        }
        // The stream must end here (at most 7 bytes of padding follow): reading to its end
        // also verifies its checksum. Anything longer is refused, never inflated.
        let mut rest = Vec::new();
        (&mut d).take(8).read_to_end(&mut rest).map_err(err)?;
        if rest.len() == 8 {
            return Err(
                self.invalid("miCOMPRESSED element inflates to more than its inner tag announces")
            );
        }
        Ok(inner)
    }

    /// Parses the content of an miMATRIX element; `None` for empty or non-numeric arrays.
    fn matrix<'a>(&self, data: &'a [u8]) -> Result<Option<Variable<'a>>, DataError> {
        if data.is_empty() {
            return Ok(None);
        }
        let flags_el = self.element(data, 0)?;
        if flags_el.ty != MI_UINT32 || flags_el.data.len() < 4 {
            return Err(self.invalid("miMATRIX without array flags"));
        }
        let flags = self.u32(flags_el.data);
        let class = flags & 0xff;
        let dims_el = self.element(data, flags_el.padded_end)?;
        if dims_el.ty != MI_INT32 {
            return Err(self.invalid("miMATRIX without dimensions"));
        }
        let dims = dims_el
            .data
            .chunks_exact(4)
            .map(|c| {
                usize::try_from(self.u32(c) as i32).map_err(|_| self.invalid("negative dimension"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let name_el = self.element(data, dims_el.padded_end)?;
        let name = String::from_utf8_lossy(name_el.data).into_owned();
        if !(MX_DOUBLE_CLASS..=MX_UINT64_CLASS).contains(&class) {
            // Cells, structs, chars, sparse: not used by SVHN, and not parsed further.
            return Ok(Some(Variable {
                name,
                class,
                complex: false,
                dims,
                ty: 0,
                data: &[],
            }));
        }
        let real = self.element(data, name_el.padded_end)?;
        Ok(Some(Variable {
            name,
            class,
            complex: flags & COMPLEX_FLAG != 0,
            dims,
            ty: real.ty,
            data: real.data,
        }))
    }

    /// Checks that `var` is a real numeric array with all its elements present; returns the
    /// element count and the storage size of one element.
    fn check_numeric(&self, var: &Variable) -> Result<(usize, usize), DataError> {
        let name = &var.name;
        if !(MX_DOUBLE_CLASS..=MX_UINT64_CLASS).contains(&var.class) {
            return Err(self.invalid(format!(
                "variable '{name}' has non-numeric class {}",
                var.class
            )));
        }
        if var.complex {
            return Err(self.invalid(format!("variable '{name}' is complex")));
        }
        let size = match var.ty {
            MI_INT8 | MI_UINT8 => 1,
            MI_INT16 | MI_UINT16 => 2,
            MI_INT32 | MI_UINT32 | MI_SINGLE => 4,
            MI_DOUBLE | MI_INT64 | MI_UINT64 => 8,
            other => {
                return Err(self.invalid(format!(
                    "variable '{name}' has unsupported data type {other}"
                )));
            }
        };
        let too_big = || {
            self.invalid(format!(
                "variable '{name}' has absurd dimensions {:?}",
                var.dims
            ))
        };
        let count = var
            .dims
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(too_big)?;
        let needed = count.checked_mul(size).ok_or_else(too_big)?;
        if var.data.len() < needed {
            return Err(DataError::truncated(self.path, needed - var.data.len()));
        }
        Ok((count, size))
    }

    /// Element `i` of a numeric variable's data, as f64 (exact for everything SVHN stores).
    fn value(&self, var: &Variable, i: usize) -> f64 {
        let d = var.data;
        match var.ty {
            MI_INT8 => f64::from(d[i] as i8),
            MI_UINT8 => f64::from(d[i]),
            MI_INT16 => f64::from(self.u16(&d[2 * i..]) as i16),
            MI_UINT16 => f64::from(self.u16(&d[2 * i..])),
            MI_INT32 => f64::from(self.u32(&d[4 * i..]) as i32),
            MI_UINT32 => f64::from(self.u32(&d[4 * i..])),
            MI_SINGLE => f64::from(f32::from_bits(self.u32(&d[4 * i..]))),
            MI_DOUBLE => f64::from_bits(self.u64(&d[8 * i..])),
            MI_INT64 => self.u64(&d[8 * i..]) as i64 as f64,
            MI_UINT64 => self.u64(&d[8 * i..]) as f64,
            _ => unreachable!("checked by check_numeric"),
        }
    }

    /// `X` (H x W x C x N, column-major) to row-major CHW images; returns them and [H, W, C, N].
    fn images(&self, var: &Variable) -> Result<(Vec<u8>, [usize; 4]), DataError> {
        self.check_numeric(var)?;
        // MATLAB drops trailing singleton dimensions, so a single image is H x W x C.
        let [h, w, c, n] = match var.dims[..] {
            [h, w, c, n] => [h, w, c, n],
            [h, w, c] => [h, w, c, 1],
            _ => {
                return Err(self.invalid(format!(
                    "X has dimensions {:?}, expected height x width x channels x count",
                    var.dims
                )));
            }
        };
        if n == 0 {
            return Err(self.invalid(format!("X has dimensions {:?}: no images", var.dims)));
        }
        super::check_image_shape(c, h, w)
            .map_err(|m| self.invalid(format!("X has dimensions {:?}: {m}", var.dims)))?;
        let (hw, chw) = (h * w, c * h * w);
        let mut out = vec![0u8; n * chw];
        let fast = var.ty == MI_UINT8;
        // Walk the source in storage order (r fastest) for locality.
        let mut src = 0;
        for img in 0..n {
            for ch in 0..c {
                let plane = &mut out[img * chw + ch * hw..][..hw];
                for col in 0..w {
                    for row in 0..h {
                        plane[row * w + col] = if fast {
                            var.data[src]
                        } else {
                            self.value(var, src).round().clamp(0.0, 255.0) as u8
                        };
                        src += 1;
                    }
                }
            }
        }
        Ok((out, [h, w, c, n]))
    }

    /// `y` to labels 0..=9 (SVHN labels the digit 0 as 10).
    fn labels(&self, var: &Variable) -> Result<Vec<u32>, DataError> {
        let (count, _) = self.check_numeric(var)?;
        (0..count)
            .map(|i| {
                let v = self.value(var, i);
                if v.fract() != 0.0 || !(0.0..=10.0).contains(&v) {
                    return Err(self.invalid(format!("y[{i}] = {v} is not a digit label 1..=10")));
                }
                Ok(v as u32 % 10)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::Compression;
    use flate2::write::ZlibEncoder;

    use super::*;
    use crate::data::testutil::TempDir;

    /// A minimal MAT level-5 writer, enough for numeric arrays.
    struct Writer {
        big_endian: bool,
    }

    impl Writer {
        fn u32(&self, v: u32) -> [u8; 4] {
            if self.big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        }

        fn header(&self) -> Vec<u8> {
            let mut h = b"MATLAB 5.0 MAT-file, written by isomax tests".to_vec();
            h.resize(116, b' ');
            h.extend_from_slice(&[0; 8]); // subsystem data offset
            h.extend_from_slice(&if self.big_endian {
                0x0100u16.to_be_bytes()
            } else {
                0x0100u16.to_le_bytes()
            });
            h.extend_from_slice(if self.big_endian { b"MI" } else { b"IM" });
            h
        }

        /// A full-format element, padded to 8 bytes.
        fn element(&self, ty: u32, data: &[u8]) -> Vec<u8> {
            let mut e = self.u32(ty).to_vec();
            e.extend_from_slice(&self.u32(data.len() as u32));
            e.extend_from_slice(data);
            e.resize(e.len().next_multiple_of(8), 0);
            e
        }

        /// A small-format element (at most 4 data bytes), as MATLAB writes short names.
        fn small(&self, ty: u32, data: &[u8]) -> Vec<u8> {
            assert!(data.len() <= 4);
            let mut e = self.u32(((data.len() as u32) << 16) | ty).to_vec();
            e.extend_from_slice(data);
            e.resize(8, 0);
            e
        }

        /// An miMATRIX of `class` whose real part has storage type `ty` and raw bytes `data`.
        fn matrix(&self, name: &str, class: u32, dims: &[u32], ty: u32, data: &[u8]) -> Vec<u8> {
            let mut flags = self.u32(class).to_vec();
            flags.extend_from_slice(&[0; 4]);
            let mut body = self.element(MI_UINT32, &flags);
            let dims: Vec<u8> = dims.iter().flat_map(|&d| self.u32(d)).collect();
            body.extend(self.element(MI_INT32, &dims));
            body.extend(self.small(MI_INT8, name.as_bytes()));
            body.extend(self.element(ty, data));
            self.element(MI_MATRIX, &body)
        }

        fn compressed(&self, element: &[u8]) -> Vec<u8> {
            let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
            z.write_all(element).unwrap();
            let z = z.finish().unwrap();
            let mut e = self.u32(MI_COMPRESSED).to_vec();
            e.extend_from_slice(&self.u32(z.len() as u32));
            e.extend_from_slice(&z); // not padded, like MATLAB
            e
        }

        fn doubles(&self, v: &[f64]) -> Vec<u8> {
            v.iter()
                .flat_map(|x| {
                    if self.big_endian {
                        x.to_be_bytes()
                    } else {
                        x.to_le_bytes()
                    }
                })
                .collect()
        }
    }

    // A 2 x 3 (H x W) x 3 channels x 2 images array: value encodes (r, c, ch, n).
    const H: usize = 2;
    const W: usize = 3;
    fn value(r: usize, c: usize, ch: usize, n: usize) -> u8 {
        (100 * n + 10 * ch + 3 * r + c) as u8
    }

    /// X in MATLAB column-major order.
    fn x_column_major() -> Vec<u8> {
        let mut v = Vec::new();
        for n in 0..2 {
            for ch in 0..3 {
                for c in 0..W {
                    for r in 0..H {
                        v.push(value(r, c, ch, n));
                    }
                }
            }
        }
        v
    }

    fn file(w: &Writer, compress: bool, labels: &[f64]) -> Vec<u8> {
        let x = w.matrix(
            "X",
            9,
            &[H as u32, W as u32, 3, 2],
            MI_UINT8,
            &x_column_major(),
        );
        let y = w.matrix(
            "y",
            MX_DOUBLE_CLASS,
            &[labels.len() as u32, 1],
            MI_DOUBLE,
            &w.doubles(labels),
        );
        let mut out = w.header();
        for el in [x, y] {
            out.extend(if compress { w.compressed(&el) } else { el });
        }
        out
    }

    fn check(d: &Dataset) {
        assert_eq!(
            (d.len(), d.channels, d.height, d.width, d.num_classes),
            (2, 3, H, W, 10)
        );
        assert_eq!(d.labels, vec![0, 3]);
        // Row-major CHW per image: index ch*H*W + r*W + c.
        for n in 0..2 {
            let img = d.image(n);
            for ch in 0..3 {
                for r in 0..H {
                    for c in 0..W {
                        assert_eq!(img[ch * H * W + r * W + c], value(r, c, ch, n));
                    }
                }
            }
        }
    }

    #[test]
    fn uncompressed_round_trip_and_transpose() {
        let dir = TempDir::new("svhn-raw");
        let p = dir.join("train_32x32.mat");
        std::fs::write(&p, file(&Writer { big_endian: false }, false, &[10.0, 3.0])).unwrap();
        check(&Dataset::open(p.to_str().unwrap()).unwrap());
    }

    #[test]
    fn compressed_round_trip() {
        let dir = TempDir::new("svhn-z");
        let p = dir.join("test_32x32.mat");
        std::fs::write(&p, file(&Writer { big_endian: false }, true, &[10.0, 3.0])).unwrap();
        check(&Dataset::open(&format!("svhn:{}", p.display())).unwrap());
    }

    #[test]
    fn big_endian_round_trip() {
        let dir = TempDir::new("svhn-be");
        let p = dir.join("be.mat");
        std::fs::write(&p, file(&Writer { big_endian: true }, true, &[10.0, 3.0])).unwrap();
        check(&load(&p).unwrap());
    }

    #[test]
    fn integer_labels_and_skipped_variables() {
        let w = Writer { big_endian: false };
        let mut out = w.header();
        out.extend(w.matrix(
            "junk",
            MX_DOUBLE_CLASS,
            &[1, 1],
            MI_DOUBLE,
            &w.doubles(&[1.5]),
        ));
        out.extend(w.matrix(
            "X",
            9,
            &[H as u32, W as u32, 3, 2],
            MI_UINT8,
            &x_column_major(),
        ));
        // y stored as int32 in a uint8-class array, as MATLAB may choose compact storage.
        let y: Vec<u8> = [10i32, 3].iter().flat_map(|v| v.to_le_bytes()).collect();
        out.extend(w.compressed(&w.matrix("y", 9, &[2, 1], MI_INT32, &y)));
        let dir = TempDir::new("svhn-int");
        let p = dir.join("x.mat");
        std::fs::write(&p, out).unwrap();
        check(&load(&p).unwrap());
    }

    /// The same X and y as [`file`], written by scipy.io.savemat(..., do_compression=True):
    /// checks the reader against an independent writer.
    const SCIPY_MAT: &[u8] = &[
        0x4d, 0x41, 0x54, 0x4c, 0x41, 0x42, 0x20, 0x35, 0x2e, 0x30, 0x20, 0x4d, 0x41, 0x54, 0x2d,
        0x66, 0x69, 0x6c, 0x65, 0x20, 0x50, 0x6c, 0x61, 0x74, 0x66, 0x6f, 0x72, 0x6d, 0x3a, 0x20,
        0x70, 0x6f, 0x73, 0x69, 0x78, 0x2c, 0x20, 0x43, 0x72, 0x65, 0x61, 0x74, 0x65, 0x64, 0x20,
        0x6f, 0x6e, 0x3a, 0x20, 0x54, 0x75, 0x65, 0x20, 0x44, 0x65, 0x63, 0x20, 0x20, 0x31, 0x20,
        0x31, 0x36, 0x3a, 0x30, 0x31, 0x3a, 0x33, 0x36, 0x20, 0x32, 0x30, 0x32, 0x36, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x49, 0x4d, 0x0f, 0x00, 0x00, 0x00, 0x50, 0x00, 0x00,
        0x00, 0x78, 0x9c, 0xe3, 0x63, 0x60, 0x60, 0x48, 0x00, 0x62, 0x36, 0x20, 0xe6, 0x00, 0x62,
        0x4e, 0x06, 0x08, 0x60, 0x05, 0x62, 0x01, 0x20, 0x66, 0x02, 0x62, 0x66, 0x28, 0x06, 0xb1,
        0x19, 0x81, 0x30, 0x02, 0xca, 0x56, 0x01, 0x29, 0x64, 0x66, 0x64, 0x61, 0x62, 0xe5, 0xe2,
        0xe5, 0xe6, 0xe3, 0xe1, 0x17, 0x11, 0x17, 0x95, 0x10, 0x93, 0x4c, 0x49, 0x4f, 0xcd, 0x48,
        0xcb, 0xcc, 0x2b, 0xcc, 0x2f, 0x2a, 0x28, 0xae, 0xa8, 0xae, 0xac, 0xa9, 0xaa, 0x05, 0x29,
        0x03, 0x00, 0xd6, 0x20, 0x09, 0xef, 0x0f, 0x00, 0x00, 0x00, 0x2d, 0x00, 0x00, 0x00, 0x78,
        0x9c, 0xe3, 0x63, 0x60, 0x60, 0x70, 0x00, 0x62, 0x36, 0x20, 0xe6, 0x80, 0xd2, 0x20, 0xc0,
        0x0a, 0xe5, 0x33, 0x01, 0x31, 0x23, 0x18, 0x33, 0x32, 0x54, 0x02, 0x69, 0x4e, 0x20, 0x16,
        0x60, 0x80, 0x01, 0x15, 0x07, 0x08, 0xcd, 0xe1, 0x00, 0x00, 0x30, 0x36, 0x01, 0xb3,
    ];

    #[test]
    fn scipy_written_file() {
        let dir = TempDir::new("svhn-scipy");
        let p = dir.join("scipy.mat");
        std::fs::write(&p, SCIPY_MAT).unwrap();
        check(&Dataset::open(p.to_str().unwrap()).unwrap());
    }

    #[test]
    fn truncated_file() {
        let dir = TempDir::new("svhn-trunc");
        let p = dir.join("x.mat");
        let full = file(&Writer { big_endian: false }, false, &[10.0, 3.0]);
        // Drop y (72 bytes) and the last 28 bytes of X: X's tag announces more than is left.
        std::fs::write(&p, &full[..full.len() - 100]).unwrap();
        let msg = load(&p).unwrap_err().to_string();
        assert!(
            msg.ends_with("x.mat: truncated (needs 28 more bytes)"),
            "{msg}"
        );
        std::fs::write(&p, &full[..100]).unwrap();
        let msg = load(&p).unwrap_err().to_string();
        assert!(
            msg.ends_with("x.mat: truncated (needs 28 more bytes)"),
            "{msg}"
        );
        // A matrix whose dimensions announce more data than its real part holds.
        let w = Writer { big_endian: false };
        let mut out = w.header();
        out.extend(w.matrix("X", 9, &[32, 32, 3, 2], MI_UINT8, &[0; 3072]));
        std::fs::write(&p, out).unwrap();
        let msg = load(&p).unwrap_err().to_string();
        assert!(
            msg.ends_with("x.mat: truncated (needs 3072 more bytes)"),
            "{msg}"
        );
    }

    #[test]
    fn malformed_inputs() {
        let dir = TempDir::new("svhn-bad");
        let p = dir.join("bad.mat");
        let w = Writer { big_endian: false };
        let mut bad_header = file(&w, false, &[10.0, 3.0]);
        bad_header[126..128].copy_from_slice(b"XX");
        std::fs::write(&p, &bad_header).unwrap();
        let msg = load(&p).unwrap_err().to_string();
        assert!(
            msg.contains("bad.mat: not a MATLAB level-5 MAT file"),
            "{msg}"
        );

        let mut v73 = file(&w, false, &[10.0, 3.0]);
        v73[124..126].copy_from_slice(&0x0200u16.to_le_bytes());
        std::fs::write(&p, &v73).unwrap();
        let msg = load(&p).unwrap_err().to_string();
        assert!(
            msg.contains("bad.mat: unsupported MAT-file version 0x0200"),
            "{msg}"
        );

        std::fs::write(&p, file(&w, false, &[10.0, 3.0, 4.0])).unwrap();
        let msg = load(&p).unwrap_err().to_string();
        assert!(
            msg.contains("bad.mat: X holds 2 images but y holds 3 labels"),
            "{msg}"
        );

        std::fs::write(&p, file(&w, true, &[10.0, 11.0])).unwrap();
        let msg = load(&p).unwrap_err().to_string();
        assert!(
            msg.contains("bad.mat: y[1] = 11 is not a digit label"),
            "{msg}"
        );

        let mut no_y = w.header();
        no_y.extend(w.matrix(
            "X",
            9,
            &[H as u32, W as u32, 3, 2],
            MI_UINT8,
            &x_column_major(),
        ));
        std::fs::write(&p, &no_y).unwrap();
        let msg = load(&p).unwrap_err().to_string();
        assert!(msg.contains("bad.mat: no variable 'y'"), "{msg}");

        let mut corrupt = w.header();
        corrupt.extend(w.compressed(&w.matrix("X", 9, &[1, 1, 1, 1], MI_UINT8, &[1])));
        let len = corrupt.len();
        corrupt[len - 4..].copy_from_slice(&[0xff; 4]); // the Adler-32 checksum
        std::fs::write(&p, &corrupt).unwrap();
        let msg = load(&p).unwrap_err().to_string();
        assert!(
            msg.contains("bad.mat: cannot decompress miCOMPRESSED element"),
            "{msg}"
        );
    }

    #[test]
    fn channels_other_than_1_or_3_and_empty_sizes_are_rejected() {
        let w = Writer { big_endian: false };
        for (dims, what) in [
            (
                [2u32, 2, 2, 1],
                "[2, 2, 2, 1]: 2 channels (images must have 1 (gray) or 3 (RGB))",
            ),
            (
                [2, 2, 4, 1],
                "[2, 2, 4, 1]: 4 channels (images must have 1 (gray) or 3 (RGB))",
            ),
            (
                [0, 2, 3, 1],
                "[0, 2, 3, 1]: image size 0x2 (height and width must be in 1..=8192)",
            ),
            ([2, 2, 3, 0], "[2, 2, 3, 0]: no images"),
        ] {
            let count = dims.iter().product::<u32>() as usize;
            let mut out = w.header();
            out.extend(w.compressed(&w.matrix("X", 9, &dims, MI_UINT8, &vec![7; count])));
            out.extend(w.matrix("y", MX_DOUBLE_CLASS, &[1, 1], MI_DOUBLE, &w.doubles(&[1.0])));
            let msg = parse(&out, Path::new("odd.mat")).unwrap_err().to_string();
            assert_eq!(msg, format!("odd.mat: X has dimensions {what}"));
        }
    }

    #[test]
    fn zlib_element_inflating_past_its_tag_is_refused() {
        // The inner tag announces a 1x1x1x1 X; the zlib stream then goes on for 64 MiB, of
        // which at most 8 bytes are inflated.
        let w = Writer { big_endian: false };
        let x = w.matrix("X", 9, &[1, 1, 1, 1], MI_UINT8, &[5]);
        let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
        z.write_all(&x).unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..64 {
            z.write_all(&zeros).unwrap();
        }
        let z = z.finish().unwrap();
        let mut out = w.header();
        out.extend_from_slice(&w.u32(MI_COMPRESSED));
        out.extend_from_slice(&w.u32(z.len() as u32));
        out.extend_from_slice(&z);
        out.extend(w.matrix("y", MX_DOUBLE_CLASS, &[1, 1], MI_DOUBLE, &w.doubles(&[3.0])));
        let msg = parse(&out, Path::new("bomb.mat")).unwrap_err().to_string();
        assert_eq!(
            msg,
            "bomb.mat: miCOMPRESSED element inflates to more than its inner tag announces"
        );
        // A tag announcing 4 GB over a short stream is truncated, not allocated.
        let mut liar = w.header();
        let mut tag = w.u32(MI_MATRIX).to_vec();
        tag.extend_from_slice(&w.u32(u32::MAX));
        tag.extend_from_slice(&[0; 64]);
        liar.extend(w.compressed(&tag));
        let msg = parse(&liar, Path::new("liar.mat")).unwrap_err().to_string();
        assert_eq!(msg, "liar.mat: truncated (needs 4294967231 more bytes)");
    }
}
