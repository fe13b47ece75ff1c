//! What `bench-dataplane` shares with its tests: its arguments and its control protocol.

pub mod dataplane;
