//! Run-time choice of instruction set: the bottom layer of the core.
//!
//! Kernels are written once, generic over an [`Arith`] strategy, and marked `#[inline(always)]`.
//! [`dispatch`] calls them through a function compiled with AVX-512 or AVX2+FMA enabled when the
//! CPU has them, so LLVM vectorises the inlined body for that target, while the same wheel still
//! runs on any x86-64. Dispatch happens once per block of rows, never per element. Rayon closures
//! do not inherit target features, which is why each parallel task calls `dispatch` itself.
//!
//! A kernel with hand-written bodies keeps them beside its generic body (in `linalg`, `als`,
//! `rank`) and takes them only when the strategy it was given holds a token: [`Avx2`], and
//! [`Avx512`] for the bodies written once over [`F32Vectors`] (8 lanes with AVX2, 16 with
//! AVX-512). Tokens come only from CPU detection, and [`Fused`], the strategy that carries them,
//! is built only by [`dispatch`]: specialised code cannot run on a CPU without its features.

mod vectors;

use std::sync::OnceLock;

pub(crate) use vectors::F32Vectors;
#[cfg(target_arch = "x86_64")]
pub(crate) use vectors::{V3, V4};

use crate::Real;

/// How a kernel's arithmetic runs: how `a * b + c` is evaluated, and which hand-written bodies
/// may be used.
pub trait Arith: Copy + Send + Sync {
    /// `a * b + c`: one fused instruction under [`Fused`]; elsewhere `mul_add` would be a slow
    /// software call, so the portable strategy multiplies and adds.
    fn fma<T: Real>(a: T, b: T, c: T) -> T;

    /// Proof that AVX2, FMA and POPCNT may be used, when this strategy runs with them.
    fn avx2(self) -> Option<Avx2>;

    /// Proof that AVX-512 (F, VL, BW, DQ) may be used too, when this strategy runs with it.
    fn avx512(self) -> Option<Avx512>;
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

/// Proof that the CPU has AVX-512 F, VL, BW and DQ besides AVX2: only [`Avx512::detect`] makes
/// one.
#[derive(Clone, Copy, Debug)]
pub struct Avx512 {
    _detected: (),
}

impl Avx512 {
    /// A token when the CPU has the features (whatever `IALS_SIMD` says).
    pub fn detect() -> Option<Self> {
        #[cfg(target_arch = "x86_64")]
        {
            if Avx2::detect().is_some()
                && std::is_x86_feature_detected!("avx512f")
                && std::is_x86_feature_detected!("avx512vl")
                && std::is_x86_feature_detected!("avx512bw")
                && std::is_x86_feature_detected!("avx512dq")
            {
                return Some(Self { _detected: () });
            }
        }
        None
    }
}

/// Hardware fused multiply-add, and the hand-written bodies of the levels it runs with on
/// x86-64. Built only by [`dispatch`].
#[derive(Clone, Copy)]
pub struct Fused {
    avx2: Option<Avx2>,
    avx512: Option<Avx512>,
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

