export { startSimulator, decodeForm, RequestLog, type Simulator, type SimulatorOptions, type LogEntry } from "./server";
export { Faults, faultsFromEnv, type FaultRule, type FaultKind } from "./faults";
export { loadApiSchema, ApiSchema, type PveVersion, type Route, type ParamSchema } from "./schema";
export { checkObject, parsePropertyString, perlPattern, type ParamErrors, type ParamValue } from "./validate";
export type { SimState, Guest, Storage, Volume } from "./state";
export type { SimTiming } from "./core";
