//! The iot-dm hub (in progress).
