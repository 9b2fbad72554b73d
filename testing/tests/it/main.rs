//! Integration tests of the test helpers: the API server emulator with the real kube client
//! and the real kubectl.

mod emulator;
mod kubectl;
mod kubelet;
mod rbac;
