//! The ws-echo binary: parse flags, install logging, serve until SIGTERM.

fn main() {}
