/**
 * How a Portainer agent decides whether a request comes from its Portainer, and how the server
 * signs, as portainer/agent@2.23.0 and portainer/portainer@2.23.0 do:
 *
 * - The server signs every request to an agent with its own key pair, kept in /data across
 *   restarts (api/cmd/portainer/main.go initKeyPair), over md5(AGENT_SECRET) when its process
 *   started with one, else md5("Portainer-App") (main.go initDigitalSignatureService:
 *   os.Getenv("AGENT_SECRET"); api/crypto/ecdsa.go CreateSignature; agent.go
 *   PortainerAgentSignatureMessage). Headers X-PortainerAgent-PublicKey / -Signature
 *   (api/docker/client/client.go, http/proxy/factory/docker/transport.go).
 * - The agent (crypto/ecdsa.go VerifySignature): without AGENT_SECRET it associates the first
 *   public key it parses (decodeAndParsePublicKey stores it before the signature is checked)
 *   and from then on only that key is valid, over "Portainer-App"; with AGENT_SECRET it takes
 *   the key of each request and checks the signature over the secret. A failure is 403
 *   "Invalid request signature" (http/security/notary.go). /ping is not signed (http/handler/handler.go).
 * - The server, creating an agent environment, pings the agent (api/agent/version.go, unsigned),
 *   then snapshots it through signed Docker calls; a signature refusal answers 500 "Unable to
 *   initiate communications with environment" with "agent already paired with another Portainer
 *   instance" (api/http/handler/endpoints/endpoint_create.go snapshotAndPersistEndpoint). A
 *   failed snapshot later marks the environment down (api/internal/snapshot/snapshot.go).
 */

/** agent.go PortainerAgentSignatureMessage: what is signed when no secret is set. */
export const SIGNATURE_MESSAGE = "Portainer-App";

/** One signer: a Portainer's public key and the AGENT_SECRET its process started with. */
export interface Signer {
  key: string;
  secret?: string;
}

/**
 * Whether an agent accepts a request signed by `from`. `agent` is its memory (the key a secretless
 * agent paired with, set by the first request it sees); `secret` the AGENT_SECRET it started with.
 */
export function agentAccepts(agent: { pairedKey?: string }, secret: string | undefined, from: Signer): boolean {
  if (!secret) {
    agent.pairedKey ??= from.key;
    if (agent.pairedKey !== from.key) return false;
  }
  return (from.secret || SIGNATURE_MESSAGE) === (secret || SIGNATURE_MESSAGE);
}
