//! Rendering an `IngressSpec` into each controller's configuration.
//!
//! Whether a controller can express a spec is `model::capability::check`, the one table both
//! environments share. [`local`] writes each data plane's native configuration the way its
//! controller would; [`kind`] writes the Kubernetes objects (Ingress with the controller's
//! annotations, Service, Deployment, controller-level settings). Rendering is pure: no I/O.

pub mod haproxy;
pub mod kind;
pub mod local;
