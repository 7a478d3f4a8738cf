// Bundle each widget into ONE self-contained ES module (+ its CSS) in ../neuronwidgets/static/.
// No code splitting: anywidget loads a module from a Blob URL, where relative chunks cannot resolve.
import * as esbuild from "esbuild";
import { fileURLToPath } from "node:url";

export const WIDGETS = ["token_heatmap", "ablation_panel", "neuron_table", "probe_report", "matrix_view", "patching_view"];
const here = fileURLToPath(new URL(".", import.meta.url));

const options = {
  absWorkingDir: here,
  entryPoints: Object.fromEntries(WIDGETS.map((w) => [w, `${w}/index.ts`])),
  outdir: "../neuronwidgets/static",
  bundle: true,
  splitting: false,
  format: "esm",
  target: ["es2020"],
  minify: true,
  legalComments: "none",
  logLevel: "info",
};

if (process.argv.includes("--watch")) {
  const ctx = await esbuild.context({ ...options, minify: false, sourcemap: "inline" });
  await ctx.watch();
} else {
  await esbuild.build(options);
}
