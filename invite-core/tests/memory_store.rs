//! The Store conformance suite against the reference store.
invite_core::store_conformance!(|| async { invite_core::MemoryStore::new() });
