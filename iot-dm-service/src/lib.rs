//! The iot-dm hub (in progress).
//!
//! | module | what it holds |
//! |---|---|
//! | [`store`] | durable storage: the [`store::Store`] trait, memory and redb backends, group commit |

pub mod store;
