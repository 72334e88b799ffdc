//! The compact binary form of a [`DeviceLifecycle`] (see [`crate::binary`]): state, status
//! reason, successor, time of the last transition.

use super::{DeviceLifecycle, LifecycleState, RawLifecycle};
use crate::binary::{put_opt_str, put_time, put_u8, BinaryError, Reader};
use crate::identity::DeviceId;

impl DeviceLifecycle {
    /// Appends the record's compact binary form; [`DeviceLifecycle::read_binary`] reads it
    /// back (checking it as deserializing does).
    ///
    /// ```
    /// use iot_dm_core::binary::Reader;
    /// use iot_dm_core::clock::Timestamp;
    /// use iot_dm_core::lifecycle::DeviceLifecycle;
    /// let rec = DeviceLifecycle::new(Timestamp::from_unix_secs(5));
    /// let mut out = Vec::new();
    /// rec.write_binary(&mut out);
    /// assert_eq!(DeviceLifecycle::read_binary(&mut Reader::new(&out))?, rec);
    /// # Ok::<(), iot_dm_core::binary::BinaryError>(())
    /// ```
    pub fn write_binary(&self, out: &mut Vec<u8>) {
        let state = match self.state {
            LifecycleState::Planned => 0,
            LifecycleState::Enabled => 1,
            LifecycleState::Disabled => 2,
            LifecycleState::Retired => 3,
        };
        put_u8(out, state);
        put_opt_str(out, self.status_reason());
        put_opt_str(out, self.successor().map(DeviceId::as_str));
        put_time(out, self.since);
    }

    /// Reads a record written by [`DeviceLifecycle::write_binary`].
    pub fn read_binary(r: &mut Reader<'_>) -> Result<DeviceLifecycle, BinaryError> {
        let state = match r.u8("lifecycle.state")? {
            0 => LifecycleState::Planned,
            1 => LifecycleState::Enabled,
            2 => LifecycleState::Disabled,
            3 => LifecycleState::Retired,
            b => {
                return Err(BinaryError::invalid(
                    "lifecycle.state",
                    format!("unknown state {b}"),
                ))
            }
        };
        let status_reason = r.opt_string("lifecycle.statusReason")?;
        let successor = r
            .opt_str("lifecycle.successor")?
            .map(DeviceId::new)
            .transpose()
            .map_err(|e| BinaryError::invalid("lifecycle.successor", e.to_string()))?;
        let since = r.time("lifecycle.since")?;
        DeviceLifecycle::try_from(RawLifecycle {
            state,
            status_reason,
            successor,
            since,
        })
        .map_err(|e| BinaryError::invalid("lifecycle", e.to_string()))
    }
}
