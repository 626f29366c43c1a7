//! What refwatch writes and reads: the JSON event (the JSON Lines export and
//! version 1 recordings), recordings, and the offline exports.

pub mod export;
pub mod json;
pub mod recording;
