//! Names the kind cluster and everything deployed into it share, whoever creates or reads them
//! (`cargo xtask up` and the testbed's kind environment).

/// The kind cluster `cargo xtask up` creates.
pub const CLUSTER_NAME: &str = "ws-testbed";
/// The ws-echo image tag loaded into the kind nodes.
pub const IMAGE_TAG: &str = "ws-echo:testbed";
/// Field manager of every server-side apply (`kubectl apply --server-side` and kube-rs).
pub const FIELD_MANAGER: &str = "ws-ingress-testbed";
/// Host of the sample app `cargo xtask up` deploys. No test Ingress uses it: two Ingresses of one
/// class with the same host and path shadow each other (ingress-nginx keeps the oldest,
/// internal/ingress/controller/controller.go; Traefik's order between equal routers is
/// unspecified; HAProxy's route map gets two rows with one key).
pub const SAMPLE_HOST: &str = "sample.testbed.local";
/// The uid and gid ws-echo runs as: the image's USER and the Deployment's securityContext.
pub const RUN_AS_UID: u32 = 65532;
