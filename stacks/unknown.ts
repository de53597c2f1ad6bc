/** What the engine sends, during preview, for an input whose value is not known yet (@pulumi/pulumi@3.248.0 runtime/rpc.js unknownValue). */
export const UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";
