//! Run-time choice of instruction set: the bottom layer of the core.
//!
//! Kernels are written once, generic over an [`Arith`] strategy, and marked `#[inline(always)]`.
//! [`dispatch`] calls them through a function compiled with AVX2+FMA enabled when the CPU has
//! them, so LLVM vectorises the inlined body for that target, while the same wheel still runs on
//! any x86-64. Dispatch happens once per block of rows, never per element. Rayon closures do not
//! inherit target features, which is why each parallel task calls `dispatch` itself.
//!
//! A kernel with a hand-written body for an instruction set keeps it beside its generic body (in
//! `linalg`, `als`, `rank` or `check`) and takes it only when the strategy it was given holds an
//! [`Avx2`] token. Tokens come only from CPU detection, and [`Fused`], the strategy that carries
//! one, is built only by [`dispatch`]: specialised code cannot run on a CPU without its features.

use std::sync::OnceLock;

use crate::Real;

/// How a kernel's arithmetic runs: how `a * b + c` is evaluated, and whether hand-written
/// AVX2 bodies may be used.
pub trait Arith: Copy + Send + Sync {
    /// `a * b + c`: one fused instruction under [`Fused`]; elsewhere `mul_add` would be a slow
    /// software call, so the portable strategy multiplies and adds.
    fn fma<T: Real>(a: T, b: T, c: T) -> T;

    /// Proof that AVX2, FMA and POPCNT may be used, when this strategy runs with them.
    fn avx2(self) -> Option<Avx2>;
}

/// Proof that the CPU has AVX2, FMA and POPCNT: only [`Avx2::detect`] makes one.
#[derive(Clone, Copy, Debug)]
pub struct Avx2 {
    _detected: (),
}

impl Avx2 {
    /// A token when the CPU has the features (whatever `IALS_SIMD` says: tests use this to run
    /// the specialised bodies beside their generic twins).
    pub fn detect() -> Option<Self> {
        #[cfg(target_arch = "x86_64")]
        {
            // Every CPU with AVX2 has POPCNT; it is checked and enabled too, for the bit counts
            // of the ranking metrics.
            if std::is_x86_feature_detected!("avx2")
                && std::is_x86_feature_detected!("fma")
                && std::is_x86_feature_detected!("popcnt")
            {
                return Some(Self { _detected: () });
            }
        }
        None
    }
}

/// Hardware fused multiply-add, and the AVX2 bodies when it runs on x86-64. Built only by
/// [`dispatch`].
#[derive(Clone, Copy)]
pub struct Fused {
    avx2: Option<Avx2>,
}

/// Separate multiply and add, generic bodies only: correct on any CPU.
#[derive(Clone, Copy)]
pub struct Unfused;

impl Arith for Fused {
    #[inline(always)]
    fn fma<T: Real>(a: T, b: T, c: T) -> T {
        a.mul_add(b, c)
    }

    #[inline(always)]
    fn avx2(self) -> Option<Avx2> {
        self.avx2
    }
}

impl Arith for Unfused {
    #[inline(always)]
    fn fma<T: Real>(a: T, b: T, c: T) -> T {
        a * b + c
    }

    #[inline(always)]
    fn avx2(self) -> Option<Avx2> {
        None
    }
}

/// `values` as `&mut [f32]` when `T` is `f32`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn as_f32_mut<T: 'static>(values: &mut [T]) -> Option<&mut [f32]> {
    if std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>() {
        // SAFETY: T is f32, so the slice is reinterpreted as itself.
        Some(unsafe {
            std::slice::from_raw_parts_mut(values.as_mut_ptr().cast::<f32>(), values.len())
        })
    } else {
        None
    }
}

/// `values` as `&[f32]` when `T` is `f32`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn as_f32<T: 'static>(values: &[T]) -> Option<&[f32]> {
    if std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>() {
        // SAFETY: T is f32, so the slice is reinterpreted as itself.
        Some(unsafe { std::slice::from_raw_parts(values.as_ptr().cast::<f32>(), values.len()) })
    } else {
        None
    }
}

