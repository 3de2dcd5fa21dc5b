//! Criterion benchmarks live in `benches/`; run them with `cargo bench -p muster-benches`.
//! This library is empty: the crate exists to keep benchmark dependencies out of the others.
