export * from "./exec";
export * from "./hostKey";
export * from "./script";
