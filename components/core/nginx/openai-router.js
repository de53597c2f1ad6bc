/*
 * OpenAI-compatible routing for the Phoenix gateway, run by nginx's njs module:
 * njs 0.8.2 on the gateway (Ubuntu noble, universe: libnginx-mod-http-js
 * 0.8.2-1ubuntu1), 0.7.9 in the live tests (Debian bookworm). Only what both
 * have: no optional chaining, no `??`, none of what 0.8.0 removed
 * (r.requestBody, r.responseBody, the String byte methods; nginx/njs CHANGES).
 *
 * The request body is read by nginx before `route` runs (js_content), held in
 * one memory buffer (client_body_in_single_buffer), and handed on unchanged by
 * an internal redirect to the named location of the model's server, which
 * proxies with buffering off so streamed tokens pass straight through.
 */
import table from 'phoenix-models.js';

function fail(r, status, message, param, code) {
    r.headersOut['Content-Type'] = 'application/json';
    r.return(status, JSON.stringify({ error: { message: message, type: 'invalid_request_error', param: param, code: code } }) + '\n');
}

function serviceOf(model) {
    return Object.prototype.hasOwnProperty.call(table.models, model) ? table.models[model] : null;
}

function unknownModel(r, model) {
    fail(r, 404, 'The model `' + model + '` does not exist on this gateway; GET /v1/models lists the models it serves.', 'model', 'model_not_found');
}

function route(r) {
    var body;
    try {
        body = JSON.parse(r.requestText || '');
    } catch (e) {
        fail(r, 400, 'The request body must be a JSON object with a "model" field: ' + e.message, null, 'invalid_json');
        return;
    }
    if (body === null || typeof body !== 'object' || typeof body.model !== 'string' || body.model === '') {
        fail(r, 400, 'The request body must name a model in its "model" field.', 'model', 'model_required');
        return;
    }
    var service = serviceOf(body.model);
    if (service === null) {
        unknownModel(r, body.model);
        return;
    }
    r.internalRedirect('@model_' + service);
}

function listOf(r, service) {
    return r.subrequest('/_phoenix/models/' + service).then(function (reply) {
        if (reply.status !== 200) {
            r.warn('model list of ' + service + ' answered ' + reply.status);
            return [];
        }
        var data = JSON.parse(reply.responseText).data;
        return Array.isArray(data) ? data : [];
    }).catch(function (e) {
        r.warn('model list of ' + service + ' failed: ' + e);
        return [];
    });
}

function sendJson(r, status, value) {
    r.headersOut['Content-Type'] = 'application/json';
    r.return(status, JSON.stringify(value) + '\n');
}

/* GET <prefix>/models lists what every server serves right now; <prefix>/models/<id> describes one model. */
async function models(r) {
    var m = /^.*?\/models(?:\/(.+))?$/.exec(r.uri);
    var id = m && m[1] !== undefined ? m[1] : null;
    if (id === null) {
        var lists = await Promise.all(table.services.map(function (s) { return listOf(r, s); }));
        sendJson(r, 200, { object: 'list', data: lists.reduce(function (all, l) { return all.concat(l); }, []) });
        return;
    }
    var service = serviceOf(id);
    if (service === null) {
        unknownModel(r, id);
        return;
    }
    var found = (await listOf(r, service)).filter(function (entry) { return entry.id === id; });
    if (found.length === 0) {
        unknownModel(r, id);
        return;
    }
    sendJson(r, 200, found[0]);
}

export default { route: route, models: models };
