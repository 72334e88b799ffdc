//! [`TwinApi`]: device twins.

use async_trait::async_trait;

use iot_dm_core::twin::{Twin, TwinPatch};

use crate::hub::HubError;

/// Device twins: read, merge or replace tags and desired properties (with ETags), and the
/// archived twins of retired devices.
#[async_trait]
pub trait TwinApi: Send + Sync + std::fmt::Debug {
    /// The twin of a live device (`GET /twins/{id}`).
    async fn get_twin(&self, device_id: &str) -> Result<Twin, HubError>;
    /// Merges tags and desired properties (`PATCH /twins/{id}`), if `if_match` (the twin ETag
    /// or `*`) matches. The device gets the desired part as a notification.
    async fn update_twin(
        &self,
        device_id: &str,
        patch: &TwinPatch,
        if_match: Option<&str>,
    ) -> Result<Twin, HubError>;
    /// Replaces tags and desired properties (`PUT /twins/{id}`), if `if_match` matches. The
    /// device gets the whole new desired document as a notification.
    async fn replace_twin(
        &self,
        device_id: &str,
        replacement: &TwinPatch,
        if_match: Option<&str>,
    ) -> Result<Twin, HubError>;
    /// The archived twin of a retired device (`GET /archive/twins/{id}`).
    async fn get_archived_twin(&self, device_id: &str) -> Result<Twin, HubError>;
}
