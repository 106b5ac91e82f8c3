//! Shared inputs for the criterion benches in `benches/`; see `BENCHMARKS.md`.
