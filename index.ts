/**
 * Phoenix: loads and validates the stack configuration, builds the machine it
 * describes, and exports the stack's outputs. A configuration problem stops
 * the program here, before any resource is registered.
 */
import { buildStack } from "./stacks/compose";
import { loadFromEngine } from "./stacks/engine";

const outputs = buildStack(loadFromEngine());

export const guests = outputs.guests;
export const models = outputs.models;
export const gpuAllocation = outputs.gpuAllocation;
export const gatewayUrl = outputs.gatewayUrl;
export const caUrl = outputs.caUrl;
export const acmeDirectoryUrl = outputs.acmeDirectoryUrl;
export const caRootPem = outputs.caRootPem;
export const caFingerprint = outputs.caFingerprint;
