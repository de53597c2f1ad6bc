import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["node_modules/**", "bin/**", "out/**", "coverage/**"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "no-console": "off",
      // Dynamic providers are serialized into the state, so their methods require()
      // what they use instead of capturing imports (DESIGN.md, "Dynamic providers").
      "@typescript-eslint/no-require-imports": "off",
    },
  },
);
