//! Data sets: the bundled UCI optdigits files, MNIST IDX files, CSV files with a label column
//! and tensors from the store, plus splitting a data set into tasks by class.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use l3_store::{DType, TensorData};

use crate::error::{Error, Result};

const OPTDIGITS_TRAIN: &str = include_str!("../data/optdigits/optdigits.tra");
const OPTDIGITS_TEST: &str = include_str!("../data/optdigits/optdigits.tes");

/// A labelled data set held in memory.
///
/// `x` is row-major `n x d`, values scaled to [0, 1] by the loader (optdigits /16, MNIST /255,
/// CSV by the caller's scale); `y` holds the original class labels.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pub x: Vec<f32>,
    pub y: Vec<u32>,
    pub n: usize,
    pub d: usize,
}

/// Which column of a CSV file holds the label.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum LabelColumn {
    /// Zero-based column index; negative values are not allowed (use `Last`).
    Index(usize),
    /// Column name from the header row (the file must have a header).
    Name(String),
}

/// How to read a CSV file.
#[derive(Clone, Debug, PartialEq)]
pub struct CsvOptions {
    /// The label column.
    pub label: LabelColumn,
    /// Whether the first line is a header. A label given by name implies a header.
    pub header: bool,
    /// Feature values are divided by this to land in [0, 1].
    pub scale: f32,
}

impl Dataset {
    /// Builds a data set, checking that `x` holds `n * d` finite values and `y` holds `n` labels.
    pub fn new(x: Vec<f32>, y: Vec<u32>, d: usize) -> Result<Self> {
        let n = y.len();
        if d == 0 {
            return Err(Error::Dataset("feature dimension is 0".into()));
        }
        if x.len() != n * d {
            return Err(Error::Dataset(format!(
                "{} feature values do not make {n} rows of {d}",
                x.len()
            )));
        }
        if let Some(i) = x.iter().position(|v| !v.is_finite()) {
            return Err(Error::Dataset(format!("feature value {i} is not finite")));
        }
        Ok(Dataset { x, y, n, d })
    }

    /// The bundled UCI optdigits data (train: 3,823 rows, test: 1,797), scaled by 1/16.
    pub fn optdigits_bundled(train: bool) -> Result<Self> {
        let (name, text) = if train {
            ("optdigits.tra", OPTDIGITS_TRAIN)
        } else {
            ("optdigits.tes", OPTDIGITS_TEST)
        };
        Self::optdigits_from_str(name, text)
    }

