//! Reports API tests against the real PostgreSQL and S3 servers and the real kubectl.

mod api;
mod fixture;
mod kubectl;
mod plugin;
