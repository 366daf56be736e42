//! The data path: accepting redirected connections, detecting the protocol, and
//! proxying HTTP (routed) or TCP (passthrough).
