/*
 * The gateway's status page, run by nginx's njs module (the same versions and the same subset of
 * the language as openai-router.js: no optional chaining, no `??`).
 *
 * One row per route: the service behind it, Traefik's view of that service's servers (its API,
 * GET /api/http/services: each service carries serverStatus {url: "UP"|"DOWN"}, traefik v3.5.3
 * pkg/api/handler_http.go getServices and pkg/config/runtime/runtime.go), and the gateway's own
 * view: the service's health path fetched through the gateway's upstream, as a client's request
 * would go, with its status and time. Every probe runs at once and each has a short budget
 * (proxy_connect_timeout/proxy_read_timeout of its location), so the page answers in seconds
 * whatever is down. JSON by default; a small HTML table when the client asks for text/html.
 */
import table from 'phoenix-status.js';

var PREFIX = '/_phoenix/status';

function traefikView(r) {
    return r.subrequest(PREFIX + '/traefik').then(function (reply) {
        if (reply.status !== 200) {
            return { error: 'Traefik API answered HTTP ' + reply.status, services: {} };
        }
        var services = {};
        JSON.parse(reply.responseText).forEach(function (s) {
            // File-provider services are named <name>@file (pkg/api/handler.go getProviderName).
            var at = s.name.lastIndexOf('@');
            var name = at < 0 ? s.name : s.name.slice(0, at);
            if (at < 0 || s.name.slice(at + 1) === 'file') {
                services[name] = s.serverStatus || {};
            }
        });
        return { error: null, services: services };
    }).catch(function (e) {
        return { error: 'Traefik API: ' + e, services: {} };
    });
}

function gatewayView(r, service) {
    var start = Date.now();
    return r.subrequest(PREFIX + '/health/' + service).then(function (reply) {
        return { status: reply.status, ms: Date.now() - start };
    }).catch(function (e) {
        return { status: null, ms: Date.now() - start, error: String(e) };
    });
}

/* UP when every server Traefik knows for the service is UP; DOWN when one is not; unknown without an answer. */
function traefikState(servers) {
    var urls = servers ? Object.keys(servers) : [];
    if (urls.length === 0) {
        return 'unknown';
    }
    return urls.every(function (u) { return servers[u] === 'UP'; }) ? 'UP' : 'DOWN';
}

function healthy(row) {
    var gatewayOk = row.gateway === null || (row.gateway.status !== null && row.gateway.status >= 200 && row.gateway.status < 400);
    return row.traefik === 'UP' && gatewayOk;
}

function escapeHtml(text) {
    return String(text).replace(/[&<>"']/g, function (c) {
        return { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c];
    });
}

function html(page) {
    var rows = page.routes.map(function (row) {
        var gw = row.gateway === null ? 'not routed' : (row.gateway.status === null ? row.gateway.error : 'HTTP ' + row.gateway.status) + (row.gateway === null ? '' : ' in ' + row.gateway.ms + ' ms');
        return '<tr class="' + (row.ok ? 'ok' : 'fail') + '"><td>' + escapeHtml(row.route === null ? '-' : row.route) + '</td><td>' + escapeHtml(row.service) +
            '</td><td>' + escapeHtml(row.traefik) + '</td><td>' + escapeHtml(gw) + '</td></tr>';
    }).join('\n');
    return '<!doctype html><html><head><meta charset="utf-8"><title>Phoenix status</title>' +
        '<style>body{font-family:sans-serif}td,th{padding:2px 8px;text-align:left}.fail{background:#fdd}</style></head><body>' +
        '<h1>Phoenix gateway: ' + (page.ok ? 'all healthy' : 'something is down') + '</h1><p>' + escapeHtml(page.generated) +
        (page.traefikError ? '; ' + escapeHtml(page.traefikError) : '') + '</p>' +
        '<table><tr><th>route</th><th>service</th><th>Traefik</th><th>gateway</th></tr>\n' + rows + '</table></body></html>\n';
}

async function page(r) {
    var services = [];
    table.rows.forEach(function (row) {
        if (row.proxied && services.indexOf(row.service) < 0) {
            services.push(row.service);
        }
    });
    var views = await Promise.all([traefikView(r)].concat(services.map(function (s) { return gatewayView(r, s); })));
    var traefik = views[0];
    var gateway = {};
    services.forEach(function (s, i) { gateway[s] = views[i + 1]; });
    var routes = table.rows.map(function (row) {
        var servers = Object.prototype.hasOwnProperty.call(traefik.services, row.service) ? traefik.services[row.service] : null;
        var out = { route: row.route, service: row.service, traefik: traefikState(servers), servers: servers || {}, gateway: row.proxied ? gateway[row.service] : null };
        out.ok = healthy(out);
        return out;
    });
    var result = {
        generated: new Date().toISOString(),
        ok: routes.every(function (row) { return row.ok; }),
        traefikError: traefik.error,
        routes: routes,
    };
    r.headersOut['Cache-Control'] = 'no-store';
    if (/text\/html/.test(r.headersIn.Accept || '')) {
        r.headersOut['Content-Type'] = 'text/html; charset=utf-8';
        r.return(200, html(result));
        return;
    }
    r.headersOut['Content-Type'] = 'application/json';
    r.return(200, JSON.stringify(result) + '\n');
}

export default { page: page };
