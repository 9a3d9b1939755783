// Type-aware lint: mostly the promise rules (a floating promise in a gateway is a silent bug).
import tseslint from "typescript-eslint";

export default tseslint.config(
  // src/bridge/gen/: written by protoc-gen-es (scripts/bridge-gen.ts), not by us.
  { ignores: ["dist/", "node_modules/", "data/", "eslint.config.js", "src/bridge/gen/"] },
  {
    files: ["**/*.ts"],
    extends: [tseslint.configs.base],
    languageOptions: {
      parserOptions: { project: "./tsconfig.test.json", tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      "@typescript-eslint/no-floating-promises": "error",
      "@typescript-eslint/no-misused-promises": "error",
      "@typescript-eslint/await-thenable": "error",
      "@typescript-eslint/no-explicit-any": "error",
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
    },
  },
);
