//! Continual-learning metrics from an accuracy matrix.
//!
//! `R[i][j]` is the test accuracy on task `j` after training task `i` (0-based here; `T`
//! tasks). Row `i` must hold at least the tasks `0..=i`; entries above the diagonal (tasks not
//! trained yet) are optional and only needed for forward transfer. `b[j]` is the accuracy of
//! the untrained model on task `j`.
//!
//! * ACC = mean over j of `R[T-1][j]`
//! * BWT = mean over j < T-1 of `R[T-1][j] - R[j][j]`
//! * FWT = mean over j >= 1 of `R[j-1][j] - b[j]`
//! * forgetting of task j after task k = max over l < k of `R[l][j] - R[k][j]` (over the
//!   entries present); the reported value is its mean over j < T-1 at k = T-1
//! * negative flip rate = share of test samples right before and wrong after

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The summary metrics of a stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StreamMetrics {
    pub acc: f64,
    /// `None` with a single task.
    pub bwt: Option<f64>,
    /// `None` without untrained accuracies or entries above the diagonal.
    pub fwt: Option<f64>,
    /// Mean final forgetting; `None` with a single task.
    pub forgetting: Option<f64>,
}

fn check(r: &[Vec<f64>]) -> Result<usize> {
    if r.is_empty() {
        return Err(Error::Settings("accuracy matrix is empty".into()));
    }
    for (i, row) in r.iter().enumerate() {
        if row.len() <= i {
            return Err(Error::Settings(format!(
                "accuracy matrix row {i} has {} entries, needs at least {}",
                row.len(),
                i + 1
            )));
        }
    }
    let t = r.len();
    if r[t - 1].len() != t {
        return Err(Error::Settings(format!(
            "accuracy matrix last row has {} entries, expected {t}",
            r[t - 1].len()
        )));
    }
    Ok(t)
}

/// Average accuracy after the last task.
pub fn average_accuracy(r: &[Vec<f64>]) -> Result<f64> {
    let t = check(r)?;
    Ok(r[t - 1].iter().sum::<f64>() / t as f64)
}

/// Backward transfer; `None` with one task.
pub fn backward_transfer(r: &[Vec<f64>]) -> Result<Option<f64>> {
    let t = check(r)?;
    if t < 2 {
        return Ok(None);
    }
    let s: f64 = (0..t - 1).map(|j| r[t - 1][j] - r[j][j]).sum();
    Ok(Some(s / (t - 1) as f64))
}

/// Forward transfer against the untrained accuracies `b`; `None` with one task or when an
/// entry `R[j-1][j]` is absent.
pub fn forward_transfer(r: &[Vec<f64>], b: &[f64]) -> Result<Option<f64>> {
    let t = check(r)?;
    if b.len() != t {
        return Err(Error::Settings(format!(
            "{} untrained accuracies for {t} tasks",
            b.len()
        )));
    }
    if t < 2 {
        return Ok(None);
    }
    let mut s = 0.0;
    for j in 1..t {
        match r[j - 1].get(j) {
            Some(v) => s += v - b[j],
            None => return Ok(None),
        }
    }
    Ok(Some(s / (t - 1) as f64))
}

/// Forgetting of task `j` after training task `k` (`j < k`).
pub fn forgetting(r: &[Vec<f64>], j: usize, k: usize) -> Result<f64> {
    let t = check(r)?;
    if !(j < k && k < t) {
        return Err(Error::Settings(format!(
            "forgetting needs j < k < {t}, got j={j} k={k}"
        )));
    }
    let best = (0..k)
        .filter_map(|l| r[l].get(j))
        .fold(f64::NEG_INFINITY, |a, b| a.max(*b));
    Ok(best - r[k][j])
}

/// Mean forgetting after the last task over all earlier tasks; `None` with one task.
pub fn mean_forgetting(r: &[Vec<f64>]) -> Result<Option<f64>> {
    let t = check(r)?;
    if t < 2 {
        return Ok(None);
    }
    let mut s = 0.0;
    for j in 0..t - 1 {
        s += forgetting(r, j, t - 1)?;
    }
    Ok(Some(s / (t - 1) as f64))
}

