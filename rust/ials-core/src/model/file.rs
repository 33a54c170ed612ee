//! Model files in the format the Python package writes (`ials.AlternatingLeastSquares`, version
//! 1): an `.npz` archive of the constructor parameters under implicit's names, the two factor
//! matrices and a SHA-256 checksum over every other entry. A file written here loads in Python
//! and the other way round; a truncated, edited or foreign file is refused.

use std::io::Write;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::Real;

use super::npz::{invalid, read_archive, write_archive, Array};
use super::{Model, Settings};

const FORMAT: &str = "ials.AlternatingLeastSquares";
const VERSION: i64 = 1;
const CHECKSUM: &str = "ials_checksum";

/// SHA-256 over the entries in name order (the checksum entry left out): for each, the name, the
/// numpy type and the shape as Python spells them, each with its length, then the data.
fn checksum(entries: &[(String, Array)]) -> String {
    let mut sorted: Vec<&(String, Array)> = entries
        .iter()
        .filter(|(name, _)| name != CHECKSUM)
        .collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut digest = Sha256::new();
    for (name, array) in sorted {
        for part in [name.as_str(), &array.descr, &array.shape_repr()] {
            digest.update((part.len() as u64).to_le_bytes());
            digest.update(part.as_bytes());
        }
        digest.update((array.bytes.len() as u64).to_le_bytes());
        digest.update(&array.bytes);
    }
    digest
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn factor_array<T: Real>(values: &[T], rows: usize, k: usize) -> Array {
    let mut bytes = Vec::with_capacity(std::mem::size_of_val(values));
    for v in values {
        v.write_le(&mut bytes);
    }
    Array {
        descr: T::DESCR.into(),
        shape: vec![rows, k],
        bytes,
    }
}

/// The entries of `model`'s file, in the order Python writes them.
fn entries<T: Real>(model: &Model<T>) -> Vec<(String, Array)> {
    let s = &model.settings;
    let mut entries: Vec<(String, Array)> = vec![
        ("ials_format".into(), Array::scalar_str(FORMAT)),
        ("ials_format_version".into(), Array::scalar_i64(VERSION)),
        ("ials_note".into(), Array::scalar_str("")),
        (CHECKSUM.into(), Array::scalar_str("")),
        ("factors".into(), Array::scalar_i64(s.factors as i64)),
        ("regularization".into(), Array::scalar_f64(s.regularization)),
        ("alpha".into(), Array::scalar_f64(s.alpha)),
        ("dtype".into(), Array::scalar_str(T::NUMPY_NAME)),
        ("use_native".into(), Array::scalar_bool(true)),
        ("use_cg".into(), Array::scalar_bool(s.cg_steps.is_some())),
        ("iterations".into(), Array::scalar_i64(s.iterations as i64)),
        ("calculate_training_loss".into(), Array::scalar_bool(false)),
        (
            "num_threads".into(),
            Array::scalar_i64(s.num_threads as i64),
        ),
        (
            "random_state".into(),
            Array::scalar_i64(s.random_state as i64),
        ),
        (
            "cg_steps".into(),
            Array::scalar_i64(s.cg_steps.unwrap_or(3) as i64),
        ),
        (
            "regularization_exponent".into(),
            Array::scalar_f64(s.regularization_exponent),
        ),
        (
            "unobserved_weight".into(),
            Array::scalar_f64(s.unobserved_weight),
        ),
        (
            "user_factors".into(),
            factor_array(&model.user_factors, model.n_users, s.factors),
        ),
        (
            "item_factors".into(),
            factor_array(&model.item_factors, model.n_items, s.factors),
        ),
    ];
    let sum = checksum(&entries);
    entries[3].1 = Array::scalar_str(&sum);
    entries
}

/// Writes `model` to `path` (`.npz` appended when missing, as numpy does) through a temporary
/// file in the same folder, renamed into place: a reader never sees half a file.
pub(crate) fn save<T: Real>(model: &Model<T>, path: &Path) -> Result<()> {
    let path = with_extension(path);
    let bytes = write_archive(&entries(model))?;
    let folder = path.parent().filter(|p| !p.as_os_str().is_empty());
    let folder = folder.unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| Error::Io(format!("{} is not a file path", path.display())))?;
    let temporary = folder.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = (|| {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, &path)
    })();
    if let Err(err) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(Error::Io(format!(
            "could not write {}: {err}",
            path.display()
        )));
    }
    Ok(())
}

fn with_extension(path: &Path) -> std::path::PathBuf {
    if path.extension().is_some_and(|e| e == "npz") {
        path.to_path_buf()
    } else {
        let mut name = path.as_os_str().to_owned();
        name.push(".npz");
        name.into()
    }
}

