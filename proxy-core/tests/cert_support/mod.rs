//! Test helpers for the certificate store: an in-memory CA on the store's clock, a
//! certificate source whose behaviour a test switches, and TLS handshakes over
//! in-memory pipes.

#![allow(dead_code)]

pub mod ca;
pub mod handshake;
pub mod source;
