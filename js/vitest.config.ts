import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    environment: "jsdom",
    include: ["shared/**/*.test.ts", "token_heatmap/**/*.test.ts", "ablation_panel/**/*.test.ts", "neuron_table/**/*.test.ts", "probe_report/**/*.test.ts", "matrix_view/**/*.test.ts", "patching_view/**/*.test.ts"],
  },
});
