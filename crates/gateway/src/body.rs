//! The body type of every request and response paygate handles: axum's, so the layer drops into any axum app.

pub use axum::body::Body;
