/**
 * What offline synth hands the program for every secret (stacks/engine.ts).
 * Kept apart so a renderer can recognise it without loading the Pulumi SDK.
 */
export const SECRET_PLACEHOLDER = "[secret]";
