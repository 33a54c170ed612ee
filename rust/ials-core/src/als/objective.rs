//! The weighted least-squares objective of implicit ALS (DESIGN.md section 1): how a stored value
//! becomes a preference and a confidence, and how strongly each row is regularised.

use crate::error::{Error, Result};

/// Parameters of the objective shared by both solvers, the loss, fold-in and explanations.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Objective {
    /// lambda: the L2 penalty on each factor row.
    pub regularization: f64,
    /// Confidence of a stored value r is `alpha * |r|`.
    pub alpha: f32,
    /// nu: with nu > 0 the penalty of a row is `lambda * (n + alpha0 * n_cols)^nu` (Rendle et al. 2022).
    pub regularization_exponent: f64,
    /// alpha0: the confidence of every cell that is not stored.
    pub unobserved_weight: f64,
}

impl Default for Objective {
    fn default() -> Self {
        Self {
            regularization: 0.01,
            alpha: 1.0,
            regularization_exponent: 0.0,
            unobserved_weight: 1.0,
        }
    }
}

fn check(name: &str, value: f64) -> Result<()> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(Error::InvalidParameter(format!(
            "{name} must be a finite number >= 0, got {value}"
        )))
    }
}

impl Objective {
    pub fn validate(&self) -> Result<()> {
        check("regularization", self.regularization)?;
        check("alpha", self.alpha as f64)?;
        check("regularization_exponent", self.regularization_exponent)?;
        check("unobserved_weight", self.unobserved_weight)
    }

    /// lambda for a row with `n_stored` entries against `n_cols` columns.
    #[inline]
    pub fn row_regularization(&self, n_stored: usize, n_cols: usize) -> f64 {
        if self.regularization_exponent == 0.0 {
            self.regularization
        } else {
            let support = n_stored as f64 + self.unobserved_weight * n_cols as f64;
            self.regularization * support.powf(self.regularization_exponent)
        }
    }

    /// `(confidence, preference)` of a stored value: r > 0 -> (alpha r, 1), r < 0 -> (alpha |r|, 0),
    /// r == 0 -> (0, 0), which removes the cell from the objective.
    #[inline(always)]
    pub fn cell(&self, value: f32) -> (f32, f32) {
        let confidence = self.alpha * value.abs();
        let preference = if value > 0.0 { 1.0 } else { 0.0 };
        (confidence, preference)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_follow_the_convention() {
        let o = Objective {
            alpha: 2.0,
            ..Objective::default()
        };
        assert_eq!(o.cell(3.0), (6.0, 1.0));
        assert_eq!(o.cell(-3.0), (6.0, 0.0));
        assert_eq!(o.cell(0.0), (0.0, 0.0));
    }

    #[test]
    fn frequency_scaled_regularization() {
        let plain = Objective {
            regularization: 0.5,
            ..Objective::default()
        };
        assert_eq!(plain.row_regularization(10, 100), 0.5);
        let scaled = Objective {
            regularization: 0.5,
            regularization_exponent: 1.0,
            unobserved_weight: 0.1,
            ..Objective::default()
        };
        assert!((scaled.row_regularization(10, 100) - 0.5 * 20.0).abs() < 1e-12);
    }

    #[test]
    fn rejects_negative_or_nan_parameters() {
        for bad in [
            Objective {
                regularization: -1.0,
                ..Objective::default()
            },
            Objective {
                alpha: f32::NAN,
                ..Objective::default()
            },
            Objective {
                regularization_exponent: -0.5,
                ..Objective::default()
            },
            Objective {
                unobserved_weight: f64::INFINITY,
                ..Objective::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
