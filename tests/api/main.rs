//! The HTTP tests, in one binary so the suite links once: each module is one area.

#[path = "../common/mod.rs"]
mod common;

mod connections;
mod hardening;
mod outages;