/// Share of samples the parent got right and the child gets wrong.
pub fn negative_flip_rate(before: &[bool], after: &[bool]) -> Result<f64> {
    if before.len() != after.len() {
        return Err(Error::Settings(format!(
            "correctness vectors differ in length: {} before, {} after",
            before.len(),
            after.len()
        )));
    }
    if before.is_empty() {
        return Err(Error::Settings("correctness vectors are empty".into()));
    }
    let flips = before
        .iter()
        .zip(after)
        .filter(|(b, a)| **b && !**a)
        .count();
    Ok(flips as f64 / before.len() as f64)
}

/// All summary metrics; `b` (untrained accuracies) is optional.
pub fn summarize(r: &[Vec<f64>], b: Option<&[f64]>) -> Result<StreamMetrics> {
    Ok(StreamMetrics {
        acc: average_accuracy(r)?,
        bwt: backward_transfer(r)?,
        fwt: match b {
            Some(b) => forward_transfer(r, b)?,
            None => None,
        },
        forgetting: mean_forgetting(r)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    // Three tasks; row i = after training task i.
    fn matrix() -> Vec<Vec<f64>> {
        vec![
            vec![0.9, 0.4, 0.5],
            vec![0.7, 0.8, 0.3],
            vec![0.6, 0.5, 0.95],
        ]
    }

    #[test]
    fn acc_bwt_fwt_by_hand() {
        let r = matrix();
        // ACC = (0.6 + 0.5 + 0.95) / 3
        assert!(close(average_accuracy(&r).unwrap(), 2.05 / 3.0));
        // BWT = ((0.6 - 0.9) + (0.5 - 0.8)) / 2 = -0.3
        assert!(close(backward_transfer(&r).unwrap().unwrap(), -0.3));
        // FWT = ((R[0][1] - b1) + (R[1][2] - b2)) / 2 = ((0.4 - 0.5) + (0.3 - 0.2)) / 2 = 0
        let b = [0.1, 0.5, 0.2];
        assert!(close(forward_transfer(&r, &b).unwrap().unwrap(), 0.0));
        let b = [0.1, 0.3, 0.1];
        assert!(close(forward_transfer(&r, &b).unwrap().unwrap(), 0.15));
    }

    #[test]
    fn forgetting_by_hand() {
        let r = matrix();
        // Task 0 after task 2: max(0.9, 0.7) - 0.6 = 0.3; task 1: max(0.4, 0.8) - 0.5 = 0.3.
        assert!(close(forgetting(&r, 0, 2).unwrap(), 0.3));
        assert!(close(forgetting(&r, 1, 2).unwrap(), 0.3));
        // Task 0 after task 1: 0.9 - 0.7.
        assert!(close(forgetting(&r, 0, 1).unwrap(), 0.2));
        assert!(close(mean_forgetting(&r).unwrap().unwrap(), 0.3));
        let r2 = vec![vec![0.5, 0.1], vec![0.8, 0.9]];
        // Accuracy went up: negative forgetting.
        assert!(close(mean_forgetting(&r2).unwrap().unwrap(), -0.3));
        assert!(forgetting(&r, 2, 1).is_err());
    }

    #[test]
    fn lower_triangular_matrix_has_no_fwt() {
        let r = vec![vec![0.9], vec![0.7, 0.8]];
        assert!(close(average_accuracy(&r).unwrap(), 0.75));
        assert_eq!(forward_transfer(&r, &[0.5, 0.5]).unwrap(), None);
        let m = summarize(&r, None).unwrap();
        assert!(close(m.bwt.unwrap(), -0.2));
        assert!(close(m.forgetting.unwrap(), 0.2));
        assert_eq!(summarize(&[vec![0.7]], None).unwrap().bwt, None);
        assert!(average_accuracy(&[vec![0.7], vec![0.5]]).is_err());
    }

    #[test]
    fn negative_flips_by_hand() {
        let before = [true, true, false, true, false];
        let after = [true, false, true, false, false];
        assert!(close(negative_flip_rate(&before, &after).unwrap(), 0.4));
        assert!(negative_flip_rate(&before, &after[..2]).is_err());
    }
}
