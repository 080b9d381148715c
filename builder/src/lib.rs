//! Recipes turned into reproducible wafer bundles.
