//! ingress-nginx (kubernetes/ingress-nginx, controller-v1.15.1, its final release): facts and capability.

use std::time::Duration;

use crate::connection_limit::ConnectionLimit;
use crate::control_loop::{ControlLoop, Pacing, Sourced};
use crate::controller::{Controller, ControllerInfo, RoutingApi};
use crate::shutdown::DataPlaneShutdown;
use crate::spec::{IngressSpec, Unsupported};

pub static INFO: ControllerInfo = ControllerInfo {
    name: "nginx",
    aliases: &["ingress-nginx"],
    title: "ingress-nginx",
    ingress_class: "nginx",
    api: RoutingApi::Ingress,
    data_plane: "nginx",
    binary_env: "TESTBED_NGINX",
    ships: "nginx 1.27.1 with OpenResty Lua (ingress-nginx controller-v1.15.1)",
    ships_source: "https://github.com/kubernetes/ingress-nginx/blob/controller-v1.15.1/images/nginx/rootfs/build.sh",
    control_loop: ControlLoop {
        endpoints: Sourced {
            value: "POSTed as JSON to the Lua balancer's /configuration/backends; no reload",
            source: "https://github.com/kubernetes/ingress-nginx/blob/controller-v1.15.1/internal/ingress/controller/nginx.go",
        },
        reloads_for: Sourced {
            value: "any change to the rendered nginx.conf (a new host or path, a ConfigMap key); \
                    endpoints and the backends' dynamic settings go to the balancer instead",
            source: "https://github.com/kubernetes/ingress-nginx/blob/controller-v1.15.1/internal/ingress/controller/controller.go",
        },
        // `--sync-rate-limit` 0.3, burst 1: every sync, whatever triggered it, takes a token.
        pacing: Sourced {
            value: Pacing::TokenBucket {
                per_second: 0.3,
                burst: 1,
            },
            source: "https://github.com/kubernetes/ingress-nginx/blob/controller-v1.15.1/pkg/flags/flags.go",
        },
        // Every worker copies the POSTed backends into its balancers on a 1 s timer.
        data_plane_poll: Some(Sourced {
            value: Duration::from_secs(1),
            source: "https://github.com/kubernetes/ingress-nginx/blob/controller-v1.15.1/rootfs/etc/nginx/lua/balancer.lua",
        }),
    },
    shutdown: DataPlaneShutdown {
        // `/wait-shutdown` SIGTERMs the controller, whose Stop() runs `nginx -s quit` after
        // --shutdown-grace-period (0) and waits for nginx to exit.
        prestop: Sourced {
            value: "/wait-shutdown: the controller stops nginx gracefully (`nginx -s quit`) and waits for it",
            source: "https://github.com/kubernetes/ingress-nginx/blob/controller-v1.15.1/internal/ingress/controller/nginx.go",
        },
        on_signal: Sourced {
            value: "workers close their listeners at once (new connections refused) and keep open ones \
                    until worker-shutdown-timeout (240 s), then close them without a close frame",
            source: "https://github.com/kubernetes/ingress-nginx/blob/controller-v1.15.1/rootfs/etc/nginx/template/nginx.tmpl",
        },
        grace: Sourced {
            value: Duration::from_secs(300),
            source: "https://github.com/kubernetes/ingress-nginx/blob/helm-chart-4.15.1/charts/ingress-nginx/values.yaml",
        },
    },
    // proxy-read-timeout "60": nginx's proxy_read_timeout ends an upgraded connection idle for 60 s.
    default_idle: Sourced {
        value: Some(Duration::from_secs(60)),
        source: "https://github.com/kubernetes/ingress-nginx/blob/controller-v1.15.1/internal/ingress/controller/config/config.go",
    },
    // max-worker-connections "16384", rendered as worker_connections (per worker, client and
    // upstream connections alike).
    connection_limits: &[Sourced {
        value: ConnectionLimit::WorkerConnections { per_worker: 16_384 },
        source: "https://github.com/kubernetes/ingress-nginx/blob/controller-v1.15.1/internal/ingress/controller/config/config.go",
    }],
    check,
};

fn check(spec: &IngressSpec) -> Result<(), Unsupported> {
    if spec.timeouts.tunnel.is_some() {
        return Err(Unsupported::new(
            Controller::Nginx,
            "timeouts.tunnel",
            "ingress-nginx has no tunnel timeout for upgraded HTTP connections; \
             proxy-read-timeout/proxy-send-timeout govern them (proxy-stream-timeout is for TCP services only)",
        ));
    }
    if spec.data_plane.backend_connections.is_some() {
        return Err(Unsupported::new(
            Controller::Nginx,
            "data_plane.backend_connections",
            "ingress-nginx renders no limit on the connections to a backend (nginx's upstream max_conns is \
             neither a ConfigMap key nor an annotation at controller-v1.15.1); only worker_connections bounds them",
        ));
    }
    Ok(())
}
