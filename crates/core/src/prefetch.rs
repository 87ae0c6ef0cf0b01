//! A hint to the CPU to start loading a cache line that will be read soon.
//!
//! The enricher's VIN table and the aggregator's per-window vehicle table
//! are larger than the L2 cache at fleet scale, and every event reads one
//! random slot of each. Their probes depend on nothing but the event, so a
//! stage can name the slot of an event a few positions ahead and let its
//! load overlap the work on the current one. Reading that slot early instead
//! (a plain load) was measured and does not pay: a load must retire, a
//! prefetch does not.

/// Asks the CPU to bring the cache line holding `value` into every cache
/// level. A hint: no effect on what the program computes, and none at all
/// on targets without a prefetch instruction.
#[inline(always)]
pub fn prefetch_read<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    // SAFETY: `_mm_prefetch` is `unsafe` only because it needs the `sse`
    // target feature, which every x86_64 CPU has (it is in the target's
    // baseline). A prefetch never faults and never changes memory; here it
    // is also given a valid reference.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(value).cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}
