//! Package formats both the builder and the vetter need: rpm headers and packages, rpm databases (Berkeley DB hash, sqlite, ndb), dpkg status, and rpm/dpkg version comparison.