/// The model in the file at `path`, written by this crate or by the Python package.
pub(crate) fn load<T: Real>(path: &Path) -> Result<Model<T>> {
    let path = with_extension(path);
    let bytes = std::fs::read(&path)
        .map_err(|err| Error::Io(format!("could not read {}: {err}", path.display())))?;
    parse(&bytes).map_err(|err| match err {
        Error::InvalidFile(m) => Error::InvalidFile(format!("{}: {m}", path.display())),
        other => other,
    })
}

fn parse<T: Real>(bytes: &[u8]) -> Result<Model<T>> {
    let entries = read_archive(bytes)?;
    let get = |name: &str| {
        entries
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| a)
            .ok_or_else(|| invalid(format!("no {name:?} entry")))
    };
    let format = get("ials_format")?.as_str("ials_format")?;
    if format != FORMAT {
        return Err(invalid(format!(
            "holds a {format:?}, not a {FORMAT:?} model"
        )));
    }
    let version = get("ials_format_version")?.as_i64("ials_format_version")?;
    if version != VERSION {
        return Err(invalid(format!(
            "is format version {version}; this crate reads version {VERSION}"
        )));
    }
    if get(CHECKSUM)?.as_str(CHECKSUM)? != checksum(&entries) {
        return Err(invalid(
            "fails its checksum: the file was modified or corrupted after it was written".into(),
        ));
    }
    let dtype = get("dtype")?.as_str("dtype")?;
    if dtype != T::NUMPY_NAME {
        return Err(invalid(format!(
            "holds {dtype} factors; load it as a Model<{}>",
            if dtype == "float64" { "f64" } else { "f32" }
        )));
    }
    let count = |name: &str| -> Result<usize> {
        usize::try_from(get(name)?.as_i64(name)?)
            .map_err(|_| invalid(format!("{name} is negative")))
    };
    let use_cg = get("use_cg")?.as_bool("use_cg")?;
    let settings = Settings {
        factors: count("factors")?,
        regularization: get("regularization")?.as_f64("regularization")?,
        alpha: get("alpha")?.as_f64("alpha")?,
        regularization_exponent: get("regularization_exponent")?
            .as_f64("regularization_exponent")?,
        unobserved_weight: get("unobserved_weight")?.as_f64("unobserved_weight")?,
        iterations: count("iterations")?,
        cg_steps: if use_cg {
            Some(count("cg_steps")?)
        } else {
            None
        },
        num_threads: count("num_threads")?,
        random_state: match get("random_state") {
            Ok(seed) => seed.as_i64("random_state")? as u64,
            Err(_) => 0,
        },
    };
    let factors = |name: &str| -> Result<(Vec<T>, usize)> {
        let array = get(name)?;
        match array.shape.as_slice() {
            [rows, k] if *k == settings.factors && array.descr == T::DESCR => {
                let values: Vec<T> = array
                    .bytes
                    .chunks_exact(std::mem::size_of::<T>())
                    .map(T::from_le_bytes)
                    .collect();
                if values.iter().any(|v| !v.is_finite()) {
                    return Err(invalid(format!("{name} holds a non-finite value")));
                }
                Ok((values, *rows))
            }
            _ => Err(invalid(format!(
                "{name} must be a {} x {} {} matrix",
                "n",
                settings.factors,
                T::NUMPY_NAME
            ))),
        }
    };
    let (user_factors, n_users) = factors("user_factors")?;
    let (item_factors, n_items) = factors("item_factors")?;
    settings.objective().validate()?;
    Ok(Model {
        settings,
        user_factors,
        item_factors,
        n_users,
        n_items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> Model<f32> {
        Model {
            settings: Settings {
                factors: 2,
                random_state: 7,
                ..Settings::default()
            },
            user_factors: vec![0.5, -1.0, 2.0, 0.25, 1.5, 3.0],
            item_factors: vec![1.0, 2.0, -0.5, 0.125],
            n_users: 3,
            n_items: 2,
        }
    }

    #[test]
    fn files_round_trip_and_refuse_edits() {
        let bytes = write_archive(&entries(&model())).unwrap();
        let back: Model<f32> = parse(&bytes).unwrap();
        assert_eq!(back.user_factors, model().user_factors);
        assert_eq!(back.item_factors, model().item_factors);
        assert_eq!(back.settings, model().settings);
        assert!(matches!(parse::<f64>(&bytes), Err(Error::InvalidFile(_))));
        // A changed factor with a matching CRC still fails the checksum.
        let mut entries = entries(&model());
        entries[17].1.bytes[0] ^= 1;
        let edited = write_archive(&entries).unwrap();
        let err = parse::<f32>(&edited).unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
    }
}
