//! A trained model for Rust programs: the whole training loop (initialisation, alternating
//! half-sweeps), recommendation, similar items, and model files shared with the Python package.

mod file;
mod npz;

use std::path::Path;

use crate::csr::{CsrMatrix, CsrView};
use crate::error::{Error, Result};
use crate::parallel::{thread_pool, Interrupt};
use crate::rank::{top_k, Exclusions};
use crate::{gram, solve_rows, turning_pays, Objective, Real, Solver, TurnedBasis};

/// The parameters of a fit, with the Python package's names and defaults
/// (`ials.AlternatingLeastSquares`).
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Latent factors per user and item.
    pub factors: usize,
    /// lambda: the L2 penalty of each factor row.
    pub regularization: f64,
    /// Confidence of a stored value r is `alpha * |r|`.
    pub alpha: f64,
    /// nu: the penalty of a row with n interactions is `lambda * (n + alpha0 * n_other)^nu`.
    pub regularization_exponent: f64,
    /// alpha0: the confidence of every cell that is not stored.
    pub unobserved_weight: f64,
    /// Alternating sweeps (users, then items).
    pub iterations: usize,
    /// Conjugate-gradient steps per row solve; `None` solves each row exactly (Cholesky).
    pub cg_steps: Option<usize>,
    /// Threads (0: every core). The factors are the same for any value.
    pub num_threads: usize,
    /// Seed of the starting factors.
    pub random_state: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            factors: 100,
            regularization: 0.01,
            alpha: 1.0,
            regularization_exponent: 0.0,
            unobserved_weight: 1.0,
            iterations: 15,
            cg_steps: Some(3),
            num_threads: 0,
            random_state: 0,
        }
    }
}

impl Settings {
    /// The objective these settings train.
    pub fn objective(&self) -> Objective {
        Objective {
            regularization: self.regularization,
            alpha: self.alpha as f32,
            regularization_exponent: self.regularization_exponent,
            unobserved_weight: self.unobserved_weight,
        }
    }

    fn validate(&self) -> Result<()> {
        if self.factors == 0 {
            return Err(Error::InvalidParameter(
                "factors must be >= 1, got 0".into(),
            ));
        }
        if self.cg_steps == Some(0) {
            return Err(Error::InvalidParameter(
                "cg_steps must be >= 1, got 0".into(),
            ));
        }
        if self.alpha.is_nan() || self.alpha <= 0.0 {
            return Err(Error::InvalidParameter(format!(
                "alpha must be > 0, got {}",
                self.alpha
            )));
        }
        self.objective().validate()
    }
}

/// User and item factors trained by alternating least squares, with the settings that trained
/// them. `T` is the factor type: `f32` (the default) or `f64`.
#[derive(Clone, Debug)]
pub struct Model<T: Real = f32> {
    settings: Settings,
    user_factors: Vec<T>,
    item_factors: Vec<T>,
    n_users: usize,
    n_items: usize,
}

