/*
 * API keys on the Phoenix gateway's OpenAI routes, run by nginx's njs module
 * (njs 0.8.2 on the gateway, 0.7.9 in the live tests: both have the crypto
 * module's createHash('sha256') and digest('hex'), nginx/njs 0.7.9 and 0.8.2
 * external/njs_crypto_module.c). Only what both have, as in openai-router.js.
 *
 * The gateway holds no key, only each key's SHA-256 (phoenix-api-keys.js, generated):
 * `client` hashes the presented key and looks the digest up. The lookup is by the
 * hash of the key, never a comparison of key bytes, so the time it takes says
 * nothing an attacker can steer towards a key (to aim at a digest prefix they
 * would have to invert SHA-256), and a key of 32+ random characters cannot be
 * found from its digest.
 *
 * js_set calls `client` when $phoenix_api_client is read (the /v1 locations' `if`):
 * it answers the client's name, which is also the limit_req key, or "" for a
 * missing or unknown key (nginx then answers 401).
 */
import crypto from 'crypto';
import keys from 'phoenix-api-keys.js';

/* RFC 6750 §2.1: Authorization: Bearer <token>; the scheme is case-insensitive (RFC 7235 §2.1). */
var BEARER = new RegExp('^Bearer +([A-Za-z0-9._~+/=-]+) *$', 'i');

function client(r) {
    var header = r.headersIn.Authorization;
    var m = typeof header === 'string' ? BEARER.exec(header) : null;
    if (m === null) {
        return '';
    }
    var digest = crypto.createHash('sha256').update(m[1]).digest('hex');
    return Object.prototype.hasOwnProperty.call(keys, digest) ? keys[digest] : '';
}

export default { client: client };
