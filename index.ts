/**
 * Phoenix: loads and validates the stack configuration, builds the machine it
 * describes, and exports the stack-output contract (stacks/outputs.ts). A
 * configuration problem stops the program here, before any resource is
 * registered.
 */
import { buildStack } from "./machine/compose";
import { loadFromEngine } from "./stacks/engine";

const outputs = buildStack(loadFromEngine());

export const gatewayUrl = outputs.gatewayUrl;
export const caUrl = outputs.caUrl;
export const acmeDirectoryUrl = outputs.acmeDirectoryUrl;
export const caRootPem = outputs.caRootPem;
export const caFingerprint = outputs.caFingerprint;
export const serviceUrls = outputs.serviceUrls;
export const openaiBaseUrl = outputs.openaiBaseUrl;
export const models = outputs.models;
export const qdrantUrl = outputs.qdrantUrl;
export const portainerUrl = outputs.portainerUrl;
export const guests = outputs.guests;
export const gpuAllocation = outputs.gpuAllocation;
