//! Roofline: the machine's measured f32 FMA peak beside the floating-point rate of the
//! conjugate-gradient half-sweep.
//!
//! ```text
//! cargo bench -p ials-core --bench roofline -- [--threads N] [--data PATH/train.txt] [--repeats R]
//!     [--factors 64,128,...]
//! ```
//!
//! The peak is a loop of independent FMAs (twelve accumulator registers, more than latency x
//! throughput on current x86 cores) on every thread at once, for each instruction set the CPU has
//! (AVX2+FMA, AVX-512F). The half-sweep rate counts the flops of the algorithm, not of the
//! hardware: for a row with n interactions, k factors and s CG steps,
//!
//! ```text
//! (s + 1) (2 k^2 + 4 k n) + 4 k + 12 k s
//! ```
//!
//! (one k x k mat-vec and, per interaction, one dot product and one axpy for the residual and for
//! each step, plus the step's vector updates), and `k (k + 1)` per fixed row for `Y^T Y`. Rows
//! whose CG stops early would count flops never spent, so the rate is an upper bound; with the
//! tolerance at 1e-20 that does not happen on real data. The data is the LightGCN-split gowalla
//! training set when `--data` names it (default `../shared/data/gowalla/train.txt` from the
//! repository root), otherwise a synthetic matrix of the same shape.

// The AVX-512 probe needs Rust 1.89; the library itself keeps the workspace's older MSRV.
#![allow(clippy::incompatible_msrv)]

use std::time::Instant;

use ials_core::{gram, solve_rows, with_threads, CsrView, Interrupt, Objective, Solver};

const CG_STEPS: usize = 3;
/// Independent accumulator chains per FMA loop: more than FMA latency x issue width.
const CHAINS: usize = 12;

struct Args {
    threads: usize,
    data: String,
    repeats: usize,
    factors: Vec<usize>,
}

fn parse_args() -> Args {
    let mut args = Args {
        threads: 2,
        data: "../../../shared/data/gowalla/train.txt".into(),
        repeats: 5,
        factors: vec![64, 128],
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--threads" => args.threads = value().parse().expect("--threads: an integer"),
            "--data" => args.data = value(),
            "--repeats" => args.repeats = value().parse().expect("--repeats: an integer"),
            "--factors" => {
                args.factors = value()
                    .split(',')
                    .map(|k| k.parse().expect("--factors: integers separated by commas"))
                    .collect()
            }
            // cargo bench passes --bench to every bench binary.
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    args
}

/// A CSR matrix owned by the bench.
struct Matrix {
    indptr: Vec<i64>,
    indices: Vec<i32>,
    data: Vec<f32>,
    n_cols: usize,
}

impl Matrix {
    fn view(&self) -> CsrView<'_> {
        CsrView::new(&self.indptr, &self.indices, &self.data, self.n_cols).expect("a valid CSR")
    }

    fn from_rows(rows: Vec<Vec<i32>>, n_cols: usize) -> Self {
        let mut m = Matrix {
            indptr: vec![0],
            indices: Vec::new(),
            data: Vec::new(),
            n_cols,
        };
        for mut row in rows {
            row.sort_unstable();
            row.dedup();
            m.data.extend(row.iter().map(|_| 1.0));
            m.indices.extend(row);
            m.indptr.push(m.indices.len() as i64);
        }
        m
    }

    fn transpose(&self) -> Self {
        let mut rows = vec![Vec::new(); self.n_cols];
        for r in 0..self.indptr.len() - 1 {
            for &c in &self.indices[self.indptr[r] as usize..self.indptr[r + 1] as usize] {
                rows[c as usize].push(r as i32);
            }
        }
        Matrix::from_rows(rows, self.indptr.len() - 1)
    }

    fn nnz(&self) -> usize {
        self.indices.len()
    }
}

