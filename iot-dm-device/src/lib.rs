//! The iot-dm device client (in progress).
