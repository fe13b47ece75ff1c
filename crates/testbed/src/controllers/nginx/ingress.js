// The testbed's stand-in for ingress-nginx's Lua balancer (rootfs/etc/nginx/lua/balancer.lua and
// balancer/*.lua at controller-v1.15.1), written for njs. Written for this project; no upstream
// code. `backends` (strings) holds the POSTed backend list and each worker's copy of it; `sync`
// (numbers) holds the store's version, each worker's copied version and its round-robin counter.
import crypto from 'crypto';

function md5(s) {
    return crypto.createHash('md5').update(s).digest('hex');
}

// POST /configuration/backends: the controller's dynamic configuration (configuration.lua).
// GET returns what the store holds.
function configureBackends(r) {
    if (r.method === 'GET') {
        const stored = ngx.shared.backends.get('backends');
        r.return(stored === undefined ? 404 : 200, stored || '');
        return;
    }
    if (r.method !== 'POST') {
        r.return(405);
        return;
    }
    const body = r.requestText;
    try {
        JSON.parse(body);
    } catch (e) {
        r.return(400, 'invalid JSON: ' + e);
        return;
    }
    ngx.shared.backends.set('backends', body);
    ngx.shared.sync.incr('version', 1, 0);
    r.return(201);
}

// GET /configuration/workers: the version each worker's view holds, by worker pid.
function workers(r) {
    const out = {};
    ngx.shared.sync.keys().forEach((key) => {
        if (key.startsWith('worker:')) {
            out[key.slice(7)] = ngx.shared.sync.get(key);
        }
    });
    r.return(200, JSON.stringify({ version: ngx.shared.sync.get('version') || 0, workers: out }));
}

// Every worker, every second (balancer.lua's `ngx.timer.every(BACKENDS_SYNC_INTERVAL,
// sync_backends)`): copy the store into this worker's view when it changed.
function syncBackends() {
    const version = ngx.shared.sync.get('version');
    if (version === undefined) {
        return;
    }
    const mine = 'worker:' + process.pid;
    if (ngx.shared.sync.get(mine) === version) {
        return;
    }
    ngx.shared.backends.set(mine, ngx.shared.backends.get('backends'));
    ngx.shared.sync.set(mine, version);
}

function cookieValue(r, name) {
    const header = r.headersIn.Cookie;
    if (!header) {
        return undefined;
    }
    const parts = header.split(';');
    for (let i = 0; i < parts.length; i++) {
        const eq = parts[i].indexOf('=');
        if (eq > 0 && parts[i].slice(0, eq).trim() === name) {
            return parts[i].slice(eq + 1).trim();
        }
    }
    return undefined;
}

// Peers this request already tried (a later try of `proxy_next_upstream`).
function tried(r) {
    return (r.variables.upstream_addr || '').match(/[0-9.]+:[0-9]+/g) || [];
}

// Sticky, persistent mode (sticky.lua, sticky_persistent.lua, util/nodemap.lua): the cookie names
// the endpoint by md5(backend name .. endpoint) and is followed even after a failed try
// (`change_on_failure` off); when it names none, pick one at random among those not tried yet
// (`random_except`) and set a new cookie "<key>|<backend key>".
function sticky(r, backend, peers) {
    const conf = backend.sessionAffinityConfig.cookieSessionAffinity;
    const name = conf.name || 'route';
    const raw = cookieValue(r, name);
    const keys = peers.map((p) => md5(backend.name + p));
    if (raw !== undefined) {
        const i = keys.indexOf(raw.split('|')[0]);
        if (i >= 0) {
            return peers[i];
        }
    }
    const failed = tried(r);
    let candidates = peers.filter((p) => failed.indexOf(p) < 0);
    if (candidates.length === 0) {
        candidates = peers;
    }
    const pick = peers.indexOf(candidates[Math.floor(Math.random() * candidates.length)]);
    const backendKey = md5(md5(backend.name) + backend.name);
    let cookie = name + '=' + keys[pick] + '|' + backendKey;
    if (conf.maxage) {
        cookie += '; Max-Age=' + conf.maxage;
    }
    cookie += '; Path=' + (conf.path || r.variables.location_path || '/');
    if (r.variables.https === 'on') {
        cookie += '; Secure';
    }
    cookie += '; HttpOnly';
    r.variables.affinity_cookie = cookie;
    return peers[pick];
}

// Consistent hashing (chash.lua over resty.chash): a ring of 160 points per endpoint; a key maps
// to the first point at or after its hash.
function point(s) {
    return parseInt(md5(s).slice(0, 8), 16);
}

function chash(r, backend, peers) {
    const by = backend.upstreamHashByConfig['upstream-hash-by'];
    const key = by.startsWith('$') ? r.variables[by.slice(1)] || '' : by;
    const ring = [];
    peers.forEach((p) => {
        for (let i = 0; i < 160; i++) {
            ring.push([point(p + '#' + i), p]);
        }
    });
    ring.sort((a, b) => a[0] - b[0]);
    const h = point(key);
    let lo = 0;
    let hi = ring.length;
    while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (ring[mid][0] < h) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return ring[lo % ring.length][1];
}

// `$upstream_peer` (and one variable per later try): balancer.lua's balance() for this worker's
// view; '' when it has no endpoint.
function upstreamPeer(r) {
    const view = ngx.shared.backends.get('worker:' + process.pid);
    if (!view) {
        return '';
    }
    const backend = JSON.parse(view).find((b) => b.name === r.variables.proxy_upstream_name);
    if (!backend || backend.endpoints.length === 0) {
        return '';
    }
    const peers = backend.endpoints.map((e) => e.address + ':' + e.port);
    const affinity = backend.sessionAffinityConfig || {};
    if (affinity.name === 'cookie') {
        return sticky(r, backend, peers);
    }
    const hashBy = backend.upstreamHashByConfig || {};
    if (hashBy['upstream-hash-by']) {
        return chash(r, backend, peers);
    }
    // Round robin (round_robin.lua): each worker keeps its own counter; a later try takes the next.
    const n = ngx.shared.sync.incr('rr:' + process.pid, 1, 0);
    return peers[(n - 1) % peers.length];
}

export default { configureBackends, workers, syncBackends, upstreamPeer };
