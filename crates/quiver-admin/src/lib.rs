//! The library behind `quiverctl`: reading definitions and row files, rendering answers,
//! and running local `quiver-node` processes (for `quiverctl demo`, tests and benchmarks).

pub mod input;
pub mod local_node;
pub mod render;
