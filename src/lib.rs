//! iot-dm facade