/// A piece of work that can be compiled for several instruction sets.
pub trait Kernel {
    type Output;
    fn run<A: Arith>(self, arith: A) -> Self::Output;
}

/// The instruction sets with a dedicated code path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimdLevel {
    Portable,
    Avx2Fma,
}

impl SimdLevel {
    pub fn name(self) -> &'static str {
        match self {
            SimdLevel::Portable => "portable",
            SimdLevel::Avx2Fma => "avx2+fma",
        }
    }
}

fn detected() -> SimdLevel {
    match Avx2::detect() {
        Some(_) => SimdLevel::Avx2Fma,
        None => SimdLevel::Portable,
    }
}

/// The level in use: the best the CPU offers, or `portable` when the environment variable
/// `IALS_SIMD=portable` asks for it (so tests can compare the paths on one machine).
pub fn simd_level() -> SimdLevel {
    static LEVEL: OnceLock<SimdLevel> = OnceLock::new();
    *LEVEL.get_or_init(|| match std::env::var("IALS_SIMD").as_deref() {
        Ok("portable") => SimdLevel::Portable,
        _ => detected(),
    })
}

/// Runs `kernel` with the best instruction set available.
#[inline]
pub fn dispatch<K: Kernel>(kernel: K) -> K::Output {
    #[cfg(target_arch = "x86_64")]
    {
        if simd_level() == SimdLevel::Avx2Fma {
            if let Some(token) = Avx2::detect() {
                // SAFETY: the token proves the CPU has AVX2, FMA and POPCNT.
                return unsafe { run_avx2_fma(kernel, token) };
            }
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        // NEON with fused multiply-add is part of the aarch64 baseline.
        return kernel.run(Fused { avx2: None });
    }
    #[allow(unreachable_code)]
    kernel.run(Unfused)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,popcnt")]
fn run_avx2_fma<K: Kernel>(kernel: K, token: Avx2) -> K::Output {
    kernel.run(Fused { avx2: Some(token) })
}

/// Asks the CPU to start loading `values` into cache (a hint; a no-op off x86-64).
#[inline(always)]
pub fn prefetch<T>(values: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        const LINE: usize = 64;
        let start = values.as_ptr() as *const i8;
        let bytes = std::mem::size_of_val(values);
        let mut offset = 0;
        while offset < bytes {
            // SAFETY: the address lies inside `values`, and prefetching never faults.
            #[allow(unused_unsafe)]
            unsafe {
                _mm_prefetch::<_MM_HINT_T0>(start.add(offset))
            };
            offset += LINE;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = values;
}

/// Strategies for tests: what this machine can run, and the token for calling specialised
/// bodies directly beside their generic twins.
#[cfg(test)]
pub(crate) mod testing {
    use super::{Avx2, Fused};

    /// `Fused` as [`dispatch`](super::dispatch) would build it here, when the CPU has FMA.
    pub(crate) fn fused() -> Option<Fused> {
        if cfg!(target_arch = "aarch64") {
            return Some(Fused { avx2: None });
        }
        Avx2::detect().map(|token| Fused { avx2: Some(token) })
    }

    /// Fused arithmetic without the AVX2 bodies: the generic body of every kernel with the
    /// arithmetic (one rounding per multiply-add) its AVX2 twin has, to compare them bit for bit.
    pub(crate) fn generic_fused() -> Fused {
        Fused { avx2: None }
    }

    /// The AVX2 token, or `None` after saying on stderr that `test` is skipped on this CPU.
    pub(crate) fn avx2_or_skip(test: &str) -> Option<Avx2> {
        let token = Avx2::detect();
        if token.is_none() {
            eprintln!("SKIPPED {test}: this CPU has no AVX2+FMA");
        }
        token
    }
}