    #[inline(always)]
    fn avx512(self) -> Option<Avx512> {
        self.avx512
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

    #[inline(always)]
    fn avx512(self) -> Option<Avx512> {
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SimdLevel {
    Portable,
    Avx2Fma,
    Avx512,
}

impl SimdLevel {
    pub fn name(self) -> &'static str {
        match self {
            SimdLevel::Portable => "portable",
            SimdLevel::Avx2Fma => "avx2+fma",
            SimdLevel::Avx512 => "avx512",
        }
    }
}

fn detected() -> SimdLevel {
    if Avx512::detect().is_some() {
        SimdLevel::Avx512
    } else if Avx2::detect().is_some() {
        SimdLevel::Avx2Fma
    } else {
        SimdLevel::Portable
    }
}

/// The level in use: the best the CPU offers, or a lower one that the environment variable
/// `IALS_SIMD` asks for (`portable`, `avx2`), so tests can compare the paths on one machine.
/// A level the CPU lacks is never used.
pub fn simd_level() -> SimdLevel {
    static LEVEL: OnceLock<SimdLevel> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let best = detected();
        let asked = match std::env::var("IALS_SIMD").as_deref() {
            Ok("portable") => SimdLevel::Portable,
            Ok("avx2") => SimdLevel::Avx2Fma,
            _ => best,
        };
        asked.min(best)
    })
}

/// Runs `kernel` with the best instruction set available.
#[inline]
pub fn dispatch<K: Kernel>(kernel: K) -> K::Output {
    #[cfg(target_arch = "x86_64")]
    {
        match simd_level() {
            SimdLevel::Avx512 => {
                if let (Some(avx2), Some(avx512)) = (Avx2::detect(), Avx512::detect()) {
                    // SAFETY: the tokens prove the CPU has AVX-512 F/VL/BW/DQ, AVX2, FMA, POPCNT.
                    return unsafe { run_avx512(kernel, avx2, avx512) };
                }
            }
            SimdLevel::Avx2Fma => {
                if let Some(token) = Avx2::detect() {
                    // SAFETY: the token proves the CPU has AVX2, FMA and POPCNT.
                    return unsafe { run_avx2_fma(kernel, token) };
                }
            }
            SimdLevel::Portable => {}
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        // NEON with fused multiply-add is part of the aarch64 baseline.
        return kernel.run(Fused {
            avx2: None,
            avx512: None,
        });
    }
    #[allow(unreachable_code)]
    kernel.run(Unfused)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,popcnt")]
fn run_avx2_fma<K: Kernel>(kernel: K, token: Avx2) -> K::Output {
    kernel.run(Fused {
        avx2: Some(token),
        avx512: None,
    })
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,popcnt")]
fn run_avx512<K: Kernel>(kernel: K, avx2: Avx2, avx512: Avx512) -> K::Output {
    kernel.run(Fused {
        avx2: Some(avx2),
        avx512: Some(avx512),
    })
}

/// The widest f32 vectors a strategy may use: AVX-512, else AVX2, else none.
#[cfg(target_arch = "x86_64")]
pub(crate) enum Vectors {
    V4(V4),
    V3(V3),
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn vectors<A: Arith>(arith: A) -> Option<Vectors> {
    match (arith.avx512(), arith.avx2()) {
        (Some(avx512), _) => Some(Vectors::V4(V4(avx512))),
        (None, Some(avx2)) => Some(Vectors::V3(V3(avx2))),
        (None, None) => None,
    }
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
    use super::{Avx2, Avx512, Fused};

    /// `Fused` with the AVX2 bodies (not the AVX-512 ones), when the CPU has them.
    pub(crate) fn fused() -> Option<Fused> {
        if cfg!(target_arch = "aarch64") {
            return Some(generic_fused());
        }
        Avx2::detect().map(|token| Fused {
            avx2: Some(token),
            avx512: None,
        })
    }

    /// `Fused` with the AVX-512 bodies, when the CPU has them.
    pub(crate) fn fused_avx512() -> Option<Fused> {
        Some(Fused {
            avx2: Some(Avx2::detect()?),
            avx512: Some(Avx512::detect()?),
        })
    }

    /// Fused arithmetic without the AVX2 bodies: the generic body of every kernel with the
    /// arithmetic (one rounding per multiply-add) its AVX2 twin has, to compare them bit for bit.
    pub(crate) fn generic_fused() -> Fused {
        Fused {
            avx2: None,
            avx512: None,
        }
    }

    /// The AVX2 token, or `None` after saying on stderr that `test` is skipped on this CPU.
    pub(crate) fn avx2_or_skip(test: &str) -> Option<Avx2> {
        let token = Avx2::detect();
        if token.is_none() {
            eprintln!("SKIPPED {test}: this CPU has no AVX2+FMA");
        }
        token
    }

    /// The AVX-512 token, or `None` after saying on stderr that `test` is skipped on this CPU.
    pub(crate) fn avx512_or_skip(test: &str) -> Option<Avx512> {
        let token = Avx512::detect();
        if token.is_none() {
            eprintln!("SKIPPED {test}: this CPU has no AVX-512 (F, VL, BW, DQ)");
        }
        token
    }
}