    /// An optdigits file: 64 integers 0..16 then the label per line, scaled by 1/16.
    pub fn optdigits_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::optdigits_from_str(&path.display().to_string(), &text)
    }

    fn optdigits_from_str(name: &str, text: &str) -> Result<Self> {
        let options = CsvOptions {
            label: LabelColumn::Index(64),
            header: false,
            scale: 16.0,
        };
        let ds = Self::csv_from_str(name, text, &options)?;
        if ds.d != 64 {
            return Err(Error::Dataset(format!(
                "{name}: expected 64 features, got {}",
                ds.d
            )));
        }
        if let Some(v) = ds.x.iter().find(|v| **v > 1.0 || **v < 0.0) {
            return Err(Error::Dataset(format!(
                "{name}: pixel {} outside 0..16",
                v * 16.0
            )));
        }
        Ok(ds)
    }

    /// MNIST from the four IDX files in `dir` (gzipped or not):
    /// `train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]`, `t10k-...`.
    /// Pixels are scaled by 1/255.
    pub fn mnist(dir: &Path, train: bool) -> Result<Self> {
        let prefix = if train { "train" } else { "t10k" };
        let images = find_idx(dir, &format!("{prefix}-images-idx3-ubyte"))?;
        let labels = find_idx(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
        Self::mnist_files(&images, &labels)
    }

    /// MNIST from an explicit image file and label file (gzipped or not).
    pub fn mnist_files(images: &Path, labels: &Path) -> Result<Self> {
        let img = read_maybe_gz(images)?;
        let lab = read_maybe_gz(labels)?;
        let idx_err = |path: &Path, message: String| Error::Idx {
            path: path.to_path_buf(),
            message,
        };
        let (dims, pixels) = parse_idx(&img, 0x0803, 3).map_err(|m| idx_err(images, m))?;
        let (ldims, labs) = parse_idx(&lab, 0x0801, 1).map_err(|m| idx_err(labels, m))?;
        let (n, rows, cols) = (dims[0], dims[1], dims[2]);
        if ldims[0] != n {
            return Err(idx_err(
                labels,
                format!("holds {} labels but the images file {n}", ldims[0]),
            ));
        }
        if let Some(bad) = labs.iter().find(|l| **l > 9) {
            return Err(idx_err(labels, format!("label {bad} is not a digit")));
        }
        let x = pixels.iter().map(|p| *p as f32 / 255.0).collect();
        let y = labs.iter().map(|l| *l as u32).collect();
        Self::new(x, y, rows * cols)
    }

    /// A CSV file with one sample per line and a label column.
    pub fn csv(path: &Path, options: &CsvOptions) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::csv_from_str(&path.display().to_string(), &text, options)
    }

    /// Parses CSV text (see [`Dataset::csv`]); `name` is used in error messages.
    pub fn csv_from_str(name: &str, text: &str, options: &CsvOptions) -> Result<Self> {
        if !(options.scale.is_finite() && options.scale > 0.0) {
            return Err(Error::Dataset(format!(
                "csv scale {} is not positive",
                options.scale
            )));
        }
        let csv_err = |line: usize, message: String| Error::Csv {
            path: name.into(),
            line,
            message,
        };
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        let header = options.header || matches!(options.label, LabelColumn::Name(_));
        let mut label_col = match &options.label {
            LabelColumn::Index(i) => Some(*i),
            LabelColumn::Name(_) => None,
        };
        if header {
            let (lineno, line) = lines
                .next()
                .ok_or_else(|| csv_err(1, "file is empty, expected a header".into()))?;
            if let LabelColumn::Name(want) = &options.label {
                let pos = line
                    .split(',')
                    .position(|c| c.trim().trim_matches('"') == want);
                match pos {
                    Some(p) => label_col = Some(p),
                    None => {
                        return Err(csv_err(
                            lineno + 1,
                            format!("header has no column \"{want}\""),
                        ))
                    }
                }
            }
        }
        let label_col = label_col.ok_or_else(|| csv_err(1, "no label column".into()))?;
        let (mut x, mut y, mut width) = (Vec::new(), Vec::new(), None);
        for (lineno, line) in lines {
            let lineno = lineno + 1;
            let cells: Vec<&str> = line.split(',').map(str::trim).collect();
            match width {
                None => {
                    if label_col >= cells.len() {
                        let m =
                            format!("label column {label_col} but only {} columns", cells.len());
                        return Err(csv_err(lineno, m));
                    }
                    if cells.len() < 2 {
                        return Err(csv_err(lineno, "need at least one feature column".into()));
                    }
                    width = Some(cells.len());
                }
                Some(w) if w != cells.len() => {
                    let m = format!("{} columns, earlier lines have {w}", cells.len());
                    return Err(csv_err(lineno, m));
                }
                Some(_) => {}
            }
            for (i, cell) in cells.iter().enumerate() {
                let value: f64 = cell.parse().map_err(|_| {
                    csv_err(lineno, format!("column {i}: \"{cell}\" is not a number"))
                })?;
                if !value.is_finite() {
                    return Err(csv_err(
                        lineno,
                        format!("column {i}: \"{cell}\" is not finite"),
                    ));
                }
                if i == label_col {
                    if value < 0.0 || value.fract() != 0.0 || value > u32::MAX as f64 {
                        let m = format!("label \"{cell}\" is not a non-negative integer");
                        return Err(csv_err(lineno, m));
                    }
                    y.push(value as u32);
                } else {
                    x.push((value / options.scale as f64) as f32);
                }
            }
        }
        let width = width.ok_or_else(|| csv_err(1, "file has no data rows".into()))?;
        Self::new(x, y, width - 1)
    }

    /// A data set from store tensors: `x` (F32 or U8, `[n, d]`; U8 is scaled by 1/255) and
    /// `y` (any integer dtype, `[n]`, non-negative).
    pub fn from_tensors(x: &TensorData, y: &TensorData) -> Result<Self> {
        if x.shape.len() != 2 {
            return Err(Error::Dataset(format!(
                "x has shape {:?}, expected [n, d]",
                x.shape
            )));
        }
        if y.shape.len() != 1 {
            return Err(Error::Dataset(format!(
                "y has shape {:?}, expected [n]",
                y.shape
            )));
        }
        let (n, d) = (x.shape[0] as usize, x.shape[1] as usize);
        if y.shape[0] as usize != n {
            return Err(Error::Dataset(format!(
                "x has {n} rows but y {} labels",
                y.shape[0]
            )));
        }
        check_len("x", x)?;
        check_len("y", y)?;
        let xs = match x.dtype {
            DType::F32 => x.to_f32().unwrap_or_default(),
            DType::U8 => x.bytes.iter().map(|b| *b as f32 / 255.0).collect(),
            other => {
                return Err(Error::Dataset(format!(
                    "x has dtype {other}, expected F32 or U8"
                )))
            }
        };
        let ys = integer_values(y)?;
        let mut labels = Vec::with_capacity(n);
        for (i, v) in ys.into_iter().enumerate() {
            let l = u32::try_from(v)
                .map_err(|_| Error::Dataset(format!("label {i} is {v}, not in 0..2^32")))?;
            labels.push(l);
        }
        Self::new(xs, labels, d)
    }

    /// A data set from a tensor map (as read from a safetensors file) holding `x_name` and
    /// `y_name`; see [`Dataset::from_tensors`].
    pub fn from_tensor_map(
        map: &BTreeMap<String, TensorData>,
        x_name: &str,
        y_name: &str,
    ) -> Result<Self> {
        let get = |name: &str| {
            map.get(name).ok_or_else(|| {
                let have: Vec<&str> = map.keys().map(String::as_str).collect();
                Error::Dataset(format!("no tensor \"{name}\" (have: {})", have.join(", ")))
            })
        };
        Self::from_tensors(get(x_name)?, get(y_name)?)
    }

    /// The data set as store tensors: `x` F32 `[n, d]` and `y` U32 `[n]`.
    pub fn to_tensors(&self) -> Result<BTreeMap<String, TensorData>> {
        let mut map = BTreeMap::new();
        map.insert(
            "x".to_string(),
            TensorData::from_f32(vec![self.n as u64, self.d as u64], &self.x)?,
        );
        let ybytes = self.y.iter().flat_map(|v| v.to_le_bytes()).collect();
        map.insert(
            "y".to_string(),
            TensorData::new(DType::U32, vec![self.n as u64], ybytes)?,
        );
        Ok(map)
    }

    /// The sorted distinct labels.
    pub fn classes(&self) -> Vec<u32> {
        let mut c = self.y.clone();
        c.sort_unstable();
        c.dedup();
        c
    }

    /// Row `i` of `x`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.x[i * self.d..(i + 1) * self.d]
    }

    /// The rows whose label is in `classes`, in their original order.
    pub fn select_classes(&self, classes: &[u32]) -> Dataset {
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..self.n {
            if classes.contains(&self.y[i]) {
                x.extend_from_slice(self.row(i));
                y.push(self.y[i]);
            }
        }
        let n = y.len();
        Dataset { x, y, n, d: self.d }
    }

    /// The first `n` rows (or all if fewer).
    pub fn take(&self, n: usize) -> Dataset {
        let n = n.min(self.n);
        Dataset {
            x: self.x[..n * self.d].to_vec(),
            y: self.y[..n].to_vec(),
            n,
            d: self.d,
        }
    }
}