impl<T: Real> Model<T> {
    /// Trains a model on `user_items` (users x items interaction strengths).
    pub fn fit(user_items: &CsrView<'_>, settings: Settings) -> Result<Self> {
        settings.validate()?;
        let (n_users, n_items, k) = (user_items.n_rows(), user_items.n_cols(), settings.factors);
        let cells = |rows: usize| {
            rows.checked_mul(k).ok_or_else(|| {
                Error::InvalidParameter(format!("{rows} rows of {k} factors do not fit in memory"))
            })
        };
        let mut random = SplitMix64(settings.random_state);
        // Uniform in [0, 0.01), as the Python package starts (with its own generator).
        let mut start = |n: usize| -> Vec<T> {
            (0..n)
                .map(|_| T::from_f64(0.01 * random.next_unit()))
                .collect()
        };
        let mut user_factors = start(cells(n_users)?);
        let mut item_factors = start(cells(n_items)?);
        let item_users: CsrMatrix = user_items.transpose();
        let item_users = item_users.view();
        let objective = settings.objective();
        let solver = match settings.cg_steps {
            Some(steps) => Solver::ConjugateGradient { steps },
            None => Solver::Cholesky,
        };
        let stop = Interrupt::new();
        // CG where it pays runs in a turned basis (`als::basis`), as the Python package does.
        let mut basis = TurnedBasis::default();
        let mut half_sweep = |rows: &CsrView<'_>, x: &mut Vec<T>, y: &mut Vec<T>| -> Result<()> {
            let mut g = gram(y, k, &stop)?;
            if turning_pays(solver, rows.n_rows(), rows.n_cols(), k) {
                g = basis.reduce(&g, x, y, k)?;
            }
            solve_rows(rows, x, y, k, &g, &objective, solver, &stop)
        };
        let pool = thread_pool(settings.num_threads)?;
        pool.install(|| -> Result<()> {
            for _ in 0..settings.iterations {
                half_sweep(user_items, &mut user_factors, &mut item_factors)?;
                half_sweep(&item_users, &mut item_factors, &mut user_factors)?;
            }
            Ok(())
        })?;
        pool.install(|| basis.restore(&mut user_factors, &mut item_factors, k))?;
        Ok(Self {
            settings,
            user_factors,
            item_factors,
            n_users,
            n_items,
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn n_users(&self) -> usize {
        self.n_users
    }

    pub fn n_items(&self) -> usize {
        self.n_items
    }

    /// Row-major `n_users x factors`.
    pub fn user_factors(&self) -> &[T] {
        &self.user_factors
    }

    /// Row-major `n_items x factors`.
    pub fn item_factors(&self) -> &[T] {
        &self.item_factors
    }

    /// The `n` best items for `user` by predicted preference, best first, leaving out `liked`
    /// (item ids in increasing order: typically the user's row of the training matrix). Fewer
    /// than `n` when fewer items are left.
    pub fn recommend(&self, user: usize, liked: &[i32], n: usize) -> Result<Vec<(i32, T)>> {
        let k = self.settings.factors;
        if user >= self.n_users {
            return Err(Error::InvalidParameter(format!(
                "user {user} is outside 0..{}",
                self.n_users
            )));
        }
        let indptr = [0, liked.len() as i64];
        let ones = vec![1.0f32; liked.len()];
        let liked = CsrView::new(&indptr, liked, &ones, self.n_items)?;
        let query = &self.user_factors[user * k..(user + 1) * k];
        let exclusions = Exclusions {
            per_query: Some(liked),
            global: None,
        };
        self.best(query, &self.item_factors, &exclusions, n)
    }

    /// The `n` items most similar to `item` by the cosine of their factors, the item itself
    /// included (as the Python package and implicit answer): its cosine is 1, so it comes first
    /// unless other items point the same way.
    pub fn similar_items(&self, item: usize, n: usize) -> Result<Vec<(i32, T)>> {
        let k = self.settings.factors;
        if item >= self.n_items {
            return Err(Error::InvalidParameter(format!(
                "item {item} is outside 0..{}",
                self.n_items
            )));
        }
        let normalized: Vec<T> = self
            .item_factors
            .chunks_exact(k)
            .flat_map(|row| {
                let norm = row
                    .iter()
                    .map(|v| v.to_f64() * v.to_f64())
                    .sum::<f64>()
                    .sqrt();
                let scale = if norm > 0.0 { 1.0 / norm } else { 0.0 };
                row.iter().map(move |v| T::from_f64(v.to_f64() * scale))
            })
            .collect();
        let query = normalized[item * k..(item + 1) * k].to_vec();
        self.best(&query, &normalized, &Exclusions::default(), n)
    }

    fn best(
        &self,
        query: &[T],
        items: &[T],
        exclusions: &Exclusions<'_>,
        n: usize,
    ) -> Result<Vec<(i32, T)>> {
        let k = self.settings.factors;
        let n = n.min(self.n_items);
        if n == 0 {
            return Ok(Vec::new());
        }
        let mut ids = vec![0i32; n];
        let mut scores = vec![T::ZERO; n];
        let stop = Interrupt::new();
        thread_pool(self.settings.num_threads)?.install(|| {
            top_k(
                query,
                items,
                k,
                None,
                exclusions,
                n,
                &mut ids,
                &mut scores,
                &stop,
            )
        })?;
        Ok(ids
            .into_iter()
            .zip(scores)
            .filter(|&(id, _)| id >= 0)
            .collect())
    }

    /// Writes the model to `path` (`.npz` added when missing) in the Python package's format:
    /// `ials.AlternatingLeastSquares.load(path)` reads it. The file appears whole or not at all.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        file::save(self, path.as_ref())
    }

    /// The model in a file written by [`Model::save`] or by the Python package's `save`. A file
    /// that was truncated, edited or holds the other factor type is an error.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        file::load(path.as_ref())
    }
}

