//! xl