/// Splits a data set into one per task, each holding the rows of that task's classes.
/// A class in two tasks, or a task without classes or without rows, is an error.
pub fn split_by_classes(data: &Dataset, tasks: &[Vec<u32>]) -> Result<Vec<Dataset>> {
    let mut seen = BTreeMap::new();
    let mut out = Vec::with_capacity(tasks.len());
    for (t, classes) in tasks.iter().enumerate() {
        if classes.is_empty() {
            return Err(Error::Dataset(format!("task {t} has no classes")));
        }
        for c in classes {
            if let Some(prev) = seen.insert(*c, t) {
                return Err(Error::Dataset(format!(
                    "class {c} is in tasks {prev} and {t}"
                )));
            }
        }
        let part = data.select_classes(classes);
        if part.n == 0 {
            return Err(Error::Dataset(format!(
                "no rows of classes {classes:?} (task {t})"
            )));
        }
        out.push(part);
    }
    Ok(out)
}

fn check_len(name: &str, t: &TensorData) -> Result<()> {
    let want = t.shape.iter().product::<u64>() as usize * t.dtype.size();
    if t.bytes.len() != want {
        return Err(Error::Dataset(format!(
            "{name} has {} bytes, its shape {:?} of {} needs {want}",
            t.bytes.len(),
            t.shape,
            t.dtype
        )));
    }
    Ok(())
}