/// SplitMix64 (Steele, Lea & Flood 2014): a small, well-mixed generator for starting factors.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 random bits.
    fn next_unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two taste groups: users 0..10 play items 0..6, users 10..20 play items 6..12, each user
    /// all but one of their group's items.
    fn groups() -> CsrMatrix {
        let (mut indptr, mut indices) = (vec![0i64], Vec::new());
        for user in 0..20i32 {
            let first = if user < 10 { 0 } else { 6 };
            for item in first..first + 6 {
                if item != first + user % 6 {
                    indices.push(item);
                }
            }
            indptr.push(indices.len() as i64);
        }
        let data = vec![1.0; indices.len()];
        CsrMatrix::new(indptr, indices, data, 12).unwrap()
    }

    fn settings() -> Settings {
        Settings {
            factors: 4,
            iterations: 10,
            regularization: 0.01,
            num_threads: 2,
            random_state: 3,
            ..Settings::default()
        }
    }

    #[test]
    fn recommends_the_missing_item_of_the_users_group() {
        let data = groups();
        let model = Model::<f32>::fit(&data.view(), settings()).unwrap();
        for user in [0usize, 4, 13, 19] {
            let liked = data.view().row(user).0.to_vec();
            let best = model.recommend(user, &liked, 3).unwrap();
            let first = if user < 10 { 0 } else { 6 };
            assert_eq!(best[0].0, first + user as i32 % 6, "user {user}: {best:?}");
            assert!(best.iter().all(|(id, _)| !liked.contains(id)));
        }
        let similar = model.similar_items(2, 4).unwrap();
        assert_eq!(similar[0].0, 2);
        assert!(similar.iter().all(|&(id, _)| id < 6), "{similar:?}");
    }

    #[test]
    fn factors_do_not_depend_on_the_thread_count() {
        let data = groups();
        let one = Model::<f64>::fit(
            &data.view(),
            Settings {
                num_threads: 1,
                ..settings()
            },
        );
        let three = Model::<f64>::fit(
            &data.view(),
            Settings {
                num_threads: 3,
                ..settings()
            },
        );
        assert_eq!(one.unwrap().user_factors, three.unwrap().user_factors);
    }

    #[test]
    fn bad_settings_and_ids_are_errors() {
        let data = groups();
        for bad in [
            Settings {
                factors: 0,
                ..settings()
            },
            Settings {
                cg_steps: Some(0),
                ..settings()
            },
            Settings {
                alpha: 0.0,
                ..settings()
            },
            Settings {
                regularization: -1.0,
                ..settings()
            },
        ] {
            assert!(Model::<f32>::fit(&data.view(), bad).is_err());
        }
        let model = Model::<f32>::fit(&data.view(), settings()).unwrap();
        assert!(model.recommend(20, &[], 3).is_err());
        assert!(model.recommend(0, &[3, 1], 3).is_err());
        assert!(model.similar_items(12, 3).is_err());
        assert_eq!(model.recommend(0, &[], 100).unwrap().len(), 12);
    }

    #[test]
    fn saved_models_load_back() {
        let data = groups();
        let model = Model::<f32>::fit(&data.view(), settings()).unwrap();
        let folder = std::env::temp_dir().join(format!("ials-model-{}", std::process::id()));
        std::fs::create_dir_all(&folder).unwrap();
        let path = folder.join("model");
        model.save(&path).unwrap();
        let back = Model::<f32>::load(folder.join("model.npz")).unwrap();
        assert_eq!(back.user_factors(), model.user_factors());
        assert_eq!(back.item_factors(), model.item_factors());
        assert_eq!(back.settings(), model.settings());
        assert!(Model::<f64>::load(&path).is_err());
        std::fs::remove_dir_all(&folder).unwrap();
    }
}
