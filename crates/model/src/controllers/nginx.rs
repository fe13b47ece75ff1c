//! ingress-nginx (kubernetes/ingress-nginx, controller-v1.15.1, its final release): facts and capability.

use crate::controller::{Controller, ControllerInfo};
use crate::spec::{IngressSpec, Unsupported};

pub static INFO: ControllerInfo = ControllerInfo {
    name: "nginx",
    aliases: &["ingress-nginx"],
    title: "ingress-nginx",
    ingress_class: "nginx",
    data_plane: "nginx",
    binary_env: "TESTBED_NGINX",
    ships: "nginx 1.27.1 with OpenResty Lua (ingress-nginx controller-v1.15.1)",
    ships_source: "https://github.com/kubernetes/ingress-nginx/blob/controller-v1.15.1/images/nginx/rootfs/build.sh",
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
    Ok(())
}
