//! Criterion bench of one conjugate-gradient half-sweep (the inner loop of training).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ials_core::{gram, solve_rows, with_threads, CsrView, Interrupt, Objective, Solver};

/// A deterministic sparse matrix with about `per_row` entries per row and skewed column use.
fn synthetic(n_rows: usize, n_cols: usize, per_row: usize) -> (Vec<i64>, Vec<i32>, Vec<f32>) {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut indptr, mut indices, mut data) = (vec![0i64], Vec::new(), Vec::new());
    for _ in 0..n_rows {
        let mut cols: Vec<i32> = (0..per_row)
            .map(|_| {
                let u = (next() % 1_000_000) as f64 / 1_000_000.0;
                ((u * u) * n_cols as f64) as i32
            })
            .collect();
        cols.sort_unstable();
        cols.dedup();
        data.extend(cols.iter().map(|_| 1.0 + (next() % 5) as f32));
        indices.extend(cols);
        indptr.push(indices.len() as i64);
    }
    (indptr, indices, data)
}

fn half_sweep(c: &mut Criterion) {
    let (n_rows, n_cols) = (20_000, 10_000);
    let (indptr, indices, data) = synthetic(n_rows, n_cols, 30);
    let rows = CsrView::new(&indptr, &indices, &data, n_cols).unwrap();
    let objective = Objective::default();
    let mut group = c.benchmark_group("cg_half_sweep");
    group.sample_size(10);
    for k in [32, 64, 128, 256] {
        let y: Vec<f32> = (0..n_cols * k)
            .map(|i| ((i * 7919 % 1013) as f32) / 101_300.0)
            .collect();
        let mut x: Vec<f32> = (0..n_rows * k)
            .map(|i| ((i * 104_729 % 1009) as f32) / 100_900.0)
            .collect();
        group.bench_with_input(BenchmarkId::from_parameter(k), &k, |b, &k| {
            b.iter(|| {
                with_threads(0, || {
                    let g = gram(&y, k, &Interrupt::new()).unwrap();
                    solve_rows(
                        &rows,
                        &mut x,
                        &y,
                        k,
                        &g,
                        &objective,
                        Solver::ConjugateGradient { steps: 3 },
                        &Interrupt::new(),
                    )
                })
                .unwrap()
                .unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, half_sweep);
criterion_main!(benches);
