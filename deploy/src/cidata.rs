//! cidata