/// Lines `user item item ...` (the LightGCN split format).
fn read_adjacency(path: &str) -> Option<Matrix> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut rows: Vec<Vec<i32>> = Vec::new();
    let mut n_cols = 0;
    for line in text.lines() {
        let ids: Vec<i32> = line
            .split_whitespace()
            .map(|t| t.parse().unwrap())
            .collect();
        let Some((&user, items)) = ids.split_first() else {
            continue;
        };
        if rows.len() <= user as usize {
            rows.resize(user as usize + 1, Vec::new());
        }
        n_cols = n_cols.max(items.iter().map(|&i| i as usize + 1).max().unwrap_or(0));
        rows[user as usize].extend_from_slice(items);
    }
    Some(Matrix::from_rows(rows, n_cols))
}

/// Gowalla's shape (29858 x 40981, about 27 items per user) with skewed item popularity.
fn synthetic() -> Matrix {
    let (n_rows, n_cols) = (29_858, 40_981);
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 1_000_000) as f64 / 1_000_000.0
    };
    let rows = (0..n_rows)
        .map(|_| {
            (0..27)
                .map(|_| (next().powi(2) * n_cols as f64) as i32)
                .collect()
        })
        .collect();
    Matrix::from_rows(rows, n_cols)
}

/// Nominal flops of one CG half-sweep solving the rows of `m` against `n_fixed` fixed rows.
fn half_sweep_flops(m: &Matrix, n_fixed: usize, k: usize) -> f64 {
    let (k, s) = (k as f64, CG_STEPS as f64);
    let rows = m.indptr.windows(2).filter(|w| w[1] > w[0]).count() as f64;
    let per_row = (s + 1.0) * 2.0 * k * k + 4.0 * k + 12.0 * k * s;
    let per_interaction = (s + 1.0) * 4.0 * k;
    rows * per_row + m.nnz() as f64 * per_interaction + n_fixed as f64 * k * (k + 1.0)
}

fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Seconds for `threads` threads to each run `run(iterations)` at once.
fn concurrently(threads: usize, iterations: u64, run: fn(u64) -> f32) -> f64 {
    let start = Instant::now();
    let sink: f32 = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| scope.spawn(move || run(iterations)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    let elapsed = start.elapsed().as_secs_f64();
    assert!(sink.is_finite());
    elapsed
}

/// An FMA loop for one instruction set: `run(n)` issues `n x CHAINS` FMAs of `lanes` f32 lanes.
struct InstructionSet {
    name: &'static str,
    lanes: usize,
    run: fn(u64) -> f32,
}

#[cfg(target_arch = "x86_64")]
mod peak {
    use std::arch::x86_64::*;

    use super::CHAINS;

    #[target_feature(enable = "avx2,fma")]
    unsafe fn avx2_loop(iterations: u64) -> f32 {
        let mut acc = [_mm256_set1_ps(1.0); CHAINS];
        let (scale, shift) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
        for _ in 0..iterations {
            for a in acc.iter_mut() {
                *a = _mm256_fmadd_ps(*a, scale, shift);
            }
        }
        let mut out = [0.0f32; 8];
        let sum = acc
            .iter()
            .fold(_mm256_setzero_ps(), |s, &a| _mm256_add_ps(s, a));
        // SAFETY: `out` holds the 8 values stored.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), sum) };
        out.iter().sum()
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn avx512_loop(iterations: u64) -> f32 {
        let mut acc = [_mm512_set1_ps(1.0); CHAINS];
        let (scale, shift) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
        for _ in 0..iterations {
            for a in acc.iter_mut() {
                *a = _mm512_fmadd_ps(*a, scale, shift);
            }
        }
        _mm512_reduce_add_ps(
            acc.iter()
                .fold(_mm512_setzero_ps(), |s, &a| _mm512_add_ps(s, a)),
        )
    }

    pub fn avx2(iterations: u64) -> f32 {
        // SAFETY: only called when the CPU has AVX2 and FMA (see `instruction_sets`).
        unsafe { avx2_loop(iterations) }
    }

    pub fn avx512(iterations: u64) -> f32 {
        // SAFETY: only called when the CPU has AVX-512F (see `instruction_sets`).
        unsafe { avx512_loop(iterations) }
    }

    /// Each instruction set this CPU has.
    pub fn instruction_sets() -> Vec<super::InstructionSet> {
        let mut sets = Vec::new();
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            sets.push(super::InstructionSet {
                name: "avx2+fma",
                lanes: 8,
                run: avx2,
            });
        }
        if is_x86_feature_detected!("avx512f") {
            sets.push(super::InstructionSet {
                name: "avx512",
                lanes: 16,
                run: avx512,
            });
        }
        sets
    }
}

fn main() {
    let args = parse_args();
    println!(
        "threads: {}, simd level in use: {}",
        args.threads,
        ials_core::simd_level().name()
    );

    #[cfg(target_arch = "x86_64")]
    let sets = peak::instruction_sets();
    #[cfg(not(target_arch = "x86_64"))]
    let sets: Vec<InstructionSet> = Vec::new();
    let mut peak_in_use = None;
    println!("\nf32 FMA peak (GFLOP/s, median of {}):", args.repeats);
    for &InstructionSet { name, lanes, run } in &sets {
        let iterations = 100_000_000;
        let seconds = median(
            (0..args.repeats)
                .map(|_| concurrently(args.threads, iterations, run))
                .collect(),
        );
        let flops = (args.threads as u64 * iterations) as f64 * (CHAINS * lanes * 2) as f64;
        let rate = flops / seconds / 1e9;
        println!(
            "  {name:<9} {rate:8.1} ({:.1} per thread)",
            rate / args.threads as f64
        );
        if name == ials_core::simd_level().name() {
            peak_in_use = Some(rate);
        }
    }
    if sets.iter().all(|s| s.name != "avx512") {
        println!("  avx512    absent on this CPU");
    }

    let (users, source) = match read_adjacency(&args.data) {
        Some(m) => (m, args.data.as_str()),
        None => (synthetic(), "synthetic, gowalla's shape"),
    };
    let items = users.transpose();
    println!(
        "\nCG half-sweeps ({CG_STEPS} steps, f32) on {source}: {} users x {} items, {} interactions",
        items.n_cols,
        users.n_cols,
        users.nnz()
    );
    println!("  factors  side   seconds   GFLOP/s   % of peak");
    for &k in &args.factors {
        let init = |n: usize, seed: usize| -> Vec<f32> {
            (0..n * k)
                .map(|i| ((i * 7919 + seed) % 1013) as f32 / 10_130.0 - 0.05)
                .collect()
        };
        let mut x = init(items.n_cols, 1);
        let mut y = init(users.n_cols, 2);
        let objective = Objective::default();
        for (side, rows, n_fixed) in [
            ("users", &users, users.n_cols),
            ("items", &items, items.n_cols),
        ] {
            let view = rows.view();
            let time_once = |solved: &mut [f32], fixed: &[f32]| {
                let start = Instant::now();
                with_threads(args.threads, || {
                    let g = gram(fixed, k, &Interrupt::new()).unwrap();
                    let solver = Solver::ConjugateGradient { steps: CG_STEPS };
                    solve_rows(
                        &view,
                        solved,
                        fixed,
                        k,
                        &g,
                        &objective,
                        solver,
                        &Interrupt::new(),
                    )
                })
                .unwrap()
                .unwrap();
                start.elapsed().as_secs_f64()
            };
            let seconds = median(
                (0..args.repeats)
                    .map(|_| {
                        if side == "users" {
                            time_once(&mut x, &y)
                        } else {
                            time_once(&mut y, &x)
                        }
                    })
                    .collect(),
            );
            let rate = half_sweep_flops(rows, n_fixed, k) / seconds / 1e9;
            let share = peak_in_use.map_or("-".to_string(), |p| format!("{:.1}", 100.0 * rate / p));
            println!("  {k:7}  {side:5} {seconds:9.4} {rate:9.1}   {share:>9}");
        }
    }
}