fn integer_values(t: &TensorData) -> Result<Vec<i128>> {
    let b = &t.bytes;
    let v: Vec<i128> = match t.dtype {
        DType::U8 => b.iter().map(|v| *v as i128).collect(),
        DType::I8 => b.iter().map(|v| *v as i8 as i128).collect(),
        DType::U16 => b
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]) as i128)
            .collect(),
        DType::I16 => b
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]) as i128)
            .collect(),
        DType::U32 => b
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(arr(c)) as i128)
            .collect(),
        DType::I32 => b
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes(arr(c)) as i128)
            .collect(),
        DType::U64 => b
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(arr(c)) as i128)
            .collect(),
        DType::I64 => b
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(arr(c)) as i128)
            .collect(),
        other => {
            return Err(Error::Dataset(format!(
                "y has dtype {other}, expected an integer"
            )))
        }
    };
    Ok(v)
}

fn arr<const N: usize>(c: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(c);
    a
}

fn find_idx(dir: &Path, stem: &str) -> Result<PathBuf> {
    for name in [format!("{stem}.gz"), stem.to_string()] {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(Error::Io {
        path: dir.join(format!("{stem}[.gz]")),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
    })
}

fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let raw = std::fs::read(path).map_err(io)?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(io)?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Parses an unsigned-byte IDX file: magic `0x0000_08NN` with NN the dimension count.
fn parse_idx(
    bytes: &[u8],
    magic: u32,
    ndims: usize,
) -> std::result::Result<(Vec<usize>, &[u8]), String> {
    let header = 4 + 4 * ndims;
    if bytes.len() < header {
        return Err(format!(
            "{} bytes is shorter than its {header}-byte header",
            bytes.len()
        ));
    }
    let got = u32::from_be_bytes(arr(&bytes[0..4]));
    if got != magic {
        return Err(format!("magic number {got:#010x}, expected {magic:#010x}"));
    }
    let dims: Vec<usize> = (0..ndims)
        .map(|i| u32::from_be_bytes(arr(&bytes[4 + 4 * i..8 + 4 * i])) as usize)
        .collect();
    let want: usize = dims.iter().product();
    let body = &bytes[header..];
    if body.len() != want {
        return Err(format!(
            "dimensions {dims:?} need {want} data bytes, file has {}",
            body.len()
        ));
    }
    if dims.contains(&0) {
        return Err(format!("dimensions {dims:?} include 0"));
    }
    Ok((dims, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_optdigits_has_the_documented_rows() {
        let train = Dataset::optdigits_bundled(true).unwrap();
        let test = Dataset::optdigits_bundled(false).unwrap();
        assert_eq!((train.n, train.d), (3823, 64));
        assert_eq!((test.n, test.d), (1797, 64));
        assert_eq!(train.classes(), (0..10).collect::<Vec<_>>());
        // First row of optdigits.tra ends with label 0 and starts 0,1,6,15.
        assert_eq!(train.y[0], 0);
        assert_eq!(&train.x[..4], &[0.0, 1.0 / 16.0, 6.0 / 16.0, 15.0 / 16.0]);
        assert!(train.x.iter().all(|v| (0.0..=1.0).contains(v)));
    }

    #[test]
    fn csv_by_name_with_header() {
        let text = "a,label,b\n1,3,2\n4,0,8\n";
        let opts = CsvOptions {
            label: LabelColumn::Name("label".into()),
            header: true,
            scale: 8.0,
        };
        let ds = Dataset::csv_from_str("t.csv", text, &opts).unwrap();
        assert_eq!(ds.y, vec![3, 0]);
        assert_eq!(ds.x, vec![0.125, 0.25, 0.5, 1.0]);
        let bad = Dataset::csv_from_str("t.csv", "a,label\n1,2.5\n", &opts).unwrap_err();
        assert!(bad.to_string().contains("line 2"), "{bad}");
        let opts = CsvOptions {
            label: LabelColumn::Name("nope".into()),
            header: true,
            scale: 1.0,
        };
        let err = Dataset::csv_from_str("t.csv", text, &opts)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no column \"nope\""), "{err}");
    }

    #[test]
    fn tensors_round_trip_and_validate() {
        let ds = Dataset::new(vec![0.0, 0.5, 1.0, 0.25], vec![7, 2], 2).unwrap();
        let map = ds.to_tensors().unwrap();
        assert_eq!(map["y"].dtype, DType::U32);
        let back = Dataset::from_tensor_map(&map, "x", "y").unwrap();
        assert_eq!(back, ds);
        let y64 = TensorData::new(
            DType::I64,
            vec![2],
            [-1i64, 3].iter().flat_map(|v| v.to_le_bytes()).collect(),
        )
        .unwrap();
        let err = Dataset::from_tensors(&map["x"], &y64)
            .unwrap_err()
            .to_string();
        assert!(err.contains("label 0 is -1"), "{err}");
        let xu8 = TensorData::new(DType::U8, vec![1, 2], vec![0, 255]).unwrap();
        let y = TensorData::new(DType::U8, vec![1], vec![4]).unwrap();
        let d = Dataset::from_tensors(&xu8, &y).unwrap();
        assert_eq!((d.x.clone(), d.y.clone()), (vec![0.0, 1.0], vec![4]));
    }

    #[test]
    fn idx_validation_names_the_problem() {
        let mut img = vec![0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 2];
        img.extend([0, 255, 51, 102]);
        let (dims, body) = parse_idx(&img, 0x0803, 3).unwrap();
        assert_eq!((dims, body.len()), (vec![1, 2, 2], 4));
        let err = parse_idx(&img[..18], 0x0803, 3).unwrap_err();
        assert!(err.contains("need 4 data bytes, file has 2"), "{err}");
        let err = parse_idx(&img, 0x0801, 1).unwrap_err();
        assert!(err.contains("magic number 0x00000803"), "{err}");
    }

    #[test]
    fn split_rejects_overlapping_classes() {
        let ds = Dataset::new(vec![0.0; 8], vec![0, 1, 2, 3], 2).unwrap();
        let parts = split_by_classes(&ds, &[vec![0, 1], vec![2, 3]]).unwrap();
        assert_eq!(parts[1].y, vec![2, 3]);
        assert!(split_by_classes(&ds, &[vec![0, 1], vec![1]]).is_err());
        assert!(split_by_classes(&ds, &[vec![9]]).is_err());
    }
}
